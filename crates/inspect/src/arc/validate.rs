//! ARC chain validation, RFC 8617 §5.2, as our own: which bytes each signature of the chain
//! must cover, worked out from the raw message. The caller fetches each key and checks each
//! signature (`Check`); this module does no I/O.
//!
//! Steps: the chain's form (`structure_error`); the newest seal's `cv` is not `fail`, the
//! first seal says `cv=none` and every later one `cv=pass`; the newest ARC-Message-Signature
//! covers the body and the header fields its `h=` names; every ARC-Seal, newest first, covers
//! the ARC header fields of its own and every older instance. Older message signatures are
//! not checked (§5.2 step 4 is optional: forwarders are expected to break them).
//!
//! Where RFC 8617 leaves DKIM's syntax ambiguous for ARC, we judge as the ARC validation
//! suite and dkimpy do: a message signature without `c=` is `relaxed/relaxed` (ARC signers
//! write nothing else), and an empty `h=` (a signature over the body and itself) is valid.

use std::collections::HashMap;

use mail_auth::common::crypto::{Algorithm, HashAlgorithm};
use mail_auth::dkim::Canonicalization;

use super::{structure_error, tag_list};

/// One signature to check: the key's DNS name, the signed bytes and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `selector._domainkey.domain`.
    pub key_name: String,
    /// The signing algorithm.
    pub algorithm: Algorithm,
    /// The canonicalized header fields the signature covers (what the signer hashed).
    pub data: Vec<u8>,
    /// The decoded `b=`.
    pub signature: Vec<u8>,
}

/// What the chain needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No ARC header fields.
    None,
    /// The chain fails without any key (form, `cv`, body hash, expiry), and why.
    Fail(String),
    /// The chain passes if every check verifies.
    Verify(Chain),
}

/// A chain whose form holds, and what proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The newest message signature's check, then each seal's, newest first.
    pub checks: Vec<Check>,
    /// The newest seal's `d=`: who vouches for the chain (lower case).
    pub sealer: String,
    /// How many instances the chain has.
    pub instances: u32,
}

/// A header field as written: name, and value with its folding and final line break.
type RawField<'a> = (&'a [u8], &'a [u8]);

/// An ARC header field as received: its name and value as written (for simple
/// canonicalization) and its tags.
struct Field<'a> {
    name: &'a [u8],
    value: &'a [u8],
    tags: HashMap<String, String>,
}

/// The checks a message's ARC chain needs, at time `now` (seconds since the epoch).
pub fn plan(raw: &[u8], now: u64) -> Plan {
    if !raw_fields(raw).iter().any(|(n, _)| arc_kind(n).is_some()) {
        return Plan::None;
    }
    let owned;
    let raw = if raw.windows(2).any(|w| w == b"\r\n") {
        raw
    } else {
        // A message read from a file with bare LF line ends: signers hashed CRLF.
        owned = crlf(raw);
        &owned[..]
    };
    let fields = raw_fields(raw);
    let arc: Vec<&RawField<'_>> = fields
        .iter()
        .filter(|(n, _)| arc_kind(n).is_some())
        .collect();
    if let Some(why) = structure_error(raw) {
        return Plan::Fail(why);
    }
    let sets = match sets(&arc) {
        Ok(s) => s,
        Err(why) => return Plan::Fail(why),
    };
    let n = sets.len();
    let newest_seal = &sets[n - 1][0];
    if tag(&newest_seal.tags, "cv").eq_ignore_ascii_case("fail") {
        return Plan::Fail(format!("instance {n} says cv=fail"));
    }
    for (i, set) in sets.iter().enumerate() {
        let want = if i == 0 { "none" } else { "pass" };
        if !tag(&set[0].tags, "cv").eq_ignore_ascii_case(want) {
            return Plan::Fail(format!(
                "instance {} has cv={} (not {want})",
                i + 1,
                tag(&set[0].tags, "cv")
            ));
        }
    }
    let mut checks = Vec::with_capacity(n + 1);
    match message_signature(raw, &fields, &sets[n - 1][1], now) {
        Ok(c) => checks.push(c),
        Err(why) => return Plan::Fail(why),
    }
    for i in (0..n).rev() {
        match seal(&sets, i) {
            Ok(c) => checks.push(c),
            Err(why) => return Plan::Fail(why),
        }
    }
    Plan::Verify(Chain {
        checks,
        sealer: tag(&newest_seal.tags, "d").to_ascii_lowercase(),
        instances: n as u32,
    })
}

