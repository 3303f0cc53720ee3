"""Inspection on the SMTP path of the real binary: verdicts before the reply to DATA."""
import json
import os
import re
import signal
from pathlib import Path
import smtplib
import subprocess

import pytest

from conftest import BIN, CORPORA, received_prefix_and_rest, role_pid, wait_for

GOOD = (b"From: a@example.org\r\nTo: bob@acme.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <1@example.org>\r\nSubject: hello\r\n\r\nhi\r\n")


def gtube_message():
    sample = CORPORA / "spam" / "spamassassin-samples" / "sample-spam.txt"
    raw = sample.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"GTUBE" in raw
    return raw


def test_gtube_is_rejected_at_data_and_traced(node, sink):
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("spammer@example.org", ["bob@acme.test"], gtube_message())
        assert e.value.smtp_code == 554
        assert e.value.smtp_error.startswith(b"5.7.1 Message rejected by content policy")
        # The reply says why (the sender's bounce will): the heaviest symbols by name.
        assert b": GTUBE" in e.value.smtp_error, e.value.smtp_error
        # The session goes on: a clean message after it is accepted.
        assert c.sendmail("a@example.org", ["bob@acme.test"], GOOD) == {}
    env, content = s.wait(1)[0]
    assert b"Subject: hello" in content
    t = wait_for(lambda: (t := n.cli_json("trace", "--from", "spammer@example.org")) and t[0]["events"] and t,
                 what="the rejection in the trace")
    assert t[0]["verdict"] == "reject"
    assert "GTUBE(1000.00)" in t[0]["symbols"]
    assert [e["event"] for e in t[0]["events"]] == ["reject"]
    # The text trace explains the verdict too: score, and each symbol with its reason.
    text = n.cli("trace", "--from", "spammer@example.org").stdout
    assert re.search(r"verdict reject score 10\d\d\.\d\d\n", text), text
    assert "GTUBE(1000.00) The GTUBE test string" in text, text
    import urllib.request
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{n.admin_port}/metrics").read().decode()
    assert 'sekisho_verdicts_total{verdict="reject"} 1' in metrics
    assert 'sekisho_verdicts_total{verdict="deliver"} 1' in metrics
    # Logs written to a file carry no colour escapes.
    assert b"\x1b[" not in n.log_path().read_bytes()


