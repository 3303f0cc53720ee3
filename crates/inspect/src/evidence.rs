//! Evidence: what a stage found, as a typed symbol with a detail text.

use std::fmt;

use serde::Serialize;

/// Every symbol a stage can produce. The policy weighs them; a symbol unknown to the policy
/// cannot exist (it is a type, not a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Symbol {
    /// The GTUBE test string (the spam equivalent of EICAR).
    Gtube,
    /// No `From:` header.
    MissingFrom,
    /// More than one `From:` header.
    MultipleFrom,
    /// No `Date:` header.
    MissingDate,
    /// No `Message-ID:` header.
    MissingMessageId,
    /// No `Subject:` header.
    MissingSubject,
    /// HTML body without a text alternative.
    HtmlOnly,
    /// MIME nesting deeper than the limit.
    MimeTooDeep,
    /// More MIME parts than the limit.
    MimeTooManyParts,
    /// The message could not be parsed as MIME at all.
    MimeUnparseable,
}

impl Symbol {
    /// Every symbol, for documentation and policy validation.
    pub const ALL: &'static [Symbol] = &[
        Symbol::Gtube,
        Symbol::MissingFrom,
        Symbol::MultipleFrom,
        Symbol::MissingDate,
        Symbol::MissingMessageId,
        Symbol::MissingSubject,
        Symbol::HtmlOnly,
        Symbol::MimeTooDeep,
        Symbol::MimeTooManyParts,
        Symbol::MimeUnparseable,
    ];

    /// The symbol's name as shown in headers and accepted in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Symbol::Gtube => "GTUBE",
            Symbol::MissingFrom => "MISSING_FROM",
            Symbol::MultipleFrom => "MULTIPLE_FROM",
            Symbol::MissingDate => "MISSING_DATE",
            Symbol::MissingMessageId => "MISSING_MESSAGE_ID",
            Symbol::MissingSubject => "MISSING_SUBJECT",
            Symbol::HtmlOnly => "HTML_ONLY",
            Symbol::MimeTooDeep => "MIME_TOO_DEEP",
            Symbol::MimeTooManyParts => "MIME_TOO_MANY_PARTS",
            Symbol::MimeUnparseable => "MIME_UNPARSEABLE",
        }
    }

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
