"""The vault on the real binary: tenant termination (crypto-shred), KEK rotation, and
customer-held keys decrypted with the standard `age` CLI."""
import shutil
import smtplib
import sqlite3
import subprocess

import pytest

from conftest import Node, wait_for

QUARANTINE_ALL = "[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"


def bare(marker):
    # Missing From/Date/Message-ID/Subject: quarantined under QUARANTINE_ALL.
    return f"To: x\r\nX-Marker: {marker}\r\n\r\nbody {marker}\r\n".encode()


def send(n, rcpt, body):
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        return c.sendmail("a@example.org", [rcpt], body)


def files_containing(root, needle: bytes):
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_terminate_shreds_the_tenant_and_old_copies_no_longer_open(node, sink, tmp_path):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme-gone.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    send(n, "bob@acme-gone.test", bare("ACME-SECRET-1"))
    send(n, "eve@beta.test", bare("BETA-SECRET-1"))
    items = {q["tenant"]: q["id"] for q in n.cli_json("quarantine", "list")}
    # A backup of the data directory taken before termination (database, blobs, key file).
    backup = tmp_path / "backup"
    backup.mkdir()
    src = sqlite3.connect(n.data_dir / "sekisho.db")
    dst = sqlite3.connect(backup / "sekisho.db")
    src.backup(dst)
    dst.close(); src.close()
    shutil.copytree(n.data_dir / "quarantine", backup / "quarantine")
    old_kek = (n.data_dir / "vault" / "kek").read_bytes()

    r = n.cli("tenant", "terminate", "acme", "--confirm", "acm", check=False)
    assert r.returncode != 0 and "--confirm" in r.stderr
    out = n.cli("tenant", "terminate", "acme", "--confirm", "acme").stdout
    assert "key pair destroyed" in out and "1 quarantined message(s)" in out and "KEK rotated" in out
    # Its domains are refused, its sealed blob and every row about it are gone.
    def refused():
        with smtplib.SMTP("127.0.0.1", n.port) as c:
            c.ehlo()
            c.mail("a@example.org")
            return c.rcpt("bob@acme-gone.test")[0] == 550
    wait_for(refused, timeout=10, what="the terminated tenant's domain to be refused")
    assert [q["tenant"] for q in n.cli_json("quarantine", "list")] == ["beta"]
    assert not list((n.data_dir / "quarantine").rglob(f"{items['acme']}.age"))
    assert files_containing(n.data_dir, b"acme-gone.test") == []
    assert (n.data_dir / "vault" / "kek").read_bytes() != old_kek, "the KEK was rotated"
    # The other tenant is untouched: its message still opens (its key was re-wrapped).
    assert "BETA-SECRET-1" in n.cli("quarantine", "open", items["beta"], "--reason", "check").stdout
    records = [r for r in n.cli_json("vault", "records") if r["action"] == "terminate-tenant"]
    assert records and records[0]["object"] == "acme" and records[0]["outcome"] == "ok"

    # The old copy, served by a vault with the current KEK: the terminated tenant's message
    # cannot be opened by anyone.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copy(backup / "sekisho.db", restored / "sekisho.db")
    shutil.copytree(backup / "quarantine", restored / "quarantine")
    (restored / "vault").mkdir(mode=0o700)
    shutil.copy(n.data_dir / "vault" / "kek", restored / "vault" / "kek")
    (restored / "vault" / "kek").chmod(0o600)
    n.stop()
    n2 = Node(restored, QUARANTINE_ALL)
    try:
        r = n2.cli("quarantine", "open", items["acme"], "--reason", "forensics", check=False)
        assert r.returncode != 0 and "does not open with this KEK" in r.stderr, r.stderr
    finally:
        n2.stop()


def test_rotate_kek_keeps_every_tenant_readable(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", bare("ROT-1"))
    qid = n.cli_json("quarantine", "list")[0]["id"]
    before = (n.data_dir / "vault" / "kek").read_bytes()
    out = n.cli("vault", "rotate-kek").stdout
    assert "1 tenant key(s) and 0 connector secret(s) re-wrapped" in out
    assert (n.data_dir / "vault" / "kek").read_bytes() != before
    assert not (n.data_dir / "vault" / "kek.next").exists()
    assert "ROT-1" in n.cli("quarantine", "open", qid, "--reason", "after rotation").stdout
    # Mail keeps flowing into the quarantine without a restart.
    send(n, "bob@acme.test", bare("ROT-2"))
    assert len(n.cli_json("quarantine", "list")) == 2


def test_customer_held_key_only_the_tenant_can_decrypt(node, sink, tmp_path):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    identity = tmp_path / "acme-identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = next(l.split(": ", 1)[1] for l in identity.read_text().splitlines()
                     if l.startswith("# public key: "))
    r = n.cli("tenant", "set-key", "acme", "--age-recipient", "age1nonsense", check=False)
    assert r.returncode != 0 and "not an age X25519 recipient" in r.stderr
    out = n.cli("tenant", "set-key", "acme", "--age-recipient", recipient).stdout
    assert "operator side cannot open it" in out
    wait_for(lambda: send(n, "bob@acme.test", bare("CUSTOMER-SECRET")) == {}, what="send")
    q = n.cli_json("quarantine", "list")[0]
    assert q["sealed_to"] == recipient
    r = n.cli("quarantine", "open", q["id"], "--reason", "operator curiosity", check=False)
    assert r.returncode != 0 and "customer-held" in r.stderr and "cannot open" in r.stderr
    assert files_containing(n.data_dir, b"CUSTOMER-SECRET") == []
    sealed = tmp_path / "sealed.age"
    n.cli("quarantine", "export", q["id"], "--out", str(sealed))
    plain = subprocess.run(["age", "--decrypt", "-i", str(identity), str(sealed)],
                           check=True, capture_output=True).stdout
    assert b"body CUSTOMER-SECRET" in plain and b"X-Sekisho-Verdict: quarantine" in plain
    # Another key while messages are sealed to this one would strand them: refused without --force.
    other = tmp_path / "other.txt"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
    other_r = next(l.split(": ", 1)[1] for l in other.read_text().splitlines() if l.startswith("# public key: "))
    r = n.cli("tenant", "set-key", "acme", "--age-recipient", other_r, check=False)
    assert r.returncode != 0 and "--force" in r.stderr
    records = [r["action"] for r in n.cli_json("vault", "records")]
    assert "set-customer-key" in records and "open-quarantine:read" in records
