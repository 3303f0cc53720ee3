//! Authentication: SPF (RFC 7208, our own evaluator), DKIM (RFC 6376, RSA and Ed25519) and
//! DMARC (RFC 7489) with mail-auth, ARC (RFC 8617, our own chain validation with mail-auth's
//! keys and signature checks), written as `Authentication-Results` (RFC 8601).

use std::sync::Arc;
use std::time::Duration;

use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy as DmarcPolicy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult,
};

use crate::spf::SpfResult as OurSpf;

use crate::dns::DnsCaches;
use crate::evidence::{Evidence, Symbol};
use crate::view::MessageView;
use crate::{BoxFuture, Envelope, Findings, Stage};

/// The authentication stage.
pub struct Authentication {
    authenticator: MessageAuthenticator,
    spf: crate::spf::lookup::Resolver,
    caches: Arc<DnsCaches>,
    authserv_id: String,
    deadline: Duration,
}

impl Authentication {
    /// A stage resolving through `authenticator`, caching in `caches`, writing results under
    /// `authserv_id` (our host name), giving up after `deadline`.
    pub fn new(
        authenticator: MessageAuthenticator,
        caches: Arc<DnsCaches>,
        authserv_id: String,
        deadline: Duration,
    ) -> Self {
        Self {
            spf: crate::spf::lookup::Resolver::new(authenticator.0.clone(), caches.spf.clone()),
            authenticator,
            caches,
            authserv_id,
            deadline,
        }
    }

    fn none_header(&self, why: &str) -> String {
        format!(
            "Authentication-Results: {}; none ({why})\r\n",
            self.authserv_id
        )
    }

    /// Runs all checks on `raw` for `env`.
    pub async fn check(&self, raw: &[u8], env: &Envelope) -> Findings {
        match tokio::time::timeout(self.deadline, self.run(raw, env)).await {
            Ok(f) => f,
            Err(_) => Findings {
                evidence: vec![Evidence::new(
                    Symbol::AuthTimeout,
                    format!("SPF/DKIM/DMARC/ARC not finished within {:?}", self.deadline),
                )],
                headers: vec![self.none_header("authentication deadline exceeded")],
                auth: None,
            },
        }
    }

    /// The ARC chain's result by our own validation (`crate::arc::plan`, RFC 8617 §5.2), each
    /// key fetched through the resolver and TXT cache the other checks use; on a pass, the
    /// newest sealer and the number of instances.
    async fn arc_chain(&self, raw: &[u8]) -> (DkimResult, Option<(String, u32)>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let chain = match crate::arc::plan(raw, now) {
            crate::arc::Plan::None => return (DkimResult::None, None),
            crate::arc::Plan::Fail(why) => {
                tracing::debug!(reason = %why, "ARC chain fails");
                return (DkimResult::Fail(mail_auth::Error::ParseError), None);
            }
            crate::arc::Plan::Verify(chain) => chain,
        };
        for check in &chain.checks {
            let key = self
                .authenticator
                .txt_lookup::<DomainKey>(check.key_name.as_str(), Some(&self.caches.txt))
                .await;
            let verified = key.and_then(|k| {
                k.p.verify_bytes(&check.data, &check.signature, check.algorithm)
            });
            if let Err(e) = verified {
                return match DkimResult::from(e) {
                    temp @ DkimResult::TempError(_) => (temp, None),
                    DkimResult::PermError(e) | DkimResult::Fail(e) => (DkimResult::Fail(e), None),
                    other => (other, None),
                };
            }
        }
        (DkimResult::Pass, Some((chain.sealer, chain.instances)))
    }

    async fn run(&self, raw: &[u8], env: &Envelope) -> Findings {
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return Findings {
                evidence: vec![Evidence::new(
                    Symbol::DkimPermError,
                    "headers could not be parsed for authentication",
                )],
                headers: vec![self.none_header("unparseable header")],
                auth: None,
            };
        };
        let helo = if env.helo.is_empty() {
            "unknown"
        } else {
            env.helo.as_str()
        };
        let a = &self.authenticator;
        let c = &self.caches;
        let (spf_outcome, dkim, arc) = tokio::join!(
            crate::spf::check(
                &self.spf,
                env.client_ip,
                &env.mail_from,
                helo,
                &self.authserv_id
            ),
            a.verify_dkim(c.params(&msg)),
            self.arc_chain(raw),
        );
        let (arc_result, sealer) = arc;
        let arc = ArcOutput::default().with_result(arc_result);
        let mail_from_domain = env.mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let spf = SpfOutput::new(mail_from_domain.to_ascii_lowercase())
            .with_result(library_result(spf_outcome.result));
        let dmarc = a
            .verify_dmarc(c.params(DmarcParameters::new(&msg, &dkim, mail_from_domain, &spf)))
            .await;

