"""DKIM signing of outbound mail on the real binary: keys made and kept by the vault
(`sekisho tenant dkim …`), each outbound message from a tenant's domain signed by mx through
the vault, and every signature checked by an independent verifier (dkimpy) reading the
published records from the test's DNS server — both algorithms, and a rotation in which
mail signed with either selector keeps verifying."""
import re
import smtplib

import dkim
import dns.resolver

from conftest import wait_for

SERVER = "127.0.0.2"   # the tenant's mail server; 127.0.0.1 plays the Internet


def send(n, sender, rcpt, body):
    with smtplib.SMTP("127.0.0.1", n.port, source_address=(SERVER, 0)) as c:
        return c.sendmail(sender, [rcpt], body)


def txt_lookup(port):
    """dkimpy's `dnsfunc`: TXT records from the test's DNS server (real DNS over loopback)."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port = ["127.0.0.1"], port

    def lookup(name, timeout=5):
        try:
            answer = r.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)
    return lookup


def verifier(port):
    """dkimpy's DKIM verification, keys from the test's DNS server."""
    lookup = txt_lookup(port)
    return lambda message: dkim.verify(message, dnsfunc=lookup)


def tags(message):
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    sig = re.search(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M | re.I).group(1)
    return dict((k.strip(), v) for k, v in (t.split("=", 1) for t in re.sub(r"\s+", "", sig).split(";") if t))


def publish(dns_server, key):
    dns_server.txt(key["name"], key["value"])


def test_outbound_mail_is_signed_by_the_vault_and_verifies_through_a_rotation(node, sink, dns):
    inbound, world = sink("inbound"), sink("world")
    n = node(config=f'[delivery]\nexternal_route = "{world.route()}"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", inbound.route())
    n.cli("tenant", "add", "other", "--domain", "other.test", "--route", inbound.route())
    n.cli("outbound", "add-network", "--tenant", "acme", SERVER)
    verify = verifier(dns.port)

    # A domain that is not the tenant's, a bad selector: one clear line each, nothing made.
    for domain, selector in [("other.test", "s1"), ("acme.test", "bad.selector")]:
        r = n.cli("tenant", "dkim", "generate", "acme", "--domain", domain, "--selector", selector, check=False)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert n.cli_json("tenant", "dkim", "list", "acme") == []

    # The first key (Ed25519) signs at once; its record is printed to publish.
    first = n.cli_json("tenant", "dkim", "generate", "acme", "--domain", "acme.test",
                       "--selector", "s1", "--algorithm", "ed25519")
    assert (first["name"], first["state"]) == ("s1._domainkey.acme.test", "active")
    assert first["value"].startswith("v=DKIM1; k=ed25519; p=")
    publish(dns, first)
    body = lambda i: (f"From: Alice <alice@acme.test>\r\nTo: bob@example.net\r\nSubject: figures {i}\r\n"
                      f"Message-ID: <d{i}@acme.test>\r\n\r\nThe figures,  as promised.\r\n").encode()
    send(n, "alice@acme.test", "bob@example.net", body(1))
    signed_s1 = world.wait(1)[0][1]
    t = tags(signed_s1)
    assert (t["d"], t["s"], t["a"], t["c"]) == ("acme.test", "s1", "ed25519-sha256", "relaxed/relaxed")
    assert t["h"].lower().count("from") == 2, t["h"]   # oversigned
    assert verify(signed_s1), "dkimpy verifies the Ed25519 signature"
    # What dkimpy checks is the message as it arrived: changed, it fails.
    assert not verify(signed_s1.replace(b"as promised", b"as premised"))

    # Rotation: a second key (RSA) waits, pending, while s1 signs; after `rotate` it signs,
    # and mail signed earlier with s1 still verifies while s1's record stays published.
    second = n.cli_json("tenant", "dkim", "generate", "acme", "--domain", "acme.test",
                        "--selector", "s2", "--algorithm", "rsa")
    assert second["state"] == "pending" and second["value"].startswith("v=DKIM1; k=rsa; p=MII")
    send(n, "alice@acme.test", "bob@example.net", body(2))
    assert tags(world.wait(2)[1][1])["s"] == "s1"
    publish(dns, second)
    out = n.cli("tenant", "dkim", "rotate", "acme", "--domain", "acme.test", "--selector", "s2").stdout
    assert "now signs" in out
    send(n, "alice@acme.test", "bob@example.net", body(3))
    signed_s2 = world.wait(3)[2][1]
    t = tags(signed_s2)
    assert (t["s"], t["a"]) == ("s2", "rsa-sha256")
    assert verify(signed_s2), "dkimpy verifies the RSA signature"
    assert verify(signed_s1), "mail signed before the rotation still verifies"
    states = {k["selector"]: k["state"] for k in n.cli_json("tenant", "dkim", "list", "acme")}
    assert states == {"s1": "retired", "s2": "active"}

    # A KEK rotation re-seals both keys; the vault still signs with the active one.
    assert "2 DKIM key(s) re-sealed" in n.cli("vault", "rotate-kek").stdout
    send(n, "alice@acme.test", "bob@example.net", body(4))
    after = world.wait(4)[3][1]
    assert tags(after)["s"] == "s2" and verify(after), "signed after the KEK rotation"

    # The signing key cannot be removed; the retired one can, and then is gone.
    r = n.cli("tenant", "dkim", "remove", "acme", "--domain", "acme.test", "--selector", "s2", check=False)
    assert r.returncode != 0 and "rotate" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    n.cli("tenant", "dkim", "remove", "acme", "--domain", "acme.test", "--selector", "s1")
    assert [k["selector"] for k in n.cli_json("tenant", "dkim", "list", "acme")] == ["s2"]

    # Mail whose From is not a signed domain of the sender's tenant goes unsigned.
    send(n, "alice@acme.test", "bob@example.net",
         b"From: alice@elsewhere.test\r\nTo: bob@example.net\r\nSubject: x\r\n\r\nhi\r\n")
    assert b"DKIM-Signature" not in world.wait(5)[4][1]

    # Every key change is in the audit log, with who asked.
    actions = [r["action"] for r in n.cli_json("vault", "records", "--limit", "1000")]
    for a in ["dkim-generate", "dkim-rotate", "dkim-remove"]:
        assert a in actions, a

    # The private key is sealed in the store: no PKCS#8 key in the clear (its algorithm's
    # object identifier would be there).
    rows = n.sql("SELECT selector, sealed FROM dkim_keys")
    raw = lambda v: v if isinstance(v, bytes) else bytes.fromhex(v[2:]) if v.startswith("\\x") else v.encode()
    rsa_oid, ed25519_oid = bytes.fromhex("06092a864886f70d010101"), bytes.fromhex("06032b6570")
    assert [r[0] for r in rows] == ["s2"]
    assert all(len(raw(r[1])) > 1000 and rsa_oid not in raw(r[1]) and ed25519_oid not in raw(r[1]) for r in rows)

    # A departed tenant's keys are shredded with it.
    n.cli("tenant", "terminate", "acme", "--confirm", "acme")
    assert n.sql("SELECT count(*) FROM dkim_keys")[0][0] in (0, "0")


def arc_verifier(port):
    """dkimpy's ARC validation, keys from the test's DNS server: (cv, reason)."""
    lookup = txt_lookup(port)

    def verify(message):
        cv, _, reason = dkim.arc_verify(message, dnsfunc=lookup)
        return cv, reason
    return verify


def arc_tags(message, name, instance):
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    for m in re.finditer(rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M | re.I):
        t = dict((k.strip(), v) for k, v in (x.split("=", 1) for x in re.sub(r"\s+", "", m.group(1)).split(";") if x))
        if t.get("i") == str(instance):
            return t
    return None


def test_inbound_mail_is_arc_sealed_with_the_recipient_domains_key(node, sink, dns):
    """Inbound mail handed to the tenant's server carries Sekisho's ARC set (RFC 8617), signed
    by the vault with the recipient domain's DKIM key, and dkimpy validates the chain: a new
    chain (cv=none), and one that arrived with a valid set of its own (Sekisho adds i=2,
    cv=pass, after validating the first). A message changed after sealing fails."""
    import yaml
    from conftest import CORPORA
    inbound = sink("inbound")
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", inbound.route())
    verify = arc_verifier(dns.port)

    # No key for the domain: delivered unsealed.
    plain = (b"From: Carol <carol@outside.test>\r\nTo: bob@acme.test\r\nSubject: before\r\n"
             b"Message-ID: <arc0@outside.test>\r\n\r\nHello Bob.\r\n")
    send(n, "carol@outside.test", "bob@acme.test", plain)
    (_, first), = inbound.wait(1)
    assert b"ARC-Seal" not in first

    key = n.cli_json("tenant", "dkim", "generate", "acme", "--domain", "acme.test", "--selector", "s1")
    publish(dns, key)
    send(n, "carol@outside.test", "bob@acme.test", plain.replace(b"before", b"sealed"))
    sealed = [m for _, m in inbound.wait(2) if b"Subject: sealed" in m][0]
    seal = arc_tags(sealed, "ARC-Seal", 1)
    assert seal and (seal["d"], seal["s"], seal["cv"]) == ("acme.test", "s1", "none"), seal
    assert b"ARC-Authentication-Results: i=1; " in sealed
    cv, reason = verify(sealed)
    assert cv == b"pass", reason
    assert verify(sealed.replace(b"Hello Bob.", b"Hello Bob!"))[0] == b"fail"

    # A message that arrives with a valid ARC set of its own (the validation suite's first
    # passing chain, its key published): validated, then sealed as instance 2 with cv=pass.
    suite = CORPORA / "auth" / "conformance" / "arc-valimail" / "tests" / "arc-draft-validation-tests.yml"
    doc = next(yaml.safe_load_all(suite.read_text(encoding="utf-8")))
    for name, value in doc["txt-records"].items():
        dns.txt(name, value)
    chained = next(t["message"] for t in doc["tests"].values() if t.get("cv") == "Pass"
                   and "i=1" in t["message"] and "i=2" not in t["message"])
    raw = chained.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    send(n, "jqd@d1.example.org", "bob@acme.test", raw)
    forwarded = wait_for(lambda: [m for _, m in inbound.messages() if b"ARC-Seal: i=2" in m],
                         what="the twice-sealed message")[0]
    second = arc_tags(forwarded, "ARC-Seal", 2)
    assert second and (second["d"], second["cv"]) == ("acme.test", "pass"), second
    cv, reason = verify(forwarded)
    assert cv == b"pass", reason
