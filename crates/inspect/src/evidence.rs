//! Evidence: what a stage found, as a typed symbol with a detail text.

use std::fmt;

use serde::Serialize;

/// Declares the symbols once: variant, name, default weight and doc line.
macro_rules! symbols {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal, $weight:expr;)*) => {
        /// Every symbol a stage can produce. The policy weighs them; a symbol unknown to the
        /// policy cannot exist (it is a type, not a string).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum Symbol {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl Symbol {
            /// Every symbol, for documentation and policy validation.
            pub const ALL: &'static [Symbol] = &[$(Symbol::$variant,)*];

            /// The symbol's name as shown in headers and accepted in configuration.
            pub fn name(self) -> &'static str {
                match self {
                    $(Symbol::$variant => $name,)*
                }
            }

            /// What the symbol means (its documentation line).
            pub fn description(self) -> &'static str {
                match self {
                    $(Symbol::$variant => concat!($($doc),*).trim_ascii(),)*
                }
            }

            /// The built-in weight (configuration may override it).
            pub fn default_weight(self) -> f64 {
                match self {
                    $(Symbol::$variant => $weight,)*
                }
            }
        }
    };
}

symbols! {
    /// The GTUBE test string (the spam equivalent of EICAR).
    Gtube = "GTUBE", 1000.0;
    /// No `From:` header.
    MissingFrom = "MISSING_FROM", 2.0;
    /// More than one `From:` header.
    MultipleFrom = "MULTIPLE_FROM", 3.0;
    /// No `Date:` header.
    MissingDate = "MISSING_DATE", 1.0;
    /// No `Message-ID:` header.
    MissingMessageId = "MISSING_MESSAGE_ID", 1.0;
    /// No `Subject:` header.
    MissingSubject = "MISSING_SUBJECT", 0.5;
    /// HTML body without a text alternative.
    HtmlOnly = "HTML_ONLY", 0.5;
    /// HTML without a text alternative from a free mail provider's address: the providers'
    /// own web and phone clients always send both; bulk-mailing software does not.
    FreemailHtmlOnly = "FREEMAIL_HTML_ONLY", 1.5;
    /// The Bayes classifier is at least 99.9% sure the message is spam.
    BayesSpam999 = "BAYES_999", 6.0;
    /// The Bayes classifier puts the message between 99% and 99.9% spam.
    BayesSpam99 = "BAYES_99", 5.0;
    /// The Bayes classifier puts the message between 95% and 99% spam.
    BayesSpam95 = "BAYES_95", 4.5;
    /// The Bayes classifier puts the message between 80% and 95% spam.
    BayesSpam80 = "BAYES_80", 3.5;
    /// The Bayes classifier puts the message between 60% and 80% spam.
    BayesSpam60 = "BAYES_60", 1.0;
    /// The Bayes classifier is at least 90% sure the message is ham.
    BayesHam = "BAYES_HAM", -1.5;
    /// The logistic-regression classifier (decoded text, header names, producer marks) is at
    /// least 99% sure of spam. Alone it does not tag: it needs one more sign.
    LrSpam99 = "LR_SPAM_99", 4.0;
    /// The logistic-regression classifier puts the message between 90% and 99% spam.
    LrSpam90 = "LR_SPAM_90", 3.0;
    /// The logistic-regression classifier puts the message between 70% and 90% spam.
    LrSpam70 = "LR_SPAM_70", 1.5;
    /// The logistic-regression classifier is at least 95% sure the message is ham.
    LrHam = "LR_HAM", -1.5;
    /// The Date header is well after the message arrived.
    DateInFuture = "DATE_IN_FUTURE", 2.0;
    /// The Date header is days before the message arrived.
    DateInPast = "DATE_IN_PAST", 1.0;
    /// The Date header cannot be read (or has an impossible time zone).
    InvalidDate = "INVALID_DATE", 1.5;
    /// The Message-ID is not `<left@right>`.
    InvalidMsgId = "INVALID_MSGID", 1.0;
    /// The subject is written in capitals.
    SubjectAllCaps = "SUBJ_ALL_CAPS", 1.0;
    /// The From display name shows an address at another domain than the real sender.
    FromNameAddress = "FROM_NAME_ADDRESS", 3.0;
    /// A word mixes alphabets (Latin with Cyrillic or Greek look-alike letters).
    MixedScript = "MIXED_SCRIPT", 2.0;
    /// The text is mostly in a script the tenant does not expect.
    ForeignScript = "FOREIGN_SCRIPT", 1.5;
    /// 8-bit text without a declared charset.
    CharsetMissing = "CHARSET_MISSING", 1.0;
    /// HELO is an address literal that is not the client's address.
    HeloIpMismatch = "HELO_IP_MISMATCH", 1.5;
    /// HELO is a bare word or a bare IP address.
    HeloNotFqdn = "HELO_NOT_FQDN", 0.5;
    /// An outside client greets with the recipient's own domain.
    HeloClaimsTenant = "HELO_CLAIMS_TENANT", 2.5;
    /// A message from outside carries no Received header (sent by a program directly).
    RcvdNone = "RCVD_NONE", 1.0;
    /// A link goes through a URL shortener (the real target is hidden from filters).
    UrlShortener = "URL_SHORTENER", 1.5;
    /// HTML hides text from the reader (display:none, zero font size, invisible) — a trick to
    /// feed filters words the reader never sees.
    HiddenText = "HIDDEN_TEXT", 2.0;
    /// Wanted bulk mail's shape: a way to unsubscribe, and links that lead partly to the
    /// author's own registrable domain (a newsletter links its site beside others; spam
    /// mostly links elsewhere only, or only its own throwaway domain).
    NewsletterOwnLinks = "NEWSLETTER_OWN_LINKS", -2.5;
    /// A newsletter (`NEWSLETTER_OWN_LINKS`) signed with a copyright notice — a company's
    /// footer — and no sign of impersonation or a link trick beside it.
    NewsletterFooter = "NEWSLETTER_FOOTER", -2.0;
    /// `List-Unsubscribe` on mail whose author domain passes DMARC with a valid DKIM
    /// signature: a sender that answers for its bulk mail.
    ListUnsubSigned = "LIST_UNSUB_SIGNED", -1.5;
    /// Two or three distinct phrases of unsolicited offers ("to be removed from", "no
    /// obligation", "100% guaranteed", …) in the subject or text.
    SpamPhrases = "SPAM_PHRASES", 1.5;
    /// Four or more distinct phrases of unsolicited offers.
    SpamPhrasesMany = "SPAM_PHRASES_MANY", 3.0;
    /// Two or more phrases of the advance-fee scam ("next of kin", "transfer the sum", …).
    AdvanceFee = "ADVANCE_FEE", 3.0;
    /// A word that spam filters look for, written with look-alike digits or symbols or with
    /// its letters spread apart (`v1agra`, `m-o-r-t-g-a-g-e`) so that word filters miss it.
    ObfuscatedWord = "OBFUSCATED_WORD", 2.5;
    /// A link with a user part before its host (`https://bank.example@other.example/`): the
    /// reader sees one name, the browser goes to the other.
    UrlUserinfo = "URL_USERINFO", 2.5;
    /// A link to a bare IP address instead of a name.
    UrlNumericHost = "URL_NUMERIC_HOST", 1.5;
    /// A run of eight or more blanks inside the subject: padding that pushes a tracking
    /// token out of sight (bulk-mailing software; folding never writes it).
    SubjectPadded = "SUBJ_PADDED", 1.5;
    /// A `Received:` field dated month first with the year after the day (`Aug, 28 2002`):
    /// trace forged by bulk-mailing software; no mail server writes it.
    RcvdForgedDate = "RCVD_FORGED_DATE", 1.5;
    /// Plain ASCII text sent base64-encoded: mail programs send such text as it is; base64
    /// hides it from filters reading the raw message.
    Base64Text = "BASE64_TEXT", 1.0;
    /// MIME nesting deeper than the limit.
    MimeTooDeep = "MIME_TOO_DEEP", 5.0;
    /// More MIME parts than the limit.
    MimeTooManyParts = "MIME_TOO_MANY_PARTS", 3.0;
    /// The message could not be parsed as MIME at all.
    MimeUnparseable = "MIME_UNPARSEABLE", 3.0;
    /// SPF (RFC 7208) pass for the MAIL FROM (or HELO) identity.
    SpfPass = "SPF_PASS", -0.5;
    /// SPF fail: the client is not allowed to send for the domain.
    SpfFail = "SPF_FAIL", 3.0;
    /// SPF softfail.
    SpfSoftFail = "SPF_SOFTFAIL", 1.5;
    /// SPF neutral.
    SpfNeutral = "SPF_NEUTRAL", 0.0;
    /// No SPF record.
    SpfNone = "SPF_NONE", 0.5;
    /// SPF could not be evaluated now (DNS).
    SpfTempError = "SPF_TEMPERROR", 0.0;
    /// The SPF record is broken.
    SpfPermError = "SPF_PERMERROR", 1.0;
    /// At least one DKIM (RFC 6376) signature verifies.
    DkimPass = "DKIM_PASS", -0.5;
    /// A DKIM signature does not verify (and none passes).
    DkimFail = "DKIM_FAIL", 2.0;
    /// A DKIM signature could not be checked now (DNS).
    DkimTempError = "DKIM_TEMPERROR", 0.0;
    /// A DKIM signature or key is malformed.
    DkimPermError = "DKIM_PERMERROR", 1.0;
    /// No DKIM signature.
    DkimNone = "DKIM_NONE", 0.5;
    /// DMARC (RFC 7489) pass: an aligned SPF or DKIM pass.
    DmarcPass = "DMARC_PASS", -1.0;
    /// DMARC fail under the domain's `p=reject`.
    DmarcReject = "DMARC_REJECT", 12.0;
    /// DMARC fail under the domain's `p=quarantine`.
    DmarcQuarantine = "DMARC_QUARANTINE", 8.0;
    /// DMARC fail under the domain's `p=none`.
    DmarcPolicyNone = "DMARC_POLICY_NONE", 2.0;
    /// DMARC could not be evaluated now (DNS).
    DmarcTempError = "DMARC_TEMPERROR", 0.0;
    /// The DMARC record is broken.
    DmarcPermError = "DMARC_PERMERROR", 0.5;
    /// The client's IP is on a configured DNS block list (one per listing list).
    DnsblClient = "DNSBL_CLIENT", 4.0;
    /// A link's registrable domain is on a configured domain block list (one per listing).
    DnsblLink = "DNSBL_LINK", 4.0;
    /// ARC (RFC 8617) chain validates.
    ArcPass = "ARC_PASS", -0.5;
    /// The ARC chain validates and its latest sealer is a forwarder the tenant trusts: SPF,
    /// DKIM and DMARC failures caused by forwarding are set aside.
    ArcTrusted = "ARC_TRUSTED", 0.0;
    /// ARC chain present but broken.
    ArcFail = "ARC_FAIL", 1.0;
    /// Authentication did not finish within its deadline.
    AuthTimeout = "AUTH_TIMEOUT", 0.0;
    /// From, Reply-To or MAIL FROM domain imitates a tenant domain or protected brand
    /// (edit distance, confusable characters, or the brand's name inside another domain).
    LookalikeDomain = "LOOKALIKE_DOMAIN", 6.0;
    /// The From display name is a protected person of the tenant, but the address is not theirs.
    Impersonation = "IMPERSONATION", 6.0;
    /// A lookalike sender domain with a lure: a link's text shows another domain than it
    /// leads to, a link leads to a lookalike too, or — when the domain is disguised (look-alike
    /// letters, a typo, a misspelt name inside it) — the display name names the imitated brand.
    /// Together with `LOOKALIKE_DOMAIN` it holds the message even when the phisher's own
    /// domain passes SPF, DKIM and DMARC.
    LookalikeLure = "LOOKALIKE_LURE", 5.0;
    /// The sender (header From or envelope) is on the tenant's or every recipient's allow
    /// list, and the message is authenticated (DMARC, SPF or DKIM pass; DMARC not failed).
    SenderAllowed = "SENDER_ALLOWED", -20.0;
    /// The sender is on an allow list, but the message is not authenticated: the allow is not
    /// applied (a forged From gains nothing).
    SenderAllowedUnauthenticated = "SENDER_ALLOWED_UNAUTHENTICATED", 0.0;
    /// The sender is on the tenant's or every recipient's block list.
    SenderBlocked = "SENDER_BLOCKED", 12.0;
    /// The From address has never written to this tenant before.
    FirstContact = "FIRST_CONTACT", 1.0;
    /// Replies would go to another domain than the author's.
    ReplyToMismatch = "REPLYTO_MISMATCH", 1.0;
    /// A link's visible text names another domain than the one it leads to.
    LinkTextMismatch = "LINK_TEXT_MISMATCH", 2.0;
    /// A link or sender domain is on the known-bad phishing feed.
    PhishFeedDomain = "PHISH_FEED_DOMAIN", 10.0;
    /// A link leads to a lookalike of a tenant domain or protected brand.
    LookalikeLink = "LOOKALIKE_LINK", 5.0;
    /// clamd found a signature.
    VirusFound = "VIRUS_FOUND", 1000.0;
    /// The malware scanner could not be asked (down, error, deadline); see `tempfail_on`.
    ScannerUnavailable = "SCANNER_UNAVAILABLE", 0.0;
    /// An attachment (or archive entry) is an executable by its content.
    ExecutableAttachment = "EXECUTABLE_ATTACHMENT", 8.0;
    /// An executable extension hidden behind another (`invoice.pdf.exe`).
    DoubleExtension = "DOUBLE_EXTENSION", 6.0;
    /// An Office document carries a VBA macro project.
    OfficeMacro = "OFFICE_MACRO", 6.0;
    /// An HTML attachment (or archive entry) with a password field: a phishing page carried in
    /// the mail itself.
    HtmlPasswordForm = "HTML_PASSWORD_FORM", 6.0;
    /// An HTML attachment whose script decodes hidden content and writes, redirects or saves
    /// it ("HTML smuggling").
    HtmlSmuggling = "HTML_SMUGGLING", 5.0;
    /// An archive with encrypted entries (the "password in the mail body" pattern).
    EncryptedArchive = "ENCRYPTED_ARCHIVE", 5.0;
    /// An archive crosses a limit: nesting, entries, total size or compression ratio.
    ArchiveBomb = "ARCHIVE_BOMB", 10.0;
}

