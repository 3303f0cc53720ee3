"""What the portal tests share: an HTTPS client that keeps the session cookie and CSRF token,
RFC 6238 codes, invitations through the CLI, and mail that the test config quarantines."""
import base64
import hashlib
import hmac
import http.client
import json
import smtplib
import ssl
import struct
import time
import urllib.parse

QUARANTINE_ALL = "[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"
PASSWORD = "correct horse battery staple"


def totp(secret_b32, at=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000)


class Client:
    """HTTPS to the portal, trusting only the node's own certificate; keeps the cookie."""

    def __init__(self, node):
        url = urllib.parse.urlparse(node.portal_url())
        self.host, self.port = url.hostname, url.port
        self.ctx = ssl.create_default_context(cafile=str(node.data_dir / "tls" / "cert.pem"))
        self.ctx.check_hostname = False  # the generated certificate names the host, not 127.0.0.1
        self.cookie = None
        self.csrf = None
        self.source = None  # a loopback address to send from (e.g. 127.0.1.9)

    def request(self, method, path, body=None, headers=None, raw=None):
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=10,
                                        source_address=(self.source, 0) if self.source else None)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if self.cookie:
            h.setdefault("Cookie", self.cookie)
        if self.csrf and method not in ("GET", "HEAD"):
            h.setdefault("X-CSRF-Token", self.csrf)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode(errors="replace")
        c.close()
        set_cookie = r.getheader("Set-Cookie")
        if set_cookie and set_cookie.startswith("sekisho_session="):
            value = set_cookie.split(";")[0]
            self.cookie = value if value != "sekisho_session=" else None
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text
        return r.status, r, doc

    def enrol(self, token, secret_at=None):
        st, _, doc = self.request("POST", "/api/enrol", {"token": token, "password": PASSWORD})
        assert st == 200, doc
        secret = doc["totp_secret"]
        assert doc["otpauth_uri"].startswith("otpauth://totp/Sekisho:") and secret in doc["otpauth_uri"]
        st, _, doc = self.request("POST", "/api/enrol/confirm", {"token": token, "code": totp(secret)})
        assert st == 200, doc
        return secret

    def login(self, email, secret):
        # The enrolment used the current step; a login uses the next one (a code is never
        # accepted twice, and one step of clock skew is allowed).
        st, r, doc = self.request("POST", "/api/login", {
            "email": email, "password": PASSWORD, "code": totp(secret, time.time() + 30)})
        assert st == 200, doc
        cookie = r.getheader("Set-Cookie")
        for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
            assert attr in cookie, cookie
        self.csrf = doc["csrf_token"]
        return doc["user"]


def problem(doc, status):
    assert isinstance(doc, dict) and doc["status"] == status and doc["title"] and doc["detail"], doc


def invite(n, email, role, tenant=None):
    args = ["user", "invite", "--email", email, "--role", role] + (["--tenant", tenant] if tenant else [])
    out = n.cli(*args).stdout
    return out.split("/enrol#")[1].split()[0]


def bare(marker, to):
    return f"To: {to}\r\nX-Marker: {marker}\r\n\r\nbody {marker}\r\n".encode()


def send(n, rcpt, body):
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", [rcpt], body)
