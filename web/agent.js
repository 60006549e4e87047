// The agent console: one websocket to /agent/ws (docs/protocol.md, "Agents").
// Everything that came from a visitor, the bot or another agent is put into
// the page with textContent only, never as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "frontdesk.agent.token";
  const TYPING_EVERY_MS = 2000;
  const TYPING_SHOWN_MS = 5000;
  const $ = (id) => document.getElementById(id);

  const REASONS = {
    requested: "Asked for a person",
    sensitive: "Sensitive topic",
    repeated_fallback: "Bot could not answer",
    negative_feedback: "Unhappy with an answer",
    intent_rule: "Intent rule",
  };
  const STATES = { bot: "With the bot", queued: "Queued", with_agent: "With an agent", closed: "Closed" };
  const ERRORS = {
    auth_failed: "That token was not accepted. Check it and try again.",
    auth_required: "Sign in first.",
    too_many_attempts: "Too many failed sign-ins from this address. Wait 10 minutes, then try again.",
    already_claimed: "Another agent already took this conversation.",
    not_queued: "That conversation is no longer in the queue.",
    not_yours: "You do not hold that conversation.",
    unknown_conversation: "That conversation does not exist (any more).",
    unknown_agent: "That agent is not signed in.",
    unknown_ticket: "That ticket does not exist.",
    conversation_closed: "That conversation is closed.",
    rate_limited: "Slow down: too many actions at once.",
    store_unavailable: "The server could not store that; it will be sent again.",
    message_too_long: "That message is too long.",
    empty_message: "That message is empty.",
  };

  // ---- state -------------------------------------------------------------

  const S = {
    ws: null,
    token: sessionStorage.getItem(TOKEN_KEY),
    welcomed: false,      // a welcome arrived on the current socket
    everWelcomed: false,  // this tab has been signed in
    authFailed: false,
    closing: false,       // we closed the socket on purpose
    me: null,
    admin: false,
    queue: [],
    queueBase: new Map(), // conversation id -> local time it was queued (skew-free)
    convs: new Map(),     // conversation id -> conversation
    unread: new Set(),
    tickets: [],
    online: [],
    view: "conversations",
    selected: null,       // {type: "conv" | "ticket", id}
    outbox: new Map(),    // client id -> {kind, frame, conversation_id?, text, at}
    claiming: new Set(),
    opening: new Set(),
    typingUntil: new Map(),
    openWhy: new Set(),
    drafts: new Map(),
    mode: "reply",
    panel: null,          // "transfer" | "close"
    attempt: 0,
    retryTimer: null,
    retryAt: 0,
    lastTyping: 0,
    seq: 0,
  };

  // ---- helpers -----------------------------------------------------------

  /** Builds an element; children are nodes or strings (as text, never HTML). */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = String(v);
        else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.assign(e.dataset, v);
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
    }
    return e;
  }

  function newId(prefix) {
    S.seq += 1;
    const rnd = Math.floor(Math.random() * 0x100000).toString(36);
    return `${prefix}${Date.now().toString(36)}-${S.seq.toString(36)}-${rnd}`;
  }

  function shortId(id) {
    const s = String(id || "");
    return s.length > 8 ? s.slice(-6) : s;
  }

  function clock(ms) {
    if (!ms) return "";
    const d = new Date(ms);
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return sameDay ? time : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
  }

  function fullTime(ms) {
    return ms ? new Date(ms).toLocaleString() : "";
  }

  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  /** A live "time since" span, refreshed by the ticker. */
  function since(base, cls) {
    return el("span", { class: cls || "since", dataset: { since: String(base) }, text: duration(Date.now() - base) });
  }

  function num(x) {
    return typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(2)) : String(x ?? "–");
  }

  function agentName(a) {
    return typeof a === "string" ? a : (a && a.name) || "";
  }

  function initials(name) {
    const n = String(name || "?").trim();
    return (n[0] || "?").toUpperCase();
  }

  function held(c) {
    return !!c && c.state !== "closed" && c.state !== "queued" && c.agent === S.me;
  }

  function mine() {
    return [...S.convs.values()]
      .filter(held)
      .sort((a, b) => (a.claimed_at || 0) - (b.claimed_at || 0));
  }

  function selectedConv() {
    return S.selected && S.selected.type === "conv" ? S.convs.get(S.selected.id) : null;
  }

  function queueEntry(id) {
    return S.queue.find((q) => q.conversation_id === id);
  }

  function send(frame) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN && S.welcomed) {
      S.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function toast(text, kind) {
    const t = el("div", { class: `toast ${kind || ""}`, role: kind === "error" ? "alert" : "status" }, text);
    $("toasts").append(t);
    setTimeout(() => t.classList.add("toast-out"), 5000);
    setTimeout(() => t.remove(), 5600);
  }

  // ---- connection --------------------------------------------------------

  function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    $("conn-text").textContent = text;
    $("conn-retry").hidden = state !== "waiting";
  }

  function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    if (S.ws) {
      S.closing = true;
      S.ws.close();
    }
    S.closing = false;
    S.welcomed = false;
    setConn("connecting", S.everWelcomed ? "Reconnecting…" : "Connecting…");
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/agent/ws`);
    S.ws = ws;
    ws.addEventListener("open", () => {
      if (S.ws !== ws) return;
      setConn("connecting", "Signing in…");
      ws.send(JSON.stringify({ type: "auth", token: S.token }));
    });
    ws.addEventListener("message", (ev) => {
      if (S.ws !== ws) return;
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      if (f && typeof f.type === "string") handle(f);
    });
    ws.addEventListener("close", (ev) => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.welcomed = false;
      if (S.closing) return;
      if (S.authFailed) return; // the error frame already showed the sign-in form
      if (ev.code === 1008) {
        S.token = null;
        sessionStorage.removeItem(TOKEN_KEY);
        showSignIn("The server refused the sign-in.");
        return;
      }
      if (!S.token) return;
      if (!S.everWelcomed && !sessionStorage.getItem(TOKEN_KEY)) {
        // A first sign-in that could not reach the server.
        showSignIn("Could not reach the server. Check the connection and try again.");
        return;
      }
      scheduleReconnect(ev.code === 1012 ? "Server restarting" : "Disconnected");
    });
  }

  function scheduleReconnect(why) {
    const base = Math.min(15000, 500 * 2 ** S.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    S.attempt += 1;
    S.retryAt = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
      setConn("waiting", `${why} · retrying in ${left}s`);
    };
    tick();
    S.retryTimer = setTimeout(connect, delay);
    renderAll();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    S.token = null;
    clearTimeout(S.retryTimer);
    if (S.ws) {
      S.closing = true;
      S.ws.close(1000);
      S.ws = null;
    }
    Object.assign(S, {
      welcomed: false, everWelcomed: false, authFailed: false, me: null, admin: false,
      queue: [], tickets: [], online: [], selected: null, panel: null, attempt: 0,
    });
    for (const m of [S.queueBase, S.convs, S.unread, S.outbox, S.claiming, S.opening, S.typingUntil, S.drafts]) m.clear();
    $("compose").value = "";
    showSignIn(null);
  }

  function showSignIn(error) {
    $("app").hidden = true;
    $("signin").hidden = false;
    const btn = $("signin-submit");
    btn.disabled = false;
    btn.textContent = "Sign in";
    $("signin-error").textContent = error || "";
    $("token").setAttribute("aria-invalid", error ? "true" : "false");
    document.title = "Sign in · frontdesk agent console";
    $("token").focus();
  }

  function showApp() {
    $("signin").hidden = true;
    $("app").hidden = false;
  }

  // ---- frames from the server ---------------------------------------------

  function handle(f) {
    switch (f.type) {
      case "welcome": return onWelcome(f);
      case "queue": setQueue(f.entries || []); break;
      case "conversation": onConversation(f.conversation); break;
      case "update": onUpdate(f); break;
      case "visitor_message": onVisitorMessage(f); break;
      case "typing": onTyping(f); break;
      case "note": onNote(f); break;
      case "tickets": S.tickets = f.tickets || []; break;
      case "online": S.online = f.agents || []; break;
      case "ack": onAck(f); break;
      case "error": onError(f); break;
      default: return;
    }
    renderAll();
  }

  function onWelcome(f) {
    const first = !S.everWelcomed;
    const wasOther = S.me && S.me !== f.name;
    S.welcomed = true;
    S.everWelcomed = true;
    S.authFailed = false;
    S.attempt = 0;
    S.me = f.name;
    S.admin = !!f.admin;
    sessionStorage.setItem(TOKEN_KEY, S.token);
    if (wasOther) { S.convs.clear(); S.outbox.clear(); S.selected = null; }
    // The conversations I hold, as the server has them now.
    const assigned = new Map((f.assigned || []).map((c) => [c.conversation_id, c]));
    for (const [id, c] of S.convs) {
      if (!assigned.has(id) && c.agent === S.me && c.state !== "closed") {
        // Released, handed on or closed while we were away; the open below refreshes it if on screen.
        c.agent = null;
      }
    }
    for (const [id, c] of assigned) {
      c._loadedAt = Date.now();
      if (!S.convs.has(id) && !first) S.unread.add(id);
      S.convs.set(id, c);
    }
    setQueue(f.queue || []);
    S.tickets = f.tickets || [];
    S.online = f.online || [];
    S.claiming.clear();
    setConn("online", "Connected");
    showApp();
    // Re-open what is on screen if we do not hold it, then resend what was never acknowledged.
    const sel = S.selected;
    if (sel && sel.type === "conv" && !assigned.has(sel.id)) {
      S.opening.add(sel.id);
      send({ type: "open", conversation_id: sel.id });
    }
    for (const item of S.outbox.values()) if (!item.failed) send(item.frame);
    if (first) {
      if (!S.selected) {
        const m = mine();
        if (m.length) select({ type: "conv", id: m[0].conversation_id });
      }
      if (S.typedSignIn) setTimeout(() => focusFirstInList(), 0);
    }
    renderAll();
  }

  /** Tells screen readers about arrivals, without making whole lists live regions. */
  function announce(text) {
    const a = $("announce");
    a.textContent = "";
    setTimeout(() => { a.textContent = text; }, 50);
  }

  function setQueue(entries) {
    const now = Date.now();
    if (S.welcomed) {
      const fresh = entries.filter((q) => !S.queueBase.has(q.conversation_id));
      if (fresh.length === 1) announce(`New in the queue: ${REASONS[fresh[0].reason] || fresh[0].reason || "a conversation"}${fresh[0].priority === "sensitive" ? ", sensitive" : ""}.`);
      else if (fresh.length > 1) announce(`${fresh.length} new conversations in the queue.`);
    }
    const keep = new Map();
    for (const q of entries) {
      // Wait time from waiting_ms, so clock skew between server and browser does not show.
      const base = typeof q.waiting_ms === "number" ? now - q.waiting_ms : q.queued_at || now;
      const old = S.queueBase.get(q.conversation_id);
      keep.set(q.conversation_id, old !== undefined && Math.abs(old - base) < 2000 ? old : base);
    }
    S.queueBase = keep;
    S.queue = entries;
  }

  function onConversation(c) {
    if (!c || !c.conversation_id) return;
    const id = c.conversation_id;
    const prev = S.convs.get(id);
    // An open answered before a claim shows the conversation still queued.
    const claimed = held(c) && S.claiming.delete(id);
    const opened = !claimed && S.opening.delete(id);
    c._loadedAt = Date.now();
    S.convs.set(id, c);
    if (held(c) && !claimed && !opened && !held(prev)) {
      // Handed to me by another agent.
      S.unread.add(id);
      toast(`Visitor ${shortId(id)} is now yours${prev && prev.agent && prev.agent !== S.me ? ` (from ${prev.agent})` : ""}.`, "info");
    }
    if (claimed && held(c)) {
      select({ type: "conv", id });
      setTimeout(() => $("compose").focus(), 0);
    }
  }

  function onUpdate(f) {
    const id = f.conversation_id;
    const c = S.convs.get(id);
    if (f.agent !== S.me && S.claiming.has(id) && f.state !== "queued") S.claiming.delete(id);
    if (!c) return;
    const wasMine = held(c);
    c.state = f.state;
    c.agent = f.agent ?? (f.state === "queued" ? null : c.agent);
    if (f.state === "closed" && c._closingNote !== undefined) c.resolution = c._closingNote || c.resolution;
    if (wasMine && !held(c)) {
      S.unread.delete(id);
      if (f.state === "closed") toast(`Conversation ${shortId(id)} closed.`, "info");
      else if (f.state === "queued") toast(`Conversation ${shortId(id)} is back in the queue.`, "info");
      else if (f.agent) toast(`Conversation ${shortId(id)} is now with ${f.agent}.`, "info");
      if (S.selected && S.selected.id === id) S.panel = null;
    }
  }

  function onVisitorMessage(f) {
    const c = S.convs.get(f.conversation_id);
    S.typingUntil.delete(f.conversation_id);
    if (!c) return;
    c.history = c.history || [];
    if (f.id && c.history.some((h) => h.role === "visitor" && h.id === f.id)) return;
    c.history.push({ role: "visitor", text: f.text, at: f.at || Date.now(), id: f.id });
    const onScreen = S.selected && S.selected.id === f.conversation_id && S.view === "conversations" && !document.hidden;
    if (held(c) && !onScreen) {
      S.unread.add(f.conversation_id);
      announce(`New message from visitor ${shortId(f.conversation_id)}.`);
    }
  }

  function onTyping(f) {
    S.typingUntil.set(f.conversation_id, Date.now() + TYPING_SHOWN_MS);
    setTimeout(renderTyping, TYPING_SHOWN_MS + 50);
  }

  function onNote(f) {
    const c = S.convs.get(f.conversation_id);
    if (!c) return;
    c.notes = c.notes || [];
    if (f.name === S.me) {
      // My own note coming back: match it with what I sent.
      for (const [id, item] of S.outbox) {
        if (item.kind === "note" && item.conversation_id === f.conversation_id && item.text === f.text) {
          S.outbox.delete(id);
          c.notes.push({ name: f.name, text: f.text, at: f.at, _id: id, _echoed: true });
          return;
        }
      }
      const acked = c.notes.find((n) => n._id && !n._echoed && n.text === f.text);
      if (acked) { acked._echoed = true; acked.at = f.at || acked.at; return; }
    }
    c.notes.push({ name: f.name, text: f.text, at: f.at || Date.now() });
  }

  function onAck(f) {
    const item = S.outbox.get(f.id);
    if (!item) return;
    S.outbox.delete(f.id);
    const now = Date.now();
    if (item.kind === "message") {
      const c = S.convs.get(item.conversation_id);
      // The server's history has no ids for agent messages: after a reconnect the message
      // may already be there (stored, ack lost, resent, acked as a duplicate).
      if (c && !alreadyStored(c, item)) {
        (c.history = c.history || []).push({ role: "agent", text: item.text, at: now, name: S.me, id: f.id });
      }
    } else if (item.kind === "note") {
      const c = S.convs.get(item.conversation_id);
      if (c) (c.notes = c.notes || []).push({ name: S.me, text: item.text, at: now, _id: f.id });
    } else if (item.kind === "ticket") {
      const t = S.tickets.find((x) => x.ticket_id === item.ticket_id);
      if (t && !t.answer) Object.assign(t, { answer: item.text, answered_by: S.me, answered_at: now });
      toast("Answer stored.", "ok");
    }
  }

  /**
   * Whether the server's copy of a conversation already holds an outgoing message:
   * only a copy loaded after the message was first sent can (history has no ids
   * for agent messages, so match the author and text).
   */
  function alreadyStored(c, item) {
    if (!c._loadedAt || c._loadedAt < item.at) return false;
    return (c.history || []).some((h) => h.role === "agent" && h.name === S.me && h.text === item.text && h.at >= item.at - 300000);
  }

  function onError(f) {
    const code = f.code || "error";
    if (!S.welcomed && (code === "auth_failed" || code === "too_many_attempts" || code === "auth_required")) {
      S.authFailed = true;
      S.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(ERRORS[code] || f.message || code);
      return;
    }
    if (f.conversation_id) {
      S.claiming.delete(f.conversation_id);
      S.opening.delete(f.conversation_id);
    }
    if (["not_yours", "conversation_closed", "unknown_conversation", "unknown_ticket", "empty_message", "message_too_long", "invalid_frame"].includes(code)) {
      // Refused for good: what waits for an ack about it will not get one.
      const waiting = [...S.outbox.values()].filter((o) => !o.failed);
      const hits = f.conversation_id
        ? waiting.filter((o) => o.conversation_id === f.conversation_id)
        : code === "unknown_ticket" ? waiting.filter((o) => o.kind === "ticket") : waiting.slice(-1);
      for (const o of hits) o.failed = ERRORS[code] || f.message || code;
    }
    if (code === "already_claimed") {
      toast(f.message ? `Not claimed: ${f.message}.` : ERRORS.already_claimed, "error");
      return;
    }
    if (code === "store_unavailable") {
      // Unacknowledged frames stay in the outbox: try again shortly (the server drops duplicates).
      toast(ERRORS.store_unavailable, "error");
      clearTimeout(S.resendTimer);
      S.resendTimer = setTimeout(() => { for (const o of S.outbox.values()) if (!o.failed) send(o.frame); }, 3000);
      return;
    }
    toast(f.message || ERRORS[code] || code, "error");
  }

  // ---- actions ----------------------------------------------------------------

  function select(sel) {
    const prev = S.selected;
    if (prev && prev.type === "conv") S.drafts.set(prev.id, $("compose").value);
    if (!prev || prev.id !== (sel && sel.id)) S.panel = null;
    S.selected = sel;
    if (sel && sel.type === "conv") {
      S.unread.delete(sel.id);
      $("compose").value = S.drafts.get(sel.id) || "";
      const c = S.convs.get(sel.id);
      if (!held(c)) {
        S.opening.add(sel.id);
        send({ type: "open", conversation_id: sel.id });
      }
      S.mode = held(c) || !c ? "reply" : S.mode;
    }
    renderAll(true);
  }

  function claim(id) {
    if (S.claiming.has(id)) return;
    // Load it too, so the view shows it whoever wins the claim.
    if (!S.convs.has(id) && send({ type: "open", conversation_id: id })) S.opening.add(id);
    if (send({ type: "claim", conversation_id: id })) {
      S.claiming.add(id);
      if (!S.selected || S.selected.id !== id) {
        S.selected = { type: "conv", id };
        S.panel = null;
      }
    } else toast("Not connected; try again when the connection is back.", "error");
    renderAll(true);
  }

  function queueOutgoing(kind, frame, extra) {
    const item = { kind, frame, at: Date.now(), ...extra };
    S.outbox.set(frame.id, item);
    send(frame);
    renderAll();
  }

  function submitCompose() {
    const c = selectedConv();
    const box = $("compose");
    const text = box.value.trim();
    if (!c || !text) return;
    const id = newId(S.mode === "note" ? "n" : "g");
    if (S.mode === "note") {
      queueOutgoing("note", { type: "note", conversation_id: c.conversation_id, id, text }, { conversation_id: c.conversation_id, text });
    } else {
      if (!held(c)) return toast("Claim the conversation to reply.", "error");
      queueOutgoing("message", { type: "message", conversation_id: c.conversation_id, id, text }, { conversation_id: c.conversation_id, text });
    }
    box.value = "";
    S.drafts.delete(c.conversation_id);
    S.lastTyping = 0;
    scrollTranscript(true);
  }

  function setMode(mode) {
    const c = selectedConv();
    if (mode === "reply" && !held(c)) return;
    S.mode = mode;
    renderComposer();
    $("compose").focus();
  }

  function openPanel(kind) {
    S.panel = S.panel === kind ? null : kind;
    renderConversation();
    const first = $("conv-panel").querySelector("select, textarea, input, button");
    if (first) first.focus();
  }

  // ---- rendering ----------------------------------------------------------------

  function renderAll(full) {
    if (!S.everWelcomed && !S.token) return;
    // Lists and buttons are rebuilt: keep the keyboard focus where it was.
    const focused = document.activeElement && document.activeElement.id;
    renderTop();
    renderLists();
    renderDetail(full);
    if (focused && (document.activeElement === document.body || !document.activeElement)) {
      const again = document.getElementById(focused);
      if (again && !again.disabled && again.offsetParent !== null) again.focus({ preventScroll: true });
    }
    const unread = [...S.unread].filter((id) => held(S.convs.get(id))).length;
    document.title = `${unread ? `(${unread}) ` : ""}${S.me ? `${S.me} · ` : ""}frontdesk agent console`;
  }

  function renderTop() {
    $("me-name").textContent = S.me ? `${S.me}${S.admin ? " · admin" : ""}` : "";
    $("me-avatar").textContent = S.me ? initials(S.me) : "";
    const list = $("online-list");
    list.replaceChildren(...S.online.map((a) => {
      const name = agentName(a);
      return el("li", { class: `online-agent${name === S.me ? " is-me" : ""}`, title: name === S.me ? `${name} (you)` : name },
        el("span", { class: "avatar avatar-sm", "aria-hidden": "true", text: initials(name) }),
        el("span", { class: "online-name", text: name }));
    }));
    if (!S.online.length) list.append(el("li", { class: "muted small", text: S.welcomed ? "nobody" : "–" }));
  }

  function renderLists() {
    const tabs = { conversations: $("tab-conversations"), tickets: $("tab-tickets") };
    for (const [name, tab] of Object.entries(tabs)) {
      const on = S.view === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    $("pane-conversations").hidden = S.view !== "conversations";
    $("pane-tickets").hidden = S.view !== "tickets";

    const held_ = mine();
    const unread = held_.filter((c) => S.unread.has(c.conversation_id)).length;
    $("count-unread").hidden = !unread;
    $("count-unread").textContent = unread ? `${unread} new` : "";
    $("count-mine").textContent = String(held_.length);
    $("mine-empty").hidden = held_.length > 0;
    $("mine-list").replaceChildren(...held_.map(mineItem));

    $("count-queue").textContent = String(S.queue.length);
    $("queue-empty").hidden = S.queue.length > 0;
    $("queue-empty").textContent = S.welcomed || S.everWelcomed ? "Nobody is waiting." : "Connecting…";
    $("queue-list").replaceChildren(...S.queue.map(queueItem));

    const open = S.tickets.filter((t) => !t.answer).length;
    $("count-tickets").hidden = !open;
    $("count-tickets").textContent = String(open);
    $("count-open-tickets").textContent = `${open} open`;
    $("tickets-empty").hidden = S.tickets.length > 0;
    const sorted = [...S.tickets].sort((a, b) => (!!a.answer - !!b.answer) || (b.created_at - a.created_at));
    $("ticket-list").replaceChildren(...sorted.map(ticketItem));
  }

  function isSelected(type, id) {
    return !!S.selected && S.selected.type === type && S.selected.id === id;
  }

  function lastVisitorText(c) {
    const h = (c.history || []).filter((x) => x.role === "visitor");
    return h.length ? h[h.length - 1].text : "";
  }

  function mineItem(c) {
    const id = c.conversation_id;
    const unread = S.unread.has(id);
    const sel = isSelected("conv", id);
    const last = lastVisitorText(c);
    const hist = c.history || [];
    const lastEntry = hist[hist.length - 1];
    const awaiting = lastEntry && lastEntry.role === "visitor";
    const time = awaiting
      ? el("span", { class: "item-time wait", title: "The visitor is waiting for a reply" }, el("span", { class: "visually-hidden", text: "waiting for a reply " }), since(lastEntry.at))
      : el("span", { class: "item-time", title: lastEntry ? fullTime(lastEntry.at) : null, text: lastEntry ? clock(lastEntry.at) : "" });
    return el("li", { class: `item${sel ? " is-selected" : ""}${unread ? " is-unread" : ""}${c.priority === "sensitive" ? " is-sensitive" : ""}`, dataset: { conversation: id } },
      el("button", { id: `mine-${id}`, class: "item-main", type: "button", "aria-current": sel ? "true" : null, onclick: () => select({ type: "conv", id }) },
        el("span", { class: "item-top" },
          unread ? el("span", { class: "unread-dot", title: "New message" }, el("span", { class: "visually-hidden", text: "New message: " })) : null,
          el("span", { class: "item-title", text: `Visitor ${shortId(id)}` }),
          c.priority === "sensitive" ? el("span", { class: "badge badge-danger", text: "Sensitive" }) : null,
          time),
        el("span", { class: "item-sub", text: REASONS[c.reason] || c.reason || "" }),
        last ? el("span", { class: "item-text", text: last }) : null));
  }

  function queueItem(q) {
    const id = q.conversation_id;
    const sel = isSelected("conv", id);
    const claiming = S.claiming.has(id);
    const sensitive = q.priority === "sensitive";
    return el("li", { class: `item item-queue${sel ? " is-selected" : ""}${sensitive ? " is-sensitive" : ""}`, dataset: { conversation: id } },
      el("button", { id: `queue-${id}`, class: "item-main", type: "button", "aria-current": sel ? "true" : null, onclick: () => select({ type: "conv", id }) },
        el("span", { class: "item-top" },
          el("span", { class: "item-title", text: `Visitor ${shortId(id)}` }),
          sensitive ? el("span", { class: "badge badge-danger", text: "Sensitive" }) : null,
          el("span", { class: "item-time wait", title: q.queued_at ? `Queued ${fullTime(q.queued_at)}` : null },
            el("span", { class: "visually-hidden", text: "waiting " }), since(S.queueBase.get(id) ?? q.queued_at))),
        el("span", { class: "item-sub" },
          el("span", { class: "reason", dataset: { reason: q.reason || "" }, text: REASONS[q.reason] || q.reason || "" }),
          q.messages_waiting ? el("span", { class: "pill pill-accent", title: "Visitor messages since it was queued", text: `${q.messages_waiting} ${q.messages_waiting === 1 ? "message" : "messages"}` }) : null),
        q.last_message ? el("span", { class: "item-text", text: q.last_message }) : null),
      el("button", { id: `claim-${id}`, class: "btn btn-sm btn-primary item-claim", type: "button", disabled: claiming, "aria-label": `Claim conversation with visitor ${shortId(id)}`, onclick: () => claim(id) },
        claiming ? "Claiming…" : "Claim"));
  }

  function ticketItem(t) {
    const sel = isSelected("ticket", t.ticket_id);
    return el("li", { class: `item${sel ? " is-selected" : ""}${t.answer ? " is-done" : ""}`, dataset: { ticket: t.ticket_id } },
      el("button", { id: `ticket-${t.ticket_id}`, class: "item-main", type: "button", "aria-current": sel ? "true" : null, onclick: () => select({ type: "ticket", id: t.ticket_id }) },
        el("span", { class: "item-top" },
          el("span", { class: "item-title", text: t.email }),
          t.answer ? el("span", { class: "badge badge-ok", text: "Answered" }) : el("span", { class: "badge badge-warn", text: "Open" }),
          el("span", { class: "item-time", title: fullTime(t.created_at), text: clock(t.created_at) })),
        el("span", { class: "item-text", text: t.text })));
  }

  function renderSummary() {
    const box = $("empty-summary");
    if (!S.welcomed && !S.everWelcomed) return box.replaceChildren();
    const now = Date.now();
    const sensitive = S.queue.filter((q) => q.priority === "sensitive").length;
    const longest = S.queue.reduce((m, q) => Math.min(m, S.queueBase.get(q.conversation_id) ?? now), now);
    const stat = (value, label, cls) => el("div", { class: `stat ${cls || ""}` }, el("span", { class: "stat-value" }, value), el("span", { class: "stat-label", text: label }));
    box.replaceChildren(
      stat(String(S.queue.length), "waiting"),
      stat(String(sensitive), "sensitive", sensitive ? "stat-danger" : ""),
      stat(S.queue.length ? since(longest) : "–", "longest wait"),
      stat(String(mine().length), "yours"),
      stat(String(S.tickets.filter((t) => !t.answer).length), "open tickets"));
  }

  function renderDetail(full) {
    const sel = S.selected;
    const conv = sel && sel.type === "conv";
    const ticket = sel && sel.type === "ticket" ? S.tickets.find((t) => t.ticket_id === sel.id) : null;
    $("empty-view").hidden = !!(conv || ticket);
    $("conv-view").hidden = !conv;
    $("ticket-view").hidden = !ticket;
    if (!conv && !ticket) renderSummary();
    if (conv) renderConversation(full);
    if (ticket) renderTicket(ticket);
  }

  function renderConversation(full) {
    const id = S.selected.id;
    const c = S.convs.get(id);
    const q = queueEntry(id);
    const state = c ? c.state : q ? "queued" : "loading";
    const priority = (c && c.priority) || (q && q.priority);
    const reason = (c && c.reason) || (q && q.reason);

    $("conv-title").textContent = `Visitor ${shortId(id)}`;
    $("conv-title").title = id;
    const meta = [];
    meta.push(el("span", { class: `badge badge-state state-${state}`, text: STATES[state] || (state === "loading" ? "Loading…" : state) }));
    if (priority === "sensitive") meta.push(el("span", { class: "badge badge-danger", text: "Sensitive" }));
    if (reason) meta.push(el("span", { class: "meta-item", text: REASONS[reason] || reason }));
    if (state === "queued") {
      const base = S.queueBase.get(id) ?? (c && c.queued_at);
      if (base) meta.push(el("span", { class: "meta-item" }, "waiting ", since(base)));
    } else if (c && c.agent && state !== "closed") {
      meta.push(el("span", { class: "meta-item", text: c.agent === S.me ? "with you" : `with ${c.agent}` }));
      if (c.claimed_at) meta.push(el("span", { class: "meta-item", title: fullTime(c.claimed_at) }, "for ", since(c.claimed_at)));
    }
    $("conv-meta").replaceChildren(...meta);

    // Actions.
    const actions = [];
    const mineNow = held(c);
    if (state === "queued") {
      const claiming = S.claiming.has(id);
      actions.push(el("button", { id: "act-claim", class: "btn btn-primary", type: "button", disabled: claiming, onclick: () => claim(id) }, claiming ? "Claiming…" : "Claim"));
    }
    if (mineNow) {
      actions.push(
        el("button", { id: "act-release", class: "btn", type: "button", title: "Put it back in the queue at its original place", onclick: () => send({ type: "release", conversation_id: id }) }, "Release"),
        el("button", { id: "act-transfer", class: `btn${S.panel === "transfer" ? " is-active" : ""}`, type: "button", "aria-expanded": String(S.panel === "transfer"), "aria-controls": "conv-panel", onclick: () => openPanel("transfer") }, "Transfer…"),
        el("button", { id: "act-close", class: `btn btn-danger-outline${S.panel === "close" ? " is-active" : ""}`, type: "button", "aria-expanded": String(S.panel === "close"), "aria-controls": "conv-panel", onclick: () => openPanel("close") }, "Close…"));
    }
    $("conv-actions").replaceChildren(...actions);

    renderPanel(c, mineNow);
    if (full || S._shown !== id || S._version !== versionOf(c)) renderTranscript(c, full || S._shown !== id);
    S._shown = id;
    S._version = versionOf(c);
    renderTyping();
    renderComposer();
  }

  function versionOf(c) {
    if (!c) return "none";
    const pend = [...S.outbox.values()].filter((o) => o.conversation_id === c.conversation_id).length;
    const failed = [...S.outbox.values()].filter((o) => o.conversation_id === c.conversation_id && o.failed).length;
    return `${(c.history || []).length}/${(c.notes || []).length}/${pend}/${failed}/${c.state}/${c.agent}/${c.resolution || ""}`;
  }

  function renderPanel(c, mineNow) {
    const panel = $("conv-panel");
    if (!mineNow || !S.panel) {
      if (S.panel && !mineNow) S.panel = null;
      panel.hidden = true;
      panel.dataset.key = "";
      panel.replaceChildren();
      return;
    }
    const id = c.conversation_id;
    const others = S.online.map(agentName).filter((n) => n && n !== S.me);
    const key = `${S.panel}/${id}/${S.panel === "transfer" ? others.join(",") : ""}`;
    if (panel.dataset.key === key && !panel.hidden) return; // keep what is typed or chosen, and the focus
    panel.hidden = false;
    panel.dataset.key = key;
    if (S.panel === "transfer") {
      const keep = panel.querySelector("select") ? panel.querySelector("select").value : "";
      if (!others.length) {
        panel.replaceChildren(el("div", { class: "panel-row" },
          el("span", { class: "muted", text: "No other agent is online to take this conversation." }),
          el("button", { class: "btn btn-sm", type: "button", onclick: () => openPanel(null) }, "Cancel")));
        return;
      }
      const select_ = el("select", { id: "transfer-to", name: "to" }, ...others.map((n) => el("option", { value: n, text: n })));
      if (others.includes(keep)) select_.value = keep;
      const form = el("form", { class: "panel-row", id: "transfer-form", novalidate: true },
        el("label", { for: "transfer-to", text: "Transfer to" }), select_,
        el("button", { class: "btn btn-primary btn-sm", type: "submit" }, "Transfer"),
        el("button", { class: "btn btn-sm", type: "button", onclick: () => openPanel(null) }, "Cancel"));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (send({ type: "transfer", conversation_id: id, to: select_.value })) S.panel = null;
        renderAll();
      });
      panel.replaceChildren(form);
    } else if (S.panel === "close") {
      const note = el("textarea", { id: "resolution", name: "note", rows: "2", maxlength: "2000", placeholder: "What was the outcome? e.g. refund issued, order re-sent" });
      const form = el("form", { class: "panel-col", id: "close-form", novalidate: true },
        el("label", { for: "resolution", text: "Resolution note" }), note,
        el("div", { class: "panel-buttons" },
          el("span", { class: "muted small", text: "Kept with the conversation for the team; not shown to the visitor." }),
          el("button", { class: "btn btn-sm", type: "button", onclick: () => openPanel(null) }, "Cancel"),
          el("button", { class: "btn btn-danger btn-sm", type: "submit", id: "close-confirm" }, "Close conversation")));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const text = note.value.trim();
        const frame = { type: "close", conversation_id: id };
        if (text) frame.note = text;
        if (send(frame)) { c._closingNote = text; S.panel = null; }
        else toast("Not connected; try again when the connection is back.", "error");
        renderAll();
      });
      note.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
      });
      panel.replaceChildren(form);
    }
  }

  function nearBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function scrollTranscript(force) {
    const box = $("transcript");
    if (force || nearBottom(box)) box.scrollTop = box.scrollHeight;
  }

  function renderTranscript(c, jump) {
    const box = $("transcript");
    const stick = jump || nearBottom(box);
    const top = box.scrollTop;
    if (!c) {
      box.replaceChildren(el("p", { class: "transcript-empty muted", text: "Loading the conversation…" }));
      return;
    }
    const items = [];
    (c.history || []).forEach((h, i) => items.push({ at: h.at || 0, order: i, node: () => entryNode(h) }));
    (c.notes || []).forEach((n, i) => items.push({ at: n.at || 0, order: 1e6 + i, node: () => noteNode(n, false) }));
    let k = 0;
    for (const o of S.outbox.values()) {
      if (o.conversation_id !== c.conversation_id) continue;
      if (o.kind === "message" && alreadyStored(c, o)) continue;
      k += 1;
      items.push({ at: Infinity, order: 2e6 + k, node: () => (o.kind === "note" ? noteNode({ name: S.me, text: o.text, at: o.at }, o.failed || true) : entryNode({ role: "agent", name: S.me, text: o.text, at: o.at }, o.failed || true)) });
    }
    items.sort((a, b) => a.at - b.at || a.order - b.order);
    const nodes = [];
    let day = "";
    for (const it of items) {
      const at = it.at === Infinity ? Date.now() : it.at;
      const d = at ? new Date(at).toDateString() : "";
      if (d && d !== day) {
        day = d;
        nodes.push(el("div", { class: "day", role: "separator", text: d === new Date().toDateString() ? "Today" : new Date(at).toLocaleDateString([], { weekday: "short", month: "short", day: "numeric" }) }));
      }
      nodes.push(it.node());
    }
    if (c.state === "closed") {
      nodes.push(el("div", { class: "closed-card" },
        el("strong", { text: "Conversation closed" }),
        c.resolution ? el("p", {}, el("span", { class: "muted", text: "Resolution: " }), c.resolution) : null));
    }
    if (!nodes.length) nodes.push(el("p", { class: "transcript-empty muted", text: "No messages yet." }));
    box.replaceChildren(...nodes);
    if (stick) box.scrollTop = box.scrollHeight;
    else box.scrollTop = top;
  }

  function entryNode(h, pending) {
    const role = ["visitor", "bot", "agent", "system"].includes(h.role) ? h.role : "system";
    if (role === "system") {
      return el("div", { class: "entry entry-system" },
        el("span", { text: h.text }),
        el("time", { class: "entry-time", title: fullTime(h.at), text: clock(h.at) }));
    }
    const who = role === "visitor" ? "Visitor" : role === "bot" ? "Bot" : h.name || "Agent";
    const head = el("div", { class: "entry-head" },
      el("span", { class: "entry-who", text: role === "agent" && h.name === S.me ? `${who} (you)` : who }),
      role === "bot" && h.kind ? el("span", { class: `kind kind-${h.kind}`, text: h.kind }) : null,
      el("time", { class: "entry-time", title: fullTime(h.at), text: clock(h.at) }),
      pending ? el("span", { class: `entry-status ${pending === true ? "pending" : "failed"}`, text: pending === true ? "Sending…" : `Not sent: ${pending}` }) : null);
    const body = el("div", { class: "bubble" }, el("div", { class: "bubble-text", text: h.text }));
    if (role === "bot") {
      if (h.source) {
        const s = h.source;
        const label = s.title || s.id || "";
        body.append(el("div", { class: "source" }, el("span", { class: "muted", text: s.type === "article" ? "Article: " : `${s.type || "Source"}: ` }), label));
      }
      if (h.quick_replies && h.quick_replies.length) {
        body.append(el("div", { class: "offered" }, el("span", { class: "muted", text: "Offered: " }),
          ...h.quick_replies.map((q) => el("span", { class: "chip", text: q.label || q.value }))));
      }
    }
    const node = el("div", { class: `entry entry-${role}${pending ? " is-pending" : ""}`, dataset: h.id ? { id: h.id } : undefined }, head, body);
    if (role === "bot" && h.explanation) node.append(whyNode(h.explanation, h.answer_id || `${h.at}`));
    return node;
  }

  function noteNode(n, pending) {
    return el("div", { class: `entry entry-note${pending ? " is-pending" : ""}` },
      el("div", { class: "entry-head" },
        el("span", { class: "entry-who", text: n.name === S.me ? `${n.name} (you)` : n.name }),
        el("span", { class: "note-tag", text: "Internal note · not shown to visitor" }),
        el("time", { class: "entry-time", title: fullTime(n.at), text: clock(n.at) }),
        pending ? el("span", { class: `entry-status ${pending === true ? "pending" : "failed"}`, text: pending === true ? "Saving…" : `Not saved: ${pending}` }) : null),
      el("div", { class: "bubble" }, el("div", { class: "bubble-text", text: n.text })));
  }

  function whyNode(x, key) {
    if (typeof x === "string") {
      try { x = JSON.parse(x); } catch { x = { rule: x }; }
    }
    if (!x || typeof x !== "object") return null;
    const d = el("details", { class: "why" });
    if (S.openWhy.has(key)) d.open = true;
    d.addEventListener("toggle", () => (d.open ? S.openWhy.add(key) : S.openWhy.delete(key)));
    d.append(el("summary", { id: `why-${key}` }, el("span", { class: "why-label", text: "Why" }), el("span", { class: "why-rule", text: x.rule || "no rule recorded" })));
    const dl = el("dl", { class: "why-grid" });
    const row = (k, ...v) => dl.append(el("dt", { text: k }), el("dd", {}, ...v));
    if (x.rule) row("Rule", x.rule);
    const th = [];
    if (x.answer_threshold !== undefined) th.push(`answer ≥ ${num(x.answer_threshold)}`);
    if (x.clarify_threshold !== undefined) th.push(`clarify ≥ ${num(x.clarify_threshold)}`);
    if (x.clarify_margin !== undefined) th.push(`margin ${num(x.clarify_margin)}`);
    if (th.length) row("Thresholds", th.join(" · "));
    if (x.score !== undefined) row("Score", num(x.score));
    if (x.fallbacks_in_a_row !== undefined) row("Fallbacks in a row", num(x.fallbacks_in_a_row));
    if (Array.isArray(x.sensitive) && x.sensitive.length) row("Sensitive", x.sensitive.join(", "));
    if (Array.isArray(x.intents) && x.intents.length) {
      row("Intents", el("ul", { class: "why-list" }, ...x.intents.map((i) =>
        el("li", {}, el("strong", { text: i.id }), ` · priority ${num(i.priority)} · by ${i.by} `, el("code", { text: i.rule })))));
    }
    if (Array.isArray(x.articles) && x.articles.length) {
      const table = el("table", { class: "why-table" },
        el("thead", {}, el("tr", {}, ...["Article", "Confidence", "Best phrase", "Phrase", "Centroid", "BM25"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, ...x.articles.map((a) => el("tr", {},
          el("td", { text: a.id }), el("td", { class: "n", text: num(a.confidence) }), el("td", { text: a.best_phrase }),
          el("td", { class: "n", text: num(a.best_phrase_score) }), el("td", { class: "n", text: num(a.centroid_score) }), el("td", { class: "n", text: num(a.bm25) })))));
      row("Articles", table);
    }
    if (Array.isArray(x.terms) && x.terms.length) row("Terms", x.terms.join(" "));
    if (Array.isArray(x.corrections) && x.corrections.length) row("Corrections", x.corrections.map((p) => (Array.isArray(p) ? `${p[0]} → ${p[1]}` : String(p))).join(", "));
    if (Array.isArray(x.unknown_terms) && x.unknown_terms.length) row("Unknown terms", x.unknown_terms.join(" "));
    d.append(dl);
    return d;
  }

  function renderTyping() {
    const box = $("typing");
    const id = S.selected && S.selected.type === "conv" ? S.selected.id : null;
    const until = id ? S.typingUntil.get(id) || 0 : 0;
    const on = until > Date.now();
    if (!on && id) S.typingUntil.delete(id);
    if (box.dataset.on === String(on)) return;
    box.dataset.on = String(on);
    box.replaceChildren(...(on ? [el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i")), "Visitor is typing…"] : []));
  }

  function renderComposer() {
    const c = selectedConv();
    const mineNow = held(c);
    const closed = !c || c.state === "closed";
    const form = $("composer");
    form.hidden = closed;
    if (!mineNow && S.mode === "reply") S.mode = "note";
    form.dataset.mode = S.mode;
    $("mode-reply").setAttribute("aria-pressed", String(S.mode === "reply"));
    $("mode-note").setAttribute("aria-pressed", String(S.mode === "note"));
    $("mode-reply").disabled = !mineNow;
    $("mode-reply").title = mineNow ? "" : "Claim the conversation to reply";
    $("compose").placeholder = S.mode === "note" ? "Add an internal note for the team…" : "Write a reply to the visitor…";
    $("compose-label").textContent = S.mode === "note" ? "Internal note" : "Reply to the visitor";
    $("compose-send").textContent = S.mode === "note" ? "Add note" : "Send";
    $("composer-hint").textContent = S.mode === "note" ? "Only agents see notes" : "";

    const bar = $("claim-bar");
    const q = S.selected ? queueEntry(S.selected.id) : null;
    const state = c ? c.state : q ? "queued" : null;
    if (state === "queued" || (c && !mineNow && c.state !== "closed")) {
      bar.hidden = false;
      const text = state === "queued" ? "Waiting in the queue. Claim it to reply to the visitor." : c && c.agent ? `${c.agent} is handling this conversation. You can add notes.` : "You can view this conversation.";
      const claiming = S.claiming.has(S.selected.id);
      bar.replaceChildren(el("span", { text }), state === "queued"
        ? el("button", { class: "btn btn-primary btn-sm", type: "button", disabled: claiming, onclick: () => claim(S.selected.id) }, claiming ? "Claiming…" : "Claim and reply")
        : null);
    } else {
      bar.hidden = true;
      bar.replaceChildren();
    }
  }

  function renderTicket(t) {
    const view = $("ticket-view");
    if (view.dataset.ticket === t.ticket_id && view.dataset.answered === String(!!t.answer) && view.dataset.pending === String(ticketPending(t))) return;
    view.dataset.ticket = t.ticket_id;
    view.dataset.answered = String(!!t.answer);
    view.dataset.pending = String(ticketPending(t));
    const head = el("header", { class: "conv-head" },
      el("div", { class: "conv-id" },
        el("h2", { id: "ticket-title", class: "conv-title", text: t.email, title: t.ticket_id }),
        el("div", { class: "conv-meta" },
          t.answer ? el("span", { class: "badge badge-ok", text: "Answered" }) : el("span", { class: "badge badge-warn", text: "Open" }),
          t.reason ? el("span", { class: "meta-item", text: t.reason === "outside_hours" ? "Left outside hours" : t.reason === "no_agents" ? "Left while nobody was online" : t.reason }) : null,
          el("span", { class: "meta-item", title: fullTime(t.created_at), text: `received ${clock(t.created_at)}` }))),
      t.conversation_id ? el("div", { class: "conv-actions" },
        el("button", { class: "btn", type: "button", onclick: () => { S.view = "conversations"; select({ type: "conv", id: t.conversation_id }); } }, "Open conversation")) : null);
    const body = el("div", { class: "ticket-body" },
      el("div", { class: "entry entry-visitor" },
        el("div", { class: "entry-head" }, el("span", { class: "entry-who", text: t.email }), el("time", { class: "entry-time", title: fullTime(t.created_at), text: clock(t.created_at) })),
        el("div", { class: "bubble" }, el("div", { class: "bubble-text", text: t.text }))));
    if (t.answer) {
      body.append(el("div", { class: "entry entry-agent" },
        el("div", { class: "entry-head" }, el("span", { class: "entry-who", text: t.answered_by || "Agent" }), el("time", { class: "entry-time", title: fullTime(t.answered_at), text: clock(t.answered_at) })),
        el("div", { class: "bubble" }, el("div", { class: "bubble-text", text: t.answer }))));
      view.replaceChildren(head, body);
      return;
    }
    const pending = ticketPending(t);
    const area = el("textarea", { id: "ticket-answer", rows: "5", maxlength: "4000", placeholder: `Write the answer to ${t.email}…`, disabled: pending });
    const form = el("form", { class: "ticket-form", id: "ticket-form", novalidate: true },
      el("label", { for: "ticket-answer", text: "Answer" }), area,
      el("div", { class: "composer-foot" },
        el("span", { class: "muted small", text: "The answer is stored with the ticket." }),
        el("button", { class: "btn btn-primary", type: "submit", disabled: pending }, pending ? "Saving…" : "Send answer")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = area.value.trim();
      if (!text) return area.focus();
      queueOutgoing("ticket", { type: "answer_ticket", ticket_id: t.ticket_id, id: newId("t"), text }, { ticket_id: t.ticket_id, text });
    });
    view.replaceChildren(head, body, form);
  }

  function ticketPending(t) {
    return [...S.outbox.values()].some((o) => o.kind === "ticket" && o.ticket_id === t.ticket_id && !o.failed);
  }

  function focusFirstInList() {
    const b = document.querySelector("#pane-conversations .item-main");
    if (b && document.activeElement === document.body) b.focus();
  }

  // ---- wiring ---------------------------------------------------------------

  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      $("signin-error").textContent = "Enter your agent token.";
      $("token").setAttribute("aria-invalid", "true");
      $("token").focus();
      return;
    }
    S.token = token;
    S.typedSignIn = true;
    S.authFailed = false;
    $("signin-error").textContent = "";
    $("token").setAttribute("aria-invalid", "false");
    $("signin-submit").disabled = true;
    $("signin-submit").textContent = "Signing in…";
    $("token").value = "";
    connect();
  });

  $("signout").addEventListener("click", signOut);
  $("conn-retry").addEventListener("click", () => { S.attempt = 0; connect(); });

  for (const [name, tab] of [["conversations", $("tab-conversations")], ["tickets", $("tab-tickets")]]) {
    tab.addEventListener("click", () => { S.view = name; renderAll(); });
    tab.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
        S.view = S.view === "conversations" ? "tickets" : "conversations";
        renderAll();
        $(`tab-${S.view}`).focus();
      }
    });
  }

  $("mode-reply").addEventListener("click", () => setMode("reply"));
  $("mode-note").addEventListener("click", () => setMode("note"));

  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitCompose();
  });

  const compose = $("compose");
  compose.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submitCompose();
    }
  });
  compose.addEventListener("input", () => {
    const c = selectedConv();
    if (S.mode !== "reply" || !held(c) || !compose.value.trim()) return;
    const now = Date.now();
    if (now - S.lastTyping >= TYPING_EVERY_MS && send({ type: "typing", conversation_id: c.conversation_id })) S.lastTyping = now;
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && S.panel) {
      const was = S.panel;
      S.panel = null;
      renderAll();
      const b = $(`act-${was}`);
      if (b) b.focus();
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && S.selected && S.selected.type === "conv" && S.view === "conversations") {
      if (S.unread.delete(S.selected.id)) renderAll();
    }
  });

  // The live clocks: wait times, time with the visitor, the reconnect countdown.
  setInterval(() => {
    const now = Date.now();
    for (const e of document.querySelectorAll("[data-since]")) {
      e.textContent = duration(now - Number(e.dataset.since));
    }
    if (S.retryTimer && $("conn").dataset.state === "waiting") {
      const left = Math.max(0, Math.ceil((S.retryAt - now) / 1000));
      $("conn-text").textContent = $("conn-text").textContent.replace(/\d+s$/, `${left}s`);
    }
    renderTyping();
  }, 1000);

  if (S.token) {
    showApp();
    renderAll(true);
    connect();
  } else {
    showSignIn(null);
  }
})();
