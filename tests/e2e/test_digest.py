"""The quarantine digest on the real binary: each recipient with newly quarantined mail gets
one e-mail through Sekisho's own queue, listing sender, time and verdict (never the sealed
subject or content), each with a signed, expiring one-click release link. The link opens a
page that asks first; confirming releases exactly that message, once; a forged, altered,
expired or foreign link releases nothing; malware needs a login."""
import email
import email.policy
import re
import time
from email.message import EmailMessage

from conftest import wait_for
from portal_helpers import QUARANTINE_ALL, Client, bare, send

LINK = re.compile(r"/digest/(dg1_[0-9a-f._A-Z]+)")


def digests(sink, rcpt):
    out = []
    for env, content in sink.messages():
        m = email.message_from_bytes(content, policy=email.policy.default)
        if env["rcpt_tos"] == [rcpt] and "Quarantine digest" in str(m["Subject"]):
            out.append((env, m))
    return out


def setup(node, sink, extra=""):
    s = sink()
    n = node(config=QUARANTINE_ALL + extra)
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    return n, s


def test_a_digest_lists_each_recipients_mail_and_its_link_releases_one_message_once(node, sink):
    n, s = setup(node, sink)
    send(n, "alice@acme.test", bare("DIGEST-A1 confidential subject text", "alice@acme.test"))
    send(n, "alice@acme.test", bare("DIGEST-A2", "alice@acme.test"))
    send(n, "bob@acme.test", bare("DIGEST-B1", "bob@acme.test"))
    items = n.cli_json("quarantine", "list")
    assert len(items) == 3
    time.sleep(2.5)   # the run leaves the last two seconds for the next one
    out = n.cli("digest", "send").stdout
    assert "2 digest(s) queued, listing 3 quarantined message(s)" in out, out
    wait_for(lambda: digests(s, "alice@acme.test") and digests(s, "bob@acme.test"), what="two digests")
    (env, alice), = digests(s, "alice@acme.test")
    assert env["mail_from"] in ("", "<>")            # null return path: nothing bounces back
    assert alice["Auto-Submitted"] == "auto-generated"
    text = alice.get_body(("plain",)).get_content()
    assert "2 message(s) to alice@acme.test" in text and "a@example.org" in text
    # Sealed content stays sealed: neither the body nor anything of it is in the digest.
    assert "DIGEST-A1" not in text and "confidential" not in text
    links = LINK.findall(text)
    assert len(links) == 2, text
    (_, bob), = digests(s, "bob@acme.test")
    bob_links = LINK.findall(bob.get_body(("plain",)).get_content())
    assert len(bob_links) == 1

    c = Client(n)
    # Opening the link asks; it releases nothing by itself (link previews, scanners).
    st, _, page = c.request("GET", f"/digest/{links[0]}")
    assert st == 200 and "a@example.org" in page and 'method="post"' in page, page
    assert len(n.cli_json("quarantine", "list")) == 3
    st, _, page = c.request("POST", f"/digest/{links[0]}", raw=b"",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200 and "alice@acme.test" in page, page
    released = wait_for(lambda: [m for m in s.messages() if b"DIGEST-A" in m[1]], what="release")
    assert len(released) == 1 and released[0][0]["rcpt_tos"] == ["alice@acme.test"]
    assert len(n.cli_json("quarantine", "list")) == 2
    # Once only: the message is gone from quarantine.
    st, _, page = c.request("GET", f"/digest/{links[0]}")
    assert st == 410, page
    st, _, page = c.request("POST", f"/digest/{links[0]}", raw=b"",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st >= 400, page
    assert len([m for m in s.messages() if b"DIGEST-A" in m[1]]) == 1

    # Forged and altered links: the vault's MAC does not match.
    tenant, qid, rcpt_hex, expires, mac = bob_links[0][4:].split(".")
    as_alice = f"dg1_{tenant}.{qid}.{'alice@acme.test'.encode().hex()}.{expires}.{mac}"
    later = f"dg1_{tenant}.{qid}.{rcpt_hex}.{int(expires) + 86400}.{mac}"
    for bad in [as_alice, later, bob_links[0][:-1] + ("0" if bob_links[0][-1] != "0" else "1"),
                "dg1_1.X.00.1.00"]:
        for method in ("GET", "POST"):
            st, _, page = c.request(method, f"/digest/{bad}", raw=b"" if method == "POST" else None,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert st == 403 and "not valid or has expired" in page, (bad, method, st)
    assert len(n.cli_json("quarantine", "list")) == 2
    # Bob's genuine link works for bob's message only.
    st, _, _ = c.request("POST", f"/digest/{bob_links[0]}", raw=b"",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200
    wait_for(lambda: [m for m in s.messages() if b"DIGEST-B1" in m[1]], what="bob's release")
    records = n.cli_json("vault", "records", "--limit", "1000")
    principals = {(r["principal"], r["action"], r["outcome"]) for r in records}
    assert ("link:alice@acme.test", "open-quarantine:release", "ok") in principals
    assert ("link:bob@acme.test", "open-quarantine:release", "ok") in principals
    assert any(r["action"] == "digest-links" for r in records)
    assert any(r["action"] == "digest-sent" for r in records)
    # The next run lists only what arrived since.
    assert "0 digest(s) queued" in n.cli("digest", "send").stdout


def test_digest_links_expire_and_malware_needs_a_login(node, sink):
    n, s = setup(node, sink, '[digest]\nlink_ttl = "3s"\n')
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "it@vendor.test", "carol@acme.test", "tool"
    m.set_content("the tool you asked for")
    m.add_attachment(b"\x7fELF" + bytes(120), maintype="application", subtype="octet-stream",
                     filename="tool.bin")
    send(n, "carol@acme.test", m.as_bytes().replace(b"\n", b"\r\n"))
    send(n, "carol@acme.test", bare("DIGEST-C2", "carol@acme.test"))
    time.sleep(2.5)
    n.cli("digest", "send")
    (_, digest), = wait_for(lambda: digests(s, "carol@acme.test"), what="carol's digest")
    links = LINK.findall(digest.get_body(("plain",)).get_content())
    assert len(links) == 2
    by_item = {l.split(".")[1]: l for l in links}
    malware = [i["id"] for i in n.cli_json("quarantine", "list") if "EXECUTABLE_ATTACHMENT" in i["symbols"]]
    c = Client(n)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    st, _, page = c.request("POST", f"/digest/{by_item[malware[0]]}", raw=b"", headers=form)
    assert st == 403 and "malware" in page and "log in" in page, page
    time.sleep(3.5)
    other = next(l for i, l in by_item.items() if i != malware[0])
    st, _, page = c.request("POST", f"/digest/{other}", raw=b"", headers=form)
    assert st == 403 and "expired" in page, page
    assert len(n.cli_json("quarantine", "list")) == 2
    assert not [x for x in s.messages() if b"DIGEST-C2" in x[1] and b"Quarantine digest" not in x[1]]


def test_the_digest_can_be_turned_off(node, sink):
    n, _ = setup(node, sink, '[digest]\nenabled = false\n')
    r = n.cli("digest", "send", check=False)
    assert r.returncode != 0 and "digest is off" in r.stderr
