// The agent's day in real Chromium, at desktop width and again at phone width: sign in, see a
// customer's message arrive live (list, unread count in the title), open it, see the next one
// arrive live in the open conversation, reply (button and Ctrl+Enter) until the reply shows
// `sent`, add a note, set a status, assign, label, resolve, then filter the list, and read the
// reports. Writes the screenshots of list, conversation and reports at both widths.
//
// Run by tests/tests/web_browser.rs (which sets INBOX_URL, credentials and the channel).

import assert from "node:assert/strict";

import {
  assertCsp,
  assertNoHorizontalOverflow,
  config,
  deadline,
  launch,
  live,
  markDocument,
  newPage,
  postWebhook,
  screenshot,
  signIn,
  until,
} from "./lib.mjs";

deadline(90_000, "main_flow.mjs");
const cfg = config();

const viewports = [
  {
    name: "desktop",
    width: 1280,
    height: 800,
    phone: false,
    customer: { handle: "grace", name: "Grace Hopper" },
    first: "Hi! My order #1042 arrived with a cracked screen. Can you help?",
    second: "I attached a photo on the order page, by the way.",
    reply: "Sorry about that, Grace! A replacement ships today.",
    ctrlEnterReply: "You will get the tracking number by email.",
    note: "Replacement approved by the warehouse (ticket W-77).",
  },
  {
    name: "phone",
    width: 375,
    height: 740,
    phone: true,
    customer: { handle: "katherine", name: "Katherine Johnson" },
    first: "Can I change the delivery address of order #2001?",
    second: "The new address is 12 Orbit Lane.",
    reply: "Done: order #2001 now goes to 12 Orbit Lane.",
    ctrlEnterReply: "Anything else I can do for you?",
    note: "Address change confirmed with the carrier.",
  },
];

/** Older conversations, so the list looks like a real one. */
async function seed() {
  const minutesAgo = (m) => new Date(Date.now() - m * 60_000).toISOString();
  const customers = [
    ["alan", "Alan Turing", "The invoice for order #0987 is missing our VAT number.", 95],
    ["ada", "Ada Lovelace", "Do you ship to Ireland? I could not find it in the FAQ.", 42],
    ["edsger", "Edsger Dijkstra", "My password reset link says it expired.", 17],
  ];
  for (const [handle, name, text, ago] of customers) {
    await postWebhook(cfg, { external_id: `seed-${handle}`, from: { handle, name }, text, sent_at: minutesAgo(ago) });
  }
}

// A filter tab, by its label (a tab may show a count after it).
const tab = (nav) => (page, label) =>
  page.locator(`nav[aria-label="${nav}"]`).getByRole("link", { name: new RegExp(`^${label}( \\d+)?$`) });
const statusTab = tab("Status");
const viewTab = tab("Whose conversations");

