/* frontdesk chat widget.
 *
 *   <script src="https://support.example/widget.js" data-title="Example" defer></script>
 *
 * adds a launcher button and a chat panel inside a shadow root. Configuration
 * (all optional): data-server, data-title, data-greeting, data-color,
 * data-position ("bottom-right" or "bottom-left"), data-strings (JSON object of
 * interface strings) or one data-* attribute per string (data-send-label, ...).
 * The keys are listed in STRINGS below and in the README.
 *
 * Content is always inserted as text: markdown in answers is rendered from a
 * small safe subset with DOM calls, never with innerHTML.
 */
(() => {
  "use strict";
  if (window.__frontdeskWidget) return;
  window.__frontdeskWidget = true;

  const script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  const cfg = (script && script.dataset) || {};

  /** Interface strings; `{name}` is replaced by a value. */
  const STRINGS = {
    launcherLabel: "Chat with us",
    closeLabel: "Minimise chat",
    subtitle: "We reply in seconds",
    waiting: "Waiting for a person",
    withAgent: "Chatting with {name}",
    botName: "Assistant",
    placeholder: "Write a message…",
    sendLabel: "Send",
    inputLabel: "Message",
    connecting: "Connecting…",
    reconnecting: "Offline, reconnecting…",
    offlineBanner: "Connection lost. Your messages will be sent when we're back.",
    sending: "Sending…",
    notSent: "Not sent: {message}",
    helpfulPrompt: "Was this helpful?",
    helpful: "Yes",
    notHelpful: "No",
    feedbackThanks: "Thanks for your feedback!",
    articleLabel: "Help article",
    queue: "You're number {position} in line for a person.",
    queueNext: "You're next in line for a person.",
    eta: "About {minutes} min",
    agentJoined: "{name} joined the chat",
    agentLeft: "{name} left the chat",
    transferred: "{from} handed the chat to {name}",
    typing: "{name} is typing…",
    endLabel: "End conversation",
    endPrompt: "End this conversation?",
    endConfirm: "End chat",
    cancel: "Cancel",
    closed: "This conversation has ended.",
    ratePrompt: "How would you rate this conversation?",
    rateLabel: "{score} out of 5",
    rated: "Thanks for rating us!",
    newConversation: "Start a new conversation",
    leaveTitle: "Leave us a message",
    emailLabel: "Your email",
    messageLabel: "Your message",
    leaveSend: "Send message",
    invalidEmail: "Please enter a valid email address.",
    ticket: "Thanks! We have your message (ticket {ticket_id}) and will reply by email.",
    error: "Something went wrong: {message}",
    poweredBy: "Powered by frontdesk",
  };
  const T = Object.assign({}, STRINGS);
  try {
    if (cfg.strings) Object.assign(T, JSON.parse(cfg.strings));
  } catch (_) { /* a bad data-strings keeps the defaults */ }
  for (const k in STRINGS) if (cfg[k] != null && cfg[k] !== "") T[k] = cfg[k];
  const t = (key, vars) => String(T[key]).replace(/\{(\w+)\}/g, (m, v) => (vars && vars[v] != null ? vars[v] : m));

  const title = cfg.title || "Support";
  const greeting = cfg.greeting == null ? "Hi! How can we help you today?" : cfg.greeting;
  const left = cfg.position === "bottom-left";
  const initial = (title.trim().charAt(0) || "?").toUpperCase();
  /** Suggested first questions, shown under the greeting: a JSON array or "|"-separated. */
  const suggestions = (() => {
    const v = cfg.suggestions || "";
    try {
      const a = JSON.parse(v);
      if (Array.isArray(a)) return a.map(String);
    } catch (_) { /* not JSON */ }
    return v.split("|").map((x) => x.trim()).filter(Boolean);
  })();

  // The server: data-server, else where this script came from; /ws under it.
  const base = (() => {
    try {
      if (cfg.server) return new URL(cfg.server.replace(/\/?$/, "/"), location.href);
      return new URL(".", script && script.src ? script.src : location.href);
    } catch (_) {
      return new URL("/", location.href);
    }
  })();
  const wsUrl = base.href.replace(/^http/, "ws").replace(/[?#].*$/, "") + "ws";
  const KEY = "frontdesk:" + wsUrl;

  // ---- stored state: conversation, resume token, unsent frames, panel open ----
  let S = { cid: null, token: null, outbox: [], open: false, draft: "" };
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || "null");
    if (saved && typeof saved === "object") S = Object.assign(S, saved);
    if (!Array.isArray(S.outbox)) S.outbox = [];
  } catch (_) { /* storage unavailable: this page load only */ }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(S)); } catch (_) { /* private mode */ }
  }

  // ---- colours: a readable text colour for the configured one ----
  function rgb(colour) {
    const c = document.createElement("canvas").getContext("2d");
    if (!c) return null;
    c.fillStyle = "#010203";
    c.fillStyle = colour;
    const v = c.fillStyle;
    if (v === "#010203" && !/^#010203$/i.test(colour)) return null;
    const m = /^#(..)(..)(..)$/.exec(v);
    if (m) return [1, 2, 3].map((i) => parseInt(m[i], 16));
    const n = /(\d+)\D+(\d+)\D+(\d+)/.exec(v);
    return n ? [+n[1], +n[2], +n[3]] : null;
  }
  const lum = (c) => {
    const [r, g, b] = c.map((x) => {
      x /= 255;
      return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const hex = (c) => "#" + c.map((x) => Math.round(x).toString(16).padStart(2, "0")).join("");
  const accent = rgb(cfg.color || "") || [36, 80, 178];
  const WHITE = [255, 255, 255], DARK = [16, 24, 40];
  const onDark = contrast(WHITE, accent) >= 4.5 || contrast(WHITE, accent) >= contrast(DARK, accent);
  let ink = accent;
  while (contrast(ink, WHITE) < 4.5) ink = ink.map((x) => x * 0.9);

  // ---- DOM helpers: text only ----
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function button(cls, label, onClick, aria) {
    const b = el("button", cls, label);
    b.type = "button";
    if (aria) b.setAttribute("aria-label", aria);
    b.addEventListener("click", onClick);
    return b;
  }
  const NS = "http://www.w3.org/2000/svg";
  const ICONS = {
    chat: "M21 11.5a8.4 8.4 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.4 8.4 0 0 1-3.8-.9L3 21l1.9-5.7a8.4 8.4 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.4 8.4 0 0 1 3.8-.9h.5a8.5 8.5 0 0 1 8 8v.5z",
    down: "m6 9 6 6 6-6",
    close: "M18 6 6 18M6 6l12 12",
    send: "M22 2 11 13M22 2l-7 20-4-9-9-4z",
    up: "M7 10v12M15 5.9 14 10h5.8a2 2 0 0 1 2 2.3l-1.4 8a2 2 0 0 1-2 1.7H4a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2h2.8a2 2 0 0 0 1.8-1.1L12 2a3 3 0 0 1 3 3.9z",
    dn: "M17 14V2M9 18.1 10 14H4.2a2 2 0 0 1-2-2.3l1.4-8A2 2 0 0 1 5.6 2H20a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-2.8a2 2 0 0 0-1.8 1.1L12 22a3 3 0 0 1-3-3.9z",
    star: "M12 2l3.1 6.3 6.9 1-5 4.9 1.2 6.8-6.2-3.2-6.2 3.2L7 14.2 2 9.3l6.9-1z",
    doc: "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6M16 13H8M16 17H8",
    ext: "M18 13v6a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h6M15 3h6v6M10 14 21 3",
    end: "M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9",
    check: "M20 6 9 17l-5-5",
    clock: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM12 6v6l4 2",
    mail: "M4 4h16a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zM22 6l-10 7L2 6",
  };
  function icon(name, cls) {
    const s = document.createElementNS(NS, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    s.setAttribute("class", "i " + (cls || ""));
    const p = document.createElementNS(NS, "path");
    p.setAttribute("d", ICONS[name]);
    s.append(p);
    return s;
  }

  // ---- markdown: paragraphs, lists, **bold**, *italic*, `code`, [links](url) ----
  const INLINE = /\*\*([^*]+(?:\*(?!\*)[^*]*)*)\*\*|`([^`\n]+)`|\[([^\]\n]+)\]\(\s*([^\s()]+)\s*\)|\*([^\s*](?:[^*\n]*[^\s*])?)\*|\b_([^\s_](?:[^_\n]*[^\s_])?)_\b|(https?:\/\/[^\s<>"]*[^\s<>"'.,;:!?)\]])/g;
  function safeUrl(u) {
    try {
      const url = new URL(u, location.href);
      return /^(https?|mailto):$/.test(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  }
  function link(text, href, plain) {
    const a = el("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    if (plain) a.textContent = text;
    else inline(a, text);
    return a;
  }
  function inline(parent, s) {
    let last = 0;
    INLINE.lastIndex = 0;
    const found = [];
    for (let m; (m = INLINE.exec(s)); ) found.push(m);
    for (const m of found) {
      if (m.index > last) parent.append(s.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[1] != null) inline(parent.appendChild(el("strong")), m[1]);
      else if (m[2] != null) parent.append(el("code", null, m[2]));
      else if (m[3] != null) {
        const href = safeUrl(m[4]);
        if (href) parent.append(link(m[3], href));
        else inline(parent, m[3]);
      } else if (m[5] != null || m[6] != null) inline(parent.appendChild(el("em")), m[5] != null ? m[5] : m[6]);
      else if (m[7] != null) parent.append(safeUrl(m[7]) ? link(m[7], safeUrl(m[7]), true) : m[7]);
    }
    if (last < s.length) parent.append(s.slice(last));
  }
  function markdown(text) {
    const frag = document.createDocumentFragment();
    for (const block of String(text).replace(/\r\n?/g, "\n").split(/\n[ \t]*\n/)) {
      let list = null, para = null;
      for (const raw of block.split("\n")) {
        const line = raw.trim();
        if (!line) continue;
        const item = /^([-*+•]|(\d{1,3})[.)])\s+(.*)$/.exec(line);
        const head = /^#{1,6}\s+(.*)$/.exec(line);
        if (item) {
          const type = item[2] ? "ol" : "ul";
          if (!list || list.localName !== type) {
            list = frag.appendChild(el(type));
            if (item[2] && item[2] !== "1") list.start = +item[2];
          }
          inline(list.appendChild(el("li")), item[3]);
          para = null;
        } else if (list && /^\s/.test(raw)) {
          const li = list.lastChild;
          li.append(" ");
          inline(li, line);
        } else if (head) {
          inline(frag.appendChild(el("p")).appendChild(el("strong")), head[1]);
          list = para = null;
        } else {
          list = null;
          if (para) para.append(el("br"));
          else para = frag.appendChild(el("p"));
          inline(para, line);
        }
      }
    }
    return frag;
  }

  // ---- time ----
  const clock = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
  const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  function stamp(at) {
    const d = new Date(at);
    const tm = el("time", null, (new Date().toDateString() === d.toDateString() ? "" : day.format(d) + ", ") + clock.format(d));
    tm.dateTime = d.toISOString();
    return tm;
  }

  // ---- the widget's DOM ----
  const host = document.createElement("frontdesk-chat");
  const root = host.attachShadow({ mode: "open" });
  const CSS = `
:host{all:initial!important}
*{box-sizing:border-box}
.fd{--accent:${hex(accent)};--on:${onDark ? "#fff" : hex(DARK)};--ink:${hex(ink)};--soft:${onDark ? "rgba(255,255,255,.16)" : "rgba(0,0,0,.08)"};--soft2:rgba(${ink.map(Math.round).join(",")},.18);--tint:rgba(${accent.join(",")},.08);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2433;-webkit-font-smoothing:antialiased;text-align:left}
button,input,textarea{font:inherit;color:inherit;margin:0}
button{cursor:pointer}
.i{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;flex:none}
:focus-visible{outline:2px solid var(--ink);outline-offset:2px}
.launcher{position:fixed;bottom:20px;right:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;background:var(--accent);color:var(--on);box-shadow:0 8px 24px rgba(16,24,40,.25);display:flex;align-items:center;justify-content:center;transition:transform .15s ease}
.launcher:hover{transform:scale(1.06)}
.launcher .i{width:28px;height:28px}
.launcher:focus-visible{outline:3px solid var(--ink);outline-offset:3px}
.badge{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;border-radius:11px;background:#d92d20;color:#fff;font-size:12px;font-weight:700;line-height:18px;text-align:center;padding:0 5px;border:2px solid #fff}
.left .launcher,.left .panel{right:auto;left:20px}
.panel{position:fixed;bottom:92px;right:20px;z-index:2147483000;width:384px;height:640px;max-width:calc(100vw - 40px);max-height:calc(100vh - 112px);background:#fff;border-radius:18px;box-shadow:0 16px 48px rgba(16,24,40,.22),0 2px 8px rgba(16,24,40,.08);display:flex;flex-direction:column;overflow:hidden;animation:fd-in .2s ease-out}
.panel[hidden]{display:none}
@keyframes fd-in{from{opacity:0;transform:translateY(14px) scale(.98)}}
header{background:var(--accent);color:var(--on);padding:14px 10px 14px 16px;display:flex;align-items:center;gap:12px;flex:none}
.av{width:40px;height:40px;border-radius:50%;background:var(--soft);display:flex;align-items:center;justify-content:center;flex:none;font-weight:700}
.heading{flex:1;min-width:0}
h2{font-size:16px;font-weight:650;margin:0;line-height:1.3;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.status{font-size:12.5px;opacity:.92;display:flex;align-items:center;gap:6px}
.dot{width:8px;height:8px;border-radius:50%;background:#17b26a;box-shadow:0 0 0 2px var(--soft)}
.connecting .dot{background:#f79009}.offline .dot{background:#98a2b3}
.hb{width:36px;height:36px;border-radius:10px;border:0;background:transparent;color:inherit;display:flex;align-items:center;justify-content:center}
.hb:hover{background:var(--soft)}
.hb:focus-visible{outline-color:var(--on)}
.bar{flex:none;padding:9px 16px;font-size:13px;display:flex;align-items:center;gap:10px;border-bottom:1px solid #eaecf0}
.bar[hidden]{display:none}
.net{background:#fffaeb;color:#7a2e0e}
.queue{background:var(--tint);color:#1d2433}
.pos{min-width:26px;height:26px;padding:0 7px;border-radius:13px;background:var(--accent);color:var(--on);font-weight:700;font-size:13px;display:flex;align-items:center;justify-content:center;flex:none}
.eta{color:#475467;margin-left:auto;white-space:nowrap}
.spin{width:14px;height:14px;border-radius:50%;border:2px solid currentColor;border-right-color:transparent;animation:fd-spin 1s linear infinite;flex:none;opacity:.7}
@keyframes fd-spin{to{transform:rotate(360deg)}}
.scroll{flex:1;overflow-y:auto;padding:8px 14px 14px;background:#f7f8fa;overscroll-behavior:contain}
.log{display:flex;flex-direction:column}
.msg{display:flex;gap:8px;margin-top:12px;max-width:92%;align-self:flex-start;align-items:flex-start}
.msg.visitor{align-self:flex-end;flex-direction:row-reverse}
.body{display:flex;flex-direction:column;align-items:flex-start;min-width:0}
.visitor .body{align-items:flex-end}
.mav{width:28px;height:28px;border-radius:50%;background:var(--accent);color:var(--on);display:flex;align-items:center;justify-content:center;flex:none;font-size:12.5px;font-weight:700;margin-top:4px}
.agent .mav{margin-top:23px}
.agent .mav{background:#344054;color:#fff}
.who{font-size:12px;color:#475467;margin:0 4px 3px;font-weight:600}
.bubble{background:#fff;border:1px solid #eaecf0;border-radius:18px 18px 18px 6px;padding:9px 13px;overflow-wrap:anywhere;box-shadow:0 1px 2px rgba(16,24,40,.05);max-width:100%}
.visitor .bubble{background:var(--accent);color:var(--on);border-color:transparent;border-radius:18px 18px 6px 18px;white-space:pre-wrap}
.pending .bubble{opacity:.65}
.failed .bubble{background:#fef3f2;color:#912018;border-color:#fecdca}
.bubble p{margin:0}.bubble p+p,.bubble p+ul,.bubble p+ol,.bubble ul+p,.bubble ol+p{margin-top:8px}
.bubble ul,.bubble ol{margin:4px 0 0;padding-left:20px}
.bubble li+li{margin-top:2px}
.bubble code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f2f4f7;border-radius:5px;padding:1px 5px}
.bubble a{color:var(--ink);text-decoration:underline;text-underline-offset:2px}
.visitor .bubble a{color:inherit}
.meta{font-size:11.5px;color:#667085;margin:4px 4px 0;display:flex;align-items:center;gap:4px}
.meta .i{width:12px;height:12px}
.src{display:flex;align-items:center;gap:10px;margin-top:10px;padding:8px 10px;border:1px solid #eaecf0;border-radius:12px;background:#f9fafb;text-decoration:none!important;color:#1d2433!important}
a.src:hover{border-color:var(--ink)}
.src .i{color:var(--ink)}
.src small{display:block;font-size:11px;color:#667085;text-transform:uppercase;letter-spacing:.04em}
.src span{display:block;font-weight:600;line-height:1.3}
.src .x{width:14px;height:14px;margin-left:auto;color:#98a2b3}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin-top:10px}
.chip{border:1.5px solid var(--ink);color:var(--ink);background:#fff;border-radius:999px;padding:6px 13px;font-weight:550;font-size:13.5px;text-align:left;line-height:1.3}
.chip:hover{background:var(--accent);border-color:var(--accent);color:var(--on)}
.fb{display:flex;align-items:center;gap:6px;margin:8px 4px 0;font-size:12.5px;color:#475467}
.fb button{display:flex;align-items:center;gap:4px;border:1px solid #d0d5dd;background:#fff;border-radius:999px;padding:3px 10px;font-size:12.5px;color:#344054}
.fb button:hover{border-color:var(--ink);color:var(--ink)}
.fb .i{width:14px;height:14px}
.fb .ok{color:#067647;display:flex;align-items:center;gap:4px}
.note{align-self:center;text-align:center;font-size:12.5px;color:#475467;margin:16px 8px 2px;max-width:92%}
.note.err{color:#b42318}
.typing{display:flex;align-items:center;gap:8px;margin-top:12px;font-size:12px;color:#475467}
.typing[hidden]{display:none}
.dots{display:flex;gap:4px;background:#fff;border:1px solid #eaecf0;border-radius:18px 18px 18px 6px;padding:12px 14px}
.dots i{width:7px;height:7px;border-radius:50%;background:#98a2b3;animation:fd-b 1.2s infinite ease-in-out}
.dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}
@keyframes fd-b{0%,60%,100%{transform:none;opacity:.5}30%{transform:translateY(-4px);opacity:1}}
.card{align-self:stretch;background:#fff;border:1px solid #eaecf0;border-radius:16px;padding:16px;margin-top:14px;box-shadow:0 1px 2px rgba(16,24,40,.05)}
.card h3{margin:0 0 4px;font-size:14.5px;font-weight:650;display:flex;align-items:center;gap:8px}
.card p{margin:0 0 10px;color:#475467}
.center{text-align:center}.center h3{justify-content:center}
.stars{display:flex;justify-content:center;gap:2px}
.stars button{border:0;background:none;padding:4px;color:#d0d5dd;border-radius:8px}
.stars .i{width:30px;height:30px;fill:currentColor;stroke:none}
.stars:hover button,.stars button.on{color:#f5a524}
.stars button:hover~button{color:#d0d5dd}
label{display:block;font-size:12.5px;font-weight:600;color:#344054;margin:8px 0 4px}
.field{width:100%;border:1px solid #d0d5dd;border-radius:10px;padding:8px 11px;background:#fff;resize:vertical}
.field:focus{outline:none;border-color:var(--ink);box-shadow:0 0 0 3px var(--soft2)}
.primary{display:flex;align-items:center;justify-content:center;gap:8px;width:100%;margin-top:12px;border:0;border-radius:10px;padding:10px 14px;background:var(--accent);color:var(--on);font-weight:600}
.primary:hover{filter:brightness(1.08)}
.primary:disabled{opacity:.6;cursor:default}
.secondary{border:1px solid #d0d5dd;background:#fff;border-radius:10px;padding:7px 14px;font-weight:600;color:#344054}
.alert{color:#b42318;font-size:12.5px;margin-top:6px}
.alert:empty{display:none}
.confirm{flex:none;display:flex;align-items:center;gap:8px;padding:10px 14px;border-top:1px solid #eaecf0;background:#fff;font-size:13.5px}
.confirm[hidden]{display:none}
.confirm span{flex:1;font-weight:600}
.confirm .primary{width:auto;margin:0;padding:7px 14px}
.composer{flex:none;display:flex;align-items:flex-end;gap:8px;padding:10px 12px;border-top:1px solid #eaecf0;background:#fff}
.composer[hidden],.restart[hidden]{display:none}
.composer textarea{flex:1;resize:none;border:1px solid #d0d5dd;border-radius:20px;padding:9px 15px;line-height:20px;height:40px;max-height:124px;background:#fff;overflow-y:auto}
.composer textarea:focus{outline:none;border-color:var(--ink);box-shadow:0 0 0 3px var(--soft2)}
.composer textarea::placeholder{color:#667085}
.sendb{width:40px;height:40px;border-radius:50%;border:0;background:var(--accent);color:var(--on);display:flex;align-items:center;justify-content:center;flex:none}
.sendb.empty{opacity:.45}
.restart{flex:none;padding:0 14px 12px;background:#fff}
.brand{flex:none;text-align:center;font-size:11px;color:#667085;padding:0 0 8px;background:#fff}
@media (max-width:480px){.panel,.left .panel{inset:0;width:auto;height:auto;max-width:none;max-height:none;border-radius:0}.open .launcher{display:none}}
@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}
`;
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.append(el("style", null, CSS));
  }

  const fd = root.appendChild(el("div", "fd" + (left ? " left" : "")));
  const launcher = button("launcher", null, () => (S.open ? closePanel() : openPanel(true)), t("launcherLabel"));
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "fd-panel");
  launcher.append(icon("chat"));
  const badge = launcher.appendChild(el("span", "badge"));
  badge.hidden = true;

  const panel = el("section", "panel");
  panel.id = "fd-panel";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", title);

  const header = panel.appendChild(el("header"));
  const av = header.appendChild(el("div", "av"));
  av.append(icon("chat"));
  const heading = header.appendChild(el("div", "heading"));
  heading.append(el("h2", null, title));
  const status = heading.appendChild(el("div", "status connecting"));
  status.append(el("span", "dot"));
  const statusText = status.appendChild(el("span", null, t("connecting")));
  const endBtn = header.appendChild(button("hb", null, () => askEnd(), t("endLabel")));
  endBtn.append(icon("end"));
  endBtn.title = t("endLabel");
  const minBtn = header.appendChild(button("hb", null, () => closePanel(), t("closeLabel")));
  minBtn.append(icon("down"));
  minBtn.title = t("closeLabel");

  const netBar = panel.appendChild(el("div", "bar net"));
  netBar.setAttribute("role", "status");
  netBar.hidden = true;
  netBar.append(el("span", "spin"), el("span", null, t("offlineBanner")));
  const queueBar = panel.appendChild(el("div", "bar queue"));
  queueBar.setAttribute("role", "status");
  queueBar.hidden = true;
  const queuePos = queueBar.appendChild(el("span", "pos"));
  const queueText = queueBar.appendChild(el("span"));
  const queueEta = queueBar.appendChild(el("span", "eta"));

  const scroller = panel.appendChild(el("div", "scroll"));
  const log = scroller.appendChild(el("div", "log"));
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-label", title);
  const typing = scroller.appendChild(el("div", "typing"));
  typing.hidden = true;
  const dots = typing.appendChild(el("div", "dots"));
  dots.append(el("i"), el("i"), el("i"));
  const typingText = typing.appendChild(el("span"));

  const confirmBar = panel.appendChild(el("div", "confirm"));
  confirmBar.hidden = true;
  confirmBar.append(el("span", null, t("endPrompt")));
  confirmBar.append(button("secondary", t("cancel"), () => hideEnd()));
  const endYes = confirmBar.appendChild(button("primary", t("endConfirm"), () => {
    hideEnd();
    fire({ type: "close" });
  }));

  const form = panel.appendChild(el("form", "composer"));
  const input = form.appendChild(el("textarea"));
  input.rows = 1;
  input.maxLength = 4000;
  input.placeholder = t("placeholder");
  input.setAttribute("aria-label", t("inputLabel"));
  input.autocomplete = "off";
  input.value = S.draft || "";
  const sendBtn = form.appendChild(el("button", "sendb"));
  sendBtn.type = "submit";
  sendBtn.setAttribute("aria-label", t("sendLabel"));
  sendBtn.title = t("sendLabel");
  sendBtn.append(icon("send"));
  const restart = panel.appendChild(el("div", "restart"));
  restart.hidden = true;
  restart.append(button("primary", t("newConversation"), () => newConversation()));
  panel.append(el("div", "brand", t("poweredBy")));

  fd.append(panel, launcher);

  // ---- panel ----
  let unread = 0;
  function openPanel(focus) {
    S.open = true;
    save();
    panel.hidden = false;
    fd.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", t("closeLabel"));
    launcher.replaceChild(icon("close"), launcher.firstChild);
    unread = 0;
    badge.hidden = true;
    toBottom();
    resize();
    if (focus) (form.hidden ? restart.querySelector("button") : input).focus();
    if (!ws) connect();
  }
  function closePanel() {
    S.open = false;
    save();
    panel.hidden = true;
    fd.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", t("launcherLabel"));
    launcher.replaceChild(icon("chat"), launcher.firstChild);
    launcher.focus();
  }
  fd.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.hidden) {
      e.preventDefault();
      closePanel();
    }
  });
  function toBottom() {
    scroller.scrollTop = scroller.scrollHeight;
  }
  function notify() {
    if (panel.hidden) {
      unread++;
      badge.textContent = String(unread);
      badge.hidden = false;
    }
  }
  function askEnd() {
    confirmBar.hidden = false;
    endYes.focus();
  }
  function hideEnd() {
    confirmBar.hidden = true;
    if (!form.hidden) input.focus();
  }

  // ---- messages ----
  const seen = new Set();
  let agentName = "";
  // Notes shown live (joined, left) since the last message with a key: after a
  // reconnect, the history's system entries for them are not shown again.
  let liveNotes = 0;
  let rendered = false;

  function addMsg(role, at, opts) {
    const o = opts || {};
    const m = el("div", "msg " + role);
    if (role !== "visitor") {
      const a = m.appendChild(el("div", "mav"));
      if (role === "agent") a.textContent = (o.name || "?").trim().charAt(0).toUpperCase();
      else a.textContent = initial;
    }
    const body = m.appendChild(el("div", "body"));
    if (role === "agent") body.append(el("div", "who", o.name));
    const bubble = body.appendChild(el("div", "bubble"));
    const meta = body.appendChild(el("div", "meta"));
    if (role === "bot") meta.append(el("span", null, t("botName") + " · "));
    meta.append(stamp(at || Date.now()));
    m.bubble = bubble;
    m.body = body;
    m.meta = meta;
    (o.before && o.before.parentNode === log ? log.insertBefore(m, o.before) : log.appendChild(m));
    return m;
  }
  function dropChips() {
    for (const c of log.querySelectorAll(".chips")) c.remove();
  }
  function addVisitor(text, id, at, pending, before) {
    if (id) {
      if (seen.has("v:" + id)) return;
      seen.add("v:" + id);
      if (!pending) liveNotes = 0;
    }
    dropChips();
    const m = addMsg("visitor", at, { before });
    m.bubble.textContent = text;
    if (id) m.dataset.id = id;
    if (pending) {
      m.classList.add("pending");
      m.meta.replaceChildren(icon("clock"), el("span", null, t("sending")));
    }
    toBottom();
    return m;
  }
  function acked(id) {
    const m = log.querySelector('.msg.pending[data-id="' + CSS_escape(id) + '"]');
    if (!m) return;
    liveNotes = 0;
    m.classList.remove("pending");
    m.meta.replaceChildren(stamp(Date.now()));
  }
  function CSS_escape(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : s.replace(/["\\]/g, "\\$&");
  }
  function addReply(f, at, last, before) {
    if (f.answer_id) {
      if (seen.has("b:" + f.answer_id)) return;
      seen.add("b:" + f.answer_id);
      liveNotes = 0;
    }
    dropChips();
    const m = addMsg("bot", at, { before });
    m.bubble.append(markdown(f.text || ""));
    const src = f.source;
    if (src && src.type === "article" && src.title) {
      const href = src.url && safeUrl(src.url);
      const card = el(href ? "a" : "div", "src");
      if (href) {
        card.href = href;
        card.target = "_blank";
        card.rel = "noopener noreferrer";
      }
      card.append(icon("doc"));
      const txt = card.appendChild(el("div"));
      txt.append(el("small", null, t("articleLabel")), el("span", null, src.title));
      if (href) card.append(icon("ext", "x"));
      m.bubble.append(card);
    }
    if (last && f.quick_replies && f.quick_replies.length) {
      const chips = m.body.appendChild(el("div", "chips"));
      for (const q of f.quick_replies) {
        chips.append(button("chip", q.label, () => {
          queue(q.text ? { type: "message", text: q.text } : { type: "choice", value: q.value, label: q.label });
        }));
      }
    }
    // "Was this helpful?" on knowledge-base answers, not on small talk.
    if (f.kind === "answer" && f.answer_id && src && src.type === "article") m.body.append(feedback(f.answer_id));
    toBottom();
    return m;
  }
  function feedback(answerId) {
    const row = el("div", "fb");
    row.append(el("span", null, t("helpfulPrompt")));
    const give = (helpful) => () => {
      if (!fire({ type: "feedback", answer_id: answerId, helpful })) return;
      const ok = el("span", "ok");
      ok.setAttribute("role", "status");
      ok.append(icon("check"), t("feedbackThanks"));
      row.replaceChildren(ok);
    };
    const yes = row.appendChild(button(null, null, give(true)));
    yes.append(icon("up"), t("helpful"));
    const no = row.appendChild(button(null, null, give(false)));
    no.append(icon("dn"), t("notHelpful"));
    return row;
  }
  function addAgent(text, name, at, before) {
    const key = "a:" + at + ":" + text;
    if (seen.has(key)) return;
    seen.add(key);
    liveNotes = 0;
    dropChips();
    const m = addMsg("agent", at, { name: name || agentName || "Agent", before });
    m.bubble.append(markdown(text));
    toBottom();
  }
  function note(text, cls, before) {
    const n = el("div", "note" + (cls ? " " + cls : ""), text);
    before && before.parentNode === log ? log.insertBefore(n, before) : log.appendChild(n);
    toBottom();
    return n;
  }

  // ---- typing indicator ----
  let typingTimer = 0;
  function showTyping(who, ms) {
    typingText.textContent = who ? t("typing", { name: who }) : "";
    typing.hidden = false;
    typing.setAttribute("aria-label", t("typing", { name: who || t("botName") }));
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, ms || 15000);
    toBottom();
  }
  function hideTyping() {
    clearTimeout(typingTimer);
    typing.hidden = true;
  }

  // ---- conversation state ----
  let state = "bot", conn = "connecting";
  function setState(s) {
    state = s;
    const closed = s === "closed";
    form.hidden = closed;
    restart.hidden = !closed;
    endBtn.hidden = closed;
    if (closed) {
      confirmBar.hidden = true;
      queueBar.hidden = true;
      hideTyping();
    }
    if (s !== "queued") queueBar.hidden = true;
    setConn(conn);
  }
  function showQueue(f) {
    queueBar.hidden = state !== "queued";
    queuePos.textContent = String(f.position);
    queueText.textContent = f.position > 1 ? t("queue", { position: f.position }) : t("queueNext");
    queueEta.textContent = f.eta_seconds ? t("eta", { minutes: Math.max(1, Math.round(f.eta_seconds / 60)) }) : "";
  }
  function showClosed() {
    if (log.querySelector(".rating")) return;
    const card = log.appendChild(el("div", "card center rating"));
    card.append(el("h3", null, t("closed")), el("p", null, t("ratePrompt")));
    const stars = card.appendChild(el("div", "stars"));
    stars.setAttribute("role", "group");
    stars.setAttribute("aria-label", t("ratePrompt"));
    for (let score = 1; score <= 5; score++) {
      const b = stars.appendChild(button(null, null, () => {
        if (!fire({ type: "rating", score })) return;
        const done = el("p", null, t("rated"));
        done.setAttribute("role", "status");
        stars.replaceWith(done);
        if (!panel.hidden) restart.querySelector("button").focus();
      }, t("rateLabel", { score })));
      b.append(icon("star"));
    }
    toBottom();
    notify();
  }
  function leaveForm() {
    const card = log.appendChild(el("form", "card leave"));
    card.noValidate = true;
    const h = card.appendChild(el("h3"));
    h.append(icon("mail"), t("leaveTitle"));
    const eId = "fd-e" + Date.now(), mId = "fd-m" + Date.now();
    const le = card.appendChild(el("label", null, t("emailLabel")));
    le.htmlFor = eId;
    const email = card.appendChild(el("input", "field"));
    email.type = "email";
    email.id = eId;
    email.autocomplete = "email";
    email.required = true;
    const lm = card.appendChild(el("label", null, t("messageLabel")));
    lm.htmlFor = mId;
    const text = card.appendChild(el("textarea", "field"));
    text.id = mId;
    text.rows = 3;
    text.maxLength = 4000;
    text.required = true;
    const alert = card.appendChild(el("div", "alert"));
    alert.setAttribute("role", "alert");
    card.addEventListener("input", () => (alert.textContent = ""));
    const submit = card.appendChild(el("button", "primary", t("leaveSend")));
    submit.type = "submit";
    card.addEventListener("submit", (e) => {
      e.preventDefault();
      alert.textContent = "";
      if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email.value.trim())) {
        alert.textContent = t("invalidEmail");
        email.focus();
        return;
      }
      if (!text.value.trim()) {
        text.focus();
        return;
      }
      submit.disabled = true;
      submit.textContent = t("sending");
      queue({ type: "leave_message", email: email.value.trim(), text: text.value.trim() });
    });
    card.fail = (msg) => {
      submit.disabled = false;
      submit.textContent = t("leaveSend");
      alert.textContent = msg;
    };
    toBottom();
    return card;
  }

  // ---- the connection ----
  let ws = null, ready = false, attempt = 0, retryTimer = 0, inflight = null, lastTyping = 0;

  function setConn(c) {
    conn = c;
    status.className = "status " + c;
    statusText.textContent =
      c === "connecting" ? t("connecting")
      : c === "offline" ? t("reconnecting")
      : state === "with_agent" && agentName ? t("withAgent", { name: agentName })
      : state === "queued" ? t("waiting")
      : t("subtitle");
    netBar.hidden = c !== "offline";
    // The header shows who the visitor is talking to.
    const who = state === "with_agent" && agentName ? agentName.charAt(0).toUpperCase() : "";
    if (av.textContent !== who || (!who && !av.firstChild)) {
      av.replaceChildren(who || icon("chat"));
    }
  }
  function wanted() {
    return S.open || S.outbox.length > 0 || state === "queued" || state === "with_agent";
  }
  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (ws) return;
    if (netBar.hidden) setConn("connecting");
    let sock;
    try {
      sock = new WebSocket(wsUrl);
    } catch (_) {
      return retry();
    }
    ws = sock;
    sock.onopen = () => {
      const hello = { type: "hello", v: 1 };
      if (S.cid && S.token) {
        hello.conversation_id = S.cid;
        hello.resume_token = S.token;
      }
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (f && typeof f.type === "string") onFrame(f);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      ready = false;
      inflight = null;
      hideTyping();
      if (wanted()) {
        setConn("offline");
        retry();
      } else {
        setConn("connecting");
      }
    };
  }
  function retry() {
    clearTimeout(retryTimer);
    const cap = Math.min(10000, 500 * Math.pow(2, attempt++));
    retryTimer = setTimeout(connect, cap / 2 + (Math.random() * cap) / 2);
  }
  window.addEventListener("online", () => {
    if (!ws && wanted()) {
      attempt = 0;
      connect();
    }
  });
  function send(frame) {
    if (!ws || !ready) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }
  /** A frame that needs no acknowledgement; false when offline. */
  function fire(frame) {
    return send(frame);
  }

  // Frames that must arrive (messages, quick replies, offline messages) go
  // through the outbox: stored, sent one at a time, removed on ack, and resent
  // with the same id after a reconnect or a reload.
  function newId() {
    const r = new Uint32Array(2);
    crypto.getRandomValues(r);
    return "w" + Date.now().toString(36) + r[0].toString(36) + r[1].toString(36);
  }
  function queue(item) {
    item.id = newId();
    item.at = Date.now();
    S.outbox.push(item);
    save();
    if (item.type !== "leave_message") addVisitor(item.label || item.text, item.id, Date.now(), true);
    if (ws) pump();
    else connect();
  }
  function frameOf(item) {
    if (item.type === "choice") return { type: "choice", id: item.id, value: item.value };
    if (item.type === "leave_message") return { type: "leave_message", id: item.id, email: item.email, text: item.text };
    return { type: "message", id: item.id, text: item.text };
  }
  function pump() {
    if (!ready || inflight || !S.outbox.length || state === "closed") return;
    const item = S.outbox[0];
    inflight = item.id;
    if (state === "bot" && item.type !== "leave_message") showTyping("", 8000);
    send(frameOf(item));
  }
  function done(id) {
    const i = S.outbox.findIndex((o) => o.id === id);
    const item = i >= 0 ? S.outbox.splice(i, 1)[0] : null;
    save();
    if (inflight === id) inflight = null;
    return item;
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome": return onWelcome(f);
      case "ack": {
        const item = done(f.id);
        acked(f.id);
        if (item && item.type !== "leave_message" && state === "bot") hideTyping();
        return pump();
      }
      case "reply":
        hideTyping();
        addReply(f, Date.now(), true);
        if (f.kind === "escalate") setState("queued");
        return notify();
      case "queue":
        if (state !== "with_agent") setState("queued");
        return showQueue(f);
      case "offline": {
        hideTyping();
        // outside_hours and queue_full are not queued; no_agents stays in the queue
        if (f.reason !== "no_agents" && state === "queued") setState("bot");
        const said = log.querySelectorAll(".msg.bot .bubble");
        const last = said.length ? said[said.length - 1].textContent : "";
        if (f.message && f.message !== last) addReply({ text: f.message }, Date.now(), false);
        leaveForm();
        return notify();
      }
      case "ticket": {
        const head = S.outbox[0];
        if (head && head.type === "leave_message") done(head.id);
        const form = log.querySelector("form.leave:not(.sent)");
        const msg = t("ticket", { ticket_id: f.ticket_id });
        if (form) {
          form.classList.add("sent");
          const ok = el("p", "ok", msg);
          ok.setAttribute("role", "status");
          form.replaceChildren(ok);
        } else note(msg);
        return pump();
      }
      case "agent_joined":
        agentName = f.name || "";
        liveNotes++;
        setState("with_agent");
        setConn("online");
        note(t("agentJoined", { name: f.name }));
        return notify();
      case "agent_message":
        hideTyping();
        if (f.name) agentName = f.name;
        if (state !== "closed") setState("with_agent");
        addAgent(f.text || "", f.name, f.at || Date.now());
        return notify();
      case "typing":
        return showTyping(agentName || "", 5000);
      case "agent_left":
        liveNotes++;
        note(t("agentLeft", { name: f.name || agentName }));
        if (state === "with_agent") setState("queued");
        agentName = "";
        return setConn("online");
      case "closed":
        setState("closed");
        inflight = null;
        return showClosed();
      case "error": return onError(f);
    }
  }

  const RETRY = ["store_unavailable", "rate_limited"];
  const REJECT = ["empty_message", "message_too_long", "invalid_frame", "invalid_email", "not_offline"];
  function onError(f) {
    if (!ready) {
      // hello failed (store busy): try again on a new connection
      if (ws) ws.close();
      return;
    }
    if (inflight && f.code === "conversation_closed") {
      inflight = null;
      setState("closed");
      return showClosed();
    }
    if (inflight && RETRY.includes(f.code)) {
      inflight = null;
      setTimeout(pump, 1000 + Math.random() * 1000);
      return;
    }
    if (inflight && REJECT.includes(f.code)) {
      const item = done(inflight);
      hideTyping();
      if (item && item.type === "leave_message") {
        const form = log.querySelector("form.leave:not(.sent)");
        const msg = f.code === "invalid_email" ? t("invalidEmail") : f.message;
        if (form) form.fail(msg);
        else note(t("notSent", { message: msg }), "err");
      } else if (item) {
        const m = log.querySelector('.msg[data-id="' + CSS_escape(item.id) + '"]');
        if (m) {
          m.classList.remove("pending");
          m.classList.add("failed");
          m.meta.replaceChildren(el("span", null, t("notSent", { message: f.message || f.code })));
        }
      }
      return pump();
    }
    if (f.code !== "unknown_answer") note(t("error", { message: f.message || f.code }), "err");
  }

  function onWelcome(f) {
    const fresh = S.cid && f.conversation_id !== S.cid;
    S.cid = f.conversation_id;
    S.token = f.resume_token;
    save();
    ready = true;
    attempt = 0;
    if (fresh && log.childElementCount) reset();
    setState(f.state || "bot");
    const history = Array.isArray(f.history) ? f.history : [];
    // Entries this page has not shown yet go before the messages still waiting to be stored.
    const ids = new Set(history.map((h) => h.id).filter(Boolean));
    const before = Array.from(log.querySelectorAll(".msg.pending")).find((m) => !ids.has(m.dataset.id)) || null;
    // After a reconnect, system entries up to the last message already shown
    // were shown too (live), as were the last few live notes.
    let known = -1, skip = 0;
    if (rendered) {
      history.forEach((h, i) => {
        if (seen.has(h.role === "visitor" ? "v:" + h.id : h.role === "bot" ? "b:" + h.answer_id : "a:" + h.at + ":" + h.text)) known = i;
      });
      skip = liveNotes;
    }
    history.forEach((h, i) => {
      const last = i === history.length - 1 && f.state === "bot";
      if (h.role === "visitor") addVisitor(h.text, h.id, h.at, false, before);
      else if (h.role === "bot") addReply(h, h.at, last, before);
      else if (h.role === "agent") {
        if (h.name) agentName = h.name;
        addAgent(h.text, h.name, h.at, before);
      } else {
        const text = systemNote(h);
        if (i <= known) return;
        if (skip > 0) {
          skip--;
          return;
        }
        note(text, null, before);
      }
    });
    rendered = true;
    for (const id of ids) acked(id);
    setConn("online");
    if (state === "closed") showClosed();
    toBottom();
    pump();
  }

  /** A stored system entry in the interface's words (and who has the conversation now). */
  function systemNote(h) {
    const s = String(h.text || "");
    let m;
    if ((m = /^(.+) joined$/.exec(s))) {
      agentName = m[1];
      return t("agentJoined", { name: m[1] });
    }
    if ((m = /^(.+) left$/.exec(s))) {
      agentName = "";
      return t("agentLeft", { name: m[1] });
    }
    if ((m = /^(.+) handed the conversation to (.+)$/.exec(s))) {
      agentName = m[2];
      return t("transferred", { from: m[1], name: m[2] });
    }
    return s === "conversation closed" ? t("closed") : s;
  }

  function reset() {
    log.replaceChildren();
    seen.clear();
    liveNotes = 0;
    rendered = false;
    agentName = "";
    inflight = null;
    hideTyping();
    start();
  }
  function newConversation() {
    S.cid = S.token = null;
    save();
    const old = ws;
    ws = null;
    ready = false;
    if (old) old.close();
    setState("bot");
    reset();
    attempt = 0;
    connect();
    input.focus();
  }
  /** The greeting and what is still waiting to be sent. */
  function start() {
    if (greeting) {
      const quick = S.outbox.length ? [] : suggestions.map((x) => ({ label: x, text: x }));
      addReply({ text: greeting, quick_replies: quick }, Date.now(), true);
    }
    for (const o of S.outbox) if (o.type !== "leave_message") addVisitor(o.label || o.text, o.id, o.at || Date.now(), true);
  }

  // ---- the composer ----
  function resize() {
    // Grows with the text up to five lines (the CSS height fits one).
    input.style.height = "";
    if (input.scrollHeight > input.clientHeight + 1) input.style.height = Math.min(input.scrollHeight + 2, 124) + "px";
    sendBtn.classList.toggle("empty", !input.value.trim());
  }
  input.addEventListener("input", () => {
    S.draft = input.value;
    save();
    resize();
    const now = Date.now();
    if ((state === "queued" || state === "with_agent") && input.value && now - lastTyping >= 2000 && fire({ type: "typing" })) lastTyping = now;
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : submit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  function submit() {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    S.draft = "";
    resize();
    queue({ type: "message", text });
  }

  // ---- go ----
  function mount() {
    document.body.appendChild(host);
    start();
    resize();
    if (S.open) openPanel(false);
    if (S.cid || S.outbox.length || S.open) connect();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
