//! DKIM signing of outbound mail (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519), at the
//! moment of delivery — after every change Sekisho makes to the message.
//!
//! The signature is built here; the key is not. mx hashes the canonical signed headers and
//! asks a [`DkimSource`] (in mx, the vault) to sign the digest.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use proto::vault::DkimKeyRef;

use crate::secrets::BoxFuture;

/// Header fields signed when present, in this order. `From` is signed once more than it
/// occurs (RFC 6376 §8.15): a `From` added on the way breaks the signature.
pub(crate) const SIGNED: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Where signing keys are used.
pub trait DkimSource: Send + Sync {
    /// The key that signs `domain` for `tenant`, if any.
    fn key(&self, tenant: i64, domain: &str) -> BoxFuture<'_, Result<Option<DkimKeyRef>, String>>;
    /// The signature of `digest` with the key `selector`.
    fn sign<'a>(
        &'a self,
        tenant: i64,
        domain: &'a str,
        selector: &'a str,
        digest: [u8; 32],
    ) -> BoxFuture<'a, Result<Vec<u8>, String>>;
    /// Drops what it holds about keys (they changed: `dkim rotate`, `dkim remove`).
    fn forget_all(&self) {}
}

/// What was signed, before the signature is known.
pub struct Unsigned {
    /// The header field's name (`DKIM-Signature`, or an ARC field).
    pub(crate) name: &'static str,
    /// The value up to and including `b=` (tags separated by `;\r\n\t`).
    pub(crate) prefix: String,
    /// SHA-256 of the canonical signed headers and that prefix.
    pub digest: [u8; 32],
}

impl Unsigned {
    /// The header field to put in front of the message.
    pub fn header(&self, signature: &[u8]) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(signature);
        let mut out = format!("{}: {}", self.name, self.prefix);
        for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.push_str("\r\n\t ");
            }
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Signs `message` for `domain` with `key`, or `None` when it has no header to sign.
pub fn prepare(message: &[u8], domain: &str, key: &DkimKeyRef, now: i64) -> Option<Unsigned> {
    let (head, body) = split(message);
    let fields = fields(head);
    let names = signed_names(&fields);
    if !fields.iter().any(|(f, _)| f.eq_ignore_ascii_case("from")) {
        return None;
    }
    let bh = base64::engine::general_purpose::STANDARD
        .encode(digest(&SHA256, &relaxed_body(body)).as_ref());
    let prefix = format!(
        "v=1; a={}; c=relaxed/relaxed; d={domain}; s={};\r\n\tt={now}; h={};\r\n\tbh={bh};\r\n\tb=",
        key.algorithm.tag(),
        key.selector,
        names.join(":"),
    );
    let mut data = canonical_headers(&fields, &names);
    let mut own = Vec::new();
    relaxed_header(&mut own, "dkim-signature", prefix.as_bytes());
    own.truncate(own.len() - 2);
    data.extend_from_slice(&own);
    let mut d = [0u8; 32];
    d.copy_from_slice(digest(&SHA256, &data).as_ref());
    Some(Unsigned {
        name: "DKIM-Signature",
        prefix,
        digest: d,
    })
}

/// The names to sign for these fields: each of [`SIGNED`] as often as it occurs, `From` once
/// more (oversigned).
pub(crate) fn signed_names(fields: &[(&str, &[u8])]) -> Vec<&'static str> {
    let mut names = Vec::new();
    for name in SIGNED {
        let n = fields
            .iter()
            .filter(|(f, _)| f.eq_ignore_ascii_case(name))
            .count();
        let times = n + usize::from(*name == "from");
        names.extend(std::iter::repeat_n(*name, times));
    }
    names
}

/// The relaxed canonical form of the fields `names` selects: each name takes its next
/// instance from the bottom up (RFC 6376 §5.4.2); one past the last contributes nothing.
/// Linear in the fields and names (an inbound message may carry thousands of one field).
pub(crate) fn canonical_headers(fields: &[(&str, &[u8])], names: &[&str]) -> Vec<u8> {
    let mut bottom_up: std::collections::HashMap<String, Vec<&[u8]>> =
        std::collections::HashMap::new();
    for (f, value) in fields.iter().rev() {
        bottom_up
            .entry(f.to_ascii_lowercase())
            .or_default()
            .push(value);
    }
    let mut used = std::collections::HashMap::<&str, usize>::new();
    let mut data = Vec::new();
    for name in names {
        let k = used.entry(name).or_default();
        if let Some(value) = bottom_up
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.get(*k))
        {
            relaxed_header(&mut data, name, value);
        }
        *k += 1;
    }
    data
}

