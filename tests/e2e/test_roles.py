"""Trust boundaries, tried as an attacker would: code running inside a role (the test-hooks
build lets the test play it) reaches for the KEK, the spool, the canary registry, the
database, the audit keys and the admin socket. The kernel (Landlock), mx's admin socket and
the vault must refuse each; the refusal is recorded and raised as an alert; nothing changes."""
import glob
import json
import os
import sys

import pytest

from conftest import STORE, admin, free_port, wait_for
from portal_helpers import Client


def probe_portal(n, probes):
    st, _, doc = Client(n).request("POST", "/api/test-hooks/probe", {"probes": probes})
    assert st == 200, doc
    return {json.dumps(r["probe"], sort_keys=True): r["outcome"] for r in doc["results"]}


def probe_mx(n, probes):
    reply = admin(n, {"cmd": "test-probe", "probes": probes})
    assert reply["ok"], reply
    return {json.dumps(r["probe"], sort_keys=True): r["outcome"] for r in reply["data"]["results"]}


def key(p):
    return json.dumps(p, sort_keys=True)


def setup(node, sink):
    """A node with mail queued (its route does not answer) and a canary planted."""
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", "smtp://127.0.0.1:9?tls=none")
    n.cli("canary", "plant", "--tenant", "acme")
    s = sink()
    import smtplib
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["al@acme.test"], b"Subject: queued\r\n\r\nQUEUED-MARKER\r\n")
    wait_for(lambda: n.cli_json("queue", "list"), what="a queued message")
    return n, s


@pytest.mark.intrusion
def test_code_in_the_portal_reaches_no_key_no_spool_no_database_and_is_caught(node, sink):
    n, _ = setup(node, sink)
    vault_dir = n.kek.parent
    segment = sorted(glob.glob(str(n.data_dir / "spool" / "seg-*.log")))[0]
    route_before = {t["name"]: t["route"] for t in n.cli_json("tenant", "list")}
    queued_before = [m["id"] for m in n.cli_json("queue", "list")]
    probes = [
        {"try": "read", "path": str(n.kek)},
        {"try": "read", "path": segment},
        {"try": "read", "path": str(vault_dir / "canaries")},
        {"try": "read", "path": str(vault_dir / "audit-keys")},
        {"try": "write", "path": str(vault_dir / "audit-keys")},
        {"try": "create", "path": str(vault_dir / "planted")},
        {"try": "list", "path": str(n.data_dir / "quarantine")},
    ]
    if STORE == "sqlite":
        probes += [{"try": "write", "path": str(n.data_dir / "sekisho.db")},
                   {"try": "read", "path": str(n.data_dir / "sekisho.db")}]
    out = probe_portal(n, probes)
    for p in probes:
        assert out[key(p)]["outcome"] == "denied", (p, out[key(p)])
    # mx's admin socket. Started as root, each role runs as its own user and the socket is
    # mx's and its group's (the vault's): the kernel refuses the portal's connection. Without
    # root, the portal connects but holds no token, so mx answers nothing it asks.
    own_users = os.geteuid() == 0
    sends = []
    for cmd in [{"cmd": "queue-list"}, {"cmd": "queue-delete", "id": queued_before[0]},
                {"cmd": "reload"}]:
        sent = {"try": "send", "path": str(n.data_dir / "admin.sock"), "line": json.dumps(cmd)}
        sends.append(sent)
        result = probe_portal(n, [sent])[key(sent)]
        if own_users:
            assert result["outcome"] == "denied", result
        else:
            reply = json.loads(result["detail"])
            assert reply == {"ok": False, "error": "only the local CLI may ask this",
                             "refusal": "not-for-roles"}, reply
    refused_by_kernel = len(probes) + (len(sends) if own_users else 0)
    # Caught: each kernel refusal is a record and a critical alert, within seconds.
    def denials():
        return [r for r in n.cli_json("vault", "records")
                if r["action"] == "sandbox-denial" and r["principal"] == "portal"]
    wait_for(lambda: len(denials()) >= refused_by_kernel, timeout=10,
             what="the portal's denials recorded")
    objects = {r["object"] for r in denials()}
    assert f"path={n.kek}" in objects and f"path={segment}" in objects, objects
    if own_users:
        assert f"socket={n.data_dir / 'admin.sock'}" in objects, objects
        assert {r["outcome"] for r in denials()} >= {"denied by the kernel (file permissions)"}
    alerts = n.cli_json("alerts", "list")
    by_rule = {(a["rule"], a["principal"]): a for a in alerts}
    assert by_rule[("sandbox-denial", "portal")]["severity"] == "critical"
    assert by_rule[("sandbox-denial", "portal")]["count"] >= refused_by_kernel
    overreach = [a for a in alerts if a["rule"] == "role-overreach"]
    if own_users:
        assert overreach == [], overreach
    else:
        assert {a["severity"] for a in overreach} == {"critical"} and len(overreach) == 3, overreach
    # Nothing changed: routes, the queue, the vault's directory.
    assert {t["name"]: t["route"] for t in n.cli_json("tenant", "list")} == route_before
    assert [m["id"] for m in n.cli_json("queue", "list")] == queued_before
    assert not (vault_dir / "planted").exists()


