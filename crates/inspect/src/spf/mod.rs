//! Our own SPF evaluator (RFC 7208). SPF is small and its test suite is its specification:
//! owning the evaluator lets the suite (`tests/e2e/test_spf_suite.py`, through `sekisho
//! check` and a DNS server) hold it to the letter — strict record syntax, the DNS and void
//! lookup limits, macros, `redirect` and `exp` — where a library's leniency had diverged.

pub mod eval;
pub mod lookup;
pub mod macros;
pub mod record;

use std::net::IpAddr;

/// An SPF result (§2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// No record, or no domain to check.
    None,
    /// The record says nothing definite.
    Neutral,
    /// The client is authorized.
    Pass,
    /// The client is not authorized.
    Fail,
    /// Probably not authorized.
    SoftFail,
    /// A transient DNS error.
    TempError,
    /// The record could not be interpreted.
    PermError,
}

impl SpfResult {
    /// The result's word in `Authentication-Results` and `Received-SPF`.
    pub fn word(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The result of one check, and the explanation of a `fail` when the domain gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result.
    pub result: SpfResult,
    /// Why, for people (empty when the result says it all).
    pub reason: String,
    /// The domain's explanation of a `fail` (`exp=`).
    pub explanation: Option<String>,
}

impl Outcome {
    fn new(result: SpfResult, reason: String) -> Self {
        Self {
            result,
            reason,
            explanation: None,
        }
    }
}

/// Checks whether `ip` may send mail for `mail_from`'s domain (or, for the null sender,
/// `postmaster@helo`), asking `lookup`; `receiver` is our host name (the `%{r}` macro).
pub async fn check(
    lookup: &impl lookup::Lookup,
    ip: IpAddr,
    mail_from: &str,
    helo: &str,
    receiver: &str,
) -> Outcome {
    let sender = if mail_from.is_empty() {
        format!("postmaster@{helo}")
    } else {
        mail_from.to_string()
    };
    eval::Check::new(lookup, ip, &sender, helo, receiver)
        .run()
        .await
}
