"""The web UI in a real browser: Debian's Chromium driven by Playwright (playwright-core from
npm, tests/browser/portal.mjs) against the real binary. An end user activates the account
from the invitation link, logs in with password + TOTP, opens a quarantined message, sees it
safely, always allows its sender, and releases it — and the message really arrives at the downstream sink. A tenant
admin's dashboard renders its charts, and a screenshot is taken."""
import datetime
import json
import os
import re
import subprocess
from pathlib import Path

from portal_helpers import PASSWORD, QUARANTINE_ALL, send

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
