// The website chat widget (/widget.js) in a real headless Chromium against the
// real frontdesk binary. Each test starts its own server with its own data
// directory; screenshots of the widget's states go to target/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { startServer, launchBrowser, connect, screenshots, root } from "./harness.mjs";

const hostile = join(root, "tests/browser/fixtures/hostile");
const PAYLOAD = "<img src=x onerror=alert(1)><script>alert(2)</script>";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/**
 * A fresh browser context on `url`, recording what must not happen: console
 * errors, page errors, dialogs, CSP violations and requests to hosts other
 * than `hosts`; and every websocket frame, both ways.
 */
async function visit(url, { hosts = [new URL(url).host], viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const v = { context, page, problems: [], received: [], sent: [], typingAt: [], allowed: [] };
  page.on("console", (m) => {
    if (m.type() === "error" && !v.allowed.some((re) => re.test(m.text()))) v.problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => v.problems.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) v.problems.push(`${r.status()} for ${r.url()}`); });
  page.on("dialog", (d) => { v.problems.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (!hosts.includes(u.host)) v.problems.push(`request to another host: ${r.url()}`);
  });
  page.on("websocket", (ws) => {
    if (!hosts.includes(new URL(ws.url()).host)) v.problems.push(`websocket to another host: ${ws.url()}`);
    ws.on("framereceived", (f) => v.received.push(JSON.parse(f.payload)));
    ws.on("framesent", (f) => {
      const frame = JSON.parse(f.payload);
      v.sent.push(frame);
      if (frame.type === "typing") v.typingAt.push(Date.now());
    });
  });
  await page.goto(url);
  /** Fails on anything recorded above. */
  v.clean = async () => {
    const csp = await page.evaluate(() => window.__csp);
    assert.deepEqual(csp, [], "CSP violations");
    assert.deepEqual(v.problems, [], "console errors, dialogs or foreign requests");
    assert.deepEqual(v.received.filter((f) => f.type === "error"), [], "error frames");
  };
  return v;
}

/** A locator inside the widget's (open) shadow root. */
const w = (page, sel) => page.locator(`frontdesk-chat ${sel}`);

async function shot(page, name) {
  await page.screenshot({ path: join(screenshots, `widget-${name}.png`), animations: "disabled" });
}

async function openWidget(page) {
  await w(page, ".launcher").click();
  await w(page, ".panel").waitFor({ state: "visible" });
  await w(page, ".panel").evaluate((p) => Promise.all(p.getAnimations().map((a) => a.finished)));
  await w(page, ".status.online").waitFor();
}

/** Types a message into the widget and sends it with Enter. */
async function ask(page, text) {
  const input = w(page, ".composer textarea");
  await input.fill(text);
  await input.press("Enter");
}

const bot = (page, text) => w(page, ".msg.bot").filter({ hasText: text });
const visitor = (page, text) => w(page, ".msg.visitor").filter({ hasText: text });
const stored = (page) => page.evaluate(() => {
  const key = Object.keys(localStorage).find((k) => k.startsWith("frontdesk:"));
  return key ? JSON.parse(localStorage.getItem(key)) : null;
});

/**
 * Waits for /healthz: the harness returns once the address is logged, which
 * is before the store is open, and `frontdesk agent add` on a store that the
 * server is still migrating fails.
 */
