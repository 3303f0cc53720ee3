//! The web UI's two languages. The first market is Japan: Japanese and English, chosen by the
//! browser's `Accept-Language` (RFC 9110 §12.5.4, with q-values); English when neither is
//! asked for. Every text is written as an (English, Japanese) pair at the place it is used,
//! so no text can exist in one language only.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

/// A UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Japanese.
    Ja,
}

impl Lang {
    /// The language the browser prefers among ours.
    pub fn from_headers(h: &HeaderMap) -> Self {
        h.get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Self::negotiate)
            .unwrap_or(Lang::En)
    }

    /// Picks from an `Accept-Language` value: the highest q among `ja*` and `en*` (and `*`,
    /// which means English here); ties go to the one listed first.
    pub fn negotiate(accept: &str) -> Self {
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("ja") => Lang::Ja,
                Some("en") | Some("*") => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    /// The `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The text in this language.
    pub fn t(self, en: &'static str, ja: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Ja => ja,
        }
    }

    /// The time zone times are shown in before the page's script puts them in the browser's
    /// own: Japan's for Japanese (UTC+9, no daylight saving time), UTC for English. Offset in
    /// seconds and its name.
    pub fn zone(self) -> (i64, &'static str) {
        match self {
            Lang::En => (0, "UTC"),
            Lang::Ja => (9 * 3600, "JST"),
        }
    }

    /// A time as `YYYY-MM-DD HH:MM` in this language's zone ([`Lang::zone`]).
    pub fn time_text(self, unix: i64) -> String {
        let (offset, name) = self.zone();
        let local = unix + offset;
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02} {name}",
            secs / 3600,
            (secs % 3600) / 60
        )
    }

    /// A time for a page: a `<time>` element with the instant in `datetime` (UTC, RFC 3339),
    /// which `app.js` shows in the browser's own time zone; without the script, the text of
    /// [`Lang::time_text`].
    pub fn time(self, unix: i64) -> maud::Markup {
        let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
        let secs = unix.rem_euclid(86_400);
        let iso = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            (secs % 3600) / 60,
            secs % 60
        );
        maud::html! { time datetime=(iso) { (self.time_text(unix)) } }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::from_headers(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_q_values_and_order() {
        assert_eq!(Lang::negotiate("ja,en-US;q=0.9,en;q=0.8"), Lang::Ja);
        assert_eq!(Lang::negotiate("ja-JP"), Lang::Ja);
        assert_eq!(Lang::negotiate("en-GB,ja;q=0.5"), Lang::En);
        assert_eq!(Lang::negotiate("fr-FR,ja;q=0.7,en;q=0.3"), Lang::Ja);
        assert_eq!(Lang::negotiate("fr-FR,de"), Lang::En);
        assert_eq!(Lang::negotiate("ja;q=0,en;q=0.1"), Lang::En);
        assert_eq!(Lang::negotiate("en;q=0.5,ja;q=0.5"), Lang::En);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate(";;;,q=,ja;q=abc"), Lang::Ja);
    }

    #[test]
    fn times_are_calendar_dates_in_the_languages_zone() {
        assert_eq!(Lang::En.time_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(Lang::En.time_text(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(Lang::En.time_text(1_798_761_599), "2026-12-31 23:59 UTC");
        // Japanese: Japan's time (the last minute of 2026 UTC is the next morning there).
        assert_eq!(Lang::Ja.time_text(1_798_761_599), "2027-01-01 08:59 JST");
        assert_eq!(Lang::Ja.time_text(951_749_999), "2000-02-28 23:59 JST");
        assert_eq!(
            Lang::Ja.time(0).into_string(),
            "<time datetime=\"1970-01-01T00:00:00Z\">1970-01-01 09:00 JST</time>"
        );
    }
}
