//! SMTP TLS reporting (RFC 8460): what each outbound TLS session to a recipient domain's mail
//! exchangers came to, counted per policy domain and UTC day in memory ([`Tally`]) until the
//! node writes the counts to the store, the `_smtp._tls` record that says where a domain
//! wants its reports ([`destinations`]), and the daily JSON report built from the counts
//! ([`report_json`]). Sending is the node's: this crate records, parses and builds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use store::tls_report::{PolicyType, SessionKey};

use crate::mta_sts::{Mode, Policy};

/// RFC 8460 §4.3 result types that a session or an MTA-STS fetch can give here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultType {
    /// The exchanger did not offer STARTTLS (or refused it) where TLS was wanted.
    StarttlsNotSupported,
    /// The certificate is not valid for the exchanger's name.
    CertificateHostMismatch,
    /// The certificate has expired.
    CertificateExpired,
    /// The certificate does not chain to a trusted root.
    CertificateNotTrusted,
    /// Anything else: a handshake that failed otherwise, or an exchanger the policy does not
    /// list.
    ValidationFailure,
    /// The MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// The MTA-STS policy was fetched and is not valid.
    StsPolicyInvalid,
    /// The MTA-STS policy host's certificate is not valid.
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every result type, in the RFC's order.
    pub const ALL: [ResultType; 8] = [
        ResultType::StarttlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    /// The RFC's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// The result type of an RFC name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for ResultType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failed TLS handshake says about the certificate, from the rustls error inside the
/// I/O error (by type, never by its text).
pub fn classify(e: &std::io::Error) -> ResultType {
    use tls::rustls::{CertificateError as C, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(c)) => match c {
            C::Expired | C::ExpiredContext { .. } => ResultType::CertificateExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            // The chain does not lead to a trusted root: an unknown issuer, a self-signed or
            // revoked certificate, a CA certificate presented as the server's (webpki's
            // errors arrive as `Other`), a bad signature or encoding.
            C::UnknownIssuer
            | C::BadSignature
            | C::BadEncoding
            | C::Revoked
            | C::InvalidPurpose
            | C::Other(_) => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        },
        _ => ResultType::ValidationFailure,
    }
}

/// The policy a session was judged by: the policy's lines as the report's `policy-string`
/// (RFC 8460 §4.4), or none.
pub fn applied(policy: Option<&Policy>) -> (PolicyType, String) {
    let Some(p) = policy else {
        return (PolicyType::NoPolicyFound, String::new());
    };
    let mode = match p.mode {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    };
    let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
    lines.extend(p.mx.iter().map(|m| format!("mx: {m}")));
    lines.push(format!("max_age: {}", p.max_age));
    (PolicyType::Sts, lines.join("\n"))
}

/// One session's outcome, before it is counted.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    /// The recipient domain whose policy applied (lower case).
    pub policy_domain: &'a str,
    /// The tenant whose mail it carried (0: the gateway's own, e.g. a DSN).
    pub tenant: i64,
    /// The policy it was judged by ([`applied`]).
    pub policy: &'a (PolicyType, String),
    /// `None`: TLS negotiated as the policy asks. Otherwise why not, and where.
    pub failure: Option<Failed<'a>>,
}

/// Where and why a session failed.
#[derive(Debug, Clone)]
pub struct Failed<'a> {
    /// Why.
    pub result: ResultType,
    /// The exchanger's name (from MX).
    pub mx: &'a str,
    /// Our address on the connection, when one was made.
    pub sending_ip: Option<IpAddr>,
    /// The exchanger's address tried.
    pub receiving_ip: Option<IpAddr>,
}

/// Most distinct counters held between flushes; sessions past it are dropped and counted.
pub const MAX_KEYS: usize = 50_000;

