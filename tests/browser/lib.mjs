// Shared helpers of the browser tests: configuration from the environment (set by
// tests/tests/web_browser.rs), Chromium, signed webhook posts, signing in, waiting.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";

import { chromium } from "playwright-core";

/** How long one wait may take before the test fails. */
export const WAIT_MS = 10_000;

/** A required environment variable. */
export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set (the browser tests are run by tests/tests/web_browser.rs)`);
  }
  return value;
}

/** Everything a script needs to know about the application under test. */
export function config() {
  return {
    baseUrl: env("INBOX_URL").replace(/\/$/, ""),
    email: env("INBOX_EMAIL"),
    password: env("INBOX_PASSWORD"),
    agentName: env("INBOX_AGENT_NAME"),
    channelId: env("INBOX_CHANNEL_ID"),
    channelName: env("INBOX_CHANNEL_NAME"),
    secret: env("INBOX_CHANNEL_SECRET"),
    chromium: process.env.INBOX_CHROMIUM || "/usr/bin/chromium",
    screenshots:
      process.env.INBOX_SCREENSHOTS_DIR ||
      (process.env.CARGO_TARGET_DIR ? join(process.env.CARGO_TARGET_DIR, "screenshots") : "screenshots"),
  };
}

/** Fails the whole script after `ms` (a hung browser must not hang the test run). */
export function deadline(ms, what) {
  setTimeout(() => {
    console.error(`${what}: gave up after ${ms / 1000} s`);
    process.exit(2);
  }, ms).unref();
}

/** Debian's Chromium; fails (never skips) when it is missing. */
export async function launch(cfg) {
  if (!existsSync(cfg.chromium)) {
    throw new Error(`${cfg.chromium} is missing: install Debian's chromium (tests/run does: apt-get install chromium)`);
  }
  return chromium.launch({ executablePath: cfg.chromium, args: ["--no-sandbox"] });
}

const problemsOf = new WeakMap();

/** A fresh browser context (own cookies) at a viewport, in a fixed locale and zone. */
export async function newPage(browser, { width, height }) {
  const context = await browser.newContext({
    viewport: { width, height },
    locale: "en-US",
    timezoneId: "UTC",
    isMobile: false,
    hasTouch: false,
  });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  const problems = [];
  problemsOf.set(page, problems);
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    const where = message.location().url;
    // Chromium asks every site for /favicon.ico; the inbox has none (yet).
    if (message.type() === "error" && !where.endsWith("/favicon.ico")) problems.push(`console: ${message.text()} (${where})`);
  });
  return { context, page, problems };
}

/** POSTs a customer message to the channel's webhook, signed over the exact body bytes. */
export async function postWebhook(cfg, payload) {
  const body = JSON.stringify(payload);
  const signature = "sha256=" + createHmac("sha256", cfg.secret).update(body).digest("hex");
  const response = await fetch(`${cfg.baseUrl}/hooks/${cfg.channelId}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-inbox-signature": signature },
    body,
  });
  const text = await response.text();
  assert.equal(response.status, 202, `webhook ${payload.external_id}: ${response.status} ${text}`);
}

/** Signs in through the form; ends on the inbox. */
export async function signIn(page, cfg) {
  const response = await page.goto(`${cfg.baseUrl}/inbox`);
  assert.equal(new URL(page.url()).pathname, "/login", "an anonymous visitor is sent to the sign-in page");
  assertCsp(response, "/login");
  await page.getByLabel("Email").fill(cfg.email);
  await page.getByLabel("Password").fill(cfg.password);
  await live(page, () => page.getByRole("button", { name: "Sign in" }).click());
  assert.equal(new URL(page.url()).pathname, "/inbox", "signed in, back on the inbox");
}

/**
 * Runs `action` (a navigation) and waits until the new page's event stream is connected, so
 * that what is posted next reaches it. The server subscribes before it answers, so the
 * stream's response means the page will see every later event.
 */
export async function live(page, action) {
  const stream = page.waitForResponse((r) => new URL(r.url()).pathname === "/events/stream");
  const navigated = page.waitForEvent("load");
  try {
    await action();
    await navigated;
    const response = await stream;
    assert.equal(response.status(), 200, "the event stream is open");
  } catch (error) {
    stream.catch(() => {});
    navigated.catch(() => {});
    const seen = problemsOf.get(page) ?? [];
    throw new Error(`${error.message}\n  on ${page.url()}; script and console errors so far: ${JSON.stringify(seen)}`);
  }
  await page.waitForLoadState("load");
}

/** Polls `probe` until `accept(value)`; fails naming `what` with the last value seen. */
export async function until(what, probe, accept = Boolean, timeout = WAIT_MS) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (accept(last)) return last;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Marks the document, to prove later that it was not reloaded. */
export async function markDocument(page) {
  const mark = `m${Math.random().toString(36).slice(2)}`;
  await page.evaluate((m) => { window.__testMark = m; }, mark);
  return async (what) => {
    const seen = await page.evaluate(() => window.__testMark);
    assert.equal(seen, mark, `${what}: the page was reloaded`);
  };
}

/** The page's own Content-Security-Policy: our script only, nothing inline. */
export function assertCsp(response, what) {
  assert.ok(response, `${what}: a response`);
  const csp = response.headers()["content-security-policy"] ?? "";
  assert.match(csp, /(^|;)\s*script-src 'self'(;|$)/, `${what}: CSP script-src 'self' only: ${csp}`);
  assert.match(csp, /object-src 'none'/, `${what}: CSP object-src 'none': ${csp}`);
  assert.match(csp, /frame-ancestors 'none'/, `${what}: CSP frame-ancestors 'none': ${csp}`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${what}: CSP allows nothing inline: ${csp}`);
}

/** Nothing is wider than the viewport (no sideways scrolling). */
export async function assertNoHorizontalOverflow(page, what) {
  const { scrollWidth, innerWidth, wide } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    wide: [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && el.getClientRects().length > 0)
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${[...el.classList].join(".")}`),
  }));
  assert.ok(scrollWidth <= innerWidth, `${what}: the page is ${scrollWidth} px wide in a ${innerWidth} px window (too wide: ${wide.join(", ")})`);
}

/** Writes a screenshot atomically (parallel runs may write the same file). */
export async function screenshot(page, cfg, name, { fullPage = false } = {}) {
  mkdirSync(cfg.screenshots, { recursive: true });
  const path = join(cfg.screenshots, `${name}.png`);
  const partial = `${path}.${process.pid}.part`;
  await page.screenshot({ path: partial, type: "png", fullPage });
  renameSync(partial, path);
  console.log(`screenshot: ${path}`);
}
