"""Parts that fail under load (the fault table in docs/architecture.md): the malware scanner
killed and started again, a DNS resolver that never answers, the PostgreSQL store stopped and
started again, the vault role killed while releases go on. Several clients send throughout;
each row's promise is asserted: the right SMTP answer, an alert for the operator where there
is one, recovery without a restart, and every acknowledged message delivered (and released
ones once)."""
import base64
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import conftest
from conftest import ROOT, Clamd, free_port, role_pid, wait_for
from portal_helpers import Client, problem


def attached(token):
    """A message with an attachment (clamd sees it under the default scan scope)."""
    pdf = base64.b64encode(b"%PDF-1.4 harmless " + token.encode()).decode() + "\r\n"
    return (f"From: a@example.org\r\nTo: bob@acme.test\r\nSubject: {token}\r\nX-Token: {token}\r\n"
            "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
            "see attached\r\n--b\r\nContent-Type: application/pdf; name=r.pdf\r\n"
            "Content-Disposition: attachment; filename=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            f"{pdf}--b--\r\n").encode()


class Load:
    """Clients sending one message per connection until stopped; every reply is kept."""

    def __init__(self, port, make, clients=3, pause=0.0):
        self.port, self.make, self.pause = port, make, pause
        self.acked, self.refused, self.other = [], [], []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(k,)) for k in range(clients)]
        for t in self.threads:
            t.start()

    def client(self, k):
        i = 0
        while not self.stopping.is_set():
            token = f"c{k}-{i}"
            i += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as c:
                    c.sendmail("a@example.org", ["bob@acme.test"], self.make(token))
                with self.lock:
                    self.acked.append((time.monotonic(), token))
                time.sleep(self.pause)
            except smtplib.SMTPDataError as e:
                with self.lock:
                    self.refused.append((time.monotonic(), e.smtp_code, e.smtp_error))
                time.sleep(0.05)
            except Exception as e:  # noqa: BLE001 - kept and asserted on below
                with self.lock:
                    self.other.append(repr(e))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(120)

    def acked_after(self, t0):
        with self.lock:
            return [tok for t, tok in self.acked if t > t0]

    def refused_after(self, t0):
        with self.lock:
            return [(code, text) for t, code, text in self.refused if t > t0]


def part_alerts(n, rule):
    return [a for a in n.cli_json("alerts", "list") if a["rule"] == rule]