async function healthy(server) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${server.http}/healthz`)).ok) return;
    } catch (_) { /* not accepting yet */ }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error("server not healthy");
}

/** Runs `body` with a server and cleans up whatever happens. */
async function withServer(options, body) {
  const server = await startServer(options);
  await healthy(server);
  const open = [];
  try {
    await body(server, async (url, opts) => {
      const v = await visit(url, opts);
      open.push(v);
      return v;
    });
  } finally {
    for (const v of open) await v.context.close().catch(() => {});
    await server.stop();
    server.cleanup();
  }
}

test("answers with the article, offers quick replies and takes feedback", { timeout: 90000 }, async () => {
  await withServer({}, async (server, visitPage) => {
    const v = await visitPage(server.http);
    const { page } = v;
    await w(page, ".launcher").waitFor();
    assert.equal(await w(page, ".panel").isVisible(), false);
    await shot(page, "closed");

    await openWidget(page);
    await bot(page, "Juniper Lane assistant").waitFor();
    assert.equal(await w(page, ".chip").count(), 3, "suggested questions from data-suggestions");
    await shot(page, "open");
    await ask(page, "how long does shipping take");
    const answer = bot(page, "Standard delivery takes");
    await answer.waitFor();
    assert.match(await answer.locator(".src").innerText(), /How long does delivery take\?/);
    const link = answer.locator("a.src");
    assert.equal(await link.getAttribute("href"), "https://shop.example/help/shipping/delivery-times");
    assert.equal(await link.getAttribute("target"), "_blank");
    assert.match(await link.getAttribute("rel"), /noopener/);
    await w(page, ".msg.pending").waitFor({ state: "detached" });
    assert.match(await visitor(page, "how long does shipping take").locator("time").innerText(), /\d/);
    await shot(page, "answering");

    // "Was this helpful?" -> feedback frame; the UI thanks the visitor.
    await answer.getByRole("button", { name: "Yes" }).click();
    await answer.getByText("Thanks for your feedback!").waitFor();
    const reply = v.received.find((f) => f.type === "reply" && f.kind === "answer");
    assert.deepEqual(v.sent.find((f) => f.type === "feedback"), { type: "feedback", answer_id: reply.answer_id, helpful: true });

    // A close call: quick replies; the server handles frames in order, so the
    // clarify arriving also means the feedback was stored without an error.
    await ask(page, "return");
    const clarify = bot(page, "Which one fits best?");
    await clarify.waitFor();
    assert.equal(await clarify.locator(".chip").count(), 3);
    await shot(page, "clarify");
    await clarify.locator(".chip", { hasText: "How do I start a return?" }).click();
    await visitor(page, "How do I start a return?").waitFor();
    const chosen = w(page, ".msg.bot .src").filter({ hasText: "How do I start a return?" });
    await chosen.waitFor();
    assert.equal(await w(page, ".chip").count(), 0, "quick replies go once one is used");
    const choice = v.sent.find((f) => f.type === "choice");
    assert.equal(choice.value, "article:returns/start-a-return.md");
    assert.ok(v.received.some((f) => f.type === "ack" && f.id === choice.id));

    // The visitor ends the conversation, rates it, and starts a new one.
    const { cid } = await stored(page);
    await w(page, "header button[aria-label='End conversation']").click();
    await w(page, ".confirm").getByRole("button", { name: "End chat" }).click();
    await w(page, ".rating").waitFor();
    assert.deepEqual(v.sent.filter((f) => f.type === "close"), [{ type: "close" }]);
    assert.equal(await w(page, ".composer").isVisible(), false);
    await w(page, ".rating").getByRole("button", { name: "4 out of 5" }).click();
    await w(page, ".rating").getByText("Thanks for rating us!").waitFor();
    await w(page, ".restart button").click();
    await page.waitForFunction((old) => {
      const key = Object.keys(localStorage).find((k) => k.startsWith("frontdesk:"));
      const cid = JSON.parse(localStorage.getItem(key)).cid;
      return cid && cid !== old;
    }, cid);
    await w(page, ".composer").waitFor({ state: "visible" });
    assert.equal(await w(page, ".msg").count(), 1, "only the greeting");
    await v.clean();
  });
});

test("a message sent while the server is down arrives exactly once after it restarts", { timeout: 90000 }, async () => {
  const first = await startServer();
  const port = Number(new URL(first.http).port);
  let second;
  const v = await visit(first.http);
  // Chromium itself logs each refused connection attempt while the server is down.
  v.allowed.push(/WebSocket connection to .* failed/);
  const { page } = v;
  try {
    await openWidget(page);
    await ask(page, "hello");
    await bot(page, "Hi there!").waitFor();

    await first.stop();
    await w(page, ".bar.net").waitFor({ state: "visible" });
    await w(page, ".status.offline").waitFor();
    await ask(page, "how long does shipping take");
    const mine = visitor(page, "how long does shipping take");
    await mine.and(w(page, ".msg.pending")).waitFor();
    const id = await mine.getAttribute("data-id");
    assert.deepEqual((await stored(page)).outbox.map((o) => o.id), [id], "kept in localStorage until acknowledged");
    await shot(page, "reconnecting");

    second = await startServer({ data: first.dir, port });
    await bot(page, "Standard delivery takes").waitFor({ timeout: 30000 });
    await w(page, ".msg.pending").waitFor({ state: "detached" });
    await w(page, ".bar.net").waitFor({ state: "hidden" });
    assert.equal(v.received.filter((f) => f.type === "ack" && f.id === id).length, 1, "one ack");
    assert.ok(v.sent.filter((f) => f.type === "message" && f.id === id).length >= 1);
    assert.equal(await mine.count(), 1);
    assert.equal(await bot(page, "Standard delivery takes").count(), 1, "the reply shows once");
    assert.deepEqual((await stored(page)).outbox, []);

    // After a reload the history has it once, and the panel is open again.
    const welcomes = v.received.filter((f) => f.type === "welcome").length;
    await page.reload();
    await w(page, ".panel").waitFor({ state: "visible" });
    await bot(page, "Standard delivery takes").waitFor();
    const welcome = v.received.filter((f) => f.type === "welcome")[welcomes];
    assert.equal(welcome.history.filter((h) => h.id === id).length, 1);
    assert.equal(await visitor(page, "how long does shipping take").count(), 1);
    assert.equal(await bot(page, "Standard delivery takes").count(), 1);
    await v.clean();
  } finally {
    await v.context.close();
    await second?.stop();
    await first.stop();
    first.cleanup();
  }
});

test("a site on another origin keeps an unsent message across a reload while the server is down", { timeout: 90000 }, async () => {
  // The shop's own site serves the page and its copy of widget.js; the chat
  // server is elsewhere (data-server) and lists the site in allowed_origins.
  const site = createServer((req, res) => {
    if (req.url === "/widget.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(widgetSource);
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>Shop</title><h1>Shop</h1><script src="/widget.js" data-server="${chat}" data-title="Shop"></script>`);
  });
  await new Promise((ok) => site.listen(0, "127.0.0.1", ok));
  const origin = `http://127.0.0.1:${site.address().port}`;
  const first = await startServer({ config: `allowed_origins = ["${origin}"]` });
  const chat = first.http;
  const widgetSource = await (await fetch(`${chat}/widget.js`)).text();
  const port = Number(new URL(chat).port);
  let second;
  const v = await visit(origin, { hosts: [new URL(origin).host, new URL(chat).host] });
  v.allowed.push(/WebSocket connection to .* failed/);
  const { page } = v;
  try {
    await openWidget(page);
    await ask(page, "hello");
    await bot(page, "Hi there!").waitFor();

    await first.stop();
    await w(page, ".status.offline").waitFor();
    await ask(page, "where is my order FD-123456?");
    await visitor(page, "FD-123456").and(w(page, ".msg.pending")).waitFor();
    const id = await visitor(page, "FD-123456").getAttribute("data-id");

    await page.reload();
    await w(page, ".panel").waitFor({ state: "visible" });
    await visitor(page, "FD-123456").and(w(page, ".msg.pending")).waitFor();
    assert.equal(await visitor(page, "FD-123456").getAttribute("data-id"), id);

    second = await startServer({ data: first.dir, port, config: `allowed_origins = ["${origin}"]` });
    await bot(page, "FD-123456").waitFor({ timeout: 30000 });
    await w(page, ".msg.pending").waitFor({ state: "detached" });
    assert.equal(v.received.filter((f) => f.type === "ack" && f.id === id).length, 1);
    assert.equal(await visitor(page, "FD-123456").count(), 1);
    assert.equal(await bot(page, "Hi there!").count(), 1, "history shown once");
    await v.clean();
  } finally {
    await v.context.close();
    await second?.stop();
    await first.stop();
    first.cleanup();
    site.close();
  }
});

