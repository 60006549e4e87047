// The analytics dashboard (/admin) in a real headless Chromium against a real
// frontdesk server. The data comes through the real visitor and agent
// websockets (answers with feedback, fallbacks worded alike, escalations an
// agent takes, ratings), spread over the last week by shifting its stored
// times. Then: refused tokens, the headline figures against what the test
// made and against /api/stats, the charts' points and bars, the content gaps
// in order, and the CSV export.
//
//   cd tests/browser && node --experimental-websocket --test admin.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startServer, launchBrowser, connect, screenshots } from "./harness.mjs";

const WAIT = 10000;
const DAY = 86_400_000;
let server;
let browser;
let bossToken;
let samToken;
/** What the test made: one entry per conversation, with its stored closing time once shifted. */
const made = [];

/** The conversations, by how many days ago they closed and what happened in them. */
const SCENARIOS = [
  { days: 6, ask: "how long does delivery take", reply: "answer", feedback: true, rating: 5, outcome: "deflected" },
  { days: 6, ask: "Do you ship to Iceland?", reply: "fallback", rating: 2, outcome: "unanswered" },
  { days: 5, ask: "how do I reset my password", reply: "answer", rating: 4, outcome: "deflected" },
  { days: 5, ask: "I want to talk to a person", reply: "escalate", agent: true, rating: 5, outcome: "escalated", reason: "requested" },
  // Nothing closes 4 days ago: a bucket without data.
  { days: 3, ask: "is there a student discount", reply: "answer", feedback: true, rating: 4, outcome: "deflected" },
  { days: 3, ask: "can I pay with bitcoin", reply: "fallback", outcome: "unanswered" },
  { days: 3, ask: "do you ship to iceland", reply: "fallback", rating: 1, outcome: "unanswered" },
  { days: 2, ask: "how long does delivery take", reply: "answer", feedback: false, rating: 3, outcome: "unanswered" },
  { days: 2, ask: "Do you ship to <b>Iceland</b>?", reply: "fallback", rating: 2, outcome: "unanswered" },
  { days: 1, ask: "Someone used my card without asking and ordered in my name", reply: "escalate", agent: true, rating: 4, outcome: "escalated", reason: "sensitive" },
  { days: 1, ask: "is it possible to pay with bitcoin", reply: "fallback", outcome: "unanswered" },
  { days: 0, ask: "what are your opening hours", reply: "answer", feedback: true, rating: 5, outcome: "deflected" },
  { days: 0, ask: "can you ship to iceland please", reply: "fallback", outcome: "unanswered" },
  { days: 0, ask: null, outcome: "no_question" },
];

/** Waits until the server has answered a visitor (it migrates the database after logging its address). */
async function databaseReady(srv) {
  const v = await connect(srv.ws);
  v.send({ type: "hello", v: 1 });
  await v.expect("welcome");
  v.close();
}

