// The website chat widget in real Chromium, on a site of another origin (a second local port,
// served by tests/tests/web_browser.rs with the embed snippet and hostile CSS): a visitor
// writes, an agent in another browser context sees it live, opens it (the visitor's message
// reads "Read"), types (the visitor sees who is typing) and replies, the visitor sees the
// reply live; a reload keeps the history; offline and back: what was written meanwhile arrives
// once, the replies missed meanwhile are shown; a file sent from the widget opened by the agent;
// identity verification with a good and a bad HMAC; the XSS corpus (xss_payloads.mjs) both ways;
// 375 px; a page on a disallowed origin is refused.
//
// Environment (besides lib.mjs's): INBOX_SITE_URL (the allowed site), INBOX_OTHER_SITE_URL (the
// same site on an origin the channel does not list).

import assert from "node:assert/strict";

import { config, deadline, env, launch, live, newPage, screenshot, signIn, until } from "./lib.mjs";
import { corpus } from "./xss_payloads.mjs";

deadline(270_000, "web_chat.mjs");
const cfg = config();
const site = env("INBOX_SITE_URL");
const otherSite = env("INBOX_OTHER_SITE_URL");
const expected = corpus.map(([, payload]) => payload.trim()).sort();
const api = (page, path) => page.request.get(`${cfg.baseUrl}${path}`).then((r) => r.json());

/** The agent's conversations of this channel, newest first. */
const conversations = async (agent) =>
  (await api(agent, `/api/v1/conversations?status=all&channel=${cfg.channelId}&limit=100`)).items;
const messagesOf = async (agent, id) =>
  (await api(agent, `/api/v1/conversations/${id}/messages`)).items;

/** Replies through the API as the signed-in agent (the UI reply is covered once, below). */
async function replyByApi(agent, conversationId, text) {
  const response = await agent.request.post(`${cfg.baseUrl}/api/v1/conversations/${conversationId}/messages`, {
    data: { text },
    headers: { "x-csrf-token": await agent.evaluate(() => document.querySelector('meta[name="csrf-token"]')?.content ?? "") },
  });
  assert.equal(response.status(), 201, `reply: ${response.status()} ${await response.text()}`);
}

/** Opens the widget on a site page; returns the chat panel's locators. */
async function openWidget(page, url) {
  await page.goto(url);
  const launcher = page.getByRole("button", { name: "Open chat" });
  await launcher.click();
  const input = page.getByLabel("Message");
  await input.waitFor();
  return { input, log: page.locator("[data-inbox-chat] >> ol.log") };
}

