// The inbox's one script: live updates (server-sent events), forms without page reloads,
// canned replies and keyboard shortcuts. Every page works without it; it only enhances.
// Content from customers is never inserted as HTML built here: fragments come rendered and
// escaped by the server, and text is set with textContent.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

/** Fetches a fragment of ours, or null when it failed (the page stays as it is). */
async function fragment(url) {
  const response = await fetch(url, { headers: { "X-Requested-With": "fetch" } });
  // The session ended (signed out elsewhere, expired, agent disabled): go and sign in again.
  if (response.redirected && new URL(response.url).pathname === "/login") {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    return null;
  }
  if (!response.ok) return null;
  return response.text();
}

/** Parses trusted server HTML into nodes. */
function nodes(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return template.content;
}

// --- times in the agent's zone ----------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});
function localizeTimes(root = document) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) el.textContent = timeFormat.format(at);
  }
}

// --- the list -----------------------------------------------------------------------------

const listBox = document.getElementById("conv-list");
const conversation = document.querySelector("[data-conversation]");
const openId = conversation?.dataset.conversation ?? "";
const openContact = conversation?.dataset.contact ?? "";
const baseTitle = document.title;

function updateTitle() {
  const unread = Number(listBox?.querySelector("[data-unread]")?.dataset.unread ?? 0);
  document.title = unread > 0 ? `(${unread}) ${baseTitle}` : baseTitle;
}

// Answers may arrive out of order. Each kind of refresh numbers its requests and shows an answer
// only if no answer to a later request (which saw a later state) is shown already.
function inOrder() {
  let started = 0;
  let shown = 0;
  return {
    start: () => ++started,
    show(ticket) {
      if (ticket < shown) return false;
      shown = ticket;
      return true;
    },
  };
}

let listTimer = null;
const listOrder = inOrder();
function refreshListSoon() {
  if (!listBox) return;
  clearTimeout(listTimer);
  listTimer = setTimeout(async () => {
    const url = new URL(listBox.dataset.listUrl, location.origin);
    if (openId) url.searchParams.set("selected", openId);
    const ticket = listOrder.start();
    const html = await fragment(url);
    if (html === null || !listOrder.show(ticket)) return;
    listBox.replaceChildren(nodes(html));
    localizeTimes(listBox);
    updateTitle();
  }, 120);
}

// --- the open conversation ----------------------------------------------------------------

const history = document.getElementById("history");

function scrollToEnd() {
  if (history) history.scrollTop = history.scrollHeight;
}

const messageOrder = new Map();

/** Inserts or replaces one message of the open timeline. */
async function showMessage(messageId) {
  if (!history || !openId) return;
  if (!messageOrder.has(messageId)) messageOrder.set(messageId, inOrder());
  const order = messageOrder.get(messageId);
  const ticket = order.start();
  const html = await fragment(`/conversations/${openId}/messages/${messageId}`);
  if (html === null || !order.show(ticket)) return;
  const incoming = nodes(html).firstElementChild;
  if (!incoming) return;
  localizeTimes(incoming);
  const existing = document.getElementById(incoming.id);
  if (existing) {
    existing.replaceWith(incoming);
  } else {
    const nearEnd = history.scrollHeight - history.scrollTop - history.clientHeight < 120;
    history.append(incoming);
    if (nearEnd) scrollToEnd();
  }
}

const metaOrder = inOrder();

async function refreshMeta() {
  if (!document.getElementById("conv-meta") || !openId) return;
  const ticket = metaOrder.start();
  const html = await fragment(`/conversations/${openId}/meta`);
  if (html !== null && metaOrder.show(ticket)) showMeta(html);
}

function edited(field) {
  if (field.type === "hidden") return false;
  if (field.tagName === "SELECT") return [...field.options].some((o) => o.selected !== o.defaultSelected);
  return field.value !== field.defaultValue;
}

/**
 * Shows a fresh rendering of the conversation's state, keeping what the agent is typing or
 * choosing in a field (unless it is being saved) and the focus.
 */
function showMeta(html) {
  const box = document.getElementById("conv-meta");
  if (!box) return;
  const kept = [...box.querySelectorAll("input[id], select[id], textarea[id]")]
    .filter((field) => !field.form?.dataset.saving && edited(field))
    .map((field) => [field.id, field.value]);
  const focused = box.contains(document.activeElement) ? document.activeElement.id : "";
  box.replaceChildren(nodes(html));
  for (const [id, value] of kept) {
    const field = document.getElementById(id);
    if (field) field.value = value;
  }
  if (focused) document.getElementById(focused)?.focus();
  localizeTimes(box);
  enhanceForms(box);
  arrangeMeta(box);
}