test("escalation: queue position, then a person joins, types and writes", { timeout: 90000 }, async () => {
  await withServer({}, async (server, visitPage) => {
    // An agent is signed in, so the visitor is queued (not offered the email form).
    const token = server.addAgent("sam");
    const agent = await connect(server.agentWs);
    try {
      agent.send({ type: "auth", token });
      const welcome = await agent.expect("welcome");
      assert.equal(welcome.name, "sam");

      const v = await visitPage(server.http);
      const { page } = v;
      await openWidget(page);
      await ask(page, "I want to talk to a person");
      await bot(page, "passing you to a member").waitFor();
      await w(page, ".bar.queue").filter({ hasText: "next in line" }).waitFor();
      assert.equal(await w(page, "form.leave").count(), 0);
      await shot(page, "queued");
      const { cid } = await stored(page);
      await agent.expect("queue", (f) => f.entries.some((e) => e.conversation_id === cid));

      // While queued the visitor's words reach the agent.
      await ask(page, "It's about order FD-123456");
      await agent.expect("visitor_message", (f) => f.conversation_id === cid && /FD-123456/.test(f.text));

      agent.send({ type: "claim", conversation_id: cid });
      await agent.expect("conversation", (f) => f.conversation.conversation_id === cid);
      await w(page, ".note").filter({ hasText: "sam joined the chat" }).waitFor();
      await w(page, ".bar.queue").waitFor({ state: "hidden" });
      await w(page, ".status").filter({ hasText: "Chatting with sam" }).waitFor();

      // The visitor's typing reaches the agent, at most one frame every 2 s
      // (typed at a person's pace, for longer than 2 s).
      agent.frames.splice(0);
      await w(page, ".composer textarea").pressSequentially("thanks, I'll wait here", { delay: 120 });
      await agent.expect("typing", (f) => f.conversation_id === cid);
      const gaps = v.typingAt.slice(1).map((t, i) => t - v.typingAt[i]);
      assert.ok(v.typingAt.length >= 2 && gaps.every((g) => g >= 1900), `typing frames ${gaps.join(", ")} ms apart`);

      agent.send({ type: "typing", conversation_id: cid });
      await w(page, ".typing").filter({ hasText: "sam is typing" }).waitFor();
      agent.send({ type: "message", conversation_id: cid, id: "g1", text: "Hi, I'm Sam. Let me look at **FD-123456** for you." });
      await agent.expect("ack", (f) => f.id === "g1");
      const said = w(page, ".msg.agent").filter({ hasText: "Let me look at" });
      await said.waitFor();
      assert.equal(await said.locator("strong").innerText(), "FD-123456");
      assert.match(await said.locator(".who").innerText(), /sam/);
      await w(page, ".typing").waitFor({ state: "hidden" });
      await w(page, ".composer textarea").fill("");
      await shot(page, "with-agent");

      // A reload brings the conversation back from the history, once.
      await page.reload();
      await said.waitFor();
      await w(page, ".status").filter({ hasText: "Chatting with sam" }).waitFor();
      assert.equal(await w(page, ".note").filter({ hasText: "sam joined the chat" }).count(), 1);
      assert.equal(await said.count(), 1);
      assert.equal(await visitor(page, "It's about order FD-123456").count(), 1);

      // The agent closes: the visitor rates and can start again.
      agent.send({ type: "close", conversation_id: cid, note: "explained the delivery" });
      await w(page, ".rating").waitFor();
      await shot(page, "rating");
      await w(page, ".rating").getByRole("button", { name: "5 out of 5" }).click();
      await w(page, ".rating").getByText("Thanks for rating us!").waitFor();
      assert.deepEqual(v.sent.find((f) => f.type === "rating"), { type: "rating", score: 5 });
      await w(page, ".restart button").click();
      await w(page, ".status.online").waitFor();
      await page.waitForFunction((old) => {
        const key = Object.keys(localStorage).find((k) => k.startsWith("frontdesk:"));
        return JSON.parse(localStorage.getItem(key)).cid !== old;
      }, cid);
      assert.equal(await w(page, ".msg.agent").count(), 0);
      await v.clean();
    } finally {
      agent.close();
    }
  });
});