@pytest.mark.intrusion
def test_code_in_mx_reaches_no_vault_file_and_is_caught(node, sink):
    n, _ = setup(node, sink)
    vault_dir = n.kek.parent
    probes = [
        {"try": "read", "path": str(n.kek)},
        {"try": "read", "path": str(vault_dir / "canaries")},
        {"try": "read", "path": str(vault_dir / "audit-keys")},
        {"try": "write", "path": str(vault_dir / "audit-keys")},
        {"try": "create", "path": str(vault_dir / "planted")},
        {"try": "list", "path": str(vault_dir)},
    ]
    out = probe_mx(n, probes)
    for p in probes:
        assert out[key(p)]["outcome"] == "denied", (p, out[key(p)])
    # What mx needs stays open to it (the check above is not blind).
    segment = sorted(glob.glob(str(n.data_dir / "spool" / "seg-*.log")))[0]
    own = {"try": "read", "path": segment}
    assert probe_mx(n, [own])[key(own)]["outcome"] == "allowed"
    wait_for(lambda: len([r for r in n.cli_json("vault", "records")
                          if r["action"] == "sandbox-denial" and r["principal"] == "mx"]) >= len(probes),
             timeout=10, what="mx's denials recorded")
    (alert,) = [a for a in n.cli_json("alerts", "list") if a["rule"] == "sandbox-denial"]
    assert (alert["principal"], alert["severity"]) == ("mx", "critical")
    assert not (vault_dir / "planted").exists()
    assert (vault_dir / "canaries").exists(), "the registry is there; mx just cannot read it"


def test_the_portal_holds_no_store_and_acts_only_through_the_vault(node):
    """A portal without a session gets nothing from the vault; its own process holds no
    database file, and its Landlock rules are an allow-list of its own /proc entries (its TLS
    files were read before they took effect)."""
    n = node()
    line = n.banner_match(r"^(portal sandbox: .*)", "the portal's sandbox line")
    assert "Landlock fully enforced" in line and "its own /proc entries, read-only" in line, line
    from conftest import role_pid
    pid = role_pid(n, "portal")
    import os
    fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [f for f in fds if "sekisho.db" in f or "/spool/" in f], fds
    # An act without a session is refused by the vault (not by the portal).
    st, _, doc = Client(n).request("GET", "/api/tenants")
    assert st == 401, doc


