//! ARC sealing (RFC 8617) of inbound mail as it is handed to a tenant's server: the results
//! Sekisho reached (its own `Authentication-Results`) go into an ARC-Authentication-Results
//! field, an ARC-Message-Signature covers the message as delivered, and an ARC-Seal covers
//! the chain, so a downstream service (Microsoft 365, Google Workspace) that trusts the
//! sealer can trust Sekisho's verdict on authentication that its own checks, behind the
//! gateway, can no longer make.
//!
//! The seal is made with the DKIM key of the recipient's domain (the gateway is that domain's
//! mail exchanger): the vault signs the two digests as it signs outbound mail, so no key is
//! held here.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use proto::vault::DkimKeyRef;

use crate::dkim::{self, DkimSource, Unsigned};

/// Most ARC instances (RFC 8617 §4.2.1): a chain this long is not extended.
pub const MAX_INSTANCES: u32 = 50;

/// What the next set says, read from the message: its instance, the chain's status as our
/// own check found it, and the results to vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextSet {
    /// Instance of the set to add (one more than the newest present).
    pub instance: u32,
    /// `cv=`: `none` for the first set, `pass` when our check validated the chain,
    /// otherwise `fail`.
    pub cv: &'static str,
    /// The ARC-Authentication-Results value (`i=N; authserv-id; results`).
    pub results: String,
}

/// The set a message delivered now would get, or `None`: no `Authentication-Results` of ours
/// (we did not authenticate it), or a chain already at [`MAX_INSTANCES`].
pub fn next_set(message: &[u8], authserv_id: &str) -> Option<NextSet> {
    let (head, _) = dkim::split(message);
    let fields = dkim::fields(head);
    let newest = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("ARC-Seal"))
        .filter_map(|(_, v)| instance_tag(v))
        .max()
        .unwrap_or(0);
    if newest >= MAX_INSTANCES {
        return None;
    }
    let ours = fields.iter().find_map(|(n, v)| {
        if !n.eq_ignore_ascii_case("Authentication-Results") {
            return None;
        }
        let text = String::from_utf8_lossy(v);
        let (id, _) = text.trim_start().split_once(';')?;
        id.trim()
            .eq_ignore_ascii_case(authserv_id)
            .then(|| text.trim().to_string())
    })?;
    let cv = match (newest, arc_word(&ours).as_deref()) {
        (0, _) => "none",
        (_, Some("pass")) => "pass",
        _ => "fail",
    };
    Some(NextSet {
        instance: newest + 1,
        cv,
        results: format!("i={}; {ours}", newest + 1),
    })
}

/// The `arc=` result word of an `Authentication-Results` value.
fn arc_word(results: &str) -> Option<String> {
    let at = results.find("arc=")?;
    let word: String = results[at + 4..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    Some(word.to_ascii_lowercase())
}

/// The `i=` tag of an ARC-Seal or ARC-Message-Signature value.
fn instance_tag(value: &[u8]) -> Option<u32> {
    String::from_utf8_lossy(value).split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim() == "i").then(|| v.trim().parse().ok()).flatten()
    })
}

/// The ARC-Message-Signature of `message` for instance `set`, before its signature.
pub fn message_signature(
    message: &[u8],
    set: &NextSet,
    domain: &str,
    key: &DkimKeyRef,
    now: i64,
) -> Unsigned {
    let (head, body) = dkim::split(message);
    let fields = dkim::fields(head);
    let names = dkim::signed_names(&fields);
    let bh = base64::engine::general_purpose::STANDARD
        .encode(digest(&SHA256, &dkim::relaxed_body(body)).as_ref());
    let prefix = format!(
        "i={}; a={}; c=relaxed/relaxed; d={domain}; s={};\r\n\tt={now}; h={};\r\n\tbh={bh};\r\n\tb=",
        set.instance,
        key.algorithm.tag(),
        key.selector,
        names.join(":"),
    );
    let mut data = dkim::canonical_headers(&fields, &names);
    own_field(&mut data, "arc-message-signature", &prefix);
    unsigned("ARC-Message-Signature", prefix, &data)
}

/// The ARC-Seal for instance `set`, before its signature: over every older set's fields
/// (results, message signature, seal, in instance order) and then the new results, the new
/// message signature (`ams`, the whole field) and the seal itself (RFC 8617 §5.1.1).
pub fn seal(
    message: &[u8],
    set: &NextSet,
    ams: &[u8],
    domain: &str,
    key: &DkimKeyRef,
    now: i64,
) -> Unsigned {
    let (head, _) = dkim::split(message);
    let fields = dkim::fields(head);
    let mut data = Vec::new();
    for i in 1..set.instance {
        for name in [
            "ARC-Authentication-Results",
            "ARC-Message-Signature",
            "ARC-Seal",
        ] {
            if let Some((n, v)) = fields
                .iter()
                .find(|(n, v)| n.eq_ignore_ascii_case(name) && of_instance(name, v) == Some(i))
            {
                dkim::relaxed_header(&mut data, n, v);
            }
        }
    }
    dkim::relaxed_header(
        &mut data,
        "ARC-Authentication-Results",
        set.results.as_bytes(),
    );
    let ams_fields = dkim::fields(ams);
    if let Some((n, v)) = ams_fields.first() {
        dkim::relaxed_header(&mut data, n, v);
    }
    let prefix = format!(
        "i={}; a={}; cv={}; d={domain}; s={};\r\n\tt={now}; b=",
        set.instance,
        key.algorithm.tag(),
        set.cv,
        key.selector,
    );
    own_field(&mut data, "arc-seal", &prefix);
    unsigned("ARC-Seal", prefix, &data)
}