/** The customer panel starts open where there is room for it; "until" shows for snoozing only. */
function arrangeMeta(root = document) {
  for (const panel of root.querySelectorAll("details[data-open-wide]")) {
    if (!panel.dataset.arranged) {
      panel.dataset.arranged = "1";
      panel.open = window.matchMedia("(min-width: 900px)").matches;
    }
  }
  for (const select of root.querySelectorAll('select[name="status"]')) {
    const until = select.form?.querySelector(".snooze-until");
    if (!until) continue;
    const toggle = () => { until.hidden = select.value !== "snoozed"; };
    toggle();
    select.addEventListener("change", toggle);
  }
}

// "Older messages": the previous page is put above, where the reader is.
document.addEventListener("click", async (event) => {
  const link = event.target.closest("a[data-older]");
  if (!link || !history) return;
  event.preventDefault();
  const html = await fragment(link.href);
  if (html === null) return;
  const before = history.scrollHeight;
  const content = nodes(html);
  localizeTimes(content);
  link.replaceWith(content);
  history.scrollTop += history.scrollHeight - before;
});

// --- live updates -------------------------------------------------------------------------

function listen() {
  if (!listBox && !history) return;
  const source = new EventSource("/events/stream");
  source.addEventListener("change", (event) => {
    let change;
    try { change = JSON.parse(event.data); } catch { return; }
    refreshListSoon();
    const here = change.conversation_id === openId
      || (openContact && change.contact_id === openContact);
    if (!here) return;
    if (change.message_id) showMessage(change.message_id);
    if (change.conversation_id === openId && !change.message_id) refreshMeta();
  });
  source.addEventListener("resync", () => {
    refreshListSoon();
    refreshMeta();
  });
}

// --- forms --------------------------------------------------------------------------------

function enhanceForms(root = document) {
  for (const form of root.querySelectorAll("form[data-enhance]")) {
    if (form.dataset.enhanced) continue;
    form.dataset.enhanced = "1";
    form.addEventListener("submit", (event) => submitForm(event, form));
  }
}

