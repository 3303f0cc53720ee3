// The portal in a real browser (Debian's Chromium, driven by playwright-core):
//   1. an end user activates the account from the invitation link (password, then the TOTP
//      key shown on the page), logs in with password + TOTP, sees the quarantine, opens the
//      message (shown safely), always allows its sender, and releases it;
//   2. a tenant admin, in English, opens the dashboard; its charts must render, and a
//      screenshot is written.
// Run by tests/e2e/test_browser.py, which prepares the node and checks the delivery.
// Input in the environment; prints one JSON line of what it saw.
import { base, browser, enrol, env, freshCode, login, newPage, password, seen } from "./lib.mjs";

try {
  // --- the end user, in Japanese ---
  const user = await newPage("ja-JP", "Asia/Tokyo");
  const userSecret = await enrol(user, env("USER_LINK"));
  seen.japaneseLogin = (await user.textContent("h1")).trim();
  // A wrong code is refused on the login page itself.
  await user.goto(`${base}/login`);
  await user.fill("input[name=email]", env("USER_EMAIL"));
  await user.fill("input[name=password]", password);
  await user.fill("input[name=code]", "000000");
  await user.click("button[type=submit]");
  seen.wrongCode = (await user.textContent("p.error")).trim();
  await login(user, env("USER_EMAIL"), userSecret);
  seen.afterLogin = new URL(user.url()).pathname;
  seen.quarantineTitle = (await user.textContent("h1")).trim();
  const rows = user.locator("table.items tbody tr");
  seen.rows = await rows.count();
  // Times in the browser's own zone (the script rewrote the server's text), the instant kept.
  const t = user.locator("table.items tbody time").first();
  seen.userTime = [(await t.textContent()).trim(), await t.getAttribute("datetime")];
  seen.icon = await user.getAttribute("link[rel=icon]", "href");
  await rows.first().locator("a").click();
  await user.waitForSelector("#msg-subject");
  seen.subject = (await user.textContent("#msg-subject")).trim();
  seen.body = await user.textContent("#msg-body");
  seen.links = await user.locator("ul.links li").allTextContents();
  seen.evidence = await user.locator("dd.symbols ul.evidence li").allTextContents();
  seen.pwned = await user.evaluate(() => window.pwned === true);
  seen.images = await user.locator("main img").count();
  // "Always allow this sender", then the list shows it; back to the message to release it.
  await user.click("#allow-sender");
  await user.waitForSelector("p.notice");
  seen.allowNotice = (await user.textContent("p.notice")).trim();
  await user.goto(`${base}/senders`);
  seen.senders = await user.locator("#senders tbody tr td:first-child").allTextContents();
  await user.goto(`${base}/quarantine`);
  await user.locator("table.items tbody tr").first().locator("a").click();
  await user.waitForSelector("#release");
  await user.click("#release");
  await user.waitForSelector("p.notice");
  seen.notice = (await user.textContent("p.notice")).trim();
  seen.rowsAfter = await user.locator("table.items tbody tr").count();
  // The user has no dashboard.
  const resp = await user.goto(`${base}/dashboard`);
  seen.userDashboard = resp.status();

  // --- the tenant admin, in English ---
  const admin = await newPage("en-US", "America/New_York");
  const adminSecret = await enrol(admin, env("ADMIN_LINK"));
  await login(admin, env("ADMIN_EMAIL"), adminSecret);
  await admin.goto(`${base}/dashboard`);
  seen.dashboardTitle = (await admin.textContent("h1")).trim();
  await admin.waitForSelector("#chart-flow svg");
  seen.flowBars = await admin.locator("#chart-flow rect.bar").count();
  const heights = await admin.locator("#chart-flow rect.bar").evaluateAll(
    (rs) => rs.map((r) => r.getBoundingClientRect().height));
  seen.flowBarsDrawn = heights.filter((h) => h > 0).length;
  const box = await admin.locator("#chart-flow svg").boundingBox();
  seen.flowChartSize = [Math.round(box.width), Math.round(box.height)];
  seen.verdictBars = await admin.locator("#chart-verdicts rect.bar").count();
  seen.senderBars = await admin.locator("#chart-senders rect.bar").count();
  seen.symbolBars = await admin.locator("#chart-symbols rect.bar").count();
  // Bars are filled (the stylesheet loaded under the CSP), not transparent or black.
  seen.barFill = await admin.locator("#chart-flow rect.bar").first().evaluate(
    (r) => getComputedStyle(r).fill);
  await admin.screenshot({ path: env("SCREENSHOT"), fullPage: true });
  // The settings form for protected names (a stricter policy: no code needed).
  await admin.goto(`${base}/settings`);
  await admin.fill("#protected-names", "Taro Yamada: taro@acme.test\nCEO Office");
  await admin.click("#names-form button[type=submit]");
  await admin.waitForSelector("p.notice");
  seen.namesNotice = (await admin.textContent("p.notice")).trim();
  seen.namesKept = await admin.inputValue("#protected-names");
  await admin.goto(`${base}/dashboard`);
  // A week, per day; the period is a link away.
  await admin.click("nav.ranges a[href='/dashboard?range=7d']");
  await admin.waitForSelector("#chart-flow svg");
  seen.weekBars = await admin.locator("#chart-flow rect.bar").count();
  seen.weekCurrent = (await admin.textContent("nav.ranges [aria-current=page]")).trim();
  seen.weekCaption = (await admin.textContent("#chart-flow figcaption")).trim();
  const icon = await admin.request.get(`${base}/favicon.ico`);
  seen.favicon = [icon.status(), icon.headers()["content-type"]];
  await admin.goto(`${base}/trace?rcpt=${encodeURIComponent(env("USER_EMAIL"))}`);
  seen.traceRows = await admin.locator("#trace tbody tr").count();
  seen.traceEvents = await admin.locator("#trace ul.events strong").allTextContents();
  seen.traceEvidence = await admin.locator("#trace ul.evidence li").allTextContents();
  seen.traceTime = (await admin.locator("#trace tbody time").first().textContent()).trim();
  // The trace table fits a 1280-pixel window (long addresses and ids wrap).
  await admin.setViewportSize({ width: 1280, height: 800 });
  seen.traceOverflow = await admin.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await admin.click("header form.logout button");
  await admin.waitForLoadState("load");
  seen.afterLogout = new URL(admin.url()).pathname;
  const again = await admin.goto(`${base}/dashboard`);
  seen.afterLogoutDashboard = new URL(again.url()).pathname;

  // --- the first operator invites an auditor from the system page ---
  const op = await newPage("en-US");
  const opSecret = await enrol(op, env("OPERATOR_LINK"));
  await login(op, "operator", opSecret);
  await op.goto(`${base}/operator`);
  await op.fill("#invite-form input[name=email]", "auditor@example.test");
  await op.selectOption("#invite-form select[name=role]", "auditor");
  await op.click("#invite-form button[type=submit]");
  await op.waitForSelector("#invite-link");
  seen.operatorInvite = (await op.textContent("#invite-link")).trim();

  // --- passkeys, at https://localhost (an RP ID is a host name, never an address), with
  // Chromium's virtual authenticator (a platform authenticator with user verification) ---
  const local = base.replace("://127.0.0.1:", "://localhost:");
  const pkPage = await newPage("en-US");
  const cdp = await pkPage.context().newCDPSession(pkPage);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  const pkSecret = await enrol(pkPage, env("PASSKEY_LINK").replace("://127.0.0.1:", "://localhost:"));
  const loginStep = await login(pkPage, env("PASSKEY_EMAIL"), pkSecret, local);
  await pkPage.goto(`${local}/account`);
  seen.passkeyFormShown = await pkPage.isVisible("#passkey-add");
  await pkPage.fill("#passkey-add input[name=name]", "browser key");
  // The step-up needs a step after the login's: wait until that one is current or next.
  const [stepUpCode] = await freshCode(pkSecret, loginStep);
  await pkPage.fill("#passkey-add input[name=code]", stepUpCode);
  await pkPage.click("#passkey-add button[type=submit]");
  await pkPage.waitForSelector("p.notice, #passkey-add-error:not([hidden])");
  seen.passkeyAddError = await pkPage.isVisible("#passkey-add-error") ? await pkPage.textContent("#passkey-add-error") : null;
  seen.passkeyNames = await pkPage.locator("#passkeys td.name").allTextContents();
  const creds = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
  seen.authenticatorCredentials = creds.map((c) => ({ resident: c.isResidentCredential, rpId: c.rpId }));
  await pkPage.click("header form.logout button");
  await pkPage.waitForLoadState("load");
  await pkPage.goto(`${local}/login`);
  await pkPage.click("#passkey-login-button");
  await pkPage.waitForURL((u) => u.pathname !== "/login", { timeout: 15000 });
  seen.passkeyLoginPath = new URL(pkPage.url()).pathname;
  seen.passkeyWho = (await pkPage.textContent("header span.who")).trim();
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