async function flow(browser, vp) {
  const { context, page, problems } = await newPage(browser, vp);
  const { customer } = vp;
  const step = (what) => console.log(`[${vp.name}] ${what}`);

  step("sign in");
  await signIn(page, cfg);
  const list = page.locator("#conv-list");
  await list.locator("li.conv").first().waitFor();
  const unreadBefore = await list.locator("li.conv.unread").count();
  assert.ok(unreadBefore >= 3, `the seeded conversations are unread (${unreadBefore})`);
  assert.equal(await page.title(), `(${unreadBefore}) Conversations · Inbox`);

  step("a new customer writes while the list is open");
  const sameList = await markDocument(page);
  await postWebhook(cfg, { external_id: `${vp.name}-1`, from: customer, text: vp.first });
  const row = list.locator("li.conv", { hasText: customer.name });
  await row.waitFor();
  await sameList("a new conversation appears");
  assert.match((await row.getAttribute("class")) ?? "", /\bunread\b/, "the new conversation is unread");
  assert.ok((await row.textContent()).includes(vp.first), "the row previews the message");
  assert.equal(
    await list.locator("li.conv").first().getAttribute("data-id"),
    await row.getAttribute("data-id"),
    "the newest conversation is first",
  );
  await until(
    "the unread count in the title",
    () => page.title(),
    (title) => title === `(${unreadBefore + 1}) Conversations · Inbox`,
  );
  if (vp.phone) await assertNoHorizontalOverflow(page, "phone: list");
  await screenshot(page, cfg, `list-${vp.name}`);

  step("open the conversation");
  const id = await row.getAttribute("data-id");
  const opened = page.waitForResponse((r) => new URL(r.url()).pathname === `/conversations/${id}`);
  await live(page, () => row.locator("a").click());
  assert.equal(new URL(page.url()).pathname, `/conversations/${id}`);
  assertCsp(await opened, "conversation page");
  assert.ok((await page.title()).endsWith(`${customer.name} · Inbox`), `title: ${await page.title()}`);
  const back = page.getByRole("link", { name: "← All conversations" });
  if (vp.phone) {
    assert.ok(await page.locator(".list-pane").isHidden(), "phone: the conversation hides the list");
    assert.ok(await back.isVisible(), "phone: a link leads back to the list");
  } else {
    assert.ok(await page.locator(".list-pane").isVisible(), "desktop: the list stays beside the conversation");
    assert.ok(await back.isHidden(), "desktop: no back link");
    assert.match((await list.locator(`li.conv[data-id="${id}"]`).getAttribute("class")) ?? "", /\bselected\b/);
  }
  const history = page.locator("#history");
  await history.locator("article.msg.inbound", { hasText: vp.first }).waitFor();

  step("the customer writes again while the conversation is open");
  const samePage = await markDocument(page);
  await postWebhook(cfg, { external_id: `${vp.name}-2`, from: customer, text: vp.second });
  const second = history.locator("article.msg.inbound", { hasText: vp.second });
  await second.waitFor();
  await samePage("the second message appears");
  assert.equal(await history.locator("article.msg").last().getAttribute("id"), await second.getAttribute("id"));

  step("reply with the button");
  const box = page.locator("#reply-text");
  await box.fill(vp.reply);
  await page.getByRole("button", { name: "Send reply", exact: true }).click();
  const reply = history.locator("article.msg.outbound", { hasText: vp.reply });
  await reply.waitFor();
  // The box is cleared when the server has answered (the message may show before, live).
  const sent = () => until("the reply box to be cleared", () => box.inputValue(), (v) => v === "");
  await sent();
  await until("the reply to be sent", () => reply.locator(".delivery").textContent(), (t) => t?.trim() === "sent");

  step("reply with Ctrl+Enter, with a file attached");
  await box.fill(vp.ctrlEnterReply);
  const receipt = `receipt for ${vp.name}`;
  await page.locator("#reply-files").setInputFiles({
    name: "receipt.txt", mimeType: "text/plain", buffer: Buffer.from(receipt),
  });
  await box.press("Control+Enter");
  const reply2 = history.locator("article.msg.outbound", { hasText: vp.ctrlEnterReply });
  await reply2.waitFor();
  await sent();
  const file = reply2.locator(".attachments a[download]");
  assert.equal((await file.textContent()).trim(), "receipt.txt", "the reply shows its attachment");
  const download = await page.request.get(new URL(await file.getAttribute("href"), cfg.baseUrl).href);
  assert.equal(download.status(), 200);
  assert.equal(await download.text(), receipt, "the attachment downloads as uploaded");
  assert.equal(await page.locator("#reply-files").evaluate((i) => i.files.length), 0, "the file input is cleared");
  await until("the second reply to be sent", () => reply2.locator(".delivery").textContent(), (t) => t?.trim() === "sent");

  step("add a note");
  await box.fill(vp.note);
  await page.getByRole("button", { name: "Add note", exact: true }).click();
  const note = history.locator("article.msg.note", { hasText: vp.note });
  await note.waitFor();
  await sent();
  assert.ok((await note.textContent()).includes("private note"), "the note is marked private");
  assert.equal(await note.locator(".delivery").count(), 0, "a note is never delivered");
  assert.equal(await history.locator("article.msg").count(), 5, "two messages, two replies, one note");

  const meta = page.locator("#conv-meta");
  step("assign to me");
  await meta.locator("#assignee").selectOption("me");
  await meta.getByRole("button", { name: "Assign", exact: true }).click();
  await until("assigned to me", () => meta.locator("#conv-assignee").textContent(), (t) => t?.trim() === cfg.agentName);

  step("label");
  await meta.locator("#labels").fill("VIP, billing");
  await meta.getByRole("button", { name: "Save labels", exact: true }).click();
  await until(
    "the labels",
    () => meta.locator("#conv-labels .label").allTextContents(),
    (labels) => JSON.stringify(labels) === JSON.stringify(["billing", "vip"]),
  );
  assert.equal(await meta.locator("#labels").inputValue(), "billing, vip");
  const thisRow = list.locator(`li.conv[data-id="${id}"]`);
  if (!vp.phone) {
    // The list beside the conversation follows: answered (no unread badge), assigned, labelled.
    await until(
      "the list to show the conversation's new state",
      () => thisRow.evaluateAll((rows) => rows.map((row) => ({
        tags: row.querySelector(".tags")?.textContent ?? "",
        badges: row.querySelectorAll(".badge").length,
      }))),
      (rows) => rows.length === 1 && rows[0].badges === 0
        && ["open", `@${cfg.agentName}`, "billing", "vip"].every((t) => rows[0].tags.includes(t)),
    );
  }
  if (vp.phone) await assertNoHorizontalOverflow(page, "phone: conversation");
  // On a phone the conversation is one long page: show all of it.
  await screenshot(page, cfg, `conversation-${vp.name}`, { fullPage: vp.phone });

  step("set the status");
  await meta.locator("#status").selectOption("pending");
  await meta.getByRole("button", { name: "Set status", exact: true }).click();
  await until("status pending", () => meta.locator("#conv-status").textContent(), (t) => t?.trim() === "pending");
  // The list shows open conversations: a pending one leaves it, live.
  if (!vp.phone) await thisRow.waitFor({ state: "detached" });

  step("resolve");
  await meta.getByRole("button", { name: "Resolve", exact: true }).click();
  await until("resolved", () => meta.locator("#conv-status").textContent(), (t) => t?.trim() === "resolved");
  await meta.getByRole("button", { name: "Reopen", exact: true }).waitFor();
  await samePage("all actions ran without a reload");
  assert.equal(await history.locator("article.msg").count(), 5, "the actions added no message");

  step("filters");
  if (vp.phone) {
    await live(page, () => back.click());
    assert.equal(new URL(page.url()).pathname, "/inbox");
    assert.ok(await page.locator(".list-pane").isVisible(), "phone: back on the list");
    await assertNoHorizontalOverflow(page, "phone: list after the round trip");
  }
  assert.equal(await thisRow.count(), 0, "Open: a resolved conversation is not listed");

  await live(page, () => statusTab(page, "Resolved").click());
  assert.equal(new URL(page.url()).searchParams.get("status"), "resolved");
  await thisRow.waitFor();
  const tags = await thisRow.locator(".tags").textContent();
  for (const expected of ["resolved", `@${cfg.agentName}`, "billing", "vip"]) {
    assert.ok(tags.includes(expected), `Resolved: the row shows ${expected}: ${tags}`);
  }
  assert.equal(await list.locator("li.conv", { hasText: "Alan Turing" }).count(), 0, "Resolved: open ones are not listed");

  await live(page, () => viewTab(page, "Mine").click());
  await thisRow.waitFor();
  assert.equal(await list.locator("li.conv", { hasText: "Alan Turing" }).count(), 0, "Mine: unassigned ones are not listed");
  await live(page, () => viewTab(page, "Unassigned").click());
  assert.equal(await thisRow.count(), 0, "Unassigned: an assigned conversation is not listed");
  await live(page, () => viewTab(page, "All").click());
  await thisRow.waitFor();

  await page.locator("#f-channel").selectOption({ label: cfg.channelName });
  await live(page, () => page.locator("form.filters").getByRole("button", { name: "Filter" }).click());
  assert.equal(new URL(page.url()).searchParams.get("channel"), cfg.channelId);
  await thisRow.waitFor();

  await page.locator("#f-label").fill("vip");
  await live(page, () => page.locator("form.filters").getByRole("button", { name: "Filter" }).click());
  assert.equal(new URL(page.url()).searchParams.get("label"), "vip");
  assert.equal(new URL(page.url()).searchParams.get("status"), "resolved", "the label filter keeps the status");
  await thisRow.waitFor();
  if (vp.phone) await assertNoHorizontalOverflow(page, "phone: filtered list");

  step("reports");
  assertCsp(await page.goto(`${cfg.baseUrl}/reports`), "reports page");
  // Trend, distribution, per agent, per channel and volume, each an SVG chart.
  assert.ok((await page.locator("svg.chart").count()) >= 5, "the reports page draws its charts");
  await page.locator('select[name="hours"]').selectOption("business");
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForURL(/hours=business/);
  // This flow's replies answered waits: the figures count them.
  assert.match(await page.locator("dl.figures").innerText(), /Count\s+[1-9]/);
  assert.ok(await page.locator("a.csv").first().getAttribute("href"), "a CSV download link");
  if (vp.phone) await assertNoHorizontalOverflow(page, "phone: reports");
  await screenshot(page, cfg, `reports-${vp.name}`, { fullPage: true });

  assert.deepEqual(problems, [], `[${vp.name}] no script errors`);
  await context.close();
  return id;
}

