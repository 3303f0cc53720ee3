//! Quarantine in the vault: each tenant's sealing key (made on first use) and opening a
//! quarantined message for the one reader the rules allow, recorded.

use super::*;

impl Vault {
    /// The tenant's quarantine key (its age recipient), made and wrapped under the KEK on
    /// first use. Recorded when made.
    pub(super) async fn recipient(&self, tenant: i64) -> Result<TenantKey, String> {
        if let Some(k) = self
            .store
            .tenant_key(tenant)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(k);
        }
        let new = generate_tenant_key(&self.kek(), tenant);
        let k = self
            .store
            .put_tenant_key(&TenantKey {
                tenant_id: tenant,
                recipient: new.recipient,
                wrapped: Some(new.wrapped),
            })
            .await
            .map_err(|e| e.to_string())?;
        self.record(NewRecord {
            principal: "vault",
            action: "create-key",
            tenant_id: Some(tenant),
            object: &k.recipient,
            outcome: "ok",
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
        Ok(k)
    }

    /// Opens a quarantined message for reading or release: a reason is required, the rules
    /// (`authorised_item`) say who may, and every attempt is recorded.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open_quarantine(
        &self,
        id: &str,
        purpose: Purpose,
        principal: &str,
        reason: &str,
        session: Option<&str>,
        cli: CliAccess,
    ) -> (Response, Vec<u8>) {
        let (user, principal) = match self.session_of(session, principal).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let principal = principal.as_str();
        let action = format!("open-quarantine:{}", purpose.name());
        let mut rec = NewRecord {
            principal,
            action: &action,
            object: id,
            reason,
            ..NewRecord::by(proto::Process::Vault)
        };
        if reason.trim().is_empty() {
            rec.outcome = "refused: no reason";
            self.record(rec).await;
            return refused("a reason is required to open sealed content");
        }
        let item = match self
            .authorised_item(
                id,
                user.as_ref(),
                if purpose == Purpose::Release {
                    "release"
                } else {
                    "open"
                },
                &mut rec,
            )
            .await
        {
            Ok(i) => i,
            Err(r) => return r,
        };
        // The local CLI reading content (no session; mx never reads, it releases) needs the
        // tenant's consent, as operators in the portal do, or breaks the glass.
        if user.is_none()
            && purpose == Purpose::Read
            && let Err(r) = self
                .cli_read_allowed(&item, principal, reason, &cli, &mut rec)
                .await
        {
            return r;
        }
        if purpose == Purpose::Release
            && malware_flagged(&item.symbols)
            && user.as_ref().is_some_and(|u| u.link.is_some())
        {
            rec.outcome = "refused: malware by link";
            self.record(rec).await;
            return refused(
                "this message was flagged as malware: log in to the portal to release it (it asks for your authenticator)",
            );
        }
        if purpose == Purpose::Release
            && malware_flagged(&item.symbols)
            && let (Some(_), Some(token)) = (&user, session)
            && !self.stepped_up(token).await
        {
            rec.outcome = "refused: step-up needed";
            self.record(rec).await;
            return refused(
                "this message was flagged as malware: confirm with a current code from your authenticator (step-up) before releasing it",
            );
        }
        if self.opens.throttled(&self.store, principal).await {
            rec.outcome = "refused: throttled after a bulk-read alert";
            self.record(rec).await;
            return refused(&format!(
                "opens by {principal} are throttled after a bulk-read alert; an operator must review `sekisho alerts list`"
            ));
        }
        let operator = user
            .as_ref()
            .is_some_and(|u| u.role == proto::Role::Operator)
            || principal.starts_with("cli:");
        if let Some(hours) = self.working_hours
            && operator
            && !hours.contains(store::unix_now())
        {
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule: "operator-off-hours",
                severity: proto::Severity::Warning,
                dedupe_key: &format!("operator-off-hours:{principal}"),
                principal,
                tenant_id: Some(item.tenant_id),
                summary: &format!(
                    "{principal} opened {id} of tenant {} outside working hours (reason {reason:?})",
                    item.tenant
                ),
            })
            .await;
        }
        let alert = if self.canaries.contains(id) {
            Some((
                "canary-touched",
                format!("canary:{id}"),
                format!(
                    "{principal} opened canary item {id} (purpose {}, reason {reason:?}): no legitimate flow opens it",
                    purpose.name()
                ),
            ))
        } else {
            self.opens.note(&self.store, principal).await.map(|(n, threshold)| {
                let rule = self.opens.rule();
                (
                    "bulk-open",
                    format!("bulk-open:{principal}"),
                    format!(
                        "{principal} opened {n} sealed messages within {}s (threshold {threshold}, from {}); further opens refused for {}s",
                        rule.window.as_secs(),
                        if threshold == rule.threshold { "the configuration" } else { "the principal's baseline" },
                        rule.throttle.as_secs()
                    ),
                )
            })
        };
        if let Some((rule, key, summary)) = alert {
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule,
                severity: proto::Severity::Critical,
                dedupe_key: &key,
                principal,
                tenant_id: Some(item.tenant_id),
                summary: &summary,
            })
            .await;
            // Automatic response: a portal user behind a bulk read or a canary open loses
            // every session (a stolen session stops working; the owner logs in again).
            if let Some(u) = &user {
                self.suspend_sessions(u, rule).await;
            }
        }
        let key = match self.store.tenant_key(item.tenant_id).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                rec.outcome = "error: tenant key destroyed";
                self.record(rec).await;
                return refused(
                    "the tenant's key no longer exists (terminated): the message cannot be opened by anyone",
                );
            }
            Err(e) => return error(&e.to_string()),
        };
        let Some(wrapped) = key.wrapped.as_deref() else {
            rec.outcome = "refused: customer-held key";
            self.record(rec).await;
            return refused(
                "this tenant holds its own key (customer-held): the operator side cannot open its mail; the tenant decrypts the sealed blob with its own age identity",
            );
        };
        if key.recipient != item.sealed_to {
            rec.outcome = "error: sealed to another key";
            self.record(rec).await;
            return refused("the message was sealed to a key the tenant no longer has");
        }
        let sealed = self.blobs.get(&item.blob).await.map_err(|e| e.to_string());
        let result = unwrap_identity(&self.kek(), item.tenant_id, &key.recipient, wrapped)
            .map_err(|e| e.to_string())
            .and_then(|identity| open(&identity, &sealed?).map_err(|e| e.to_string()));
        match result {
            Ok(plain) => {
                rec.outcome = "ok";
                self.record(rec).await;
                (Response::Opened, plain.to_vec())
            }
            Err(message) => {
                let outcome = format!("error: {message}");
                rec.outcome = &outcome;
                self.record(rec).await;
                error(&message)
            }
        }
    }
}
