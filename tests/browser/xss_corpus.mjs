// Hostile input in real Chromium: every case of the corpus is posted through the webhook as the
// message text, as the message HTML and as the customer's name. Then the list and each
// conversation are opened (and each HTML frame, and the frame's URL as a page of its own), and
// the test checks that no script ran (no dialog, no marker set or created by a payload, in the
// page or in any frame), that the text and the names are shown as the literal characters, and
// that the pages carry their Content-Security-Policy.
//
// Run by tests/tests/web_browser.rs (which sets INBOX_URL, credentials and the channel).

import assert from "node:assert/strict";

import { assertCsp, config, deadline, launch, live, newPage, postWebhook, signIn, until } from "./lib.mjs";
import { corpus } from "./xss_payloads.mjs";

deadline(90_000, "xss_corpus.mjs");
const cfg = config();

const minutesAgo = (m) => new Date(Date.now() - m * 60_000).toISOString();

/** A case's conversation: the customer's name is the payload; a text message, then an HTML one. */
async function post(i, payload) {
  const from = { handle: `xss-${i}`, name: payload };
  await postWebhook(cfg, { external_id: `xss-${i}-text`, from, text: payload, sent_at: minutesAgo(3) });
  await postWebhook(cfg, {
    external_id: `xss-${i}-html`,
    from,
    text: `html version of case ${i}`,
    html: `<p>case ${i}</p>${payload}`,
    sent_at: minutesAgo(2),
  });
}

/** Fails when anything a payload would do if it ran is found in this page or in any frame. */
async function assertNothingRan(page, what) {
  for (const frame of page.frames()) {
    const found = await frame
      .evaluate(() => ({ global: window.__xss ?? null, marker: document.getElementById("xss-marker") !== null }))
      .catch((error) => ({ error: error.message }));
    if (found.error) {
      // A frame whose scripts are disabled may refuse evaluation: look from outside instead.
      assert.equal(await frame.locator("#xss-marker").count(), 0, `${what}: marker in frame ${frame.url()}`);
      continue;
    }
    assert.deepEqual(found, { global: null, marker: false }, `${what}: a payload ran in ${frame.url()}`);
  }
}

/** Elements the page itself may not contain: handlers, inline scripts, javascript: links. */
async function assertNoInjectedMarkup(page, what) {
  const found = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll("*")) {
      for (const attr of el.attributes) {
        if (/^on/i.test(attr.name)) bad.push(`${el.tagName}[${attr.name}]`);
        if (/^\s*javascript:/i.test(attr.value)) bad.push(`${el.tagName}[${attr.name}=javascript:]`);
        if (attr.name === "srcdoc") bad.push(`${el.tagName}[srcdoc]`);
      }
    }
    for (const script of document.querySelectorAll("script")) {
      if (script.getAttribute("src") !== "/assets/app.js") bad.push(`script ${script.outerHTML.slice(0, 80)}`);
    }
    for (const frame of document.querySelectorAll("iframe")) {
      // Ours only, sandboxed: at most popups (links) may be allowed, never scripts or our origin.
      const allowed = ["allow-popups", "allow-popups-to-escape-sandbox"];
      const sandboxed = frame.matches("iframe.email-html[sandbox]") && [...frame.sandbox].every((t) => allowed.includes(t));
      if (!sandboxed) bad.push(`iframe ${frame.outerHTML.slice(0, 80)}`);
    }
    for (const tag of ["svg", "math", "object", "embed", "img", "style", "base", "meta[http-equiv]", "form[action^='javascript']"]) {
      for (const el of document.querySelectorAll(`#main ${tag}`)) bad.push(`${tag} in the page: ${el.outerHTML.slice(0, 80)}`);
    }
    return bad;
  });
  assert.deepEqual(found, [], `${what}: markup from a payload in the page`);
}

