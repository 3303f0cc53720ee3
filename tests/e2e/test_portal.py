"""The portal role on the real binary: first-operator enrolment, password + TOTP login checked
by the vault, sessions and CSRF, tenant isolation of the quarantine, release to the real
downstream, and the front door (limits, rate limits, probe blocking) — all over real HTTPS."""
import base64
import hashlib
import http.client
import json
import re
import os
import smtplib
import time
import urllib.parse

import pytest

from conftest import wait_for
from portal_helpers import PASSWORD, QUARANTINE_ALL, Client, bare, invite, problem, send, totp


def test_first_operator_enrols_logs_in_with_totp_and_sessions_are_the_vaults(node):
    n = node()
    lost = n.enrolment_link()
    # A restart does not void the printed link; `user first-link` issues a new one that does.
    n.stop()
    n.start()
    n.banner_match(r"(link printed earlier \(by this node or another\) is live)", "the live-link notice")
    out = n.cli("user", "first-link").stdout
    token = out.split("/enrol#")[1].split()[0]
    assert token != lost
    c = Client(n)
    st, _, doc = c.request("POST", "/api/enrol", {"token": lost, "password": PASSWORD})
    assert st == 403 and "not valid" in doc["detail"], doc
    st, r, body = c.request("GET", "/healthz")
    assert st == 200 and body.strip() == "ok"
    csp = r.getheader("Content-Security-Policy")
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.getheader("Strict-Transport-Security").startswith("max-age=")
    assert r.getheader("X-Frame-Options") == "DENY"
    assert r.getheader("X-Content-Type-Options") == "nosniff"

    # Bad input gets a problem document a person can act on.
    st, r, doc = c.request("POST", "/api/enrol", {"token": token, "password": "short"})
    assert st == 403 and r.getheader("Content-Type") == "application/problem+json"
    problem(doc, 403)
    assert "12" in doc["detail"], doc
    st, _, doc = c.request("POST", "/api/enrol", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert st == 400 and "JSON" in doc["detail"]
    st, _, doc = c.request("POST", "/api/enrol", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert st == 415
    st, _, doc = c.request("POST", "/api/enrol", {"token": "e1_" + "0" * 64, "password": PASSWORD})
    assert st == 403 and "not valid" in doc["detail"]

    st, _, doc = c.request("POST", "/api/enrol", {"token": token, "password": PASSWORD})
    assert st == 200
    secret = doc["totp_secret"]
    wrong = "%06d" % ((int(totp(secret)) + 1) % 1_000_000)
    st, _, doc = c.request("POST", "/api/enrol/confirm", {"token": token, "code": wrong})
    assert st == 403 and "code does not match" in doc["detail"]
    st, _, doc = c.request("POST", "/api/enrol/confirm", {"token": token, "code": totp(secret)})
    assert st == 200 and "active" in doc["message"]
    recovery = doc["recovery_codes"]
    assert len(set(recovery)) == 10, recovery
    # The link is used up.
    st, _, doc = c.request("POST", "/api/enrol", {"token": token, "password": PASSWORD})
    assert st == 403

    # Neither the password nor the second factor is readable in the database.
    ((phc, sealed),) = n.sql("SELECT password_hash, totp_sealed FROM users")
    assert phc.startswith("$argon2id$") and PASSWORD not in phc
    assert base64.b32decode(secret + "=" * (-len(secret) % 8)) not in sealed

    # Wrong password, wrong code, unknown account: one answer for all.
    answers = set()
    for email, pw, code in [("operator", "wrong password!!", totp(secret)),
                            ("operator", PASSWORD, wrong),
                            ("nobody@x.test", PASSWORD, totp(secret))]:
        st, _, doc = c.request("POST", "/api/login", {"email": email, "password": pw, "code": code})
        assert st == 401
        answers.add(doc["detail"])
    assert len(answers) == 1, answers
    st, _, _ = c.request("GET", "/api/me")
    assert st == 401

    user = c.login("operator", secret)
    assert user["role"] == "operator" and user["tenant_id"] is None
    st, _, doc = c.request("GET", "/api/me")
    assert st == 200 and doc["user"]["email"] == "operator"
    # The code just used is refused a second time (replay), even with the right password.
    st, _, _ = Client(n).request("POST", "/api/login", {
        "email": "operator", "password": PASSWORD, "code": totp(secret, time.time() + 30)})
    assert st == 401
    # A state-changing request without the CSRF token is refused.
    st, _, doc = c.request("POST", "/api/logout", headers={"X-CSRF-Token": "forged"})
    assert st == 403 and "x-csrf-token" in doc["detail"]

    # A session row written straight into the database (as a compromised portal could) does
    # not make a session: only the vault can compute a token's MAC.
    forged = "s1_" + "ab" * 32
    now = int(time.time())
    n.sql("INSERT INTO user_sessions (id_mac, user_id, created_at, last_seen, expires_at) "
          "VALUES ($1, 1, 0, $2, $3)", hashlib.sha256(forged.encode()).hexdigest(), now, now + 3600)
    intruder = Client(n)
    intruder.cookie = f"sekisho_session={forged}"
    st, _, _ = intruder.request("GET", "/api/me")
    assert st == 401

    st, _, _ = c.request("POST", "/api/logout")
    assert st == 204
    st, _, _ = c.request("GET", "/api/me")
    assert st == 401

    # A lost authenticator: a recovery code logs in once, in place of the code (any case,
    # with or without the dash), and is used up; it is an alert, and no code is in the database.
    lost = Client(n)
    st, _, doc = lost.request("POST", "/api/login", {
        "email": "operator", "password": PASSWORD, "code": recovery[0].upper().replace("-", "")})
    assert st == 200 and doc["user"]["email"] == "operator", doc
    st, _, _ = Client(n).request("POST", "/api/login", {"email": "operator", "password": PASSWORD,
                                                        "code": recovery[0]})
    assert st == 401
    st, _, _ = Client(n).request("POST", "/api/login", {"email": "operator", "password": "wrong password!!",
                                                        "code": recovery[1]})
    assert st == 401
    st, _, _ = Client(n).request("POST", "/api/login", {"email": "operator", "password": PASSWORD,
                                                        "code": recovery[1]})
    assert st == 200, "a wrong password uses up no recovery code"
    (alert,) = [a for a in n.cli_json("alerts", "list") if a["rule"] == "recovery-code-login"]
    assert alert["count"] == 2 and alert["principal"] == "user:operator"
    dump = n.store_dump()
    assert not any(code.encode() in dump or code.replace("-", "").encode() in dump for code in recovery)

    logins = [r for r in n.cli_json("vault", "records") if r["action"] == "login"]
    outcomes = [r["outcome"] for r in logins]
    assert "ok: recovery code (9 left)" in outcomes and "ok: recovery code (8 left)" in outcomes
    assert outcomes.count("ok") == 1 and "failed: wrong password" in outcomes
    assert "failed: wrong or reused code" in outcomes and "failed: unknown account" in outcomes
    assert all(r["reason"] == "from 127.0.0.1" for r in logins)


def test_tenant_users_see_and_release_only_their_own_mail(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    send(n, "bob@acme.test", bare("ACME-BOB", "bob@acme.test"))
    send(n, "carol@acme.test", bare("ACME-CAROL", "carol@acme.test"))
    send(n, "eve@beta.test", bare("BETA-EVE", "eve@beta.test"))
    items = {q["rcpts"][0]: q["id"] for q in n.cli_json("quarantine", "list")}
    assert len(items) == 3

    r = n.cli("user", "invite", "--email", "x@acme.test", "--role", "tenant-admin", check=False)
    assert r.returncode != 0 and "belong to a tenant" in r.stderr
    admin = Client(n)
    admin.login("admin@acme.test", admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme")))
    bob = Client(n)
    bob.login("bob@acme.test", bob.enrol(invite(n, "bob@acme.test", "user", "acme")))
    invite(n, "carol@acme.test", "user", "acme")  # not taken up yet
    listed = n.cli("user", "list", "--tenant", "acme").stdout
    assert "admin@acme.test tenant-admin acme active" in listed
    assert "carol@acme.test user acme invited by" in listed, listed
    doc = n.cli_json("user", "list", "--tenant", "acme")
    assert [i["email"] for i in doc["invitations"]] == ["carol@acme.test"], doc
    assert {a["email"] for a in doc["accounts"]} == {"admin@acme.test", "bob@acme.test"}, doc

    st, _, doc = admin.request("GET", "/api/quarantine")
    assert st == 200 and sorted(i["rcpts"][0] for i in doc["items"]) == ["bob@acme.test", "carol@acme.test"]
    st, _, doc = bob.request("GET", "/api/quarantine")
    assert st == 200 and [i["rcpts"][0] for i in doc["items"]] == ["bob@acme.test"]
    # Another tenant's item — or another user's — does not exist for them, whatever the id.
    for who, rcpt in [(admin, "eve@beta.test"), (bob, "eve@beta.test"), (bob, "carol@acme.test")]:
        st, _, doc = who.request("GET", f"/api/quarantine/{items[rcpt]}")
        assert st == 404, doc
        st, _, doc = who.request("POST", f"/api/quarantine/{items[rcpt]}/release")
        assert st == 404, doc
    # Statistics: the admin's tenant only (beta's message is not counted); not for end users.
    st, _, doc = admin.request("GET", "/api/stats?hours=2")
    assert st == 200 and doc["total"] == 2 and len(doc["hourly"]) == 2, doc
    assert doc["verdicts"] == [{"name": "quarantine", "count": 2}], doc
    assert doc["top_senders"] == [{"name": "a@example.org", "count": 2}], doc
    st, _, doc = bob.request("GET", "/api/stats")
    assert st == 403 and "tenant admins" in doc["detail"]
    st, _, doc = admin.request("GET", "/api/stats?hours=0")
    assert st == 400 and "hours" in doc["detail"]
    # The trace: the admin's tenant's messages and only its recipients' events.
    st, _, doc = admin.request("GET", "/api/trace")
    assert st == 200 and len(doc["messages"]) == 2, doc
    assert {e["rcpt"] for m in doc["messages"] for e in m["events"]} == {"bob@acme.test", "carol@acme.test"}
    assert {e["event"] for m in doc["messages"] for e in m["events"]} >= {"accepted", "quarantined"}
    st, _, doc = admin.request("GET", "/api/trace?rcpt=eve@beta.test")
    assert st == 200 and doc["messages"] == []
    st, _, doc = admin.request("GET", "/api/trace?rcpt=BOB@acme.test&limit=1")
    assert st == 200 and [m["events"][0]["rcpt"] for m in doc["messages"]] == ["bob@acme.test"]
    assert bob.request("GET", "/api/trace")[0] == 403
    assert admin.request("GET", "/api/trace?limit=501")[0] == 400
    st, _, doc = admin.request("GET", "/api/quarantine?limit=0")
    assert st == 400 and "limit" in doc["detail"]
    st, _, doc = admin.request("GET", "/api/quarantine?tenant=beta")
    assert st == 400

    st, _, doc = bob.request("POST", f"/api/quarantine/{items['bob@acme.test']}/release")
    assert st == 200, doc
    env, content = [m for m in s.wait(1) if b"ACME-BOB" in m[1]][0]
    assert env["rcpt_tos"] == ["bob@acme.test"]
    assert items["bob@acme.test"] not in [q["id"] for q in n.cli_json("quarantine", "list")]
    st, _, doc = admin.request("POST", f"/api/quarantine/{items['carol@acme.test']}/release")
    assert st == 200, doc
    s.wait(2)
    assert not [m for m in s.messages() if b"BETA-EVE" in m[1]], "the other tenant's mail stays held"

    # Delete: their own mail only; the sealed blob goes with the index entry.
    send(n, "bob@acme.test", bare("ACME-BOB-2", "bob@acme.test"))
    bob2 = [q["id"] for q in n.cli_json("quarantine", "list") if q["rcpts"] == ["bob@acme.test"]][0]
    assert list((n.data_dir / "quarantine").rglob(f"{bob2}*"))
    st, _, doc = bob.request("DELETE", f"/api/quarantine/{items['eve@beta.test']}")
    assert st == 404, doc
    st, _, doc = bob.request("DELETE", f"/api/quarantine/{bob2}", headers={"X-CSRF-Token": "forged"})
    assert st == 403, doc
    st, _, _ = bob.request("DELETE", f"/api/quarantine/{bob2}")
    assert st == 204
    assert bob2 not in [q["id"] for q in n.cli_json("quarantine", "list")]
    assert not list((n.data_dir / "quarantine").rglob(f"{bob2}*"))
    deletes = [r for r in n.cli_json("vault", "records") if r["action"] == "delete-quarantine"]
    assert [(r["principal"], r["object"], r["outcome"]) for r in deletes] == [
        ("user:bob@acme.test", bob2, "ok")]

    opens = [r for r in n.cli_json("vault", "records") if r["action"] == "open-quarantine:release"]
    assert {(r["principal"], r["outcome"]) for r in opens} == {
        ("user:bob@acme.test", "ok"), ("user:admin@acme.test", "ok")}

    # The vault checks the session itself: mx's admin socket, asked directly with bob's
    # session for another tenant's item, is refused by the vault.
    import socket
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(n.data_dir / "admin.sock"))
    token = bob.cookie.split("=", 1)[1]
    sock.sendall((json.dumps({"cmd": "quarantine-release", "id": items["eve@beta.test"],
                              "principal": "cli:root", "session": token}) + "\n").encode())
    reply = json.loads(sock.makefile().readline())
    sock.close()
    assert reply["ok"] is False and "bob@acme.test" in reply["error"], reply
    refused = [r for r in n.cli_json("vault", "records")
               if r["object"] == items["eve@beta.test"] and r["principal"] == "user:bob@acme.test"]
    assert refused and refused[0]["outcome"] == "refused: not this user's message"


def test_front_door_limits_rate_limits_and_probe_blocking(node):
    n = node()
    c = Client(n)
    assert c.request("GET", "/healthz")[0] == 200
    st, _, doc = c.request("GET", "/healthz?" + "a" * 3000)
    assert st == 414
    problem(doc, 414)
    st, _, doc = c.request("GET", "/healthz", headers={f"X-Pad-{i}": "1" for i in range(70)})
    assert st == 431
    st, _, doc = c.request("GET", "/healthz", headers={"X-Big": "b" * 20000})
    assert st == 431
    # The declared length is refused before the body is read (a short body is sent so the
    # client is not left writing into a closed connection).
    st, _, doc = c.request("POST", "/api/login", raw=b"{}",
                           headers={"Content-Type": "application/json", "Content-Length": "100000"})
    assert st == 413 and "65536" in doc["detail"]
    for path in ["/../etc/passwd", "/api/%2e%2e/x", "/a%00b"]:
        st, _, doc = c.request("GET", path)
        assert st == 400, path
    # Script and SQL-ish payloads in fields are just wrong input.
    st, _, doc = c.request("POST", "/api/login", {"email": "' OR 1=1 --", "password": "<script>", "code": "1"})
    assert st == 401
    st, _, doc = c.request("POST", "/api/login", {"email": "a", "password": "b", "code": "1", "admin": True})
    assert st == 400 and "unknown field" in doc["detail"]
    # A NUL character in any field is refused before a handler sees it (no store keeps one).
    st, _, doc = c.request("POST", "/api/login", {"email": "a\u0000@b.c", "password": "p" * 12, "code": "1"})
    assert st == 400 and "NUL" in doc["detail"], doc
    st, _, doc = c.request("GET", "/api/trace?from=a%00b")
    assert st == 400 and "NUL" in doc["detail"], doc

    # Logins: ten a minute per address.
    statuses = [c.request("POST", "/api/login", {"email": "a@b.c", "password": "p" * 12, "code": "000000"})[0]
                for _ in range(12)]
    assert 429 in statuses and statuses[0] == 401, statuses

    # A scanner: unknown and exploit paths until the address is blocked; the block is
    # recorded and raised as an alert.
    blocked_at = None
    for i, path in enumerate(["/wp-login.php", "/.env", "/phpmyadmin/", "/nope"] * 8):
        st, _, _ = c.request("GET", path)
        if st == 403:
            blocked_at = i
            break
    assert blocked_at is not None and blocked_at <= 20
    st, _, doc = c.request("GET", "/healthz")
    assert st == 403 and "blocked" in doc["detail"]
    alerts = wait_for(lambda: [a for a in n.cli_json("alerts", "list") if a["rule"] == "waf-block"],
                      timeout=10, what="the waf-block alert")
    assert alerts[0]["principal"] == "ip:127.0.0.1"


def html_mail(marker, to):
    return (f"To: {to}\r\nSubject: Pay now {marker}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n"
            f"<p>Invoice {marker}: pay <a href=\"https://pay.evil.example/now\">here</a></p>"
            "<img src=\"https://track.evil.example/p.gif\"><script>steal()</script>\r\n").encode()


def test_safe_view_and_a_bulk_read_with_a_stolen_session_is_stopped(node):
    n = node(config=QUARANTINE_ALL + "[detect]\nbulk_open_threshold = 3\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    for i in range(5):
        send(n, "bob@acme.test", html_mail(f"M{i}", "bob@acme.test"))
    ids = [q["id"] for q in n.cli_json("quarantine", "list")]
    assert len(ids) == 5
    admin = Client(n)
    secret = admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme"))
    admin.login("admin@acme.test", secret)
    last_step = int((time.time() + 30) // 30)

    st, r, doc = admin.request("GET", f"/api/quarantine/{ids[0]}/view?reason=user+report")
    assert st == 200, doc
    v = doc["view"]
    assert v["was_html"] and v["subject"].startswith("Pay now M") and v["to"] == ["bob@acme.test"]
    assert "<" not in v["text"] and "Invoice" in v["text"]
    assert "hxxps://pay[.]evil[.]example/now" in v["links"]
    assert not any("://" in link and not link.startswith("hxxp") for link in v["links"])
    assert "https://" not in json.dumps(doc), "no live link leaves the portal"
    opens = [x for x in n.cli_json("vault", "records") if x["action"] == "open-quarantine:read"]
    assert [(x["principal"], x["reason"], x["outcome"]) for x in opens] == [
        ("user:admin@acme.test", "user report", "ok")]

    # The admin's automation token (it goes with the sessions when the alert fires).
    st, _, tok = admin.request("POST", "/api/tokens", {"name": "export", "scopes": ["quarantine:read"], "days": 7})
    assert st == 200
    bearer = {"Authorization": f"Bearer {tok['token']}"}
    assert Client(n).request("GET", "/api/me", headers=bearer)[0] == 200

    # An intruder replays the stolen cookie and CSRF token and reads in bulk.
    thief = Client(n)
    thief.cookie, thief.csrf = admin.cookie, admin.csrf
    statuses = [thief.request("GET", f"/api/quarantine/{i}/view")[0] for i in ids[1:]]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 401, statuses
    alerts = [a for a in n.cli_json("alerts", "list") if a["rule"] == "bulk-open"]
    assert alerts and alerts[0]["severity"] == "critical" and alerts[0]["principal"] == "user:admin@acme.test"
    suspended = [x for x in n.cli_json("vault", "records") if x["action"] == "suspend-sessions"]
    assert suspended and suspended[0]["object"] == "user:admin@acme.test"
    assert suspended[0]["outcome"] == "ok: 1 session(s) ended, 1 API token(s) revoked"
    assert Client(n).request("GET", "/api/me", headers=bearer)[0] == 401
    # The stolen session is dead for everyone; after a new login, opens stay throttled
    # until an operator has looked at the alert.
    assert admin.request("GET", "/api/me")[0] == 401
    while time.time() // 30 < last_step:  # codes are never accepted twice: wait for a fresh one
        time.sleep(0.2)
    admin.login("admin@acme.test", secret)
    st, _, doc = admin.request("GET", f"/api/quarantine/{ids[4]}/view")
    assert st == 403 and "throttled" in doc["detail"], doc


def test_an_exec_from_the_portal_is_killed_recorded_and_the_portal_comes_back(node, tmp_path):
    from conftest import role_pid
    plain = node("plain")
    wait_for(lambda: any(l.startswith("portal sandbox: Landlock") and "seccomp forbids exec" in l
                         and "out of reach" in l for l in plain.banner), what="the portal sandbox line")
    # (The product binary has no test hooks at all: scripts/check-no-hooks; this one has.)
    n = plain
    n.portal_url()  # the portal listens
    portal = role_pid(n, "portal")
    marker = tmp_path / "pwned"
    try:
        Client(n).request("POST", "/api/test-hooks/exec", {"path": str(marker)})
    except (OSError, http.client.HTTPException):
        pass  # the portal is killed while answering
    wait_for(lambda: role_pid(n, "portal") not in (None, portal), timeout=20, what="a fresh portal")
    assert not marker.exists(), "/bin/sh must never run"
    violations = [r for r in n.cli_json("vault", "records") if r["action"] == "sandbox-violation"]
    assert [(v["principal"], v["outcome"]) for v in violations] == [
        ("portal", "denied: process killed (SIGSYS)")]
    (alert,) = n.cli_json("alerts", "list")
    assert (alert["rule"], alert["severity"], alert["principal"]) == ("sandbox-violation", "critical", "portal")
    # The new portal serves again (on a new port: the test asked for port 0).
    def second_url():
        urls = [l.split()[-1] for l in n.banner if l.startswith("portal listening on")]
        return urls[-1] if len(urls) > 1 else None
    url = wait_for(second_url, timeout=20, what="the restarted portal's banner")
    assert url.startswith("https://127.0.0.1:")
    c = Client(n)
    c.host, c.port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    assert wait_for(lambda: c.request("GET", "/healthz")[0] == 200, timeout=10, what="the new portal")



def test_login_failure_storm_and_login_from_a_new_network_raise_alerts(node):
    n = node(config="[detect]\nlogin_failure_threshold = 5\nlogin_failure_window = \"5m\"\n")
    c = Client(n)
    secret = c.enrol(n.enrolment_link())
    c.login("operator", secret)
    last_step = int((time.time() + 30) // 30)
    # Three failures, and the account's first login, are normal: no alert.
    for i in range(3):
        st, _, _ = Client(n).request("POST", "/api/login", {"email": f"x{i}@a.test", "password": "p" * 12, "code": "000000"})
        assert st == 401
    assert [a["rule"] for a in n.cli_json("alerts", "list")] == []
    # Spraying from several addresses: over the threshold within the window.
    for i in range(3):
        sprayer = Client(n)
        sprayer.source = f"127.0.2.{i + 1}"
        st, _, _ = sprayer.request("POST", "/api/login", {"email": f"y{i}@a.test", "password": "p" * 12, "code": "000000"})
        assert st == 401
    (storm,) = [a for a in n.cli_json("alerts", "list") if a["rule"] == "login-failure-storm"]
    assert storm["severity"] == "critical"
    assert "6 failed portal logins" in storm["summary"] and "6 account(s) from 4 address(es)" in storm["summary"]

    # The operator logs in again, now from another network.
    while time.time() // 30 < last_step:  # a fresh TOTP step (codes are never reused)
        time.sleep(0.2)
    away = Client(n)
    away.source = "127.0.1.9"
    away.login("operator", secret)
    (new,) = [a for a in n.cli_json("alerts", "list") if a["rule"] == "login-new-network"]
    assert new["severity"] == "warning" and new["principal"] == "user:operator"
    assert "127.0.1.9 (127.0.1.0/24)" in new["summary"]


def test_the_openapi_document_is_generated_and_schemathesis_finds_no_server_error(node, tmp_path):
    import subprocess
    import xml.etree.ElementTree as ET
    # The fuzzer gets the front door's limits out of its way (it would be blocked as a prober).
    n = node(config=QUARANTINE_ALL + "[portal]\nrate = 10000\nburst = 10000\n"
             "logins_per_minute = 10000\nprobe_threshold = 1000000\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    send(n, "bob@acme.test", html_mail("S1", "bob@acme.test"))
    c = Client(n)
    st, r, doc = c.request("GET", "/api/openapi.json")
    assert st == 200 and r.getheader("Content-Type") == "application/json"
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/enrol", "/api/enrol/confirm", "/api/login", "/api/logout", "/api/me", "/api/quarantine",
        "/api/quarantine/{id}", "/api/quarantine/{id}/view", "/api/quarantine/{id}/release",
        "/api/stats", "/api/tls-outcomes", "/api/trace", "/api/senders", "/api/senders/{id}", "/api/quarantine/{id}/sender",
        "/api/lockbox", "/api/lockbox/{id}/approve", "/api/lockbox/{id}/deny", "/api/lockbox/{id}/revoke",
        "/api/step-up", "/api/tokens", "/api/tokens/{id}", "/api/alerts", "/api/audit/export", "/api/tenants", "/api/health",
        "/api/users", "/api/policy", "/api/secrets", "/api/tenants/{id}/domains", "/api/tenants/{id}/route",
        "/api/tenants/{id}/recipients", "/api/tenants/{id}/recipients/{address}",
        "/api/tenants/{id}/recipient-policy", "/api/passkeys", "/api/passkeys/{id}",
        "/api/passkeys/login/begin", "/api/passkeys/login/finish", "/api/passkeys/register/begin",
        "/api/passkeys/register/finish", "/api/step-up/passkey/begin", "/api/step-up/passkey/finish"}
    assert set(doc["paths"]["/api/tenants"]) >= {"get", "post"}
    assert set(doc["paths"]["/api/quarantine/{id}"]) >= {"get", "delete"}
    assert doc["components"]["securitySchemes"]["session"] == {
        "type": "apiKey", "in": "cookie", "name": "sekisho_session"}
    c.login("admin@acme.test", c.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme")))
    report = tmp_path / "junit.xml"
    r = subprocess.run(
        ["schemathesis", "run", f"{n.portal_url()}/api/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "30", "--tls-verify", "false",
         "--request-timeout", "10", "--exclude-path", "/api/logout",
         "-H", f"Cookie: {c.cookie}", "-H", f"X-CSRF-Token: {c.csrf}",
         "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays out of the tree
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    ran = [t.get("name") for t in cases]
    assert len(ran) >= 40, ran  # every operation but the excluded logout was exercised
    # The fuzzing did not break the node: the session still works.
    assert c.request("GET", "/api/me")[0] == 200


def test_web_pages_need_a_session_and_forms_the_sessions_csrf_token(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", bare("WEB-CSRF", "bob@acme.test"))
    (item,) = [q["id"] for q in n.cli_json("quarantine", "list")]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    anon = Client(n)
    for path in ["/quarantine", f"/quarantine/{item}", "/dashboard", "/alerts", "/"]:
        st, r, _ = anon.request("GET", path)
        assert st == 303 and r.getheader("Location") == "/login", path
    st, r, _ = anon.request("POST", f"/quarantine/{item}/release", raw=b"csrf=x", headers=form)
    assert st == 303 and r.getheader("Location") == "/login"

    bob = Client(n)
    bob.login("bob@acme.test", bob.enrol(invite(n, "bob@acme.test", "user", "acme")))
    st, r, page = bob.request("GET", "/quarantine", headers={"Accept-Language": "en"})
    assert st == 200 and r.getheader("Content-Type").startswith("text/html")
    assert item in page and "unsafe-inline" not in r.getheader("Content-Security-Policy")
    # A form from elsewhere (no or a wrong token) changes nothing.
    for body in [b"csrf=forged", b"csrf="]:
        st, _, page = bob.request("POST", f"/quarantine/{item}/release", raw=body, headers=form)
        assert st == 403 and "reload the page" in page
    st, _, page = bob.request("POST", f"/quarantine/{item}/release", raw=b"{}",
                              headers={"Content-Type": "application/json"})
    assert st == 415
    st, _, page = bob.request("POST", f"/quarantine/{item}/delete", raw=b"nothing=1", headers=form)
    assert st == 400 and "fill in every field" in page
    assert [q["id"] for q in n.cli_json("quarantine", "list")] == [item]
    # Japanese when the browser asks for it.
    st, _, page = bob.request("GET", "/quarantine", headers={"Accept-Language": "ja,en;q=0.5"})
    assert st == 200 and '<html lang="ja">' in page and "隔離メール" in page
    # The session's token releases it.
    st, r, _ = bob.request("POST", f"/quarantine/{item}/release",
                           raw=urllib.parse.urlencode({"csrf": bob.csrf}).encode(), headers=form)
    assert st == 303 and r.getheader("Location") == f"/quarantine?done=released&id={item}"
    assert [m for m in s.wait(1) if b"WEB-CSRF" in m[1]]
    # End users have no dashboard or alerts.
    for path in ["/dashboard", "/alerts"]:
        assert bob.request("GET", path)[0] == 403, path


def good(marker, frm, to):
    return (f"From: {frm}\r\nTo: {to}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <{marker}@x.test>\r\nSubject: {marker}\r\n\r\nhi\r\n").encode()


def test_always_allow_and_always_block_reach_inspection_per_user_and_tenant(node, sink, dns):
    dns.txt("partner.test", "v=spf1 ip4:127.0.0.0/8 -all")  # SPF passes from loopback
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    bob = Client(n)
    bob.login("bob@acme.test", bob.enrol(invite(n, "bob@acme.test", "user", "acme")))
    admin = Client(n)
    admin.login("admin@acme.test", admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme")))
    other = Client(n)
    other.login("admin@beta.test", other.enrol(invite(n, "admin@beta.test", "tenant-admin", "beta")))

    def deliver(frm, rcpt, body):
        with smtplib.SMTP("127.0.0.1", n.port) as c:
            c.sendmail(frm, [rcpt], body)

    # A newsletter bob wants: quarantined (bare message), then "always allow" from the item.
    deliver("news@partner.test", "bob@acme.test", bare("NEWS-1", "bob@acme.test"))
    (item,) = [q["id"] for q in n.cli_json("quarantine", "list")]
    st, _, doc = bob.request("POST", f"/api/quarantine/{item}/sender", {"action": "allow"})
    assert st == 200 and doc["scope"] == "me" and doc["pattern"] == "news@partner.test", doc
    assert doc["rcpt"] == "bob@acme.test" and doc["removable"] is True
    # From now on it reaches bob (SPF passes, so the allow applies) ...
    deliver("news@partner.test", "bob@acme.test", bare("NEWS-2", "bob@acme.test"))
    assert [m for m in s.wait(1) if b"NEWS-2" in m[1]]
    t = wait_for(lambda: (t := n.cli_json("trace", "--from", "news@partner.test")) and len(t) == 2 and t,
                 what="the trace of both")
    assert "SENDER_ALLOWED(-20.00)" in t[0]["symbols"], t[0]
    # ... but not carol, who allowed nothing.
    deliver("news@partner.test", "carol@acme.test", bare("NEWS-3", "carol@acme.test"))
    assert len(n.cli_json("quarantine", "list")) == 2

    # An allowed sender whose mail is not authenticated gains nothing (a forged From).
    st, _, doc = bob.request("POST", "/api/senders", {"pattern": "CEO@NoAuth.test", "action": "allow", "scope": "me"})
    assert st == 200 and doc["pattern"] == "ceo@noauth.test", doc
    deliver("ceo@noauth.test", "bob@acme.test", bare("FORGED", "bob@acme.test"))
    forged = [q for q in n.cli_json("quarantine", "list") if "SENDER_ALLOWED_UNAUTHENTICATED" in q["symbols"]]
    assert len(forged) == 1 and forged[0]["rcpts"] == ["bob@acme.test"], forged

    # Bad input, and what an end user may not do.
    for body, status, word in [
        ({"pattern": "not a domain", "action": "allow", "scope": "me"}, 400, "not an address"),
        ({"pattern": "x.test", "action": "maybe", "scope": "me"}, 400, "action"),
        ({"pattern": "x.test", "action": "block", "scope": "tenant"}, 403, "tenant admins"),
        ({"pattern": "x.test", "action": "block", "scope": "world"}, 400, "scope"),
    ]:
        st, _, doc = bob.request("POST", "/api/senders", body)
        assert st == status and word in doc["detail"], (body, doc)

    # The tenant admin blocks a domain for everyone: a clean message from it is held.
    st, _, doc = admin.request("POST", "/api/senders", {"pattern": "@spam.test", "action": "block", "scope": "tenant"})
    assert st == 200 and doc["scope"] == "tenant" and doc["rcpt"] == ""
    tenant_entry = doc["id"]
    deliver("x@mail.spam.test", "dan@acme.test", good("CLEAN-BLOCKED", "x@mail.spam.test", "dan@acme.test"))
    blocked = [q for q in n.cli_json("quarantine", "list") if "SENDER_BLOCKED" in q["symbols"]]
    assert len(blocked) == 1 and blocked[0]["rcpts"] == ["dan@acme.test"], blocked
    # The same clean message from elsewhere is delivered (the block made the difference).
    deliver("x@fine.test", "dan@acme.test", good("CLEAN-FINE", "x@fine.test", "dan@acme.test"))
    assert [m for m in s.wait(2) if b"CLEAN-FINE" in m[1]]

    # Who sees and removes which entries.
    st, _, doc = bob.request("GET", "/api/senders")
    assert st == 200 and {(e["pattern"], e["scope"], e["removable"]) for e in doc["entries"]} == {
        ("news@partner.test", "me", True), ("ceo@noauth.test", "me", True), ("spam.test", "tenant", False)}
    st, _, doc = admin.request("GET", "/api/senders")
    assert {(e["pattern"], e["scope"]) for e in doc["entries"]} == {
        ("news@partner.test", "recipient"), ("ceo@noauth.test", "recipient"), ("spam.test", "tenant")}
    assert all(e["removable"] for e in doc["entries"])
    st, _, doc = bob.request("DELETE", f"/api/senders/{tenant_entry}")
    assert st == 403 and "admins" in doc["detail"]
    # Another tenant's admin sees nothing of acme and cannot remove its entries by id.
    st, _, doc = other.request("GET", "/api/senders")
    assert st == 200 and doc["entries"] == []
    for e in admin.request("GET", "/api/senders")[2]["entries"]:
        st, _, _ = other.request("DELETE", f"/api/senders/{e['id']}")
        assert st == 404
    st, _, doc = other.request("POST", f"/api/quarantine/{blocked[0]['id']}/sender", {"action": "allow"})
    assert st == 404
    st, _, _ = admin.request("DELETE", f"/api/senders/{tenant_entry}")
    assert st == 204
    assert admin.request("DELETE", f"/api/senders/{tenant_entry}")[0] == 404

    changes = [(r["principal"], r["action"], r["object"], r["reason"]) for r in n.cli_json("vault", "records")
               if r["action"].startswith("sender-")]
    assert ("user:bob@acme.test", "sender-allow", "news@partner.test", "for bob@acme.test") in changes
    assert ("user:admin@acme.test", "sender-block", "spam.test", "for the whole tenant") in changes
    assert ("user:admin@acme.test", "sender-remove", "spam.test", "for the whole tenant") in changes


def test_operators_open_tenant_mail_only_through_a_tenant_approved_lockbox(node):
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", "smtp://127.0.0.1:9?tls=none")
    op = Client(n)
    op.login("operator", op.enrol(n.enrolment_link()))
    acme = Client(n)
    acme.login("admin@acme.test", acme.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme")))
    beta = Client(n)
    beta.login("admin@beta.test", beta.enrol(invite(n, "admin@beta.test", "tenant-admin", "beta")))
    send(n, "bob@acme.test", bare("LOCKBOX-ACME", "bob@acme.test"))
    send(n, "eve@beta.test", bare("LOCKBOX-BETA", "eve@beta.test"))
    items = {q["tenant"]: q["id"] for q in n.cli_json("quarantine", "list")}

    # Without a lockbox: envelope yes, content no — and the attempt is an alert.
    st, _, doc = op.request("GET", f"/api/quarantine/{items['acme']}/view")
    assert st == 403 and "lockbox" in doc["detail"], doc

    for body, word in [({"tenant": "acme", "reason": "short", "minutes": 30}, "10 to 500"),
                       ({"tenant": "nope", "reason": "support ticket 4711", "minutes": 30}, "no tenant"),
                       ({"tenant": "acme", "reason": "support ticket 4711", "minutes": 2}, "minutes")]:
        st, _, doc = op.request("POST", "/api/lockbox", body)
        assert st == 400 and word in doc["detail"], (body, doc)
    st, _, doc = acme.request("POST", "/api/lockbox", {"tenant": "acme", "reason": "support ticket 4711", "minutes": 30})
    assert st == 403
    st, _, doc = op.request("POST", "/api/lockbox", {"tenant": "acme", "reason": "support ticket 4711", "minutes": 30})
    assert st == 200 and doc["state"] == "requested", doc
    rid = doc["id"]
    assert [r["id"] for r in acme.request("GET", "/api/lockbox")[2]["requests"]] == [rid]
    assert beta.request("GET", "/api/lockbox")[2]["requests"] == []
    # Only the tenant's own admins decide; another tenant's admin finds nothing.
    st, _, _ = beta.request("POST", f"/api/lockbox/{rid}/approve")
    assert st == 404
    st, _, _ = op.request("POST", f"/api/lockbox/{rid}/approve")
    assert st == 403

    # An approval written straight into the database (as a compromised portal could) opens
    # nothing: the vault checks its own seal on the approval.
    n.sql("UPDATE lockbox SET state = 'approved', expires_at = $1, approval_mac = 'forged' WHERE id = $2",
          int(time.time()) + 3600, rid)
    st, _, doc = op.request("GET", f"/api/quarantine/{items['acme']}/view")
    assert st == 403 and "operator" in doc["detail"], doc
    n.sql("UPDATE lockbox SET state = 'requested', expires_at = NULL, approval_mac = '' WHERE id = $1", rid)

    st, _, doc = acme.request("POST", f"/api/lockbox/{rid}/approve")
    assert st == 200, doc
    st, _, doc = acme.request("POST", f"/api/lockbox/{rid}/approve")
    assert st == 403 and "already" in doc["detail"]
    (req,) = op.request("GET", "/api/lockbox")[2]["requests"]
    assert req["state"] == "approved" and req["decided_by"] == "user:admin@acme.test"
    assert req["expires_at"] - time.time() > 29 * 60
    # Now acme's mail opens for the operator — beta's does not.
    st, _, doc = op.request("GET", f"/api/quarantine/{items['acme']}/view?reason=ticket%204711")
    assert st == 200 and "LOCKBOX-ACME" in doc["view"]["text"], doc
    st, _, doc = op.request("GET", f"/api/quarantine/{items['beta']}/view")
    assert st == 403
    # The console reads under the same approval, for that tenant only.
    (lb,) = n.cli_json("lockbox", "list", "--tenant", "acme")
    assert (lb["id"], lb["state"], lb["operator"]) == (rid, "approved", "operator"), lb
    console = lambda item: n.cli("quarantine", "open", item, "--reason", "ticket 4711",
                                 "--lockbox", str(rid), check=False)
    assert "LOCKBOX-ACME" in console(items["acme"]).stdout
    r = console(items["beta"])
    assert r.returncode != 0 and "does not grant access to beta" in r.stderr, r.stderr

    # The operator ends it early; the content is closed again.
    st, _, _ = op.request("POST", f"/api/lockbox/{rid}/revoke")
    assert st == 200
    assert op.request("GET", f"/api/quarantine/{items['acme']}/view")[0] == 403
    assert console(items["acme"]).returncode != 0
    assert op.request("POST", f"/api/lockbox/{rid}/revoke")[0] == 409

    # Operators read alerts through the API too; tenant admins do not.
    st, _, doc = op.request("GET", "/api/alerts?state=open")
    assert st == 200 and "operator-without-lockbox" in {a["rule"] for a in doc["alerts"]}, doc
    assert op.request("GET", "/api/alerts?state=bogus")[0] == 400
    assert acme.request("GET", "/api/alerts")[0] == 403
    alerts = [a for a in n.cli_json("alerts", "list") if a["rule"] == "operator-without-lockbox"]
    assert {a["tenant_id"] for a in alerts} >= {1, 2}, alerts
    assert all(a["severity"] == "warning" and a["principal"] == "user:operator" for a in alerts)
    records = [(r["principal"], r["action"], r["outcome"]) for r in n.cli_json("vault", "records")]
    assert ("user:operator", "lockbox-request", "ok") in records
    assert ("user:admin@acme.test", "lockbox-approve", "ok") in records
    assert ("user:admin@beta.test", "lockbox-approve", "refused: not this admin's tenant") in records
    assert ("user:operator", "open-quarantine:read", "ok") in records
    assert ("user:operator", "lockbox-revoke", "ok") in records


def test_releasing_a_message_flagged_as_malware_needs_a_step_up(node, sink):
    from email.message import EmailMessage
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "it@vendor.test", "bob@acme.test", "STEPUP-1 your tool"
    m.set_content("the tool you asked for")
    m.add_attachment(b"\x7fELF" + bytes(120), maintype="application", subtype="octet-stream",
                     filename="tool.bin")
    send(n, "bob@acme.test", m.as_bytes().replace(b"\n", b"\r\n"))
    (item,) = n.cli_json("quarantine", "list")
    assert "EXECUTABLE_ATTACHMENT" in item["symbols"], item
    bob = Client(n)
    secret = bob.enrol(invite(n, "bob@acme.test", "user", "acme"))
    bob.login("bob@acme.test", secret)
    login_step = int(time.time() + 30) // 30

    st, _, doc = bob.request("POST", f"/api/quarantine/{item['id']}/release")
    assert st == 403 and "step-up" in doc["detail"], doc
    wrong = "%06d" % ((int(totp(secret, time.time() + 30)) + 1) % 1_000_000)
    st, _, doc = bob.request("POST", "/api/step-up", {"code": wrong})
    assert st == 401, doc
    # A code is never accepted twice: the step-up needs the step after the login's.
    while int(time.time()) // 30 < login_step:
        time.sleep(0.2)
    st, _, doc = bob.request("POST", "/api/step-up", {"code": totp(secret, time.time() + 30)})
    assert st == 200 and "5 minutes" in doc["message"], doc
    st, _, doc = bob.request("POST", f"/api/quarantine/{item['id']}/release")
    assert st == 200, doc
    assert [x for x in s.wait(1) if b"STEPUP-1" in x[1]]
    outcomes = [(r["action"], r["outcome"]) for r in n.cli_json("vault", "records")
                if r["principal"] == "user:bob@acme.test"]
    assert ("open-quarantine:release", "refused: step-up needed") in outcomes
    assert ("step-up", "failed: wrong or reused code") in outcomes and ("step-up", "ok") in outcomes
    assert ("open-quarantine:release", "ok") in outcomes


def test_api_tokens_are_scoped_expiring_revocable_and_kept_only_as_a_mac(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    send(n, "bob@acme.test", bare("TOKEN-ACME", "bob@acme.test"))
    send(n, "eve@beta.test", bare("TOKEN-BETA", "eve@beta.test"))
    items = {q["tenant"]: q["id"] for q in n.cli_json("quarantine", "list")}
    admin = Client(n)
    admin.login("admin@acme.test", admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme")))

    for body, word in [({"name": "x", "scopes": ["root"], "days": 30}, "scopes must be"),
                       ({"name": "x", "scopes": [], "days": 30}, "scopes must be"),
                       ({"name": "x", "scopes": ["stats:read"], "days": 400}, "days"),
                       ({"name": " ", "scopes": ["stats:read"], "days": 30}, "name")]:
        st, _, doc = admin.request("POST", "/api/tokens", body)
        assert st == 400 and word in doc["detail"], (body, doc)
    st, _, doc = admin.request("POST", "/api/tokens", {
        "name": "SIEM export", "scopes": ["quarantine:read", "stats:read"], "days": 30})
    assert st == 200 and doc["token"].startswith("st1_"), doc
    token, tid = doc["token"], doc["id"]
    assert 29 * 86400 < doc["expires_at"] - time.time() <= 30 * 86400

    bot = Client(n)
    bearer = {"Authorization": f"Bearer {token}"}
    st, _, doc = bot.request("GET", "/api/me", headers=bearer)
    assert st == 200 and doc["user"]["email"] == "admin@acme.test"
    st, _, doc = bot.request("GET", "/api/quarantine", headers=bearer)
    assert st == 200 and [i["tenant"] for i in doc["items"]] == ["acme"], doc
    st, _, doc = bot.request("GET", f"/api/quarantine/{items['acme']}/view", headers=bearer)
    assert st == 200 and "TOKEN-ACME" in doc["view"]["text"]
    # The user's rights still bound it: another tenant's item does not exist for it.
    assert bot.request("GET", f"/api/quarantine/{items['beta']}", headers=bearer)[0] == 404
    assert bot.request("GET", "/api/stats", headers=bearer)[0] == 200
    # Outside its scopes, or what only people do, it is refused — without a CSRF token too.
    for method, path, word in [("POST", f"/api/quarantine/{items['acme']}/release", "quarantine:write"),
                               ("GET", "/api/trace", "trace:read"),
                               ("POST", "/api/tokens", "log in"), ("POST", "/api/logout", "log in")]:
        st, _, doc = bot.request(method, path, body={} if method == "POST" else None, headers=bearer)
        assert st == 403 and word in doc["detail"], (path, doc)
    assert items["acme"] in [q["id"] for q in n.cli_json("quarantine", "list")]
    st, _, doc = bot.request("GET", "/api/me", headers={"Authorization": "Bearer st1_" + "00" * 32})
    assert st == 401

    # Kept only as the vault's MAC; listed without the secret; revocable; expiry ends it.
    dump = n.store_dump()
    assert token.encode() not in dump and token[4:].encode() not in dump
    st, _, doc = admin.request("GET", "/api/tokens")
    (listed,) = doc["tokens"]
    assert listed["name"] == "SIEM export" and "token" not in listed and listed["last_used_at"]
    st, _, doc = admin.request("POST", "/api/tokens", {"name": "short", "scopes": ["stats:read"], "days": 1})
    short = doc["token"]
    n.sql("UPDATE api_tokens SET expires_at = $1 WHERE id = $2", int(time.time()) - 1, doc["id"])
    assert bot.request("GET", "/api/stats", headers={"Authorization": f"Bearer {short}"})[0] == 401
    assert admin.request("DELETE", f"/api/tokens/{tid}")[0] == 204
    assert bot.request("GET", "/api/me", headers=bearer)[0] == 401
    assert admin.request("DELETE", f"/api/tokens/{tid}")[0] == 404
    actions = [(r["action"], r["outcome"]) for r in n.cli_json("vault", "records")
               if r["principal"] == "user:admin@acme.test"]
    assert ("token-create", "ok") in actions and ("token-revoke", "ok") in actions


def test_authorisation_matrix_every_endpoint_by_role_and_tenant(node, sink):
    """Each API endpoint asked by every role, of the tenant and of another one: the answer
    is the one the rules give (and another tenant's objects are 404, as if absent)."""
    s = sink()
    n = node(config=QUARANTINE_ALL + "[portal]\nrate = 10000\nburst = 10000\nprobe_threshold = 1000\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    for i in range(3):
        send(n, "bob@acme.test", bare(f"MATRIX-{i}", "bob@acme.test"))
    send(n, "eve@beta.test", bare("MATRIX-BETA", "eve@beta.test"))
    acme_items = [q["id"] for q in n.cli_json("quarantine", "list") if q["tenant"] == "acme"]
    item = acme_items[0]

    who = {"op": Client(n), "auditor": Client(n), "admin": Client(n), "bob": Client(n), "beta": Client(n)}
    who["op"].login("operator", who["op"].enrol(n.enrolment_link()))
    for key, email, role, tenant in [("auditor", "soc@operator.test", "auditor", None),
                                     ("admin", "admin@acme.test", "tenant-admin", "acme"),
                                     ("bob", "bob@acme.test", "user", "acme"),
                                     ("beta", "admin@beta.test", "tenant-admin", "beta")]:
        who[key].login(email, who[key].enrol(invite(n, email, role, tenant)))
    anon = Client(n)

    def check(method, path, expect, body=None):
        for key, status in expect.items():
            c = anon if key == "anon" else who[key]
            st, _, doc = c.request(method, path, body=body)
            assert st == status, (method, path, key, st, doc)
            if st >= 400:
                assert doc["status"] == st and doc["detail"], doc

    everyone = {"op": 200, "auditor": 200, "admin": 200, "bob": 200, "beta": 200, "anon": 401}
    check("GET", "/api/me", everyone)
    check("GET", "/api/quarantine", {"op": 200, "auditor": 403, "admin": 200, "bob": 200, "beta": 200, "anon": 401})
    assert {i["tenant"] for i in who["beta"].request("GET", "/api/quarantine")[2]["items"]} == {"beta"}
    assert len(who["op"].request("GET", "/api/quarantine")[2]["items"]) == 4
    check("GET", f"/api/quarantine/{item}", {"op": 200, "auditor": 404, "admin": 200, "bob": 200, "beta": 404, "anon": 401})
    check("GET", f"/api/quarantine/{item}/view", {"op": 403, "auditor": 404, "admin": 200, "bob": 200, "beta": 404, "anon": 401})
    for method, path in [("POST", f"/api/quarantine/{item}/release"), ("DELETE", f"/api/quarantine/{item}")]:
        check(method, path, {"op": 403, "auditor": 404, "beta": 404, "anon": 401})
    check("POST", f"/api/quarantine/{item}/sender", {"op": 403, "auditor": 404, "beta": 404, "anon": 401},
          body={"action": "block"})
    stats = {"op": 200, "auditor": 403, "admin": 200, "bob": 403, "beta": 200, "anon": 401}
    check("GET", "/api/stats", stats)
    check("GET", "/api/trace", stats)
    check("GET", "/api/senders", {"op": 403, "auditor": 403, "admin": 200, "bob": 200, "beta": 200, "anon": 401})
    tenant_block = {"pattern": "matrix.test", "action": "block", "scope": "tenant"}
    check("POST", "/api/senders", {"op": 403, "auditor": 403, "bob": 403, "anon": 401}, body=tenant_block)
    st, _, entry = who["admin"].request("POST", "/api/senders", tenant_block)
    assert st == 200
    check("DELETE", f"/api/senders/{entry['id']}", {"op": 404, "auditor": 404, "bob": 403, "beta": 404, "anon": 401})
    assert who["beta"].request("GET", "/api/senders")[2]["entries"] == []
    check("GET", "/api/lockbox", {"op": 200, "auditor": 200, "admin": 200, "bob": 403, "beta": 200, "anon": 401})
    ask = {"tenant": "acme", "reason": "matrix test request", "minutes": 10}
    check("POST", "/api/lockbox", {"auditor": 403, "admin": 403, "bob": 403, "beta": 403, "anon": 401}, body=ask)
    st, _, lb = who["op"].request("POST", "/api/lockbox", ask)
    assert st == 200
    check("POST", f"/api/lockbox/{lb['id']}/approve", {"op": 403, "auditor": 403, "bob": 403, "beta": 404, "anon": 401})
    check("POST", f"/api/lockbox/{lb['id']}/revoke", {"auditor": 404, "bob": 404, "beta": 404, "anon": 401})
    assert who["beta"].request("GET", "/api/lockbox")[2]["requests"] == []
    check("GET", "/api/alerts", {"op": 200, "auditor": 200, "admin": 403, "bob": 403, "beta": 403, "anon": 401})
    # Exports need a step-up first (test_audit covers them after one).
    check("GET", "/api/audit/export", {"op": 403, "auditor": 403, "admin": 403, "bob": 403, "beta": 403, "anon": 401})
    check("GET", "/api/tokens", everyone)
    # Passkeys are each person's own: listing is for every role; adding one needs a step-up,
    # a passkey step-up needs a passkey, removing one needs a step-up (test_passkeys has the rest).
    check("GET", "/api/passkeys", everyone)
    roles_409 = {"op": 409, "auditor": 409, "admin": 409, "bob": 409, "beta": 409, "anon": 401}
    check("POST", "/api/passkeys/register/begin", roles_409)
    check("POST", "/api/step-up/passkey/begin", roles_409)
    check("DELETE", "/api/passkeys/1", {"op": 403, "auditor": 403, "admin": 403, "bob": 403, "beta": 403, "anon": 401})
    check("GET", "/api/policy", {"op": 403, "auditor": 403, "admin": 200, "bob": 403, "beta": 200, "anon": 401})
    check("GET", "/api/users", {"op": 200, "auditor": 403, "admin": 200, "bob": 403, "beta": 200, "anon": 401})
    assert {u["tenant"] for u in who["beta"].request("GET", "/api/users")[2]["users"]} == {"beta"}
    st, _, doc = who["admin"].request("POST", "/api/users", {"email": "carol@acme.test", "role": "user"})
    assert st == 200 and "/enrol#e1_" in doc["link"], doc
    for key, body, word in [
        ("admin", {"email": "x@acme.test", "role": "operator"}, "users and tenant admins only"),
        ("admin", {"email": "x@beta.test", "role": "user", "tenant": "beta"}, "own tenant"),
        ("bob", {"email": "x@acme.test", "role": "user"}, "only operators and tenant admins"),
        ("auditor", {"email": "x@acme.test", "role": "user", "tenant": "acme"}, "only operators"),
        ("op", {"email": "x@acme.test", "role": "user"}, "belong to a tenant"),
        ("op", {"email": "not-an-address", "role": "auditor"}, "not an e-mail address"),
    ]:
        st, _, doc = who[key].request("POST", "/api/users", body)
        assert st == 400 and word in doc["detail"], (key, body, doc)
    st, _, doc = who["op"].request("POST", "/api/users", {"email": "dana@beta.test", "role": "tenant-admin", "tenant": "beta"})
    assert st == 200, doc
    records = [(r["principal"], r["action"], r["object"]) for r in n.cli_json("vault", "records")]
    assert ("user:admin@acme.test", "user-invite", "user:carol@acme.test") in records
    assert ("user:operator", "user-invite", "user:dana@beta.test") in records
    check("GET", "/api/tenants", {"op": 200, "auditor": 403, "admin": 200, "bob": 403, "beta": 200, "anon": 401})
    assert [t["name"] for t in who["op"].request("GET", "/api/tenants")[2]["tenants"]] == ["acme", "beta"]
    assert [t["name"] for t in who["beta"].request("GET", "/api/tenants")[2]["tenants"]] == ["beta"]
    # Tenant management: operators create and add domains; a tenant's own admin keeps its
    # recipients and route (the route after a step-up); another tenant's admin finds nothing.
    acme_id = next(t["id"] for t in who["op"].request("GET", "/api/tenants")[2]["tenants"] if t["name"] == "acme")
    check("POST", "/api/tenants", {"auditor": 403, "admin": 403, "bob": 403, "beta": 403, "anon": 401},
          body={"name": "delta", "domains": ["delta.test"], "route": s.route()})
    check("POST", f"/api/tenants/{acme_id}/domains", {"auditor": 403, "admin": 403, "bob": 403, "beta": 403, "anon": 401},
          body={"domain": "more-acme.test"})
    check("PUT", f"/api/tenants/{acme_id}/route", {"op": 403, "auditor": 403, "admin": 403, "bob": 403, "beta": 404,
                                                   "anon": 401}, body={"route": s.route()})
    recips = {"op": 200, "auditor": 403, "admin": 200, "bob": 403, "beta": 404, "anon": 401}
    check("GET", f"/api/tenants/{acme_id}/recipients", recips)
    check("POST", f"/api/tenants/{acme_id}/recipients", {"auditor": 403, "bob": 403, "beta": 404, "anon": 401},
          body={"address": "matrix@acme.test"})
    check("DELETE", f"/api/tenants/{acme_id}/recipients/bob@acme.test", {"auditor": 403, "bob": 403, "beta": 404,
                                                                          "anon": 401})
    check("PUT", f"/api/tenants/{acme_id}/recipient-policy", {"auditor": 403, "bob": 403, "beta": 404, "anon": 401},
          body={"policy": "verify"})
    assert n.cli_json("tenant", "list")[0]["recipient_policy"] == "auto", "nothing was changed by the refused"
    check("GET", "/api/health", {"op": 200, "auditor": 403, "admin": 403, "bob": 403, "beta": 403, "anon": 401})
    h = who["op"].request("GET", "/api/health")[2]
    assert h["mx"] and h["vault"] and h["store"] and h["version"], h
    # The node itself is in the cluster's node list (its first heartbeat is at start).
    assert [(x["name"], x["status"]) for x in h["nodes"]] == [("sekisho.localhost", "up")], h["nodes"]
    st, r, page = who["op"].request("GET", "/operator")
    assert st == 200 and "acme.test" in page and "beta.test" in page
    assert 'id="nodes"' in page and "sekisho.localhost" in page and 'class="node-up"' in page
    assert who["admin"].request("GET", "/operator")[0] == 403
    # And the acts that succeed for those allowed, last (they change things).
    assert who["admin"].request("DELETE", f"/api/senders/{entry['id']}")[0] == 204
    assert who["admin"].request("POST", f"/api/lockbox/{lb['id']}/approve")[0] == 200
    assert who["op"].request("GET", f"/api/quarantine/{item}/view")[0] == 200
    assert who["bob"].request("POST", f"/api/quarantine/{item}/sender", {"action": "allow"})[0] == 200
    assert who["bob"].request("POST", f"/api/quarantine/{item}/release")[0] == 200
    assert who["admin"].request("DELETE", f"/api/quarantine/{acme_items[1]}")[0] == 204
    # Nothing of acme was touched by anyone else: beta's item is still there, acme's last too.
    left = {q["id"] for q in n.cli_json("quarantine", "list")}
    assert acme_items[2] in left and item not in left and acme_items[1] not in left


@pytest.mark.intrusion
def test_code_running_in_the_portal_cannot_act_as_the_local_operator_at_the_vault(node):
    """An intruder with code execution in the portal (test hook) speaks the vault's protocol
    and mx's admin socket itself: a content open without a user's session, a sessionless
    release and a tenant termination are refused and raised as critical alerts — while the
    local CLI still can."""
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    send(n, "bob@acme.test", bare("INTRUDER", "bob@acme.test"))
    (item,) = [q["id"] for q in n.cli_json("quarantine", "list")]
    c = Client(n)
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "open", "target": item})
    assert st == 200 and "session" in doc.get("refused", ""), doc
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "mx-release", "target": item,
                                                           "data_dir": str(n.data_dir)})
    # Started as root each role is its own user, and mx's admin socket is mx's and its
    # group's: the kernel refuses the portal's connection (and the supervisor raises it).
    # Without root the portal connects, and mx refuses a role without the token.
    own_users = os.geteuid() == 0
    if own_users:
        assert st == 200 and "permission denied" in doc.get("refused", ""), doc
    else:
        assert st == 200 and "local CLI" in doc.get("refused", ""), doc
    assert [q["id"] for q in n.cli_json("quarantine", "list")] == [item]
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "digest-links", "target": f"{item} bob@acme.test"})
    assert st == 200 and "only mx signs digest links" in doc.get("refused", ""), doc
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "terminate", "target": "acme"})
    assert st == 200 and "local CLI" in doc.get("refused", ""), doc
    assert [t["name"] for t in n.cli_json("tenant", "list")] == ["acme"]
    # The spool key is mx's alone: asked for without its token, it is refused and raised.
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "spool-key", "target": "sekisho.localhost"})
    assert st == 200 and "only mx obtains its spool key" in doc.get("refused", ""), doc
    # Mail signed as the tenant's domain: DKIM keys sign only for mx; the portal is refused.
    n.cli("tenant", "dkim", "generate", "acme", "--domain", "acme.test", "--selector", "s1")
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "dkim-sign", "target": "1 acme.test s1"})
    assert st == 200 and "only mx has mail signed" in doc.get("refused", ""), doc
    # A frame no role needs (2 MiB to the vault): dropped unread, recorded and raised.
    st, _, doc = c.request("POST", "/api/test-hooks/vault", {"attack": "oversized", "target": ""})
    assert st == 200 and "error" in doc and "answer" not in doc, doc
    alerts = [a for a in n.cli_json("alerts", "list") if a["rule"] == "role-overreach"]
    assert len(alerts) == 6 + (not own_users) and all(a["severity"] == "critical" for a in alerts), alerts
    assert any("oversized frame" in a["summary"] for a in alerts), alerts
    if own_users:
        wait_for(lambda: [r for r in n.cli_json("vault", "records") if r["action"] == "sandbox-denial"
                          and r["object"] == f"socket={n.data_dir / 'admin.sock'}"],
                 timeout=10, what="the refused connection raised")
    else:
        assert any("admin socket" in a["summary"] and "quarantine-release" in a["summary"] for a in alerts)
    refused = [r for r in n.cli_json("vault", "records") if r["outcome"] == "refused: not from the local CLI"]
    assert {r["action"] for r in refused} == {"open-quarantine", "admin", "digest-links", "spool-key", "dkim-sign"}, refused
    # The operator at the console is not a role: the same open works from the CLI.
    assert "INTRUDER" in n.cli("quarantine", "open", item, "--break-glass", "incident review").stdout


def test_tenant_admins_tune_their_filter_policy_and_weakening_it_needs_a_step_up(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    admin = Client(n)
    secret = admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme"))
    admin.login("admin@acme.test", secret)
    login_step = int(time.time() + 30) // 30
    st, _, doc = admin.request("GET", "/api/policy")
    assert st == 200 and doc["effective"] == {"tag": 2.0, "quarantine": 4.0, "reject": 50.0}, doc
    assert doc["default_weights"]["GTUBE"] == 1000 and doc["policy"]["weights"] == {}

    for body, word in [({"weights": {"NOPE": 1}}, "unknown symbol"),
                       ({"tag": 9, "quarantine": 3}, "tag ≤ quarantine"),
                       ({"protected_names": [{"name": "x"}]}, "3 to 200"),
                       ({"trusted_arc": ["not a domain"]}, "domain"),
                       ({"quarantine_days": 0}, "quarantine_days"),
                       ({"colour": "red"}, "JSON body")]:
        st, _, doc = admin.request("PUT", "/api/policy", body)
        assert st == 400 and word in doc["detail"], (body, doc)
    # Stricter: no step-up needed. A bare message (score 4.5) is now rejected at DATA.
    stricter = {"reject": 4.0, "protected_names": [{"name": "山田 太郎", "addresses": ["taro@acme.test"]}]}
    st, _, doc = admin.request("PUT", "/api/policy", stricter)
    assert st == 200, doc
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        try:
            c.sendmail("a@example.org", ["bob@acme.test"], bare("POLICY-STRICT", "bob@acme.test"))
            rejected = False
        except smtplib.SMTPDataError as e:
            rejected = e.smtp_code == 554
    assert rejected
    # Looser (the reject threshold raised again, a name removed): refused without a step-up.
    st, _, doc = admin.request("PUT", "/api/policy", {"reject": 50.0})
    assert st == 403 and "step-up" in doc["detail"], doc
    while int(time.time()) // 30 < login_step:
        time.sleep(0.2)
    assert admin.request("POST", "/api/step-up", {"code": totp(secret, time.time() + 30)})[0] == 200
    st, _, doc = admin.request("PUT", "/api/policy", {"reject": 50.0})
    assert st == 200, doc
    send(n, "bob@acme.test", bare("POLICY-LOOSE", "bob@acme.test"))
    assert [q for q in n.cli_json("quarantine", "list")], "quarantined again, not rejected"
    changes = [r for r in n.cli_json("vault", "records") if r["action"] == "set-filter-policy"]
    assert [(r["principal"], r["object"]) for r in changes] == [("user:admin@acme.test", "acme")] * 2
    bob = Client(n)
    bob.login("bob@acme.test", bob.enrol(invite(n, "bob@acme.test", "user", "acme")))
    assert bob.request("GET", "/api/policy")[0] == 403
    assert bob.request("PUT", "/api/policy", {"reject": 99.0})[0] == 403


def test_tenant_admins_set_connector_secrets_write_only_after_a_step_up(node):
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    admin = Client(n)
    secret = admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme"))
    admin.login("admin@acme.test", secret)
    login_step = int(time.time() + 30) // 30
    value = {"kind": "smtp-auth", "username": "relay@acme.test", "password": "Sm4rthost-PW-9231"}
    st, _, doc = admin.request("PUT", "/api/secrets", value)
    assert st == 403 and "step-up" in doc["detail"], doc
    while int(time.time()) // 30 < login_step:
        time.sleep(0.2)
    assert admin.request("POST", "/api/step-up", {"code": totp(secret, time.time() + 30)})[0] == 200
    st, _, doc = admin.request("PUT", "/api/secrets", {"kind": "smtp-auth", "username": "x"})
    assert st == 400, doc
    st, _, doc = admin.request("PUT", "/api/secrets", value)
    assert st == 200, doc
    st, _, doc = admin.request("GET", "/api/secrets")
    assert st == 200 and [x["kind"] for x in doc["secrets"]] == ["smtp-auth"], doc
    assert "Sm4rthost" not in json.dumps(doc)
    dump = b"".join(p.read_bytes() for p in n.data_dir.rglob("*") if p.is_file())
    assert b"Sm4rthost-PW-9231" not in dump and b"Sm4rthost-PW-9231" not in (n.data_dir.parent / "node.log").read_bytes()
    seals = [(r["principal"], r["object"], r["outcome"]) for r in n.cli_json("vault", "records")
             if r["action"] == "seal-secret"]
    assert sorted(seals) == [("user:admin@acme.test", "", "refused: invalid value"),
                             ("user:admin@acme.test", "smtp-auth", "ok")], seals
    bob = Client(n)
    bob.login("bob@acme.test", bob.enrol(invite(n, "bob@acme.test", "user", "acme")))
    assert bob.request("GET", "/api/secrets")[0] == 403
    assert bob.request("PUT", "/api/secrets", value)[0] == 403


def test_tenant_admin_settings_page_changes_thresholds_invites_and_seals_through_the_same_rules(node):
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    admin = Client(n)
    admin.login("admin@acme.test", admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme")))
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def post(path, **fields):
        body = urllib.parse.urlencode(dict(csrf=admin.csrf, **fields)).encode()
        return admin.request("POST", path, raw=body, headers=form)

    st, _, page = admin.request("GET", "/settings")
    assert st == 200 and 'id="policy-form"' in page and 'value="50"' in page
    st, r, _ = post("/settings/policy", tag="2", quarantine="4", reject="40")  # stricter
    assert st == 303 and r.getheader("Location") == "/settings?done=policy"
    st, _, doc = admin.request("GET", "/api/policy")
    assert doc["effective"]["reject"] == 40.0, doc
    st, _, page = post("/settings/policy", tag="2", quarantine="4", reject="60")  # looser
    assert st == 403 and "needs a current code from your authenticator" in page
    st, _, page = post("/settings/invite", email="carol@acme.test", role="user")
    assert st == 200 and "/enrol#e1_" in page
    # The people table lists her as invited until she enrols (never her link again).
    st, _, page = admin.request("GET", "/settings")
    row = re.search(r'<tr class="invited"><td>carol@acme\.test</td>.*?</tr>', page)
    assert st == 200 and row and "invited, link valid until" in row.group(0), page
    assert page.count("/enrol#") == 0
    st, _, page = post("/settings/invite", email="x@acme.test", role="operator")
    assert st == 400 and "users and tenant admins only" in page
    st, _, page = post("/settings/secret", username="relay", password="Pw-in-a-form-77")
    assert st == 403 and "needs a current code from your authenticator" in page
    changes = [r["action"] for r in n.cli_json("vault", "records") if r["principal"] == "user:admin@acme.test"]
    assert changes.count("set-filter-policy") == 1 and "user-invite" in changes
    bob = Client(n)
    bob.login("bob@acme.test", bob.enrol(invite(n, "bob@acme.test", "user", "acme")))
    assert bob.request("GET", "/settings")[0] == 403


def test_tenants_routes_and_recipients_are_managed_from_web_forms(node, sink):
    """The operator page creates tenants and adds domains; a tenant admin's settings page
    changes the route (only with a current code), the recipient policy and the list — the
    API's acts, with its rules."""
    old, new = sink("old"), sink("new")
    n = node()
    op = Client(n)
    op.login("operator", op.enrol(n.enrolment_link()))
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def post(c, path, **fields):
        body = urllib.parse.urlencode(dict(csrf=c.csrf, **fields)).encode()
        return c.request("POST", path, raw=body, headers=form)

    st, _, page = op.request("GET", "/operator")
    assert st == 200 and 'id="tenant-form"' in page and 'id="domain-form"' in page
    st, r, _ = post(op, "/operator/tenant", name="acme", domains="acme.test, acme2.test", route=old.route())
    assert st == 303, r
    st, _, page = post(op, "/operator/tenant", name="bad", domains="bad.test", route="maildir:///etc")
    assert st == 400 and "CLI" in page
    acme = next(t for t in n.cli_json("tenant", "list") if t["name"] == "acme")
    assert sorted(acme["domains"]) == ["acme.test", "acme2.test"]
    st, _, _ = post(op, "/operator/domain", tenant=str(acme["id"]), domain="acme3.test")
    assert st == 303
    st, _, page = post(op, "/operator/domain", tenant=str(acme["id"]), domain="acme3.test")
    assert st == 409, page
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["x@acme3.test"], b"Subject: one\r\n\r\nFORM-1\r\n")
    wait_for(lambda: [m for m in old.messages() if b"FORM-1" in m[1]], what="delivery to the first route")

    admin = Client(n)
    secret = admin.enrol(invite(n, "admin@acme.test", "tenant-admin", "acme"))
    admin.login("admin@acme.test", secret)
    login_step = int(time.time() + 30) // 30
    st, _, page = admin.request("GET", "/settings")
    assert st == 200 and 'id="route-form"' in page and old.route() in page
    assert post(admin, "/operator/tenant", name="x", domains="x.test", route=old.route())[0] == 403
    st, _, page = post(admin, "/settings/recipient-add", address="carol@acme.test")
    assert st == 303
    st, _, page = post(admin, "/settings/recipient-add", address="carol@beta.test")
    assert st == 400 and "not a mailbox of" in page
    st, _, _ = post(admin, "/settings/recipient-policy", policy="verify")
    assert st == 303
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("a@example.org", ["dave@acme.test"], b"Subject: x\r\n\r\nx\r\n")
    st, _, page = admin.request("GET", "/settings")
    assert "carol@acme.test" in page
    st, _, _ = post(admin, "/settings/recipient-remove", address="carol@acme.test")
    assert st == 303 and "carol@acme.test" not in admin.request("GET", "/settings")[2]
    # The route needs a current code; a wrong one changes nothing.
    wrong = "%06d" % ((int(totp(secret, time.time() + 30)) + 1) % 1_000_000)
    st, _, page = post(admin, "/settings/route", route=new.route(), code=wrong)
    assert st == 401, page
    while int(time.time()) // 30 < login_step:
        time.sleep(0.2)
    st, r, _ = post(admin, "/settings/route", route=new.route(), code=totp(secret, time.time() + 30))
    assert st == 303 and r.getheader("Location") == "/settings?done=route"
    n.cli("recipient", "add", "erin@acme.test")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["erin@acme.test"], b"Subject: two\r\n\r\nFORM-2\r\n")
    wait_for(lambda: [m for m in new.messages() if b"FORM-2" in m[1]], what="delivery to the new route")
    actions = [(r["principal"], r["action"]) for r in n.cli_json("vault", "records", "--limit", "1000")]
    for a in ["tenant-add", "domain-add"]:
        assert ("user:operator", a) in actions, a
    for a in ["recipient-add", "recipient-remove", "set-recipient-policy", "set-route"]:
        assert ("user:admin@acme.test", a) in actions, a


def test_probes_from_many_addresses_are_a_block_storm(node):
    n = node(config="[portal]\nprobe_threshold = 2\n")
    n.portal_url()
    for i in range(1, 6):
        c = Client(n)
        c.source = f"127.0.2.{i}"
        for _ in range(2):
            c.request("GET", "/.env")
        assert c.request("GET", "/healthz")[0] == 403, "blocked"
        storms = [a for a in n.cli_json("alerts", "list") if a["rule"] == "waf-block-storm"]
        assert (len(storms) == 1) == (i == 5), (i, storms)
    assert storms[0]["severity"] == "critical" and "5 addresses" in storms[0]["summary"]
    assert len([a for a in n.cli_json("alerts", "list") if a["rule"] == "waf-block"]) == 5


def test_tenants_domains_routes_and_recipients_through_the_api(node, sink):
    s1, s2 = sink(), sink("sink2")
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s1.route())
    op = Client(n)
    op.login("operator", op.enrol(n.enrolment_link()))

    # Operators create tenants with smtp:// routes; local paths are the CLI's.
    for bad, why in [({"name": "gamma", "domains": ["gamma.test"], "route": "maildir:///etc/cron.d"}, "smtp://"),
                     ({"name": "gamma", "domains": ["gamma.test"],
                       "route": "smtp://127.0.0.1:25?tls=required&ca=/etc/passwd"}, "CA file"),
                     ({"name": "gamma", "domains": ["not a domain"], "route": s1.route()}, "domain"),
                     ({"name": "gamma", "domains": [], "route": s1.route()}, "domain")]:
        st, _, doc = op.request("POST", "/api/tenants", bad)
        assert st == 400 and why in doc["detail"], doc
    st, _, doc = op.request("POST", "/api/tenants", {"name": "gamma", "domains": ["acme.test"], "route": s1.route()})
    assert st == 409 and "acme" in doc["detail"], doc
    st, _, doc = op.request("POST", "/api/tenants", {"name": "gamma", "domains": ["Gamma.test"], "route": s1.route()})
    assert st == 201 and doc["domains"] == ["gamma.test"] and doc["route"] == s1.route(), doc
    gamma = doc["id"]
    acme = n.cli_json("tenant", "list")[[t["name"] for t in n.cli_json("tenant", "list")].index("acme")]["id"]
    st, _, doc = op.request("POST", f"/api/tenants/{gamma}/domains", {"domain": "gamma.example"})
    assert st == 201 and doc["domains"] == ["gamma.example", "gamma.test"], doc
    # The mail path serves the new tenant at once.
    send(n, "bob@gamma.example", bare("G1", "bob@gamma.example"))
    assert [m for m in s1.wait(1) if b"G1" in m[1]]

    admin = Client(n)
    secret = admin.enrol(invite(n, "admin@gamma.test", "tenant-admin", "gamma"))
    admin.login("admin@gamma.test", secret)
    login_step = int(time.time() + 30) // 30
    bob = Client(n)
    bob.login("bob@gamma.test", bob.enrol(invite(n, "bob@gamma.test", "user", "gamma")))
    assert admin.request("POST", "/api/tenants", {"name": "x", "domains": ["x.test"], "route": s1.route()})[0] == 403
    assert admin.request("POST", f"/api/tenants/{gamma}/domains", {"domain": "more.test"})[0] == 403
    # Another tenant does not exist for a tenant admin; end users manage nothing.
    for method, path, body in [("GET", f"/api/tenants/{acme}/recipients", None),
                               ("PUT", f"/api/tenants/{acme}/route", {"route": s2.route()}),
                               ("POST", f"/api/tenants/{acme}/recipients", {"address": "x@acme.test"}),
                               ("DELETE", f"/api/tenants/{acme}/recipients/x@acme.test", None),
                               ("PUT", f"/api/tenants/{acme}/recipient-policy", {"policy": "verify"})]:
        assert admin.request(method, path, body)[0] == 404, path
        assert bob.request(method, path.replace(str(acme), str(gamma)), body)[0] == 403, path
    assert op.request("GET", "/api/tenants/99999/recipients")[0] == 404

    # The route moves all of the tenant's mail: a step-up first.
    st, _, doc = admin.request("PUT", f"/api/tenants/{gamma}/route", {"route": s2.route()})
    assert st == 403 and "step-up" in doc["detail"], doc
    st, _, doc = admin.request("PUT", f"/api/tenants/{gamma}/route", {"route": "maildir:///tmp/x"})
    assert st == 400, doc
    while int(time.time()) // 30 < login_step:
        time.sleep(0.2)
    assert admin.request("POST", "/api/step-up", {"code": totp(secret, time.time() + 30)})[0] == 200
    st, _, doc = admin.request("PUT", f"/api/tenants/{gamma}/route", {"route": s2.route()})
    assert st == 200 and doc["route"] == s2.route(), doc
    send(n, "bob@gamma.test", bare("G2", "bob@gamma.test"))
    assert [m for m in s2.wait(1) if b"G2" in m[1]]
    assert not [m for m in s1.messages() if b"G2" in m[1]]

    # Recipients: only the tenant's domains; with "verify", only listed ones are accepted.
    st, _, doc = admin.request("POST", f"/api/tenants/{gamma}/recipients", {"address": "x@acme.test"})
    assert st == 400 and "gamma" in doc["detail"], doc
    st, _, doc = admin.request("POST", f"/api/tenants/{gamma}/recipients", {"address": "Bob@Gamma.test"})
    assert st == 201, doc
    assert admin.request("POST", f"/api/tenants/{gamma}/recipients", {"address": "bob@gamma.test"})[0] == 409
    st, _, doc = admin.request("PUT", f"/api/tenants/{gamma}/recipient-policy", {"policy": "sometimes"})
    assert st == 400, doc
    st, _, doc = admin.request("PUT", f"/api/tenants/{gamma}/recipient-policy", {"policy": "verify"})
    assert st == 200 and doc["recipient_policy"] == "verify", doc
    st, _, doc = admin.request("GET", f"/api/tenants/{gamma}/recipients")
    assert st == 200 and doc == {"policy": "verify", "recipients": ["bob@gamma.test"]}, doc

    def rcpt_code(addr):
        with smtplib.SMTP("127.0.0.1", n.port) as c:
            c.ehlo()
            c.mail("a@example.org")
            return c.rcpt(addr)[0]
    wait_for(lambda: rcpt_code("carol@gamma.test") == 550, 10, what="unlisted recipients refused")
    assert rcpt_code("bob@gamma.test") == 250
    assert admin.request("DELETE", f"/api/tenants/{gamma}/recipients/bob@gamma.test")[0] == 204
    assert admin.request("DELETE", f"/api/tenants/{gamma}/recipients/bob@gamma.test")[0] == 404
    # Every change is an audit record naming who made it.
    acts = {(r["action"], r["principal"]) for r in n.cli_json("vault", "records")}
    assert {("tenant-add", "user:operator"), ("domain-add", "user:operator"),
            ("set-route", "user:admin@gamma.test"), ("recipient-add", "user:admin@gamma.test"),
            ("set-recipient-policy", "user:admin@gamma.test"),
            ("recipient-remove", "user:admin@gamma.test")} <= acts, acts
