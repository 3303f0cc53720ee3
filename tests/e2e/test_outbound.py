"""Outbound relay on the real binary: a tenant's own mail server (here 127.0.0.2) relays its
users' mail to the world through Sekisho; nobody else can; the outbound-burst rule holds a
sender that suddenly sends to many recipients (account takeover) and alerts, while ordinary
senders of the same tenant keep flowing; an administrator releases the sender."""
import json
import smtplib

import pytest

from conftest import wait_for

SERVER = "127.0.0.2"   # the tenant's mail server; 127.0.0.1 plays the Internet
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def outbound_node(node, sink, threshold=50):
    inbound, world = sink("inbound"), sink("world")
    n = node(config=f'[delivery]\nexternal_route = "{world.route()}"\n'
                    f'[detect]\noutbound_burst_threshold = {threshold}\noutbound_burst_window = "10m"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", inbound.route())
    return n, inbound, world


def send(n, sender, rcpts, body=b"Subject: hello\r\n\r\nquarterly figures attached\r\n", source=SERVER):
    with smtplib.SMTP("127.0.0.1", n.port, source_address=(source, 0)) as c:
        return c.sendmail(sender, rcpts, body)


def test_a_tenants_server_relays_its_users_mail_and_nobody_else_can(node, sink):
    n, inbound, world = outbound_node(node, sink)
    # Not registered yet: an open relay this is not.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        send(n, "alice@acme.test", ["bob@example.net"])
    assert e.value.recipients["bob@example.net"][0] == 550
    out = n.cli("outbound", "add-network", "--tenant", "acme", SERVER).stdout
    assert f"{SERVER}/32" in out
    assert [x["network"] for x in n.cli_json("outbound", "networks")] == [f"{SERVER}/32"]

    body = (b"From: Alice <alice@acme.test>\r\nTo: bob@example.net\r\nSubject: figures\r\n"
            b"Message-ID: <o1@acme.test>\r\n\r\nThe figures.\r\n")
    assert send(n, "alice@acme.test", ["bob@example.net", "carol@example.org"], body) == {}
    env, content = world.wait(1)[0]
    assert env["mail_from"] == "alice@acme.test"
    assert sorted(env["rcpt_tos"]) == ["bob@example.net", "carol@example.org"]
    assert content.endswith(body)
    assert b"by " in content and b"(Sekisho)" in content
    # Verdicts and authentication results are the tenant's business, not the recipient's.
    assert b"X-Sekisho-" not in content and b"Authentication-Results" not in content

    # The same sender from elsewhere, a stranger's sender from the tenant's server, and the
    # tenant's server for another tenant's domain: refused as relaying.
    n.cli("tenant", "add", "other", "--domain", "other.test", "--route", inbound.route())
    for sender, source in [("alice@acme.test", "127.0.0.1"), ("mallory@example.org", SERVER),
                           ("someone@other.test", SERVER)]:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            send(n, sender, ["bob@example.net"], source=source)
        code, text = e.value.recipients["bob@example.net"]
        assert (code, b"5.7.1" in text) == (550, True), (sender, source, code, text)

    # Outbound mail is inspected too: GTUBE is refused to the tenant's own server (which
    # tells its user), never quarantined or bounced to a stranger.
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(n, "alice@acme.test", ["bob@example.net"], f"Subject: x\r\n\r\n{GTUBE}\r\n".encode())
    assert e.value.smtp_code == 550 and b"outbound content policy" in e.value.smtp_error

    # The trace is the sending tenant's: delivered to the world, with the tenant's id.
    def delivered():
        t = n.cli_json("trace", "--rcpt", "bob@example.net")
        bob = lambda m: [e["event"] for e in m["events"] if e["rcpt"] == "bob@example.net"]
        done = [m for m in t if bob(m) == ["accepted", "delivered"]]
        return done and done
    t = wait_for(delivered, what="the outbound message delivered in the trace")
    acme = n.sql("SELECT id FROM tenants WHERE name = $1", "acme")[0][0]
    assert len(t) == 1 and {e["tenant_id"] for e in t[0]["events"]} == {int(acme)}
    assert t[0]["client_ip"] == SERVER
    # Registering and removing networks are audit records.
    actions = [r["action"] for r in n.cli_json("vault", "records", "--limit", "1000")]
    assert "outbound-network-add" in actions
    n.cli("outbound", "remove-network", "--tenant", "acme", f"{SERVER}/32")
    assert n.cli_json("outbound", "networks") == []
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(n, "alice@acme.test", ["bob@example.net"])
    assert inbound.messages() == []


def test_an_outbound_burst_holds_the_sender_and_alerts_while_others_flow(node, sink):
    n, _, world = outbound_node(node, sink, threshold=5)
    n.cli("outbound", "add-network", "--tenant", "acme", "127.0.0.0/30")
    # Ordinary use: two senders, each under the threshold; nothing is raised.
    send(n, "bob@acme.test", ["x1@example.net", "x2@example.net"])
    send(n, "bob@acme.test", ["x3@example.net", "x4@example.net"])
    send(n, "eve@acme.test", ["y1@example.org", "y2@example.org", "y3@example.org"])
    world.wait(3)
    assert n.cli_json("alerts", "list") == []
    assert n.cli_json("outbound", "holds") == []

    # Eve's account starts spraying: her sixth recipient crosses the threshold.
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(n, "eve@acme.test", ["y4@example.org", "y5@example.org", "y6@example.org"])
    assert e.value.smtp_code == 451 and b"4.7.1" in e.value.smtp_error
    assert b"held" in e.value.smtp_error
    alerts = n.cli_json("alerts", "list")
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert (a["rule"], a["severity"], a["principal"]) == ("outbound-burst", "critical", "sender:eve@acme.test")
    assert "6 recipients" in a["summary"] and "sekisho outbound release" in a["summary"]
    holds = n.cli_json("outbound", "holds")
    assert [(h["tenant"], h["sender"]) for h in holds] == [("acme", "eve@acme.test")]
    # Held on every attempt (her server keeps the mail: 451, not 5xx), whatever the case.
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(n, "Eve@acme.test", ["z@example.org"])
    assert e.value.smtp_code == 451
    # The held attempt is in the tenant's trace.
    held = wait_for(lambda: n.cli_json("trace", "--rcpt", "z@example.org"), what="the held attempt in the trace")
    events = held[0]["events"]
    assert [e["event"] for e in events] == ["accepted", "held"] and "4.7.1" in events[1]["detail"]
    # Bob is not Eve: his mail flows (his fifth recipient is within the threshold).
    send(n, "bob@acme.test", ["x5@example.net"])
    world.wait(4)
    assert len(n.cli_json("alerts", "list")) == 1
    assert any(r["action"] == "outbound-hold" for r in n.cli_json("vault", "records", "--limit", "1000"))

    n.cli("outbound", "release", "--tenant", "acme", "eve@acme.test")
    assert n.cli_json("outbound", "holds") == []
    send(n, "eve@acme.test", ["y7@example.org"])
    msgs = world.wait(5)
    assert sum(len(env["rcpt_tos"]) for env, _ in msgs) == 4 + 3 + 1 + 1
    # Nothing held any more: releasing again is a clear error.
    r = n.cli("outbound", "release", "--tenant", "acme", "eve@acme.test", check=False)
    assert r.returncode != 0 and "is not held" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_networks_are_checked_before_they_open_anything(node, sink):
    n, _, _ = outbound_node(node, sink)
    for bad, why in [("10.0.0.0/4", "wider than /8"), ("2001:db8::/8", "wider than /16"),
                     ("mail.acme.test", "not an IP network")]:
        r = n.cli("outbound", "add-network", "--tenant", "acme", bad, check=False)
        assert r.returncode != 0 and why in r.stderr, (bad, r.stderr)
    r = n.cli("outbound", "add-network", "--tenant", "nobody", "192.0.2.0/24", check=False)
    assert r.returncode != 0 and "no tenant named" in r.stderr
    assert n.cli("outbound", "add-network", "--tenant", "acme", "192.0.2.77/24").stdout.count("192.0.2.0/24") == 1
    r = n.cli("outbound", "add-network", "--tenant", "acme", "192.0.2.0/24", check=False)
    assert r.returncode != 0 and "registered already" in r.stderr


def test_check_judges_a_file_as_outbound_mail(node, sink, tmp_path):
    n, _, _ = outbound_node(node, sink)
    m = tmp_path / "m.eml"
    m.write_bytes(b"From: alice@acme.test\r\nTo: bob@example.net\r\nSubject: hi\r\n"
                  b"Message-ID: <c1@acme.test>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0900\r\n\r\nhello\r\n")
    args = ["check", "--json", "--tenant", "acme", "--ip", SERVER, "--mail-from", "alice@acme.test", str(m)]
    inbound = json.loads(n.cli(*args).stdout)
    outbound = json.loads(n.cli(*args, "--outbound").stdout)
    names = lambda v: {s["symbol"] for s in v["symbols"]}
    # Inbound, the local DNS answers: no SPF record, no signature. Outbound, origin checks
    # do not apply and nothing of them is reported.
    assert {"SPF_NONE", "DKIM_NONE"} <= names(inbound)
    assert not {x for x in names(outbound) if x.startswith(("SPF_", "DKIM_", "DMARC_", "ARC_"))}
    r = n.cli("check", "--outbound", str(m), check=False)
    assert r.returncode != 0 and "--tenant" in r.stderr