/// Session counts since the last [`Tally::take`], keyed by what a report tells apart.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<HashMap<SessionKey, u64>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl Tally {
    /// Counts one session on `day` (days since 1970-01-01, UTC).
    pub fn record(&self, day: i64, s: &Session<'_>) {
        let (result, mx, sending_ip, receiving_ip) = match &s.failure {
            None => (String::new(), String::new(), String::new(), String::new()),
            Some(f) => (
                f.result.as_str().to_string(),
                f.mx.trim_end_matches('.').to_ascii_lowercase(),
                f.sending_ip.map(|i| i.to_string()).unwrap_or_default(),
                f.receiving_ip.map(|i| i.to_string()).unwrap_or_default(),
            ),
        };
        let key = SessionKey {
            day,
            policy_domain: s.policy_domain.to_string(),
            tenant: s.tenant,
            policy_type: s.policy.0,
            policy_text: s.policy.1.clone(),
            result,
            receiving_mx: mx,
            sending_ip,
            receiving_ip,
        };
        let mut counts = self.counts.lock().expect("poisoned");
        if counts.len() >= MAX_KEYS && !counts.contains_key(&key) {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        *counts.entry(key).or_default() += 1;
    }

    /// The counts so far (the tally starts again empty), and how many sessions were dropped
    /// for want of room.
    pub fn take(&self) -> (Vec<(SessionKey, u64)>, u64) {
        let counts = std::mem::take(&mut *self.counts.lock().expect("poisoned"));
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        (counts.into_iter().collect(), dropped)
    }

    /// Puts counts back (a flush that failed), so they go with the next one.
    pub fn restore(&self, rows: Vec<(SessionKey, u64)>) {
        let mut counts = self.counts.lock().expect("poisoned");
        for (k, n) in rows {
            if counts.len() < MAX_KEYS || counts.contains_key(&k) {
                *counts.entry(k).or_default() += n;
            }
        }
    }
}

/// Where a domain wants its reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// By mail to this address.
    Mailto(String),
    /// By HTTPS POST to this URL.
    Https(String),
}

/// Most destinations taken from one record (the rest are ignored).
pub const MAX_DESTINATIONS: usize = 3;