/// The message with its signature in front, or why it could not be signed. `Ok(None)`: the
/// sender's domain has no key (the message goes unsigned).
pub async fn sign(
    source: &Arc<dyn DkimSource>,
    tenant: i64,
    message: &[u8],
    now: i64,
) -> Result<Option<Vec<u8>>, String> {
    let Some(domain) = from_domain(message) else {
        return Ok(None);
    };
    let Some(key) = source.key(tenant, &domain).await? else {
        return Ok(None);
    };
    let Some(unsigned) = prepare(message, &domain, &key, now) else {
        return Ok(None);
    };
    let sig = source
        .sign(tenant, &domain, &key.selector, unsigned.digest)
        .await?;
    let mut out = unsigned.header(&sig);
    out.extend_from_slice(message);
    Ok(Some(out))
}

/// Header block and body (after the empty line; empty if there is none).
pub(crate) fn split(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

/// Header fields as (name, raw value with its folding).
pub(crate) fn fields(head: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = head[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |p| i + p);
        let next = (end + 2).min(head.len());
        let continued = head.get(next).is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continued {
            let field = &head[start..end];
            if let Some(colon) = field.iter().position(|b| *b == b':')
                && let Ok(name) = std::str::from_utf8(&field[..colon])
            {
                out.push((name.trim_end(), &field[colon + 1..]));
            }
            start = next;
        }
        i = next;
    }
    out
}

/// The `From` header's domain (the last `@` of its address), lower case.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let (head, _) = split(message);
    let (_, value) = fields(head)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("from"))?;
    let text = String::from_utf8_lossy(value);
    let addr = match (text.rfind('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text.trim(),
    };
    let domain = addr.rsplit_once('@')?.1.trim().trim_end_matches('.');
    let ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| domain.to_ascii_lowercase())
}

/// RFC 6376 §3.4.2: lower-case name, unfolded value, runs of white space as one space, none
/// at the ends.
pub(crate) fn relaxed_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend(name.trim().bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut space = false;
    let mut any = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && any {
                    out.push(b' ');
                }
                space = false;
                any = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 6376 §3.4.4: white space runs as one space, none at line ends, no empty lines at the
/// end; a non-empty body ends with CRLF.
pub(crate) fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut blank_lines = 0;
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut canon = Vec::with_capacity(line.len());
        let mut space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                space = true;
            } else {
                if space {
                    canon.push(b' ');
                }
                space = false;
                canon.push(b);
            }
        }
        if canon.is_empty() {
            blank_lines += 1;
            continue;
        }
        for _ in 0..blank_lines {
            out.extend_from_slice(b"\r\n");
        }
        blank_lines = 0;
        out.extend_from_slice(&canon);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::nouns::DkimAlgorithm;

    #[test]
    fn relaxed_body_squeezes_space_and_drops_trailing_blank_lines() {
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"a\r\n\r\nb"), b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn relaxed_header_unfolds_and_lowercases_the_name() {
        let mut out = Vec::new();
        relaxed_header(&mut out, "Subject ", b" Hello\r\n\t  world  ");
        assert_eq!(out, b"subject:Hello world\r\n");
    }

    #[test]
    fn the_from_domain_is_the_address_s_and_nothing_else() {
        let m = |f: &str| format!("From: {f}\r\nTo: x@y\r\n\r\nbody");
        assert_eq!(
            from_domain(m("A <a@Ex.COM>").as_bytes()).as_deref(),
            Some("ex.com")
        );
        assert_eq!(
            from_domain(m("a@ex.com").as_bytes()).as_deref(),
            Some("ex.com")
        );
        assert_eq!(
            from_domain(m("\"x@evil\" <a@ex.com>").as_bytes()).as_deref(),
            Some("ex.com")
        );
        assert_eq!(from_domain(m("nobody").as_bytes()), None);
        assert_eq!(from_domain(m("a@ex.com; d=evil").as_bytes()), None);
        assert_eq!(from_domain(b"To: x@y\r\n\r\n"), None);
    }

    #[test]
    fn from_is_oversigned_and_a_message_without_from_is_not_signed() {
        let key = DkimKeyRef {
            selector: "s1".into(),
            algorithm: DkimAlgorithm::Ed25519,
        };
        let m = b"From: a@ex.com\r\nSubject: hi\r\nX-Other: 1\r\n\r\nbody\r\n";
        let u = prepare(m, "ex.com", &key, 1).unwrap();
        assert!(u.prefix.contains("h=from:from:subject;"), "{}", u.prefix);
        assert!(prepare(b"Subject: hi\r\n\r\nbody\r\n", "ex.com", &key, 1).is_none());
        // The digest covers the headers: another subject, another digest.
        let changed = String::from_utf8_lossy(m).replace("hi", "ho");
        let other = prepare(changed.as_bytes(), "ex.com", &key, 1).unwrap();
        assert_ne!(u.digest, other.digest);
    }
}
