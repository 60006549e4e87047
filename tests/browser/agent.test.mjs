// The agent console (/agent) in a real headless Chromium against a real
// frontdesk server: sign-in, the queue, claiming, the transcript with the bot's
// explanations, replies and notes relayed (or not) to a visitor websocket,
// closing, offline tickets, a claim race against a second agent, and
// reconnecting after a server restart.
//
//   cd tests/browser && node --experimental-websocket --test agent.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { startServer, launchBrowser, connect, screenshots } from "./harness.mjs";

const WAIT = 10000;
let server;
let browser;
let samToken;

/**
 * Waits until the server has answered a visitor. `serve` logs its address
 * before it migrates the database, and `frontdesk agent add` run in between
 * fails ("table conversations already exists"), so agents are added after this.
 */
async function databaseReady(srv) {
  const v = await connect(srv.ws);
  v.send({ type: "hello", v: 1 });
  await v.expect("welcome");
  v.close();
}

before(async () => {
  server = await startServer();
  await databaseReady(server);
  samToken = server.addAgent("sam");
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  server?.cleanup();
});

/** A fresh browser context and page on the console, recording console errors and CSP violations. */
async function openConsole(base = server.http) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    // The browser asks for /favicon.ico on its own; the server has no such route
    // (and an inline data: icon would break img-src 'self').
    if (/\/favicon\.ico$/.test(m.location().url) && /404/.test(m.text())) return;
    problems.push(`console ${m.type()}: ${m.text()} (${m.location().url})`);
  });
  // Every frame the console sends, to check what it sent and when.
  const sent = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => sent.push(JSON.parse(String(f.payload)))));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  if (process.env.FD_DEBUG) {
    page.on("console", (m) => console.log("CONSOLE", m.type(), m.text(), JSON.stringify(m.location())));
    page.on("websocket", (ws) => {
      ws.on("framereceived", (f) => console.log("RECV", Date.now() % 100000, String(f.payload).slice(0, 160)));
      ws.on("framesent", (f) => console.log("SENT", Date.now() % 100000, String(f.payload).slice(0, 160)));
    });
  }
  await page.exposeFunction("__reportCsp", (v) => problems.push(`CSP violation: ${v}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
    });
  });
  await page.goto(base + "/agent");
  return { context, page, problems, sent };
}

async function signIn(page, token) {
  await page.getByLabel("Agent token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#app").waitFor({ state: "visible" });
  await page.locator("#conn[data-state=online]").waitFor();
}

/** A visitor websocket that keeps every raw frame, for "never sent" checks. */
async function visitor() {
  const v = await connect(server.ws);
  v.raw = [];
  v.ws.addEventListener("message", (ev) => v.raw.push(String(ev.data)));
  v.send({ type: "hello", v: 1 });
  const welcome = await v.expect("welcome");
  v.id = welcome.conversation_id;
  return v;
}

/** A visitor who has asked for a person and is queued. */
async function queuedVisitor(text = "I want to talk to a person", id = "m1") {
  const v = await visitor();
  v.send({ type: "message", id, text });
  await v.expect("ack", (f) => f.id === id);
  v.escalation = await v.expect("reply");
  assert.equal(v.escalation.kind, "escalate", JSON.stringify(v.escalation));
  await v.expect("queue");
  return v;
}

/** Waits until `pred()` is true, checking every 20 ms, for at most `ms`. */
async function until(pred, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

/** The first frame in `client` matching one of `preds` ({name: (frame) => bool}), within `ms`. */
async function firstOf(client, preds, ms = WAIT) {
  const deadline = Date.now() + ms;
  for (;;) {
    for (const f of client.frames) {
      for (const [name, pred] of Object.entries(preds)) if (pred(f)) return { name, frame: f };
    }
    if (Date.now() > deadline) throw new Error(`none of ${Object.keys(preds)} within ${ms} ms; got ${JSON.stringify(client.frames)}`);
    await new Promise((ok) => {
      const t = setTimeout(ok, 50);
      client.ws.addEventListener("message", () => { clearTimeout(t); ok(); }, { once: true });
    });
  }
}

function shot(page, name) {
  return page.screenshot({ path: join(screenshots, `agent-${name}.png`) });
}

test("a wrong token shows an error and does not sign in", { timeout: 60000 }, async () => {
  const { context, page, problems } = await openConsole();
  try {
    await page.locator("#signin").waitFor({ state: "visible" });
    await shot(page, "signed-out");
    // Nothing is sent before the agent signs in.
    assert.equal(await page.locator("#app").isVisible(), false);

    await page.getByLabel("Agent token").fill("0".repeat(64));
    await page.getByRole("button", { name: "Sign in" }).click();
    const error = page.locator("#signin-error");
    await assert.doesNotReject(error.filter({ hasText: "not accepted" }).waitFor());
    await shot(page, "signin-error");
    assert.equal(await page.locator("#app").isVisible(), false, "the console must stay hidden");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");
    assert.equal(await page.getByRole("button", { name: "Sign in" }).isEnabled(), true);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("an agent claims, replies, notes and closes a conversation in the console", { timeout: 120000 }, async () => {
  // A queue worth looking at: a sensitive conversation, one that asked for a person,
  // and an offline ticket left while nobody was signed in.
  const other = await queuedVisitor("Someone used my card without asking and ordered in my name");
  const v = await queuedVisitor("I want to talk to a person");
  const leaver = await queuedVisitor("can I talk to a person please", "q1");
  await leaver.expect("offline", (f) => f.reason === "no_agents");
  leaver.send({ type: "leave_message", id: "lm1", email: "ann@example.com", text: "Please call me back about order 1234 <b>today</b>" });
  const { ticket_id: ticketId } = await leaver.expect("ticket");

  const { context, page, problems, sent } = await openConsole();
  try {
    await signIn(page, samToken);
    assert.match(await page.locator("#me-name").textContent(), /sam/);
    assert.ok(!page.url().includes(samToken), "the token never goes in a URL");
    // Sign-in survives a reload (the token stays in this tab's sessionStorage), without the form.
    await page.reload();
    await page.locator("#conn[data-state=online]").waitFor();
    assert.equal(await page.locator("#signin").isVisible(), false);
    assert.ok(await page.locator("#online-list").filter({ hasText: "sam" }).count());

    // The queue: both conversations, with their reason, the sensitive one first and highlighted.
    const row = page.locator(`#queue-list li[data-conversation="${v.id}"]`);
    const sensitiveRow = page.locator(`#queue-list li[data-conversation="${other.id}"]`);
    await row.waitFor();
    await sensitiveRow.waitFor();
    assert.match(await row.textContent(), /Asked for a person/);
    assert.match(await row.textContent(), /I want to talk to a person/);
    assert.match(await sensitiveRow.getAttribute("class"), /is-sensitive/);
    assert.match(await sensitiveRow.textContent(), /Sensitive/);
    assert.equal(await page.locator("#queue-list li").first().getAttribute("data-conversation"), other.id);
    // The wait time ticks.
    const wait = row.locator("[data-since]");
    const before = await wait.textContent();
    await page.waitForFunction(([el, t]) => el.textContent !== t, [await wait.elementHandle(), before], { timeout: 3000 });
    await shot(page, "queue");

    // Claim: the visitor is told a person joined, and the conversation is mine.
    await row.getByRole("button", { name: /Claim/ }).click();
    const joined = await v.expect("agent_joined");
    assert.equal(joined.name, "sam");
    await page.locator(`#mine-list li[data-conversation="${v.id}"]`).waitFor();
    await page.locator(`#queue-list li[data-conversation="${v.id}"]`).waitFor({ state: "detached" });
    await page.locator("#conv-meta").filter({ hasText: "With an agent" }).waitFor();

    // The transcript: the visitor's message, the bot's reply and why the bot decided so.
    const transcript = page.locator("#transcript");
    await transcript.locator(".entry-visitor").filter({ hasText: "I want to talk to a person" }).waitFor();
    const bot = transcript.locator(".entry-bot").filter({ hasText: v.escalation.text.slice(0, 40) });
    await bot.waitFor();
    const why = bot.locator("details.why");
    assert.match(await why.locator("summary").textContent(), /human_request/);
    await why.locator("summary").click();
    await why.locator("dl").filter({ hasText: "Thresholds" }).waitFor();
    assert.match(await why.locator("dl").textContent(), /answer ≥ 0\.\d+/);

    // A reply: Enter sends it, the visitor gets it, and it stops being pending once acknowledged.
    const compose = page.getByLabel("Reply to the visitor");
    await compose.fill("Hi, I'm Sam. Let me look at that for you.");
    await v.expect("typing"); // typing while writing, relayed to the visitor
    await compose.press("Enter");
    const said = await v.expect("agent_message");
    assert.equal(said.text, "Hi, I'm Sam. Let me look at that for you.");
    assert.equal(said.name, "sam");
    await transcript.locator(".entry-agent").filter({ hasText: "Let me look at that" }).waitFor();
    await transcript.locator(".is-pending").waitFor({ state: "detached" });
    assert.equal(await compose.inputValue(), "");

    // The visitor types and writes: it shows live in the console, as text, not HTML.
    v.send({ type: "typing" });
    await page.locator("#typing").filter({ hasText: "typing" }).waitFor();
    v.send({ type: "message", id: "m2", text: "It's order <i>1234</i>, thanks!" });
    await v.expect("ack", (f) => f.id === "m2");
    await transcript.locator(".entry-visitor").filter({ hasText: "It's order <i>1234</i>, thanks!" }).waitFor();
    assert.equal(await transcript.locator("i").count(), 0, "visitor text must not become markup");
    await page.locator("#typing").filter({ hasText: "typing" }).waitFor({ state: "detached" });
    // The whole transcript, then the bot's explanation opened.
    await why.locator("summary").click();
    await why.locator("dl").waitFor({ state: "hidden" });
    await shot(page, "conversation");
    await why.locator("summary").click();
    await why.locator("summary").scrollIntoViewIfNeeded();
    await shot(page, "explanation");

    // An internal note: shown as a note, never sent to the visitor.
    const note = "Carrier confirmed a delay at the hub; offer a voucher.";
    await page.getByRole("button", { name: "Internal note" }).click();
    await page.getByLabel("Internal note", { exact: true }).fill(note);
    await page.getByRole("button", { name: "Add note" }).click();
    const noteEntry = transcript.locator(".entry-note").filter({ hasText: note });
    await noteEntry.waitFor();
    await transcript.locator(".is-pending").waitFor({ state: "detached" });
    assert.match(await noteEntry.textContent(), /not shown to visitor/);
    assert.equal(await noteEntry.count(), 1, "the note is shown once, after its ack and its broadcast");

    // Close with a resolution note, in an inline form.
    await page.getByRole("button", { name: "Close…" }).click();
    await page.getByLabel("Resolution note").fill("Explained the delay; voucher sent.");
    await page.getByRole("button", { name: "Close conversation" }).click();
    const closed = await v.expect("closed");
    assert.ok(closed.outcome);
    await transcript.locator(".closed-card").filter({ hasText: "voucher sent" }).waitFor();
    await page.locator(`#mine-list li[data-conversation="${v.id}"]`).waitFor({ state: "detached" });
    assert.equal(await page.locator("#composer").isVisible(), false);
    for (const raw of v.raw) assert.ok(!raw.includes("Carrier confirmed"), `the visitor saw the note: ${raw}`);

    // The offline ticket: listed with email, text and time; answered from the console.
    await page.getByRole("tab", { name: /Offline tickets/ }).click();
    const ticket = page.locator(`#ticket-list li[data-ticket="${ticketId}"]`);
    await ticket.waitFor();
    assert.match(await ticket.textContent(), /ann@example\.com/);
    assert.match(await ticket.textContent(), /Please call me back about order 1234 <b>today<\/b>/);
    await ticket.getByRole("button").first().click();
    await page.locator("#ticket-view").filter({ hasText: "ann@example.com" }).waitFor();
    assert.equal(await page.locator("#ticket-view b").count(), 0);
    await page.getByLabel("Answer", { exact: true }).fill("We'll call you at 3 pm.");
    await page.getByRole("button", { name: "Send answer" }).click();
    await page.locator("#ticket-view .badge-ok").filter({ hasText: "Answered" }).waitFor();
    await page.locator("#ticket-view").filter({ hasText: "We'll call you at 3 pm." }).waitFor();
    await shot(page, "ticket");

    // The token went only in the first frame of each connection (sign-in, then after the reload).
    const withToken = sent.filter((f) => JSON.stringify(f).includes(samToken));
    assert.deepEqual(withToken.map((f) => f.type), ["auth", "auth"]);

    // Sign out: back to the form, and the token is forgotten.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.reload();
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    for (const c of [v, other, leaver]) c.close();
  }
});