def test_quarantine_is_sealed_opened_through_the_vault_and_released_intact(node, sink, tmp_path):
    s = sink()
    # Missing Date/Message-ID/Subject/From scores 4.5 by default (more with SPF/DKIM none):
    # quarantine from 4.
    n = node(config="[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    original = b"To: bob@acme.test\r\nX-Marker: QMARK-7f3a\r\n\r\nbare QMARK-BODY-7f3a\r\n"
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        assert c.sendmail("a@example.org", ["bob@acme.test", "carol@acme.test"], original) == {}
    q = n.cli_json("quarantine", "list")
    assert len(q) == 1 and q[0]["tenant"] == "acme" and q[0]["verdict"] == "quarantine"
    assert q[0]["rcpts"] == ["bob@acme.test", "carol@acme.test"] and q[0]["mail_from"] == "a@example.org"
    assert "MISSING_FROM(2.00)" in q[0]["symbols"] and q[0]["sealed_to"].startswith("age1")
    qid = q[0]["id"]
    assert n.cli_json("queue", "list") == [], "quarantine is not the spool any more"
    assert s.messages() == []
    # Nothing readable at rest: not in the blob, not in the database, not anywhere.
    hits = [p for p in n.data_dir.rglob("*") if p.is_file() and b"QMARK" in p.read_bytes()]
    assert hits == [], hits
    # Opening needs a reason and goes through the vault; it is recorded.
    r = n.cli("quarantine", "open", qid, "--reason", "", check=False)
    assert r.returncode != 0 and "--reason" in r.stderr
    # Reading a tenant's mail from the console needs the tenant's lockbox, or breaking the
    # glass, which is recorded and raised.
    r = n.cli("quarantine", "open", qid, "--reason", "user asked what this was", check=False)
    assert r.returncode != 0 and "needs a lockbox the tenant approved" in r.stderr, r.stderr
    assert n.cli_json("alerts", "list") == []
    opened = n.cli("quarantine", "open", qid, "--break-glass", "user asked what this was").stdout
    assert "QMARK-BODY-7f3a" in opened and "X-Sekisho-Verdict: quarantine" in opened
    (glass,) = n.cli_json("alerts", "list")
    assert (glass["rule"], glass["severity"]) == ("break-glass", "critical"), glass
    assert "user asked what this was" in glass["summary"]
    show = n.cli("quarantine", "show", qid).stdout
    assert "acme" in show and "QMARK" not in show
    # Release: delivered with the original envelope, byte-identical after our trace headers.
    n.cli("quarantine", "release", qid)
    env, content = s.wait(1)[0]
    assert sorted(env["rcpt_tos"]) == ["bob@acme.test", "carol@acme.test"]
    assert env["mail_from"] == "a@example.org"
    prefix, rest = received_prefix_and_rest(content)
    assert rest == original
    assert b"X-Sekisho-Verdict: quarantine\r\n" in content
    assert n.cli_json("quarantine", "list") == []
    r = n.cli("quarantine", "open", qid, "--break-glass", "again", check=False)
    assert r.returncode != 0 and "no quarantined message" in r.stderr
    rows = n.sql("SELECT principal, role, action, object, reason, outcome FROM records ORDER BY id")
    actions = [(r[2], r[5]) for r in rows if r[3] == qid]
    assert ("open-quarantine:read", "ok") in actions and ("open-quarantine:release", "ok") in actions
    assert ("release", "ok") in actions
    assert any(r[4] == "user asked what this was" and r[0].startswith("cli:") for r in rows)


def test_quarantine_delete_and_vault_outage(node, sink):
    s = sink()
    n = node(config="[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["bob@acme.test"], b"To: bob@acme.test\r\n\r\nbare\r\n")
    qid = n.cli_json("quarantine", "list")[0]["id"]
    n.cli("quarantine", "delete", qid)
    assert n.cli_json("quarantine", "list") == []
    assert not list((n.data_dir / "quarantine").rglob("*.age"))
    r = n.cli("quarantine", "show", qid, check=False)
    assert r.returncode != 0 and "no quarantined message" in r.stderr
    # The vault is a separate process: stopped, a tenant that has no key yet cannot be
    # quarantined (451, the sender retries) — nothing is accepted that could not be sealed.
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    vault_pid = role_pid(n, "vault")
    os.kill(vault_pid, signal.SIGSTOP)
    try:
        with smtplib.SMTP("127.0.0.1", n.port) as c:
            with pytest.raises(smtplib.SMTPDataError) as e:
                c.sendmail("a@example.org", ["x@beta.test"], b"To: x@beta.test\r\n\r\nbare\r\n")
            assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.3.0")
    finally:
        os.kill(vault_pid, signal.SIGCONT)
    # Killed, the vault is restarted by the supervisor, and everything works again.
    os.kill(vault_pid, signal.SIGKILL)
    wait_for(lambda: role_pid(n, "vault") not in (None, vault_pid), timeout=15, what="vault restart")
    def quarantined():
        try:
            with smtplib.SMTP("127.0.0.1", n.port) as c:
                return c.sendmail("a@example.org", ["x@beta.test"], b"To: x@beta.test\r\n\r\nbare\r\n") == {}
        except smtplib.SMTPDataError:
            return False
    wait_for(quarantined, timeout=15, what="quarantine after the vault restart")
    assert [q["tenant"] for q in n.cli_json("quarantine", "list")] == ["beta"]


def test_forged_verdict_and_authentication_headers_are_stripped(node, sink):
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    # RFC 8601 §5: results claiming our own authserv-id (the node's host name) are a forgery;
    # another server's results stay.
    theirs = b"Authentication-Results: upstream.example.org; spf=pass\r\n"
    forged = GOOD.replace(b"Subject: hello\r\n", b"Subject: hello\r\nX-Sekisho-Verdict: deliver\r\nX-Sekisho-Score: -100\r\n"
                          b"Authentication-Results: SEKISHO.localhost;\r\n dkim=pass header.d=bank.example\r\n" + theirs)
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["bob@acme.test"], forged)
    _, content = s.wait(1)[0]
    assert content.count(b"X-Sekisho-Verdict:") == 1
    assert b"X-Sekisho-Score: -100" not in content
    assert b"header.d=bank.example" not in content
    assert content.count(b"Authentication-Results: sekisho.localhost;") == 1
    _, rest = received_prefix_and_rest(content)
    assert rest == GOOD.replace(b"Subject: hello\r\n", b"Subject: hello\r\n" + theirs)


def test_check_command_runs_the_same_pipeline(tmp_path):
    spam = tmp_path / "gtube.eml"
    spam.write_bytes(gtube_message())
    ham = tmp_path / "ham.eml"
    ham.write_bytes(GOOD)
    from conftest import Node
    r = subprocess.run([str(BIN), "--data-dir", str(tmp_path / "d"), "--dns", f"127.0.0.1:{Node.dns_port}",
                        "check", "--json", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    by_file = {l["file"].rsplit("/", 1)[1]: l for l in lines}
    assert by_file["gtube.eml"]["action"] == "reject"
    assert by_file["gtube.eml"]["symbols"][0]["symbol"] == "GTUBE"
    assert by_file["ham.eml"]["action"] == "deliver" and by_file["ham.eml"]["score"] < 5.0
    names = [s["symbol"] for s in by_file["ham.eml"]["symbols"]]
    assert "SPF_NONE" in names and "DKIM_NONE" in names   # answered by the local DNS server
    # Each authentication result in RFC 8601 words beside the symbols.
    auth = by_file["ham.eml"]["auth"]
    assert auth["spf"] == "none" and auth["dkim"] == [] and auth["arc"] == "none", auth
    assert auth["dmarc"] in ("none", "temperror"), auth


def test_spf_and_dmarc_through_the_local_dns(node, sink, dns):
    s = sink()
    dns.txt("spf-pass.test", "v=spf1 ip4:127.0.0.0/8 -all")
    dns.txt("spf-fail.test", "v=spf1 ip4:192.0.2.0/24 -all")
    dns.txt("_dmarc.spf-fail.test", "v=DMARC1; p=reject")
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    ok = GOOD.replace(b"From: a@example.org", b"From: a@spf-pass.test")
    forged = GOOD.replace(b"From: a@example.org", b"From: ceo@spf-fail.test")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@spf-pass.test", ["bob@acme.test"], ok)
        # SPF fail (3) + DMARC p=reject fail (12) = 15: rejected at DATA.
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("ceo@spf-fail.test", ["bob@acme.test"], forged)
        assert e.value.smtp_code == 554
    _, content = s.wait(1)[0]
    ar = content.split(b"Authentication-Results: ", 1)[1].split(b"\r\nX-Sekisho", 1)[0]
    assert b"spf=pass" in ar and b"smtp.mailfrom=a@spf-pass.test" in ar
    assert b"dkim=none" in ar
    assert ar.startswith(b"sekisho.localhost;")
    t = wait_for(lambda: (t := n.cli_json("trace", "--from", "ceo@spf-fail.test")) and t, what="trace")
    assert "SPF_FAIL(3.00)" in t[0]["symbols"] and "DMARC_REJECT(12.00)" in t[0]["symbols"]


def test_dns_block_lists_for_the_client_and_for_links(node, sink, dns, tmp_path):
    """IP and domain lists answered by the local DNS server with a test zone."""
    dns.a("99.2.0.192.bl.test", "127.0.0.2")
    dns.a("98.2.0.192.bl.test", "127.255.255.254")     # "query refused": not a listing
    dns.a("evil-shop.test.dbl.test", "127.0.1.2")
    s = sink()
    n = node(config='[[dnsbl]]\nzone = "bl.test"\nkind = "ip"\n'
                    '[[dnsbl]]\nzone = "dbl.test"\nkind = "domain"\nlisted = ["127.0.1.2"]\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    linked = GOOD.replace(b"\r\n\r\nhi", b"\r\n\r\nsee https://www.evil-shop.test/deal now")
    clean = GOOD.replace(b"\r\n\r\nhi", b"\r\n\r\nsee https://www.good-shop.test/deal now")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["bob@acme.test"], linked)
        c.sendmail("a@example.org", ["carol@acme.test"], clean)
    got = {m[0]: m[1] for m in [(b"evil" in content, content) for _, content in s.wait(2)]}
    assert b"DNSBL_LINK(4.00)" in got[True]
    assert b"DNSBL" not in got[False]
    t = wait_for(lambda: (t := n.cli_json("trace", "--rcpt", "bob@acme.test")) and t, what="trace")
    assert "DNSBL_LINK" in t[0]["symbols"]
    # Client IPs (the SMTP tests connect from loopback, which is never looked up): check --ip.
    (tmp_path / "m.eml").write_bytes(clean)
    def symbols(ip):
        r = n.cli("check", "--json", "--ip", ip, str(tmp_path / "m.eml"))
        return [x["symbol"] for x in json.loads(r.stdout)["symbols"]]
    assert "DNSBL_CLIENT" in symbols("192.0.2.99")
    assert "DNSBL_CLIENT" not in symbols("192.0.2.98")
    assert "DNSBL_CLIENT" not in symbols("192.0.2.97")


def test_lookalike_sender_and_feed_link_are_caught(node, sink):
    s = sink()
    feed = CORPORA / "phishing" / "eth-phishing-detect" / "config.json"
    n = node(config=f'[inspect]\nphishing_feed = "{feed}"\nprotected_brands = ["paypal.com"]\n')
    n.cli("tenant", "add", "acme", "--domain", "acme-corp.test", "--route", s.route())
    ceo = GOOD.replace(b"From: a@example.org", b"From: CEO <ceo@acme-c0rp.test>")
    wallet = GOOD.replace(b"Subject: hello\r\n\r\nhi\r\n",
                          b"Subject: claim\r\nContent-Type: text/html\r\n\r\n"
                          b"<a href=\"https://nfts-mints.com/claim\">https://www.acme-corp.test/claim</a>\r\n")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("ceo@acme-c0rp.test", ["cfo@acme-corp.test"], ceo)
        # Feed (10) + link text mismatch (3) + … : quarantined or rejected, never delivered as is.
        try:
            c.sendmail("a@example.org", ["cfo@acme-corp.test"], wallet)
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 554
    env, content = s.wait(1)[0]
    assert b"LOOKALIKE_DOMAIN" in content
    t = wait_for(lambda: (t := n.cli_json("trace", "--rcpt", "cfo@acme-corp.test")) and len(t) == 2 and t,
                 what="both messages in the trace")
    by_verdict = {m["mail_from"]: m for m in t}
    assert "PHISH_FEED_DOMAIN(10.00)" in by_verdict["a@example.org"]["symbols"]
    assert "LINK_TEXT_MISMATCH(2.00)" in by_verdict["a@example.org"]["symbols"]
    assert by_verdict["a@example.org"]["verdict"] in ("quarantine", "reject")
    assert "LOOKALIKE_DOMAIN(6.00)" in by_verdict["ceo@acme-c0rp.test"]["symbols"]


def test_the_new_users_paypal_phish_is_held_though_its_own_domain_authenticates(node, sink, dns):
    """Display name "PayPal", link text showing www.paypal.com, sent from a homoglyph inside a
    combosquat of the protected brand whose SPF and DMARC pass (as a phisher's own domain's
    do): the lookalike and its lure compose, and the default policy holds it."""
    dns.txt("paypa1-account-verify.com", "v=spf1 ip4:127.0.0.0/8 -all")
    dns.txt("_dmarc.paypa1-account-verify.com", "v=DMARC1; p=none")
    s = sink()
    n = node(config='[inspect]\nprotected_brands = ["paypal.com"]\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    phish = (b"From: PayPal <service@paypa1-account-verify.com>\r\nTo: bob@acme.test\r\n"
             b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <p@paypa1-account-verify.com>\r\n"
             b"Subject: Your account is limited\r\nContent-Type: text/html\r\n\r\n"
             b"<p>Please confirm your details: <a href=\"https://login.paypa1-account-verify.com/x\">"
             b"https://www.paypal.com/signin</a></p>\r\n")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        try:
            c.sendmail("service@paypa1-account-verify.com", ["bob@acme.test"], phish)
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 554
    t = wait_for(lambda: (t := n.cli_json("trace", "--rcpt", "bob@acme.test")) and t, what="trace")
    symbols = t[0]["symbols"]
    assert "SPF_PASS" in symbols and "DMARC_PASS" in symbols, symbols
    assert "LOOKALIKE_DOMAIN" in symbols and "LOOKALIKE_LURE" in symbols, symbols
    assert t[0]["verdict"] in ("quarantine", "reject"), t[0]


def test_without_clamd_the_banner_and_metrics_say_built_in_policy_only(node, clamd):
    import urllib.request
    bare = node()
    assert any("malware: built-in policy only" in l for l in bare.banner), bare.banner
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{bare.admin_port}/metrics").read().decode()
    assert "sekisho_malware_scanner_configured 0" in metrics
    assert "built-in policy only" in metrics
    scanned = node("scanned", config=f'[malware]\nclamd = "unix:{clamd.socket}"\n')
    assert any(l.startswith("malware: clamd at unix:") for l in scanned.banner), scanned.banner
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{scanned.admin_port}/metrics").read().decode()
    assert "sekisho_malware_scanner_configured 1" in metrics


EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def attachment_message(name, data: bytes):
    import base64
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: a@example.org\r\nTo: bob@acme.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"Message-ID: <m@example.org>\r\nSubject: invoice\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"" + name.encode()
            + b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b--\r\n")


def test_real_clamd_rejects_eicar_and_tags_a_macro_document(node, sink, clamd):
    assert len(EICAR) == 68
    s = sink()
    n = node(config=f'[malware]\nclamd = "unix:{clamd.socket}"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    macro = (CORPORA / "spam" / "spamassassin-t-data" / "t" / "data" / "spam" / "olevbmacro" / "macro.eml").read_bytes()
    macro = macro.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("a@example.org", ["bob@acme.test"], attachment_message("invoice.txt", EICAR))
        assert e.value.smtp_code == 554
        c.sendmail("a@example.org", ["bob@acme.test"], macro)
    _, content = s.wait(1)[0]
    assert b"OFFICE_MACRO(6.00)" in content
    t = wait_for(lambda: (t := n.cli_json("trace", "--rcpt", "bob@acme.test")) and len(t) == 2 and t, what="trace")
    virus = [m for m in t if m["verdict"] == "reject"][0]
    assert "VIRUS_FOUND(1000.00)" in virus["symbols"]


def test_scanner_down_means_tempfail_not_unscanned_delivery(node, sink, tmp_path):
    s = sink()
    n = node(config=f'[malware]\nclamd = "unix:{tmp_path / "no-clamd.sock"}"\ndeadline = "2s"\n')
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    attached = attachment_message("report.pdf", b"%PDF-1.4 harmless")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("a@example.org", ["bob@acme.test"], attached)
        assert e.value.smtp_code == 451
        assert e.value.smtp_error.startswith(b"4.7.1")
        # Text-only mail is not sent to clamd (scan = "attachments", the default): it passes.
        assert c.sendmail("a@example.org", ["carol@acme.test"], GOOD) == {}
    env, _ = s.wait(1)[0]
    assert env["rcpt_tos"] == ["carol@acme.test"]
    n2 = node("n2", config=f'[malware]\nclamd = "unix:{tmp_path / "no-clamd.sock"}"\n'
                          f'on_scanner_error = "deliver"\nscan = "all"\n')
    n2.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    with smtplib.SMTP("127.0.0.1", n2.port) as c:
        assert c.sendmail("a@example.org", ["dave@acme.test"], GOOD) == {}
    msgs = {env["rcpt_tos"][0]: content for env, content in s.wait(2)}
    assert b"SCANNER_UNAVAILABLE(0.00)" in msgs["dave@acme.test"]


def test_train_then_the_node_and_check_use_the_model(node, sink, tmp_path):
    root = CORPORA / "spam" / "spamassassin-public-corpus-train"
    spam = sorted((root / "spam-1").iterdir())
    ham = sorted((root / "easy-ham-1").iterdir())
    train_spam, held_spam = spam[:-10], spam[-10:]
    train_ham, held_ham = ham[:600], ham[-10:]
    dirs = {}
    for name, files in [("tspam", train_spam), ("tham", train_ham), ("hspam", held_spam), ("hham", held_ham)]:
        d = tmp_path / name
        d.mkdir()
        for f in files:
            (d / f.name).write_bytes(f.read_bytes())
        dirs[name] = d
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    out = n.cli("train", "--ham", str(dirs["tham"]), "--spam", str(dirs["tspam"])).stdout
    m = re.search(r"global model: learned (\d+) new message\(s\), moved 0 to the other class, "
                  r"(\d+) already known; now (\d+) ham, (\d+) spam", out)
    assert m, out
    learned, dupes, hams, spams = map(int, m.groups())
    # The public corpus holds a few messages twice; each is learned once.
    assert learned + dupes == 600 + len(train_spam) and dupes < 30, out
    assert hams + spams == learned, out
    again = n.cli("train", "--spam", str(dirs["tspam"])).stdout
    assert f"learned 0 new message(s), moved 0 to the other class, {len(train_spam)} already known" in again
    from conftest import Node
    def verdicts(d):
        r = n.cli("--dns", f"127.0.0.1:{Node.dns_port}", "check", "--json", str(d))
        return [json.loads(l) for l in r.stdout.splitlines()]
    bayes = lambda v: [x["symbol"] for x in v["symbols"] if x["symbol"].startswith("BAYES")]
    spam_v = verdicts(dirs["hspam"])
    ham_v = verdicts(dirs["hham"])
    assert len(spam_v) == 10 and len(ham_v) == 10
    caught = sum(1 for v in spam_v if set(bayes(v)) & {"BAYES_999", "BAYES_99", "BAYES_95"})
    false_pos = sum(1 for v in ham_v if set(bayes(v)) & {"BAYES_999", "BAYES_99", "BAYES_95"})
    assert caught >= 8, [bayes(v) for v in spam_v]
    assert false_pos == 0, [bayes(v) for v in ham_v]
    # The n-gram classifier learned the same messages and judges on its own.
    assert "global n-gram weights: generation 1" in out, out
    lr = lambda v: [x["symbol"] for x in v["symbols"] if x["symbol"].startswith("LR_")]
    assert sum(1 for v in spam_v if set(lr(v)) & {"LR_SPAM_99", "LR_SPAM_90"}) >= 8, [lr(v) for v in spam_v]
    assert not any(set(lr(v)) & {"LR_SPAM_99", "LR_SPAM_90", "LR_SPAM_70"} for v in ham_v), [lr(v) for v in ham_v]
    assert sum(1 for v in ham_v if "LR_HAM" in lr(v)) >= 6, [lr(v) for v in ham_v]
    # The running node picked up the model too: a held-out spam gets a Bayes symbol there.
    msg = held_spam[0].read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        try:
            c.sendmail("x@example.org", ["bob@acme.test"], msg, mail_options=["BODY=8BITMIME"])
        except smtplib.SMTPDataError:
            pass
    t = wait_for(lambda: (t := n.cli_json("trace", "--rcpt", "bob@acme.test")) and t, what="trace")
    assert "BAYES_" in t[0]["symbols"] and "LR_" in t[0]["symbols"], t[0]["symbols"]
    def ngram_p(f):
        v = json.loads(n.cli("--dns", f"127.0.0.1:{Node.dns_port}", "check", "--json", str(f)).stdout)
        d = [x["detail"] for x in v["symbols"] if x["symbol"].startswith("LR_")]
        m = re.search(r"n-gram spam probability ([0-9.]+)", d[0] if d else "")
        return float(m.group(1)) if m else 0.5
    # learn adds one correction.
    out = n.cli("learn", "--ham", str(held_ham[0])).stdout
    assert "learned 1 new message(s)" in out and f"now {hams + 1} ham" in out
    out = n.cli("learn", "--ham", str(held_ham[0])).stdout
    assert "learned 0 new message(s), moved 0 to the other class, 1 already known" in out, out
    before = ngram_p(held_ham[0])
    out = n.cli("learn", "--spam", str(held_ham[0])).stdout
    assert "moved 1 to the other class" in out and f"now {hams} ham, {spams + 1} spam" in out, out
    # The correction also stepped the n-gram weights towards spam for that message.
    assert "n-gram weights: generation 3" in out, out
    assert ngram_p(held_ham[0]) > before, (before, out)


def test_weights_of_the_first_format_are_relearned_not_refused(tmp_path):
    """After an upgrade, stored weights of the raw-byte model (format SKLR1) are not used
    (Bayes judges alone, with a warning) and the next `train` relearns them from its own
    messages even though the Bayes counts already know every one."""
    import shutil
    import sqlite3
    root = CORPORA / "spam" / "spamassassin-public-corpus-train"
    dirs = {}
    for name, files in [("spam", sorted((root / "spam-1").iterdir())[:60]),
                        ("ham", sorted((root / "easy-ham-1").iterdir())[:60])]:
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        for f in files:
            shutil.copy(f, dirs[name])
    base = [str(BIN), "--data-dir", str(tmp_path / "d")]
    train = base + ["train", "--ham", str(dirs["ham"]), "--spam", str(dirs["spam"])]
    out = subprocess.run(train, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "global n-gram weights: generation 1" in out, out
    db = sqlite3.connect(tmp_path / "d" / "sekisho.db")
    (weights,) = db.execute("SELECT weights FROM ngram_weights WHERE tenant_id = 0").fetchone()
    assert weights[:5] == b"SKLR2"
    db.execute("UPDATE ngram_weights SET weights = ? WHERE tenant_id = 0", (b"SKLR1" + weights[5:],))
    db.commit()
    db.close()
    probe = sorted(dirs["spam"].iterdir())[0]
    def lr_symbols():
        r = subprocess.run(base + ["check", "--json", str(probe)], capture_output=True, text=True,
                           timeout=60, check=True)
        return [s["symbol"] for s in json.loads(r.stdout)["symbols"] if s["symbol"].startswith("LR_")], r.stderr
    lr, stderr = lr_symbols()
    assert lr == [] and "earlier format" in stderr, (lr, stderr)
    again = subprocess.run(train, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "learned 0 new message(s)" in again and "global n-gram weights: generation 2" in again, again
    lr, _ = lr_symbols()
    assert lr, "the relearned weights judge again"


def test_tenant_filter_policy_overrides_apply_per_tenant(node, sink, tmp_path):
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    out = n.cli("tenant", "policy", "acme", "--tag", "2", "--weight", "missing_date=2.5",
                "--protect-name", "Taro Yamada=taro@acme.test", "--trust-arc", "Lists.Example.org").stdout
    assert "tag 2 (global 5)" in out and "weight MISSING_DATE: 2.5 (global 1)" in out, out
    assert "protected name: Taro Yamada <taro@acme.test>" in out
    assert "trusted ARC sealers: lists.example.org" in out
    p = n.cli_json("tenant", "policy", "acme")
    assert p == {"tag": 2.0, "weights": {"MISSING_DATE": 2.5},
                 "protected_names": [{"name": "Taro Yamada", "addresses": ["taro@acme.test"]}],
                 "trusted_arc": ["lists.example.org"]}
    # Bad input: one clear line, non-zero exit, nothing changed.
    for bad, why in [(["--weight", "NOPE=1"], 'unknown symbol "NOPE"'),
                     (["--tag", "20"], "tag ≤ quarantine ≤ reject"),
                     (["--protect-name", "X=not-an-address"], "is not an address")]:
        r = n.cli("tenant", "policy", "acme", *bad, check=False)
        assert r.returncode != 0 and why in r.stderr, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert n.cli_json("tenant", "policy", "acme") == p
    undated = GOOD.replace(b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n", b"")
    fake = GOOD.replace(b"From: a@example.org", b"From: Taro Yamada <taro.yamada@freemail.test>")
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["x@acme.test"], undated)
        c.sendmail("a@example.org", ["y@beta.test"], undated)
        c.sendmail("a@example.org", ["z@acme.test"], fake)
    msgs = {env["rcpt_tos"][0]: content for env, content in s.wait(3)}
    # acme's lower tag threshold and heavier weight tag the undated message; beta's global
    # policy delivers it untagged.
    assert b"X-Sekisho-Verdict: tag" in msgs["x@acme.test"] and b"MISSING_DATE(2.50)" in msgs["x@acme.test"]
    assert b"X-Sekisho-Verdict: deliver" in msgs["y@beta.test"] and b"MISSING_DATE(1.00)" in msgs["y@beta.test"]
    assert b"IMPERSONATION(6.00)" in msgs["z@acme.test"]
    # check --tenant uses the same policy.
    (tmp_path / "fake.eml").write_bytes(fake)
    def check(*extra):
        r = n.cli("check", "--json", *extra, str(tmp_path / "fake.eml"))
        return [x["symbol"] for x in json.loads(r.stdout)["symbols"]]
    assert "IMPERSONATION" in check("--tenant", "acme")
    assert "IMPERSONATION" not in check("--tenant", "beta")
    # Reset: the global policy applies again.
    out = n.cli("tenant", "policy", "acme", "--reset").stdout
    assert "tag 5 (global)" in out and "weights: global" in out


def test_first_contact_after_the_history_warms_up_and_survives_a_restart(node, sink):
    s = sink()
    n = node()
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    def send(sender, rcpt="bob@acme.test"):
        with smtplib.SMTP("127.0.0.1", n.port) as c:
            c.sendmail(sender, [rcpt], GOOD.replace(b"From: a@example.org", f"From: {sender}".encode()))
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        for i in range(50):   # inspect::stages::contact::MIN_HISTORY
            c.sendmail(f"s{i}@partner.test", ["bob@acme.test"],
                       GOOD.replace(b"From: a@example.org", f"From: S{i}@Partner.test".encode()))
    got = s.wait(50)
    assert not any(b"FIRST_CONTACT" in content for _, content in got), "quiet while warming up"
    send("stranger@elsewhere.test", "carol@acme.test")
    send("s7@partner.test", "dave@acme.test")
    msgs = {env["rcpt_tos"][0]: content for env, content in s.wait(52)}
    assert b"FIRST_CONTACT(1.00)" in msgs["carol@acme.test"]
    assert b"FIRST_CONTACT" not in msgs["dave@acme.test"]
    # The history is in the store: after a restart the stranger is known, a new one is not.
    n.stop()
    n.start()
    send("stranger@elsewhere.test", "erin@acme.test")
    send("another@elsewhere.test", "frank@acme.test")
    msgs = {env["rcpt_tos"][0]: content for env, content in s.wait(54)}
    assert b"FIRST_CONTACT" not in msgs["erin@acme.test"]
    assert b"FIRST_CONTACT(1.00)" in msgs["frank@acme.test"]


def test_quarantine_retention_purges_and_leaves_evidence(node, sink):
    s = sink()
    n = node(config="[inspect]\ntag_score = 2.0\nquarantine_score = 4.0\nreject_score = 50.0\n"
                    "[quarantine]\nretention = \"3s\"\n")
    n.cli("tenant", "add", "acme", "--domain", "acme.test", "--route", s.route())
    n.cli("tenant", "add", "beta", "--domain", "beta.test", "--route", s.route())
    n.cli("tenant", "policy", "beta", "--quarantine-days", "30")
    bare = b"To: x\r\n\r\nbare\r\n"
    with smtplib.SMTP("127.0.0.1", n.port) as c:
        c.sendmail("a@example.org", ["bob@acme.test"], bare)
        c.sendmail("a@example.org", ["bob@beta.test"], bare)
    items = {q["tenant"]: q for q in n.cli_json("quarantine", "list")}
    assert items["acme"]["expires_at"] - items["acme"]["received_at"] == 3
    assert items["beta"]["expires_at"] - items["beta"]["received_at"] == 30 * 86400
    gone = items["acme"]["id"]
    wait_for(lambda: [q["tenant"] for q in n.cli_json("quarantine", "list")] == ["beta"],
             timeout=15, what="retention purge")
    assert not list((n.data_dir / "quarantine").rglob(f"{gone}.age"))
    rows = n.sql("SELECT principal, action, object, reason, outcome FROM records WHERE action = 'retention-purge'")
    assert rows == [("retention", "retention-purge", gone, "1 quarantined message(s) past retention", "ok")]


def test_cli_output_into_a_closed_pipe_ends_quietly(node):
    # `sekisho check DIR | head -c 100`: the reader goes away early; the command must end
    # with status 0 and no panic message, like any Unix tool.
    n = node()
    p = subprocess.Popen(n.base_args() + ["check", str(CORPORA / "mime")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(p.stdout.read(100)) == 100
    p.stdout.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and b"panicked" not in err, err
