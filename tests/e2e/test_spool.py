"""The spool at rest and under faults: a copy of the data directory opens nothing; with the
KEK as well, queued mail opens (so the test can see plaintext when it is there), and mail that
was delivered, or belonged to a terminated tenant, opens for no one. Trace retention. A full
spool disk, and a next hop that never answers."""
import json
import os
import shutil
import smtplib
import socket
import subprocess
import threading

import pytest

from conftest import Sink, wait_for

MARKERS = ("DELIVERED-MARKER", "QUEUED-MARKER", "GONE-MARKER")


def send(n, rcpt, marker):
    body = (f"From: a@example.org\r\nTo: {rcpt}\r\nSubject: {marker}\r\n"
            f"Message-ID: <{marker}@example.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
            f"{marker} body\r\n")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", [rcpt], body.encode())


def copy_of(n, dest):
    """A copy of the data directory, as a backup or a thief would take it (sockets aside)."""
    shutil.copytree(n.data_dir, dest, ignore=shutil.ignore_patterns("*.sock"))
    return dest


def plaintext_in(root, marker):
    return [str(p) for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]


def forensic(n, copy, kek=None):
    args = ["spool", "forensic", str(copy)] + (["--kek", str(kek)] if kek else [])
    return json.loads(n.cli(*args).stdout)


def opened(report, marker):
    return any(marker in text for text in report["opened"])


def test_a_copy_of_the_data_directory_opens_nothing_and_finished_mail_opens_for_no_one(
        node, sink, tmp_path):
    live = sink("live")
    dead = sink("dead")
    dead_route = dead.route()
    dead.stop()
    bounces = sink("bounces")
    n = node(config='[delivery]\nretry_initial = "1h"\nretry_max = "2h"\ntimeout = "2s"\n'
                    f'external_route = "{bounces.route()}"\n')
    n.cli("tenant", "add", "live", "--domain", "live.test", "--route", live.route())
    n.cli("tenant", "add", "held", "--domain", "held.test", "--route", dead_route)
    n.cli("tenant", "add", "gone", "--domain", "gone.test", "--route", dead_route)
    send(n, "bob@live.test", "DELIVERED-MARKER")
    live.wait(1, timeout=20)
    send(n, "bob@held.test", "QUEUED-MARKER")
    send(n, "bob@gone.test", "GONE-MARKER")
    wait_for(lambda: [m["state"] for m in n.cli_json("queue", "list")] == ["deferred"] * 2,
             what="both undeliverable messages to be deferred")
    assert not (n.data_dir / "keys" / "spool.key").exists()

    # While mail is queued: no plaintext anywhere, and no file of the copy opens the spool.
    before = copy_of(n, tmp_path / "copy-queued")
    for marker in MARKERS:
        assert plaintext_in(before, marker) == [], marker
    thief = forensic(n, before)
    assert thief == {"key_files": [], "opened": []}, thief
    # With the KEK too, queued mail opens (the test sees plaintext when it is there) and the
    # delivered message does not.
    with_kek = forensic(n, before, n.kek)
    assert opened(with_kek, "QUEUED-MARKER") and opened(with_kek, "GONE-MARKER"), with_kek
    assert not opened(with_kek, "DELIVERED-MARKER")

    n.cli("tenant", "terminate", "gone", "--confirm", "gone")
    bounces.wait(1, timeout=20)
    wait_for(lambda: len(n.cli_json("queue", "list")) == 1, what="the terminated tenant's mail to fail")
    stats = n.cli_json("spool", "stats")
    assert stats["messages"] == 1 and stats["live_keys"] == 1, stats
    # The delivered message, the terminated tenant's and its bounce: three keys destroyed.
    assert stats["destroyed_keys"] >= 3, stats

    after = copy_of(n, tmp_path / "copy-finished")
    with_kek = forensic(n, after, n.kek)
    assert opened(with_kek, "QUEUED-MARKER"), with_kek
    assert not opened(with_kek, "GONE-MARKER") and not opened(with_kek, "DELIVERED-MARKER"), with_kek
    assert forensic(n, after)["key_files"] == []
    # (The copy taken before termination still holds that mail under a key that was live
    # then, as any backup of queued mail does: it opens only with the KEK, which is kept
    # outside the data directory.) Every hand-out of the spool key went to mx, recorded.
    records = [r for r in n.cli_json("vault", "records") if r["action"] == "spool-key"]
    assert records and all(r["outcome"] == "ok" and r["principal"] == "mx" for r in records)