impl Symbol {
    /// The symbol of a name (configuration keys).
    pub fn from_name(name: &str) -> Option<Symbol> {
        Symbol::ALL
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What was found.
    pub symbol: Symbol,
    /// Details for people (never message content beyond short identifiers).
    pub detail: String,
}

impl Evidence {
    /// Evidence with a detail text.
    pub fn new(symbol: Symbol, detail: impl Into<String>) -> Self {
        Self {
            symbol,
            detail: detail.into(),
        }
    }
}

/// The symbol reference as a Markdown table (name, weight under `policy`, meaning); the
/// source of `docs/symbols.md` (`sekisho symbols --markdown`).
pub fn markdown_table(policy: &crate::Policy) -> String {
    let mut out = String::from("| symbol | weight | meaning |\n|---|---:|---|\n");
    for s in Symbol::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.name(),
            policy.weight(*s),
            s.description()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_has_a_unique_name_and_a_description() {
        let mut names: Vec<_> = Symbol::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Symbol::ALL.len());
        for s in Symbol::ALL {
            assert!(!s.description().is_empty(), "{s}");
            assert_eq!(Symbol::from_name(&s.name().to_lowercase()), Some(*s));
        }
    }

    #[test]
    fn every_symbol_has_a_line_for_readers_in_both_languages() {
        for s in Symbol::ALL {
            assert!(
                proto::symbols::reason(s.name(), false).is_some()
                    && proto::symbols::reason(s.name(), true).is_some(),
                "{s}: add its one-line reason to crates/proto/src/symbols.rs"
            );
        }
        for name in proto::symbols::known() {
            assert!(
                Symbol::from_name(&name.to_lowercase()).is_some(),
                "{name} is not a symbol any more"
            );
        }
    }

    #[test]
    fn docs_symbols_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/symbols.md");
        let doc = std::fs::read_to_string(&path).expect("docs/symbols.md");
        let table = markdown_table(&crate::Policy::default());
        assert!(
            doc.contains(&table),
            "docs/symbols.md is out of date: regenerate the table with `sekisho symbols --markdown`"
        );
    }
}
