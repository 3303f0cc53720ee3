"""Passkeys (WebAuthn) against the real binary, with a software authenticator that answers
like a browser: registration only after a step-up, discoverable sign-in, passkey step-up,
one use per challenge, origin / signature / counter checks, rows written behind the vault's
back refused, isolation between accounts, survival of a KEK rotation, and the account page
(in Japanese) whose form removes one."""
import time
import urllib.parse

from portal_helpers import Client, PASSWORD, invite, totp
from webauthn_soft import SoftAuthenticator, b64u

BOB = "bob@acme.test"


def origin_of(n):
    return f"https://localhost:{urllib.parse.urlparse(n.portal_url()).port}"


LAST_STEP = {}


def fresh_code(secret):
    """A code of a step this account has not used yet (each login and step-up takes one, and
    a step is accepted once per account); waits only when the account is a step ahead."""
    now = int(time.time()) // 30
    step = max(now, LAST_STEP.get(secret, 0) + 1)
    while int(time.time()) // 30 < step - 1:  # one step ahead is within the allowed skew
        time.sleep(0.2)
    LAST_STEP[secret] = step
    return totp(secret, step * 30)


def enrol(n, email):
    secret = Client(n).enrol(invite(n, email, "user", "acme"))
    LAST_STEP[secret] = int(time.time()) // 30  # the enrolment's code used this step (or an earlier one)
    return secret


def login(n, email, secret):
    c = Client(n)
    st, _, doc = c.request("POST", "/api/login", {"email": email, "password": PASSWORD, "code": fresh_code(secret)})
    assert st == 200, doc
    c.csrf = doc["csrf_token"]
    return c


def register(c, auth, secret, name="laptop"):
    st, _, doc = c.request("POST", "/api/step-up", {"code": fresh_code(secret)})
    assert st == 200, doc
    st, _, ch = c.request("POST", "/api/passkeys/register/begin", {})
    assert st == 200, ch
    return ch, c.request("POST", "/api/passkeys/register/finish",
                         {"ceremony": ch["ceremony"], "name": name, "credential": auth.create(ch["options"])})


def passkey_login(n, auth, **kw):
    c = Client(n)
    st, _, ch = c.request("POST", "/api/passkeys/login/begin", {})
    assert st == 200, ch
    st, _, doc = c.request("POST", "/api/passkeys/login/finish",
                           {"ceremony": ch["ceremony"], "credential": auth.get(ch["options"], **kw)})
    if st == 200:
        c.csrf = doc["csrf_token"]
    return st, doc, c


