//! A person's API tokens: listed (never the tokens) and revoked. They are made by
//! `token_create` in the parent, which alone sees a new token.

use proto::Refused;
use proto::acts::{TokenRevoke, TokenView};
use store::StoreError;

use super::{Caller, Done};
use crate::server::Vault;

impl Vault {
    pub(super) async fn token_list(&self, c: &Caller) -> Done<Vec<TokenView>> {
        Ok(self
            .store
            .api_tokens_of(c.user.id)
            .await?
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                scopes: t.scopes,
                created_at: t.created_at,
                expires_at: t.expires_at,
                revoked_at: t.revoked_at,
                last_used_at: t.last_used_at,
            })
            .collect())
    }

    pub(super) async fn token_revoke(&self, c: &Caller, a: TokenRevoke) -> Done<String> {
        match self
            .store
            .api_token_revoke(a.id, c.user.id, store::unix_now())
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound(m)) => return Err(Refused::not_found(m).into()),
            Err(e) => return Err(e.into()),
        }
        self.record_act(
            c,
            "token-revoke",
            c.tenant(),
            &format!("token:{}", a.id),
            "revoked",
        )
        .await;
        Ok(format!("token {} revoked", a.id))
    }
}