test("two agents race for one claim and exactly one wins", { timeout: 90000 }, async () => {
  const annToken = server.addAgent("ann");
  const ann = await connect(server.agentWs);
  ann.send({ type: "auth", token: annToken });
  await ann.expect("welcome");
  const { context, page, problems, sent } = await openConsole();
  const visitors = [];
  try {
    await signIn(page, samToken);
    const winners = {};
    // Two rounds: ann's claim leaves with the console's keypress (ann's usually lands
    // first), then the instant the console's claim is on the wire (the console's usually does).
    // In the first, ann's claim may take the conversation out of the console's queue
    // before the keypress reaches its button; the console then sends no claim at all.
    for (const round of ["with the keypress", "after the console's frame"]) {
      const v = await queuedVisitor("I want to talk to a person");
      visitors.push(v);
      await ann.expect("queue", (f) => f.entries.some((e) => e.conversation_id === v.id));
      const claim = page.locator(`#queue-list li[data-conversation="${v.id}"]`).getByRole("button", { name: /Claim/ });
      await claim.focus();
      const consoleClaimed = () => sent.some((f) => f.type === "claim" && f.conversation_id === v.id);
      if (round === "with the keypress") {
        const pressed = page.keyboard.press("Enter");
        ann.send({ type: "claim", conversation_id: v.id });
        await pressed;
      } else {
        await page.keyboard.press("Enter");
        await until(consoleClaimed, "the console sent its claim");
        ann.send({ type: "claim", conversation_id: v.id });
      }

      const annSide = await firstOf(ann, {
        won: (f) => f.type === "conversation" && f.conversation.conversation_id === v.id,
        lost: (f) => f.type === "error" && f.code === "already_claimed" && f.conversation_id === v.id,
      });
      const joined = await v.expect("agent_joined");
      winners[round] = joined.name;
      if (annSide.name === "won" && !consoleClaimed()) {
        // The console's queue lost the conversation before its keypress landed.
        assert.equal(round, "with the keypress");
        assert.equal(joined.name, "ann");
        await page.locator(`#queue-list li[data-conversation="${v.id}"]`).waitFor({ state: "detached" });
        assert.equal(await page.locator(`#mine-list li[data-conversation="${v.id}"]`).count(), 0);
        assert.equal(sent.filter((f) => f.type === "claim" && f.conversation_id === v.id).length, 0);
      } else if (annSide.name === "won") {
        assert.equal(joined.name, "ann");
        await page.locator(".toast").filter({ hasText: "ann took this conversation" }).first().waitFor();
        await page.locator("#conv-meta").filter({ hasText: "with ann" }).waitFor();
        assert.equal(await page.locator(`#mine-list li[data-conversation="${v.id}"]`).count(), 0);
        assert.equal(await page.getByRole("button", { name: "Release" }).count(), 0, "no actions on ann's conversation");
      } else {
        assert.equal(joined.name, "sam");
        await page.locator(`#mine-list li[data-conversation="${v.id}"]`).waitFor();
        await page.locator("#conv-meta").filter({ hasText: "with you" }).waitFor();
      }
      // Exactly one: the visitor was joined once, and ann's side agrees on the holder.
      const update = await ann.expect("update", (f) => f.conversation_id === v.id);
      assert.equal(update.agent, joined.name);
      await assert.rejects(v.expect("agent_joined", () => true, 500));
    }
    if (process.env.FD_DEBUG) console.log("race winners", JSON.stringify(winners), "console claims", sent.filter((f) => f.type === "claim").length);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    ann.close();
    for (const v of visitors) v.close();
  }
});

