"""Connector secrets on the real binary: SMTP AUTH credentials and a TLS client certificate,
sealed by the vault, write-only, obtained by mx at use — delivered to a downstream that
demands both (like a Microsoft 365 / Google Workspace inbound connector)."""
import json
import smtplib
import socket
import struct
import subprocess

from conftest import Sink, wait_for

PASSWORD = "Pw-8f3c-UNIQUE-connector-secret"


def openssl_cert(d, name, cn, ext, ca=None):
    """A P-256 certificate made with the openssl CLI (issued by `ca` or self-signed)."""
    cnf = d / f"{name}.cnf"
    cnf.write_text("[req]\nprompt=no\ndistinguished_name=dn\nx509_extensions=ext\n"
                   f"[dn]\nCN={cn}\n[ext]\n{ext}\n")
    args = ["openssl", "req", "-x509", "-new", "-config", str(cnf), "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem")]
    if ca:
        args += ["-CA", str(d / f"{ca}.pem"), "-CAkey", str(d / f"{ca}.key")]
    subprocess.run(args, check=True, capture_output=True)
    return d / f"{name}.pem", d / f"{name}.key"


def pki(d):
    d.mkdir()
    openssl_cert(d, "ca", "Sekisho test CA",
                 "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign")
    leaf = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n")
    server = openssl_cert(d, "server", "sink.test", leaf + "subjectAltName=IP:127.0.0.1", ca="ca")
    client = openssl_cert(d, "client", "acme-connector", leaf + "subjectAltName=DNS:acme.test",
                          ca="ca")
    return d / "ca.pem", server, client


def send(n, rcpt, marker):
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", [rcpt],
                   f"From: a@example.org\r\nTo: {rcpt}\r\nSubject: hi\r\n"
                   f"Message-ID: <{marker}@example.org>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
                   f"\r\n{marker}\r\n".encode())


def rcpt_reply(n):
    q = n.cli_json("queue", "list")
    if not q:
        return None
    shown = n.cli_json("queue", "show", q[0]["id"])
    return shown["envelope"]["rcpts"][0].get("last_reply") or None


def vault_call(n, header: dict) -> dict:
    """One raw exchange with the vault socket, as any local process could attempt it."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(n.data_dir / "vault.sock"))
        head = json.dumps(header).encode()
        s.sendall(struct.pack(">I", len(head)) + head + struct.pack(">I", 0))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    (hl,) = struct.unpack(">I", data[:4])
    return json.loads(data[4:4 + hl])


def test_connector_secrets_authenticate_delivery_and_are_never_readable(node, tmp_path):
    ca, (srv_cert, srv_key), (cl_cert, cl_key) = pki(tmp_path / "pki")
    s = Sink(tmp_path / "sink", cert=srv_cert, key=srv_key,
             auth=f"relay@acme.test:{PASSWORD}", client_ca=ca)
    try:
        n = node(config='[delivery]\nretry_initial = "1s"\nretry_max = "1s"\ntimeout = "5s"\n')
        route = (f"smtp://127.0.0.1:{s.port}?tls=required&ca={ca}"
                 "&auth=tenant&client_cert=tenant")
        r = n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route",
                  f"smtp://127.0.0.1:{s.port}?auth=tenant", check=False)
        assert r.returncode != 0 and "need tls=required" in r.stderr
        n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", route)

        # No secret yet: the mail waits in the queue with a reason an operator can act on.
        send(n, "bob@acme.test", "MARKER-1")
        wait_for(lambda: "no smtp-auth secret" in (rcpt_reply(n) or ""), timeout=15,
                 what="deferral for the missing secret")

        # A wrong password: refused by the next hop, deferred (not bounced).
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password\n")
        n.cli("tenant", "secret", "set", "acme", "smtp-auth", "--username", "relay@acme.test",
              "--password-file", str(wrong))
        bad_key = tmp_path / "pki" / "server.key"
        r = n.cli("tenant", "secret", "set", "acme", "client-cert", "--cert", str(cl_cert),
                  "--key", str(bad_key), check=False)
        assert r.returncode != 0 and "does not belong" in r.stderr, r.stderr
        n.cli("tenant", "secret", "set", "acme", "client-cert", "--cert", str(cl_cert),
              "--key", str(cl_key))
        wait_for(lambda: "authentication to 127.0.0.1 failed: 535" in (rcpt_reply(n) or ""),
                 timeout=15, what="deferral for the refused password")
        assert s.messages() == []

        # The right password, from stdin: delivered over mutual TLS, authenticated.
        out = subprocess.run(n.base_args() + ["tenant", "secret", "set", "acme", "smtp-auth",
                                              "--username", "relay@acme.test",
                                              "--password-file", "-"],
                             input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "cannot be shown again" in out.stdout, out.stderr
        n.cli("queue", "flush")
        (meta, content), = s.wait(1)
        assert meta["auth_user"] == "relay@acme.test"
        assert meta["client_cert_cn"] == "acme-connector"
        assert meta["tls"] and b"MARKER-1" in content
        wait_for(lambda: n.cli_json("queue", "list") == [], what="empty queue")

        # Write-only: listings show kinds and times, never a value; nothing on disk holds one.
        listing = n.cli("tenant", "secret", "list", "acme", "--json").stdout
        assert sorted(x["kind"] for x in json.loads(listing)) == ["client-cert", "smtp-auth"]
        assert PASSWORD not in listing
        key_body = cl_key.read_text().splitlines()[1].encode()
        for needle in (PASSWORD.encode(), key_body, b"relay@acme.test"):
            hits = [p for p in n.data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]
            assert hits == [], (needle, hits)
        # A local process without the mx role token gets nothing from the vault.
        answer = vault_call(n, {"op": "use-secret", "tenant": 1, "kind": "smtp-auth",
                                "role_token": "guess"})
        assert answer["result"] == "refused", answer
        records = n.cli_json("vault", "records", "--limit", "200")
        actions = [(r["action"], r["outcome"]) for r in records]
        assert ("seal-secret", "ok") in actions and ("use-secret", "ok") in actions
        assert ("use-secret", "refused: not the mx role") in actions
        assert PASSWORD not in json.dumps(records)

        # Deleting a secret takes effect at once: the tenant's next mail waits again.
        n.cli("tenant", "secret", "delete", "acme", "smtp-auth")
        r = n.cli("tenant", "secret", "delete", "acme", "smtp-auth", check=False)
        assert r.returncode != 0 and "no smtp-auth secret" in r.stderr
        send(n, "bob@acme.test", "MARKER-2")
        wait_for(lambda: "no smtp-auth secret" in (rcpt_reply(n) or ""), timeout=15,
                 what="deferral after the secret was deleted")
        assert len(s.messages()) == 1
    finally:
        s.stop()
