"""The audit log on the real binary: every vault act is chained and signed by the vault;
`audit verify` finds tampering and names the first bad record; a tenant's export verifies with
the stand-alone script of docs/audit.md and carries nothing of other tenants."""
import json
import smtplib
import subprocess
import sys
from pathlib import Path

from conftest import wait_for

QUARANTINE_ALL = ("[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"
                  '[audit]\ncheckpoint_interval = "1s"\n')
VERIFY = Path(__file__).resolve().parents[2] / "tools" / "verify-audit-export.py"


def quarantine(n, rcpt, marker):
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", [rcpt], f"To: x\r\n\r\nbody {marker}\r\n".encode())


def verify_export(path, *args):
    return subprocess.run([sys.executable, str(VERIFY), str(path), *args],
                          capture_output=True, text=True, timeout=60)


def test_audit_chain_verifies_detects_tampering_and_exports_per_tenant(node, sink, tmp_path):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    quarantine(n, "bob@acme.test", "A1")
    quarantine(n, "eve@beta.test", "B1")
    quarantine(n, "al@acme.test", "A2")
    ids = {(q["tenant"], q["mail_from"], q["rcpts"][0]): q["id"] for q in n.cli_json("quarantine", "list")}
    beta_id = next(v for (t, _, _), v in ids.items() if t == "beta")
    for qid in ids.values():
        n.cli("quarantine", "open", qid, "--break-glass", "audit test")
    records = n.cli_json("vault", "records", "--limit", "1000")
    head = len(records)
    # Directory changes from the CLI are in the log with the route they set.
    adds = [r for r in records if r["action"] == "tenant-add"]
    assert {r["object"] for r in adds} == {s.route()} and len(adds) == 2
    assert all(r["role"] == "cli" and r["principal"].startswith("cli:") for r in adds)

    def signed_to_head():
        out = n.cli("audit", "verify").stdout
        return f"signed through record {head} of {head}" in out and out
    out = wait_for(signed_to_head, timeout=20, what="a checkpoint of the head")
    assert f"{head} record(s)" in out

    # A tenant's export verifies on its own, and shows nothing of the other tenant.
    export = tmp_path / "acme.jsonl"
    n.cli("audit", "export", "--tenant", "acme", "--out", str(export))
    lines = [json.loads(l) for l in export.read_text().splitlines()]
    records = [l for l in lines if l["type"] == "record"]
    assert records and all(r["tenant_id"] == records[0]["tenant_id"] for r in records)
    assert beta_id not in export.read_text() and "beta" not in export.read_text()
    assert any(l["type"] == "link" for l in lines), "other tenants' records appear as bare links"
    key_id = next(l["key_id"] for l in lines if l["type"] == "key")
    r = verify_export(export, "--key", key_id)
    assert r.returncode == 0 and r.stdout.startswith(f"ok: {len(records)} record(s) of acme"), r.stdout
    # Editing the export is caught by the same script.
    forged = tmp_path / "forged.jsonl"
    forged.write_text(export.read_text().replace('"reason":"audit test"', '"reason":"routine"', 1))
    r = verify_export(forged)
    assert r.returncode == 1 and "do not match its hash" in r.stdout, r.stdout

    # Tampering with the log itself: `audit verify` exits non-zero naming the first bad record.
    n.stop()
    victim = int(n.sql("SELECT min(id) FROM records WHERE action LIKE 'open-quarantine%'")[0][0])
    n.sql("UPDATE records SET principal = 'cli:nobody' WHERE id = $1", victim)
    r = n.cli("audit", "verify", check=False)
    assert r.returncode != 0 and f"record {victim}: its contents do not match its hash (edited)" in r.stderr, r.stderr
    n.sql("DELETE FROM records WHERE id = $1", victim)
    r = n.cli("audit", "verify", check=False)
    assert r.returncode != 0 and f"record {victim} is missing" in r.stderr, r.stderr


