"""The deployment kit in deploy/: the systemd unit passes `systemd-analyze verify` and keeps
its `systemd-analyze security` exposure low; the sysusers file makes the role users as the
supervisor expects them; the minimal production configuration is valid; the Debian package
builds from the binary under test and installs (maintainer scripts included) into a dpkg
root of its own, then removes cleanly keeping configuration and data; a backup taken while
the node runs restores into a fresh data directory only with the KEK it was made under."""
import json
import os
import re
import shutil
import subprocess
import time
import tomllib

import pytest

from conftest import BIN, ROOT, STORE, Node, postgres_database, wait_for
from portal_helpers import QUARANTINE_ALL, bare, send

DEPLOY = ROOT / "deploy"


UNITS = ["sekisho.service", "sekisho-acme.service", "sekisho-acme.timer", "sekisho-cert.path",
         "sekisho-reload.service"]


def unit_for_test(tmp_path, name="sekisho.service"):
    """A unit with its commands pointing at the binary under test (verify checks it exists);
    the units it names beside it."""
    for u in UNITS:
        (tmp_path / u).write_text((DEPLOY / u).read_text().replace("/usr/bin/sekisho", str(BIN)))
    return tmp_path / name


def test_the_unit_verifies_and_its_exposure_is_low(tmp_path):
    unit = unit_for_test(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u) for u in UNITS)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "sekisho" not in r.stderr, r.stderr
    # The renewal job is confined too: it binds port 80 and writes the TLS directory, nothing else.
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=50",
                        str(tmp_path / "sekisho-acme.service")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=50", str(unit)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    level = float(re.search(r"Overall exposure level for sekisho\.service: ([\d.]+)", r.stdout).group(1))
    assert level <= 5.0, r.stdout
    text = (DEPLOY / "sekisho.service").read_text()
    for setting in ("ProtectSystem=strict", "NoNewPrivileges=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                    "ReadWritePaths=/var/lib/sekisho /var/lib/sekisho.vault", "User=root"):
        assert setting in text, setting
    # The capability bounding set names nothing the node does not use.
    caps = set(re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M).group(1).split())
    assert "CAP_SYS_ADMIN" not in caps and "CAP_SYS_PTRACE" not in caps and "CAP_NET_ADMIN" not in caps


