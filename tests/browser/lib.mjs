// What the browser tests share: the environment, a TOTP generator (RFC 6238), Chromium
// launched headless, pages that collect CSP violations and script errors, enrolment from an
// invitation link, and login with password + TOTP.
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
export const base = env("PORTAL_URL").replace(/\/$/, "");
export const password = env("PASSWORD");

function base32(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of s.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}

/** The current 30-second TOTP step. */
export const nowStep = () => Math.floor(Date.now() / 1000 / 30);

// RFC 6238: SHA-1, 6 digits, 30 s steps; `ahead` steps in the future.
export function totp(secret, ahead = 0) {
  const counter = nowStep() + ahead;
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", base32(secret)).update(msg).digest();
  const o = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/**
 * A code the server has not seen yet: codes are never accepted twice, so after one of step
 * `used`, wait until step `used` is current and give the next one's (one step ahead is
 * accepted). Returns [code, its step].
 */
export async function freshCode(secret, used) {
  while (nowStep() < used) await new Promise((r) => setTimeout(r, 200));
  return [totp(secret, used + 1 - nowStep()), used + 1];
}

export const seen = { cspViolations: [], scriptErrors: [] };

export const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

export async function newPage(locale, timezoneId) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, locale, timezoneId });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) seen.cspViolations.push(m.text());
  });
  page.on("pageerror", (e) => seen.scriptErrors.push(String(e)));
  return page;
}

// Activates an account from its link; returns the TOTP secret.
export async function enrol(page, link) {
  await page.goto(link);
  // The page's script moved the token from the fragment into the form.
  const token = await page.inputValue("#token");
  if (!token || page.url().includes("#")) throw new Error("token not taken from the fragment");
  await page.fill("input[name=password]", password);
  await page.fill("input[name=again]", password);
  await page.click("button[type=submit]");
  const secret = await page.getAttribute("#totp-secret", "data-secret");
  // The key is also drawn as a QR code (an SVG of dark modules, rendered at its full size).
  const qr = await page.locator("svg.qr").boundingBox();
  const modules = ((await page.getAttribute("svg.qr path", "d")) || "").split("M").length - 1;
  if (!qr || qr.width < 200 || modules < 200) throw new Error(`no QR code drawn (${JSON.stringify(qr)}, ${modules} modules)`);
  seen.qrModules = modules;
  await page.fill("input[name=code]", totp(secret));
  await page.click("button[type=submit]");
  await page.waitForSelector("a.button[href='/login']");
  seen.recoveryCodes = await page.locator("#recovery-codes li").count();
  return secret;
}

export async function login(page, email, secret, at = base) {
  await page.goto(`${at}/login`);
  await page.fill("input[name=email]", email);
  await page.fill("input[name=password]", password);
  // The enrolment used the current step; a code is never accepted twice.
  const step = nowStep() + 1;
  await page.fill("input[name=code]", totp(secret, 1));
  await page.click("button[type=submit]");
  await page.waitForLoadState("load");
  return step; // the step whose code was used (the next one)
}
