//! Free mail providers: anyone can have an address there, so the domain says nothing about an
//! organisation — and the providers' own web and phone clients always send a text part beside
//! HTML, which bulk-mailing software often does not.

/// First labels of registrable domains that belong to one free provider under any public
/// suffix (`yahoo.co.jp`, `gmx.de`, `hotmail.co.uk`).
const LABELS: &[&str] = &[
    "gmail",
    "googlemail",
    "yahoo",
    "ymail",
    "rocketmail",
    "hotmail",
    "aol",
    "gmx",
    "yandex",
    "protonmail",
    "rediffmail",
    "excite",
    "lycos",
    "juno",
    "netzero",
    "earthlink",
    "hushmail",
    "tutanota",
];

/// Registrable domains of free providers whose first label is a common word elsewhere.
const DOMAINS: &[&str] = &[
    "outlook.com",
    "outlook.jp",
    "live.com",
    "live.jp",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "mail.com",
    "email.com",
    "usa.net",
    "mail.ru",
    "web.de",
    "qq.com",
    "163.com",
    "126.com",
    "proton.me",
    "naver.com",
    "zoho.com",
    "docomo.ne.jp",
    "ezweb.ne.jp",
    "softbank.ne.jp",
    "i.softbank.jp",
    "netscape.net",
    "compuserve.com",
];

/// True if `domain` (any case, any subdomain) is a free mail provider's.
pub fn is_free(domain: &str) -> bool {
    let Some(reg) = crate::stages::dnsbl::registrable(&domain.to_ascii_lowercase()) else {
        return false;
    };
    DOMAINS.contains(&reg.as_str())
        || reg
            .split('.')
            .next()
            .is_some_and(|first| LABELS.contains(&first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_under_any_suffix_and_only_them() {
        for d in [
            "gmail.com",
            "yahoo.co.jp",
            "mail.yahoo.com",
            "GMX.de",
            "hotmail.co.uk",
            "outlook.com",
            "docomo.ne.jp",
        ] {
            assert!(is_free(d), "{d}");
        }
        for d in [
            "example.com",
            "outlook.example",
            "live.example.com",
            "mail.example.org",
            "gmail.evil.example",
            "acme.co.jp",
        ] {
            assert!(!is_free(d), "{d}");
        }
        assert!(!is_free("192.0.2.1"));
    }
}
