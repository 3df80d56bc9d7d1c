// The website chat widget, served by the inbox at /widget.js. Embedded with
//   <script src="{base}/widget.js" data-channel="{channel_id}" async></script>
// it renders in an open shadow root (the site's CSS cannot reach it), keeps the visitor's token in
// the site's localStorage (the chat survives reloads), sends with a client id (a retried send is
// taken once; messages written offline are sent when the network is back) and follows replies
// over server-sent events, which resume after the last event seen.
//
// Optional attributes: data-lang ("en", "de"; default the browser's), and for a signed-in user
// data-user-id, data-user-email, data-user-name, data-user-hash (the HMAC your server computes,
// see docs/channels/web-chat.md).
(() => {
  "use strict";
  const script = document.currentScript
    || document.querySelector("script[data-channel][src*='widget.js']");
  if (!script || window.__inboxChat) return;
  window.__inboxChat = true;
  const channel = script.dataset.channel;
  const base = script.src.replace(/\/widget\.js(?:[?#].*)?$/, "");
  const api = `${base}/widget/${encodeURIComponent(channel)}`;
  const keyOf = (name) => `inbox-chat:${channel}:${name}`;

  const texts = {
    en: {
      open: "Open chat", close: "Close chat", title: "Chat with us", message: "Message",
      send: "Send", name: "Your name", email: "Your email (for replies by email)",
      sending: "Sending…", delivered: "Delivered", offline: "Offline: your message will be sent when you are back online.",
      required: "Please fill this in first.", you: "You", agent: "Support",
      unavailable: "The chat is unavailable right now.", refused: "This message was not accepted: ",
      typing: (name) => `${name} is typing…`, read: "Read",
      attach: "Attach a file", file: "File", tooLarge: "This file is too large.", fileType: "This kind of file cannot be sent.",
    },
    de: {
      open: "Chat öffnen", close: "Chat schließen", title: "Schreiben Sie uns", message: "Nachricht",
      send: "Senden", name: "Ihr Name", email: "Ihre E-Mail (für Antworten per E-Mail)",
      sending: "Wird gesendet…", delivered: "Zugestellt", offline: "Offline: Ihre Nachricht wird gesendet, sobald Sie wieder online sind.",
      required: "Bitte zuerst ausfüllen.", you: "Sie", agent: "Support",
      unavailable: "Der Chat ist gerade nicht erreichbar.", refused: "Diese Nachricht wurde nicht angenommen: ",
      typing: (name) => `${name} schreibt…`, read: "Gelesen",
      attach: "Datei anhängen", file: "Datei", tooLarge: "Diese Datei ist zu groß.", fileType: "Diese Art von Datei kann nicht gesendet werden.",
    },
  };
  const lang = (script.dataset.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  const t = texts[lang] || texts.en;

  const store = {
    get(name) { try { return localStorage.getItem(keyOf(name)); } catch { return null; } },
    set(name, value) { try { localStorage.setItem(keyOf(name), value); } catch { /* private mode */ } },
  };
  const outbox = {
    all() { try { return JSON.parse(store.get("outbox") || "[]"); } catch { return []; } },
    save(items) { store.set("outbox", JSON.stringify(items)); },
    add(item) { const items = outbox.all(); items.push(item); outbox.save(items); },
    remove(id) { outbox.save(outbox.all().filter((i) => i.client_id !== id)); },
  };

  // --- the page ----------------------------------------------------------------------------
  const host = document.createElement("div");
  host.setAttribute("data-inbox-chat", "");
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
<style>
  :host { all: initial; }
  * { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
  .launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 56px; height: 56px;
    border-radius: 50%; border: 0; background: var(--accent); color: #fff; cursor: pointer;
    display: flex; align-items: center; justify-content: center; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
  .launcher:focus-visible, button:focus-visible, textarea:focus-visible, input:focus-visible {
    outline: 3px solid #111; outline-offset: 2px; }
  .panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000; width: 360px; height: 520px;
    max-height: calc(100vh - 108px); display: flex; flex-direction: column; background: #fff; color: #111;
    border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.3); overflow: hidden; }
  .panel[hidden] { display: none; }
  header { background: var(--accent); color: #fff; padding: 12px 14px; display: flex; align-items: center; }
  header h2 { font-size: 16px; margin: 0; flex: 1; }
  header button { background: none; border: 0; color: #fff; font-size: 22px; cursor: pointer; line-height: 1; }
  .log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px;
    background: #f6f7f9; margin: 0; list-style: none; }
  .log li { max-width: 85%; padding: 8px 10px; border-radius: 10px; white-space: pre-wrap; word-wrap: break-word;
    font-size: 14px; line-height: 1.35; }
  .log .visitor { align-self: flex-end; background: var(--accent); color: #fff; }
  .log .agent, .log .note { align-self: flex-start; background: #fff; border: 1px solid #dde1e6; }
  .log .note { color: #444; font-style: italic; }
  .who { display: block; font-size: 11px; font-weight: 600; opacity: .8; margin-bottom: 2px; }
  .status { display: block; font-size: 11px; opacity: .8; margin-top: 2px; text-align: right; }
  .notice { padding: 6px 12px; font-size: 12px; background: #fff4d6; color: #5a4300; }
  .typing { padding: 4px 12px; font-size: 12px; color: #555; font-style: italic; background: #f6f7f9; }
  .typing:empty { display: none; }
  .notice:empty { display: none; }
  form { border-top: 1px solid #dde1e6; padding: 8px; display: flex; flex-direction: column; gap: 6px; }
  .prechat input { width: 100%; padding: 8px; border: 1px solid #c4c9d0; border-radius: 6px; font-size: 14px; }
  .prechat[hidden] { display: none; }
  .row { display: flex; gap: 6px; }
  textarea { flex: 1; resize: none; height: 40px; padding: 8px; border: 1px solid #c4c9d0; border-radius: 6px;
    font-size: 14px; }
  .send { background: var(--accent); color: #fff; border: 0; border-radius: 6px; padding: 0 14px; cursor: pointer; font-size: 14px; }
  .attach { background: #fff; color: #333; border: 1px solid #c4c9d0; border-radius: 6px; width: 40px; cursor: pointer; font-size: 18px; }
  .attach[hidden], .files[hidden] { display: none; }
  .file { display: block; font-size: 12px; text-decoration: underline dotted; margin-top: 2px; }
  @media (max-width: 480px) {
    .panel { right: 0; bottom: 0; width: 100vw; height: 100vh; max-height: none; border-radius: 0; }
  }
</style>
<button class="launcher" type="button" aria-expanded="false" aria-controls="panel"></button>
<section class="panel" id="panel" role="dialog" aria-labelledby="title" hidden>
  <header><h2 id="title"></h2><button class="close" type="button"></button></header>
  <ol class="log" role="log" aria-live="polite"></ol>
  <div class="typing" role="status" aria-live="polite"></div>
  <div class="notice" role="status"></div>
  <form novalidate>
    <div class="prechat" hidden>
      <input class="name" type="text" autocomplete="name" maxlength="200">
      <input class="email" type="email" autocomplete="email" maxlength="320">
    </div>
    <div class="row">
      <button class="attach" type="button" hidden>+</button>
      <input class="files" type="file" hidden>
      <textarea rows="1" maxlength="4000"></textarea>
      <button class="send" type="submit"></button>
    </div>
  </form>
</section>`;
  const $ = (selector) => root.querySelector(selector);
  const launcher = $(".launcher");
  const panel = $(".panel");
  const log = $(".log");
  const notice = $(".notice");
  const typingLine = $(".typing");
  const form = $("form");
  const input = $("textarea");
  const prechat = $(".prechat");
  const nameInput = $(".name");
  const emailInput = $(".email");
  const attach = $(".attach");
  const picker = $(".files");
  attach.setAttribute("aria-label", t.attach);
  attach.title = t.attach;
  attach.addEventListener("click", () => picker.click());
  launcher.setAttribute("aria-label", t.open);
  // A drawn bubble: an emoji needs a font the visitor may not have.
  launcher.innerHTML = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false">'
    + '<path fill="currentColor" d="M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg>';
  $(".close").setAttribute("aria-label", t.close);
  $(".close").textContent = "×";
  $("#title").textContent = t.title;
  input.setAttribute("aria-label", t.message);
  $(".send").textContent = t.send;
  nameInput.setAttribute("aria-label", t.name);
  nameInput.placeholder = t.name;
  emailInput.setAttribute("aria-label", t.email);
  emailInput.placeholder = t.email;
  host.style.setProperty("--accent", "#2563eb");

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", open ? t.close : t.open);
    if (open) { input.focus(); scrollDown(); } else { launcher.focus(); }
  }
  launcher.addEventListener("click", () => setOpen(panel.hidden));
  $(".close").addEventListener("click", () => setOpen(false));
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") setOpen(false); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  // --- the chat ----------------------------------------------------------------------------
  const shown = new Map(); // entry id or client id → <li>
  let session = null;
  let settings = null;
  let stream = null;
  let readAt = 0; // ms: the visitor's messages up to here were read by an agent
  let typingTimer = null;

  // Bubbles stay in the order they were written (`at`, ms; replies may arrive out of order).
  function bubble(kind, text, who, at = Date.now(), files = []) {
    const item = document.createElement("li");
    item.className = kind;
    item.dataset.at = String(at);
    if (who) {
      const name = document.createElement("span");
      name.className = "who";
      name.textContent = who;
      item.append(name);
    }
    item.append(document.createTextNode(text));
    for (const name of files) {
      const file = document.createElement("span");
      file.className = "file";
      file.textContent = `${t.file}: ${name}`;
      item.append(file);
    }
    const later = [...log.children].find((other) => Number(other.dataset.at) > at);
    log.insertBefore(item, later || null);
    scrollDown();
    return item;
  }

  function setStatus(item, text) {
    let status = item.querySelector(".status");
    if (!status) {
      status = document.createElement("span");
      status.className = "status";
      item.append(status);
    }
    status.textContent = text;
  }

  // An entry of the chat log: each shown once, a visitor's own send marked delivered.
  function show(entry) {
    if (shown.has(entry.id)) return;
    const at = Date.parse(entry.at) || Date.now();
    const status = at <= readAt ? t.read : t.delivered;
    if (entry.from === "visitor" && entry.client_id && shown.has(entry.client_id)) {
      const item = shown.get(entry.client_id);
      item.dataset.at = String(at);
      setStatus(item, status);
      shown.set(entry.id, item);
      return;
    }
    const files = entry.files || [];
    const item = entry.from === "agent"
      ? bubble("agent", entry.text, entry.agent || t.agent, at, files)
      : bubble("visitor", entry.text, undefined, at, files);
    if (entry.from === "visitor") setStatus(item, status);
    if (entry.from === "agent") typingLine.textContent = "";
    shown.set(entry.id, item);
    if (entry.client_id) shown.set(entry.client_id, item);
  }

  function identity() {
    const d = script.dataset;
    if (!d.userId || !d.userHash) return undefined;
    const user = { user_id: d.userId, hash: d.userHash };
    if (d.userEmail) user.email = d.userEmail;
    if (d.userName) user.name = d.userName;
    return user;
  }

  async function post(path, body, headers = {}) {
    return fetch(`${api}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  }

  async function start(details = {}) {
    const body = { visitor_token: store.get("visitor") || undefined, user: identity(), ...details };
    let response;
    try {
      response = await post("session", body);
    } catch {
      throw new Error(t.unavailable); // offline, or a site this chat does not serve
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw Object.assign(new Error(problem.message || t.unavailable), { field: problem.field });
    }
    session = await response.json();
    settings = session.settings;
    store.set("visitor", session.visitor_token);
    host.style.setProperty("--accent", settings.accent_color);
    return session;
  }

  function greet() {
    if (settings.greeting) bubble("note", settings.greeting, undefined, 0);
    if (settings.away_text) bubble("note", settings.away_text, undefined, 0);
    const wantsName = settings.name_field !== "off";
    const wantsEmail = settings.email_field !== "off";
    const named = store.get("introduced") === "1" || session.identity === "verified";
    prechat.hidden = named || !(wantsName || wantsEmail);
    nameInput.hidden = !wantsName;
    emailInput.hidden = !wantsEmail;
    nameInput.required = settings.name_field === "required";
    emailInput.required = settings.email_field === "required";
    attach.hidden = !settings.uploads;
    picker.accept = (settings.upload_types || []).join(",");
  }

  function follow() {
    if (stream) stream.close();
    stream = new EventSource(`${api}/stream?chat=${encodeURIComponent(session.chat_token)}`);
    stream.addEventListener("message", (event) => {
      try { show(JSON.parse(event.data)); } catch { /* not ours */ }
    });
    stream.addEventListener("typing", (event) => {
      let signal;
      try { signal = JSON.parse(event.data); } catch { return; }
      typingLine.textContent = t.typing(signal.agent || t.agent);
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => { typingLine.textContent = ""; },
        Math.max(1000, (Date.parse(signal.until) || Date.now()) - Date.now()));
    });
    stream.addEventListener("read", (event) => {
      let signal;
      try { signal = JSON.parse(event.data); } catch { return; }
      readAt = Math.max(readAt, Date.parse(signal.at) || 0);
      for (const item of log.querySelectorAll("li.visitor")) {
        if (Number(item.dataset.at) <= readAt && item.querySelector(".status")?.textContent === t.delivered) {
          setStatus(item, t.read);
        }
      }
    });
    // The browser reconnects by itself after a drop (resuming with Last-Event-ID); a stream it
    // gave up on is opened again (its history is shown once: entries are kept by id).
    const mine = stream;
    stream.addEventListener("error", () => {
      if (mine.readyState === EventSource.CLOSED) setTimeout(() => { if (stream === mine) follow(); }, 2000);
    });
  }

  // Sends what waits in the outbox, oldest first, until it is empty (messages written while a
  // send is on its way go next); stops at the first that cannot go now.
  let flushing = false;
  async function flush() {
    if (flushing || !session) return;
    flushing = true;
    try {
      for (let item = outbox.all()[0]; item; item = outbox.all()[0]) {
        let response;
        try {
          response = await post("messages",
            { client_id: item.client_id, text: item.text, attachments: item.attachments || [] },
            { "x-chat-token": session.chat_token });
        } catch {
          notice.textContent = t.offline;
          return flushLater();
        }
        if (response.status === 202) {
          const accepted = await response.json();
          outbox.remove(item.client_id);
          const bubbleOf = shown.get(item.client_id);
          if (bubbleOf) { setStatus(bubbleOf, t.delivered); shown.set(accepted.id, bubbleOf); }
          notice.textContent = "";
        } else if (response.status === 401) {
          await start();
          follow();
          return flushLater();
        } else if (response.status === 429 || response.status >= 500) {
          notice.textContent = t.unavailable;
          return flushLater(Number(response.headers.get("retry-after")) * 1000 || 5000);
        } else {
          const problem = await response.json().catch(() => ({}));
          outbox.remove(item.client_id);
          const bubbleOf = shown.get(item.client_id);
          if (bubbleOf) setStatus(bubbleOf, t.refused + (problem.message || response.status));
        }
      }
    } finally {
      flushing = false;
    }
  }
  let retry = null;
  function flushLater(ms = 2000) {
    clearTimeout(retry);
    retry = setTimeout(flush, ms);
  }
  window.addEventListener("online", () => flush());

  function clientId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !session) return;
    // Cleared now: what is typed while the pre-chat answers go out is the next message.
    input.value = "";
    if (!(await introduce())) {
      if (!input.value) input.value = text;
      return;
    }
    queue(text, []);
  });

  // The pre-chat form, before the first message: its answers start the session again.
  async function introduce() {
    if (prechat.hidden) return true;
    for (const field of [nameInput, emailInput]) {
      if (!field.hidden && field.required && !field.value.trim()) {
        notice.textContent = t.required;
        field.focus();
        return false;
      }
    }
    try {
      await start({ name: nameInput.value.trim() || undefined, email: emailInput.value.trim() || undefined });
    } catch (error) {
      notice.textContent = error.message;
      return false;
    }
    store.set("introduced", "1");
    prechat.hidden = true;
    follow();
    return true;
  }

  // A message into the outbox and onto the screen; sent at once when possible.
  function queue(text, attachments) {
    const item = { client_id: clientId(), text, attachments };
    outbox.add(item);
    const sent = bubble("visitor", text, undefined, Date.now(), attachments.map((a) => a.name));
    setStatus(sent, t.sending);
    shown.set(item.client_id, sent);
    flush();
  }

  // A picked file is uploaded now (it is too big to keep for later), then sent as a message
  // with whatever was typed.
  picker.addEventListener("change", async () => {
    const file = picker.files && picker.files[0];
    picker.value = "";
    if (!file || !session || !(await introduce())) return;
    if (file.size > settings.max_upload_bytes) { notice.textContent = t.tooLarge; return; }
    let response;
    try {
      response = await fetch(`${api}/files?name=${encodeURIComponent(file.name)}`, {
        method: "POST",
        headers: { "content-type": file.type || "application/octet-stream", "x-chat-token": session.chat_token },
        body: file,
      });
    } catch {
      notice.textContent = t.offline;
      return;
    }
    if (response.status !== 201) {
      notice.textContent = response.status === 415 ? t.fileType : response.status === 413 ? t.tooLarge : t.unavailable;
      return;
    }
    notice.textContent = "";
    const uploaded = await response.json();
    const text = input.value.trim();
    input.value = "";
    queue(text, [uploaded]);
  });

  async function boot() {
    document.body.append(host);
    try {
      await start();
    } catch (error) {
      notice.textContent = error.message;
      return;
    }
    greet();
    follow();
    // After the history: messages written but not yet taken (offline, a closed tab) show as
    // sending, then go.
    stream.addEventListener("ready", () => {
      for (const item of outbox.all()) {
        if (shown.has(item.client_id)) continue;
        const waiting = bubble("visitor", item.text);
        setStatus(waiting, t.sending);
        shown.set(item.client_id, waiting);
      }
      flush();
    }, { once: true });
  }
  if (document.body) boot(); else document.addEventListener("DOMContentLoaded", boot);
})();
