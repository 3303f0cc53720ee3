//! Delivery status notifications (RFC 3464), built with mail-builder.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

/// One failed recipient in a DSN.
pub struct FailedRcpt<'a> {
    /// The address.
    pub address: &'a str,
    /// The last reply or reason.
    pub reason: &'a str,
}

/// Pulls an RFC 3463 status code (`5.1.1`) out of a reply text, or a default by class.
fn status_of(reason: &str) -> String {
    for word in reason.split_whitespace().take(3) {
        let parts: Vec<_> = word.split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
        {
            return word.to_string();
        }
    }
    if reason.starts_with('4') {
        "4.0.0".into()
    } else {
        "5.0.0".into()
    }
}

/// The header block of a message (up to the first empty line), for `text/rfc822-headers`.
fn headers_of(body: &[u8]) -> String {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(body.len(), |p| p + 2);
    String::from_utf8_lossy(&body[..end.min(64 * 1024)]).into_owned()
}

/// Builds a DSN for `failed` recipients of message `queue_id` back to `sender`.
pub fn build(
    reporting_mta: &str,
    postmaster: &str,
    sender: &str,
    queue_id: &str,
    arrival: &str,
    failed: &[FailedRcpt<'_>],
    original: &[u8],
) -> Vec<u8> {
    let mut human = format!(
        "This is the mail system at host {reporting_mta}.\r\n\r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\r\n"
    );
    for f in failed {
        human.push_str(&format!("<{}>: {}\r\n", f.address, f.reason));
    }
    let mut status = format!(
        "Reporting-MTA: dns; {reporting_mta}\r\nX-Sekisho-Queue-ID: {queue_id}\r\nArrival-Date: {arrival}\r\n"
    );
    for f in failed {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: smtp; {}\r\n",
            f.address,
            status_of(f.reason),
            f.reason.replace(['\r', '\n'], " ")
        ));
    }
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(ContentType::new("text/plain"), human),
            MimePart::new(ContentType::new("message/delivery-status"), status),
            MimePart::new(
                ContentType::new("text/rfc822-headers"),
                headers_of(original),
            ),
        ],
    );
    MessageBuilder::new()
        .from(("Mail Delivery System", postmaster))
        .to(sender)
        .subject("Undelivered Mail Returned to Sender")
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_has_the_rfc3464_parts() {
        let dsn = build(
            "mx.sekisho.test",
            "postmaster@mx.sekisho.test",
            "sender@example.org",
            "ID42",
            "Mon, 1 Jan 2024 00:00:00 +0000",
            &[FailedRcpt {
                address: "bob@acme.test",
                reason: "550 5.1.1 no such user",
            }],
            b"Subject: hello\r\nFrom: s@example.org\r\n\r\nsecret body\r\n",
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("multipart/report"));
        assert!(
            text.contains("report-type=\"delivery-status\"")
                || text.contains("report-type=delivery-status")
        );
        assert!(text.contains("Final-Recipient: rfc822; bob@acme.test"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Action: failed"));
        assert!(text.contains("Subject: hello"));
        assert!(text.contains("Auto-Submitted: auto-replied"));
        // Only headers of the original are returned, not its body.
        assert!(!text.contains("secret body"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_of("550 5.1.1 no"), "5.1.1");
        assert_eq!(status_of("451 try later"), "4.0.0");
        assert_eq!(status_of("connection refused"), "5.0.0");
    }
}
