"""Direct delivery (`[delivery] external_route = "mx"`) on the real binary, in a little
Internet on loopback: the test DNS server answers MX and A records for "remote" domains whose
mail exchangers are real SMTP servers on port 25 of other loopback addresses. A tenant's
server relays its users' mail through Sekisho to them: MX preference and fallback, the
domain's own address when it has no MX, a null MX (RFC 7505) and a domain that does not exist
bounce at once, and MX targets at local or private addresses are skipped unless allowed."""
import os
import smtplib

import pytest

from conftest import STORE, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="remote MX hosts listen on port 25")

SERVER = "127.0.0.2"   # the tenant's own mail server
# The remote exchangers' network: the SQLite and PostgreSQL passes run side by side, and
# each needs port 25 of its own addresses.
NET = "127.0.0" if STORE == "sqlite" else "127.0.1"


def mx(dns, name, *records):
    dns.zone.setdefault(name + ".", {})["MX"] = [[p, h] for p, h in records]
    dns.write()


def remote(sink, name, address):
    return sink(name, port=25, host=address)


def direct_node(node, sink, allow_private=True, name="node"):
    inbound = sink(f"{name}-inbound")
    n = node(name, config='[delivery]\nexternal_route = "mx"\nretry_initial = "1s"\nretry_max = "1s"\n'
                    f'allow_private_mx = {"true" if allow_private else "false"}\ntimeout = "3s"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", inbound.route())
    n.cli("outbound", "add-network", "--tenant", "acme", SERVER)
    return n, inbound


def send(n, rcpts, marker):
    body = (f"From: Alice <alice@acme.test>\r\nTo: {', '.join(rcpts)}\r\nSubject: {marker}\r\n"
            f"Message-ID: <{marker}@acme.test>\r\n\r\n{marker}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", n.port, source_address=(SERVER, 0)) as c:
        assert c.sendmail("alice@acme.test", rcpts, body) == {}


def events(n, rcpt):
    return [(e["event"], e["detail"]) for m in n.cli_json("trace", "--rcpt", rcpt)
            for e in m["events"] if e["rcpt"] == rcpt]


def test_mail_goes_to_each_domains_exchangers_by_preference_and_falls_back(node, sink, dns):
    dns.a("mx1.remote.test", f"{NET}.3")
    dns.a("mx2.remote.test", f"{NET}.4")
    mx(dns, "remote.test", (20, "mx2.remote.test."), (10, "mx1.remote.test."))
    dns.a("nomx.test", f"{NET}.5")
    first, second, own = remote(sink, "mx1", f"{NET}.3"), remote(sink, "mx2", f"{NET}.4"), \
        remote(sink, "nomx", f"{NET}.5")
    n, _ = direct_node(node, sink)

    # The preferred exchanger takes it; a domain without MX gets it at its own address.
    send(n, ["bob@remote.test", "carol@nomx.test"], "DIRECT-1")
    (env, content), = first.wait(1)
    assert env["rcpt_tos"] == ["bob@remote.test"] and content.endswith(b"DIRECT-1\r\n")
    (env, _), = own.wait(1)
    assert env["rcpt_tos"] == ["carol@nomx.test"]
    assert second.messages() == []
    delivered = wait_for(lambda: [d for e, d in events(n, "bob@remote.test") if e == "delivered"],
                         what="bob's delivery in the trace")
    assert f"via {NET}.3:25" in delivered[0], delivered

    # The preferred exchanger is down: the next one takes the mail in the same attempt.
    first.stop()
    send(n, ["dave@remote.test"], "DIRECT-2")
    (env, content), = second.wait(1)
    assert env["rcpt_tos"] == ["dave@remote.test"] and content.endswith(b"DIRECT-2\r\n")
    assert [e for e, _ in events(n, "dave@remote.test")] == ["accepted", "delivered"]


def test_a_null_mx_or_a_missing_domain_bounces_at_once_and_private_targets_wait(node, sink, dns):
    mx(dns, "nullmx.test", (0, "."))
    n, inbound = direct_node(node, sink)
    send(n, ["erin@nullmx.test", "frank@missing.test"], "DIRECT-3")

    def bounced(rcpt):
        return [d for e, d in events(n, rcpt) if e == "bounced"]
    assert "556 5.1.10" in wait_for(lambda: bounced("erin@nullmx.test"), what="null MX bounce")[0]
    assert "550 5.1.2" in wait_for(lambda: bounced("frank@missing.test"), what="no-domain bounce")[0]
    # The sender hears of both in one report (a DSN through the tenant's own route).
    (env, dsn), = wait_for(lambda: [m for m in inbound.messages() if m[0]["rcpt_tos"] == ["alice@acme.test"]],
                           what="the DSN to alice")
    assert b"5.1.10" in dsn and b"5.1.2" in dsn

    # An exchanger that resolves to this host is not used unless the operator allows it.
    dns.a("mx.inside.test", f"{NET}.6")
    mx(dns, "inside.test", (10, "mx.inside.test."))
    inside = remote(sink, "inside", f"{NET}.6")
    n2, _ = direct_node(node, sink, allow_private=False, name="strict")
    send(n2, ["gina@inside.test"], "DIRECT-4")
    deferred = wait_for(lambda: [d for e, d in events(n2, "gina@inside.test") if e == "deferred"],
                        what="deferred for a private exchanger")
    assert "4.4.4" in deferred[0] and "local or private" in deferred[0], deferred
    assert inside.messages() == []


@pytest.mark.skipif(STORE != "sqlite", reason="::1 has one port 25, and the two passes run side by side")
def test_an_exchanger_with_only_an_ipv6_address_is_reached_over_ipv6(node, sink, dns):
    dns.aaaa("mx6.v6.test", "::1")
    mx(dns, "v6.test", (10, "mx6.v6.test."))
    six = remote(sink, "mx6", "::1")
    n, _ = direct_node(node, sink)
    send(n, ["bob@v6.test"], "V6-1")
    (env, content), = six.wait(1)
    assert env["rcpt_tos"] == ["bob@v6.test"] and content.endswith(b"V6-1\r\n")
    delivered = wait_for(lambda: [d for e, d in events(n, "bob@v6.test") if e == "delivered"],
                         what="the delivery in the trace")
    assert "::1" in delivered[0], delivered