/// The destinations of a `_smtp._tls` TXT record (`v=TLSRPTv1; rua=mailto:…,https://…`),
/// `None` when it is not a TLSRPTv1 record. Unknown schemes and malformed addresses are
/// skipped; at most [`MAX_DESTINATIONS`].
pub fn destinations(record: &str) -> Option<Vec<Destination>> {
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=TLSRPTv1" {
        return None;
    }
    let rua = fields.find_map(|f| {
        let (k, v) = f.split_once('=')?;
        (k.trim() == "rua").then(|| v.trim().to_string())
    })?;
    let mut out = Vec::new();
    for uri in rua.split(',').map(str::trim) {
        if let Some(rest) = strip_prefix_ci(uri, "mailto:") {
            let addr = rest.split('?').next().unwrap_or("");
            let addr = percent_decode(addr);
            let ok = addr.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty()
                    && d.contains('.')
                    && !addr
                        .bytes()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b',')
            });
            if ok {
                out.push(Destination::Mailto(addr));
            }
        } else if strip_prefix_ci(uri, "https://").is_some()
            && url::Url::parse(uri).is_ok_and(|u| u.host_str().is_some())
        {
            out.push(Destination::Https(uri.to_string()));
        }
        if out.len() == MAX_DESTINATIONS {
            break;
        }
    }
    Some(out)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    // `get`, not slicing: a record is anyone's to write, and a multibyte character across
    // the prefix's length must not panic the reporter.
    s.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("a={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Who sends the reports (RFC 8460 §4.4 `organization-name`, `contact-info`).
#[derive(Debug, Clone)]
pub struct Submitter {
    /// The organization running the gateway.
    pub organization: String,
    /// Where to write about the reports (an address or URL).
    pub contact: String,
    /// The submitting host's domain (in the file name and the mail's headers).
    pub domain: String,
}

/// The start and end of `day` (days since 1970-01-01, UTC) as RFC 3339 strings.
pub fn day_range(day: i64) -> (String, String) {
    let start = proto::verdict::rfc3339(day * 86_400);
    let end = proto::verdict::rfc3339(day * 86_400 + 86_399);
    (start, end)
}

/// The RFC 8460 §4.4 JSON report of one policy domain's sessions on `day`. `rows` are that
/// domain's counts (any tenants, already filtered to those that report).
pub fn report_json(
    submitter: &Submitter,
    report_id: &str,
    day: i64,
    policy_domain: &str,
    rows: &[(SessionKey, u64)],
) -> serde_json::Value {
    use serde_json::json;
    let (start, end) = day_range(day);
    let mut policies: Vec<(PolicyType, String)> = rows
        .iter()
        .map(|(k, _)| (k.policy_type, k.policy_text.clone()))
        .collect();
    policies.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    policies.dedup();
    let policies: Vec<serde_json::Value> = policies
        .iter()
        .map(|(ty, text)| {
            let mine = rows
                .iter()
                .filter(|(k, _)| k.policy_type == *ty && k.policy_text == *text);
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut details: HashMap<(&str, &str, &str, &str), u64> = HashMap::new();
            for (k, n) in mine {
                if k.result.is_empty() {
                    ok += n;
                } else {
                    failed += n;
                    *details
                        .entry((&k.result, &k.sending_ip, &k.receiving_mx, &k.receiving_ip))
                        .or_default() += n;
                }
            }
            let mut details: Vec<_> = details.into_iter().collect();
            details.sort();
            let details: Vec<serde_json::Value> = details
                .into_iter()
                .map(|((result, sending, mx, receiving), n)| {
                    let mut d = json!({"result-type": result, "failed-session-count": n});
                    for (name, v) in [
                        ("sending-mta-ip", sending),
                        ("receiving-mx-hostname", mx),
                        ("receiving-ip", receiving),
                    ] {
                        if !v.is_empty() {
                            d[name] = json!(v);
                        }
                    }
                    d
                })
                .collect();
            let mut policy = json!({
                "policy-type": ty.as_str(),
                "policy-domain": policy_domain,
            });
            if *ty == PolicyType::Sts && !text.is_empty() {
                let lines: Vec<&str> = text.lines().collect();
                let mx: Vec<&str> = lines
                    .iter()
                    .filter_map(|l| l.strip_prefix("mx: "))
                    .collect();
                policy["policy-string"] = json!(lines);
                policy["mx-host"] = json!(mx);
            }
            let mut p = json!({
                "policy": policy,
                "summary": {
                    "total-successful-session-count": ok,
                    "total-failure-session-count": failed,
                },
            });
            if !details.is_empty() {
                p["failure-details"] = json!(details);
            }
            p
        })
        .collect();
    json!({
        "organization-name": submitter.organization,
        "date-range": {"start-datetime": start, "end-datetime": end},
        "contact-info": submitter.contact,
        "report-id": report_id,
        "policies": policies,
    })
}

/// The report's file name (RFC 8460 §5.3: `submitter!policy-domain!begin!end!id.json.gz`,
/// times as seconds since 1970).
pub fn file_name(submitter: &Submitter, policy_domain: &str, day: i64, report_id: &str) -> String {
    format!(
        "{}!{}!{}!{}!{}.json.gz",
        submitter.domain,
        policy_domain,
        day * 86_400,
        day * 86_400 + 86_399,
        report_id
    )
}

/// The report gzipped (RFC 8460 §5.3: `application/tlsrpt+gzip`).
pub fn gzip(report: &serde_json::Value) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = z.write_all(report.to_string().as_bytes());
    z.finish().unwrap_or_default()
}

