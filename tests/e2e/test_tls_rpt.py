"""SMTP TLS reporting (RFC 8460) on the real binary, in the little Internet of
test_mta_sts.py: every outbound TLS session is counted per recipient domain and policy,
`/metrics` shows them by policy type and result, and when the UTC day is over the node sends
each domain that publishes a `_smtp._tls` record its gzipped JSON report — by mail and by
HTTPS POST — once; a domain without a record gets none, and a tenant that opted out is in
no report."""
import email
import gzip
import json
import os
import time
import urllib.request

import pytest

from conftest import wait_for
from portal_helpers import Client, problem
from test_direct import NET, events, mx, send
from test_mta_sts import POLICY_HOST, little_internet

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="remote hosts listen on ports 25 and 443")

REPORTS = 10   # the reports domain's exchanger, NET.10
NOBODY = 11    # an address where nothing listens


def reports_in(sink):
    """Each report mail's TLS-Report-Domain, headers and decoded JSON report."""
    out = {}
    for _, data in sink.messages():
        m = email.message_from_bytes(data)
        part = next(p for p in m.walk() if p.get_content_type() == "application/tlsrpt+gzip")
        out[m["TLS-Report-Domain"]] = (m, json.loads(gzip.decompress(part.get_payload(decode=True))))
    return out