/// 0 for ARC-Seal, 1 for ARC-Message-Signature, 2 for ARC-Authentication-Results.
fn arc_kind(name: &[u8]) -> Option<usize> {
    [
        &b"arc-seal"[..],
        b"arc-message-signature",
        b"arc-authentication-results",
    ]
    .iter()
    .position(|k| name.eq_ignore_ascii_case(k))
}

/// The sets, oldest first, each `[seal, message signature, results]` (the form is already
/// checked: one of each per instance, instances 1..N).
fn sets<'a>(arc: &[&RawField<'a>]) -> Result<Vec<[Field<'a>; 3]>, String> {
    let mut by_instance: HashMap<u32, [Option<Field<'a>>; 3]> = HashMap::new();
    for (name, value) in arc {
        let kind = arc_kind(name).ok_or("not an ARC field")?;
        let text = String::from_utf8_lossy(value);
        let (tags, i) = if kind == 2 {
            let i = text.split(';').next().unwrap_or("").trim();
            (
                HashMap::new(),
                i.strip_prefix("i=").unwrap_or("").trim().to_string(),
            )
        } else {
            let tags = tag_list(&unfold(&text))?;
            let i = tags.get("i").cloned().unwrap_or_default();
            (tags, i)
        };
        let i: u32 = i.parse().map_err(|_| format!("i={i} is not an instance"))?;
        by_instance.entry(i).or_default()[kind] = Some(Field { name, value, tags });
    }
    let mut out = Vec::with_capacity(by_instance.len());
    for i in 1..=by_instance.len() as u32 {
        let [Some(a), Some(b), Some(c)] = by_instance.remove(&i).unwrap_or_default() else {
            return Err(format!("instance {i} is incomplete"));
        };
        out.push([a, b, c]);
    }
    Ok(out)
}

/// The newest ARC-Message-Signature's check, after its body hash and expiry.
fn message_signature(
    raw: &[u8],
    fields: &[RawField<'_>],
    ams: &Field<'_>,
    now: u64,
) -> Result<Check, String> {
    let tags = &ams.tags;
    if let Some(x) = tags.get("x") {
        let x: u64 = x.parse().map_err(|_| format!("x={x} is not a time"))?;
        if x < now {
            return Err("the newest ARC-Message-Signature has expired".into());
        }
    }
    let (header_c, body_c) = canonicalizations(tags.get("c").map(String::as_str))?;
    let limit: u64 = match tags.get("l") {
        Some(l) => l.parse().map_err(|_| format!("l={l} is not a length"))?,
        None => 0,
    };
    let (_, body_start) = crate::view::header_block(raw);
    let body = &raw[body_start.min(raw.len())..];
    let hash = HashAlgorithm::Sha256.hash(body_c.canonical_body(body, limit));
    if b64(tag(tags, "bh"))? != hash.as_ref() {
        return Err("the body does not match the newest ARC-Message-Signature's bh=".into());
    }
    let names: Vec<&str> = tag(tags, "h")
        .split(':')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut data = Vec::with_capacity(1024);
    header_c.canonicalize_headers(selected(fields, &names).into_iter(), &mut data);
    let stripped = strip_b(ams.value);
    header_c.canonicalize_headers(std::iter::once((ams.name, trim_crlf(&stripped))), &mut data);
    check(tags, data)
}

/// The check of the seal of instance `i` (0-based): the ARC fields of instances 1..=i, each
/// instance's results, message signature and seal in that order, relaxed, the seal's own
/// `b=` emptied.
fn seal(sets: &[[Field<'_>; 3]], i: usize) -> Result<Check, String> {
    let mut data = Vec::with_capacity(2048);
    let relaxed = Canonicalization::Relaxed;
    for set in &sets[..i] {
        for f in [&set[2], &set[1], &set[0]] {
            relaxed.canonicalize_headers(std::iter::once((f.name, f.value)), &mut data);
        }
    }
    let [own_seal, own_ams, own_aar] = &sets[i];
    for f in [own_aar, own_ams] {
        relaxed.canonicalize_headers(std::iter::once((f.name, f.value)), &mut data);
    }
    let stripped = strip_b(own_seal.value);
    relaxed.canonicalize_headers(
        std::iter::once((own_seal.name, trim_crlf(&stripped))),
        &mut data,
    );
    check(&own_seal.tags, data)
}

fn check(tags: &HashMap<String, String>, data: Vec<u8>) -> Result<Check, String> {
    let algorithm = match tag(tags, "a").to_ascii_lowercase().as_str() {
        "rsa-sha256" => Algorithm::RsaSha256,
        "ed25519-sha256" => Algorithm::Ed25519Sha256,
        other => return Err(format!("algorithm {other:?} is not allowed")),
    };
    Ok(Check {
        key_name: format!("{}._domainkey.{}", tag(tags, "s"), tag(tags, "d")),
        algorithm,
        data,
        signature: b64(tag(tags, "b"))?,
    })
}

/// Header and body canonicalization from a `c=` value; none given is `relaxed/relaxed`.
fn canonicalizations(c: Option<&str>) -> Result<(Canonicalization, Canonicalization), String> {
    let word = |w: &str| match w.trim().to_ascii_lowercase().as_str() {
        "relaxed" => Ok(Canonicalization::Relaxed),
        "simple" => Ok(Canonicalization::Simple),
        other => Err(format!("c={other:?} is not a canonicalization")),
    };
    match c {
        None => Ok((Canonicalization::Relaxed, Canonicalization::Relaxed)),
        Some(c) => match c.split_once('/') {
            Some((h, b)) => Ok((word(h)?, word(b)?)),
            None => Ok((word(c)?, Canonicalization::Simple)),
        },
    }
}

/// The fields an `h=` list selects, in its order: each name takes the lowest not yet taken
/// field of that name (RFC 6376 §5.4.2); a name with no field left selects nothing. Linear in
/// the fields and names (a sender controls both counts).
fn selected<'a>(fields: &[RawField<'a>], names: &[&str]) -> Vec<RawField<'a>> {
    let mut bottom_up: HashMap<Vec<u8>, Vec<RawField<'a>>> = HashMap::new();
    for f in fields.iter().rev() {
        bottom_up
            .entry(f.0.to_ascii_lowercase())
            .or_default()
            .push(*f);
    }
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let key = name.to_ascii_lowercase();
        let skip = taken.entry(key.clone()).or_insert(0);
        if let Some(f) = bottom_up.get(key.as_bytes()).and_then(|v| v.get(*skip)) {
            out.push(*f);
        }
        *skip += 1;
    }
    out
}