fn of_instance(name: &str, value: &[u8]) -> Option<u32> {
    if name.eq_ignore_ascii_case("ARC-Authentication-Results") {
        let text = String::from_utf8_lossy(value);
        let first = text.trim_start().split(';').next()?.trim().to_string();
        first.strip_prefix("i=")?.trim().parse().ok()
    } else {
        instance_tag(value)
    }
}

/// The signature's own field, relaxed, without its final line break (RFC 6376 §3.7).
fn own_field(data: &mut Vec<u8>, name: &str, prefix: &str) {
    let mut own = Vec::new();
    dkim::relaxed_header(&mut own, name, prefix.as_bytes());
    own.truncate(own.len() - 2);
    data.extend_from_slice(&own);
}

fn unsigned(name: &'static str, prefix: String, data: &[u8]) -> Unsigned {
    let mut d = [0u8; 32];
    d.copy_from_slice(digest(&SHA256, data).as_ref());
    Unsigned {
        name,
        prefix,
        digest: d,
    }
}

/// The message with a new ARC set in front, sealed with `tenant`'s key for `domain`;
/// `Ok(None)` when there is nothing to seal (no key for the domain, no results of ours, a
/// full chain).
pub async fn seal_message(
    source: &Arc<dyn DkimSource>,
    tenant: i64,
    domain: &str,
    authserv_id: &str,
    message: &[u8],
    now: i64,
) -> Result<Option<Vec<u8>>, String> {
    let Some(set) = next_set(message, authserv_id) else {
        return Ok(None);
    };
    let Some(key) = source.key(tenant, domain).await? else {
        return Ok(None);
    };
    let ams = message_signature(message, &set, domain, &key, now);
    let ams_sig = source
        .sign(tenant, domain, &key.selector, ams.digest)
        .await?;
    let ams_field = ams.header(&ams_sig);
    let seal = seal(message, &set, &ams_field, domain, &key, now);
    let seal_sig = source
        .sign(tenant, domain, &key.selector, seal.digest)
        .await?;
    let mut out = seal.header(&seal_sig);
    out.extend_from_slice(&ams_field);
    out.extend_from_slice(format!("ARC-Authentication-Results: {}\r\n", set.results).as_bytes());
    out.extend_from_slice(message);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "Authentication-Results: mx.gw.example;\r\n\tspf=pass smtp.mailfrom=a@b.example;\r\n\tarc=pass smtp.remote-ip=192.0.2.1\r\n";

    #[test]
    fn the_first_set_says_none_and_vouches_for_our_results() {
        let m = format!("{OURS}From: a@b.example\r\n\r\nhi\r\n");
        let set = next_set(m.as_bytes(), "mx.gw.example").unwrap();
        assert_eq!((set.instance, set.cv), (1, "none"));
        assert!(
            set.results.starts_with("i=1; mx.gw.example;"),
            "{}",
            set.results
        );
        assert!(set.results.contains("spf=pass"));
    }

    #[test]
    fn a_later_set_carries_our_check_of_the_chain() {
        let chain = "ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=x; s=y; b=z\r\nARC-Seal: i=1; a=rsa-sha256; cv=none; d=x; s=y; b=z\r\n";
        let m = format!("{OURS}{chain}From: a@b.example\r\n\r\nhi\r\n");
        let set = next_set(m.as_bytes(), "mx.gw.example").unwrap();
        assert_eq!((set.instance, set.cv), (3, "pass"));
        let failed = m.replace("arc=pass", "arc=fail");
        assert_eq!(
            next_set(failed.as_bytes(), "mx.gw.example").unwrap().cv,
            "fail"
        );
    }

    #[test]
    fn nothing_to_seal_without_our_results_or_past_the_limit() {
        let others =
            "Authentication-Results: elsewhere.example; spf=pass\r\nFrom: a@b\r\n\r\nhi\r\n";
        assert_eq!(next_set(others.as_bytes(), "mx.gw.example"), None);
        let full = format!("{OURS}ARC-Seal: i=50; cv=pass\r\nFrom: a@b\r\n\r\nhi\r\n");
        assert_eq!(next_set(full.as_bytes(), "mx.gw.example"), None);
    }
}
