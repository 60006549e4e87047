// Shared by the browser tests: a real frontdesk server process on 127.0.0.1
// with its own data directory, Debian's headless Chromium driven by
// playwright-core, and a websocket client for the visitor or agent side.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const binary = join(root, "target/release/frontdesk");
/** Screenshots of pages' states, for people to look at. */
export const screenshots = join(root, "target/screenshots");
mkdirSync(screenshots, { recursive: true });

/**
 * Starts `frontdesk serve` on a free port. `config` is extra TOML appended to
 * the generated frontdesk.toml; `data` reuses a data directory (for restarts).
 */
export async function startServer({ config = "", data, port = 0, intents, kb } = {}) {
  const dir = data ?? mkdtempSync(join(tmpdir(), "frontdesk-browser-"));
  const configPath = join(dir, "frontdesk.toml");
  writeFileSync(
    configPath,
    [
      `listen = "127.0.0.1:${port}"`,
      `data_dir = ${JSON.stringify(dir)}`,
      `intents = ${JSON.stringify(intents ?? join(root, "intents.toml"))}`,
      `knowledge_base = ${JSON.stringify(kb ?? join(root, "knowledge_base"))}`,
      config,
    ].join("\n"),
  );
  const child = spawn(binary, ["--config", configPath, "serve"], {
    env: { ...process.env, FRONTDESK_LOG: process.env.FRONTDESK_LOG ?? "info", NO_COLOR: "1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const addr = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("server did not start:\n" + log)), 20000);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const m = /addr=(\S+)/.exec(log);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
    child.on("exit", (code) => fail(new Error(`server exited with ${code}:\n${log}`)));
  });
  const server = {
    dir, configPath, addr, child,
    http: `http://${addr}`,
    ws: `ws://${addr}/ws`,
    agentWs: `ws://${addr}/agent/ws`,
    log: () => log,
    /** Adds an agent with the CLI and returns its token. */
    addAgent(name, ...flags) {
      const r = spawnSync(binary, ["--config", configPath, "agent", "add", name, ...flags], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`agent add failed: ${r.stderr}`);
      const token = r.stdout.match(/[0-9a-f]{64}/);
      if (!token) throw new Error(`no token in: ${r.stdout}`);
      return token[0];
    },
    /** SIGTERM and wait. */
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((ok) => child.on("exit", ok));
    },
    /** SIGKILL and wait: a crash. */
    async kill() {
      if (child.exitCode !== null) return;
      child.kill("SIGKILL");
      await new Promise((ok) => child.on("exit", ok));
    },
    /** Removes the data directory (call after stop). */
    cleanup() { if (!data) rmSync(dir, { recursive: true, force: true }); },
  };
  return server;
}

/** Debian's Chromium, headless, with a fresh profile. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/**
 * A websocket client (Node's built-in WebSocket) that queues incoming frames
 * so a test can wait for the next frame of a given type.
 */
export async function connect(url) {
  const ws = new WebSocket(url);
  const frames = [];
  const waiters = [];
  ws.addEventListener("message", (ev) => {
    frames.push(JSON.parse(ev.data));
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((ok, fail) => {
    ws.addEventListener("open", ok, { once: true });
    ws.addEventListener("error", () => fail(new Error("websocket to " + url + " failed")), { once: true });
  });
  const client = {
    ws, frames,
    send(frame) { ws.send(JSON.stringify(frame)); },
    /** The first queued frame of `type` (and matching `pred`), waiting up to `ms`. */
    async expect(type, pred = () => true, ms = 10000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = frames.findIndex((f) => f.type === type && pred(f));
        if (i >= 0) return frames.splice(i, 1)[0];
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${type} frame within ${ms} ms; got ${JSON.stringify(frames)}`);
        await new Promise((ok) => { waiters.push(ok); setTimeout(ok, left); });
      }
    },
    close() { ws.close(); },
  };
  return client;
}
