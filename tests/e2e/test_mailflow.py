"""End-to-end mail flow through the real `sekisho serve` with real clients and a real
downstream server."""
import json
import shutil
import smtplib
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN, CORPORA, received_prefix_and_rest, wait_for


def add_tenant(node, name, domain, route, *extra):
    node.cli("tenant", "add", name, "--domain", domain, "--route", route, *extra)


def test_smtplib_message_arrives_downstream_intact(node, sink):
    s = sink()
    n = node()
    add_tenant(n, "acme", "acme.test", s.route())
    body = b"From: a@example.org\r\nTo: bob@acme.test\r\nSubject: hello\r\n\r\n.leading dot\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        code, _ = c.ehlo("client.example.org")
        assert code == 250
        refused = c.sendmail("a@example.org", ["bob@acme.test"], body)
        assert refused == {}
    env, content = s.wait(1)[0]
    assert env["mail_from"] == "a@example.org"
    assert env["rcpt_tos"] == ["bob@acme.test"]
    received, rest = received_prefix_and_rest(content)
    assert rest == body
    assert b"by sekisho.localhost (Sekisho) with ESMTP id " in received
    assert b"X-Sekisho-Verdict: deliver\r\n" in received
    assert b"for <bob@acme.test>" in received


def test_swaks_with_starttls_and_trace(node, sink):
    s = sink()
    n = node()
    add_tenant(n, "acme", "acme.test", s.route())
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{n.port}", "--from", "sender@example.org",
         "--to", "carol@acme.test", "--tls", "--header", "Subject: via swaks", "--body", "hi"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = [l for l in r.stdout.splitlines() if "queued as" in l]
    assert m, r.stdout
    queue_id = m[0].split("queued as ")[1].strip()
    _, content = s.wait(1)[0]
    assert b"with ESMTPS id " + queue_id.encode() in content
    assert b"version=TLSv1.3" in content
    assert b"Subject: via swaks" in content
    # The trace shows the message, its TLS and the delivery.
    def delivered():
        t = n.cli_json("trace", "--rcpt", "carol@acme.test")
        return t and [e["event"] for e in t[0]["events"]] == ["accepted", "delivered"] and t
    t = wait_for(delivered, what="trace to show delivery")
    assert t[0]["id"] == queue_id
    assert t[0]["tls"].startswith("TLSv1.3")
    assert "250 2.0.0 Message accepted" in t[0]["events"][1]["detail"]


def test_each_tenant_gets_its_own_copy(node, sink):
    s1, s2 = sink("one"), sink("two")
    n = node()
    add_tenant(n, "one", "one.test", s1.route())
    add_tenant(n, "two", "two.test", s2.route())
    msg = b"Subject: both\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        refused = c.sendmail("x@example.org", ["a@one.test", "b@two.test", "c@one.test"], msg)
        # One tenant per transaction: the other tenant's recipient is deferred with 452 4.5.3,
        # and a client sends it again in its own transaction, as MTAs do.
        assert list(refused) == ["b@two.test"] and refused["b@two.test"][0] == 452
        assert b"4.5.3" in refused["b@two.test"][1]
        assert c.sendmail("x@example.org", list(refused), msg) == {}
    env1, _ = s1.wait(1)[0]
    env2, _ = s2.wait(1)[0]
    assert sorted(env1["rcpt_tos"]) == ["a@one.test", "c@one.test"]
    assert env2["rcpt_tos"] == ["b@two.test"]