def test_the_minimal_production_configuration_is_valid(tmp_path):
    r = subprocess.run([str(BIN), "--config", str(DEPLOY / "sekisho.toml"), "--data-dir", str(tmp_path / "d"),
                        "check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # The settings in effect, as TOML: defaults, the file and the flags together.
    effective = tomllib.loads(r.stdout)
    assert effective["server"]["hostname"] == "mx1.example.net"
    assert effective["server"]["smtp_listen"] == "0.0.0.0:25"
    assert effective["server"]["data_dir"] == str(tmp_path / "d")
    assert effective["limits"]["max_recipients"] == 1000 and effective["inspect"]["tag_score"] == 5.0
    assert effective["malware"]["clamd"] == "unix:/run/clamav/clamd.ctl"
    # Used as the configuration, it is the same configuration.
    again = tmp_path / "effective.toml"
    again.write_text(r.stdout)
    r2 = subprocess.run([str(BIN), "--config", str(again), "check-config"], capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0 and r2.stdout == r.stdout, r2.stderr


def test_the_debian_package_builds_installs_and_removes(tmp_path):
    out = subprocess.run([str(DEPLOY / "build-deb"), str(BIN), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, check=True).stdout.strip()
    contents = subprocess.run(["dpkg-deb", "--contents", out], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/bin/sekisho", "./usr/lib/systemd/system/sekisho.service",
                 "./usr/lib/systemd/system/sekisho-acme.timer", "./usr/lib/systemd/system/sekisho-cert.path",
                 "./usr/lib/sysusers.d/sekisho.conf", "./etc/sekisho/sekisho.toml",
                 "./usr/share/doc/sekisho/deploy.md"):
        assert path in contents, path
    # A dpkg root of its own: dpkg runs the maintainer scripts outside a chroot with DPKG_ROOT
    # set, as it does for a real install into /.
    root = tmp_path / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    dpkg = ["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends"]
    r = subprocess.run(dpkg + ["-i", out], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    v = subprocess.run([str(root / "usr/bin/sekisho"), "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("sekisho "), v
    passwd = {l.split(":")[0]: l.split(":") for l in (root / "etc/passwd").read_text().splitlines()}
    groups = {l.split(":")[0]: l.split(":")[2] for l in (root / "etc/group").read_text().splitlines()}
    # vault and mx share the data directory's group; the portal has a group of its own.
    assert passwd["sekisho-vault"][3] == passwd["sekisho-mx"][3] == groups["sekisho"]
    assert passwd["sekisho-portal"][3] != groups["sekisho"]
    assert all(passwd[u][6] == "/usr/sbin/nologin" for u in ("sekisho-vault", "sekisho-mx", "sekisho-portal"))
    assert (root / "var/lib/sekisho").is_dir()
    assert (root / "var/lib/sekisho.vault").stat().st_mode & 0o777 == 0o700
    # The shipped configuration is valid as installed.
    r = subprocess.run([str(root / "usr/bin/sekisho"), "--config", str(root / "etc/sekisho/sekisho.toml"),
                        "--data-dir", str(tmp_path / "check"), "check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Removal takes the program, keeps the configuration (a conffile) and the data.
    r = subprocess.run(dpkg + ["-r", "sekisho"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "usr/bin/sekisho").exists()
    assert (root / "etc/sekisho/sekisho.toml").exists() and (root / "var/lib/sekisho").is_dir()


def restore_target(tmp_path, source, name):
    """A fresh data directory (and, on PostgreSQL, a fresh database) with the source node's
    configuration otherwise; its config file where a Node of that name looks for it."""
    config = source.config_path.read_text()
    if source.store_url:
        config = config.replace(source.store_url, postgres_database())
    data = tmp_path / name
    data.mkdir()
    (tmp_path / f"{name}.toml").write_text(config)
    return data, [str(BIN), "--config", str(tmp_path / f"{name}.toml"), "--data-dir", str(data)]


def test_a_backup_restores_into_a_fresh_directory_and_refuses_a_foreign_kek(node, sink, tmp_path):
    s = sink()
    n = node(config=QUARANTINE_ALL)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", bare("BACKUP-MARKER", "bob@acme.test"))
    [held] = n.cli_json("quarantine", "list")
    # Taken while the node runs.
    backup = tmp_path / "backup"
    out = n.cli("backup", "--to", str(backup)).stdout
    assert "1 sealed blob(s)" in out and "no KEK" in out, out
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert len(manifest["files"]) >= 2 and all(len(f["sha256"]) == 64 for f in manifest["files"])
    # Nothing in it is readable without the KEK, which is not in it.
    kek = n.kek.read_bytes().strip()
    for f in backup.rglob("*"):
        if f.is_file():
            body = f.read_bytes()
            assert b"BACKUP-MARKER" not in body and kek not in body, f
    # Something the vault records after the backup: its pinned audit head moves past it.
    n.cli("user", "invite", "--email", "late@acme.test", "--role", "user", "--tenant", "acme")
    # A second backup into the same place, or into the data directory, is refused.
    for bad in (backup, n.data_dir / "b"):
        r = n.cli("backup", "--to", str(bad), check=False)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    n.stop()

    # A KEK that does not open it: refused, one line, nothing restored.
    data, cli = restore_target(tmp_path, n, "foreign")
    vault_dir = tmp_path / "foreign.vault"
    vault_dir.mkdir(mode=0o700)
    (vault_dir / "kek").write_text(os.urandom(32).hex())
    (vault_dir / "kek").chmod(0o600)
    r = subprocess.run(cli + ["restore", "--from", str(backup)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "does not open this backup" in r.stderr, r.stderr
    assert not (data / "sekisho.db").exists() and not (data / "quarantine").exists()
    # No KEK at all: refused, and none is created.
    data, cli = restore_target(tmp_path, n, "nokek")
    r = subprocess.run(cli + ["restore", "--from", str(backup)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "no KEK at" in r.stderr, r.stderr
    assert not (tmp_path / "nokek.vault" / "kek").exists()
    # A damaged backup: refused before anything is touched.
    blob = next(p for p in (backup / "quarantine").rglob("*") if p.is_file())
    good = blob.read_bytes()
    blob.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    data, cli = restore_target(tmp_path, n, "damaged")
    r = subprocess.run(cli + ["restore", "--from", str(backup)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "damaged" in r.stderr, r.stderr
    blob.write_bytes(good)

    # The vault's directory restored from its own backup: the restore opens, the node starts
    # and the held message is released intact to the tenant's server.
    data, cli = restore_target(tmp_path, n, "restored")
    shutil.copytree(n.kek.parent, tmp_path / "restored.vault")
    r = subprocess.run(cli + ["restore", "--from", str(backup)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "the KEK at" in r.stdout and "opens it" in r.stdout, r.stdout
    if n.store_url:  # the roles' database users are per database: made anew, as printed
        assert "grant-roles --rotate" in r.stdout, r.stdout
        subprocess.run(cli + ["store", "grant-roles", "--rotate"], check=True, capture_output=True)
    restored = Node(data, (tmp_path / "restored.toml").read_text())
    try:
        # Audit records made after the backup are gone: said by restore, raised at start
        # (the pin beside the KEK is not rolled back with the data).
        assert "records made after the backup are gone" in r.stdout, r.stdout
        tail = wait_for(lambda: [a for a in restored.cli_json("alerts", "list") if a["rule"] == "audit-tail"],
                        what="the audit-tail alert")
        assert tail[0]["severity"] == "critical", tail
        [again] = restored.cli_json("quarantine", "list")
        assert again["id"] == held["id"]
        restored.cli("quarantine", "release", held["id"])
        _, content = s.wait(1)[0]
        assert b"body BACKUP-MARKER" in content
    finally:
        restored.stop()


def fixtures():
    return sorted((ROOT / "tests" / "fixtures" / "upgrade").iterdir())


def test_every_earlier_versions_data_migrates_and_opens(node, sink, tmp_path):
    """The upgrade fixtures (scripts/make-upgrade-fixture, one per schema-changing release;
    SQLite): each restores with the binary under test — the store migrates forward — and its
    quarantined message is released intact."""
    if STORE == "postgres":
        pytest.skip("the fixtures are SQLite stores; the PostgreSQL migrations are the same files")
    assert fixtures(), "no upgrade fixture"
    for fixture in fixtures():
        name = f"from-{fixture.name}"
        data = tmp_path / name
        data.mkdir()
        (tmp_path / f"{name}.toml").write_text("")
        shutil.copytree(fixture / "vault", tmp_path / f"{name}.vault")
        (tmp_path / f"{name}.vault").chmod(0o700)
        (tmp_path / f"{name}.vault" / "kek").chmod(0o600)
        cli = [str(BIN), "--config", str(tmp_path / f"{name}.toml"), "--data-dir", str(data)]
        r = subprocess.run(cli + ["restore", "--from", str(fixture / "backup")], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"{fixture.name}: {r.stderr}"
        n = Node(data, "")
        s = sink()
        try:
            n.cli("tenant", "set-route", "acme", s.route())
            [held] = n.cli_json("quarantine", "list")
            assert held["rcpts"] == ["bob@acme.test"], held
            n.cli("quarantine", "release", held["id"])
            _, content = s.wait(1)[0]
            assert b"body UPGRADE-FIXTURE" in content, fixture.name
        finally:
            n.stop()


def test_the_grafana_dashboard_asks_only_for_series_a_node_serves(node):
    n = node()
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    import urllib.request
    served = urllib.request.urlopen(f"http://127.0.0.1:{n.admin_port}/metrics", timeout=10).read().decode()
    names = set(re.findall(r"^# TYPE (sekisho_\w+) ", served, re.M))
    for e in exprs:
        for name in re.findall(r"sekisho_\w+", e):
            assert re.sub(r"_(bucket|sum|count)$", "", name) in names, f"{name} in {e!r} is not served"


def self_signed(tmp_path, name):
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "30", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def served_name(port, starttls):
    """The CN of the certificate a listener serves (STARTTLS on SMTP, or TLS at once)."""
    import smtplib
    import ssl
    from cryptography import x509
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if starttls:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.starttls(context=ctx)
            der = c.sock.getpeercert(binary_form=True)
    else:
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as s:
                der = s.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def test_a_renewed_certificate_is_served_after_a_reload_and_a_broken_one_is_refused(node, sink, tmp_path):
    """`systemctl reload` (SIGHUP to the supervisor): the portal and mx read the renewed
    certificate; a pair that does not load is refused and the old one stays in service; mail
    flows before and after, and no client is refused while the roles restart (the supervisor
    holds the listening sockets)."""
    import signal
    import socket
    import threading
    from conftest import free_port
    s = sink()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    a_cert, a_key = self_signed(tmp_path, "a.example")
    shutil.copy(a_cert, cert)
    shutil.copy(a_key, key)
    port = free_port()
    n = node(config=f'[tls]\ncert = "{cert}"\nkey = "{key}"\n', smtp_port=port)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    send(n, "bob@acme.test", bare("BEFORE-RELOAD", "bob@acme.test"))
    assert served_name(port, True) == "a.example"
    portals = lambda: re.findall(r"^portal listening on https://127\.0\.0\.1:(\d+)", "".join(n.banner), re.M)
    assert served_name(int(wait_for(portals, what="the portal")[-1]), False) == "a.example"

    # A broken renewal: refused, the running roles keep serving the old certificate.
    key.write_text("not a key\n")
    n.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(l.startswith("reload refused") for l in n.banner), what="the refusal")
    assert served_name(port, True) == "a.example" and n.proc.poll() is None

    # The renewed pair: served by both after the reload.
    b_cert, b_key = self_signed(tmp_path, "b.example")
    shutil.copy(b_cert, cert)
    shutil.copy(b_key, key)
    before = len(portals())
    stop, tries, refused = threading.Event(), [], []

    def knock():
        while not stop.is_set():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=30).close()
                tries.append(1)
            except ConnectionRefusedError:
                refused.append(1)
            time.sleep(0.01)
    knocker = threading.Thread(target=knock)
    knocker.start()
    try:
        n.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(portals()) > before, timeout=60, what="the portal again")
        wait_for(lambda: served_name(port, True) == "b.example" or None, timeout=60, what="mx with the new certificate")
    finally:
        stop.set()
        knocker.join()
    assert tries and not refused, f"{len(refused)} of {len(tries) + len(refused)} connections refused during the reload"
    assert served_name(int(portals()[-1]), False) == "b.example"
    send(n, "bob@acme.test", bare("AFTER-RELOAD", "bob@acme.test"))
    got = b"".join(m[1] for m in s.wait(2))
    assert b"BEFORE-RELOAD" in got and b"AFTER-RELOAD" in got


def start_pebble(tmp_path, dns_port, http_port):
    """Debian's pebble (a test ACME CA) on loopback: its HTTPS with a certificate made here,
    http-01 validation against `http_port`, names resolved by the test's DNS server."""
    import socket
    from conftest import free_port
    # A private CA, and pebble's HTTPS certificate from it (a client refuses a CA as a leaf).
    ca, ca_key = tmp_path / "pebble-ca.crt", tmp_path / "pebble-ca.key"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=test ACME HTTPS CA",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                    "-keyout", str(ca_key), "-out", str(ca)], check=True, capture_output=True)
    cert, key, csr = tmp_path / "pebble.crt", tmp_path / "pebble.key", tmp_path / "pebble.csr"
    subprocess.run(["openssl", "req", "-new", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr)],
                   check=True, capture_output=True)
    ext = tmp_path / "pebble.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    cfg = tmp_path / "pebble.json"
    cfg.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{free_port()}",
        "certificate": str(cert), "privateKey": str(key), "httpPort": http_port, "tlsPort": free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    log = open(tmp_path / "pebble.log", "wb")
    proc = subprocess.Popen(["pebble", "-config", str(cfg), "-dnsserver", f"127.0.0.1:{dns_port}"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0"))

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return None
    wait_for(up, what="pebble")
    return proc, f"https://127.0.0.1:{port}/dir", ca


def served_names(port):
    """The DNS names of the certificate mx serves on STARTTLS, and its issuer."""
    import smtplib
    import ssl
    from cryptography import x509
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.starttls(context=ctx)
        cert = x509.load_der_x509_certificate(c.sock.getpeercert(binary_form=True))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), cert.issuer.rfc4514_string(), cert.serial_number


def test_acme_issues_renews_only_when_due_and_a_reload_serves_it(node, sink, dns, tmp_path):
    """`sekisho acme renew` against pebble: the http-01 challenge answered on its own
    listener, the certificate written, nothing renewed while it is good, `--force` renews,
    and after `systemctl reload` (SIGHUP) mx serves the CA's certificate."""
    import signal
    from conftest import free_port
    http_port = free_port()
    dns.a("mx1.acme.test", "127.0.0.1")
    pebble, directory, pebble_cert = start_pebble(tmp_path, dns.port, http_port)
    try:
        cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        a_cert, a_key = self_signed(tmp_path, "a.example")
        shutil.copy(a_cert, cert)
        shutil.copy(a_key, key)
        port = free_port()
        n = node(config=f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
                        f'[acme]\ndirectory = "{directory}"\nca_file = "{pebble_cert}"\n'
                        f'http_listen = "127.0.0.1:{http_port}"\ndomains = ["mx1.acme.test"]\n'
                        f'contact = "hostmaster@acme.test"\n', smtp_port=port)
        r = n.cli("acme", "renew")
        assert "written to" in r.stdout, r.stdout + r.stderr
        assert oct(cert.stat().st_mode & 0o777) == "0o600" and oct(key.stat().st_mode & 0o777) == "0o600"
        first = cert.read_bytes()
        # Good for long: nothing to do, nothing written.
        r = n.cli("acme", "renew")
        assert "nothing to renew" in r.stdout and cert.read_bytes() == first, r.stdout
        # Put in service by a reload.
        n.proc.send_signal(signal.SIGHUP)
        names = wait_for(lambda: v if (v := served_names(port))[0] == ["mx1.acme.test"] else None,
                         timeout=60, what="mx serving the ACME certificate")
        assert "Pebble" in names[1], names
        # --force renews.
        r = n.cli("acme", "renew", "--force")
        assert "written to" in r.stdout and cert.read_bytes() != first
        # A name the CA cannot validate: one clear line, the certificate on disk untouched.
        second = cert.read_bytes()
        bad = tmp_path / "bad.toml"
        bad.write_text(n.config_path.read_text().replace('domains = ["mx1.acme.test"]', 'domains = ["nowhere.acme.test"]'))
        r = subprocess.run([str(BIN), "--config", str(bad), "--data-dir", str(n.data_dir), "acme", "renew"],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "nowhere.acme.test" in r.stderr and cert.read_bytes() == second, r.stderr
    finally:
        pebble.terminate()
        pebble.wait(10)