@pytest.mark.skipif(os.geteuid() != 0, reason="roles get their own users when started as root")
def test_each_role_runs_as_its_own_user_and_the_files_say_whose_they_are(node, sink):
    """Started as root, the supervisor stays root and each role drops to its own user, as
    Postfix's daemons do; the files are owned so that the kernel keeps each role to its own."""
    import pwd
    import stat
    from conftest import role_pid
    n, _ = setup(node, sink)
    def uids(pid):
        line = next(l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:"))
        return set(int(u) for u in line.split()[1:])
    users = {role: pwd.getpwnam(f"sekisho-{role}").pw_uid for role in ("vault", "mx", "portal")}
    assert len(set(users.values())) == 3 and 0 not in users.values(), users
    for role, uid in users.items():
        assert uids(role_pid(n, role)) == {uid}, role  # real, effective, saved, file system
    assert uids(n.proc.pid) == {0}
    line = n.banner_match(r"^(roles run as their own users: .*)", "the users line")
    assert "sekisho-mx" in line, line
    def owner(p):
        st = os.stat(p)
        return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)
    assert owner(n.kek.parent) == ("sekisho-vault", 0o700)
    assert owner(n.kek)[0] == "sekisho-vault"
    assert owner(n.data_dir / "spool") == ("sekisho-mx", 0o700)
    # No spool key in the data directory: mx holds it in memory, the vault wrapped. (On
    # PostgreSQL, keys/ holds mx's database password, mx's alone.)
    assert not (n.data_dir / "keys" / "spool.key").exists()
    if (n.data_dir / "keys").exists():
        assert owner(n.data_dir / "keys") == ("sekisho-mx", 0o700)
    assert owner(n.data_dir / "admin.sock") == ("sekisho-mx", 0o660)
    assert owner(n.data_dir) == ("root", 0o2771)
    if STORE == "sqlite":
        assert owner(n.data_dir / "sekisho.db") == ("root", 0o660)
    # The vault answers a stranger (neither root nor a role) nothing, and says so.
    import subprocess
    ask = ("import json, socket, struct, sys\n"
           "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
           "h = json.dumps({'op': 'first-enrolment'}).encode()\n"
           "s.sendall(struct.pack('>I', len(h)) + h + struct.pack('>I', 0))\n"
           "n = struct.unpack('>I', s.recv(4))[0]; print(s.recv(n).decode())\n")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        sys.executable, "-c", ask, str(n.data_dir / "vault.sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer.get("refusal") == "forbidden", answer
    wait_for(lambda: [a for a in n.cli_json("alerts", "list") if a["rule"] == "vault-stranger"],
             timeout=10, what="the stranger alert")
    # No role was refused anything while it started and served (no false alarm).
    assert not [a for a in n.cli_json("alerts", "list") if a["rule"] == "sandbox-denial"]


@pytest.mark.skipif(os.geteuid() != 0, reason="roles get their own users when started as root")
def test_an_operator_may_keep_the_role_users_refusals_out_of_the_kernel_audit(node):
    """The audit rules cost every process on the host the kernel's per-call bookkeeping
    (docs/performance.md); `[sandbox] refusals = "quiet"` leaves them out and says so."""
    n = node(config='[sandbox]\nrefusals = "quiet"\n')
    line = n.banner_match(r"^(kernel audit watch: .*)", "the kernel audit line")
    assert 'refusals = \"quiet\"' in line or 'refusals = "quiet"' in line, line
    assert "Landlock denials by a role" in line, line


@pytest.mark.skipif(os.geteuid() != 0, reason="roles get their own users when started as root")
def test_a_node_the_role_users_cannot_reach_is_refused_but_the_demo_starts(tmp_path):
    """A data directory under a private directory (root's home, `mktemp -d`) cannot be
    reached by the role users: a node refuses with one line saying what to do; the demo (the
    README's first command, often run from a clone in root's home) starts, saying loudly that
    its roles run as root."""
    import subprocess
    from conftest import BIN, reachable_by_roles
    reachable_by_roles(tmp_path)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    args = ["serve", "--smtp-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--portal-listen", "off"]
    r = subprocess.run([str(BIN), "--data-dir", str(private / "node")] + args,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout
    assert f"cannot pass through {private}" in r.stderr and "chmod o+x" in r.stderr, r.stderr
    demo = subprocess.Popen([str(BIN), "--data-dir", str(private / "demo")] + args + ["--demo"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("next:"):
                break
        assert any(l.startswith("WARNING: roles run as root") for l in lines), lines
    finally:
        demo.terminate()
        demo.wait(30)


@pytest.mark.skipif(STORE != "postgres", reason="per-role database users are PostgreSQL's")
def test_code_in_mx_cannot_change_a_route_in_the_database(node, sink):
    """On PostgreSQL every role connects as its own database user (conftest runs `sekisho
    store grant-roles`): with mx's own login, code inside mx is refused a route change, an
    account read and the deletion of audit records by the database itself."""
    n, _ = setup(node, sink)
    before = {t["name"]: t["route"] for t in n.cli_json("tenant", "list")}
    for statement in ["UPDATE tenants SET route = 'smtp://attacker.example:25?tls=none'",
                      "INSERT INTO domains (tenant_id, domain) VALUES (1, 'evil.test')",
                      "SELECT * FROM users",
                      "SELECT * FROM secrets",
                      "DELETE FROM records",
                      "UPDATE records SET outcome = 'ok'"]:
        got = admin(n, {"cmd": "test-sql", "statement": statement})["data"]
        assert got["ok"] is False and "permission denied" in got["error"], (statement, got)
    # What mx does for mail it may still do (the check is not blind).
    got = admin(n, {"cmd": "test-sql", "statement": "SELECT count(*) FROM tenants"})["data"]
    assert got["ok"] is True, got
    assert {t["name"]: t["route"] for t in n.cli_json("tenant", "list")} == before
    # The node itself works as its users: mail is queued, the portal's acts run as the vault.
    assert n.cli_json("queue", "list")


def test_surface_lists_what_is_really_there_and_a_changed_listener_is_drift(node, tmp_path):
    n = node()
    n.portal_url()
    s = n.cli_json("surface")
    listeners = {(l["role"], l["kind"], l["protocol"].split()[0]): l["address"] for l in s["listeners"]}
    assert listeners[("mx", "tcp", "SMTP")] == f"127.0.0.1:{n.port}", listeners
    assert listeners[("mx", "tcp", "HTTP")] == f"127.0.0.1:{n.admin_port}"
    assert listeners[("portal", "tcp", "HTTPS")] == n.portal_url().removeprefix("https://")
    assert listeners[("vault", "unix", "vault")] == str(n.data_dir / "vault.sock")
    assert listeners[("mx", "unix", "admin")] == str(n.data_dir / "admin.sock")
    roles = {r["role"]: r for r in s["roles"]}
    assert set(roles) == {"vault", "mx", "portal"}
    assert all(r["no_new_privs"] and r["seccomp"] == 2 for r in roles.values()), roles
    assert "read-only" in roles["portal"]["landlock"] and str(n.kek.parent) in roles["mx"]["landlock"]
    if STORE == "sqlite":
        assert (roles["mx"]["holds_database"], roles["vault"]["holds_database"],
                roles["portal"]["holds_database"]) == (True, True, False)
    else:
        grants = s["database"]["roles"]

        def privileges(summary):
            out = {}
            for part in summary.split(": ", 1)[1].split("; "):
                p, tables = part.split(" on ", 1)
                out[p] = set(tables.split(", "))
            return out
        mx, vault = privileges(grants["mx"]), privileges(grants["vault"])
        assert "tenants" in mx["SELECT"] and "tenants" not in mx.get("UPDATE", set()), grants
        assert "users" not in mx["SELECT"] and "tenants" in vault["UPDATE"], grants
        assert grants["portal"].endswith("no privilege on any table") and "no login" in grants["portal"]
    assert s["compiled"] == ["test-hooks"], "this is the test build; the product's lists none"
    assert any(d.startswith("tokio ") for d in s["dependencies"]) and len(s["dependencies"]) > 100
    # A baseline of itself: no drift. The same node on another SMTP port: drift, alerted.
    baseline = tmp_path / "surface.json"
    baseline.write_text(json.dumps(s))
    assert "no drift" in n.cli("surface", "--baseline", str(baseline)).stdout
    n.stop()
    n.smtp_port = free_port()
    n.start()
    r = n.cli("surface", "--baseline", str(baseline), check=False)
    assert r.returncode != 0 and f"+ listener mx tcp 127.0.0.1:{n.smtp_port} SMTP" in r.stdout, r.stdout
    assert [a["rule"] for a in n.cli_json("alerts", "list")].count("surface-drift") == 1
