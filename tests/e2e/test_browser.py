"""The web UI in a real browser: Debian's Chromium driven by Playwright (playwright-core from
npm, tests/browser/portal.mjs) against the real binary. An end user activates the account
from the invitation link, logs in with password + TOTP, opens a quarantined message, sees it
safely, always allows its sender, and releases it — and the message really arrives at the downstream sink. A tenant
admin's dashboard renders its charts, and a screenshot is taken. Then every other form of an
operator's and a tenant admin's daily work (tests/browser/forms.mjs), each change checked from
outside."""
import datetime
import json
import os
import re
import smtplib
import subprocess
import time
from pathlib import Path

from conftest import wait_for
from portal_helpers import PASSWORD, QUARANTINE_ALL, bare, send
from test_digest import LINK, digests

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "browser" / "portal.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def link_of(n, email, role, tenant):
    out = n.cli("user", "invite", "--email", email, "--role", role, "--tenant", tenant).stdout
    # The CLI names the configured portal address; the test node listens on a free port.
    token = next(w for w in out.split() if "/enrol#" in w).split("/enrol#")[1]
    return f"{n.portal_url().rstrip('/')}/enrol#{token}"


HOSTILE = (
    "From: =?UTF-8?B?57WM55CG6YOo?= <billing@vendor.test>\r\n"
    "To: bob@acme.test\r\n"
    "Subject: =?UTF-8?B?6KuL5rGC5pu4?= BROWSER-1\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><body><p>Pay now: <a href=\"https://evil.example/pay\">https://vendor.test/invoice</a></p>"
    "<img src=\"https://tracker.example/pixel.gif\">"
    "<script>window.pwned = true</script></body></html>\r\n"
)