test("with nobody signed in the visitor waits in the queue and may leave a message", { timeout: 60000 }, async () => {
  await withServer({}, async (server, visitPage) => {
    const v = await visitPage(server.http);
    const { page } = v;
    await openWidget(page);
    await ask(page, "I want to talk to a person");
    await w(page, "form.leave").waitFor();
    const offline = v.received.find((f) => f.type === "offline");
    assert.equal(offline.reason, "no_agents");
    await bot(page, offline.message.slice(0, 20)).waitFor();
    await w(page, ".bar.queue").filter({ hasText: "next in line" }).waitFor();
    await v.clean();
  });
});

test("outside business hours the visitor leaves a message and gets a ticket", { timeout: 90000 }, async () => {
  // Open one minute a week, on a day that is not today.
  const days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
  const other = days[(new Date().getUTCDay() + 3) % 7];
  const config = `[handoff]\ntimezone = "UTC"\nhours = { ${other} = "09:00-09:01" }`;
  await withServer({ config }, async (server, visitPage) => {
    const v = await visitPage(server.http);
    const { page } = v;
    await openWidget(page);
    await ask(page, "I want to talk to a person");
    const form = w(page, "form.leave");
    await form.waitFor();
    const offline = v.received.find((f) => f.type === "offline");
    assert.equal(offline.reason, "outside_hours");
    await bot(page, offline.message.slice(0, 20)).waitFor();
    assert.equal(await w(page, ".bar.queue").isVisible(), false);

    await form.getByLabel("Your email").fill("not an email");
    await form.getByLabel("Your message").fill("Please call me back about order FD-123456.");
    await form.getByRole("button", { name: "Send message" }).click();
    await form.getByText("valid email").waitFor();
    await form.getByLabel("Your email").fill("ann@example.com");
    await shot(page, "offline");
    await form.getByRole("button", { name: "Send message" }).click();
    await w(page, "form.leave.sent").getByText(/ticket/).waitFor();
    const ticket = v.received.find((f) => f.type === "ticket");
    assert.ok(ticket.ticket_id);
    const left = v.sent.find((f) => f.type === "leave_message");
    assert.deepEqual({ email: left.email, text: left.text }, { email: "ann@example.com", text: "Please call me back about order FD-123456." });
    assert.match(await w(page, "form.leave.sent").innerText(), new RegExp(String(ticket.ticket_id)));
    assert.deepEqual((await stored(page)).outbox, []);
    await v.clean();
  });
});