        let mut evidence = Vec::new();
        let identity = if env.mail_from.is_empty() {
            format!("postmaster@{helo}")
        } else {
            env.mail_from.clone()
        };
        let spf_symbol = match spf_outcome.result {
            OurSpf::Pass => Symbol::SpfPass,
            OurSpf::Fail => Symbol::SpfFail,
            OurSpf::SoftFail => Symbol::SpfSoftFail,
            OurSpf::Neutral => Symbol::SpfNeutral,
            OurSpf::None => Symbol::SpfNone,
            OurSpf::TempError => Symbol::SpfTempError,
            OurSpf::PermError => Symbol::SpfPermError,
        };
        evidence.push(Evidence::new(
            spf_symbol,
            format!(
                "spf={} smtp.mailfrom={identity} client-ip={}",
                spf_outcome.result, env.client_ip
            ),
        ));
        evidence.push(dkim_evidence(&dkim));
        match arc.result() {
            DkimResult::Pass => evidence.push(Evidence::new(
                Symbol::ArcPass,
                format!("arc=pass ({} sets)", sealer.as_ref().map_or(0, |(_, n)| *n)),
            )),
            DkimResult::None => {}
            DkimResult::TempError(e) => evidence.push(Evidence::new(
                Symbol::AuthTimeout,
                format!("arc=temperror ({e})"),
            )),
            other => evidence.push(Evidence::new(Symbol::ArcFail, format!("arc={other}"))),
        }
        let dmarc_detail = |r: &str| {
            format!(
                "dmarc={r} header.from={} policy.dmarc={}",
                dmarc.domain(),
                dmarc.policy()
            )
        };
        match dmarc.result() {
            DmarcResult::Pass => {
                evidence.push(Evidence::new(Symbol::DmarcPass, dmarc_detail("pass")))
            }
            DmarcResult::Fail(_) => {
                let symbol = match dmarc.policy() {
                    DmarcPolicy::Reject => Symbol::DmarcReject,
                    DmarcPolicy::Quarantine => Symbol::DmarcQuarantine,
                    DmarcPolicy::None | DmarcPolicy::Unspecified => Symbol::DmarcPolicyNone,
                };
                evidence.push(Evidence::new(symbol, dmarc_detail("fail")));
            }
            DmarcResult::TempError(_) => evidence.push(Evidence::new(
                Symbol::DmarcTempError,
                dmarc_detail("temperror"),
            )),
            DmarcResult::PermError(_) => evidence.push(Evidence::new(
                Symbol::DmarcPermError,
                dmarc_detail("permerror"),
            )),
            DmarcResult::None => {}
        }

        if let Some(rules) = &env.rules
            && let Some((sealer, instances)) = &sealer
        {
            let trusted = rules.trusted_arc.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                *sealer == t || sealer.ends_with(&format!(".{t}"))
            });
            if trusted {
                // RFC 8617 §7.2: a receiver may honour a trusted intermediary's vouching for
                // the authentication it saw before forwarding broke SPF and DKIM.
                let before = evidence.len();
                evidence.retain(|e| {
                    !matches!(
                        e.symbol,
                        Symbol::SpfFail
                            | Symbol::SpfSoftFail
                            | Symbol::DkimFail
                            | Symbol::DmarcReject
                            | Symbol::DmarcQuarantine
                            | Symbol::DmarcPolicyNone
                    )
                });
                evidence.push(Evidence::new(
                    Symbol::ArcTrusted,
                    format!(
                        "sealed by trusted forwarder {sealer} (i={instances}); {} forwarding failure(s) set aside",
                        before - evidence.len()
                    ),
                ));
            }
        }
        let header_from = msg.from.first().map(String::as_str).unwrap_or("");
        let ar = AuthenticationResults::new(&self.authserv_id)
            .with_dkim_results(&dkim, header_from)
            .with_spf_mailfrom_result(&spf, env.client_ip, &env.mail_from, helo)
            .with_arc_result(&arc, env.client_ip)
            .with_dmarc_result(&dmarc);
        let mut ar = ar.to_string();
        if dkim.is_empty() {
            // mail-auth omits DKIM when there is no signature; RFC 8601 readers expect "none".
            ar.insert_str(self.authserv_id.len(), ";\r\n\tdkim=none");
        }
        let summary = AuthSummary {
            spf: spf_outcome.result.word(),
            spf_domain: mail_from_domain.to_ascii_lowercase(),
            dkim: dkim
                .iter()
                .map(|o| DkimSummary {
                    result: dkim_word(o.result()),
                    domain: o.signature().map(|s| s.d.to_ascii_lowercase()),
                    selector: o.signature().map(|s| s.s.clone()),
                })
                .collect(),
            dmarc: match dmarc.result() {
                DmarcResult::Pass => "pass",
                DmarcResult::Fail(_) => "fail",
                DmarcResult::TempError(_) => "temperror",
                DmarcResult::PermError(_) => "permerror",
                DmarcResult::None => "none",
            },
            arc: match arc.result() {
                DkimResult::Pass => "pass",
                DkimResult::None => "none",
                DkimResult::TempError(_) => "temperror",
                _ => "fail",
            },
        };
        Findings {
            evidence,
            headers: vec![format!("Authentication-Results: {ar}\r\n")],
            auth: Some(summary),
        }
    }
}

