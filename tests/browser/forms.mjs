// Every form of the portal's daily work, submitted in a real browser (Debian's Chromium driven
// by playwright-core), as operators and tenant admins use them:
//   operator: a new tenant and a domain for it, a lockbox request, the audit export;
//   tenant admin: approving and revoking that request, the filter thresholds, an invitation,
//   the recipients (policy, add, remove), sender lists (add, remove), a quarantined message's
//   "always block" and delete, the delivery route and the smarthost secret (with a code), the
//   audit export;
//   a recipient: the release link of a quarantine digest.
// The end user's forms, protected names, the operator's invitation and passkeys are in
// portal.mjs. Run by tests/e2e/test_browser.py, which prepares the node and checks what each
// form changed from outside (CLI, delivery). Prints one JSON line of what it saw.
import { readFile } from "node:fs/promises";
import { base, browser, enrol, env, freshCode, login, newPage, seen } from "./lib.mjs";

const text = async (page, sel) => ((await page.textContent(sel)) || "").trim();
// What a page says after a form: its notice, or the problem it shows.
async function outcome(page) {
  await page.waitForLoadState("load");
  for (const sel of ["p.notice", "p.done", "p.error", "main h1"]) {
    if (await page.locator(sel).count()) return text(page, sel);
  }
  return "";
}

