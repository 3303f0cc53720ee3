"""Detection on the real binary: a canary quarantine item raises a critical alert the moment
it is opened; a bulk read by one principal raises one and is throttled, while ordinary use
raises nothing; alerts move open → acknowledged → resolved."""
import smtplib

QUARANTINE_ALL = "[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"


def quarantine(n, rcpt, marker):
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", [rcpt], f"To: x\r\n\r\nbody {marker}\r\n".encode())


def test_opening_a_canary_raises_a_critical_alert_at_once(node, sink):
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    out = n.cli("canary", "plant", "--tenant", "acme").stdout
    assert "canary quarantine item was planted for acme" in out
    items = n.cli_json("quarantine", "list")
    assert len(items) == 1 and items[0]["tenant"] == "acme" and items[0]["verdict"] == "quarantine"
    qid = items[0]["id"]
    # Nothing in the database marks it: the record of the planting does not name the item.
    plant = [r for r in n.cli_json("vault", "records") if r["action"] == "plant-canary"]
    assert plant and plant[0]["object"] == "" and qid not in str(plant)
    assert n.cli_json("alerts", "list") == []
    # Opening it works (the intruder learns nothing) and raises the alert before it returns.
    text = n.cli("quarantine", "open", qid, "--break-glass", "looks interesting").stdout
    assert "Overdue invoice" in text
    alerts = rule_alerts(n)
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert (a["rule"], a["severity"], a["state"]) == ("canary-touched", "critical", "open")
    assert a["principal"].startswith("cli:") and qid in a["summary"]


def rule_alerts(n):
    """The alerts of the rule under test (CLI opens here break the glass: that alert too)."""
    return [a for a in n.cli_json("alerts", "list") if a["rule"] != "break-glass"]