def test_passkeys_register_sign_in_step_up_and_every_check_holds(node, sink):
    s = sink()
    n = node(config="[portal]\nlogins_per_minute = 1000\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    bob_secret = enrol(n, BOB)
    carol_secret = enrol(n, "carol@acme.test")
    origin = origin_of(n)
    assert n.banner_match(r"^portal: open it at (https://localhost:\d+);", "the passkey origin") == origin
    bob = login(n, BOB, bob_secret)
    auth = SoftAuthenticator(origin)

    # Adding a passkey is a sensitive act: not without a step-up.
    st, _, doc = bob.request("POST", "/api/passkeys/register/begin", {})
    assert st == 409 and "step-up" in doc["detail"], doc
    ch, (st, _, doc) = register(bob, auth, bob_secret)
    assert st == 200 and "added" in doc["message"], doc
    opts = ch["options"]["publicKey"]
    assert opts["rp"]["id"] == "localhost" and opts["user"]["name"] == BOB
    assert opts["authenticatorSelection"]["residentKey"] == "required"
    assert opts["authenticatorSelection"]["userVerification"] == "required"
    (cred_id,) = auth.creds
    # A ceremony is finished once.
    spare = SoftAuthenticator(origin)
    st, _, doc = bob.request("POST", "/api/passkeys/register/finish",
                             {"ceremony": ch["ceremony"], "credential": spare.create(ch["options"])})
    assert st == 401 and "expired or was used" in doc["detail"], doc
    st, _, doc = bob.request("GET", "/api/passkeys")
    assert st == 200 and [k["name"] for k in doc["passkeys"]] == ["laptop"], doc

    # Sign-in with the passkey alone: no name, no password, no code.
    st, doc, c = passkey_login(n, auth)
    assert st == 200 and doc["user"]["email"] == BOB, doc
    assert c.request("GET", "/api/me")[2]["user"]["email"] == BOB
    # What does not verify is refused, all in the same words: another origin (phishing),
    # a broken signature, no user verification, a counter that did not move (a clone).
    for kw in [dict(origin="https://login-acme.example"), dict(tamper=True), dict(flags=0x01),
               dict(counter=1)]:
        st, doc, _ = passkey_login(n, auth, **kw)
        assert st == 401 and "not accepted" in doc["detail"], (kw, doc)
    # A challenge answered twice: the second is refused.
    c2 = Client(n)
    ch = c2.request("POST", "/api/passkeys/login/begin", {})[2]
    answer = {"ceremony": ch["ceremony"], "credential": auth.get(ch["options"])}
    assert c2.request("POST", "/api/passkeys/login/finish", answer)[0] == 200
    assert c2.request("POST", "/api/passkeys/login/finish", answer)[0] == 401
    # An answer for another challenge does not fit this one.
    ch_a = Client(n).request("POST", "/api/passkeys/login/begin", {})[2]
    ch_b = Client(n).request("POST", "/api/passkeys/login/begin", {})[2]
    st, _, doc = Client(n).request("POST", "/api/passkeys/login/finish",
                                   {"ceremony": ch_b["ceremony"], "credential": auth.get(ch_a["options"])})
    assert st == 401, doc

    # A passkey confirms a session too (step-up without a code), which then allows adding
    # another passkey.
    st, doc, pc = passkey_login(n, auth)
    assert st == 200
    st, _, ch = pc.request("POST", "/api/step-up/passkey/begin", {})
    assert st == 200 and [x["id"] for x in ch["options"]["publicKey"]["allowCredentials"]] == [b64u(cred_id)], ch
    st, _, doc = pc.request("POST", "/api/step-up/passkey/finish",
                            {"ceremony": ch["ceremony"], "credential": auth.get(ch["options"])})
    assert st == 200 and "confirmed" in doc["message"], doc
    assert pc.request("POST", "/api/passkeys/register/begin", {})[0] == 200
    # Another account's session cannot finish bob's ceremony, nor remove bob's passkey.
    carol = login(n, "carol@acme.test", carol_secret)
    st, _, ch = pc.request("POST", "/api/step-up/passkey/begin", {})
    st, _, doc = carol.request("POST", "/api/step-up/passkey/finish",
                               {"ceremony": ch["ceremony"], "credential": auth.get(ch["options"])})
    assert st == 401 and "another session" in doc["detail"], doc
    assert carol.request("POST", "/api/step-up", {"code": fresh_code(carol_secret)})[0] == 200
    pk_id = bob.request("GET", "/api/passkeys")[2]["passkeys"][0]["id"]
    st, _, doc = carol.request("DELETE", f"/api/passkeys/{pk_id}")
    assert st == 403 and "no passkey" in doc["detail"], doc
    assert carol.request("GET", "/api/passkeys")[2]["passkeys"] == []

    # A passkey row written straight into the database (an attacker with the store but not
    # the vault's keys) signs nobody in.
    intruder = SoftAuthenticator(origin)
    carol_id = n.sql("SELECT id FROM users WHERE email = $1", "carol@acme.test")[0][0]
    real = n.sql("SELECT passkey, user_handle FROM passkeys WHERE id = $1", pk_id)[0]
    fake_options = {"publicKey": {"rp": {"id": "localhost"}, "user": {"id": b64u(b"x" * 16)},
                                  "challenge": b64u(b"c" * 32)}}
    intruder.create(fake_options)
    (fake_id,) = intruder.creds
    n.sql("INSERT INTO passkeys (user_id, cred_id, user_handle, name, passkey, mac, created_at) "
          "VALUES ($1, $2, $3, 'planted', $4, $5, 0)", int(carol_id), b64u(fake_id), real[1], real[0], "00" * 32)
    intruder.creds[fake_id][1] = bytes.fromhex(real[1].replace("-", ""))
    st, doc, _ = passkey_login(n, intruder)
    assert st == 401, doc

    # Passkeys outlive a KEK rotation (which ends every session).
    assert "second factor(s) and 1 spool key(s) re-wrapped" in n.cli("vault", "rotate-kek").stdout
    assert bob.request("GET", "/api/me")[0] == 401
    st, doc, bob = passkey_login(n, auth)
    assert st == 200 and doc["user"]["email"] == BOB, doc

    # Removing one needs a step-up; after it, the passkey signs nobody in.
    st, _, doc = bob.request("DELETE", f"/api/passkeys/{pk_id}")
    assert st == 403 and "step-up" in doc["detail"], doc
    # The account page lists it, in the browser's language; its form removes it after a
    # code (no script needed).
    st, _, page = bob.request("GET", "/account", headers={"Accept-Language": "ja"})
    assert st == 200 and "パスキー" in page and "laptop" in page and 'id="passkey-add"' in page, page[:2000]
    st, _, page = bob.request("GET", "/login", headers={"Accept-Language": "en"})
    assert "Log in with a passkey" in page
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode({"csrf": bob.csrf, "code": fresh_code(bob_secret)}).encode()
    st, r, _ = bob.request("POST", f"/account/passkeys/{pk_id}/remove", raw=body, headers=form)
    assert st == 303 and r.getheader("Location") == "/account?done=removed"
    assert bob.request("GET", "/api/passkeys")[2]["passkeys"] == []
    st, doc, _ = passkey_login(n, auth)
    assert st == 401, doc

    # The audit log has each act.
    records = [(r["principal"], r["action"], r["outcome"]) for r in n.cli_json("vault", "records")]
    assert ("user:bob@acme.test", "passkey-add", "ok") in records
    assert ("user:bob@acme.test", "passkey-remove", "ok") in records
    assert any(p == "user:bob@acme.test" and a == "login" and o.startswith("ok: passkey") for p, a, o in records)
    assert any(p == "user:bob@acme.test" and a == "step-up" and o == "ok" for p, a, o in records)
    assert any(p == "user:carol@acme.test" and a == "login" and "not the vault's" in o for p, a, o in records), records