def test_sessions_are_counted_and_reported_once_a_day_where_the_domain_asks(node, sink, dns, tmp_path):
    n, exchangers, _, server, _ = little_internet(
        node, sink, dns, tmp_path, extra='[tls_reports]\nevery = "1s"\norganization = "Test Gateway"\n')
    reports = sink("reports", port=25, host=f"{NET}.{REPORTS}")
    dns.a("mx.reports.test", f"{NET}.{REPORTS}")
    mx(dns, "reports.test", (10, "mx.reports.test."))
    dns.txt("_smtp._tls.badcert.test",
            "v=TLSRPTv1; rua=mailto:tls@reports.test,https://mta-sts.badcert.test/tlsrpt")
    dns.txt("_smtp._tls.testing.test", "v=TLSRPTv1; rua=mailto:tls@reports.test")
    # Two domains announce a policy that cannot be had: nothing answers at its host, or its
    # host's certificate is not valid for the name; their mail goes as without a policy.
    for d, host in (("nopolicy.test", NOBODY), ("badpki.test", POLICY_HOST)):
        dns.txt(f"_mta-sts.{d}", "v=STSv1; id=1")
        dns.a(f"mta-sts.{d}", f"{NET}.{host}")
        mx(dns, d, (10, "mx.plain.test."))
    today = int(time.time()) // 86400
    try:
        send(n, ["bob@badcert.test", "bob@testing.test", "bob@enforce.test", "bob@nopolicy.test",
                 "bob@badpki.test"], "RPT-1")
        exchangers["testing.test"].wait(1)
        exchangers["enforce.test"].wait(1)
        wait_for(lambda: [e for e, _ in events(n, "bob@badcert.test") if e == "deferred"],
                 interval=0.5, what="the bad certificate deferred")

        def counted():
            return {(d, r) for d, r, _ in n.sql("SELECT policy_domain, result, sessions FROM tls_sessions")}
        wait_for(lambda: {("badcert.test", "certificate-not-trusted"), ("testing.test", "certificate-not-trusted"),
                          ("enforce.test", ""), ("nopolicy.test", "sts-policy-fetch-error"),
                          ("badpki.test", "sts-webpki-invalid")} <= counted(), interval=0.5, what="the sessions counted in the store")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{n.admin_port}/metrics", timeout=10).read().decode()
        line = [l for l in metrics.splitlines() if l.startswith(
            'sekisho_outbound_tls_sessions_total{policy="sts",result="certificate-not-trusted"}')]
        assert line and int(line[0].split()[-1]) >= 2, line
        assert exchangers["plain.test"].wait(2), "mail to a domain whose policy cannot be had still goes"
        assert not (reports.messages() or server.posts), "a report before the day is over"
        # The operator sees each domain's outcomes in the portal (API and page).
        web = Client(n)
        web.login("operator", web.enrol(n.enrolment_link()))
        st, _, doc = web.request("GET", "/api/tls-outcomes?days=7")
        assert st == 200, doc
        by = {o["domain"]: o for o in doc}
        assert by["badcert.test"]["failed"] >= 1 and by["badcert.test"]["successful"] == 0
        assert by["badcert.test"]["top_failure"] == "certificate-not-trusted"
        assert by["badcert.test"]["policy"] == "sts" and by["enforce.test"]["successful"] >= 1
        assert doc[0]["domain"] == "badcert.test", "most failed first"
        st, _, page = web.request("GET", "/operator")
        assert st == 200 and 'id="tls-outcomes"' in page and "badcert.test" in page
        assert "certificate-not-trusted" in page
        st, _, doc = web.request("GET", "/api/tls-outcomes?days=31")
        assert st == 400, doc
        problem(doc, 400)

        # The day is over: each domain with a record gets its report, once.
        n.sql("UPDATE tls_sessions SET day = day - 1")
        wait_for(lambda: len(reports.messages()) >= 2 and server.posts, timeout=60, interval=0.5, what="the reports")
        got = reports_in(reports)
        assert set(got) == {"badcert.test", "testing.test"}, set(got)
        msg, bad = got["badcert.test"]
        assert msg["Subject"].startswith("Report Domain: badcert.test Submitter: ")
        assert 'report-type="tlsrpt"' in msg["Content-Type"]
        assert bad["organization-name"] == "Test Gateway" and bad["report-id"]
        assert bad["date-range"]["start-datetime"].endswith("T00:00:00Z")
        (pol,) = bad["policies"]
        assert pol["policy"]["policy-type"] == "sts" and "mode: enforce" in pol["policy"]["policy-string"]
        assert pol["policy"]["mx-host"] == ["mx.badcert.test"]
        assert pol["summary"]["total-successful-session-count"] == 0
        assert pol["summary"]["total-failure-session-count"] >= 1
        (detail,) = pol["failure-details"]
        assert detail["result-type"] == "certificate-not-trusted"
        assert detail["receiving-mx-hostname"] == "mx.badcert.test" and detail["receiving-ip"] == f"{NET}.4"
        # Testing mode: delivered, and the certificate that would not verify is reported.
        (tpol,) = got["testing.test"][1]["policies"]
        assert tpol["policy"]["policy-string"][1] == "mode: testing"
        assert tpol["failure-details"][0]["result-type"] == "certificate-not-trusted"
        # The same report by HTTPS POST.
        (host, path, ctype, body), = server.posts
        assert (host, path, ctype) == ("mta-sts.badcert.test", "/tlsrpt", "application/tlsrpt+gzip")
        assert json.loads(gzip.decompress(body))["report-id"] == bad["report-id"]
        # No record, no report; and what came of each is recorded.
        outcome = dict(n.sql("SELECT policy_domain, outcome FROM tls_reports"))
        assert outcome["enforce.test"] == "not sent: no TLSRPT record", outcome
        assert outcome["badcert.test"].count("sent to") == 2 and "not sent" not in outcome["badcert.test"]
        time.sleep(3)
        assert len(reports.messages()) == 2 and len(server.posts) == 1, "a report sent twice"

        # A tenant that opts out is in no report, even to a domain that asks.
        n.cli("tenant", "tls-reports", "acme", "off")
        dns.txt("_smtp._tls.enforce.test", "v=TLSRPTv1; rua=mailto:tls@reports.test")
        send(n, ["carol@enforce.test"], "RPT-2")
        exchangers["enforce.test"].wait(2)
        wait_for(lambda: n.sql("SELECT sessions FROM tls_sessions WHERE policy_domain = 'enforce.test' AND day = $1",
                               today), interval=0.5, what="today's session counted")
        n.sql("UPDATE tls_sessions SET day = day - 2 WHERE policy_domain = 'enforce.test' AND day = $1", today)
        opted = wait_for(lambda: n.sql("SELECT outcome FROM tls_reports WHERE policy_domain = 'enforce.test' AND day = $1",
                                       today - 2), interval=0.5, what="the opted-out report's outcome")
        assert opted[0][0] == "not sent: every session's tenant opted out", opted
        assert "enforce.test" not in reports_in(reports)
    finally:
        server.shutdown()
