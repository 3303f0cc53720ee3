"""The vault on the real binary: tenant termination (crypto-shred), KEK rotation, and
customer-held keys decrypted with the standard `age` CLI."""
import shutil
import smtplib
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, Node, admin, role_pid, sqlite_only, wait_for
from test_secrets import pki

QUARANTINE_ALL = "[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"


def bare(marker):
    # Missing From/Date/Message-ID/Subject: quarantined under QUARANTINE_ALL.
    return f"To: x\r\nX-Marker: {marker}\r\n\r\nbody {marker}\r\n".encode()


def send(n, rcpt, body):
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        return c.sendmail("a@example.org", [rcpt], body)


def files_containing(root, needle: bytes):
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@sqlite_only  # restores a copy of the SQLite file
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
    old_kek = n.kek.read_bytes()

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
    assert n.kek.read_bytes() != old_kek, "the KEK was rotated"
    # The other tenant is untouched: its message still opens (its key was re-wrapped).
    assert "BETA-SECRET-1" in n.cli("quarantine", "open", items["beta"], "--break-glass", "check").stdout
    records = [r for r in n.cli_json("vault", "records") if r["action"] == "terminate-tenant"]
    assert records and records[0]["object"] == "acme" and records[0]["outcome"] == "ok"

    # The old copy, served by a vault with the current KEK: the terminated tenant's message
    # cannot be opened by anyone.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copy(backup / "sekisho.db", restored / "sekisho.db")
    shutil.copytree(backup / "quarantine", restored / "quarantine")
    restored_kek = tmp_path / "restored.vault" / "kek"
    restored_kek.parent.mkdir(mode=0o700)
    shutil.copy(n.kek, restored_kek)
    restored_kek.chmod(0o600)
    n.stop()
    n2 = Node(restored, QUARANTINE_ALL)
    try:
        r = n2.cli("quarantine", "open", items["acme"], "--break-glass", "forensics", check=False)
        assert r.returncode != 0 and "does not open with this KEK" in r.stderr, r.stderr
    finally:
        n2.stop()


def test_rotate_kek_keeps_every_tenant_readable(node, sink):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", bare("ROT-1"))
    qid = n.cli_json("quarantine", "list")[0]["id"]
    before = n.kek.read_bytes()
    out = n.cli("vault", "rotate-kek").stdout
    assert "1 tenant key(s), 0 connector secret(s), 1 audit key(s), 0 second factor(s) and 1 spool key(s) re-wrapped" in out
    assert n.kek.read_bytes() != before
    assert not n.kek.with_suffix(".next").exists()
    assert "ROT-1" in n.cli("quarantine", "open", qid, "--break-glass", "after rotation").stdout
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
    r = n.cli("quarantine", "open", q["id"], "--break-glass", "operator curiosity", check=False)
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


def last_reply(n):
    q = n.cli_json("queue", "list")
    if not q:
        return ""
    return n.cli_json("queue", "show", q[0]["id"])["envelope"]["rcpts"][0].get("last_reply") or ""