/** Waits until `pred()` resolves truthy, checking every 100 ms, for at most `ms`. */
async function until(pred, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

async function apiStats(params, token = bossToken) {
  const res = await fetch(`${server.http}/api/stats?${new URLSearchParams(params)}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

/** Plays one scenario through the visitor websocket (and the agent's, for escalations). */
async function play(s, agent, n) {
  const v = await connect(server.ws);
  v.send({ type: "hello", v: 1 });
  const { conversation_id: id } = await v.expect("welcome");
  if (s.ask) {
    v.send({ type: "message", id: `m${n}`, text: s.ask });
    await v.expect("ack", (f) => f.id === `m${n}`);
    const reply = await v.expect("reply");
    assert.equal(reply.kind, s.reply, `${s.ask}: ${JSON.stringify(reply)}`);
    if (s.feedback !== undefined) {
      v.send({ type: "feedback", answer_id: reply.answer_id, helpful: s.feedback });
      // "Not helpful" gets a reply (it counts as a fallback); "helpful" gets none.
      if (!s.feedback) assert.equal((await v.expect("reply")).kind, "fallback");
    }
  }
  if (s.agent) {
    await v.expect("queue");
    await agent.expect("queue", (f) => f.entries.some((e) => e.conversation_id === id));
    agent.send({ type: "claim", conversation_id: id });
    await agent.expect("conversation", (f) => f.conversation.conversation_id === id);
    await v.expect("agent_joined");
    // A measurable wait before the agent's first message.
    await new Promise((ok) => setTimeout(ok, 300));
    agent.send({ type: "message", conversation_id: id, id: `g${n}`, text: "Hi, I'm Sam. Let me look at that." });
    await agent.expect("ack", (f) => f.id === `g${n}`);
    await v.expect("agent_message");
    agent.send({ type: "close", conversation_id: id, note: "sorted" });
  } else {
    v.send({ type: "close" });
  }
  const closed = await v.expect("closed");
  assert.equal(closed.outcome, s.outcome, s.ask);
  if (s.rating) v.send({ type: "rating", score: s.rating });
  return { ...s, id, v };
}

before(async () => {
  server = await startServer();
  await databaseReady(server);
  bossToken = server.addAgent("boss", "--admin");
  samToken = server.addAgent("sam");
  const agent = await connect(server.agentWs);
  agent.send({ type: "auth", token: samToken });
  await agent.expect("welcome");
  let n = 0;
  for (const s of SCENARIOS) made.push(await play(s, agent, ++n));
  agent.close();

  // Every rating is stored before the times move (ratings are not acknowledged).
  const ratings = SCENARIOS.filter((s) => s.rating).length;
  await until(async () => (await apiStats({ from: String(Date.now() - 30 * DAY), to: String(Date.now() + DAY) })).totals.csat.responses === ratings,
    "all ratings stored");
  for (const m of made) m.v.close();

  // Spread the conversations over the week: move each one's stored times back by whole days.
  const shift = Object.fromEntries(made.map((m) => [m.id, -m.days * DAY]));
  const py = `
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
shift = json.loads(sys.argv[2])
with db:
    for cid, off in shift.items():
        db.execute("""UPDATE conversations SET created_at = created_at + ?1, updated_at = updated_at + ?1,
                      queued_at = queued_at + ?1, claimed_at = claimed_at + ?1, closed_at = closed_at + ?1
                      WHERE id = ?2""", (off, cid))
        for table in ("messages", "decisions", "feedback"):
            db.execute(f"UPDATE {table} SET created_at = created_at + ?1 WHERE conversation_id = ?2", (off, cid))
print(json.dumps({cid: db.execute("SELECT closed_at FROM conversations WHERE id = ?", (cid,)).fetchone()[0] for cid in shift}))
`;
  const r = spawnSync("python3", ["-c", py, join(server.dir, "frontdesk.db"), JSON.stringify(shift)], { encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  const closedAt = JSON.parse(r.stdout);
  for (const m of made) m.closedAt = closedAt[m.id];

  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  server?.cleanup();
});

/** A fresh page on /admin that records console errors, page errors and CSP violations. */
async function openDashboard() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    problems.push(`console ${m.type()}: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.exposeFunction("__reportCsp", (v) => problems.push(`CSP violation: ${v}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
    });
  });
  await page.goto(server.http + "/admin");
  return { context, page, problems, requests };
}

async function signIn(page, token) {
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

function shot(page, name) {
  return page.screenshot({ path: join(screenshots, `admin-${name}.png`) });
}

/** 38.5%, 50%: a share as the dashboard shows it. */
function pct(x) {
  const s = (x * 100).toFixed(1);
  return (s.endsWith(".0") ? s.slice(0, -2) : s) + "%";
}

test("a wrong token and a non-admin token are refused with their messages", { timeout: 60000 }, async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.equal(await page.locator("#app").isVisible(), false);
    await shot(page, "signin");

    const error = page.locator("#signin-error");
    await signIn(page, "0".repeat(64));
    await error.filter({ hasText: "not accepted" }).waitFor();
    assert.equal(await page.locator("#app").isVisible(), false, "the dashboard stays hidden");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");
    assert.equal(await page.getByRole("button", { name: "Sign in" }).isEnabled(), true);

    await signIn(page, samToken);
    await error.filter({ hasText: "sam, an agent without the admin role" }).waitFor();
    assert.equal(await page.locator("#app").isVisible(), false);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await shot(page, "signin-refused");

    // The browser reports each refused request itself; nothing else may show up.
    const expected = /Failed to load resource: the server responded with a status of 40[13]/;
    assert.equal(problems.filter((p) => expected.test(p)).length, 2, problems.join("\n"));
    assert.deepEqual(problems.filter((p) => !expected.test(p)), []);
  } finally {
    await context.close();
  }
});

test("the admin sees the figures, charts, gaps and tables of what happened", { timeout: 120000 }, async () => {
  const { context, page, problems, requests } = await openDashboard();
  try {
    await signIn(page, bossToken);
    await page.locator("#app").waitFor({ state: "visible" });
    await page.locator("#main[aria-busy=false]").waitFor();
    assert.ok(!page.url().includes(bossToken), "the token never goes in a URL");
    for (const url of requests) assert.ok(url.startsWith(server.http), `no request to another host: ${url}`);

    // The period the dashboard asked for: the last 7 whole UTC days.
    const statsUrl = new URL(requests.find((u) => u.includes("/api/stats?") && u.includes("bucket=day")));
    const from = Date.parse(statsUrl.searchParams.get("from"));
    const to = Date.parse(statsUrl.searchParams.get("to"));
    assert.equal(to - from, 7 * DAY);
    assert.equal(from % DAY, 0);

    // What the test made in that period.
    const mine = made.filter((m) => m.closedAt >= from && m.closedAt < to);
    assert.equal(mine.length, made.length, "every conversation falls in the last 7 days");
    const counted = mine.filter((m) => m.outcome !== "no_question");
    const deflected = counted.filter((m) => m.outcome === "deflected");
    const confirmed = deflected.filter((m) => m.feedback === true);
    const rate = deflected.length / counted.length;
    const ratings = counted.filter((m) => m.rating).map((m) => m.rating);
    const buckets = Array.from({ length: 7 }, (_, i) => counted.filter((m) => Math.floor((m.closedAt - from) / DAY) === i));

    // The headline deflection rate, from the test's own outcomes and from /api/stats.
    const value = page.locator("#kpi-deflection [data-field=value]");
    assert.equal(await value.textContent(), pct(rate));
    assert.ok(Math.abs(Number(await value.getAttribute("data-value")) - rate) < 1e-9);
    const stats = await apiStats({ from: String(from), to: String(to), bucket: "day" });
    assert.ok(Math.abs(stats.totals.deflection_rate - rate) < 1e-9, JSON.stringify(stats.totals));
    assert.equal(stats.totals.conversations, counted.length);
    assert.equal(stats.totals.deflected_confirmed, confirmed.length);
    assert.equal(stats.totals.no_question, 1);
    // Its confirmed and assumed parts, and the other figures.
    assert.match(await page.locator("#kpi-deflection [data-field=confirmed]").textContent(),
      new RegExp(`^${pct(confirmed.length / counted.length).replace(".", "\\.")} · ${confirmed.length}$`));
    assert.match(await page.locator("#kpi-deflection [data-field=assumed]").textContent(),
      new RegExp(` · ${deflected.length - confirmed.length}$`));
    assert.equal(await page.locator("#kpi-conversations [data-field=value]").textContent(), String(counted.length));
    assert.equal(await page.locator("#kpi-resolution [data-field=value]").textContent(), pct(confirmed.length / counted.length));
    assert.equal(await page.locator("#kpi-escalated [data-field=value]").textContent(), "2");
    assert.equal(await page.locator("#kpi-escalated .reason[data-reason=requested] .reason-count").textContent(), "1");
    assert.equal(await page.locator("#kpi-escalated .reason[data-reason=sensitive] .reason-count").textContent(), "1");
    assert.equal(await page.locator("#kpi-unanswered [data-field=value]").textContent(),
      String(counted.filter((m) => m.outcome === "unanswered").length));
    assert.equal(await page.locator("#kpi-csat [data-field=value]").textContent(),
      pct(ratings.filter((r) => r >= 4).length / ratings.length));
    assert.match(await page.locator("#kpi-csat [data-field=sub]").textContent(), new RegExp(`${ratings.length} ratings`));
    assert.notEqual(await page.locator("#kpi-wait [data-field=value]").textContent(), "–");

    // Charts: a bar group per day, segments and points only where there is data.
    const withData = buckets.filter((b) => b.length).length;
    assert.equal(withData, 6, "one day of the seven has no conversations");
    assert.equal(await page.locator("#chart-volume g.bar-group").count(), 7);
    assert.equal(await page.locator("#chart-volume rect.seg-deflected").count(), buckets.filter((b) => b.some((m) => m.outcome === "deflected")).length);
    assert.equal(await page.locator("#chart-volume rect.seg-escalated").count(), buckets.filter((b) => b.some((m) => m.outcome === "escalated")).length);
    assert.equal(await page.locator("#chart-volume rect.seg-unanswered").count(), buckets.filter((b) => b.some((m) => m.outcome === "unanswered")).length);
    assert.equal(await page.locator("#chart-deflection circle.pt-deflection").count(), withData);
    assert.equal(await page.locator("#chart-csat circle.pt-csat").count(), buckets.filter((b) => b.some((m) => m.rating)).length);
    assert.equal(await page.locator("#chart-wait circle.pt-wait").count(), buckets.filter((b) => b.some((m) => m.agent)).length);
    // Each point says what it is, and each chart has its numbers as a table.
    const firstDay = buckets.findIndex((b) => b.length);
    const title = await page.locator("#chart-deflection circle.pt-deflection title").first().textContent();
    assert.match(title, new RegExp(pct(buckets[firstDay].filter((m) => m.outcome === "deflected").length / buckets[firstDay].length).replace(".", "\\.")));
    for (const id of ["deflection", "volume", "csat", "wait"]) {
      assert.equal(await page.locator(`#chart-${id} table tbody tr`).count(), 7, id);
      assert.ok(await page.locator(`#chart-${id} svg[role=img]`).getAttribute("aria-label"));
    }
    await page.locator("#chart-volume svg").hover({ position: { x: 200, y: 100 } });
    await page.locator("#tooltip").waitFor({ state: "visible" });
    // By keyboard: focus a chart and walk its days with the arrow keys.
    await page.locator("#chart-deflection svg").focus();
    await page.locator("#tooltip .tip-head").waitFor();
    const lastDay = await page.locator("#tooltip .tip-head").textContent();
    await page.keyboard.press("ArrowLeft");
    assert.notEqual(await page.locator("#tooltip .tip-head").textContent(), lastDay);
    await page.keyboard.press("Escape");
    await page.locator("#tooltip").waitFor({ state: "hidden" });
    await page.locator("#chart-deflection svg").blur();
    await page.mouse.move(0, 0);
    await shot(page, "dashboard");

    // Content gaps: the four Iceland questions first, then the two about bitcoin, as text.
    const gaps = page.locator("#gap-list > li.gap");
    await gaps.first().waitFor();
    const first = gaps.nth(0);
    assert.equal(await first.locator(".gap-count-n").textContent(), "4");
    assert.match(await first.locator(".gap-lead").textContent(), /ship to iceland/i);
    assert.match(await first.textContent(), /4 unanswered/);
    assert.ok(await first.locator(".chip", { hasText: "iceland" }).count(), await first.textContent());
    assert.match(await first.textContent(), /Do you ship to <b>Iceland<\/b>\?/);
    assert.equal(await page.locator("#gap-list b").count(), 0, "questions must not become markup");
    assert.ok(await first.locator(".gap-nearest .gap-article").count(), "the nearest article is named");
    assert.match(await first.locator(".confidence-value").textContent(), /confidence \d\.\d\d/);
    const second = gaps.nth(1);
    assert.equal(await second.locator(".gap-count-n").textContent(), "2");
    assert.match(await second.textContent(), /bitcoin/);
    assert.ok(await gaps.filter({ hasText: "how long does delivery take" }).filter({ hasText: "1 not helpful" }).count());
    await page.locator("#gaps").scrollIntoViewIfNeeded();
    await page.evaluate(() => document.getElementById("gaps").scrollIntoView({ block: "start" }));
    await shot(page, "gaps");
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(screenshots, "admin-full.png"), fullPage: true });

    // Top intents and articles: answered and feedback per source.
    const delivery = page.locator("#articles tbody tr[data-id='shipping/delivery-times.md']");
    assert.deepEqual(await delivery.locator("td.n").allTextContents(), ["2", "1", "1"]);
    assert.match(await delivery.textContent(), /50%/);
    const hours = page.locator("#intents tbody tr[data-id='opening_hours']");
    assert.deepEqual(await hours.locator("td.n").allTextContents(), ["1", "1", "0"]);

    // CSV export: a download whose rows match the series of /api/stats.
    const [download] = await Promise.all([
      page.waitForEvent("download", { timeout: WAIT }),
      page.getByRole("button", { name: "Export CSV" }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^frontdesk-stats-.*\.csv$/);
    const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
    const header = csv[0].split(",");
    const rows = csv.slice(1).map((line) => Object.fromEntries(line.split(",").map((v, i) => [header[i], v])));
    assert.equal(rows.length, stats.series.length);
    assert.equal(rows.length, 7);
    rows.forEach((row, i) => {
      const p = stats.series[i];
      assert.equal(Date.parse(row.bucket_start), p.start);
      assert.equal(Number(row.conversations), p.conversations);
      assert.equal(Number(row.deflected), p.deflected);
      assert.equal(Number(row.escalated), p.escalated);
      assert.equal(Number(row.unanswered), p.unanswered);
      assert.equal(Number(row.conversations), buckets[i].length);
      assert.equal(row.deflection_rate === "" ? null : Number(row.deflection_rate),
        p.deflection_rate === null ? null : Number(p.deflection_rate.toFixed(4)));
    });

    // The last 24 hours: hourly bars; then sign out.
    await page.getByRole("button", { name: "24 hours" }).click();
    await page.locator("#period-title").filter({ hasText: "Last 24 hours" }).waitFor();
    await page.locator("#main[aria-busy=false]").waitFor();
    await until(async () => (await page.locator("#chart-volume g.bar-group").count()) === 24, "24 hourly bars");
    assert.match(page.url(), /#period=24h$/);
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, "24h");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("a custom period loads by day and survives a reload", { timeout: 60000 }, async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await signIn(page, bossToken);
    await page.locator("#main[aria-busy=false]").waitFor();
    await page.getByRole("button", { name: "Custom…" }).click();
    const today = new Date().toISOString().slice(0, 10);
    const start = new Date(Date.parse(today) - 2 * DAY).toISOString().slice(0, 10);
    await page.getByLabel("From").fill(start);
    await page.getByLabel("To (inclusive)").fill(today);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator("#period-title").filter({ hasText: "Custom period" }).waitFor();
    await until(async () => (await page.locator("#chart-volume g.bar-group").count()) === 3, "3 daily bars");
    // The token stays in this tab, the period in the address: a reload shows the same.
    await page.reload();
    await page.locator("#app").waitFor({ state: "visible" });
    await page.locator("#period-title").filter({ hasText: "Custom period" }).waitFor();
    await until(async () => (await page.locator("#chart-volume g.bar-group").count()) === 3, "3 daily bars after reload");
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