test("HTML in visitor messages and in articles shows as text; markdown renders safely", { timeout: 90000 }, async () => {
  await withServer({ kb: join(hostile, "kb"), intents: join(hostile, "intents.toml") }, async (server, visitPage) => {
    const v = await visitPage(server.http);
    const { page } = v;
    await openWidget(page);

    await ask(page, PAYLOAD);
    await visitor(page, PAYLOAD).waitFor();
    await w(page, ".msg.pending").waitFor({ state: "detached" });
    // The bot offers the article whose title is HTML, as a quick reply.
    const chip = w(page, ".chip").filter({ hasText: "Payload article" });
    await chip.waitFor();
    assert.equal(await chip.innerText(), `${PAYLOAD} Payload article`);

    await ask(page, "tell me about the payload article");
    const answer = bot(page, "This article says");
    await answer.waitFor();
    assert.equal(await answer.locator(".bubble p").first().innerText(), `This article says ${PAYLOAD} in its body.`);
    assert.equal(await answer.locator(".src span").innerText(), `${PAYLOAD} Payload article`);
    assert.equal(await answer.locator("a.src").count(), 0, "a javascript: article URL is not linked");

    await ask(page, "show me the formatting");
    const fmt = bot(page, "first point");
    await fmt.waitFor();
    assert.equal(await fmt.locator("strong").first().innerText(), "Bold");
    assert.equal(await fmt.locator("em").innerText(), "italic");
    assert.equal(await fmt.locator("code").innerText(), "code");
    assert.equal(await fmt.locator("ul > li").count(), 2);
    assert.equal(await fmt.locator("ol > li").count(), 2);
    assert.match(await fmt.locator("ul > li").nth(1).innerText(), /<b>raw HTML<\/b>/);
    const safe = fmt.locator("a", { hasText: "a safe link" });
    assert.equal(await safe.getAttribute("href"), "https://shop.example/help");
    assert.equal(await safe.getAttribute("rel"), "noopener noreferrer");
    assert.equal(await fmt.locator("a", { hasText: "a script link" }).count(), 0);
    assert.match(await fmt.innerText(), /a script link/);

    const created = await page.evaluate(() => {
      const r = document.querySelector("frontdesk-chat").shadowRoot;
      return {
        shadow: r.querySelectorAll("img, script, iframe, object, b").length,
        page: document.querySelectorAll("img, iframe, object").length,
        scripts: document.scripts.length,
        js: [...r.querySelectorAll("a")].filter((a) => !/^(https?|mailto):/.test(a.protocol)).length,
      };
    });
    assert.deepEqual(created, { shadow: 0, page: 0, scripts: 1, js: 0 });
    await v.clean();
  });
});