/** Uploads the files picked in a reply form; gives their refs as JSON, or null on failure. */
async function upload(form) {
  const input = form.querySelector('input[type="file"]');
  const refs = [];
  for (const file of input?.files ?? []) {
    const response = await fetch(`/api/v1/attachments?filename=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-CSRF-Token": csrf },
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      showFormError(form, `${file.name}: ${error.message ?? response.status}`);
      return null;
    }
    refs.push(await response.json());
  }
  return JSON.stringify(refs);
}

async function submitForm(event, form) {
  event.preventDefault();
  const body = new URLSearchParams(new FormData(form));
  body.delete("files");
  if (form.dataset.enhance === "reply") {
    const refs = await upload(form);
    if (refs === null) return;
    body.set("attachments", refs);
  }
  if (event.submitter?.name) body.set(event.submitter.name, event.submitter.value);
  const when = form.querySelector('input[type="datetime-local"]');
  if (when?.value) body.set(when.name, new Date(when.value).toISOString());
  for (const b of form.querySelectorAll("button")) b.disabled = true;
  form.dataset.saving = "1";
  try {
    // A change answers with the conversation's new state: one of the meta refreshes.
    const ticket = form.dataset.enhance === "meta" ? metaOrder.start() : 0;
    const response = await fetch(form.action, {
      method: "POST",
      body,
      headers: { "X-Requested-With": "fetch", "X-CSRF-Token": csrf },
    });
    const text = await response.text();
    if (!response.ok) {
      showError(form, text);
      return;
    }
    clearError(form);
    if (form.dataset.enhance === "reply") {
      // Clear what was sent, not what the agent has typed since.
      if (form.elements.text?.value === body.get("text")) form.reset();
      const incoming = nodes(text).firstElementChild;
      if (incoming && history && !document.getElementById(incoming.id)) {
        localizeTimes(incoming);
        history.append(incoming);
        scrollToEnd();
      }
    } else if (form.dataset.enhance === "meta" && metaOrder.show(ticket)) {
      showMeta(text);
    }
    refreshListSoon();
  } finally {
    delete form.dataset.saving;
    for (const b of form.querySelectorAll("button")) b.disabled = false;
  }
}

function showError(form, html) {
  // Only the text of the server's error page is used (DOMParser never runs scripts).
  const doc = new DOMParser().parseFromString(html, "text/html");
  showFormError(form, doc.querySelector("[role=alert]")?.textContent ?? "That did not work. Try again.");
}

function showFormError(form, message) {
  clearError(form);
  const p = document.createElement("p");
  p.className = "error form-error";
  p.setAttribute("role", "alert");
  p.textContent = message;
  form.append(p);
}

function clearError(form) {
  form.querySelector(".form-error")?.remove();
}

// --- canned replies: "/" at the start of the reply box ----------------------------------------

const replyBox = document.getElementById("reply-text");
const suggestions = document.getElementById("canned-suggestions");
let canned = null;
let choice = 0;

async function loadCanned() {
  if (canned !== null) return canned;
  const response = await fetch("/canned.json", { headers: { "X-Requested-With": "fetch" } });
  canned = response.ok ? await response.json() : [];
  return canned;
}

async function suggest() {
  if (!replyBox || !suggestions) return;
  const value = replyBox.value;
  if (!value.startsWith("/") || value.includes("\n")) {
    suggestions.hidden = true;
    return;
  }
  const prefix = value.slice(1).toLowerCase();
  const matches = (await loadCanned()).filter((c) => c.shortcut.startsWith(prefix)).slice(0, 8);
  suggestions.replaceChildren();
  matches.forEach((c, i) => {
    const li = document.createElement("li");
    li.setAttribute("role", "option");
    li.dataset.body = c.body;
    li.textContent = `/${c.shortcut} — ${c.title}`;
    if (i === choice) li.setAttribute("aria-selected", "true");
    li.addEventListener("mousedown", (e) => { e.preventDefault(); useCanned(c.body); });
    suggestions.append(li);
  });
  suggestions.hidden = matches.length === 0;
}

function useCanned(body) {
  replyBox.value = body;
  suggestions.hidden = true;
  replyBox.focus();
}

replyBox?.addEventListener("input", () => { choice = 0; suggest(); });
replyBox?.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    replyBox.form.requestSubmit(replyBox.form.querySelector('button[value="reply"]'));
    return;
  }
  if (!suggestions || suggestions.hidden) return;
  const items = [...suggestions.children];
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    choice = (choice + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
    items.forEach((li, i) => li.setAttribute("aria-selected", String(i === choice)));
  } else if (event.key === "Enter" || event.key === "Tab") {
    event.preventDefault();
    useCanned(items[choice]?.dataset.body ?? "");
  } else if (event.key === "Escape") {
    suggestions.hidden = true;
  }
});

// --- keyboard shortcuts -------------------------------------------------------------------

function typing(target) {
  return target.closest("input, textarea, select, [contenteditable]") !== null;
}

function go(step) {
  const links = [...document.querySelectorAll("#conv-list .conv a")];
  if (links.length === 0) return;
  const current = links.findIndex((a) => a.closest(".conv").classList.contains("selected"));
  const next = current === -1 ? 0 : Math.min(Math.max(current + step, 0), links.length - 1);
  if (next !== current) location.href = links[next].href;
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  switch (event.key) {
    case "j": go(1); break;
    case "k": go(-1); break;
    case "r": if (replyBox) { event.preventDefault(); replyBox.focus(); } break;
    case "e": document.querySelector('#resolve-form input[value="resolved"]')?.form.requestSubmit(); break;
    case "a": {
      const form = document.querySelector('#conv-meta select[name="assignee"]')?.form;
      if (form) { form.assignee.value = "me"; form.requestSubmit(); }
      break;
    }
    case "/": event.preventDefault(); document.getElementById("search-box")?.focus(); break;
    case "?": document.getElementById("help")?.showModal(); break;
    default: return;
  }
});

// --- typing: chat customers may see that an agent is writing ----------------------------------

let typingSaid = 0;
replyBox?.addEventListener("input", () => {
  // The server keeps a typing signal for 6 s; saying it every 3 s keeps it on while typing goes on.
  if (!openId || !replyBox.value.trim() || Date.now() - typingSaid < 3000) return;
  typingSaid = Date.now();
  fetch(`/api/v1/conversations/${openId}/typing`, {
    method: "POST",
    headers: { "X-Requested-With": "fetch", "X-CSRF-Token": csrf },
  }).catch(() => {});
});

// --- start --------------------------------------------------------------------------------

// Attaching needs the script (uploads go through the API first), so it is offered only with it.
for (const p of document.querySelectorAll("form[data-enhance=reply] .attach")) p.hidden = false;

localizeTimes();
updateTitle();
enhanceForms();
arrangeMeta();
scrollToEnd();
listen();
