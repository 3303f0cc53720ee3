//! Verdicts and times as people are shown them: the symbol list of a verdict, which symbols
//! mark malware, and RFC 2822 dates. Shared by the vault (which enforces the malware step-up)
//! and the faces that show it.

/// Symbols that mark a message as malware: releasing it needs a step-up. (Names of
/// `inspect::Symbol`s; a test in the binary crate checks that each exists.)
pub const MALWARE_SYMBOLS: &[&str] = &[
    "VIRUS_FOUND",
    "EXECUTABLE_ATTACHMENT",
    "DOUBLE_EXTENSION",
    "OFFICE_MACRO",
    "HTML_SMUGGLING",
    "ARCHIVE_BOMB",
];

/// The names in a verdict's symbol list (`NAME(w), …`).
pub fn symbol_names(symbols: &str) -> impl Iterator<Item = &str> {
    symbols
        .split(',')
        .map(|s| s.trim().split('(').next().unwrap_or("").trim())
        .filter(|s| !s.is_empty())
}

/// True if a verdict's symbol list flags malware.
pub fn malware_flagged(symbols: &str) -> bool {
    symbol_names(symbols).any(|s| MALWARE_SYMBOLS.contains(&s))
}

/// The civil date (year, month, day) of a day number (days since 1970-01-01), by Howard
/// Hinnant's algorithm.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An RFC 2822 date (UTC) for Unix seconds.
pub fn rfc2822(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An RFC 3339 UTC time (`2026-12-07T00:00:00Z`) for Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil(secs.div_euclid(86400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_399), "2000-02-28T23:59:59Z");
        assert_eq!(rfc3339(951_782_400 + 86_400), "2000-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_601_600), "2026-12-07T00:00:00Z");
    }

    #[test]
    fn symbols_and_dates() {
        let v = "BAYES_SPAM(5.00), VIRUS_FOUND(1000.00)";
        assert_eq!(
            symbol_names(v).collect::<Vec<_>>(),
            ["BAYES_SPAM", "VIRUS_FOUND"]
        );
        assert!(malware_flagged(v));
        assert!(!malware_flagged("BAYES_SPAM(5.00)"));
        assert_eq!(rfc2822(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    }
}