test("release, transfer to an online agent, and the unread marker", { timeout: 90000 }, async () => {
  const kimToken = server.addAgent("kim");
  const kim = await connect(server.agentWs);
  kim.send({ type: "auth", token: kimToken });
  await kim.expect("welcome");
  const v = await queuedVisitor("I want to talk to a person");
  const { context, page, problems } = await openConsole();
  try {
    await signIn(page, samToken);
    const inMine = page.locator(`#mine-list li[data-conversation="${v.id}"]`);
    const inQueue = page.locator(`#queue-list li[data-conversation="${v.id}"]`);
    await inQueue.getByRole("button", { name: /Claim/ }).click();
    assert.equal((await v.expect("agent_joined")).name, "sam");
    await inMine.waitFor();

    // The visitor writes while the agent looks elsewhere: an unread marker on the conversation.
    await page.getByRole("tab", { name: /Offline tickets/ }).click();
    v.send({ type: "message", id: "u1", text: "Are you still there?" });
    await v.expect("ack", (f) => f.id === "u1");
    await page.locator("#count-unread").filter({ hasText: "1 new" }).waitFor();
    await page.getByRole("tab", { name: /Conversations/ }).click();
    await inMine.locator(".unread-dot").waitFor();
    assert.match(await page.title(), /^\(1\)/);
    await inMine.getByRole("button").first().click();
    await inMine.locator(".unread-dot").waitFor({ state: "detached" });
    await page.locator("#transcript .entry-visitor").filter({ hasText: "Are you still there?" }).waitFor();

    // Release: back in the queue, the visitor is told.
    await page.getByRole("button", { name: "Release" }).click();
    assert.equal((await v.expect("agent_left")).name, "sam");
    await inQueue.waitFor();
    await inMine.waitFor({ state: "detached" });
    const released = await kim.expect("update", (f) => f.conversation_id === v.id && f.state === "queued");
    assert.equal(released.agent, undefined);

    // Claim again from the conversation itself, then hand it to kim, chosen from who is online.
    await page.locator("#conv-actions").getByRole("button", { name: "Claim" }).click();
    assert.equal((await v.expect("agent_joined")).name, "sam");
    await inMine.waitFor();
    await page.getByRole("button", { name: "Transfer…" }).click();
    const to = page.getByLabel("Transfer to");
    assert.deepEqual(await to.locator("option").allTextContents(), ["kim"], "only other agents who are online");
    await to.selectOption("kim");
    await page.locator("#transfer-form").getByRole("button", { name: "Transfer" }).click();
    const handed = await kim.expect("conversation", (f) => f.conversation.conversation_id === v.id);
    assert.equal(handed.conversation.agent, "kim");
    assert.equal((await v.expect("agent_left")).name, "sam");
    assert.equal((await v.expect("agent_joined")).name, "kim");
    await inMine.waitFor({ state: "detached" });
    await page.locator("#conv-meta").filter({ hasText: "with kim" }).waitFor();
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    kim.close();
    v.close();
  }
});

