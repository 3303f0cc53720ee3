//! ARC chains (RFC 8617): their form here, their validation in `validate` (the checks each
//! signature needs; the authentication stage fetches the keys). The form: each instance has
//! exactly one ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results, instances run
//! 1..N without gaps, tag lists are well formed
//! (RFC 6376 §3.2: no empty or duplicate tags, tag names as written), the required tags
//! are there, the algorithm is `rsa-sha256` or `ed25519-sha256` (never SHA-1), and no
//! ARC-Message-Signature signs an ARC-Seal (§4.1.2). A chain that breaks one of these fails,
//! whatever its signatures say.

use std::collections::HashMap;

mod validate;
pub use validate::{Chain, Check, Plan, plan};

/// Most ARC instances (RFC 8617 §4.2.1).
pub const MAX_INSTANCES: u32 = 50;

/// Why the message's ARC headers do not form a valid chain; `None` when they do, or when
/// there are none.
pub fn structure_error(raw: &[u8]) -> Option<String> {
    let mut sets: HashMap<u32, [u32; 3]> = HashMap::new();
    let mut any = false;
    for (name, value) in header_fields(raw) {
        let kind = match name.to_ascii_lowercase().as_str() {
            "arc-seal" => 0,
            "arc-message-signature" => 1,
            "arc-authentication-results" => 2,
            _ => continue,
        };
        any = true;
        let i = match kind {
            2 => aar_instance(&value),
            _ => signature_instance(kind, &value),
        };
        let i = match i {
            Ok(i) => i,
            Err(e) => return Some(e),
        };
        sets.entry(i).or_default()[kind] += 1;
    }
    if !any {
        return None;
    }
    let n = sets.len() as u32;
    if n > MAX_INSTANCES {
        return Some(format!("{n} ARC instances (at most {MAX_INSTANCES})"));
    }
    for i in 1..=n {
        match sets.get(&i) {
            Some([1, 1, 1]) => {}
            Some(counts) => {
                return Some(format!(
                    "instance {i} has {} ARC-Seal, {} ARC-Message-Signature, {} ARC-Authentication-Results (one each)",
                    counts[0], counts[1], counts[2]
                ));
            }
            None => return Some(format!("instance {i} is missing")),
        }
    }
    None
}

/// The `i=` of an ARC-Seal (`kind` 0) or ARC-Message-Signature (1) after checking its form.
fn signature_instance(kind: usize, value: &str) -> Result<u32, String> {
    let what = ["ARC-Seal", "ARC-Message-Signature"][kind];
    let tags = tag_list(value).map_err(|e| format!("{what}: {e}"))?;
    let required: &[&str] = if kind == 0 {
        &["a", "b", "cv", "d", "i", "s"]
    } else {
        &["a", "b", "bh", "d", "h", "i", "s"]
    };
    if let Some(missing) = required.iter().find(|t| !tags.contains_key(**t)) {
        return Err(format!("{what}: no {missing}= tag"));
    }
    let algorithm = tags["a"].to_ascii_lowercase();
    if algorithm != "rsa-sha256" && algorithm != "ed25519-sha256" {
        return Err(format!("{what}: algorithm {algorithm:?} is not allowed"));
    }
    if kind == 1
        && tags["h"]
            .split(':')
            .any(|h| h.trim().eq_ignore_ascii_case("arc-seal"))
    {
        return Err("ARC-Message-Signature signs an ARC-Seal".into());
    }
    instance(&tags["i"]).ok_or_else(|| format!("{what}: i={} is not an instance", tags["i"]))
}

/// The `i=` that starts an ARC-Authentication-Results value.
fn aar_instance(value: &str) -> Result<u32, String> {
    let first = value.split(';').next().unwrap_or("").trim();
    first
        .strip_prefix("i=")
        .and_then(|i| instance(i.trim()))
        .ok_or_else(|| "ARC-Authentication-Results does not start with i=N".into())
}

fn instance(text: &str) -> Option<u32> {
    let i: u32 = text.parse().ok()?;
    (1..=MAX_INSTANCES).contains(&i).then_some(i)
}

/// A DKIM tag list (RFC 6376 §3.2): `name=value` separated by `;` (one may end it), names
/// `ALPHA *(ALPHA / DIGIT / "_")` as written, each once.
fn tag_list(value: &str) -> Result<HashMap<String, String>, String> {
    let mut tags = HashMap::new();
    let parts: Vec<&str> = value.split(';').collect();
    for (n, part) in parts.iter().enumerate() {
        let part = part.trim();
        if part.is_empty() {
            if n + 1 == parts.len() {
                break;
            }
            return Err("an empty tag".into());
        }
        let (name, v) = part
            .split_once('=')
            .ok_or(format!("{part:?} is not name=value"))?;
        let name = name.trim();
        let good = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !good {
            return Err(format!("{name:?} is not a tag name"));
        }
        if tags
            .insert(name.to_string(), v.trim().to_string())
            .is_some()
        {
            return Err(format!("the tag {name}= appears twice"));
        }
    }
    Ok(tags)
}

/// The header fields of a message, unfolded (name, value), up to the blank line (only the
/// header block is read, however large the body).
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let (end, _) = crate::view::header_block(raw);
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: &str = "ARC-Seal: a=rsa-sha256; b=abc; cv=none; d=example.org; i=1; s=sel; t=1\r\n";
    const AMS: &str = "ARC-Message-Signature: a=rsa-sha256; b=abc; bh=def;\r\n c=relaxed/relaxed; d=example.org; h=from:to; i=1; s=sel\r\n";
    const AAR: &str = "ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n";

    fn msg(headers: &[&str]) -> Vec<u8> {
        format!("{}From: a@example.org\r\n\r\nbody\r\n", headers.concat()).into_bytes()
    }

    #[test]
    fn a_well_formed_chain_and_no_chain_pass_the_structure_check() {
        assert_eq!(structure_error(&msg(&[AS, AMS, AAR])), None);
        assert_eq!(structure_error(&msg(&[])), None);
    }

    #[test]
    fn broken_forms_fail() {
        let cases: &[(&[&str], &str)] = &[
            (&[AS, AAR], "missing AMS"),
            (&[AS, AMS, AMS, AAR], "two AMS"),
            (
                &[
                    &AS.replace("i=1", "i=2"),
                    &AMS.replace("i=1", "i=2"),
                    &AAR.replace("i=1", "i=2"),
                ],
                "gap",
            ),
            (&[&AS.replace("rsa-sha256", "rsa-sha1"), AMS, AAR], "SHA-1"),
            (&[&AS.replace("a=rsa-sha256; ", ""), AMS, AAR], "no a="),
            (
                &[&AS.replace("s=sel", "s=sel; s=sel"), AMS, AAR],
                "duplicate",
            ),
            (&[&AS.replace("s=sel", "S=sel"), AMS, AAR], "tag name case"),
            (&[&AS.replace("s=sel;", "s=sel;;"), AMS, AAR], "empty tag"),
            (&[&AS.replace("t=1", "_=; t=1"), AMS, AAR], "bad tag name"),
            (
                &[AS, &AMS.replace("h=from:to", "h=from:arc-seal:to"), AAR],
                "AMS signs AS",
            ),
            (
                &[
                    AS,
                    AMS,
                    "ARC-Authentication-Results: mx.example.org; spf=pass\r\n",
                ],
                "AAR without i=",
            ),
        ];
        for (headers, what) in cases {
            assert!(structure_error(&msg(headers)).is_some(), "{what}");
        }
    }
}