test("data attributes set colour, position and strings; the page's CSS cannot reach the widget", { timeout: 60000 }, async () => {
  // A page that styles everything it can, with !important, and loads the
  // widget from the frontdesk server on another origin.
  const site = createServer((req, res) => {
    // (200 for the browser's favicon request too: a 404 would log an error)
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(req.url !== "/" ? "" : `<!doctype html><title>Hostile</title>
<style>
  * { all: unset !important; font: 40px serif !important; color: red !important; }
  frontdesk-chat, div, button, section, textarea { display: none !important; position: static !important; }
  head, style, script { display: none !important; }
</style>
<p>Page text</p>
<script src="${chat}/widget.js" data-title="Boutique" data-color="#ffd400" data-position="bottom-left"
  data-greeting="" data-strings='{"sendLabel":"Senden","launcherLabel":"Hilfe"}' data-placeholder="Ihre Nachricht"></script>`);
  });
  await new Promise((ok) => site.listen(0, "127.0.0.1", ok));
  const origin = `http://127.0.0.1:${site.address().port}`;
  let chat;
  await withServer({ config: `allowed_origins = ["${origin}"]` }, async (server, visitPage) => {
    chat = server.http;
    const v = await visitPage(origin, { hosts: [new URL(origin).host, server.addr] });
    const { page } = v;
    const launcher = w(page, ".launcher");
    await launcher.waitFor();
    const box = await launcher.boundingBox();
    assert.ok(box.x < 100 && box.y > 600 && box.width === 60, `launcher at ${JSON.stringify(box)}`);
    assert.equal(await launcher.getAttribute("aria-label"), "Hilfe");
    const colours = await launcher.evaluate((b) => {
      const cs = getComputedStyle(b);
      return { bg: cs.backgroundColor, fg: cs.color };
    });
    assert.deepEqual(colours, { bg: "rgb(255, 212, 0)", fg: "rgb(16, 24, 40)" }, "dark text on yellow");
    await openWidget(page);
    assert.equal(await w(page, "h2").innerText(), "Boutique");
    assert.equal(await w(page, ".composer textarea").getAttribute("placeholder"), "Ihre Nachricht");
    assert.equal(await w(page, ".sendb").getAttribute("aria-label"), "Senden");
    assert.equal(await w(page, ".msg").count(), 0, "no greeting");
    const panel = await w(page, ".panel").boundingBox();
    assert.ok(panel.x < 100 && panel.width === 384, `panel at ${JSON.stringify(panel)}`);
    await ask(page, "how long does shipping take");
    const answer = bot(page, "Standard delivery takes");
    await answer.waitFor();
    // Links are a shade of the colour that reads on white (contrast >= 4.5).
    const ratio = await answer.locator("a.src svg").first().evaluate((svg) => {
      const rgb = getComputedStyle(svg).color.match(/\d+/g).map(Number);
      const lum = rgb.map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
      const l = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
      return 1.05 / (l + 0.05);
    });
    assert.ok(ratio >= 4.5, `contrast ${ratio}`);
    assert.equal(await answer.locator(".bubble").evaluate((b) => getComputedStyle(b).fontSize), "14px");
    await shot(page, "hostile-page");
    await v.clean();
  });
  site.close();
});