/// The report as a mail (RFC 8460 §5.3): `multipart/report; report-type="tlsrpt"`, a short
/// text part and the gzipped report, with the `TLS-Report-Domain` and
/// `TLS-Report-Submitter` fields and the subject the RFC gives.
pub fn report_mail(
    submitter: &Submitter,
    from: &str,
    to: &str,
    policy_domain: &str,
    day: i64,
    report_id: &str,
    gz: &[u8],
) -> Vec<u8> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::content_type::ContentType;
    use mail_builder::headers::raw::Raw;
    use mail_builder::mime::MimePart;
    let (start, end) = day_range(day);
    let domain = &submitter.domain;
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new(
                ContentType::new("text/plain"),
                format!(
                    "This is an aggregate TLS report from {domain} for {policy_domain}, {start} to {end}.\r\n"
                ),
            ),
            MimePart::new(ContentType::new("application/tlsrpt+gzip"), gz.to_vec())
                .attachment(file_name(submitter, policy_domain, day, report_id)),
        ],
    );
    MessageBuilder::new()
        .from(from)
        .to(to)
        // Raw: the RFC's subject is matched by report processors, never encoded words.
        .header(
            "Subject",
            Raw::new(format!(
                "Report Domain: {policy_domain} Submitter: {domain} Report-ID: <{report_id}>"
            )),
        )
        .message_id(format!("{report_id}@{domain}"))
        .header("TLS-Report-Domain", Raw::new(policy_domain.to_string()))
        .header("TLS-Report-Submitter", Raw::new(domain.to_string()))
        .body(report)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_types_round_trip_by_their_rfc_names() {
        for r in ResultType::ALL {
            assert_eq!(ResultType::parse(r.as_str()), Some(r));
        }
        assert_eq!(ResultType::parse("certificate-revoked"), None);
    }

    #[test]
    fn handshake_errors_are_classified_by_their_rustls_type() {
        use tls::rustls::{CertificateError as C, Error};
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        for (e, want) in [
            (C::NotValidForName, ResultType::CertificateHostMismatch),
            (C::Expired, ResultType::CertificateExpired),
            (C::UnknownIssuer, ResultType::CertificateNotTrusted),
            (C::NotValidYet, ResultType::ValidationFailure),
        ] {
            assert_eq!(classify(&io(Error::InvalidCertificate(e))), want);
        }
        assert_eq!(
            classify(&io(Error::DecryptError)),
            ResultType::ValidationFailure
        );
        // Text that merely looks like a certificate error is not one.
        let text = std::io::Error::other("invalid peer certificate: Expired");
        assert_eq!(classify(&text), ResultType::ValidationFailure);
    }

    #[test]
    fn the_record_gives_mailto_and_https_destinations_only() {
        let d = destinations(
            "v=TLSRPTv1; rua=mailto:tls%2Breports@example.net?subject=x, https://r.example.net/v1, ftp://x.example.net/, mailto:bad",
        )
        .unwrap();
        assert_eq!(
            d,
            [
                Destination::Mailto("tls+reports@example.net".into()),
                Destination::Https("https://r.example.net/v1".into()),
            ]
        );
        assert_eq!(destinations("v=spf1 -all"), None);
        assert_eq!(destinations("rua=mailto:a@b.example; v=TLSRPTv1"), None);
        assert_eq!(destinations("v=TLSRPTv1;"), None);
        // A multibyte character where the scheme ends is no scheme (and no panic).
        assert_eq!(
            destinations("v=TLSRPTv1; rua=mailtoö:a@b.example,https:/é/x.example").unwrap(),
            []
        );
        let many = format!(
            "v=TLSRPTv1;rua={}",
            (0..10)
                .map(|i| format!("mailto:r{i}@x.example"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(destinations(&many).unwrap().len(), MAX_DESTINATIONS);
        // An address with a space or comma smuggled in percent-encoded is refused.
        assert_eq!(
            destinations("v=TLSRPTv1; rua=mailto:a%20b@x.example,mailto:a%2Cb@x.example").unwrap(),
            []
        );
    }

    fn key(policy: &(PolicyType, String), result: &str, mx: &str) -> SessionKey {
        SessionKey {
            day: 20_000,
            policy_domain: "remote.example".into(),
            tenant: 1,
            policy_type: policy.0,
            policy_text: policy.1.clone(),
            result: result.into(),
            receiving_mx: mx.into(),
            sending_ip: if result.is_empty() {
                String::new()
            } else {
                "192.0.2.1".into()
            },
            receiving_ip: if result.is_empty() {
                String::new()
            } else {
                "198.51.100.7".into()
            },
        }
    }

    #[test]
    fn the_report_counts_successes_and_failures_per_policy() {
        let sts = applied(Some(&Policy {
            mode: Mode::Testing,
            mx: vec!["mx.remote.example".into(), "*.backup.example".into()],
            max_age: 86400,
        }));
        let none = applied(None);
        let rows = vec![
            (key(&sts, "", ""), 5),
            (key(&sts, "certificate-expired", "mx.remote.example"), 2),
            (key(&sts, "certificate-expired", "mx.remote.example"), 1),
            (key(&none, "starttls-not-supported", "mx.remote.example"), 4),
        ];
        let s = Submitter {
            organization: "Example Gateway".into(),
            contact: "mailto:postmaster@gw.example".into(),
            domain: "gw.example".into(),
        };
        let r = report_json(&s, "rid-1", 20_000, "remote.example", &rows);
        assert_eq!(r["date-range"]["start-datetime"], "2024-10-04T00:00:00Z");
        assert_eq!(r["date-range"]["end-datetime"], "2024-10-04T23:59:59Z");
        let p = r["policies"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        let (none_p, sts_p) = (&p[0], &p[1]);
        assert_eq!(none_p["policy"]["policy-type"], "no-policy-found");
        assert_eq!(
            none_p["summary"]["total-failure-session-count"].as_u64(),
            Some(4)
        );
        assert_eq!(sts_p["policy"]["policy-type"], "sts");
        assert_eq!(
            sts_p["policy"]["mx-host"],
            serde_json::json!(["mx.remote.example", "*.backup.example"])
        );
        assert_eq!(
            sts_p["policy"]["policy-string"][1].as_str(),
            Some("mode: testing")
        );
        assert_eq!(
            sts_p["summary"]["total-successful-session-count"].as_u64(),
            Some(5)
        );
        assert_eq!(
            sts_p["summary"]["total-failure-session-count"].as_u64(),
            Some(3)
        );
        let d = &sts_p["failure-details"][0];
        assert_eq!(d["result-type"], "certificate-expired");
        assert_eq!(d["failed-session-count"].as_u64(), Some(3));
        assert_eq!(d["receiving-mx-hostname"], "mx.remote.example");
        assert_eq!(d["sending-mta-ip"], "192.0.2.1");
        assert!(
            sts_p["failure-details"].as_array().unwrap().len() == 1
                && none_p.get("failure-details").is_some()
        );
    }

    #[test]
    fn the_tally_counts_keys_and_stops_at_its_bound() {
        let t = Tally::default();
        let none = applied(None);
        for _ in 0..3 {
            t.record(
                1,
                &Session {
                    policy_domain: "a.example",
                    tenant: 1,
                    policy: &none,
                    failure: None,
                },
            );
        }
        let (rows, dropped) = t.take();
        assert_eq!((rows.len(), rows[0].1, dropped), (1, 3, 0));
        assert!(t.take().0.is_empty());
        for i in 0..(MAX_KEYS + 5) {
            let d = format!("d{i}.example");
            t.record(
                1,
                &Session {
                    policy_domain: &d,
                    tenant: 1,
                    policy: &none,
                    failure: None,
                },
            );
        }
        let (rows, dropped) = t.take();
        assert_eq!((rows.len(), dropped), (MAX_KEYS, 5));
    }

    #[test]
    fn the_mail_has_the_rfc_fields_and_the_gzipped_report() {
        let s = Submitter {
            organization: "O".into(),
            contact: "c@gw.example".into(),
            domain: "gw.example".into(),
        };
        let gz = gzip(&serde_json::json!({"a": 1}));
        let m = String::from_utf8(report_mail(
            &s,
            "tlsrpt@gw.example",
            "r@remote.example",
            "remote.example",
            20_000,
            "rid",
            &gz,
        ))
        .unwrap();
        assert!(m.contains("TLS-Report-Domain: remote.example\r\n"));
        assert!(m.contains("TLS-Report-Submitter: gw.example\r\n"));
        assert!(m.contains(
            "Subject: Report Domain: remote.example Submitter: gw.example Report-ID: <rid>\r\n"
        ));
        assert!(m.contains("report-type=\"tlsrpt\""));
        assert!(
            m.contains("filename=\"gw.example!remote.example!1728000000!1728086399!rid.json.gz\"")
        );
        use std::io::Read;
        let mut out = String::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, r#"{"a":1}"#);
    }
}