def test_clamd_killed_under_load_tempfails_raises_and_recovers_without_restart(node, sink, tmp_path):
    work = tmp_path / "clamd-work"
    work.mkdir()
    clamd = Clamd(work)
    s = sink()
    n = node(config=f'[malware]\nclamd = "unix:{clamd.socket}"\ndeadline = "2s"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    load = Load(n.port, attached)
    try:
        wait_for(lambda: len(load.acked) >= 5, timeout=60,
                 what=f"mail flowing while clamd is up ({load.refused[:2]} {load.other[:2]})")
        killed = time.monotonic()
        clamd.kill()
        wait_for(lambda: len(load.refused_after(killed)) >= 3, timeout=60,
                 what="mail refused while clamd is down")
        # Only the promised answer while it is down: 451 4.7.1, never a 250 for unscanned mail.
        down = load.refused_after(killed)
        assert all(code == 451 and text.startswith(b"4.7.1") for code, text in down), down
        alert = wait_for(lambda: part_alerts(n, "scanner-down"), timeout=30,
                         what="a scanner-down alert")
        assert alert[0]["severity"] == "warning", alert
        restarted = time.monotonic()
        clamd.start()
        wait_for(lambda: len(load.acked_after(restarted)) >= 5, timeout=60,
                 what="mail accepted again once clamd is back, without a node restart")
    finally:
        load.stop()
        clamd.stop()
    assert not load.other, load.other[:5]
    tokens = [tok for _, tok in load.acked]
    wait_for(lambda: set(tokens) <= set(s.header_values("X-Token")), timeout=60,
             what="every acknowledged message delivered")


def test_a_dns_resolver_that_never_answers_gives_temperror_in_bounded_time(node, sink):
    """The resolver takes every query and answers none: authentication ends at its deadline
    with temperror, each message's wait is bounded by that deadline (no pile-up behind earlier
    ones), mail is judged without it, and the operator is told."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    s = sink()
    n = node(config=f'[dns]\nresolver = "127.0.0.1:{port}"\ntimeout = "1s"\n'
                    '[inspect]\nauth_deadline = "2s"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())

    def plain(token):
        return (f"From: a@example.org\r\nTo: bob@acme.test\r\nSubject: {token}\r\nX-Token: {token}\r\n"
                "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nhello\r\n").encode()

    waits = []
    lock = threading.Lock()

    def client(k):
        for i in range(4):
            t0 = time.monotonic()
            with smtplib.SMTP("127.0.0.1", n.port, timeout=60) as c:
                c.sendmail("a@example.org", ["bob@acme.test"], plain(f"d{k}-{i}"))
            with lock:
                waits.append(time.monotonic() - t0)

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(waits) == 16, waits
        # Each message waits for the 2 s deadline at most (plus the SMTP exchange), whether
        # it is the first or the sixteenth: the waits do not add up.
        assert max(waits) < 6, sorted(waits)
        got = s.wait(16)
        for _, content in got:
            head = content.split(b"\r\n\r\n")[0]
            assert b"Authentication-Results:" in head, head
            assert b"temperror" in head or b"deadline exceeded" in head, head
        wait_for(lambda: part_alerts(n, "dns-down"), timeout=30,
                 what="a dns-down alert")
    finally:
        silent.close()


def send_for_id(port, rcpt, body):
    """Sends one message; returns the queue id from the 250 reply, or raises SMTPDataError."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
        c.ehlo()
        c.mail("a@example.org")
        c.rcpt(rcpt)
        code, text = c.data(body)
        if code != 250:
            raise smtplib.SMTPDataError(code, text)
        return text.decode().rsplit(" ", 1)[1]


@pytest.fixture
def private_pg(monkeypatch):
    """A PostgreSQL server of this test's own (it is stopped and started again), and the
    nodes the test starts on it (each with its roles' own database users). Its directory is
    outside pytest's private temporary tree: the server runs as the `postgres` user."""
    port = free_port()
    work = tempfile.mkdtemp(prefix="sekisho-pg-fault-")
    os.chmod(work, 0o755)
    env = dict(os.environ, SEKISHO_PG_PORT=str(port), SEKISHO_PG_DIR=os.path.join(work, "pg"))
    pg = subprocess.run([str(ROOT / "scripts" / "pg")], env=env, check=True,
                        capture_output=True, text=True).stdout.strip().splitlines()[-1]
    monkeypatch.setenv("SEKISHO_TEST_POSTGRES", pg)
    monkeypatch.setattr(conftest, "STORE", "postgres")

    def stop():
        subprocess.run([str(ROOT / "scripts" / "pg"), "stop"], env=env, check=True)

    def start():
        subprocess.run([str(ROOT / "scripts" / "pg")], env=env, check=True, capture_output=True)

    yield stop, start
    stop()
    shutil.rmtree(work, ignore_errors=True)


def test_postgresql_stopped_and_restarted_under_load(private_pg, node, sink):
    """The shared store goes away for a while under load: accepted mail is still delivered
    (the spool is local), mail that needs the store (quarantine) gets 451, the portal answers
    503 with a problem document and Retry-After, and every 250 holds: delivered or
    quarantined, and in the trace once the store is back."""
    # (private_pg comes first: fixtures end in reverse, so the node stops before its server.)
    stop_pg, start_pg = private_pg
    s = sink()
    n = node(config="[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    web = Client(n)
    web.login("operator", web.enrol(n.enrolment_link()))
    st, _, _ = web.request("GET", "/api/quarantine")
    assert st == 200

    good = lambda tok: (f"From: a@example.org\r\nTo: bob@acme.test\r\nSubject: {tok}\r\nX-Token: {tok}\r\n"  # noqa: E731
                        f"Message-ID: <{tok}@example.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nhi\r\n").encode()
    bare = lambda tok: f"To: bob@acme.test\r\nX-Token: {tok}\r\n\r\nbare {tok}\r\n".encode()  # noqa: E731
    acked, held, refused = {}, {}, []
    lock = threading.Lock()
    stopping = threading.Event()

    def client(k):
        i = 0
        while not stopping.is_set():
            i += 1
            quarantined = i % 4 == 0
            tok = f"p{k}-{i}"
            try:
                qid = send_for_id(n.port, "bob@acme.test", (bare if quarantined else good)(tok))
                with lock:
                    (held if quarantined else acked)[tok] = qid
            except smtplib.SMTPDataError as e:
                with lock:
                    refused.append((e.smtp_code, e.smtp_error))
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 5 and len(held) >= 2, timeout=60, what="mail flowing")
        stop_pg()
        down_at = len(acked)
        wait_for(lambda: len(acked) >= down_at + 10, timeout=60,
                 what="mail still accepted and queued while the store is down")
        st, r, doc = web.request("GET", "/api/quarantine")
        assert st == 503, (st, doc)
        problem(doc, 503)
        assert r.getheader("Retry-After") == "30"
        assert r.getheader("Content-Type") == "application/problem+json"
        wait_for(lambda: any(code == 451 for code, _ in refused), timeout=30,
                 what="quarantine refused with 451 while the store is down")
        time.sleep(3)
        start_pg()
        st_up = lambda: web.request("GET", "/api/quarantine")[0] == 200  # noqa: E731
        wait_for(st_up, timeout=60, what="the portal answering again")
        back = len(held)
        wait_for(lambda: len(held) >= back + 2, timeout=60, what="quarantine working again")
    finally:
        stopping.set()
        for t in threads:
            t.join(60)
    assert all(code in (451, 452) and text.startswith(b"4.") for code, text in refused), refused[:5]
    wait_for(lambda: set(acked) <= set(s.header_values("X-Token")), timeout=60,
             what="every acknowledged message delivered")
    assert not set(held) & set(s.header_values("X-Token")), "a quarantined message was delivered"
    listed = {q["id"] for q in n.cli_json("quarantine", "list")}
    assert set(held.values()) <= listed, set(held.values()) - listed
    # Trace records written while the store was away waited for it (none lost).
    def traced():
        missing = [qid for qid in acked.values() if not n.cli_json("trace", "--id", qid)]
        return not missing
    wait_for(traced, timeout=60, interval=1, what="every accepted message in the trace")
    # A node stops promptly even while its store is away (no wait for connection timeouts).
    stop_pg()
    t0 = time.monotonic()
    assert n.stop() == 0
    assert time.monotonic() - t0 < 20, f"the stop took {time.monotonic() - t0:.1f} s"


def test_the_vault_killed_under_load_is_restarted_and_nothing_is_lost_or_released_twice(node, sink):
    """The vault role is killed three times while clients send and an operator releases
    quarantined mail: the supervisor restarts it each time, mail keeps flowing, a release that
    failed is asked again, and each quarantined message arrives exactly once."""
    s = sink()
    # Releasing every held message as it arrives is a bulk read by design here.
    n = node(config="[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"
                    "[detect]\nbulk_open_threshold = 100000\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    bare = lambda tok: f"To: bob@acme.test\r\nX-Token: {tok}\r\n\r\nbare {tok}\r\n".encode()  # noqa: E731
    load = Load(n.port, lambda tok: bare(tok) if tok.endswith("0") else (
        f"From: a@example.org\r\nTo: bob@acme.test\r\nSubject: {tok}\r\nX-Token: {tok}\r\n"
        f"Message-ID: <{tok}@example.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nhi\r\n").encode(),
        pause=0.05)
    released, failures = set(), []
    stopping = threading.Event()

    def releaser():
        while not stopping.is_set():
            for q in n.cli_json("quarantine", "list", "--limit", "100000"):
                r = n.cli("quarantine", "release", q["id"], check=False)
                if r.returncode == 0:
                    released.add(q["id"])
                else:
                    failures.append(r.stderr.strip())
            time.sleep(0.2)

    rel = threading.Thread(target=releaser)
    rel.start()
    try:
        for _ in range(3):
            wait_for(lambda: len(load.acked) >= 5, timeout=60, what="mail flowing")
            pid = role_pid(n, "vault")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: role_pid(n, "vault") not in (None, pid), timeout=30,
                     what="the supervisor restarting the vault")
            time.sleep(1.5)
    finally:
        load.stop()
        stopping.set()
        rel.join(60)
    assert not load.other, load.other[:5]
    # Refusals only while the vault was away, and only temporary ones.
    assert all(code == 451 for _, code, _ in load.refused), load.refused[:5]
    # Whatever is still held is released now; a release asked twice delivers once.
    for q in n.cli_json("quarantine", "list", "--limit", "100000"):
        n.cli("quarantine", "release", q["id"])
    assert released, "no release succeeded while the vault was being killed"
    for qid in released:
        again = n.cli("quarantine", "release", qid, check=False)
        assert again.returncode != 0 and "no quarantined message" in again.stderr, again.stderr
    tokens = [tok for _, tok in load.acked]
    missing = lambda: sorted(set(tokens) - set(s.header_values("X-Token")))  # noqa: E731
    wait_for(lambda: not missing(), timeout=60,
             what=f"every acknowledged message delivered (quarantined ones once released): "
                  f"{missing()[:10]} {failures[:5]} {n.cli_json('queue', 'list')[:3]}")
    time.sleep(2)
    counts = {}
    for t in s.header_values("X-Token"):
        counts[t] = counts.get(t, 0) + 1
    twice = {t: c for t, c in counts.items() if c > 1 and t.endswith("0")}
    assert not twice, f"released more than once: {twice}"