/// The header fields as written: name, and the value after the colon through its final
/// line break (folding kept).
fn raw_fields(raw: &[u8]) -> Vec<RawField<'_>> {
    let (end, _) = crate::view::header_block(raw);
    let block = &raw[..(end + 2).min(raw.len())];
    let mut out: Vec<RawField<'_>> = Vec::new();
    let mut start = 0;
    while start < block.len() {
        let mut stop = start;
        // A field runs until a line break followed by something other than a blank.
        loop {
            match block[stop..].iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    stop += nl + 1;
                    if !matches!(block.get(stop), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    stop = block.len();
                    break;
                }
            }
        }
        let field = &block[start..stop];
        if let Some(colon) = field.iter().position(|&b| b == b':') {
            out.push((&field[..colon], &field[colon + 1..]));
        }
        start = stop;
    }
    out
}

/// A tag-list value with its `b=` value removed (everything else byte for byte).
fn strip_b(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b';')
            .map_or(rest.len(), |p| p + 1);
        let (tag, next) = rest.split_at(end);
        let name_end = tag.iter().position(|&b| b == b'=');
        let is_b = name_end.is_some_and(|e| tag[..e].trim_ascii() == b"b");
        match name_end {
            Some(e) if is_b => {
                out.extend_from_slice(&tag[..=e]);
                if tag.ends_with(b";") {
                    out.push(b';');
                } else if let Some(crlf_at) = tag.iter().rposition(|&b| b == b'\n') {
                    // The last tag: keep the field's final line break.
                    let from = if crlf_at > 0 && tag[crlf_at - 1] == b'\r' {
                        crlf_at - 1
                    } else {
                        crlf_at
                    };
                    if tag[from..].iter().all(u8::is_ascii_whitespace) {
                        out.extend_from_slice(&tag[from..]);
                    }
                }
            }
            _ => out.extend_from_slice(tag),
        }
        rest = next;
    }
    out
}