def test_the_portal_exports_a_tenants_records_only_after_a_step_up(node, sink, tmp_path):
    """Exporting is a sensitive act: the vault makes the export for a stepped-up person only
    (tenant admins their tenant's, auditors a named tenant's), records it, and the file
    verifies like the CLI's."""
    import time
    from portal_helpers import Client, invite, totp
    s = sink()
    n = node(config=QUARANTINE_ALL + "[portal]\nprobe_threshold = 1000\n")
    for t in ("acme", "beta"):
        n.cli("tenant", "add", t, "--domain", f"{t}.test", "--route", s.route())
    quarantine(n, "bob@acme.test", "EXPORT-1")
    admin, beta, auditor, bob = Client(n), Client(n), Client(n), Client(n)
    secrets = {}
    for c, email, role, tenant in [(admin, "admin@acme.test", "tenant-admin", "acme"),
                                   (beta, "admin@beta.test", "tenant-admin", "beta"),
                                   (auditor, "soc@operator.test", "auditor", None),
                                   (bob, "bob@acme.test", "user", "acme")]:
        secrets[email] = c.enrol(invite(n, email, role, tenant))
        c.login(email, secrets[email])
    login_step = int(time.time() + 30) // 30
    # Before a step-up: refused, and the refusal is recorded.
    st, _, doc = admin.request("GET", "/api/audit/export")
    assert st == 403 and "step-up" in doc["detail"], doc
    st, _, doc = auditor.request("GET", "/api/audit/export")
    assert st == 403 and "name the tenant" in doc["detail"], doc
    st, _, doc = bob.request("GET", "/api/audit/export")
    assert st == 403, doc
    # A code is accepted once: the step-up needs the step after the login's.
    while int(time.time()) // 30 < login_step:
        time.sleep(0.2)
    for c, email in [(admin, "admin@acme.test"), (beta, "admin@beta.test"), (auditor, "soc@operator.test"),
                     (bob, "bob@acme.test")]:
        st, _, doc = c.request("POST", "/api/step-up", {"code": totp(secrets[email], time.time() + 30)})
        assert st == 200, (email, doc)
    st, _, doc = beta.request("GET", "/api/audit/export?tenant=acme")
    assert st == 403, doc
    st, _, doc = bob.request("GET", "/api/audit/export")
    assert st == 403 and "tenant admins" in doc["detail"], doc
    st, r, text = admin.request("GET", "/api/audit/export")
    assert st == 200 and r.getheader("Content-Type") == "application/jsonl", text
    assert "attachment" in r.getheader("Content-Disposition")
    export = tmp_path / "acme.jsonl"
    export.write_text(text)
    lines = [json.loads(l) for l in text.splitlines()]
    assert lines[0]["format"] == "sekisho-audit-export-v1" and lines[0]["tenant"] == "acme"
    assert "beta.test" not in text and "admin@beta.test" not in text
    records = [l for l in lines if l["type"] == "record"]
    r = verify_export(export)
    assert r.returncode == 0 and r.stdout.startswith(f"ok: {len(records)} record(s) of acme"), r.stdout
    st, _, text = auditor.request("GET", "/api/audit/export?tenant=beta")
    assert st == 200 and json.loads(text.splitlines()[0])["tenant"] == "beta"
    actions = [(r["principal"], r["action"], r["outcome"]) for r in n.cli_json("vault", "records", "--limit", "1000")]
    assert ("user:admin@acme.test", "audit-export", "refused: step-up needed") in actions
    assert ("user:admin@acme.test", "audit-export", "ok") in actions
    assert ("user:soc@operator.test", "audit-export", "ok") in actions
    # The settings page offers the same export as a form (with a code field).
    st, _, page = admin.request("GET", "/settings")
    assert st == 200 and 'action="/settings/audit-export"' in page


def test_deleting_the_newest_records_is_caught_at_once_and_by_verify(node, sink):
    """Records past the last signed checkpoint are pinned by the vault as they are appended
    (in a file beside the KEK): deleting them from the database raises a critical alert
    within a second, and `audit verify` names the pinned record that is gone."""
    s = sink()
    n = node(config=QUARANTINE_ALL.replace('"1s"', '"1h"\ncheckpoint_every = 100000'))
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    quarantine(n, "bob@acme.test", "TAIL-1")
    qid = n.cli_json("quarantine", "list")[0]["id"]
    n.cli("quarantine", "open", qid, "--break-glass", "tail test")
    pin = n.kek.parent / "audit-head"
    head = int(n.sql("SELECT max(id) FROM records")[0][0])
    wait_for(lambda: pin.exists() and int(pin.read_text().split()[0]) >= head, timeout=10,
             what="the vault pinning the head")
    pinned = int(pin.read_text().split()[0])
    assert n.cli("audit", "verify").returncode == 0
    # The break-glass open (the last thing an intruder at the console would hide) goes,
    # while the node is down.
    n.stop()
    pinned = int(pin.read_text().split()[0])  # the vault pins once more as it stops
    n.sql("DELETE FROM records WHERE id >= $1", pinned - 1)
    r = n.cli("audit", "verify", check=False)
    assert r.returncode != 0 and f"record {pinned}: the log ends at record {pinned - 2}" in r.stderr, r.stderr
    # The vault, started again, sees it at its first look and raises it.
    n.start()
    alert = wait_for(lambda: [a for a in n.cli_json("alerts", "list") if a["rule"] == "audit-tail"],
                     timeout=10, what="the audit-tail alert")[0]
    assert alert["severity"] == "critical" and f"pinned record {pinned}" in alert["summary"], alert