/// The authentication results of one message in RFC 8601 result words (`sekisho check
/// --json` prints them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthSummary {
    /// SPF for the MAIL FROM (or HELO) identity.
    pub spf: &'static str,
    /// The domain SPF checked.
    pub spf_domain: String,
    /// Each DKIM signature's result.
    pub dkim: Vec<DkimSummary>,
    /// DMARC for the From domain.
    pub dmarc: &'static str,
    /// The ARC chain's validation status.
    pub arc: &'static str,
}

/// One DKIM signature's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DkimSummary {
    /// `pass`, `fail`, `neutral`, `temperror`, `permerror`.
    pub result: &'static str,
    /// The signing domain (`d=`), when the signature could be read.
    pub domain: Option<String>,
    /// The selector (`s=`).
    pub selector: Option<String>,
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        // An altered body is a failed signature (as for the symbol above).
        DkimResult::Fail(_)
        | DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => "fail",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::TempError(_) => "temperror",
        DkimResult::PermError(_) => "permerror",
        DkimResult::None => "none",
    }
}

/// Our SPF result as the library's, for its DMARC evaluation and `Authentication-Results`.
fn library_result(r: OurSpf) -> SpfResult {
    match r {
        OurSpf::Pass => SpfResult::Pass,
        OurSpf::Fail => SpfResult::Fail,
        OurSpf::SoftFail => SpfResult::SoftFail,
        OurSpf::Neutral => SpfResult::Neutral,
        OurSpf::None => SpfResult::None,
        OurSpf::TempError => SpfResult::TempError,
        OurSpf::PermError => SpfResult::PermError,
    }
}

/// One DKIM symbol for all signatures: pass if any verifies, else the first failure's kind.
fn dkim_evidence(outputs: &[DkimOutput<'_>]) -> Evidence {
    let describe = |o: &DkimOutput<'_>| {
        let d = o.signature().map_or("?", |s| s.d.as_str());
        format!("dkim={} header.d={d}", o.result())
    };
    let detail = outputs.iter().map(describe).collect::<Vec<_>>().join("; ");
    if outputs.is_empty() {
        return Evidence::new(Symbol::DkimNone, "dkim=none (no signature)");
    }
    if outputs.iter().any(|o| *o.result() == DkimResult::Pass) {
        return Evidence::new(Symbol::DkimPass, detail);
    }
    let symbol = match outputs[0].result() {
        // mail-auth reports an altered body as "neutral"; for us it is a failed signature.
        DkimResult::Fail(_)
        | DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            Symbol::DkimFail
        }
        DkimResult::TempError(_) => Symbol::DkimTempError,
        DkimResult::None => Symbol::DkimNone,
        DkimResult::Neutral(_) | DkimResult::PermError(_) | DkimResult::Pass => {
            Symbol::DkimPermError
        }
    };
    Evidence::new(symbol, detail)
}

impl Stage for Authentication {
    fn inbound_only(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "auth"
    }

    fn inspect<'a>(
        &'a self,
        msg: &'a MessageView<'a>,
        env: &'a Envelope,
    ) -> BoxFuture<'a, Findings> {
        Box::pin(self.check(msg.raw, env))
    }
}
