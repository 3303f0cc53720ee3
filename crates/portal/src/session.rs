//! Who is asking: the session cookie (or an API token) resolved by the vault, the CSRF check
//! on every state-changing request, and the route → token scope table. The portal decides
//! nothing else about a person: what they may see or change, the vault decides per act.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use proto::acts::{Act, Ask};
use proto::client::CallError;
use proto::vault::{Request, Response as VaultResponse, SessionUser};
use proto::{Role, Scope};

use crate::Portal;
use crate::problem::{Problem, vault_problem};

/// The session cookie.
pub const COOKIE: &str = "sekisho_session";
/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The logged-in caller, as the vault vouches for it.
pub struct Session {
    /// Who.
    pub user: SessionUser,
    /// The session token (passed on to the vault for content opens).
    pub token: String,
    /// The CSRF token bound to the session.
    pub csrf: String,
    /// Re-confirmed with the second factor within the last few minutes (step-up).
    pub stepped_up: bool,
}

impl Session {
    /// Asks the vault to perform `act` on this person's behalf: the vault checks it and
    /// records it; a refusal becomes the problem of its kind.
    pub async fn ask<A: Ask + Into<Act>>(&self, p: &Portal, act: A) -> Result<A::Answer, Problem> {
        p.vault.act(&self.token, act).await.map_err(vault_problem)
    }

    /// True for an operator.
    pub fn is_operator(&self) -> bool {
        self.user.role == Role::Operator
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Who the session cookie in `headers` belongs to, as the vault says (no CSRF check: the
/// caller checks the token where the request changes something).
pub(crate) async fn resolve_session(
    headers: &HeaderMap,
    portal: &Portal,
) -> Result<Session, Problem> {
    let token = cookie_token(headers).ok_or_else(Problem::unauthenticated)?;
    resolve_token(token, portal).await
}

/// Who a session or API token belongs to, as the vault says.
async fn resolve_token(token: String, portal: &Portal) -> Result<Session, Problem> {
    let (user, csrf, stepped_up) = match portal
        .vault
        .call(
            &Request::Session {
                token: token.clone(),
            },
            &[],
        )
        .await
    {
        Ok((
            VaultResponse::User {
                user,
                csrf,
                stepped_up,
            },
            _,
        )) => (user, csrf, stepped_up),
        Ok(_) => return Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(_)) => return Err(Problem::unauthenticated()),
        Err(e) => return Err(vault_problem(e)),
    };
    Ok(Session {
        user,
        token,
        csrf,
        stepped_up,
    })
}

impl FromRequestParts<Arc<Portal>> for Session {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, portal: &Arc<Portal>) -> Result<Self, Problem> {
        // Automation: `Authorization: Bearer st1_…` (no cookie, so no CSRF), narrowed to the
        // token's scopes here, for every route at once.
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        if let Some(token) = bearer {
            if !token.starts_with("st1_") {
                return Err(Problem::unauthenticated());
            }
            let s = resolve_token(token, portal).await?;
            let need = token_scope(&parts.method, parts.uri.path()).ok_or_else(|| {
                Problem::forbidden("API tokens cannot do this: log in to the portal")
            })?;
            if let Some(need) = need
                && !s.user.allows(need)
            {
                return Err(Problem::forbidden(format!(
                    "this API token lacks the {need} scope"
                )));
            }
            return Ok(s);
        }
        let s = resolve_session(&parts.headers, portal).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !proto::ct_eq(sent, s.csrf.as_bytes()) {
                return Err(Problem::forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header: send the csrf_token from the login answer or GET /api/me"
                )));
            }
        }
        Ok(s)
    }
}

/// What an API token needs for a request: `None`, no token may ask it (only people do);
/// `Some(None)`, any token; `Some(Some(scope))`, a token with that scope. The vault checks
/// the scope of every act again.
pub fn token_scope(method: &Method, path: &str) -> Option<Option<Scope>> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let pick = |r: Scope, w: Scope| if read { r } else { w };
    Some(Some(match () {
        _ if path == "/api/me" && read => return Some(None),
        _ if under("/api/quarantine") && path.ends_with("/sender") => Scope::SendersWrite,
        _ if under("/api/quarantine") => pick(Scope::QuarantineRead, Scope::QuarantineWrite),
        _ if under("/api/senders") => pick(Scope::SendersRead, Scope::SendersWrite),
        _ if path == "/api/stats" && read => Scope::StatsRead,
        _ if path == "/api/trace" && read => Scope::TraceRead,
        _ if path == "/api/lockbox" && read => Scope::LockboxRead,
        _ if path == "/api/alerts" && read => Scope::AlertsRead,
        _ if path.starts_with("/api/tenants/") && path.contains("/recipients") => {
            pick(Scope::RecipientsRead, Scope::RecipientsWrite)
        }
        _ => return None,
    }))
}

pub(crate) fn session_cookie(token: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("token is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scopes_follow_the_route_and_method() {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let needs = |m: &Method, p: &str| token_scope(m, p).flatten();
        assert_eq!(token_scope(&get, "/api/me"), Some(None));
        assert_eq!(needs(&get, "/api/quarantine"), Some(Scope::QuarantineRead));
        assert_eq!(
            needs(&get, "/api/quarantine/X/view"),
            Some(Scope::QuarantineRead)
        );
        assert_eq!(
            needs(&post, "/api/quarantine/X/release"),
            Some(Scope::QuarantineWrite)
        );
        assert_eq!(
            needs(&delete, "/api/quarantine/X"),
            Some(Scope::QuarantineWrite)
        );
        assert_eq!(
            needs(&post, "/api/quarantine/X/sender"),
            Some(Scope::SendersWrite)
        );
        assert_eq!(needs(&get, "/api/senders"), Some(Scope::SendersRead));
        assert_eq!(needs(&delete, "/api/senders/3"), Some(Scope::SendersWrite));
        assert_eq!(needs(&get, "/api/stats"), Some(Scope::StatsRead));
        assert_eq!(needs(&get, "/api/trace"), Some(Scope::TraceRead));
        assert_eq!(needs(&get, "/api/lockbox"), Some(Scope::LockboxRead));
        assert_eq!(needs(&get, "/api/alerts"), Some(Scope::AlertsRead));
        assert_eq!(
            needs(&post, "/api/tenants/3/recipients"),
            Some(Scope::RecipientsWrite)
        );
        // What only people do.
        for (m, p) in [
            (&post, "/api/tokens"),
            (&get, "/api/tokens"),
            (&post, "/api/logout"),
            (&post, "/api/step-up"),
            (&post, "/api/lockbox/1/approve"),
            (&post, "/api/me"),
            (&get, "/api/quarantinex"),
        ] {
            assert_eq!(token_scope(m, p), None, "{m} {p}");
        }
    }
}
