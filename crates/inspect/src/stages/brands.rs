//! Commonly imitated brands, protected out of the box.
//!
//! A tenant's own domains and the configured `protected_brands` are protected against every
//! kind of imitation. These brands are protected without anyone configuring them, so only
//! against the *deceptive* kinds — a name written with look-alike characters, a typo of the
//! name, the name misspelt inside another domain (`paypa1-account-verify.example`) — and only
//! when the message also lures (a display name naming the brand, a link whose text shows
//! another domain, a link to a look-alike). A plain combination (`amazonses.com`,
//! `microsoftonline.com`, a partner's `acme-paypal-shop.example`) is never judged by this list:
//! the brands' own services and partners send a great deal of mail under such names.

use super::phish::{Imitation, edit_distance, fold, skeleton};
use crate::stages::dnsbl::registrable;

/// A brand: its main domain and the other registrable domains it sends mail or links from
/// whose first label is not the brand name itself (those, such as `amazon.co.jp`, are the
/// brand's by rule).
pub struct Brand {
    /// The main domain (`paypal.com`).
    pub domain: &'static str,
    /// Other domains of the brand.
    pub own: &'static [&'static str],
}

/// Brands most imitated in phishing (global and Japanese), each with a name of at least five
/// letters: shorter names are a typo away from too many honest domains.
pub const COMMON: &[Brand] = &[
    Brand {
        domain: "paypal.com",
        own: &["paypalobjects.com", "paypal-community.com"],
    },
    Brand {
        domain: "microsoft.com",
        own: &["microsoftonline.com", "office.com", "live.com"],
    },
    Brand {
        domain: "outlook.com",
        own: &["office365.com", "hotmail.com"],
    },
    Brand {
        domain: "office365.com",
        own: &["microsoft.com", "office.com", "outlook.com"],
    },
    Brand {
        domain: "apple.com",
        own: &["icloud.com", "me.com"],
    },
    Brand {
        domain: "google.com",
        own: &["gmail.com", "googlemail.com", "youtube.com"],
    },
    Brand {
        domain: "amazon.com",
        own: &["amazonses.com", "amazonaws.com", "a2z.com"],
    },
    Brand {
        domain: "netflix.com",
        own: &["nflxext.com", "nflximg.net"],
    },
    Brand {
        domain: "docusign.com",
        own: &["docusign.net"],
    },
    Brand {
        domain: "linkedin.com",
        own: &["licdn.com"],
    },
    Brand {
        domain: "facebook.com",
        own: &["facebookmail.com", "fb.com", "meta.com"],
    },
    Brand {
        domain: "instagram.com",
        own: &["facebookmail.com", "meta.com"],
    },
    Brand {
        domain: "dropbox.com",
        own: &["dropboxmail.com"],
    },
    Brand {
        domain: "adobe.com",
        own: &["adobesign.com", "echosign.com"],
    },
    Brand {
        domain: "wellsfargo.com",
        own: &["wf.com"],
    },
    Brand {
        domain: "bankofamerica.com",
        own: &["bofa.com", "ml.com"],
    },
    Brand {
        domain: "coinbase.com",
        own: &[],
    },
    Brand {
        domain: "binance.com",
        own: &[],
    },
    Brand {
        domain: "americanexpress.com",
        own: &["aexp.com"],
    },
    Brand {
        domain: "mastercard.com",
        own: &[],
    },
    Brand {
        domain: "steampowered.com",
        own: &["steamcommunity.com"],
    },
    Brand {
        domain: "rakuten.co.jp",
        own: &["rakuten-card.co.jp", "rakuten-bank.co.jp"],
    },
    Brand {
        domain: "yahoo.co.jp",
        own: &["yahoo.com"],
    },
    Brand {
        domain: "japanpost.jp",
        own: &["jp-bank.jp"],
    },
    Brand {
        domain: "sagawa-exp.co.jp",
        own: &[],
    },
    Brand {
        domain: "kuronekoyamato.co.jp",
        own: &["yamato-hd.co.jp"],
    },
    Brand {
        domain: "mizuhobank.co.jp",
        own: &["mizuho-fg.co.jp"],
    },
    Brand {
        domain: "smbc-card.com",
        own: &["smbc.co.jp"],
    },
    Brand {
        domain: "aeoncard.co.jp",
        own: &["aeon.co.jp"],
    },
    Brand {
        domain: "mercari.com",
        own: &["mercari.jp"],
    },
];