try {
  // --- the operator: a tenant, a domain, a lockbox request ---
  const op = await newPage("en-US");
  const opSecret = await enrol(op, env("OPERATOR_LINK"));
  const opStep = await login(op, "operator", opSecret);
  await op.goto(`${base}/operator`);
  await op.fill("#tenant-form input[name=name]", "globex");
  await op.fill("#tenant-form input[name=domains]", "globex.test, globex-mail.test");
  await op.fill("#tenant-form input[name=route]", env("GLOBEX_ROUTE"));
  await op.click("#tenant-form button[type=submit]");
  await op.waitForLoadState("load");
  await op.selectOption("#domain-form select[name=tenant]", { label: "globex" });
  await op.fill("#domain-form input[name=domain]", "globex.example");
  await op.click("#domain-form button[type=submit]");
  await op.waitForLoadState("load");
  seen.tenantRow = await op.locator("#tenants tbody tr", { hasText: "globex" })
    .locator("td").allTextContents();
  await op.goto(`${base}/lockbox`);
  await op.fill("input[name=tenant]", "acme");
  await op.fill("input[name=reason]", "Ticket 4711: the customer asks why an invoice was held");
  await op.fill("input[name=minutes]", "30");
  await op.click("form.card button[type=submit]");
  await op.waitForSelector("#lockbox");
  seen.lockboxAsked = await text(op, "#lockbox tbody tr td.state");
  // Before approval the operator sees the envelope only.
  await op.goto(`${base}/quarantine`);
  const heldUrl = await op.locator("table.items tbody tr a").first().getAttribute("href");
  await op.goto(`${base}${heldUrl}`);
  seen.opBeforeApproval = await op.locator("#msg-subject").count();

  // --- the tenant admin approves; the operator opens; the admin revokes ---
  const admin = await newPage("en-US", "Asia/Tokyo");
  const adminSecret = await enrol(admin, env("ADMIN_LINK"));
  const adminStep = await login(admin, env("ADMIN_EMAIL"), adminSecret);
  await admin.goto(`${base}/lockbox`);
  await admin.click("#lockbox button[data-act=approve]");
  await admin.waitForSelector("#lockbox");
  seen.lockboxApproved = await text(admin, "#lockbox tbody tr td.state");
  await op.goto(`${base}${heldUrl}`);
  seen.opAfterApproval = await op.locator("#msg-body").count()
    ? await text(op, "#msg-body") : null;
  await admin.click("#lockbox button[data-act=revoke]");
  await admin.waitForSelector("#lockbox");
  seen.lockboxRevoked = await text(admin, "#lockbox tbody tr td.state");
  await op.goto(`${base}${heldUrl}`);
  seen.opAfterRevoke = await op.locator("#msg-subject").count();

  // --- the admin's settings: thresholds (stricter: no code), an invitation, recipients ---
  // Loosening without a code is refused with words for a person at a form.
  await admin.goto(`${base}/settings`);
  await admin.fill("#policy-form input[name=tag]", "3");
  await admin.click("#policy-form button[type=submit]");
  seen.looserRefused = [await outcome(admin), await text(admin, "main h1")];
  await admin.goto(`${base}/settings`);
  await admin.fill("#policy-form input[name=tag]", "1.5");
  await admin.fill("#policy-form input[name=quarantine]", "3.5");
  await admin.fill("#policy-form input[name=reject]", "20");
  await admin.click("#policy-form button[type=submit]");
  seen.policyNotice = await outcome(admin);
  await admin.fill("form[action='/settings/invite'] input[name=email]", "dave@acme.test");
  await admin.selectOption("form[action='/settings/invite'] select[name=role]", "user");
  await admin.click("form[action='/settings/invite'] button[type=submit]");
  await admin.waitForSelector("#invite-link");
  seen.adminInvite = await text(admin, "#invite-link");
  seen.invitedRow = await admin.locator("#users tr.invited", { hasText: "dave@acme.test" }).count();
  for (const a of ["bob@acme.test", "carol@acme.test"]) {
    await admin.fill("#recipient-form input[name=address]", a);
    await admin.click("#recipient-form button[type=submit]");
    seen.recipientNotice = await outcome(admin);
  }
  await admin.locator("#recipients tr", { hasText: "carol@acme.test" }).locator("button").click();
  await admin.waitForLoadState("load");
  await admin.selectOption("#recipient-policy-form select[name=policy]", "verify");
  await admin.click("#recipient-policy-form button[type=submit]");
  await admin.waitForLoadState("load");
  seen.recipients = await admin.locator("#recipients tbody td:first-child").allTextContents();
  seen.recipientPolicy = await admin.inputValue("#recipient-policy-form select[name=policy]");

  // --- sender lists: add a block for everyone, then remove it ---
  await admin.goto(`${base}/senders`);
  await admin.fill("form.card input[name=pattern]", "spam.example");
  await admin.selectOption("form.card select[name=action]", "block");
  await admin.selectOption("form.card select[name=scope]", "tenant");
  await admin.click("form.card button[type=submit]");
  await admin.waitForSelector("#senders");
  seen.sendersAdded = await admin.locator("#senders tbody tr").evaluateAll(
    (rs) => rs.map((r) => [...r.querySelectorAll("td")].slice(0, 3).map((c) => c.textContent.trim())));
  await admin.locator("#senders tr", { hasText: "spam.example" }).locator("button").click();
  await admin.waitForLoadState("load");
  seen.sendersAfterRemove = await admin.locator("#senders tbody tr", { hasText: "spam.example" }).count();

  // --- a quarantined message of carol's: always block its sender, then delete it ---
  await admin.goto(`${base}/quarantine?q=carol%40acme.test`);
  await admin.locator("table.items tbody tr a").first().click();
  await admin.waitForSelector("#block-sender");
  const carolUrl = new URL(admin.url()).pathname;
  await admin.click("#block-sender");
  seen.blockNotice = await outcome(admin);
  await admin.goto(`${base}${carolUrl}`);
  admin.once("dialog", (d) => { seen.deleteConfirm = d.message(); d.accept(); });
  await admin.click("#delete");
  seen.deleteNotice = await outcome(admin);
  seen.carolLeft = await admin.locator("table.items tbody tr", { hasText: "carol@acme.test" }).count();

  // --- the route and the smarthost secret need a current code: one step-up covers both ---
  await admin.goto(`${base}/settings`);
  await admin.fill("#route-form input[name=route]", env("NEW_ROUTE"));
  const [routeCode, routeStep] = await freshCode(adminSecret, adminStep);
  await admin.fill("#route-form input[name=code]", routeCode);
  await admin.click("#route-form button[type=submit]");
  seen.routeNotice = await outcome(admin);
  seen.routeShown = await admin.inputValue("#route-form input[name=route]");
  await admin.fill("#secret-form input[name=username]", "acme-relay");
  await admin.fill("#secret-form input[name=password]", "s3cret-relay-pass");
  await admin.click("#secret-form button[type=submit]");
  seen.secretNotice = await outcome(admin);
  seen.secrets = await admin.locator("#secrets li").allTextContents();
  seen.secretInPage = (await admin.content()).includes("s3cret-relay-pass");

  // --- audit exports: the tenant admin's own, the operator's of a named tenant ---
  const [exportCode] = await freshCode(adminSecret, routeStep);
  await admin.fill("#export-form input[name=code]", exportCode);
  const [adminDownload] = await Promise.all([
    admin.waitForEvent("download"), admin.click("#export-form button[type=submit]")]);
  seen.adminExport = (await readFile(await adminDownload.path(), "utf8")).split("\n").filter(Boolean);
  await op.goto(`${base}/alerts`);
  await op.fill("#export-form input[name=tenant]", "acme");
  const [opCode] = await freshCode(opSecret, opStep);
  await op.fill("#export-form input[name=code]", opCode);
  const [opDownload] = await Promise.all([
    op.waitForEvent("download"), op.click("#export-form button[type=submit]")]);
  seen.operatorExport = (await readFile(await opDownload.path(), "utf8")).split("\n").filter(Boolean);

  // --- a recipient releases a message from the quarantine digest's link (no login) ---
  const anyone = await newPage("ja-JP", "Asia/Tokyo");
  await anyone.goto(env("DIGEST_LINK"));
  seen.digestPage = await anyone.locator("main").textContent();
  await anyone.click("main form button[type=submit]");
  seen.digestNotice = await outcome(anyone);
} catch (e) {
  console.error(`seen so far: ${JSON.stringify(seen)}`);
  throw e;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
