// The analytics dashboard: figures from /api/stats, content gaps from
// /api/gaps, and the series as CSV from /api/stats.csv, all read with an
// admin token sent as `Authorization: Bearer TOKEN`. Charts are drawn as SVG
// here, with nothing loaded from anywhere else. Text that came from the API
// (visitors' questions, titles, ids) goes into the page with textContent only.
"use strict";
(() => {
  const TOKEN_KEY = "frontdesk.admin.token";
  const HOUR = 3600000;
  const DAY = 86400000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const GAPS_SHOWN = 10;
  const SOURCES_SHOWN = 8;
  const $ = (id) => document.getElementById(id);

  const PRESETS = {
    "24h": { title: "Last 24 hours", compare: "previous 24 hours" },
    "7d": { title: "Last 7 days", compare: "previous 7 days" },
    "30d": { title: "Last 30 days", compare: "previous 30 days" },
    custom: { title: "Custom period", compare: "previous period of the same length" },
  };
  const REASONS = {
    requested: "Asked for a person",
    sensitive: "Sensitive topic",
    repeated_fallback: "Bot could not answer",
    negative_feedback: "Unhappy with an answer",
    intent_rule: "Intent rule",
    unknown: "Other",
  };

  const S = {
    token: sessionStorage.getItem(TOKEN_KEY),
    period: { kind: "7d" },
    shown: null,        // the range of the figures on screen: {from, to, bucket}
    stats: null,
    prev: null,
    gaps: null,
    gapsAll: false,
    sourcesAll: { intents: false, articles: false },
    seq: 0,
  };

  // ---- helpers -----------------------------------------------------------

  /** Builds an element; children are nodes or strings (as text, never HTML). */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    setProps(e, props);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
    }
    return e;
  }

  /** Builds an SVG element; `text` becomes its text content. */
  function svg(tag, props, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    setProps(e, props);
    for (const c of children.flat()) if (c) e.append(c);
    return e;
  }

  function setProps(e, props) {
    if (!props) return;
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.setAttribute("class", v);
      else if (k === "text") e.textContent = String(v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }

  /** A field of a headline card or chart: `[data-field=name]` inside `root`. */
  function field(root, name) {
    return (typeof root === "string" ? $(root) : root).querySelector(`[data-field="${name}"]`);
  }

  function iso(ms) {
    return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
  }

  function ymd(ms) {
    return new Date(ms).toISOString().slice(0, 10);
  }

  const fmtDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  const fmtDayYear = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", year: "numeric", timeZone: "UTC" });
  const fmtWeekday = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric", timeZone: "UTC" });
  const fmtHour = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "UTC" });
  const fmtClock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZone: "UTC" });

  /** A share (0-1) as a percentage with at most one decimal: 38.5%, 50%. */
  function pct(x, digits = 1) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    const s = (x * 100).toFixed(digits);
    return (s.endsWith(".0") ? s.slice(0, -2) : s) + "%";
  }

  /** Seconds as a readable duration: 0.4 s, 42 s, 3 min 20 s, 2 h 5 min, 3 d 4 h. */
  function dur(sec) {
    if (sec === null || sec === undefined) return "–";
    if (sec < 1) return `${Math.round(sec * 1000)} ms`;
    if (sec < 10) return `${(Math.round(sec * 10) / 10).toString()} s`;
    if (sec < 60) return `${Math.round(sec)} s`;
    const m = Math.floor(sec / 60);
    if (m < 10) return `${m} min ${Math.round(sec % 60)} s`;
    if (m < 60) return `${Math.round(sec / 60)} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  /** Short durations for axis ticks: 30s, 2m, 1.5h, 2d. */
  function durTick(sec) {
    if (sec === 0) return "0";
    if (sec < 60) return `${+sec.toFixed(1)}s`;
    if (sec < 3600) return `${+(sec / 60).toFixed(1)}m`;
    if (sec < 86400) return `${+(sec / 3600).toFixed(1)}h`;
    return `${+(sec / 86400).toFixed(1)}d`;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many || one + "s"}`;
  }

  function share(n, of) {
    return of > 0 ? n / of : null;
  }

  // ---- periods -----------------------------------------------------------

  /** `[from, to)` and the bucket width of a period, in whole UTC hours or days. */
  function rangeOf(p) {
    const now = Date.now();
    if (p.kind === "24h") {
      const to = Math.floor(now / HOUR) * HOUR + HOUR;
      return { from: to - 24 * HOUR, to, bucket: "hour" };
    }
    if (p.kind === "custom") {
      const from = Date.parse(`${p.from}T00:00:00Z`);
      const to = Date.parse(`${p.to}T00:00:00Z`) + DAY;
      return { from, to, bucket: p.bucket === "hour" ? "hour" : "day" };
    }
    const days = p.kind === "30d" ? 30 : 7;
    const to = Math.floor(now / DAY) * DAY + DAY;
    return { from: to - days * DAY, to, bucket: "day" };
  }

  function describeRange(r) {
    const last = r.to - 1;
    if (r.bucket === "hour") {
      return `${fmtDay.format(r.from)}, ${fmtHour.format(r.from)} – ${fmtDay.format(r.to)}, ${fmtHour.format(r.to)} UTC · by hour`;
    }
    const days = Math.round((r.to - r.from) / DAY);
    const span = days === 1 ? fmtDayYear.format(r.from) : `${fmtDay.format(r.from)} – ${fmtDayYear.format(last)}`;
    return `${span} · ${plural(days, "day")} · by day · UTC`;
  }

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    const kind = h.get("period");
    if (kind === "custom") {
      const from = h.get("from");
      const to = h.get("to");
      if (/^\d{4}-\d{2}-\d{2}$/.test(from || "") && /^\d{4}-\d{2}-\d{2}$/.test(to || "") && from <= to) {
        return { kind, from, to, bucket: h.get("bucket") === "hour" ? "hour" : "day" };
      }
    } else if (kind && PRESETS[kind]) {
      return { kind };
    }
    return { kind: "7d" };
  }

  function writeHash(p) {
    const h = new URLSearchParams({ period: p.kind });
    if (p.kind === "custom") {
      h.set("from", p.from);
      h.set("to", p.to);
      h.set("bucket", p.bucket);
    }
    history.replaceState(null, "", `#${h}`);
  }

  // ---- the API -----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
    get signedOut() {
      return this.status === 401 || this.status === 403 || this.status === 429;
    }
  }

  function messageFor(status, serverMessage) {
    switch (status) {
      case 401: return "That token was not accepted. Check it and try again.";
      case 403: {
        const who = /^(.+) is not an admin/.exec(serverMessage || "");
        return `That token belongs to ${who ? who[1] + ", " : ""}an agent without the admin role. The dashboard needs an admin token: frontdesk agent add NAME --admin.`;
      }
      case 429: return "Too many failed sign-ins from this address. Wait 10 minutes, then try again.";
      case 503: return "The server is busy. Try again in a moment.";
      case 400: return serverMessage ? `The server could not make this report: ${serverMessage}.` : "The server could not make this report.";
      default: return `The server answered ${status}${serverMessage ? `: ${serverMessage}` : ""}.`;
    }
  }

  async function api(path, params) {
    let res;
    try {
      res = await fetch(`${path}?${new URLSearchParams(params)}`, {
        headers: { Authorization: `Bearer ${S.token}` },
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "Could not reach the server. Check the connection and try again.");
    }
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch { /* not JSON */ }
      throw new ApiError(res.status, messageFor(res.status, body && body.error));
    }
    return res;
  }

  function query(r, extra) {
    return { from: iso(r.from), to: iso(r.to), ...extra };
  }

  // ---- loading -----------------------------------------------------------

  /**
   * Loads the figures for the chosen period: the report first (which also
   * checks the token), then the previous period and the gaps.
   */
  async function load({ signingIn = false } = {}) {
    const seq = ++S.seq;
    const r = rangeOf(S.period);
    $("period-title").textContent = PRESETS[S.period.kind].title;
    $("period-sub").textContent = describeRange(r);
    setBusy(true);
    try {
      const stats = await (await api("/api/stats", query(r, { bucket: r.bucket }))).json();
      if (seq !== S.seq) return;
      if (signingIn) {
        sessionStorage.setItem(TOKEN_KEY, S.token);
        showApp();
      }
      const span = r.to - r.from;
      const [prev, gaps] = await Promise.all([
        api("/api/stats", query({ from: r.from - span, to: r.from }, { bucket: "day" }))
          .then((res) => res.json())
          .catch(() => null),
        api("/api/gaps", query(r, { limit: 100 })).then((res) => res.json()),
      ]);
      if (seq !== S.seq) return;
      S.shown = r;
      S.stats = stats;
      S.prev = prev;
      S.gaps = gaps.gaps || [];
      hideError();
      render();
      $("status").textContent = `Updated ${fmtClock.format(Date.now())} UTC`;
    } catch (e) {
      if (seq !== S.seq) return;
      if (!(e instanceof ApiError)) throw e;
      if (e.signedOut) {
        signOut(e.message);
      } else if (signingIn) {
        showSignIn(e.message);
      } else {
        showError(e.message);
        $("status").textContent = "";
      }
    } finally {
      if (seq === S.seq) setBusy(false);
    }
  }

  function setBusy(busy) {
    $("main").setAttribute("aria-busy", String(busy));
    $("refresh").disabled = busy;
    if (busy) $("status").textContent = "Loading…";
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // ---- rendering ---------------------------------------------------------

  function render() {
    $("period-title").textContent = PRESETS[S.period.kind].title;
    $("period-sub").textContent = describeRange(S.shown);
    document.title = `${PRESETS[S.period.kind].title} · frontdesk analytics`;
    renderKpis(S.stats.totals, S.prev && S.prev.totals);
    renderCharts();
    renderGaps();
    renderSources("intents", S.stats.intents || []);
    renderSources("articles", S.stats.articles || []);
  }

  /** "▲ 4.2 pts vs previous 7 days", or nothing without figures to compare. */
  function delta(root, now, before, { points = false, unit = "", betterUp = true } = {}) {
    const d = field(root, "delta");
    if (!d) return;
    d.className = "kpi-delta";
    d.textContent = "";
    if (now === null || now === undefined || before === null || before === undefined) return;
    const diff = points ? (now - before) * 100 : now - before;
    const shown = points ? `${Math.abs(diff).toFixed(1)} pts` : `${Math.abs(diff)}${unit}`;
    const compare = `vs ${PRESETS[S.period.kind].compare}`;
    if (Math.abs(diff) < (points ? 0.05 : 0.5)) {
      d.textContent = `No change ${compare}`;
      return;
    }
    const up = diff > 0;
    d.classList.add(up === betterUp ? "is-good" : "is-bad");
    d.textContent = `${up ? "▲" : "▼"} ${shown} ${compare}`;
  }

  function renderKpis(t, p) {
    const n = t.conversations;

    const defl = $("kpi-deflection");
    const value = field(defl, "value");
    value.textContent = pct(t.deflection_rate);
    value.dataset.value = t.deflection_rate ?? "";
    field(defl, "sub").textContent = n ? `${t.deflected} of ${plural(n, "conversation")} resolved by the bot` : "No conversations in this period";
    const confirmed = share(t.deflected_confirmed, n);
    const assumed = share(t.deflected_assumed, n);
    field(defl, "confirmed").textContent = n ? `${pct(confirmed)} · ${t.deflected_confirmed}` : "–";
    field(defl, "assumed").textContent = n ? `${pct(assumed)} · ${t.deflected_assumed}` : "–";
    field(defl, "bar-confirmed").style.width = `${(confirmed || 0) * 100}%`;
    field(defl, "bar-assumed").style.width = `${(assumed || 0) * 100}%`;
    delta(defl, t.deflection_rate, p && p.deflection_rate, { points: true });

    const conv = $("kpi-conversations");
    field(conv, "value").textContent = String(n);
    const parts = [`${t.deflected} deflected`];
    if (t.no_question) parts.push(`${t.no_question} without a question, not counted`);
    field(conv, "sub").textContent = parts.join(" · ");

    const res = $("kpi-resolution");
    field(res, "value").textContent = pct(t.confirmed_resolution_rate);
    field(res, "sub").textContent = n ? `${t.deflected_confirmed} of ${n} marked an answer helpful` : "No conversations";

    const csat = $("kpi-csat");
    field(csat, "value").textContent = pct(t.csat.satisfied);
    field(csat, "sub").textContent = t.csat.responses
      ? `Mean ${t.csat.mean.toFixed(2)} / 5 · ${plural(t.csat.responses, "rating")}`
      : "No ratings yet";

    const wait = $("kpi-wait");
    field(wait, "value").textContent = dur(t.queue_wait.median_seconds);
    field(wait, "sub").textContent = t.queue_wait.count
      ? `Median · p90 ${dur(t.queue_wait.p90_seconds)} · ${plural(t.queue_wait.count, "wait")}`
      : "Nobody waited for a person";

    const esc = $("kpi-escalated");
    field(esc, "value").textContent = String(t.escalated);
    const reasons = field(esc, "reasons");
    reasons.replaceChildren();
    const entries = Object.entries(t.escalated_by_reason || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    if (!entries.length) reasons.append(el("li", { class: "reason-none" }, "No escalations"));
    for (const [reason, count] of entries) {
      const bar = el("span", { class: "reason-bar" });
      bar.style.width = `${(count / t.escalated) * 100}%`;
      reasons.append(el("li", { class: "reason", dataset: { reason } },
        el("span", { class: "reason-name", text: REASONS[reason] || reason }),
        el("span", { class: "reason-track", "aria-hidden": "true" }, bar),
        el("span", { class: "reason-count", text: count })));
    }

    const un = $("kpi-unanswered");
    field(un, "value").textContent = String(t.unanswered);
    field(un, "sub").textContent = n ? `${pct(share(t.unanswered, n))} of conversations` : "No conversations";

    const time = $("kpi-time");
    field(time, "value").textContent = dur(t.resolution_time.median_seconds);
    field(time, "sub").textContent = t.resolution_time.count
      ? `Median · p90 ${dur(t.resolution_time.p90_seconds)} · mean ${dur(t.resolution_time.mean_seconds)}`
      : "No closed conversations";
  }

  // ---- charts ------------------------------------------------------------

  const CHART_H = 210;
  const M = { top: 12, right: 14, bottom: 28, left: 46 };

  function bucketLabel(start, bucket, long) {
    if (bucket === "hour") return long ? `${fmtDay.format(start)}, ${fmtHour.format(start)} UTC` : fmtHour.format(start);
    return long ? fmtWeekday.format(start) : fmtDay.format(start);
  }

  /** Rounded tick values from 0 to at least `max`, about four steps. */
  function countTicks(max) {
    if (!(max > 0)) return [0, 1];
    const raw = max / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = Math.max(1, [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw));
    const ticks = [];
    for (let v = 0; v < max + step; v += step) ticks.push(v);
    return ticks;
  }

  function durationTicks(max) {
    if (!(max > 0)) return [0, 1];
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];
    const step = steps.find((s) => max / s <= 4) || Math.ceil(max / 4 / 86400) * 86400;
    const ticks = [];
    for (let v = 0; v < max + step; v += step) ticks.push(v);
    return ticks;
  }

  const PERCENT_TICKS = [0, 0.25, 0.5, 0.75, 1];

  /**
   * The frame of a chart: an SVG sized to its box, horizontal grid lines with
   * the y ticks, x labels under the buckets, and a text alternative.
   */
  function frame(fig, { title, ticks, tickLabel }) {
    const series = S.stats.series;
    const bucket = S.stats.bucket;
    const plot = field(fig, "plot");
    const width = Math.max(280, Math.round(plot.clientWidth || 560));
    const n = series.length;
    const pw = width - M.left - M.right;
    const ph = CHART_H - M.top - M.bottom;
    const band = pw / Math.max(1, n);
    const yMax = ticks[ticks.length - 1];
    const x = (i) => M.left + band * (i + 0.5);
    const y = (v) => M.top + ph * (1 - v / yMax);
    const label = `${title} ${bucket === "hour" ? "by hour" : "by day"}, ${describeRange(S.shown).split(" · ")[0]}. The data table follows.`;
    const root = svg("svg", {
      class: "chart-svg", width, height: CHART_H, viewBox: `0 0 ${width} ${CHART_H}`,
      role: "img", "aria-label": label, tabindex: "0", focusable: "true",
    });
    const grid = svg("g", { class: "grid" });
    for (const t of ticks) {
      const ty = Math.round(y(t)) + 0.5;
      grid.append(svg("line", { x1: M.left, x2: width - M.right, y1: ty, y2: ty, class: t === 0 ? "axis-line" : "grid-line" }));
      grid.append(svg("text", { x: M.left - 8, y: ty, class: "tick tick-y", "text-anchor": "end", "dominant-baseline": "middle", text: tickLabel(t) }));
    }
    root.append(grid);
    // x labels: as many as fit, on round hours for hourly buckets.
    const fit = Math.max(1, Math.floor(pw / 64));
    let step = Math.max(1, Math.ceil(n / fit));
    if (bucket === "hour") step = [1, 2, 3, 4, 6, 12, 24, 48, 72, 168].find((s) => s >= step) || step;
    const xs = svg("g", { class: "x-labels" });
    series.forEach((p, i) => {
      const h = new Date(p.start).getUTCHours();
      const show = bucket === "hour" ? h % step === 0 || (step > 24 && i % step === 0) : i % step === 0;
      if (!show) return;
      const text = bucket === "hour" && h === 0 ? fmtDay.format(p.start) : bucketLabel(p.start, bucket, false);
      xs.append(svg("line", { x1: x(i), x2: x(i), y1: M.top + ph, y2: M.top + ph + 4, class: "axis-tick" }));
      xs.append(svg("text", { x: x(i), y: M.top + ph + 17, class: "tick tick-x", "text-anchor": "middle", text }));
    });
    root.append(xs);
    return { root, series, bucket, n, x, y, band, width, pw, ph, plot, fig };
  }

  /** A hidden table with the chart's numbers, for screen readers. */
  function dataTable(caption, columns, rows) {
    return el("table", { class: "visually-hidden" },
      el("caption", { text: caption }),
      el("thead", null, el("tr", null, columns.map((c) => el("th", { scope: "col", text: c })))),
      el("tbody", null, rows.map((r) => el("tr", null, r.map((c, i) => el(i ? "td" : "th", i ? null : { scope: "row" }, c)))))
    );
  }

  /**
   * Hover and keyboard for a chart: a guide on the bucket under the pointer
   * (or chosen with the arrow keys) and a tooltip with its figures.
   */
  function interact(f, tip) {
    const guide = svg("line", { class: "guide", y1: M.top, y2: M.top + f.ph, x1: 0, x2: 0, visibility: "hidden" });
    f.root.insertBefore(guide, f.root.firstChild.nextSibling);
    const hit = svg("rect", { class: "hit", x: M.left, y: M.top, width: f.pw, height: f.ph + M.bottom - 6 });
    f.root.append(hit);
    let current = -1;
    const show = (i) => {
      current = Math.max(0, Math.min(f.n - 1, i));
      const cx = f.x(current);
      guide.setAttribute("x1", cx);
      guide.setAttribute("x2", cx);
      guide.setAttribute("visibility", "visible");
      f.root.querySelectorAll(".is-current").forEach((e) => e.classList.remove("is-current"));
      f.root.querySelectorAll(`[data-i="${current}"]`).forEach((e) => e.classList.add("is-current"));
      const t = $("tooltip");
      const lines = tip(current);
      t.replaceChildren(el("p", { class: "tip-head", text: bucketLabel(f.series[current].start, f.bucket, true) }),
        ...lines.map(([name, value, cls]) => el("p", { class: "tip-row" },
          el("span", { class: `tip-name ${cls ? `tip-${cls}` : ""}`, text: name }),
          el("span", { class: "tip-value", text: value }))));
      t.hidden = false;
      const box = f.root.getBoundingClientRect();
      const tw = t.offsetWidth;
      const th = t.offsetHeight;
      let left = box.left + cx + 14;
      if (left + tw > window.innerWidth - 8) left = box.left + cx - tw - 14;
      const top = Math.max(8, Math.min(window.innerHeight - th - 8, box.top + M.top));
      t.style.left = `${Math.round(left)}px`;
      t.style.top = `${Math.round(top)}px`;
    };
    const hide = () => {
      current = -1;
      guide.setAttribute("visibility", "hidden");
      f.root.querySelectorAll(".is-current").forEach((e) => e.classList.remove("is-current"));
      $("tooltip").hidden = true;
    };
    f.root.addEventListener("mousemove", (ev) => {
      const box = f.root.getBoundingClientRect();
      const px = ev.clientX - box.left - M.left;
      if (px < 0 || px > f.pw) return hide();
      show(Math.floor(px / f.band));
    });
    f.root.addEventListener("mouseleave", hide);
    f.root.addEventListener("blur", hide);
    f.root.addEventListener("focus", () => show(f.n - 1));
    f.root.addEventListener("keydown", (ev) => {
      const moves = { ArrowLeft: current - 1, ArrowRight: current + 1, Home: 0, End: f.n - 1 };
      if (ev.key in moves) {
        ev.preventDefault();
        show(moves[ev.key]);
      } else if (ev.key === "Escape") {
        hide();
      }
    });
  }

  /** A line chart; `lines` are {key, name, value(point)}; a bucket without a value breaks the line. */
  function lineChart(fig, { title, lines, ticks, tickLabel, valueLabel, tip, tableColumns, tableRow }) {
    const f = frame(fig, { title, ticks, tickLabel });
    for (const line of lines) {
      const g = svg("g", { class: `line line-${line.key}` });
      let d = "";
      let open = false;
      f.series.forEach((p, i) => {
        const v = line.value(p);
        if (v === null || v === undefined) { open = false; return; }
        d += `${open ? "L" : "M"}${f.x(i).toFixed(1)},${f.y(v).toFixed(1)}`;
        open = true;
      });
      g.append(svg("path", { d, class: "line-path" }));
      f.series.forEach((p, i) => {
        const v = line.value(p);
        if (v === null || v === undefined) return;
        g.append(svg("circle", { cx: f.x(i).toFixed(1), cy: f.y(v).toFixed(1), r: 3.5, class: `pt pt-${line.key}`, dataset: { i: String(i) } },
          svg("title", { text: `${bucketLabel(p.start, f.bucket, true)}: ${line.name} ${valueLabel(v, p)}` })));
      });
      f.root.append(g);
    }
    if (f.root.querySelectorAll(".pt").length === 0) {
      f.root.append(svg("text", { x: M.left + f.pw / 2, y: M.top + f.ph / 2, class: "no-data", "text-anchor": "middle", text: "No data in this period" }));
    }
    interact(f, tip);
    f.plot.replaceChildren(f.root, dataTable(title, tableColumns, f.series.map((p) => [bucketLabel(p.start, f.bucket, true), ...tableRow(p)])));
  }

  const OUTCOMES = [
    ["deflected", "Deflected"],
    ["escalated", "Escalated"],
    ["unanswered", "Unanswered"],
  ];

  function volumeChart(fig) {
    const title = "Volume by outcome";
    const max = Math.max(0, ...S.stats.series.map((p) => p.conversations));
    const ticks = countTicks(max);
    const f = frame(fig, { title, ticks, tickLabel: String });
    const bw = Math.max(3, Math.min(34, f.band * 0.62));
    const bars = svg("g", { class: "bars" });
    f.series.forEach((p, i) => {
      const g = svg("g", { class: "bar-group", dataset: { i: String(i) } });
      g.append(svg("title", { text: `${bucketLabel(p.start, f.bucket, true)}: ${plural(p.conversations, "conversation")} (${p.deflected} deflected, ${p.escalated} escalated, ${p.unanswered} unanswered)` }));
      let base = 0;
      for (const [key] of OUTCOMES) {
        const v = p[key];
        if (!v) continue;
        const y0 = f.y(base);
        const y1 = f.y(base + v);
        g.append(svg("rect", { class: `seg seg-${key}`, x: (f.x(i) - bw / 2).toFixed(1), y: y1.toFixed(1), width: bw.toFixed(1), height: Math.max(1, y0 - y1 - 1).toFixed(1), rx: 2 }));
        base += v;
      }
      bars.append(g);
    });
    f.root.append(bars);
    if (max === 0) {
      f.root.append(svg("text", { x: M.left + f.pw / 2, y: M.top + f.ph / 2, class: "no-data", "text-anchor": "middle", text: "No conversations in this period" }));
    }
    interact(f, (i) => {
      const p = f.series[i];
      return [
        ["Conversations", String(p.conversations)],
        ...OUTCOMES.map(([key, name]) => [name, String(p[key]), key]),
      ];
    });
    f.plot.replaceChildren(f.root, dataTable(title, ["Period", "Conversations", "Deflected", "Escalated", "Unanswered"],
      f.series.map((p) => [bucketLabel(p.start, f.bucket, true), p.conversations, p.deflected, p.escalated, p.unanswered].map(String))));
  }

  function renderCharts() {
    lineChart($("chart-deflection"), {
      title: "Deflection rate",
      ticks: PERCENT_TICKS,
      tickLabel: (v) => pct(v, 0),
      valueLabel: (v) => pct(v),
      lines: [
        { key: "confirmed", name: "confirmed resolution", value: (p) => p.confirmed_resolution_rate },
        { key: "deflection", name: "deflection", value: (p) => p.deflection_rate },
      ],
      tip: (i) => {
        const p = S.stats.series[i];
        return p.conversations
          ? [["Deflection", `${pct(p.deflection_rate)} (${p.deflected} of ${p.conversations})`, "deflection"],
             ["Confirmed resolution", `${pct(p.confirmed_resolution_rate)} (${p.deflected_confirmed})`, "confirmed"]]
          : [["No conversations", ""]];
      },
      tableColumns: ["Period", "Deflection rate", "Confirmed resolution rate", "Conversations"],
      tableRow: (p) => [pct(p.deflection_rate), pct(p.confirmed_resolution_rate), String(p.conversations)],
    });
    volumeChart($("chart-volume"));
    lineChart($("chart-csat"), {
      title: "CSAT",
      ticks: PERCENT_TICKS,
      tickLabel: (v) => pct(v, 0),
      valueLabel: (v, p) => `${pct(v)} of ${plural(p.csat.responses, "rating")}`,
      lines: [{ key: "csat", name: "CSAT", value: (p) => p.csat.satisfied }],
      tip: (i) => {
        const c = S.stats.series[i].csat;
        return c.responses
          ? [["Satisfied (4-5)", pct(c.satisfied), "csat"], ["Mean rating", `${c.mean.toFixed(2)} / 5`], ["Ratings", String(c.responses)]]
          : [["No ratings", ""]];
      },
      tableColumns: ["Period", "Satisfied share", "Mean rating", "Ratings"],
      tableRow: (p) => [pct(p.csat.satisfied), p.csat.mean === null ? "–" : p.csat.mean.toFixed(2), String(p.csat.responses)],
    });
    const waitMax = Math.max(0, ...S.stats.series.map((p) => p.queue_wait.median_seconds || 0));
    lineChart($("chart-wait"), {
      title: "Queue wait, median",
      ticks: durationTicks(waitMax),
      tickLabel: durTick,
      valueLabel: (v) => dur(v),
      lines: [{ key: "wait", name: "median wait", value: (p) => p.queue_wait.median_seconds }],
      tip: (i) => {
        const w = S.stats.series[i].queue_wait;
        return w.count
          ? [["Median", dur(w.median_seconds), "wait"], ["p90", dur(w.p90_seconds)], ["Waits", String(w.count)]]
          : [["Nobody waited", ""]];
      },
      tableColumns: ["Period", "Median wait", "p90 wait", "Waits"],
      tableRow: (p) => [dur(p.queue_wait.median_seconds), dur(p.queue_wait.p90_seconds), String(p.queue_wait.count)],
    });
  }

  // ---- content gaps ------------------------------------------------------

  function renderGaps() {
    const gaps = S.gaps;
    const list = $("gap-list");
    $("gaps-count").textContent = gaps.length ? String(gaps.length) : "";
    $("gaps-count").hidden = !gaps.length;
    $("gaps-empty").hidden = gaps.length > 0;
    const shown = S.gapsAll ? gaps : gaps.slice(0, GAPS_SHOWN);
    const top = Math.max(1, ...gaps.map((g) => g.count));
    list.replaceChildren(...shown.map((g, i) => gapItem(g, i + 1, top)));
    const more = $("gaps-more");
    more.hidden = gaps.length <= GAPS_SHOWN;
    more.textContent = S.gapsAll ? "Show fewer" : `Show all ${gaps.length} groups`;
    more.setAttribute("aria-expanded", String(S.gapsAll));
  }

  function gapItem(g, rank, top) {
    const [lead, ...others] = g.examples || [];
    const weight = el("span", { class: "gap-weight-bar" });
    weight.style.width = `${(g.count / top) * 100}%`;
    const kinds = el("div", { class: "gap-kinds" });
    if (g.unanswered) kinds.append(el("span", { class: "badge badge-danger", text: `${g.unanswered} unanswered` }));
    if (g.not_helpful) kinds.append(el("span", { class: "badge badge-warn", text: `${g.not_helpful} not helpful` }));
    const body = el("div", { class: "gap-body" },
      el("p", { class: "gap-lead" }, el("q", { text: lead || "" })),
      others.length ? el("ul", { class: "gap-examples", "aria-label": "Other phrasings" }, others.map((e) => el("li", null, el("q", { text: e })))) : null,
      el("div", { class: "gap-meta" },
        kinds,
        g.terms && g.terms.length
          ? el("div", { class: "gap-terms" }, el("span", { class: "meta-label", text: "Shared terms" }), g.terms.map((t) => el("span", { class: "chip", text: readable(t, g.examples) })))
          : null));
    const a = g.nearest_article;
    const suggestion = g.not_helpful > g.unanswered ? "Improve the answer visitors got" : "Cover this in the content";
    const nearest = el("div", { class: "gap-nearest" },
      el("p", { class: "meta-label", text: "Nearest article" }),
      a
        ? [
            el("p", { class: "gap-article", text: a.title }),
            el("p", { class: "meta-id", text: a.id }),
            confidence(a.confidence),
          ]
        : el("p", { class: "muted small", text: "None in the knowledge base" }),
      el("p", { class: "gap-suggest", text: suggestion }));
    return el("li", { class: "gap", dataset: { rank: String(rank) } },
      el("div", { class: "gap-rank", "aria-hidden": "true", text: rank }),
      el("div", { class: "gap-count" },
        el("span", { class: "gap-count-n", text: g.count }),
        el("span", { class: "gap-count-label", text: g.count === 1 ? "question" : "questions" }),
        el("span", { class: "gap-weight", "aria-hidden": "true" }, weight)),
      body,
      nearest);
  }

  /**
   * The terms come stemmed ("deliveri", "possibl"); show the shortest word of
   * the examples that the stem stands for ("delivery", "possible"), if any.
   */
  function readable(term, examples) {
    const stem = term.toLowerCase();
    const base = /[ie]$/.test(stem) && stem.length > 3 ? stem.slice(0, -1) : stem;
    let best = null;
    for (const e of examples) {
      for (const w of e.toLowerCase().split(/[^\p{L}\p{N}]+/u)) {
        if (w && (w.startsWith(stem) || w.startsWith(base)) && (!best || w.length < best.length)) best = w;
      }
    }
    return best && best.length <= stem.length + 4 ? best : term;
  }

  function confidence(c) {
    const v = Math.max(0, Math.min(1, Number(c) || 0));
    const bar = el("span", { class: "meter-bar" });
    bar.style.width = `${v * 100}%`;
    return el("div", { class: "confidence" },
      el("span", { class: "meter", role: "meter", "aria-label": "Confidence", "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": v.toFixed(2) }, bar),
      el("span", { class: "confidence-value", text: `confidence ${v.toFixed(2)}` }));
  }

  // ---- intents and articles ---------------------------------------------

  function renderSources(kind, rows) {
    const table = $(kind);
    const card = table.closest(".card");
    const all = S.sourcesAll[kind];
    const shown = all ? rows : rows.slice(0, SOURCES_SHOWN);
    table.tBodies[0].replaceChildren(...shown.map((r) => {
      const rated = r.helpful + r.not_helpful;
      const name = kind === "articles"
        ? el("th", { scope: "row" }, el("span", { class: "src-title", text: r.title || r.id }), r.title ? el("span", { class: "meta-id", text: r.id }) : null)
        : el("th", { scope: "row" }, el("code", { class: "src-id", text: r.id }));
      let helpful;
      if (rated) {
        const good = el("span", { class: "meter-bar" });
        good.style.width = `${(r.helpful / rated) * 100}%`;
        helpful = el("td", { class: "share-col" }, el("span", { class: "share-cell" },
          el("span", { class: "meter meter-share", "aria-hidden": "true" }, good),
          el("span", { class: "share-value", text: pct(r.helpful / rated, 0) })));
      } else {
        helpful = el("td", { class: "share-col muted", title: "No feedback yet", text: "–" });
      }
      return el("tr", { dataset: { id: r.id } }, name,
        el("td", { class: "n", text: r.answered }),
        el("td", { class: "n", text: r.helpful }),
        el("td", { class: `n ${r.not_helpful ? "is-bad" : ""}`, text: r.not_helpful }),
        helpful);
    }));
    table.hidden = rows.length === 0;
    field(card, "empty").hidden = rows.length > 0;
    const more = field(card, "more");
    more.hidden = rows.length <= SOURCES_SHOWN;
    more.textContent = all ? "Show fewer" : `Show all ${rows.length}`;
    more.setAttribute("aria-expanded", String(all));
  }

  // ---- CSV export --------------------------------------------------------

  async function exportCsv() {
    const r = S.shown;
    if (!r) return;
    const btn = $("export");
    btn.disabled = true;
    try {
      const res = await api("/api/stats.csv", query(r, { bucket: r.bucket }));
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const last = r.bucket === "day" ? r.to - DAY : r.to - HOUR;
      const name = `frontdesk-stats-${ymd(r.from)}${ymd(last) !== ymd(r.from) ? `-to-${ymd(last)}` : ""}-by-${r.bucket}.csv`;
      const a = el("a", { href: url, download: name, class: "visually-hidden" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.signedOut) signOut(e.message);
      else showError(`Export failed. ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  }

  // ---- sign in and out ---------------------------------------------------

  function showSignIn(error) {
    $("app").hidden = true;
    $("signin").hidden = false;
    $("tooltip").hidden = true;
    const btn = $("signin-submit");
    btn.disabled = false;
    btn.textContent = "Sign in";
    $("signin-error").textContent = error || "";
    $("token").setAttribute("aria-invalid", error ? "true" : "false");
    $("token").focus();
  }

  function showApp() {
    $("signin").hidden = true;
    $("app").hidden = false;
    $("token").value = "";
  }

  function signOut(error) {
    S.seq += 1;
    S.token = null;
    S.stats = null;
    S.gaps = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(error);
  }

  // ---- wiring ------------------------------------------------------------

  function choosePeriod(p) {
    S.period = p;
    S.gapsAll = false;
    S.sourcesAll = { intents: false, articles: false };
    writeHash(p);
    for (const b of document.querySelectorAll(".seg-btn")) {
      b.setAttribute("aria-pressed", String(b.dataset.period === p.kind));
    }
    $("period-title").textContent = PRESETS[p.kind].title;
    load();
  }

  function fillCustomForm() {
    const r = S.shown || rangeOf(S.period);
    $("custom-from").value = S.period.kind === "custom" ? S.period.from : ymd(r.from);
    $("custom-to").value = S.period.kind === "custom" ? S.period.to : ymd(r.to - 1);
    $("custom-bucket").value = r.bucket;
  }

  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      $("signin-error").textContent = "Enter your admin token.";
      $("token").setAttribute("aria-invalid", "true");
      return;
    }
    if (!/^[\x21-\x7e]+$/.test(token)) {
      $("signin-error").textContent = messageFor(401);
      $("token").setAttribute("aria-invalid", "true");
      return;
    }
    $("signin-error").textContent = "";
    $("token").setAttribute("aria-invalid", "false");
    $("signin-submit").disabled = true;
    $("signin-submit").textContent = "Signing in…";
    S.token = token;
    load({ signingIn: true });
  });

  $("signout").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => load());
  $("export").addEventListener("click", () => exportCsv());

  for (const b of document.querySelectorAll(".seg-btn")) {
    b.addEventListener("click", () => {
      if (b.dataset.period === "custom") {
        const form = $("custom-form");
        form.hidden = !form.hidden;
        b.setAttribute("aria-expanded", String(!form.hidden));
        if (!form.hidden) {
          fillCustomForm();
          $("custom-from").focus();
        }
        return;
      }
      $("custom-form").hidden = true;
      choosePeriod({ kind: b.dataset.period });
    });
  }

  $("custom-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const from = $("custom-from").value;
    const to = $("custom-to").value;
    if (!from || !to) return showError("Choose both dates of the custom period.");
    if (from > to) return showError("The start of the period must not be after its end.");
    choosePeriod({ kind: "custom", from, to, bucket: $("custom-bucket").value });
  });

  $("gaps-more").addEventListener("click", () => {
    S.gapsAll = !S.gapsAll;
    renderGaps();
  });
  for (const kind of ["intents", "articles"]) {
    field($(kind).closest(".card"), "more").addEventListener("click", () => {
      S.sourcesAll[kind] = !S.sourcesAll[kind];
      renderSources(kind, S.stats[kind] || []);
    });
  }

  // Charts follow the width of their cards.
  let resizeFrame = 0;
  let lastWidth = 0;
  new ResizeObserver((entries) => {
    const w = Math.round(entries[0].contentRect.width);
    if (w === lastWidth) return;
    lastWidth = w;
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => { if (S.stats && S.shown) renderCharts(); });
  }).observe(document.querySelector(".charts"));

  window.addEventListener("hashchange", () => {
    const p = readHash();
    if (JSON.stringify(p) !== JSON.stringify(S.period) && S.token) choosePeriod(p);
  });
  window.addEventListener("scroll", () => { $("tooltip").hidden = true; }, { passive: true });

  S.period = readHash();
  for (const b of document.querySelectorAll(".seg-btn")) {
    b.setAttribute("aria-pressed", String(b.dataset.period === S.period.kind));
  }
  if (S.token) {
    showApp();
    load();
  } else {
    showSignIn();
  }
})();