test("the console reconnects after a server restart and resends what was not acknowledged", { timeout: 120000 }, async () => {
  // A server of its own, so restarting it does not disturb the other tests.
  let srv = await startServer();
  const dir = srv.dir;
  const port = Number(new URL(srv.http).port);
  await databaseReady(srv);
  const token = srv.addAgent("lee");
  const v = await connect(srv.ws);
  const { context, page, problems } = await openConsole(srv.http);
  try {
    v.send({ type: "hello", v: 1 });
    const { conversation_id: id, resume_token: resume } = await v.expect("welcome");
    await signIn(page, token);
    v.send({ type: "request_human" });
    await v.expect("queue");
    const row = page.locator(`#queue-list li[data-conversation="${id}"]`);
    await row.getByRole("button", { name: /Claim/ }).click();
    await v.expect("agent_joined");
    await page.locator(`#mine-list li[data-conversation="${id}"]`).waitFor();

    await srv.stop();
    await page.locator("#conn[data-state=waiting]").waitFor();
    await shot(page, "reconnecting");
    // Written while the server is down: shown as pending, sent once the console is back.
    const compose = page.getByLabel("Reply to the visitor");
    await compose.fill("Sorry, we had a hiccup. Still here.");
    await compose.press("Enter");
    await page.locator("#transcript .entry-agent.is-pending").waitFor();

    srv = await startServer({ data: dir, port });
    await page.locator("#conn[data-state=online]").waitFor({ timeout: 30000 });
    await page.locator(`#mine-list li[data-conversation="${id}"]`).waitFor();
    await page.locator("#transcript .is-pending").waitFor({ state: "detached" });
    await page.locator("#transcript .entry-agent").filter({ hasText: "Still here" }).waitFor();
    assert.equal(await page.locator("#transcript .entry-agent").filter({ hasText: "Still here" }).count(), 1);

    // The visitor resumes and finds the message in the history.
    const v2 = await connect(srv.ws);
    v2.send({ type: "hello", v: 1, conversation_id: id, resume_token: resume });
    const welcome = await v2.expect("welcome");
    assert.equal(welcome.state, "with_agent");
    assert.ok(welcome.history.some((h) => h.role === "agent" && h.text.includes("Still here")), JSON.stringify(welcome.history));
    v2.close();
    // While the server is down, the browser logs each refused reconnection attempt.
    assert.deepEqual(problems.filter((p) => !/WebSocket connection to .* failed/.test(p)), []);
  } finally {
    await context.close();
    v.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
