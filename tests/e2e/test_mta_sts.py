"""MTA-STS (RFC 8461) and REQUIRETLS (RFC 8689) in direct delivery, on the real binary in
the little Internet on loopback of test_direct.py: the test DNS server publishes `_mta-sts`
records, MX and A records; an HTTPS server on port 443 serves each domain's policy under a
private CA the node is told to trust (`[delivery] ca_file`); the remote exchangers are real
SMTP servers on port 25 with STARTTLS. Enforced: delivered only to a listed exchanger whose
certificate is valid for its name, otherwise deferred; testing: delivered anyway; no policy:
opportunistic. REQUIRETLS: taken only inside TLS, delivered only to a verified exchanger that
supports it, otherwise returned to the sender."""
import http.server
import os
import smtplib
import ssl
import subprocess
import threading

import pytest

from conftest import wait_for
from test_direct import NET, SERVER, events, mx, send

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="remote hosts listen on ports 25 and 443")

DOMAINS = {  # domain: (policy mode, listed exchanger, the exchanger DNS names, its address)
    "enforce.test": ("enforce", "mx1.enforce.test", "mx1.enforce.test", 3),
    "badcert.test": ("enforce", "mx.badcert.test", "mx.badcert.test", 4),
    "unlisted.test": ("enforce", "*.elsewhere.test", "mx.unlisted.test", 5),
    "testing.test": ("testing", "mx.testing.test", "mx.testing.test", 6),
    "rtls.test": ("enforce", "mx.rtls.test", "mx.rtls.test", 9),   # offers REQUIRETLS
}
GOOD_CERTS = ("enforce.test", "unlisted.test", "rtls.test")
POLICY_HOST = 7


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def private_ca(d):
    ca, key = d / "ca.crt", d / "ca.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=test MTA-STS CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", "-keyout", str(key), "-out", str(ca))
    return ca, key


