//! The secrets the vault keeps for mx: tenants' connector secrets (sealed under the KEK when
//! an administrator sets one, opened for the mx role alone when a route needs it) and each
//! node's spool key (created on first use, handed to its mx alone). Every hand-out is
//! recorded; a canary secret asked for is raised.

use super::*;

impl Vault {
    /// Seals a tenant's connector secret under the KEK, bound to the tenant and its kind.
    pub(super) async fn seal_secret(
        &self,
        tenant: &str,
        principal: &str,
        value: &[u8],
    ) -> (Response, Vec<u8>) {
        let mut rec = NewRecord {
            principal,
            action: "seal-secret",
            ..NewRecord::by(proto::Process::Vault)
        };
        let secret = match ConnectorSecret::from_bytes(value).and_then(|s| s.validate().map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                rec.outcome = "refused: invalid value";
                self.record(rec).await;
                return refusal(&Refused::invalid(e));
            }
        };
        let kind = secret.kind();
        rec.object = kind.name();
        let id = match self.store.tenant_id(tenant).await {
            Ok(id) => id,
            Err(e) => {
                rec.outcome = "refused: no such tenant";
                self.record(rec).await;
                return refused(&e.to_string());
            }
        };
        rec.tenant_id = Some(id);
        let sealed = SealedSecret {
            tenant_id: id,
            kind: kind.name().to_string(),
            sealed: seal_secret(&self.kek(), id, &secret),
        };
        match self.store.secret_put(&sealed).await {
            Ok(()) => {
                rec.outcome = "ok";
                self.record(rec).await;
                (
                    Response::Done {
                        summary: format!("{kind} secret of {tenant} sealed"),
                    },
                    Vec::new(),
                )
            }
            Err(e) => error(&e.to_string()),
        }
    }

    /// Hands a node's spool key to its mx (created and wrapped on first use). Recorded.
    pub(super) async fn spool_key(
        &self,
        node: &str,
        token: &RoleToken,
        spool_empty: bool,
    ) -> (Response, Vec<u8>) {
        let mut rec = NewRecord {
            principal: "mx",
            action: "spool-key",
            object: node,
            ..NewRecord::by(proto::Process::Vault)
        };
        if !self.is_mx(token) {
            rec.principal = "unknown";
            rec.outcome = "refused: not the mx role";
            self.record(rec).await;
            return refused("the spool key is given only to the mx role");
        }
        let key = match self.load_spool_key(node, spool_empty, &mut rec).await {
            Ok(k) => k,
            Err(message) => {
                rec.outcome = "failed";
                self.record(rec).await;
                return (Response::Error { message }, Vec::new());
            }
        };
        if rec.outcome.is_empty() {
            rec.outcome = "ok";
        }
        self.record(rec).await;
        (Response::SpoolKey, key.to_hex().as_bytes().to_vec())
    }

    /// The node's spool key, created on first use. One that does not open (a database
    /// restored from before a KEK rotation) is replaced only while the spool holds nothing
    /// sealed; otherwise mx must not start with a key that would lose its queue.
    pub(super) async fn load_spool_key(
        &self,
        node: &str,
        spool_empty: bool,
        rec: &mut NewRecord<'_>,
    ) -> Result<keys::SecretKey, String> {
        let kek = self.kek();
        let wrapped = match self
            .store
            .spool_key(node)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(w) => w,
            None => {
                let (_, wrapped) = crate::generate_spool_key(&kek, node);
                self.store
                    .spool_key_create(node, &wrapped)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        match crate::unwrap_spool_key(&kek, node, &wrapped) {
            Ok(key) => Ok(key),
            Err(e) if !spool_empty => Err(e.to_string()),
            Err(e) => {
                tracing::warn!(node, error = %e, "the stored spool key does not open; the spool is empty, so it is replaced");
                let (key, wrapped) = crate::generate_spool_key(&kek, node);
                self.store
                    .spool_key_replace(node, &wrapped)
                    .await
                    .map_err(|e| e.to_string())?;
                rec.outcome = "ok: the stored key did not open and the spool was empty; replaced";
                Ok(key)
            }
        }
    }

    /// Opens a tenant's connector secret for the mx role (refused to any other token).
    pub(super) async fn use_secret(
        &self,
        tenant: i64,
        kind: SecretKind,
        token: &RoleToken,
    ) -> (Response, Vec<u8>) {
        let mut rec = NewRecord {
            principal: "mx",
            action: "use-secret",
            tenant_id: Some(tenant),
            object: kind.name(),
            ..NewRecord::by(proto::Process::Vault)
        };
        if !self.is_mx(token) {
            rec.principal = "unknown";
            rec.outcome = "refused: not the mx role";
            self.record(rec).await;
            return refused("connector secrets are given only to the mx role");
        }
        if self
            .canaries
            .contains(&format!("secret:{tenant}:{}", kind.name()))
        {
            let summary = format!(
                "the {kind} canary secret of tenant {tenant} was obtained through the mx role token: no route uses it, so code in mx is asking for secrets"
            );
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule: "canary-touched",
                severity: proto::Severity::Critical,
                dedupe_key: &format!("canary:secret:{tenant}:{kind}"),
                principal: "mx",
                tenant_id: Some(tenant),
                summary: &summary,
            })
            .await;
        }
        let sealed = match self.store.secret_get(tenant, kind.name()).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                rec.outcome = "refused: not set";
                self.record(rec).await;
                return refused(&format!(
                    "the tenant has no {kind} secret (set one with `sekisho tenant secret set`)"
                ));
            }
            Err(e) => return error(&e.to_string()),
        };
        match open_secret(&self.kek(), tenant, kind, &sealed) {
            Ok(secret) => {
                rec.outcome = "ok";
                self.record(rec).await;
                (Response::Secret, secret.to_bytes().to_vec())
            }
            Err(e) => {
                let outcome = format!("error: {e}");
                rec.outcome = &outcome;
                self.record(rec).await;
                error(&e.to_string())
            }
        }
    }
}