impl Brand {
    /// The brand's name: the first label of its domain.
    pub fn name(&self) -> &'static str {
        self.domain.split('.').next().unwrap_or(self.domain)
    }

    /// How `candidate` (a normalized domain) deceptively imitates this brand, if it does.
    pub fn imitation(&self, candidate: &str) -> Option<(Imitation, String)> {
        self.imitation_of(&Candidate::new(candidate), &Prepared::new(self))
    }

    fn imitation_of(&self, c: &Candidate<'_>, me: &Prepared) -> Option<(Imitation, String)> {
        if c.registrable == self.domain || self.own.contains(&c.registrable.as_str()) {
            return None;
        }
        let name = self.name();
        // The name itself under another suffix is the brand's country domain (amazon.co.jp),
        // and the name written plainly inside another is a combination: neither is judged.
        if c.first == name || c.first.contains(name) {
            return None;
        }
        if c.skeleton == me.skeleton {
            return Some((
                Imitation::Confusable,
                format!(
                    "{} looks like {} (confusable characters)",
                    c.domain, self.domain
                ),
            ));
        }
        if name.len() >= 6 && within_one(&c.first, name) {
            return Some((
                Imitation::Typo,
                format!("{} is a misspelling of {}", c.domain, self.domain),
            ));
        }
        let misspelt = c.folded.contains(&me.folded)
            || c.first
                .split(['-', '_'])
                .any(|part| name.len() >= 6 && within_one(part, name));
        misspelt.then(|| {
            (
                Imitation::DisguisedCombo,
                format!(
                    "{} contains an imitation of the name {name} of {}",
                    c.domain, self.domain
                ),
            )
        })
    }
}

/// What every comparison needs of a brand, made once.
struct Prepared {
    skeleton: String,
    folded: String,
}

impl Prepared {
    fn new(b: &Brand) -> Self {
        Self {
            skeleton: skeleton(b.name()),
            folded: fold(b.name()),
        }
    }
}

static PREPARED: std::sync::LazyLock<Vec<Prepared>> =
    std::sync::LazyLock::new(|| COMMON.iter().map(Prepared::new).collect());

/// What every comparison needs of a candidate domain, made once for all the brands.
struct Candidate<'a> {
    domain: &'a str,
    registrable: String,
    first: String,
    skeleton: String,
    folded: String,
}

impl<'a> Candidate<'a> {
    fn new(domain: &'a str) -> Self {
        let registrable = registrable(domain).unwrap_or_else(|| domain.to_string());
        let first = registrable.split('.').next().unwrap_or("").to_string();
        Self {
            domain,
            skeleton: skeleton(&first),
            folded: fold(&first),
            registrable,
            first,
        }
    }
}

/// `edit_distance(a, b) <= 1`, without the distance when the lengths already say no.
fn within_one(a: &str, b: &str) -> bool {
    a.chars().count().abs_diff(b.chars().count()) <= 1 && edit_distance(a, b) <= 1
}

/// The first common brand `candidate` deceptively imitates, with how and why.
pub fn imitated(candidate: &str) -> Option<(&'static Brand, Imitation, String)> {
    let c = Candidate::new(candidate);
    COMMON
        .iter()
        .zip(PREPARED.iter())
        .find_map(|(b, me)| b.imitation_of(&c, me).map(|(kind, why)| (b, kind, why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deceptive_spellings_are_imitations() {
        for (candidate, brand, kind) in [
            (
                "paypa1-account-verify.com",
                "paypal.com",
                Imitation::DisguisedCombo,
            ),
            ("paypa1.com", "paypal.com", Imitation::Confusable),
            (
                "micros0ft-security.net",
                "microsoft.com",
                Imitation::DisguisedCombo,
            ),
            ("amazom.com", "amazon.com", Imitation::Typo),
            ("login.rakutem.co.jp", "rakuten.co.jp", Imitation::Typo),
            (
                "docusigm-review.example",
                "docusign.com",
                Imitation::DisguisedCombo,
            ),
        ] {
            let (b, k, _) = imitated(candidate).unwrap_or_else(|| panic!("{candidate}"));
            assert_eq!((b.domain, k), (brand, kind), "{candidate}");
        }
    }

    #[test]
    fn the_brands_own_domains_and_plain_combinations_are_not() {
        for honest in [
            "paypal.com",
            "mail.paypal.com",
            "paypal.me",
            "amazon.co.jp",
            "amazonses.com",
            "eu-west-1.amazonses.com",
            "microsoftonline.com",
            "email.microsoft.com",
            "googlemail.com",
            "acme-paypal-shop.example",
            "docusign.net",
            "cloud.com",
            "apply.com",
            "example.org",
            "yahoo.com",
        ] {
            assert!(
                imitated(honest).is_none(),
                "{honest}: {:?}",
                imitated(honest).map(|x| x.2)
            );
        }
    }

    #[test]
    fn every_brand_names_five_letters_or_more_and_is_registrable() {
        assert!(COMMON.len() >= 25);
        for b in COMMON {
            assert!(b.name().len() >= 5, "{}", b.domain);
            assert_eq!(
                registrable(b.domain).as_deref(),
                Some(b.domain),
                "{}",
                b.domain
            );
        }
    }
}