def test_end_user_releases_in_the_browser_and_admin_sees_charts(node, sink, tmp_path):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", HOSTILE.encode())
    for i in range(3):
        send(n, "carol@acme.test", f"To: carol@acme.test\r\nSubject: other {i}\r\n\r\nhello\r\n".encode())
    held = n.cli_json("quarantine", "list")
    assert len(held) == 4
    bob_item = next(q["id"] for q in held if q["rcpts"] == ["bob@acme.test"])

    shot = tmp_path / "dashboard.png"
    env = dict(os.environ,
               PORTAL_URL=n.portal_url(), PASSWORD=PASSWORD, SCREENSHOT=str(shot),
               CHROMIUM=CHROMIUM,
               USER_EMAIL="bob@acme.test", USER_LINK=link_of(n, "bob@acme.test", "user", "acme"),
               ADMIN_EMAIL="admin@acme.test",
               ADMIN_LINK=link_of(n, "admin@acme.test", "tenant-admin", "acme"),
               PASSKEY_EMAIL="carol@acme.test", PASSKEY_LINK=link_of(n, "carol@acme.test", "user", "acme"),
               OPERATOR_LINK=f"{n.portal_url().rstrip('/')}/enrol#{n.enrolment_link()}")
    run = subprocess.run(["node", str(SCRIPT)], cwd=SCRIPT.parent, env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # The UI follows the browser's language.
    assert seen["japaneseLogin"] == "アカウントが有効になりました", seen
    assert seen["recoveryCodes"] == 10 and seen["qrModules"] > 200, seen
    assert "正しくない" in seen["wrongCode"], seen
    assert seen["afterLogin"] == "/quarantine" and seen["quarantineTitle"] == "隔離メール"
    # Times in the reader's time zone: Tokyo for this browser (the instant itself in UTC).
    text, instant = seen["userTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d (JST|GMT\+9)", text), seen["userTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", instant), seen["userTime"]
    utc = datetime.datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ")
    assert text.startswith((utc + datetime.timedelta(hours=9)).strftime("%Y-%m-%d %H:%M")), seen["userTime"]
    assert seen["icon"] == "/static/favicon.svg"
    # Bob sees his own message only, shown as text: the script did not run, no remote image
    # was loaded, the link is defanged.
    assert seen["rows"] == 1, seen
    assert seen["subject"] == "請求書 BROWSER-1", seen
    assert seen["pwned"] is False and seen["images"] == 0
    assert "hxxps://vendor[.]test/invoice" in seen["body"] and "<script>" not in seen["body"]
    assert "hxxps://evil[.]example/pay" in seen["links"], seen
    assert "https://" not in seen["body"] + "".join(seen["links"])
    # Why it was held: each symbol with its weight and a line in the reader's language.
    assert any(e.startswith("LINK_TEXT_MISMATCH +") and "リンクの表示と実際の行き先が異なります" in e
               for e in seen["evidence"]), seen["evidence"]
    assert "許可します" in seen["allowNotice"] and seen["senders"] == ["a@example.org"], seen
    assert "解放しました" in seen["notice"] and seen["rowsAfter"] == 0, seen
    assert seen["userDashboard"] == 403

    # Released means delivered: the sink has it, byte for byte the message sent.
    msgs = [m for m in s.wait(1) if b"BROWSER-1" in m[1]]
    assert len(msgs) == 1 and msgs[0][0]["rcpt_tos"] == ["bob@acme.test"]
    assert bob_item not in [q["id"] for q in n.cli_json("quarantine", "list")]
    opens = [r for r in n.cli_json("vault", "records")
             if r["object"] == bob_item and r["principal"] == "user:bob@acme.test"]
    assert {r["action"] for r in opens} >= {"open-quarantine:read", "open-quarantine:release"}, opens

    # The admin's dashboard: four real charts with drawn bars (4 messages this hour).
    assert seen["dashboardTitle"] == "Dashboard"
    # (two bars if the test ran across the turn of an hour)
    assert seen["flowBars"] == 24 and seen["flowBarsDrawn"] in (1, 2), seen
    assert seen["flowChartSize"][0] > 300 and seen["flowChartSize"][1] > 50, seen
    assert seen["verdictBars"] >= 1 and seen["senderBars"] >= 1 and seen["symbolBars"] >= 1, seen
    assert seen["barFill"] not in ("none", "rgb(0, 0, 0)", ""), seen
    # Protected names from the settings form reach the tenant's policy.
    assert seen["namesNotice"].startswith("Protected names"), seen
    assert seen["namesKept"] == "Taro Yamada: taro@acme.test\nCEO Office", seen
    policy = n.cli("tenant", "policy", "acme").stdout
    assert "Taro Yamada" in policy and "taro@acme.test" in policy and "CEO Office" in policy, policy
    # The operator's invitation form: the link is shown, the invitation is pending.
    assert "/enrol#e1_" in seen["operatorInvite"], seen
    assert "auditor@example.test auditor - invited by" in n.cli("user", "list").stdout
    # A week per (UTC) day: 7 or 8 columns, as the week started at the hour it is now.
    assert seen["weekBars"] in (7, 8) and seen["weekCurrent"] == "7 days", seen
    assert seen["weekCaption"] == "Mail flow per day", seen
    assert seen["favicon"][0] == 200 and seen["favicon"][1].startswith("image/svg+xml"), seen
    assert shot.exists() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The trace page: bob's message, accepted, quarantined and released.
    assert seen["traceRows"] == 1, seen
    assert {"accepted", "quarantined", "released"} <= set(seen["traceEvents"]), seen
    assert 1 <= len(seen["traceEvidence"]) <= 3, seen["traceEvidence"]
    assert any("A link shows one address but leads to another." in e for e in seen["traceEvidence"]), seen
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d (EST|EDT|GMT-5|GMT-4)", seen["traceTime"]), seen
    assert seen["traceOverflow"] <= 0, seen
    assert seen["afterLogout"] == "/login" and seen["afterLogoutDashboard"] == "/login"
    # Passkeys in a real browser: added from the account page (after a code), held by the
    # authenticator as a discoverable credential for the RP ID localhost, and then a sign-in
    # with it alone.
    assert seen["passkeyFormShown"] and seen["passkeyAddError"] is None, seen
    assert seen["passkeyNames"] == ["browser key"], seen
    assert seen["authenticatorCredentials"] == [{"resident": True, "rpId": "localhost"}], seen
    assert seen["passkeyLoginPath"] == "/quarantine" and seen["passkeyWho"].startswith("carol@acme.test"), seen
    # The CSP held and no page script failed.
    assert seen["cspViolations"] == [] and seen["scriptErrors"] == [], seen


FORMS = ROOT / "tests" / "browser" / "forms.mjs"


def test_operator_and_tenant_admin_forms_in_the_browser_change_what_they_say(node, sink, tmp_path):
    """Every daily-work form of operators and tenant admins, submitted in Chromium; each
    change is then checked from outside: the CLI, the SMTP listener, the delivery."""
    s, s2, g = sink("acme"), sink("acme-new"), sink("globex")
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", bare("FORMS-DIGEST", "bob@acme.test"))
    for i in (1, 2):
        send(n, "carol@acme.test", bare(f"CAROL-{i}", "carol@acme.test"))
    assert len(n.cli_json("quarantine", "list")) == 3
    time.sleep(2.5)   # a digest run leaves the last two seconds for the next one
    n.cli("digest", "send")
    (_, digest), = wait_for(lambda: digests(s, "bob@acme.test"), what="bob's digest")
    (token,) = LINK.findall(digest.get_body(("plain",)).get_content())

    env = dict(os.environ, PORTAL_URL=n.portal_url(), PASSWORD=PASSWORD, CHROMIUM=CHROMIUM,
               ADMIN_EMAIL="admin@acme.test",
               ADMIN_LINK=link_of(n, "admin@acme.test", "tenant-admin", "acme"),
               OPERATOR_LINK=f"{n.portal_url().rstrip('/')}/enrol#{n.enrolment_link()}",
               GLOBEX_ROUTE=g.route(), NEW_ROUTE=s2.route(),
               DIGEST_LINK=f"{n.portal_url().rstrip('/')}/digest/{token}")
    run = subprocess.run(["node", str(FORMS)], cwd=FORMS.parent, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # The operator's tenant and domain forms: the new tenant has all three domains.
    tenants = {t["name"]: t for t in n.cli_json("tenant", "list")}
    assert sorted(tenants["globex"]["domains"]) == ["globex-mail.test", "globex.example", "globex.test"]
    assert "globex.example" in seen["tenantRow"][1], seen["tenantRow"]
    # Lockbox: asked, approved (the operator then reads the message), revoked (envelope only).
    assert seen["lockboxAsked"] == "waiting for the tenant", seen
    assert seen["opBeforeApproval"] == 0 and seen["opAfterRevoke"] == 0, seen
    assert seen["lockboxApproved"].startswith("approved"), seen
    assert seen["opAfterApproval"] in ("body FORMS-DIGEST", "body CAROL-1", "body CAROL-2"), seen
    assert seen["lockboxRevoked"] == "revoked", seen
    (lb,) = n.cli_json("lockbox", "list", "--tenant", "acme")
    assert lb["state"] == "revoked" and "Ticket 4711" in lb["reason"], lb
    # Thresholds (looser ones ask for a code, in words for the form), invitation, recipients.
    assert seen["looserRefused"] == [
        "This change needs a current code from your authenticator: go back, enter the code in "
        "the form and submit it again.", "Not allowed"], seen
    assert seen["policyNotice"].startswith("The thresholds are changed"), seen
    policy = n.cli_json("tenant", "policy", "acme")
    assert (policy["tag"], policy["quarantine"], policy["reject"]) == (1.5, 3.5, 20.0), policy
    assert "/enrol#e1_" in seen["adminInvite"] and seen["invitedRow"] == 1, seen
    assert "dave@acme.test user acme invited by user:admin@acme.test" in n.cli("user", "list").stdout
    assert seen["recipients"] == ["bob@acme.test"] and seen["recipientPolicy"] == "verify", seen
    assert tenants["acme"]["recipient_policy"] == "verify", tenants["acme"]
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.ehlo("forms.test")
        c.mail("x@sender.example")
        assert c.rcpt("carol@acme.test")[0] == 550   # no longer listed
        assert c.rcpt("bob@acme.test")[0] == 250
        c.rset()
    # Sender lists: the block was listed for the whole tenant, then removed.
    assert ["spam.example", "block", "everyone in the tenant"] in seen["sendersAdded"], seen
    assert seen["sendersAfterRemove"] == 0, seen
    # Carol's message: sender blocked, then deleted after the page asked.
    assert seen["blockNotice"].startswith("The sender is blocked"), seen
    assert seen["deleteConfirm"] == "Delete this message for good?", seen
    assert seen["deleteNotice"].startswith("Deleted."), seen
    held = n.cli_json("quarantine", "list")
    assert sum(q["rcpts"] == ["carol@acme.test"] for q in held) == 1, held
    # Route and secret after one step-up; the secret never comes back to the page.
    assert seen["routeNotice"].startswith("The route is changed"), seen
    assert seen["routeShown"] == s2.route(), seen
    assert seen["secretNotice"].startswith("The secret is sealed"), seen
    assert any(x.startswith("smtp-auth") for x in seen["secrets"]) and not seen["secretInPage"], seen
    assert [x["kind"] for x in n.cli_json("tenant", "secret", "list", "acme")] == ["smtp-auth"]
    # Both audit exports are JSON lines of the tenant's records, the route change among them.
    for lines in (seen["adminExport"], seen["operatorExport"]):
        recs = [json.loads(x) for x in lines]
        assert len(recs) > 5, lines[:3]
        assert any("route" in json.dumps(r) for r in recs), lines[:5]
    # The digest's link released bob's message — to the route the admin set in the browser.
    assert "bob@acme.test" in seen["digestPage"] and "bob@acme.test" in seen["digestNotice"], seen
    (msg,) = [m for m in s2.wait(1) if b"FORMS-DIGEST" in m[1]]
    assert msg[0]["rcpt_tos"] == ["bob@acme.test"]
    assert not [m for m in s.messages() if b"FORMS-DIGEST" in m[1]]
    assert seen["cspViolations"] == [] and seen["scriptErrors"] == [], seen