@pytest.mark.intrusion
def test_mx_is_confined_away_from_the_kek(node, sink, tmp_path):
    _, (cert, key), _ = pki(tmp_path / "pki")
    s = sink(cert=cert, key=key)  # offers STARTTLS, so mx gets as far as reading the CA file
    n = node(config='[delivery]\nretry_initial = "1s"\nretry_max = "1s"\n')
    banner = "".join(n.banner)
    assert "mx sandbox: Landlock fully enforced" in banner and "out of its reach" in banner, banner
    mx, vault = role_pid(n, "mx"), role_pid(n, "vault")
    status = lambda pid: Path(f"/proc/{pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status(mx) and "Seccomp:\t2" in status(mx)
    # The vault reads the KEK (no Landlock) but is under the same seccomp filter: no exec.
    assert "NoNewPrivs:\t1" in status(vault) and "Seccomp:\t2" in status(vault)

    # mx reads an operator-supplied path in two places: a route's CA file and a Maildir
    # route. Pointed at the KEK (even as root) both are denied by the kernel...
    n.cli("tenant", "add", "thief", "--domain", "thief.test",
          "--route", f"{s.route('required')}&ca={n.kek}")
    send(n, "x@thief.test", b"Subject: t\r\n\r\nt\r\n")
    wait_for(lambda: "Permission denied" in last_reply(n), timeout=15, what="denied CA read")
    # ...while the same bytes elsewhere are read (and refused as not a certificate). (The copy
    # goes into a directory that existed when mx started: a file created later directly in a
    # directory on the KEK's path is out of reach too.)
    copy = tmp_path / "pki" / "kek-copy.pem"
    shutil.copy(n.kek, copy)
    copy.chmod(0o644)  # readable by mx's own user, as an operator's CA file is
    n.cli("tenant", "set-route", "thief", f"{s.route('required')}&ca={copy}")
    n.cli("queue", "flush")
    wait_for(lambda: "no CERTIFICATE" in last_reply(n), timeout=15, what="CA parse error")
    n.cli("tenant", "set-route", "thief", f"maildir://{n.kek.parent}/stolen")
    n.cli("queue", "flush")
    wait_for(lambda: "Permission denied" in last_reply(n), timeout=15, what="denied Maildir write")
    assert not (n.kek.parent / "stolen").exists()
    assert s.messages() == []


def test_a_kek_inside_the_data_directory_is_refused(tmp_path):
    data = tmp_path / "d"
    cfg = tmp_path / "d.toml"
    cfg.write_text(f'[vault]\nkek_file = "{data}/vault/kek"\n')
    r = subprocess.run([str(BIN), "--config", str(cfg), "--data-dir", str(data), "serve",
                        "--smtp-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                        "--portal-listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "is inside the data directory" in r.stderr, r.stderr


def test_sealed_blobs_in_an_s3_compatible_store(node, sink, s3, tmp_path):
    s = sink()
    n = node(config=QUARANTINE_ALL + s3.config(tmp_path / "s3-secret"))
    assert f"sealed quarantine in s3://{s3.bucket}/q at {s3.url}" in "".join(n.banner)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    for marker, rcpt in [("S3-ONE", "bob@acme.test"), ("S3-TWO", "eve@acme.test"),
                         ("S3-BETA", "al@beta.test")]:
        send(n, rcpt, bare(marker))
    items = n.cli_json("quarantine", "list")
    assert len(items) == 3
    blob = {i["id"]: f"q/{i['tenant_id']}/{i['id']}.age" for i in items}
    keys = s3.keys()
    assert sorted(keys) == sorted(blob.values()), keys
    # The object store holds only ciphertext; nothing lands in the local blob directory.
    for k in keys:
        sealed = s3.get(k)
        assert sealed.startswith(b"age-encryption.org/v1") and b"S3-" not in sealed
    assert not any(p.is_file() for p in (n.data_dir / "quarantine").rglob("*"))
    by_marker = {}
    for i in items:
        text = n.cli("quarantine", "open", i["id"], "--break-glass", "s3 check").stdout
        by_marker[next(m for m in ("S3-ONE", "S3-TWO", "S3-BETA") if m in text)] = i
    # Release: read back from S3 through the vault, delivered, object removed.
    n.cli("quarantine", "release", by_marker["S3-ONE"]["id"])
    (_, content), = s.wait(1)
    assert b"S3-ONE" in content
    wait_for(lambda: len(s3.keys()) == 2, timeout=10, what="released object removed")
    # Terminate: the tenant's remaining object goes; the other tenant's stays.
    n.cli("tenant", "terminate", "acme", "--confirm", "acme")
    assert s3.keys() == [blob[by_marker["S3-BETA"]["id"]]]


def test_a_terminated_tenants_queued_mail_fails_at_once(node, sink):
    dead = sink("dead")
    dead_route = dead.route()
    dead.stop()
    bounces = sink("bounces")
    n = node(config='[delivery]\nretry_initial = "1h"\nretry_max = "2h"\ntimeout = "2s"\n'
                    f'external_route = "{bounces.route()}"\n')
    n.cli("tenant", "add", "gone", "--domain", "gone.test", "--route", dead_route)
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("sender@example.org", ["bob@gone.test"], b"Subject: queued\r\n\r\nQUEUED-1\r\n")
    wait_for(lambda: [m["state"] for m in n.cli_json("queue", "list")] == ["deferred"],
             what="deferral (next retry in an hour)")
    n.cli("tenant", "terminate", "gone", "--confirm", "gone")
    # Not at the next retry in an hour: now, with a permanent status, and the queue is empty.
    env, dsn = bounces.wait(1, timeout=20)[0]
    assert env["rcpt_tos"] == ["sender@example.org"]
    assert b"Status: 5.1.6" in dsn and b"tenant terminated" in dsn
    wait_for(lambda: n.cli_json("queue", "list") == [], what="queue to drain")
    # A tenant added afterwards gets a new id, never the terminated one's.
    n.cli("tenant", "add", "next", "--domain", "next.test", "--route", dead_route)
    ids = {t["name"]: t["id"] for t in n.cli_json("tenant", "list")}
    assert ids["next"] > 1, ids


def test_an_exec_from_mx_is_killed_recorded_and_mx_comes_back(node, tmp_path):
    plain = node("plain")
    assert "seccomp forbids exec and new processes" in "".join(plain.banner)
    # (The product binary has no test hooks at all: scripts/check-no-hooks; this one has.)
    n = plain
    mx = role_pid(n, "mx")
    marker = tmp_path / "pwned"
    try:
        admin(n, {"cmd": "test-exec", "path": str(marker)})
    except (OSError, ValueError):
        pass  # mx is killed while answering
    wait_for(lambda: role_pid(n, "mx") not in (None, mx), timeout=20, what="a fresh mx")
    assert not marker.exists(), "/bin/sh must never run"
    violations = [r for r in n.cli_json("vault", "records") if r["action"] == "sandbox-violation"]
    assert len(violations) == 1 and violations[0]["principal"] == "mx", violations
    assert violations[0]["outcome"] == "denied: process killed (SIGSYS)"
    log = Path(n.log.name).read_text()
    assert "critical" in log and "sandbox-violation" in log
    (alert,) = n.cli_json("alerts", "list")
    assert (alert["rule"], alert["severity"], alert["principal"]) == ("sandbox-violation", "critical", "mx")
    # The new mx serves again.
    def answering():
        try:
            return admin(n, {"cmd": "queue-list"})["ok"]
        except OSError:
            return False  # not listening yet
    wait_for(answering, timeout=20, what="mx answering")