const browser = await launch(cfg);
try {
  for (const [i, [, payload]] of corpus.entries()) await post(i, payload);
  const { context, page, problems } = await newPage(browser, { width: 1280, height: 800 });
  const dialogs = [];
  page.on("dialog", async (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss();
  });
  context.on("page", (popup) => dialogs.push(`a popup opened: ${popup.url()}`));

  await signIn(page, cfg);

  // The list: every name and preview as literal text.
  let response;
  await live(page, async () => { response = await page.goto(`${cfg.baseUrl}/inbox?assignee=all&status=all`); });
  assertCsp(response, "/inbox");
  const rows = page.locator("#conv-list li.conv");
  await until("every case in the list", () => rows.count(), (n) => n === corpus.length);
  const listed = await page.evaluate(() =>
    [...document.querySelectorAll("#conv-list li.conv")].map((li) => ({
      id: li.dataset.id,
      name: li.querySelector(".name").textContent,
      nameElements: li.querySelector(".name").childElementCount,
      previewElements: li.querySelector(".preview").childElementCount,
    })),
  );
  for (const row of listed) {
    assert.equal(row.nameElements, 0, `the name is text only: ${row.name}`);
    assert.equal(row.previewElements, 0, `the preview is text only: ${row.name}`);
  }
  assert.deepEqual(
    listed.map((r) => r.name).sort(),
    corpus.map(([, p]) => p.trim()).sort(),
    "every name is shown literally",
  );
  await assertNothingRan(page, "list");
  await assertNoInjectedMarkup(page, "list");

  // Each conversation, with its HTML frame.
  for (const [i, [label, payload]] of corpus.entries()) {
    const what = `case ${i} (${label})`;
    const id = listed.find((r) => r.name === payload.trim())?.id;
    assert.ok(id, `${what}: listed`);
    response = null;
    await live(page, async () => { response = await page.goto(`${cfg.baseUrl}/conversations/${id}`); });
    assertCsp(response, what);
    assert.ok((await page.title()).includes(payload.trim()), `${what}: the title shows the name literally: ${await page.title()}`);
    assert.ok(
      (await page.locator("#conv-meta h1").textContent()).includes(payload.trim()),
      `${what}: the heading shows the name literally`,
    );

    const messages = page.locator("#history article.msg.inbound");
    await until(`${what}: both messages`, () => messages.count(), (n) => n === 2);
    await assertNoInjectedMarkup(page, what);
    const text = messages.nth(0).locator(":scope > .text");
    assert.ok(await text.isVisible(), `${what}: the text is shown`);
    assert.equal(await text.textContent(), payload.trim(), `${what}: the text is shown literally`);
    assert.equal(await text.evaluate((el) => el.childElementCount), 0, `${what}: the text is text only`);
    assert.equal(
      await messages.nth(0).locator(".author").textContent(),
      payload.trim(),
      `${what}: the author is shown literally`,
    );

    // The HTML, in its frame: sandboxed, with a policy of its own, and inert.
    const iframe = messages.nth(1).locator("iframe.email-html");
    const sandbox = await iframe.getAttribute("sandbox");
    assert.ok(sandbox !== null && !/allow-scripts|allow-same-origin|allow-top-navigation/.test(sandbox), `${what}: the frame is sandboxed: ${sandbox}`);
    await iframe.scrollIntoViewIfNeeded();
    const frameUrl = new URL(await iframe.getAttribute("src"), cfg.baseUrl).href;
    const frame = await until(`${what}: the frame loads`, async () => {
      const f = await (await iframe.elementHandle()).contentFrame();
      return f && f.url() === frameUrl ? f : null;
    });
    // The frame shows the HTML (sanitized at ingest: ids and scripts are gone, the text stays).
    await frame.getByText(`case ${i}`, { exact: true }).waitFor({ state: "attached" });
    await assertNothingRan(page, what);
    await assertNoInjectedMarkup(page, what);
    console.log(`opened ${id} (${what})`);
  }

  // A frame's URL opened as a page of its own (say, "open frame in new tab") is inert too.
  const first = listed[0].id;
  await page.goto(`${cfg.baseUrl}/conversations/${first}`);
  const src = await page.locator("iframe.email-html").first().getAttribute("src");
  const direct = await page.goto(new URL(src, cfg.baseUrl).href);
  const frameCsp = direct.headers()["content-security-policy"] ?? "";
  assert.match(frameCsp, /default-src 'none'/, `the HTML's own policy: ${frameCsp}`);
  assert.match(frameCsp, /(^|;)\s*sandbox\b/, `the HTML's own policy sandboxes it: ${frameCsp}`);
  assert.doesNotMatch(frameCsp, /allow-scripts|allow-same-origin/, `the HTML's sandbox: ${frameCsp}`);
  await assertNothingRan(page, "the HTML as a page");

  // Let anything deferred (timers, lazy frames, late loads) have its chance, then look again.
  await page.goto(`${cfg.baseUrl}/inbox?assignee=all&status=all`);
  await page.waitForLoadState("networkidle").catch(() => {});
  await assertNothingRan(page, "at the end");
  assert.deepEqual(dialogs, [], "no dialog and no popup");
  const ours = problems.filter((p) => p.startsWith("uncaught"));
  assert.deepEqual(ours, [], "no script errors");
  await context.close();
} finally {
  await browser.close();
}
console.log("xss_corpus.mjs: all passed");