/// A tag's value, empty when absent (the form check has already asked for the required ones;
/// this keeps a disagreement from becoming a panic).
fn tag<'t>(tags: &'t HashMap<String, String>, name: &str) -> &'t str {
    tags.get(name).map_or("", String::as_str)
}

fn trim_crlf(v: &[u8]) -> &[u8] {
    let v = v.strip_suffix(b"\n").unwrap_or(v);
    v.strip_suffix(b"\r").unwrap_or(v)
}

fn unfold(text: &str) -> String {
    text.replace("\r\n", "").replace('\n', "")
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|_| "a signature or hash is not base64".to_string())
}

fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for &b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b_is_emptied_and_everything_else_kept() {
        assert_eq!(
            strip_b(b" a=rsa-sha256; b=abc\r\n def; bh=xyz; d=example.org\r\n"),
            b" a=rsa-sha256; b=; bh=xyz; d=example.org\r\n"
        );
        assert_eq!(strip_b(b" i=1; b=abc\r\n  def\r\n"), b" i=1; b=\r\n");
        assert_eq!(strip_b(b" bh=keep; b = abc ;s=x"), b" bh=keep; b =;s=x");
    }

    #[test]
    fn h_selects_fields_from_the_bottom_once_each() {
        let raw = b"From: a\r\nTo: one\r\nTo: two\r\nSubject: s\r\n\r\nbody";
        let fields = raw_fields(raw);
        let got = selected(&fields, &["to", "to", "to", "from", "x-none"]);
        let values: Vec<&[u8]> = got.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, vec![&b" two\r\n"[..], b" one\r\n", b" a\r\n"]);
    }

    #[test]
    fn folded_fields_are_one_field_as_written() {
        let raw = b"Subject: a\r\n  folded\r\nTo: b\r\n\r\nbody";
        let fields = raw_fields(raw);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], (&b"Subject"[..], &b" a\r\n  folded\r\n"[..]));
    }

    #[test]
    fn no_c_is_relaxed_for_both_and_one_word_is_the_header_only() {
        use Canonicalization::*;
        assert_eq!(canonicalizations(None).unwrap(), (Relaxed, Relaxed));
        assert_eq!(
            canonicalizations(Some("simple/relaxed")).unwrap(),
            (Simple, Relaxed)
        );
        assert_eq!(
            canonicalizations(Some("relaxed")).unwrap(),
            (Relaxed, Simple)
        );
        assert!(canonicalizations(Some("loose/simple")).is_err());
    }

    fn chain(cv: &str, bh: &str) -> String {
        format!(
            "ARC-Seal: a=rsa-sha256; b=AAAA; cv={cv}; d=example.org; i=1; s=sel; t=1\r\n\
             ARC-Message-Signature: a=rsa-sha256; b=AAAA; bh={bh};\r\n c=relaxed/relaxed; d=example.org; h=from; i=1; s=sel\r\n\
             ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n\
             From: a@example.org\r\n\r\nbody\r\n"
        )
    }

    #[test]
    fn a_chain_is_planned_newest_message_signature_then_seals() {
        // SHA-256 of the relaxed body "body\r\n".
        let bh = "Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=";
        let Plan::Verify(Chain {
            checks,
            sealer,
            instances,
        }) = plan(chain("none", bh).as_bytes(), 0)
        else {
            panic!("{:?}", plan(chain("none", bh).as_bytes(), 0));
        };
        assert_eq!((sealer.as_str(), instances), ("example.org", 1));
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].key_name, "sel._domainkey.example.org");
        assert!(
            checks[0]
                .data
                .starts_with(b"from:a@example.org\r\narc-message-signature:")
        );
        assert!(
            checks[0].data.ends_with(b"s=sel"),
            "no trailing CRLF after the signature"
        );
        assert!(
            checks[1]
                .data
                .starts_with(b"arc-authentication-results:i=1;")
        );
        assert!(checks[1].data.ends_with(b"t=1"));
        assert_eq!(plan(b"From: a\r\n\r\nbody\r\n", 0), Plan::None);
    }

    #[test]
    fn wrong_cv_or_body_fails_before_any_key() {
        let bh = "Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=";
        for (cv, bh) in [("pass", bh), ("fail", bh), ("none", "AAAA")] {
            assert!(
                matches!(plan(chain(cv, bh).as_bytes(), 0), Plan::Fail(_)),
                "{cv} {bh}"
            );
        }
    }
}