def test_trace_records_go_after_their_retention_with_evidence(node, sink):
    s = sink()
    n = node(config='[trace]\nretention = "4s"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "keep", "--domain", "keep.test", "--route", s.route())
    # One tenant keeps its trace longer than the node's default.
    n.cli("tenant", "policy", "keep", "--trace-days", "30")
    send(n, "bob@acme.test", "TRACED-1")
    send(n, "bob@keep.test", "TRACED-2")
    s.wait(2, timeout=20)
    assert n.cli_json("trace", "--rcpt", "bob@acme.test"), "the trace is written first"
    wait_for(lambda: n.cli_json("trace", "--rcpt", "bob@acme.test") == [], timeout=30,
             what="acme's trace to pass its retention")
    # The other tenant's record stays (its own retention), and the purge left evidence.
    assert n.cli_json("trace", "--rcpt", "bob@keep.test")
    purges = [r for r in n.cli_json("vault", "records") if r["action"] == "trace-purge"]
    assert purges and purges[0]["outcome"] == "ok" and "past retention" in purges[0]["reason"], purges
    tenants = {t["name"]: t["id"] for t in n.cli_json("tenant", "list")}
    assert {r["tenant_id"] for r in purges} >= {tenants["acme"]}
    assert tenants["keep"] not in {r["tenant_id"] for r in purges}


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small file system for the spool")
def test_a_full_spool_refuses_with_452_delivers_everything_once_and_recovers(node, sink, tmp_path):
    """The operator's bad day: the spool on a 24 MiB file system, the next hop down, four
    clients sending 64 KiB messages until refused; then the next hop comes back."""
    out = tmp_path / "downstream"
    down = sink("downstream")
    port = down.port
    down.stop()
    data = tmp_path / "node"
    (data / "spool").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data / "spool")], check=True)
    n = None
    try:
        n = node(config='[spool]\nreserve = "2MiB"\nmax_segment_size = "4MiB"\n'
                        '[delivery]\nretry_initial = "1s"\nretry_max = "2s"\ntimeout = "2s"\n')
        n.cli("tenant", "add", "acme", "--domain", "acme.test",
              "--route", f"smtp://127.0.0.1:{port}?tls=none")
        acked, refusals, lock = [], [], threading.Lock()

        def client(k):
            for i in range(400):
                token = f"c{k}-{i}"
                body = (f"Subject: {token}\r\nX-Token: {token}\r\n\r\n" + "y" * 76 + "\r\n") * 1
                body += ("z" * 98 + "\r\n") * 650
                try:
                    with smtplib.SMTP("127.0.0.1", n.port, timeout=30) as c:
                        c.sendmail("a@example.org", [f"r{k}@acme.test"], body.encode())
                    with lock:
                        acked.append(token)
                except smtplib.SMTPDataError as e:
                    with lock:
                        refusals.append((e.smtp_code, e.smtp_error))
                    return

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(acked) > 50, f"only {len(acked)} acknowledged"
        assert refusals and all(code == 452 and b"4.3.1" in text for code, text in refusals), refusals
        # No storm of segment files while the disk was full.
        segments = list((data / "spool").glob("seg-*.log"))
        assert len(segments) < 20, len(segments)

        back = Sink(out, port=port)
        try:
            wait_for(lambda: set(acked) <= set(back.header_values("X-Token")), timeout=120,
                     what="every acknowledged message delivered")
            wait_for(lambda: n.cli_json("queue", "list") == [], timeout=30, what="an empty queue")
            counts = {}
            for t in back.header_values("X-Token"):
                counts[t] = counts.get(t, 0) + 1
            # At least once, not hundreds of times: a kill-free run delivers each once.
            assert max(counts.values()) == 1, sorted(counts.items(), key=lambda kv: -kv[1])[:5]
            # The space comes back as mail leaves, and new mail is accepted without a restart.
            def accepted():
                try:
                    send(n, "bob@acme.test", "AFTER-FULL")
                    return True
                except smtplib.SMTPDataError:
                    return False
            wait_for(accepted, timeout=60, interval=2, what="new mail accepted again")
        finally:
            back.stop()
    finally:
        if n:
            n.stop()
        subprocess.run(["umount", "-l", str(data / "spool")], check=False)