const browser = await launch(cfg);
const dialogs = [];
try {
  // The agent, signed in, the inbox open.
  const agentSide = await newPage(browser, { width: 1280, height: 800 });
  const agent = agentSide.page;
  agent.on("dialog", (d) => { dialogs.push(`agent: ${d.message()}`); d.dismiss(); });
  await signIn(agent, cfg);

  // The visitor on the shop's site, at phone width: the chat fills the screen.
  const visitorSide = await newPage(browser, { width: 375, height: 740 });
  const visitor = visitorSide.page;
  visitor.on("dialog", (d) => { dialogs.push(`visitor: ${d.message()}`); d.dismiss(); });
  const { input, log } = await openWidget(visitor, site);
  const panel = visitor.locator("[data-inbox-chat] >> section.panel");
  const box = await panel.boundingBox();
  assert.ok(box && Math.round(box.width) === 375 && box.x === 0, `full width at 375 px: ${JSON.stringify(box)}`);
  assert.equal(await visitor.evaluate(() => !!document.querySelector("[data-inbox-chat]").shadowRoot), true, "an open shadow root");
  await log.getByText("Hi! How can we help?").waitFor();

  // The visitor writes (Enter sends); the agent's list shows it live.
  await input.fill("Where is my order #1042?");
  await input.press("Enter");
  await log.locator("li.visitor", { hasText: "#1042" }).getByText("Delivered").waitFor();
  const row = agent.locator("#conv-list li.conv", { hasText: "Where is my order #1042?" });
  await row.waitFor();
  const first = (await conversations(agent)).find((c) => c.preview?.includes("#1042"));
  assert.ok(first, "the conversation is on the channel");
  assert.match(first.contact_handle, /^visitor:[0-9a-f]{32}$/, "an anonymous visitor");

  // The agent opens it: the visitor's message reads "Read". The agent types: the visitor sees
  // who is typing. The reply arrives live, with the agent's name.
  await live(agent, () => row.locator("a").click());
  await log.locator("li.visitor", { hasText: "#1042" }).getByText("Read").waitFor();
  await agent.locator("#reply-text").pressSequentially("It ships today.");
  await visitor.locator("[data-inbox-chat] >> .typing").getByText(`${cfg.agentName} is typing…`).waitFor();
  await agent.getByRole("button", { name: "Send reply", exact: true }).click();
  const reply = log.locator("li.agent", { hasText: "It ships today." });
  await reply.waitFor();
  assert.match(await reply.textContent(), new RegExp(cfg.agentName), "the agent's name is shown");
  await screenshot(visitor, cfg, "web-chat-phone");
  const history = agent.locator("#history");
  await until(
    "the reply shown as sent",
    () => history.locator("article.msg.outbound", { hasText: "It ships today." }).locator(".delivery").textContent(),
    (t) => t?.trim() === "sent",
  );

  // A reload keeps the history (the visitor's token is in the site's localStorage).
  await visitor.reload();
  await visitor.getByRole("button", { name: "Open chat" }).click();
  await log.locator("li.visitor", { hasText: "#1042" }).waitFor();
  await log.locator("li.agent", { hasText: "It ships today." }).waitFor();
  assert.equal(await log.locator("li.agent").count(), 1, "the reply once");

  // Offline: the visitor writes; the agent replies meanwhile. Back online: the message arrives
  // once and the missed reply shows.
  await visitorSide.context.setOffline(true);
  await input.fill("Can I change the address?");
  await input.press("Enter");
  await visitor.locator("[data-inbox-chat] >> .notice").getByText(/Offline/).waitFor();
  await replyByApi(agent, first.id, "Reply while you were away.");
  await visitor.waitForTimeout(1500);
  await visitorSide.context.setOffline(false);
  await log.locator("li.agent", { hasText: "Reply while you were away." }).waitFor({ timeout: 20_000 });
  // Delivered, and soon Read: the agent has the conversation open.
  await log.locator("li.visitor", { hasText: "change the address" }).getByText(/^(Delivered|Read)$/).waitFor({ timeout: 20_000 });
  const stored = await until(
    "the offline message stored",
    async () => (await messagesOf(agent, first.id)).filter((m) => m.text === "Can I change the address?"),
    (found) => found.length > 0,
  );
  await visitor.waitForTimeout(2500);
  assert.equal((await messagesOf(agent, first.id)).filter((m) => m.text === "Can I change the address?").length, 1, "stored once");
  assert.equal(stored.length, 1);
  assert.equal(await log.locator("li.agent", { hasText: "Reply while you were away." }).count(), 1, "the missed reply once");
  assert.equal(await log.locator("li.visitor", { hasText: "change the address" }).count(), 1, "the message once");

  // A file: picked in the widget, uploaded, sent; the agent sees it on the message.
  await visitor.locator("[data-inbox-chat] >> input.files").setInputFiles({
    name: "receipt.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("Order #1042, paid."),
  });
  await log.locator("li.visitor", { hasText: "File: receipt.txt" }).getByText(/^(Delivered|Read)$/).waitFor();
  const withFile = history.locator("article.msg.inbound", { hasText: "receipt.txt" });
  await withFile.waitFor();
  const link = withFile.locator(".attachments a").first();
  const href = await link.getAttribute("href");
  const served = await agent.request.get(`${cfg.baseUrl}${href}`);
  assert.equal(await served.text(), "Order #1042, paid.", "the agent opens the visitor's file");

  // Identity: a good HMAC makes the visitor the site's user (with the proven email); a bad one
  // leaves an anonymous visitor, linked to nobody.
  for (const [which, text] of [["good", "Signed in and asking"], ["bad", "Forged identity asking"]]) {
    const page = (await newPage(browser, { width: 1024, height: 768 })).page;
    page.on("dialog", (d) => { dialogs.push(`${which}: ${d.message()}`); d.dismiss(); });
    const chat = await openWidget(page, `${site}/?user=${which}`);
    if (which === "good") await screenshot(page, cfg, "web-chat-desktop");
    await chat.input.fill(text);
    await chat.input.press("Enter");
    await chat.log.locator("li.visitor", { hasText: text }).getByText("Delivered").waitFor();
    const conversation = await until(
      `the ${which} identity's conversation`,
      async () => (await conversations(agent)).find((c) => c.preview === text),
    );
    if (which === "good") {
      assert.equal(conversation.contact_handle, "user:u-42", "the proven user");
    } else {
      assert.match(conversation.contact_handle, /^visitor:/, "a forged identity stays anonymous");
    }
    console.log(`identity ${which}: ${conversation.contact_handle}`);
  }

  // The XSS corpus both ways, in a chat of its own (under the per-chat limit): every payload
  // written by a visitor shows as literal text in the agent's view, every payload an agent
  // replies shows as literal text in the widget, and nothing of either runs.
  const known = new Set((await conversations(agent)).map((c) => c.id));
  const hostileSide = await newPage(browser, { width: 1024, height: 768 });
  const hostile = hostileSide.page;
  hostile.on("dialog", (d) => { dialogs.push(`corpus visitor: ${d.message()}`); d.dismiss(); });
  const corpusChat = await openWidget(hostile, site);
  for (const [, payload] of corpus) {
    await corpusChat.input.fill(payload);
    await corpusChat.input.press("Enter");
  }
  await until(
    "every payload delivered",
    () => corpusChat.log.locator("li.visitor .status").allTextContents(),
    (states) => states.length === corpus.length && states.every((s) => s === "Delivered" || s === "Read"),
    30_000,
  );
  const corpusConversation = await until(
    "the corpus visitor's conversation",
    async () => (await conversations(agent)).find((c) => !known.has(c.id)),
  );
  await live(agent, () => agent.goto(`${cfg.baseUrl}/conversations/${corpusConversation.id}`));
  const inbound = history.locator("article.msg.inbound");
  await until("every payload in the agent's view", () => inbound.count(), (n) => n === corpus.length, 30_000);
  const seen = await inbound.evaluateAll((articles) =>
    articles.map((a) => ({ text: a.querySelector(":scope > .text").textContent, elements: a.querySelector(":scope > .text").childElementCount })),
  );
  assert.deepEqual(seen.map((m) => m.text).sort(), expected, "the agent sees every payload literally");
  assert.ok(seen.every((m) => m.elements === 0), "the agent's view holds text only");
  for (const [, payload] of corpus) await replyByApi(agent, corpusConversation.id, payload);
  await until("every reply in the widget", () => corpusChat.log.locator("li.agent").count(), (n) => n === corpus.length, 30_000);
  const replies = await hostile.evaluate(() =>
    [...document.querySelector("[data-inbox-chat]").shadowRoot.querySelectorAll("ol.log li.agent")].map((li) =>
      [...li.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.data).join(""),
    ),
  );
  assert.deepEqual(replies.map((r) => r.trim()).sort(), expected, "the visitor sees every reply literally");
  for (const [who, page] of [["agent", agent], ["visitor", hostile]]) {
    const ran = await page.evaluate(() => {
      const root = document.querySelector("[data-inbox-chat]")?.shadowRoot;
      const inWidget = root ? [...root.querySelectorAll("*")] : [];
      const injected = [...document.querySelectorAll("*"), ...inWidget].flatMap((el) =>
        [...el.attributes].filter((a) => /^on/i.test(a.name) || /^\s*javascript:/i.test(a.value)).map((a) => `${el.tagName}[${a.name}]`),
      );
      const markup = root ? [...root.querySelectorAll("ol.log img, ol.log script, ol.log svg, ol.log iframe, ol.log style, ol.log a")].length : 0;
      return { global: window.__xss ?? null, marker: document.getElementById("xss-marker") !== null || !!root?.getElementById("xss-marker"), injected, markup };
    });
    assert.deepEqual(ran, { global: null, marker: false, injected: [], markup: 0 }, `${who}: nothing of a payload ran or became markup`);
  }
  console.log(`xss corpus both ways: ${corpus.length} payloads each way`);

  // The same page on an origin the channel does not list: refused, nothing sent.
  const stranger = (await newPage(browser, { width: 1024, height: 768 })).page;
  await stranger.goto(otherSite);
  await stranger.getByRole("button", { name: "Open chat" }).click();
  await stranger.locator("[data-inbox-chat] >> .notice").getByText("The chat is unavailable right now.").waitFor();
  const refused = await fetch(`${cfg.baseUrl}/widget/${cfg.channelId}/session`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: otherSite },
    body: "{}",
  });
  assert.equal(refused.status, 403, "a call from another origin is refused");
  assert.equal(refused.headers.get("access-control-allow-origin"), null, "and not readable there");

  assert.deepEqual(dialogs, [], "no script of a message ran");
  const problems = [...agentSide.problems, ...visitorSide.problems, ...hostileSide.problems].filter(
    // Offline on purpose: the browser reports the refused requests.
    (p) => !/ERR_INTERNET_DISCONNECTED|Failed to load resource|ERR_NETWORK_CHANGED/.test(p),
  );
  assert.deepEqual(problems, [], "no script errors");
  console.log("web chat flow passed");
} finally {
  await browser.close();
}
