//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP, HMAC-SHA1, 6 digits, 30 s):
//! what every authenticator app speaks.
//!
//! The secret is 20 random bytes, shown once to the user as base32 and an `otpauth://` URI;
//! afterwards only the vault holds it (sealed with the KEK). A code is accepted for the current
//! step and one step either side (clock drift), and never twice: the caller stores the last
//! step used and passes it back, so a code seen over a shoulder or in a log cannot be replayed.

use aws_lc_rs::{hmac, rand};
use zeroize::Zeroizing;

/// Seconds per step.
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of now.
pub const SKEW: i64 = 1;
/// Secret length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// A fresh random secret.
pub fn generate() -> Zeroizing<Vec<u8>> {
    let mut s = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rand::fill(&mut s[..]).expect("system random generator");
    s
}

/// RFC 4226 HOTP value for `counter`, reduced to `digits`.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    bin % 10u32.pow(digits)
}

/// The step `unix_time` falls in.
pub fn step_of(unix_time: i64) -> i64 {
    unix_time.div_euclid(STEP)
}

/// Checks `code` at `now`: the step it matched, if it is valid and newer than `last_used`.
/// Every candidate step is computed and compared, so timing does not tell which one matched.
pub fn verify(secret: &[u8], code: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now_step = step_of(now);
    let mut matched = None;
    for step in now_step - SKEW..=now_step + SKEW {
        if step < 0 {
            continue;
        }
        let want = format!(
            "{:0width$}",
            hotp(secret, step as u64, DIGITS),
            width = DIGITS as usize
        );
        if crate::ct_eq(want.as_bytes(), code.as_bytes()) && last_used.is_none_or(|l| step > l) {
            matched = Some(step);
        }
    }
    matched
}

/// The current code (tests and the enrolment check).
pub fn code_at(secret: &[u8], unix_time: i64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, step_of(unix_time) as u64, DIGITS),
        width = DIGITS as usize
    )
}

/// RFC 4648 base32 without padding (what authenticator apps take).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app scans (issuer and account percent-encoded).
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_hotp_vectors() {
        let want = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, i as u64, 6), *w, "counter {i}");
        }
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        for (t, w) in [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(RFC_SECRET, step_of(t) as u64, 8), w, "time {t}");
        }
    }

    #[test]
    fn verify_window_and_replay() {
        let now = 1_700_000_000;
        let code = code_at(RFC_SECRET, now);
        let step = verify(RFC_SECRET, &code, now, None).expect("current code");
        assert_eq!(step, step_of(now));
        assert_eq!(
            verify(RFC_SECRET, &code, now, Some(step)),
            None,
            "replay refused"
        );
        assert!(
            verify(RFC_SECRET, &code, now + STEP, None).is_some(),
            "one step late"
        );
        assert_eq!(
            verify(RFC_SECRET, &code, now + 3 * STEP, None),
            None,
            "too late"
        );
        assert_eq!(verify(RFC_SECRET, "12345", now, None), None, "wrong length");
        assert_eq!(verify(RFC_SECRET, "12a456", now, None), None, "not digits");
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(verify(RFC_SECRET, &wrong, now, None), None);
    }

    #[test]
    fn base32_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(i.as_bytes()), o);
        }
        assert!(
            uri("Sekisho", "a b@x", RFC_SECRET)
                .starts_with("otpauth://totp/Sekisho:a%20b@x?secret=GEZDGNBV")
        );
    }
}
