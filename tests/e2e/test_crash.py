"""Crash safety: `kill -9` the server twenty times under load; every message that got a 250 must
be delivered after restart (duplicates are allowed, loss is not)."""
import json
import random
import smtplib
import threading
import time

from pathlib import Path

from conftest import free_port, role_pid, wait_for


def test_kill9_under_load_loses_no_acknowledged_message(node, sink):
    s = sink()
    port = free_port()
    n = node(smtp_port=port)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    acked = set()
    lock = threading.Lock()
    stop = threading.Event()
    attempts = [0]

    def sender(k):
        i = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
                    while not stop.is_set():
                        token = f"s{k}-{i}"
                        i += 1
                        attempts[0] += 1
                        msg = f"Subject: crash test\r\nX-Token: {token}\r\n\r\n" + ('x' * 98 + '\r\n') * 20
                        c.sendmail("load@example.org", [f"r{k}@acme.test"], msg)
                        with lock:
                            acked.add(token)   # only after the 250 to DATA
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    kills = 0
    try:
        for _ in range(20):
            time.sleep(rng.uniform(0.4, 1.2))
            n.kill9()
            kills += 1
            time.sleep(0.1)
            n.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert kills == 20
    assert len(acked) > 100, f"only {len(acked)} messages acknowledged; the test did not load the server"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        missing = acked - set(s.header_values("X-Token"))
        if not missing:
            break
        time.sleep(0.2)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
    # The queue drains completely after the last restart.
    wait_for(lambda: n.cli_json("queue", "list") == [], timeout=30, what="empty queue")
    # Nothing finished stays readable, whatever the kills interrupted (a delivery, a key's
    # destruction): with the KEK itself, no frame of the spool opens any more.
    thief = json.loads(n.cli("spool", "forensic", str(n.data_dir), "--kek", str(n.kek)).stdout)
    assert thief == {"key_files": [], "opened": []}, {k: len(v) for k, v in thief.items()}


def test_roles_run_as_separate_processes_and_die_with_the_supervisor(node):
    n = node()
    mx, vault = role_pid(n, "mx"), role_pid(n, "vault")
    assert mx and vault and len({mx, vault, n.proc.pid}) == 3
    # The KEK is a 0600 file in a 0700 directory beside the data directory; only the vault
    # role reads it.
    assert n.kek.stat().st_mode & 0o777 == 0o600
    assert n.kek.parent.stat().st_mode & 0o777 == 0o700
    # SIGKILL to the supervisor: no role survives it (PR_SET_PDEATHSIG).
    n.kill9()
    for pid in (mx, vault):
        wait_for(lambda: not Path(f"/proc/{pid}").exists()
                 or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                 timeout=5, what=f"role {pid} to die with the supervisor")