def issue(d, name, names, ca=None):
    """A certificate for `names`: from the private CA, or self-signed when `ca` is None."""
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    san = "subjectAltName=" + ",".join(n if n.startswith("IP:") else f"DNS:{n}" for n in names)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    if ca is None:
        openssl("req", "-x509", *ec, "-days", "2", "-subj", f"/CN={names[0]}", "-addext", san,
                "-keyout", str(key), "-out", str(crt))
        return crt, key
    csr, ext = d / f"{name}.csr", d / f"{name}.ext"
    openssl("req", "-new", *ec, "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(csr))
    ext.write_text(san + "\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(crt))
    for p in (crt, key):
        p.chmod(0o644)
    return crt, key


def policy_server(address, cert, key, policies):
    """HTTPS on `address`:443 answering /.well-known/mta-sts.txt by the Host it is asked for;
    POSTs (TLS reports) are kept in `posts` as (host, path, content type, body)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            Server.posts.append(((self.headers.get("Host") or "").split(":")[0], self.path,
                                 self.headers.get("Content-Type"), body))
            self.send_response(201 if self.path == "/tlsrpt" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            host = (self.headers.get("Host") or "").split(":")[0]
            body = policies.get(host.removeprefix("mta-sts."))
            if self.path != "/.well-known/mta-sts.txt" or body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *a):
            pass
    class Server(http.server.ThreadingHTTPServer):
        accepted = 0   # connections taken, answered or not
        posts = []

        def get_request(self):
            request = super().get_request()
            Server.accepted += 1
            return request
    server = Server((address, 443), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def little_internet(node, sink, dns, tmp_path, extra=""):
    """The domains of DOMAINS with their records, policies and exchangers, a domain without
    a policy (plain.test, no TLS), the policy server, and a node delivering directly."""
    ca = private_ca(tmp_path)
    policies, exchangers = {}, {}
    for domain, (mode, listed, host, last) in DOMAINS.items():
        policies[domain] = f"version: STSv1\r\nmode: {mode}\r\nmx: {listed}\r\nmax_age: 86400\r\n"
        dns.txt(f"_mta-sts.{domain}", "v=STSv1; id=20261207")
        dns.a(f"mta-sts.{domain}", f"{NET}.{POLICY_HOST}")
        dns.a(host, f"{NET}.{last}")
        mx(dns, domain, (10, f"{host}."))
        # The others: a self-signed certificate, valid for no one.
        cert, key = issue(tmp_path, host, [host], ca if domain in GOOD_CERTS else None)
        exchangers[domain] = sink(host, port=25, host=f"{NET}.{last}", cert=cert, key=key,
                                  requiretls=domain == "rtls.test")
    dns.a("mx.plain.test", f"{NET}.8")
    mx(dns, "plain.test", (10, "mx.plain.test."))
    exchangers["plain.test"] = sink("plain", port=25, host=f"{NET}.8")
    https_cert, https_key = issue(tmp_path, "mta-sts", [f"mta-sts.{d}" for d in DOMAINS], ca)
    server = policy_server(f"{NET}.{POLICY_HOST}", https_cert, https_key, policies)
    inbound = sink("inbound")
    n = node(config='[delivery]\nexternal_route = "mx"\nretry_initial = "1s"\nretry_max = "2s"\n'
                    f'allow_private_mx = true\ntimeout = "5s"\nca_file = "{ca[0]}"\n' + extra)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", inbound.route())
    n.cli("outbound", "add-network", "--tenant", "acme", SERVER)
    return n, exchangers, inbound, server, policies


def test_an_enforced_policy_delivers_only_over_verified_tls_to_listed_exchangers(node, sink, dns, tmp_path):
    n, exchangers, inbound, server, policies = little_internet(node, sink, dns, tmp_path)
    plain = exchangers["plain.test"]
    try:
        rcpts = [f"bob@{d}" for d in DOMAINS if d != "rtls.test"] + ["bob@plain.test"]
        send(n, rcpts, "STS-1")

        # Enforced, listed, valid certificate: delivered over TLS.
        (env, _), = exchangers["enforce.test"].wait(1)
        assert env["tls"] is True and env["rcpt_tos"] == ["bob@enforce.test"]
        # Testing mode: delivered even though the certificate is valid for no one.
        (env, _), = exchangers["testing.test"].wait(1)
        assert env["rcpt_tos"] == ["bob@testing.test"]
        # No policy: delivered as before (this exchanger has no TLS at all).
        (env, _), = plain.wait(1)
        assert env["tls"] is False

        def deferred(rcpt):
            return [d for e, d in events(n, rcpt) if e == "deferred"]
        # Enforced with a certificate that does not verify: deferred, nothing sent.
        bad = wait_for(lambda: deferred("bob@badcert.test"), what="the bad certificate deferred")
        assert "certificate" in bad[0].lower() or "tls" in bad[0].lower(), bad
        # Enforced, and DNS names an exchanger the policy does not list: deferred (4.7.5).
        unlisted = wait_for(lambda: deferred("bob@unlisted.test"), what="the unlisted exchanger deferred")
        assert "4.7.5" in unlisted[0] and "MTA-STS" in unlisted[0], unlisted
        assert exchangers["badcert.test"].messages() == [] and exchangers["unlisted.test"].messages() == []

        # The domain fixes its policy (a new id): the next attempt delivers.
        policies["unlisted.test"] = "version: STSv1\r\nmode: enforce\r\nmx: mx.unlisted.test\r\nmax_age: 86400\r\n"
        dns.txt("_mta-sts.unlisted.test", "v=STSv1; id=20261208")
        (env, _), = exchangers["unlisted.test"].wait(1, timeout=90)   # after the record's TTL
        assert env["tls"] is True
    finally:
        server.shutdown()


def test_requiretls_is_delivered_only_over_verified_tls_to_a_hop_that_offers_it(node, sink, dns, tmp_path):
    n, exchangers, inbound, server, _ = little_internet(node, sink, dns, tmp_path)
    body = (b"From: Alice <alice@acme.test>\r\nTo: x\r\nSubject: RTLS-1\r\nMessage-ID: <rtls1@acme.test>\r\n"
            b"\r\nRTLS-1\r\n")
    try:
        # In clear text the node neither offers nor takes it.
        with smtplib.SMTP("127.0.0.1", n.port, source_address=(SERVER, 0)) as c:
            c.ehlo("client.test")
            assert not c.has_extn("requiretls")
            code, text = c.mail("alice@acme.test", ["REQUIRETLS"])
            assert (code, text[:6]) == (530, b"5.7.10"), (code, text)
        # Inside TLS it does; the message is accepted with it.
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", n.port, source_address=(SERVER, 0)) as c:
            c.starttls(context=ctx)
            c.ehlo("client.test")
            assert c.has_extn("requiretls")
            assert c.sendmail("alice@acme.test", ["bob@rtls.test", "carol@enforce.test", "dan@plain.test"],
                              body, mail_options=["REQUIRETLS"]) == {}
        # Delivered over verified TLS to the exchanger that offers REQUIRETLS, with it.
        (env, _), = exchangers["rtls.test"].wait(1)
        assert env["tls"] is True and "REQUIRETLS" in env["mail_options"], env
        # A verified exchanger without REQUIRETLS, and a domain without a policy to verify
        # its exchanger by: returned to the sender (5.7.30), never sent.
        (_, dsn), = wait_for(lambda: [m for m in inbound.messages() if m[0]["rcpt_tos"] == ["alice@acme.test"]],
                             timeout=30, what="the DSN to alice")
        assert dsn.count(b"5.7.30") >= 2 and b"carol@enforce.test" in dsn and b"dan@plain.test" in dsn, dsn
        assert exchangers["enforce.test"].messages() == [] and exchangers["plain.test"].messages() == []
    finally:
        server.shutdown()


def test_tls_required_no_waives_the_domains_policy_for_that_message(node, sink, dns, tmp_path):
    """RFC 8689 §5: a sender who prefers delivery to protection says `TLS-Required: No`; the
    enforced policies that held the same mail back above (a certificate valid for no one, an
    exchanger the policy does not list) are then not applied to that message."""
    n, exchangers, inbound, server, _ = little_internet(node, sink, dns, tmp_path)
    body = (b"From: Alice <alice@acme.test>\r\nTo: bob\r\nSubject: WAIVED-1\r\nTLS-Required: No\r\n"
            b"Message-ID: <waived1@acme.test>\r\n\r\nWAIVED-1\r\n")
    try:
        with smtplib.SMTP("127.0.0.1", n.port, source_address=(SERVER, 0)) as c:
            assert c.sendmail("alice@acme.test", ["bob@badcert.test", "bob@unlisted.test"], body) == {}
        for domain in ("badcert.test", "unlisted.test"):
            (env, data), = exchangers[domain].wait(1)
            assert env["rcpt_tos"] == [f"bob@{domain}"] and b"WAIVED-1" in data
    finally:
        server.shutdown()


def test_a_released_requiretls_message_keeps_its_request(node, sink, tmp_path):
    """A message sent with REQUIRETLS and quarantined is released later: it is queued again
    with the request, so it still goes only over verified TLS to a hop that offers it."""
    ca = private_ca(tmp_path)
    cert, key = issue(tmp_path, "tenant-server", ["IP:127.0.0.1"], ca)
    server = sink("tenant-server", cert=cert, key=key, requiretls=True)
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test",
          "--route", f"smtp://127.0.0.1:{server.port}?tls=required&ca={ca[0]}")
    n.cli("tenant", "policy", "acme", "--weight", "DKIM_NONE=11")   # every message here is held
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    body = (b"From: Carol <carol@outside.test>\r\nTo: bob@acme.test\r\nSubject: HELD-RTLS\r\n"
            b"Message-ID: <held-rtls@outside.test>\r\n\r\nHELD-RTLS\r\n")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.starttls(context=ctx)
        c.ehlo("client.test")
        assert c.sendmail("carol@outside.test", ["bob@acme.test"], body, mail_options=["REQUIRETLS"]) == {}
    [held] = wait_for(lambda: n.cli_json("quarantine", "list"), what="the message quarantined")
    assert server.messages() == []
    n.cli("quarantine", "release", held["id"])
    (env, data), = server.wait(1)
    assert b"HELD-RTLS" in data and env["tls"] is True
    assert "REQUIRETLS" in env["mail_options"], env


def test_a_policy_host_at_a_private_address_is_never_fetched(node, sink, dns, tmp_path):
    """The attacker's domain publishes `_mta-sts` and points `mta-sts.<domain>` at an address
    inside the operator's network (server-side request forgery through the policy fetch).
    Without `allow_private_mx` the node must not connect to it at all."""
    ca = private_ca(tmp_path)
    cert, key = issue(tmp_path, "inside", ["mta-sts.ssrf.test"], ca)
    server = policy_server(f"{NET}.{POLICY_HOST}", cert, key,
                           {"ssrf.test": "version: STSv1\r\nmode: testing\r\nmx: *.ssrf.test\r\nmax_age: 86400\r\n"})
    dns.txt("_mta-sts.ssrf.test", "v=STSv1; id=1")
    dns.a("mta-sts.ssrf.test", f"{NET}.{POLICY_HOST}")
    dns.a("mx.ssrf.test", "192.0.2.25")   # a public-looking exchanger that never answers
    mx(dns, "ssrf.test", (10, "mx.ssrf.test."))
    n = node(config='[delivery]\nexternal_route = "mx"\nretry_initial = "1s"\nretry_max = "2s"\n'
                    f'timeout = "2s"\nca_file = "{ca[0]}"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", sink("inbound").route())
    n.cli("outbound", "add-network", "--tenant", "acme", SERVER)
    try:
        send(n, ["bob@ssrf.test"], "SSRF-1")
        # The delivery was tried (and deferred: the exchanger does not answer) ...
        wait_for(lambda: [e for e, _ in events(n, "bob@ssrf.test") if e == "deferred"],
                 timeout=60, what="a delivery attempt to ssrf.test")
        # ... and the policy host inside was never contacted.
        assert server.accepted == 0
    finally:
        server.shutdown()
