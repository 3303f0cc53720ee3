//! Messages Sekisho writes itself (alert e-mails), built with mail-builder: plain UTF-8 text,
//! marked `Auto-Submitted: auto-generated` (RFC 3834) so that responders stay quiet, and sent
//! with the null return path so that no bounce can loop back.

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;

/// A notice from `from` to `to`.
pub fn build(
    from: &str,
    to: &[String],
    subject: &str,
    text: &str,
    message_id: &str,
    date: i64,
) -> Vec<u8> {
    let mut b = MessageBuilder::new()
        .from(from)
        .to(to.to_vec())
        .subject(subject)
        .message_id(message_id)
        .date(date)
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(text);
    b = b.header("X-Sekisho-Notice", Raw::new("yes"));
    b.write_to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_auto_submitted_crlf_mail_with_an_encoded_subject() {
        let m = build(
            "alerts@gw.example",
            &["soc@example.net".to_string()],
            "[Sekisho critical] 監査 bulk-open",
            "line one\nline two: 田中\n",
            "a1.123@gw.example",
            1_800_000_000,
        );
        let parsed = mail_parser::MessageParser::default().parse(&m).unwrap();
        assert_eq!(parsed.subject(), Some("[Sekisho critical] 監査 bulk-open"));
        assert_eq!(parsed.message_id(), Some("a1.123@gw.example"));
        assert!(parsed.body_text(0).unwrap().contains("田中"));
        let text = String::from_utf8_lossy(&m);
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(
            m.is_ascii(),
            "7-bit on the wire (encoded words, a transfer encoding)"
        );
        assert!(
            !m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "CRLF only"
        );
    }
}