test("widget.js is under 25 KiB gzipped", async () => {
  await withServer({}, async (server) => {
    const res = await fetch(`${server.http}/widget.js`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /javascript/);
    const body = Buffer.from(await res.arrayBuffer());
    const gz = gzipSync(body, { level: 9 }).length;
    console.log(`widget.js: ${body.length} bytes, ${gz} gzipped`);
    assert.ok(gz < 25 * 1024, `${gz} bytes gzipped`);
  });
});

test("keyboard alone: Tab to the launcher, Enter opens into the input, Escape closes back to the launcher", { timeout: 60000 }, async () => {
  await withServer({}, async (server, visitPage) => {
    const v = await visitPage(server.http);
    const { page } = v;
    // "tag.class" of the focused element, inside the widget's shadow root.
    const focused = () => page.evaluate(() => {
      const host = document.activeElement;
      if (host?.localName !== "frontdesk-chat") return host?.localName ?? null;
      const e = host.shadowRoot.activeElement;
      return e ? `${e.localName}.${e.classList[0] ?? ""}` : null;
    });
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = (await focused()) === "button.launcher";
    }
    assert.ok(reached, "the launcher is in the tab order");
    assert.equal(await w(page, ".launcher").getAttribute("aria-expanded"), "false");
    await page.keyboard.press("Enter");
    await w(page, ".panel").waitFor({ state: "visible" });
    assert.equal(await focused(), "textarea.", "focus in the message box");
    assert.equal(await w(page, ".launcher").getAttribute("aria-expanded"), "true");
    assert.equal(await w(page, ".log").getAttribute("role"), "log");
    assert.equal(await w(page, ".log").getAttribute("aria-live"), "polite");
    assert.equal(await w(page, ".composer textarea").getAttribute("aria-label"), "Message");

    await page.keyboard.type("how long does shipping take");
    await page.keyboard.press("Enter");
    await bot(page, "Standard delivery takes").waitFor();
    await page.keyboard.press("Tab");
    assert.equal(await focused(), "button.sendb");

    await page.keyboard.press("Escape");
    await w(page, ".panel").waitFor({ state: "hidden" });
    assert.equal(await focused(), "button.launcher");
    assert.equal(await w(page, ".launcher").getAttribute("aria-expanded"), "false");
    await v.clean();
  });
});

test("phone width: the panel fills the screen; nothing loads from other hosts; no CSP violations", { timeout: 60000 }, async () => {
  await withServer({}, async (server, visitPage) => {
    const v = await visitPage(server.http, { viewport: { width: 375, height: 720 } });
    const { page } = v;
    await openWidget(page);
    const box = await w(page, ".panel").boundingBox();
    assert.deepEqual([box.x, box.y, box.width, box.height], [0, 0, 375, 720]);
    await ask(page, "where is my order FD-123456");
    const answer = bot(page, "live status");
    await answer.waitFor();
    assert.equal(await answer.locator("a", { hasText: "your order page" }).getAttribute("href"), "https://shop.example/orders/FD-123456");
    assert.ok(await answer.locator(".chip").count() >= 2);
    await shot(page, "phone");
    // Closing comes back to the launcher.
    await w(page, "header button[aria-label='Minimise chat']").click();
    await w(page, ".launcher").waitFor({ state: "visible" });
    const styles = await page.evaluate(() => ({
      inlineStyleElements: document.querySelectorAll("style").length + document.querySelector("frontdesk-chat").shadowRoot.querySelectorAll("style").length,
      adopted: document.querySelector("frontdesk-chat").shadowRoot.adoptedStyleSheets.length,
    }));
    assert.deepEqual(styles, { inlineStyleElements: 0, adopted: 1 });
    await v.clean();
  });
});