def test_bulk_reads_alert_and_throttle_but_ordinary_use_does_not(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL + "[detect]\nbulk_open_threshold = 3\n"
                                      'bulk_open_window = "60s"\nthrottle = "10m"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    for i in range(5):
        quarantine(n, f"u{i}@acme.test", f"M{i}")
    ids = [q["id"] for q in n.cli_json("quarantine", "list")]
    assert len(ids) == 5
    # Ordinary use: three opens stay under the threshold.
    for qid in ids[:3]:
        n.cli("quarantine", "open", qid, "--break-glass", "user asked")
    assert rule_alerts(n) == []
    # The fourth crosses it: served, but alerted; the fifth is refused.
    n.cli("quarantine", "open", ids[3], "--break-glass", "user asked")
    (a,) = rule_alerts(n)
    assert (a["rule"], a["severity"]) == ("bulk-open", "critical")
    assert "opened 4 sealed messages within 60s" in a["summary"]
    r = n.cli("quarantine", "open", ids[4], "--break-glass", "user asked", check=False)
    assert r.returncode != 0 and "throttled after a bulk-read alert" in r.stderr
    refused = [x for x in n.cli_json("vault", "records")
               if x["outcome"] == "refused: throttled after a bulk-read alert"]
    assert len(refused) == 1
    # States.
    n.cli("alerts", "ack", str(a["id"]))
    assert n.cli_json("alerts", "list", "--state", "acknowledged")[0]["id"] == a["id"]
    n.cli("alerts", "resolve", str(a["id"]))
    assert [a for a in n.cli_json("alerts", "list", "--state", "open") if a["rule"] != "break-glass"] == []
    r = n.cli("alerts", "resolve", str(a["id"]), check=False)
    assert r.returncode != 0 and "no unresolved alert" in r.stderr
    actions = [x["action"] for x in n.cli_json("vault", "records")]
    assert "alert-raised:bulk-open" in actions and "alert-resolved" in actions


def test_incident_scope_reports_exactly_what_was_opened(node, sink):
    import time
    s = sink()
    n = node(config=QUARANTINE_ALL)
    t1 = int(time.time()) - 1
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    quarantine(n, "a1@acme.test", "A1")
    quarantine(n, "a2@acme.test", "A2")
    quarantine(n, "b1@beta.test", "B1")
    by_tenant = {}
    for q in n.cli_json("quarantine", "list"):
        by_tenant.setdefault(q["tenant"], []).append(q["id"])
    for qid in by_tenant["acme"] + by_tenant["beta"]:
        n.cli("quarantine", "open", qid, "--break-glass", "curious")
    n.cli("tenant", "terminate", "beta", "--confirm", "beta")
    t2 = int(time.time()) + 1
    records = n.cli_json("vault", "records", "--limit", "1000")
    opens = {r["object"]: r for r in records if r["action"] == "open-quarantine:read"}
    principal = opens[by_tenant["acme"][0]]["principal"]

    report = n.cli_json("incident", "scope", "--from", str(t1), "--to", str(t2),
                        "--principal", principal)
    got = [(l["tenant"], l["status"], l["category"], l["access"], l["count"], l["records"])
           for l in report["lines"]]
    assert got == [
        ("acme", "active", "message bodies and headers (quarantined)", "opened", 2,
         sorted(opens[q]["id"] for q in by_tenant["acme"])),
        ("beta", "terminated during the window", "message bodies and headers (quarantined)",
         "opened", 1, [opens[by_tenant["beta"][0]]["id"]]),
    ], got
    assert (report["tenants_active"], report["tenants_terminated"]) == (2, 0)
    # Nothing outside the window.
    empty = n.cli_json("incident", "scope", "--from", str(t1 - 100), "--to", str(t1 - 50))
    assert empty["lines"] == []
    # …and what was out of reach whatever happened: mail finished before the window.
    assert f"finished before {t1 - 100}" in empty["unrecoverable"][0], empty
    # CSV for the disclosure table; and what a compromised mx could reach (the trace of the
    # terminated tenant is gone with it, so only acme's two messages appear).
    csv = n.cli("incident", "scope", "--from", str(t1), "--to", str(t2), "--csv").stdout.splitlines()
    assert csv[0] == "tenant_id,tenant,status,category,access,count,principals,records" and len(csv) == 3
    mx = n.cli_json("incident", "scope", "--from", str(t1), "--to", str(t2), "--role", "mx")
    assert [(l["tenant"], l["access"], l["count"]) for l in mx["lines"]] == [("acme", "reachable", 2)]
    r = n.cli("incident", "scope", "--from", "2026-13-01", "--to", str(t2), check=False)
    assert r.returncode != 0 and "is not a time" in r.stderr


def test_alerts_reach_a_signed_webhook_syslog_and_email_within_seconds(node, sink, tmp_path):
    import hashlib
    import hmac
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "a-webhook-secret-of-some-length"
    (tmp_path / "hook-secret").write_text(secret + "\n")
    import socket
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(tmp_path / "log"))
    (tmp_path / "log").chmod(0o666)  # as /dev/log is: mx may run as its own user
    syslog.settimeout(10)
    s = sink()
    n = node(config=f'[alerts]\nwebhook_url = "http://127.0.0.1:{server.server_port}/hook"\n'
                    f'webhook_secret_file = "{tmp_path / "hook-secret"}"\n'
                    f'syslog = "{tmp_path / "log"}"\n'
                    'email_to = ["soc@acme.test"]\n')
    try:
        n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
        n.cli("canary", "plant", "--tenant", "acme")
        qid = n.cli_json("quarantine", "list")[0]["id"]
        opened = time.time()
        n.cli("quarantine", "open", qid, "--break-glass", "peek")
        from conftest import wait_for
        canary = lambda: [g for g in got if b"canary-touched" in g[1]]
        wait_for(canary, timeout=10, what="the webhook POST")
        headers, body, at = canary()[0]
        assert at - opened < 5, "a canary alert reaches the sink within 5 s"
        alert = json.loads(body)
        assert (alert["rule"], alert["severity"]) == ("canary-touched", "critical")
        want = hmac.new(secret.encode(), headers["x-sekisho-timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
        assert headers["x-sekisho-signature"] == f"sha256={want}"
        # The same alert as an RFC 5424 datagram on the syslog socket (authpriv.crit).
        line = syslog.recv(65536).decode()
        while 'rule="canary-touched"' not in line:  # the break-glass alert came first
            line = syslog.recv(65536).decode()
        assert line.startswith("<82>1 ") and 'rule="canary-touched" severity="critical"' in line, line
        # And as an e-mail through the node's own queue, to the SOC mailbox (a tenant's
        # recipient here, so its route), auto-submitted with the null return path.
        from email import message_from_bytes
        mails = [(e, message_from_bytes(m)) for e, m in s.wait(2)]
        ((env, m),) = [(e, m) for e, m in mails if "canary-touched" in m["Subject"]]
        assert env["mail_from"] == "<>" and env["rcpt_tos"] == ["soc@acme.test"], env
        assert m["Subject"].startswith("[Sekisho critical] canary-touched: cli:"), m["Subject"]
        assert m["Auto-Submitted"] == "auto-generated" and m["From"] == "<sekisho-alerts@sekisho.localhost>"
        assert qid in m.get_payload(decode=True).decode()
        # Each alert (the canary and the console's break-glass) sent once: a later tick does
        # not repeat them.
        time.sleep(2.5)
        assert len(got) == 2 and len(s.messages()) == 2
        syslog.settimeout(0.1)
        try:
            again = syslog.recv(65536)
        except socket.timeout:
            again = None
        assert again is None
    finally:
        server.shutdown()


def test_a_canary_secret_obtained_through_mx_raises_a_critical_alert(node, sink):
    from conftest import admin
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test",
          "--route", "smtp://127.0.0.1:9?tls=required&auth=tenant")
    r = n.cli("canary", "plant", "--tenant", "beta", "--secret", check=False)
    assert r.returncode != 0 and "authenticates with its smtp-auth secret" in r.stderr
    n.cli("canary", "plant", "--tenant", "acme", "--secret")
    # Listed like any secret; ordinary mail to acme (its route does not authenticate) never
    # asks for it.
    assert [x["kind"] for x in n.cli_json("tenant", "secret", "list", "acme")] == ["smtp-auth"]
    with __import__("smtplib").SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["bob@acme.test"], b"Subject: hi\r\n\r\nordinary\r\n")
    s.wait(1)
    assert n.cli_json("alerts", "list") == []
    # Code in mx asking the vault for it (the test hook plays that intruder) is caught.
    acme = next(t["id"] for t in n.cli_json("tenant", "list") if t["name"] == "acme")
    assert admin(n, {"cmd": "test-use-secret", "tenant": acme})["data"] == {"obtained": True}
    (a,) = n.cli_json("alerts", "list")
    assert (a["rule"], a["severity"], a["principal"]) == ("canary-touched", "critical", "mx")
    assert "canary secret" in a["summary"]