/** The label filter lists the labelled conversations only (checked last: see the report). */
async function labelFilter(browser, ids) {
  const { context, page, problems } = await newPage(browser, viewports[0]);
  await signIn(page, cfg);
  await live(page, () => statusTab(page, "Any status").click());
  const rows = page.locator("#conv-list li.conv");
  await until("every conversation under Any status", () => rows.count(), (n) => n === 3 + ids.length);
  const listed = async () => (await rows.evaluateAll((els) => els.map((el) => el.dataset.id))).sort();
  for (const [label, expected] of [["vip", ids], ["billing", ids], ["no-such-label", []]]) {
    await page.locator("#f-label").fill(label);
    await live(page, () => page.locator("form.filters").getByRole("button", { name: "Filter" }).click());
    assert.equal(new URL(page.url()).searchParams.get("label"), label);
    assert.deepEqual(await listed(), [...expected].sort(), `label filter "${label}": only the conversations labelled so`);
  }
  await page.locator(".empty-state").waitFor();
  assert.deepEqual(problems, [], "[label filter] no script errors");
  await context.close();
}

const browser = await launch(cfg);
try {
  await seed();
  const ids = [];
  for (const vp of viewports) {
    const id = await flow(browser, vp);
    console.log(`[${vp.name}] ok: conversation ${id}`);
    ids.push(id);
  }
  console.log("[label filter]");
  await labelFilter(browser, ids);
} finally {
  await browser.close();
}
console.log("main_flow.mjs: all passed");