def test_relay_denied_and_recipient_verification(node, sink):
    s = sink()
    n = node()
    add_tenant(n, "acme", "acme.test", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.ehlo()
        c.mail("x@example.org")
        assert c.rcpt("anyone@acme.test")[0] == 250   # new tenant: every mailbox
        assert c.rcpt("x@elsewhere.test") == (550, b"5.7.1 Relay access denied")
        c.rset()
    n.cli("recipient", "add", "alice@acme.test")
    listed = n.cli_json("recipient", "list", "--tenant", "acme")
    assert listed == [{"address": "alice@acme.test", "tenant": "acme"}]
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.ehlo()
        c.mail("x@example.org")
        assert c.rcpt("alice@acme.test")[0] == 250
        code, text = c.rcpt("anyone@acme.test")
        assert code == 550 and text.startswith(b"5.1.1"), text
    n.cli("tenant", "set-recipient-policy", "acme", "catch-all")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.ehlo()
        c.mail("x@example.org")
        assert c.rcpt("anyone@acme.test")[0] == 250


def test_retry_after_temporary_failure(node, sink):
    s = sink()
    n = node(config='[delivery]\nretry_initial = "1s"\nretry_max = "1s"\n')
    add_tenant(n, "acme", "acme.test", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("x@example.org", ["tempfail2@acme.test"], b"Subject: retry\r\n\r\nx\r\n")
    env, _ = s.wait(1, timeout=30)[0]
    assert env["rcpt_tos"] == ["tempfail2@acme.test"]
    t = wait_for(lambda: (t := n.cli_json("trace", "--rcpt", "tempfail2@acme.test"))
                 and t[0]["events"][-1]["event"] == "delivered" and t, what="delivered in trace")
    events = [e["event"] for e in t[0]["events"]]
    assert events == ["accepted", "deferred", "deferred", "delivered"], events
    assert "451 4.3.0 Try again later" in t[0]["events"][1]["detail"]
    assert n.cli_json("queue", "list") == []


def test_permanent_failure_bounces_to_sender_but_not_for_null_sender(node, sink):
    s = sink()
    n = node(config=f'[delivery]\nexternal_route = "{s.route()}"\n')
    add_tenant(n, "acme", "acme.test", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("sender@example.org", ["reject-me@acme.test"], b"Subject: will bounce\r\nMessage-ID: <b1@example.org>\r\n\r\nsecret\r\n")
        c.sendmail("", ["reject-me-too@acme.test"], b"Subject: null sender\r\n\r\nx\r\n")
    env, dsn = s.wait(1)[0]
    assert env["mail_from"] in ("", "<>")    # DSNs use the null sender
    assert env["rcpt_tos"] == ["sender@example.org"]
    assert b"multipart/report" in dsn and b"delivery-status" in dsn
    assert b"Final-Recipient: rfc822; reject-me@acme.test" in dsn
    assert b"Status: 5.1.1" in dsn
    assert b"Subject: will bounce" in dsn     # the original headers come back
    assert b"secret" not in dsn              # but not the body
    time.sleep(2)
    # The null-sender message failed too, but produced no second DSN.
    assert len(s.messages()) == 1
    t = n.cli_json("trace", "--rcpt", "reject-me-too@acme.test")
    assert [e["event"] for e in t[0]["events"]] == ["accepted", "bounced"]


def test_smuggling_attempt_is_refused_and_nothing_is_delivered(node, sink):
    s = sink()
    n = node()
    add_tenant(n, "acme", "acme.test", s.route())
    sock = socket.create_connection(("127.0.0.1", n.port))
    f = sock.makefile("rb")
    f.readline()
    payload = (b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n"
               b"Subject: legit\r\n\r\nhi\n.\nMAIL FROM:<ceo@acme.test>\r\nRCPT TO:<bob@acme.test>\r\n"
               b"DATA\r\nSubject: forged\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n")
    sock.sendall(payload)
    replies = [l for l in f.read().split(b"\r\n") if l[:3].isdigit() and l[3:4] == b" "]
    codes = [int(l[:3]) for l in replies]
    assert codes == [250, 250, 250, 354, 550, 221], replies
    time.sleep(1)
    assert s.messages() == []


def test_limits_size_sessions_and_idle(node, sink):
    s = sink()
    n = node(config='[limits]\nmax_message_size = 2048\nmax_sessions_per_ip = 2\nidle_timeout = "1s"\n')
    add_tenant(n, "acme", "acme.test", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.ehlo()
        assert c.esmtp_features["size"] == "2048"
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            c.sendmail("a@example.org", ["b@acme.test"], b"x" * 4000)   # smtplib sends SIZE=
        assert e.value.smtp_code == 552
    # Two sessions are allowed from one address, the third is told to come back later. (The
    # session above has ended on the client's side; wait until the node has let it go.)
    import urllib.request
    metrics = f"http://127.0.0.1:{n.admin_port}/metrics"
    wait_for(lambda: "sekisho_smtp_sessions_active 0\n"
             in urllib.request.urlopen(metrics).read().decode(), what="the first session released")
    held = [socket.create_connection(("127.0.0.1", n.port)) for _ in range(2)]
    for h in held:
        assert h.recv(512).startswith(b"220 ")
    third = socket.create_connection(("127.0.0.1", n.port))
    assert third.recv(512).startswith(b"421 4.7.0")
    # Idle sessions are closed after idle_timeout.
    time.sleep(1.5)
    assert held[0].recv(512).startswith(b"421 4.4.2")
    for h in held + [third]:
        h.close()


def test_queue_commands_and_restart_keeps_deferred_mail(node, sink, tmp_path):
    dead = sink("dead")
    dead_route = dead.route()
    dead.stop()                       # nothing listens there any more
    n = node(config='[delivery]\nretry_initial = "1h"\nretry_max = "2h"\ntimeout = "2s"\n')
    add_tenant(n, "acme", "acme.test", dead_route)
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["x@acme.test"], b"Subject: one\r\n\r\n1\r\n")
        c.sendmail("a@example.org", ["y@acme.test"], b"Subject: two\r\n\r\n2\r\n")
    q = wait_for(lambda: (q := n.cli_json("queue", "list")) and all(m["state"] == "deferred" for m in q)
                 and len(q) == 2 and q, what="two deferred messages")
    first, second = q[0]["id"], q[1]["id"]
    shown = n.cli_json("queue", "show", first)
    assert shown["envelope"]["rcpts"][0]["status"] == "pending"
    assert "connect to 127.0.0.1" in shown["envelope"]["rcpts"][0]["last_reply"]
    n.cli("queue", "delete", second)
    assert n.stop() == 0
    n.start()                         # restart: the deferred message is still there
    q = n.cli_json("queue", "list")
    assert [m["id"] for m in q] == [first]
    assert q[0]["state"] == "deferred"
    # Bring a downstream up and point the tenant at it; flush delivers at once.
    s = sink("alive")
    n.cli("tenant", "set-route", "acme", s.route())
    out = n.cli_json("queue", "flush")
    assert out == {"flushed": 1}
    env, _ = s.wait(1)[0]
    assert env["rcpt_tos"] == ["x@acme.test"]
    wait_for(lambda: n.cli_json("queue", "list") == [], what="empty queue")
    r = n.cli("queue", "show", second, check=False)
    assert r.returncode != 0 and "no message" in r.stderr


def test_health_and_metrics(node, sink):
    s = sink()
    n = node()
    add_tenant(n, "acme", "acme.test", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["x@acme.test"], b"Subject: m\r\n\r\n1\r\n")
    s.wait(1)
    base = f"http://127.0.0.1:{n.admin_port}"
    assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
    text = wait_for(lambda: (t := urllib.request.urlopen(base + "/metrics").read().decode())
                    and "sekisho_delivery_delivered_total 1" in t and t, what="delivery metric")
    assert "sekisho_smtp_messages_accepted_total 1" in text
    assert "sekisho_smtp_accept_latency_seconds_count 1" in text


def test_config_errors_are_one_clear_line(tmp_path):
    from conftest import BIN
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[limits]\nmax_recipients = 0\n')
    r = subprocess.run([str(BIN), "--config", str(cfg), "check-config"], capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == "error: limits.max_recipients: must be at least 1, got 0"
    cfg.write_text('[server]\nlisten = "x"\n')
    r = subprocess.run([str(BIN), "--config", str(cfg), "check-config"], capture_output=True, text=True)
    assert r.returncode != 0 and "unknown field `listen`" in r.stderr
    r = subprocess.run([str(BIN), "--data-dir", str(tmp_path / "d"), "tenant", "add", "t",
                        "--domain", "t.test", "--route", "smtp://h?tls=maybe"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "tls must be none, opportunistic or required" in r.stderr


def test_the_demo_is_a_complete_tour(node):
    """`serve --demo`: the demo tenant, its admin and end user invited with their login names,
    one sample message of each verdict already processed, next steps that work as printed."""
    from portal_helpers import Client

    n = node(demo=True)
    assert any("swaks --server" in l for l in n.banner)
    admin_token = n.banner_match(r"demo: tenant admin of 'demo', login name admin@demo\.test: enrol with \S+/enrol#(e1_[0-9a-f]+)",
                                 "the demo admin's link")
    user_token = n.banner_match(r"demo: end user of 'demo', login name alice@demo\.test: enrol with \S+/enrol#(e1_[0-9a-f]+)",
                                "the demo user's link")
    said = n.banner_match(r"^demo: sample mail to alice@demo\.test sent, one of each verdict: (.*)$",
                          "the samples", timeout=60)
    for shown in ("delivered (250 ", "tagged (250 ", "quarantined (250 ", "rejected (554 5.7.1 "):
        assert shown in said, said
    # The next step is printed with this binary's own name, and works as printed.
    step = n.banner_match(r"^\s+(\S+ trace --config \S+ --data-dir \S+ --rcpt alice@demo\.test)", "the trace step")
    assert step.startswith(str(BIN)), step
    verdicts = lambda: sorted(t["verdict"] for t in n.cli_json("trace", "--rcpt", "alice@demo.test")
                              if t.get("verdict"))
    got = wait_for(lambda: v if len(v := verdicts()) == 4 else None, what="four sample verdicts")
    assert got == ["deliver", "quarantine", "reject", "tag"], got
    text = subprocess.run(step.split(), capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "LOOKALIKE_LURE" in text.stdout and "GTUBE" in text.stdout, text

    # The tenant admin and the end user enrol with the printed links and see the held phish.
    admin = Client(n)
    admin.login("admin@demo.test", admin.enrol(admin_token))
    alice = Client(n)
    alice.login("alice@demo.test", alice.enrol(user_token))
    for who in (admin, alice):
        st, _, doc = who.request("GET", "/api/quarantine")
        assert st == 200 and [i["rcpts"] for i in doc["items"]] == [["alice@demo.test"]], doc
    box = n.data_dir / "maildir" / "alice@demo.test" / "new"
    assert len(list(box.iterdir())) == 2  # delivered and tagged
    # Mail sent by hand still arrives.
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("you@example.org", ["alice@demo.test"], b"Subject: demo\r\n\r\nhello\r\n")
    wait_for(lambda: any(f.read_bytes().endswith(b"Subject: demo\r\n\r\nhello\r\n") for f in box.iterdir()),
             what="maildir delivery")
    tenants = n.cli_json("tenant", "list")
    assert tenants[0]["name"] == "demo" and tenants[0]["domains"] == ["demo.test"]
    # The samples go once per data directory; links are printed again only for people who
    # have not enrolled.
    before = wait_for(lambda: v if len(v := verdicts()) == 5 else None, what="the hand-sent message's trace")
    n.stop()
    n.start()
    time.sleep(3)
    assert not any("demo: sample mail" in l for l in n.banner), n.banner
    assert not any("login name admin@demo.test" in l for l in n.banner), n.banner
    assert verdicts() == before
    # Sending the samples from inside mx's sandbox raised no denial.
    assert "sandbox-denial" not in n.log_path().read_text(errors="replace")


def corpus_messages():
    root = CORPORA / "mime"
    files = [p for p in root.rglob("*") if p.is_file() and (
        p.suffix in (".eml", ".msg")
        or (p.parent.name == "cpython-3.11-test_email" and p.name.startswith("msg_"))
        or (p.parent.name == "messages" and p.suffix == ".txt"))]
    return sorted(files)


def canonical(raw: bytes) -> bytes:
    """CRLF line endings, ending in CRLF: what any SMTP client puts on the wire."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return text if text.endswith(b"\r\n") else text + b"\r\n"


def test_corpus_relayed_byte_for_byte(node, sink):
    files = corpus_messages()
    assert len(files) > 100, f"corpus not found under {CORPORA}"
    s = sink()
    n = node()
    add_tenant(n, "acme", "acme.test", s.route())
    sent = {}
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        for i, p in enumerate(files):
            data = canonical(p.read_bytes())
            rcpt = f"m{i}@acme.test"
            opts = ["BODY=8BITMIME"] if any(b > 127 for b in data) else []
            assert c.sendmail("corpus@example.org", [rcpt], data, mail_options=opts) == {}
            sent[rcpt] = (p, data)
    arrived = s.wait(len(sent), timeout=120)
    assert len(arrived) == len(sent)
    checked = 0
    for env, content in arrived:
        p, data = sent[env["rcpt_tos"][0]]
        _, rest = received_prefix_and_rest(content)
        assert rest == data, f"{p} was altered in transit"
        checked += 1
    assert checked == len(files) > 100


def test_connection_reuse_and_per_destination_limit(node, sink):
    s = sink()
    n = node(config="[delivery]\nper_destination = 2\n")
    add_tenant(n, "acme", "acme.test", s.route())
    import threading

    def client(k):
        with smtplib.SMTP("127.0.0.1", n.port) as c:
            for i in range(6):
                c.sendmail("a@example.org", [f"u{k}@acme.test"], f"Subject: {k}-{i}\r\n\r\nx\r\n")
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arrived = s.wait(48)
    assert len(arrived) == 48
    stats = json.loads((s.out / "sessions.stat").read_text())
    assert 1 <= stats["peak_sessions"] <= 2, stats          # never more than per_destination
    peers = {tuple(env["peer"]) for env, _ in arrived}
    assert len(peers) < 48, "every message used a new connection"


def test_session_limits_overall_and_total_time(node, sink):
    s = sink()
    n = node(config='[limits]\nmax_sessions = 1\nsession_timeout = "1s"\nidle_timeout = "30s"\n')
    add_tenant(n, "acme", "acme.test", s.route())
    first = socket.create_connection(("127.0.0.1", n.port))
    assert first.recv(512).startswith(b"220 ")
    second = socket.create_connection(("127.0.0.1", n.port))
    assert second.recv(512) == b"421 4.7.0 Too many connections, try again later\r\n"
    # A chatty client is still cut off at the session time limit.
    f = first.makefile("rb")
    deadline = time.monotonic() + 5
    last = b""
    while time.monotonic() < deadline:
        first.sendall(b"NOOP\r\n")
        last = f.readline()
        if not last.startswith(b"250"):
            break
        time.sleep(0.1)
    assert last.startswith(b"421 4.4.2 Session time limit"), last
    first.close()
    second.close()


def test_expired_message_bounces_with_a_dsn(node, sink):
    dead = sink("dead")
    dead_route = dead.route()
    dead.stop()
    bounces = sink("bounces")
    n = node(config=f'[delivery]\nretry_initial = "1s"\nretry_max = "1s"\nmax_lifetime = "3s"\ntimeout = "2s"\n'
                    f'external_route = "{bounces.route()}"\n')
    add_tenant(n, "acme", "acme.test", dead_route)
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("sender@example.org", ["late@acme.test"], b"Subject: too late\r\n\r\nx\r\n")
    env, dsn = bounces.wait(1, timeout=30)[0]
    assert env["rcpt_tos"] == ["sender@example.org"]
    assert b"Final-Recipient: rfc822; late@acme.test" in dsn
    assert b"message expired after" in dsn
    assert b"Status: 4." in dsn or b"Status: 5." in dsn
    wait_for(lambda: n.cli_json("queue", "list") == [], what="queue to drain")
    def trace_events():
        t = n.cli_json("trace", "--rcpt", "late@acme.test")
        events = [e["event"] for e in t[0]["events"]]
        return events[-1] == "dsn-sent" and events
    events = wait_for(trace_events, what="expiry in the trace")
    assert events[0] == "accepted" and "deferred" in events and "expired" in events, events