def test_operator_opens_outside_working_hours_raise_an_alert_inside_them_none(node, sink, tmp_path):
    import subprocess
    import time

    from conftest import BIN
    s = sink()
    hour = time.gmtime().tm_hour
    # Working hours that exclude now (two hours from now, for an hour), and ones that hold now.
    away = f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"
    for name, hours, alerted in [("late", away, True), ("day", "00:00-24:00", False)]:
        n = node(name=name, config=QUARANTINE_ALL + f'[detect]\nworking_hours = "{hours}"\n'
                 'working_days = "all"\nutc_offset = "+00:00"\n')
        n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
        quarantine(n, "bob@acme.test", "OFF-HOURS")
        (qid,) = [q["id"] for q in n.cli_json("quarantine", "list")]
        assert "OFF-HOURS" in n.cli("quarantine", "open", qid, "--break-glass", "incident 12").stdout
        alerts = [a for a in n.cli_json("alerts", "list") if a["rule"] == "operator-off-hours"]
        if alerted:
            assert len(alerts) == 1 and alerts[0]["principal"].startswith("cli:"), alerts
            assert qid in alerts[0]["summary"] and "incident 12" in alerts[0]["summary"]
        else:
            assert alerts == [], alerts
        n.stop()
    # A wrong setting is one clear line, not a start.
    bad = tmp_path / "bad.toml"
    bad.write_text('[detect]\nworking_hours = "9-18"\n')
    r = subprocess.run([str(BIN), "--config", str(bad), "--data-dir", str(tmp_path / "bad"), "check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "detect.working_hours" in r.stderr and "HH:MM" in r.stderr, r.stderr
