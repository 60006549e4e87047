"use strict";
(() => {
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const form = document.getElementById("form");
  const input = document.getElementById("text");
  const pending = new Map();
  let ws, seq = 0, backoff = 500;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function show(role, text, extra) {
    const m = el("div", "msg " + role, text);
    if (extra) m.append(extra);
    log.append(m);
    log.scrollTop = log.scrollHeight;
    return m;
  }
  function send(frame) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame)); }
  function reply(f) {
    const extra = el("div");
    if (f.source && f.source.type === "article") {
      const p = el("div", "source");
      const a = el("a", "", f.source.title || f.source.id);
      if (f.source.url) { a.href = f.source.url; a.target = "_blank"; a.rel = "noopener"; }
      p.append(a); extra.append(p);
    }
    if (f.quick_replies && f.quick_replies.length) {
      const chips = el("div", "chips");
      for (const q of f.quick_replies) {
        const b = el("button", "", q.label);
        b.type = "button";
        b.onclick = () => { const id = "m" + Date.now() + "-" + (seq++); show("visitor", q.label); pending.set(id, {type: "choice", id, value: q.value}); send(pending.get(id)); };
        chips.append(b);
      }
      extra.append(chips);
    }
    if (f.kind === "answer" && f.answer_id) {
      const chips = el("div", "chips");
      for (const [label, helpful] of [["Helpful", true], ["Not helpful", false]]) {
        const b = el("button", "", label);
        b.type = "button";
        b.onclick = () => { send({type: "feedback", answer_id: f.answer_id, helpful}); chips.remove(); };
        chips.append(b);
      }
      extra.append(chips);
    }
    show("bot", f.text, extra);
  }
  function connect() {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => {
      backoff = 500;
      status.textContent = "connected";
      send({type: "hello", v: 1, conversation_id: localStorage.getItem("fd_conversation") || undefined, resume_token: localStorage.getItem("fd_token") || undefined});
    };
    ws.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      switch (f.type) {
        case "welcome":
          if (f.conversation_id !== localStorage.getItem("fd_conversation")) log.textContent = "";
          localStorage.setItem("fd_conversation", f.conversation_id);
          localStorage.setItem("fd_token", f.resume_token);
          if (!log.childElementCount) {
            for (const h of f.history) h.role === "bot" ? reply(h) : show(h.role, h.text);
            if (!f.history.length) show("bot", "Hi! Ask me anything about orders, delivery, returns or your account.");
          }
          for (const p of pending.values()) send(p);
          break;
        case "ack": pending.delete(f.id); break;
        case "reply": reply(f); break;
        case "queue": show("system", "You're number " + f.position + " in the queue for a person."); break;
        case "agent_joined": show("system", f.name + " joined the conversation."); break;
        case "agent_message": show("agent", f.text); break;
        case "agent_left": show("system", "The agent left the conversation."); break;
        case "closed": show("system", "Conversation closed."); localStorage.removeItem("fd_conversation"); localStorage.removeItem("fd_token"); break;
        case "error": show("system", "Error: " + f.message); break;
      }
    };
    ws.onclose = () => {
      status.textContent = "reconnecting…";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const id = "m" + Date.now() + "-" + (seq++);
    pending.set(id, {type: "message", id, text});
    show("visitor", text);
    send(pending.get(id));
    input.value = "";
  };
  connect();
})();
