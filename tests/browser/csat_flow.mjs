// Customer satisfaction in real Chromium: a customer writes; the agent resolves the conversation
// in the inbox; the survey message goes out on the channel (delivery status `sent`); the
// customer opens its link in a browser of their own at phone width (no sign-in), rates and
// comments; the agent sees the answer on the conversation and in the reports.
//
// Run by tests/tests/web_browser.rs (which turns CSAT on for the channel and sets INBOX_URL,
// credentials and the channel).

import assert from "node:assert/strict";

import {
  assertCsp,
  assertNoHorizontalOverflow,
  config,
  deadline,
  launch,
  newPage,
  postWebhook,
  screenshot,
  signIn,
  until,
} from "./lib.mjs";

deadline(90_000, "csat_flow.mjs");
const cfg = config();
const api = (page, path) => page.request.get(`${cfg.baseUrl}${path}`).then((r) => r.json());

const browser = await launch(cfg);
try {
  await postWebhook(cfg, {
    external_id: "csat-1",
    from: { handle: "marie", name: "Marie Curie" },
    text: "My lab coat order never arrived.",
  });
  const { context, page, problems } = await newPage(browser, { width: 1280, height: 800 });
  await signIn(page, cfg);
  const conversation = await until(
    "the conversation",
    async () => (await api(page, "/api/v1/conversations?status=all")).items.find((c) => c.contact_handle === "marie"),
  );
  await page.goto(`${cfg.baseUrl}/conversations/${conversation.id}`);
  const meta = page.locator("#conv-meta");
  await meta.getByRole("button", { name: "Resolve", exact: true }).click();
  await until("resolved", () => meta.locator("#conv-status").textContent(), (t) => t?.trim() === "resolved");

  // The survey message, delivered on the channel.
  const survey = await until(
    "the survey message delivered",
    async () =>
      (await api(page, `/api/v1/conversations/${conversation.id}/messages`)).items.find(
        (m) => m.direction === "outbound" && m.text.includes("/survey/"),
      ),
    (m) => m?.delivery_status === "sent",
  );
  const link = survey.text.match(/https?:\/\/\S+\/survey\/[0-9a-f]{64}/)[0];
  console.log("survey delivered");

  // The customer, in their own browser (no cookies), on a phone.
  const customer = await newPage(browser, { width: 375, height: 740 });
  assertCsp(await customer.page.goto(link), "survey page");
  await customer.page.getByLabel("5 · Excellent").check();
  await customer.page.getByLabel("Anything you want to tell us? (optional)").fill("Found it at the front desk, thanks!");
  await assertNoHorizontalOverflow(customer.page, "phone: survey");
  await screenshot(customer.page, cfg, "survey-phone", { fullPage: true });
  await customer.page.getByRole("button", { name: "Send" }).click();
  await customer.page.getByText("Thank you!").waitFor();
  // A second answer from the same link is refused.
  const again = await customer.page.request.post(link, { form: { rating: "1" } });
  assert.equal(again.status(), 409, "a survey is answered once");
  assert.deepEqual(customer.problems, [], "no script errors on the survey page");
  await customer.context.close();
  console.log("survey answered");

  // The agent sees it on the conversation and in the reports.
  await page.goto(`${cfg.baseUrl}/conversations/${conversation.id}`);
  assert.match(await page.locator("#conv-csat").innerText(), /Customer rated 5\/5: .Found it at the front desk/);
  assertCsp(await page.goto(`${cfg.baseUrl}/reports`), "reports page");
  const perAgent = page.locator("table.csat-table").nth(1);
  assert.match(await perAgent.innerText(), new RegExp(`${cfg.agentName}\\s+1\\s+100 %\\s+5\\.0`));
  assert.deepEqual(problems, [], "no script errors in the inbox");
  await context.close();
  console.log("answer shown");
} finally {
  await browser.close();
}
