//! RFC 9457 problem details: every error the portal answers, with a message a person can act on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::client::CallError;
use proto::{Refusal, Refused};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, in a few words.
    pub title: &'static str,
    /// What to do about it.
    pub detail: String,
    /// The vault's refusal this answers, when it is one (the web pages word some kinds for
    /// a person at a form rather than a program at the API).
    pub refusal: Option<Refusal>,
}

impl Problem {
    /// A problem with this status, title and detail.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            refusal: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }

    /// 401: no live session.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Not logged in",
            "log in first (POST /api/login); sessions end after 30 minutes idle or 12 hours",
        )
    }

    /// 403: logged in, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    /// 404: nothing there (also what a user is told about another tenant's objects).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    /// 502: the vault answered something this portal does not understand (a version
    /// mismatch or a bug; the detail never carries internals).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "Bad answer from the vault", detail)
    }

    /// 503: the vault, or the database behind it, is not answering right now; the request
    /// can be repeated unchanged later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            detail,
        )
    }
}

/// The problem of a refusal, by its kind: the status is decided here, once, from the type
/// (never from the words).
pub fn refused(r: Refused) -> Problem {
    let (status, title) = match r.kind {
        Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, "Not logged in"),
        Refusal::WrongFactor => (StatusCode::UNAUTHORIZED, "Step-up failed"),
        Refusal::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        Refusal::Invalid => (StatusCode::BAD_REQUEST, "Bad request"),
        Refusal::Conflict => (StatusCode::CONFLICT, "Conflict"),
        Refusal::StepUpNeeded => (StatusCode::FORBIDDEN, "Step-up needed"),
        Refusal::Forbidden | Refusal::Throttled | Refusal::NotForRoles => {
            (StatusCode::FORBIDDEN, "Forbidden")
        }
    };
    Problem {
        refusal: Some(r.kind),
        ..Problem::new(status, title, r.message)
    }
}

/// The problem of a failed vault call: a refusal by its kind, anything else a 503 whose
/// detail carries no internals (they go to the log).
pub fn vault_problem(e: CallError) -> Problem {
    match e {
        CallError::Refused(r) => refused(r),
        other => {
            tracing::error!(error = %other, "vault call failed");
            Problem::unavailable(
                "Sekisho's vault or its database is not answering right now; try again in a \
                 minute",
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        r
    }
}
