"""Fixtures for Sekisho's end-to-end tests: the real binary, a real downstream (aiosmtpd),
real clients (smtplib, swaks, smtp-source). Everything listens on 127.0.0.1 only."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SEKISHO_BIN", ROOT / "target" / "debug" / "sekisho"))
HERE = Path(__file__).resolve().parent
CORPORA = Path(os.environ.get("SEKISHO_CORPORA", ROOT.parent / "shared" / "corpora"))


def reachable_by_roles(path: Path):
    """Started as root, a node runs its roles under their own users (sekisho-vault, -mx,
    -portal), as in production; they must pass through the directories above their data
    directory, which pytest makes mode 0700. Those under the temporary directory get o+x
    (search, not list), as an operator would give /var/lib."""
    if os.geteuid() != 0:
        return
    import tempfile
    tmp = Path(tempfile.gettempdir()).resolve()
    p = path.resolve()
    for d in [p, *p.parents]:
        if d == tmp or tmp not in d.parents:
            break
        mode = d.stat().st_mode
        if not mode & 0o001:
            d.chmod((mode & 0o7777) | 0o001)


def wait_for(cond, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """A running downstream SMTP server; messages land in self.out."""

    def __init__(self, out: Path, port=0, cert=None, key=None, auth=None, client_ca=None, host="127.0.0.1",
                 requiretls=False):
        self.out = out
        args = [sys.executable, str(HERE / "sink.py"), "--out", str(out), "--port", str(port), "--host", host]
        if cert:
            args += ["--cert", str(cert), "--key", str(key)]
        if auth:
            args += ["--auth", auth]
        if client_ca:
            args += ["--client-ca", str(client_ca)]
        if requiretls:
            args += ["--requiretls"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])

    def route(self, tls="none"):
        return f"smtp://127.0.0.1:{self.port}?tls={tls}"

    def messages(self):
        """[(envelope dict, content bytes)] in arrival order."""
        out = []
        for j in sorted(self.out.glob("*.json")):
            out.append((json.loads(j.read_text()), j.with_suffix(".eml").read_bytes()))
        return out

    def header_values(self, name: str):
        """The value of header `name` in each message that has it, in arrival order."""
        pattern = re.compile(rb"^" + re.escape(name.encode()) + rb": (\S+)", re.M | re.I)
        return [m.group(1).decode() for _, content in self.messages()
                if (m := pattern.search(content))]

    def wait(self, n, timeout=30.0):
        return wait_for(lambda: len(self.messages()) >= n and self.messages(), timeout,
                        what=f"{n} message(s) at the sink")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


class Dns:
    """A local DNS server (tests/e2e/dnsd.py) answering TXT and A records from self.zone."""

    def __init__(self, zone_file: Path):
        self.zone_file = zone_file
        self.zone = {}
        self.write()
        self.proc = subprocess.Popen([sys.executable, str(HERE / "dnsd.py"), "--zone", str(zone_file)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])

    def txt(self, name, *values):
        self.zone.setdefault(name.rstrip(".") + ".", {})["TXT"] = list(values)
        self.write()

    def a(self, name, *addresses):
        self.zone.setdefault(name.rstrip(".") + ".", {})["A"] = list(addresses)
        self.write()

    def aaaa(self, name, *addresses):
        self.zone.setdefault(name.rstrip(".") + ".", {})["AAAA"] = list(addresses)
        self.write()

    def write(self):
        tmp = self.zone_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.zone))
        tmp.rename(self.zone_file)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


#: The store engine of the nodes the tests start: "sqlite" (the embedded default) or
#: "postgres" (a fresh database per node on the server named by SEKISHO_TEST_POSTGRES).
STORE = os.environ.get("SEKISHO_E2E_STORE", "sqlite")
sqlite_only = pytest.mark.skipif(STORE != "sqlite", reason="inspects the SQLite file itself")


def postgres_database():
    """A fresh database on the test PostgreSQL server; its URL."""
    admin = os.environ.get("SEKISHO_TEST_POSTGRES")
    assert admin, "SEKISHO_TEST_POSTGRES is not set: scripts/test starts a server (scripts/pg)"
    name = f"sekisho_e2e_{os.getpid()}_{time.monotonic_ns()}"
    subprocess.run(["psql", admin, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)
    return admin.rsplit("/", 1)[0] + "/" + name


class Node:
    """A `sekisho serve` process with its own data directory. Unless the test's config has a
    [dns] section, the node resolves through the test's local DNS server, so no query leaves
    the machine. Unless it has a [store] section, its store is the engine of STORE."""

    dns_port = None

    def __init__(self, data_dir: Path, config: str = "", demo=False, smtp_port=0, env=None):
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        data_dir.mkdir(parents=True, exist_ok=True)
        reachable_by_roles(data_dir.parent)
        self.config_path = data_dir.parent / (data_dir.name + ".toml")
        if "[dns]" not in config:
            config = f'[dns]\nresolver = "127.0.0.1:{Node.dns_port}"\ntimeout = "1s"\n' + config
        self.store_url = None
        if STORE == "postgres" and "[store]" not in config:
            self.store_url = postgres_database()
            config = f'[store]\nurl = "{self.store_url}"\n' + config
        self.config_path.write_text(config)
        if self.store_url:
            # Every role then connects as its own database user with its own grants, so the
            # whole suite runs against what a production cluster is granted.
            subprocess.run(self.base_args() + ["store", "grant-roles"], check=True,
                           capture_output=True, env=self.env)
        self.demo = demo
        self.smtp_port = smtp_port
        self.proc = None
        self.start()

    @property
    def kek(self) -> Path:
        """The vault's KEK: beside the data directory, never inside it."""
        return self.data_dir.parent / (self.data_dir.name + ".vault") / "kek"

    def base_args(self):
        return [str(BIN), "--config", str(self.config_path), "--data-dir", str(self.data_dir)]

    def start(self):
        args = self.base_args() + ["serve", "--smtp-listen", f"127.0.0.1:{self.smtp_port}",
                                   "--admin-listen", "127.0.0.1:0", "--portal-listen", "127.0.0.1:0"]
        if self.demo:
            args.append("--demo")
        self.log = open(self.data_dir.parent / (self.data_dir.name + ".log"), "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=self.env)
        self.banner = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace").splitlines()[-20:]
                raise AssertionError(f"sekisho exited early ({rc}); {self.log.name} ends:\n"
                                     + "\n".join(tail))
            self.banner.append(line)
            m = re.match(r"smtp listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            m = re.match(r"admin listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.admin_port = int(m.group(1))
            if line.startswith("next:"):
                break
        # Keep draining stdout so the process never blocks on a full pipe.
        import threading
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def log_path(self) -> Path:
        """The node's stderr log (what the supervisor and its roles logged)."""
        self.log.flush()
        return Path(self.log.name)

    def _drain(self, proc):
        for line in proc.stdout:
            self.banner.append(line)

    def banner_match(self, pattern, what, timeout=20.0):
        """Group 1 of the first banner line matching `pattern` (waits for it)."""
        def find():
            for line in self.banner:
                m = re.search(pattern, line)
                if m:
                    return m.group(1)
        return wait_for(find, timeout, what=what)

    def portal_url(self, timeout=20.0):
        """The portal's https URL, from the portal role's banner line."""
        return self.banner_match(r"^portal listening on (https://127\.0\.0\.1:\d+)",
                                 "the portal's banner line", timeout)

    def enrolment_link(self, timeout=20.0):
        """The first-operator enrolment token printed by a node without accounts."""
        return self.banner_match(r"/enrol#(e1_[0-9a-f]+)", "the first-operator enrolment link", timeout)

    def cli(self, *args, check=True):
        r = subprocess.run(self.base_args() + list(args), capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"sekisho {' '.join(args)} failed: {r.stderr}")
        return r

    def sql(self, statement, *params):
        """Runs one SQL statement on the node's store, whichever engine; rows as tuples of
        strings (SQLite values as they are). Parameters are $1, $2, … (both engines)."""
        if self.store_url:
            import shlex
            bound = statement
            for i, v in reversed(list(enumerate(params, 1))):
                lit = str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'"
                bound = bound.replace(f"${i}", lit)
            r = subprocess.run(["psql", self.store_url, "-v", "ON_ERROR_STOP=1", "-qAt", "-F", "\t", "-c", bound],
                               check=True, capture_output=True, text=True)
            def value(v):  # bytea comes back as \x<hex>
                return bytes.fromhex(v[2:]) if re.fullmatch(r"\\x(?:[0-9a-f]{2})*", v) else v
            return [tuple(value(v) for v in line.split("\t")) for line in r.stdout.splitlines() if line]
        import sqlite3
        db = sqlite3.connect(self.data_dir / "sekisho.db")
        try:
            rows = db.execute(re.sub(r"\$(\d+)", r"?\1", statement), params).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def store_dump(self) -> bytes:
        """Everything the node's store holds, as stored: the SQLite files, or a dump of the
        PostgreSQL database with its byte columns decoded."""
        if self.store_url:
            text = subprocess.run(["pg_dump", "--data-only", self.store_url], check=True,
                                  capture_output=True).stdout
            blobs = b"".join(bytes.fromhex(h.decode()) for h in re.findall(rb"\\x((?:[0-9a-f]{2})+)", text))
            return text + blobs
        return b"".join(p.read_bytes() for p in self.data_dir.glob("sekisho.db*"))

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                tail = self.log_path().read_text(errors="replace").splitlines()[-40:]
                raise AssertionError("sekisho did not stop within 30 s of SIGTERM; "
                                     f"{self.log.name} ends:\n" + "\n".join(tail)) from None
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def dns(tmp_path_factory):
    d = Dns(tmp_path_factory.mktemp("dns") / "zone.json")
    Node.dns_port = d.port
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def _local_dns(dns):
    """Every test gets the session's DNS server (nodes point at it)."""
    yield dns


class Clamd:
    """A real clamd (Debian clamav-daemon) with the test signatures, on a Unix socket."""

    def __init__(self, work: Path):
        db = work / "db"
        db.mkdir()
        for sig in (CORPORA / "malware").glob("test-signatures.*"):
            (db / sig.name).write_bytes(sig.read_bytes())
        self.socket = work / "clamd.sock"
        conf = work / "clamd.conf"
        reachable_by_roles(work)
        # mx (its own user when the tests run as root) connects, as to /run/clamav's socket.
        conf.write_text(f"Foreground yes\nDatabaseDirectory {db}\nLocalSocket {self.socket}\nLocalSocketMode 666\n"
                        f"LogFile {work / 'clamd.log'}\nStreamMaxLength 60M\n")
        self.conf = conf
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["/usr/sbin/clamd", f"--config-file={self.conf}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, timeout=60, interval=0.2, what="clamd to answer PING")

    def kill(self):
        """SIGKILL, as the OOM killer would: no goodbye on open connections."""
        self.proc.kill()
        self.proc.wait(10)

    def ping(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.socket))
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def clamd(tmp_path_factory):
    c = Clamd(tmp_path_factory.mktemp("clamd"))
    yield c
    c.stop()


class S3:
    """A real S3-compatible server (moto's standalone server, from PyPI) on loopback, with one
    bucket. moto implements the S3 REST API with SigV4 requests as AWS clients send them."""

    def __init__(self, work: Path, bucket="sekisho-test"):
        self.port = free_port()
        self.bucket = bucket
        self.log = open(work / "moto.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)],
                                     stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"moto_server exited; see {self.log.name}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).read()
                return True
            except urllib.error.HTTPError:
                return True  # answering
            except OSError:
                return False
        wait_for(up, timeout=30, what="moto_server")
        import boto3  # installed with moto[server]
        self.client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                                   aws_access_key_id="moto-id",
                                   aws_secret_access_key="moto-secret-key")
        self.client.create_bucket(Bucket=bucket)

    def keys(self):
        """Every object key in the bucket."""
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listing.get("Contents", [])]

    def get(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def config(self, secret_file: Path):
        secret_file.write_text("moto-secret-key\n")
        return ('[blobs]\nbackend = "s3"\n[blobs.s3]\n'
                f'bucket = "{self.bucket}"\nendpoint = "{self.url}"\nregion = "us-east-1"\n'
                f'prefix = "q"\naccess_key_id = "moto-id"\nsecret_access_key_file = "{secret_file}"\n')

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def s3(tmp_path):
    server = S3(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def sink(tmp_path):
    sinks = []

    def make(name="sink", **kw):
        s = Sink(tmp_path / name, **kw)
        sinks.append(s)
        return s

    yield make
    for s in sinks:
        s.stop()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "intrusion: the test plays an intruder inside a role, so the kernel's "
        "denials are expected (without it, any denial of a role fails the test)")


@pytest.fixture
def node(tmp_path, request):
    nodes = []

    def make(name="node", config="", **kw):
        n = Node(tmp_path / name, config, **kw)
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.stop()
    # No false alarms: a role that only did its work was refused nothing by the kernel.
    if request.node.get_closest_marker("intrusion") is None:
        for n in nodes:
            n.log.flush()
            log = (n.data_dir.parent / (n.data_dir.name + ".log")).read_text(errors="replace")
            denied = [l for l in log.splitlines() if "may be probing for what it must not reach" in l]
            assert not denied, f"a role was refused by the kernel without an intruder: {denied[:3]}"


def role_pid(n, role):
    """The pid of a node's role process (a child of its supervisor, named sekisho-<role>), or
    None. The process name is readable even though the roles are non-dumpable."""
    for child in Path("/proc").glob("[0-9]*"):
        try:
            if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) != n.proc.pid:
                continue
            if (child / "comm").read_text().strip() == f"sekisho-{role}":
                return int(child.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def admin(n, request: dict) -> dict:
    """One request on a node's admin socket (newline-delimited JSON)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(n.data_dir / "admin.sock"))
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def received_prefix_and_rest(content: bytes):
    """Splits what Sekisho prepends (its Received header, then Authentication-Results and the
    X-Sekisho-* verdict headers) from the original content."""
    assert content.startswith(b"Received: from "), content[:80]
    end = content.index(b"\r\n", content.index(b" +0000")) + 2
    while content[end:].lower().startswith((b"x-sekisho-", b"authentication-results:")):
        end = content.index(b"\r\n", end) + 2
        while content[end:end + 1] in (b" ", b"\t"):
            end = content.index(b"\r\n", end) + 2
    return content[:end], content[end:]
