//! The web UI: server-rendered pages over the same acts as the API (one implementation of
//! each act, in [`crate::api`]), in Japanese or English as the browser asks ([`Lang`]).
//!
//! Works without JavaScript; `app.js` only copies the enrolment token out of the link's
//! fragment (which never reaches a server log) and asks before deleting. Every page is
//! escaped by construction (maud), every form that changes something carries the session's
//! CSRF token, and the CSP forbids inline script and style, so nothing a message or a sender
//! writes can run in a user's browser.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use proto::Role;
use proto::acts::QuarantineItem;
use proto::client::CallError;
use proto::vault::{Request, Response as VaultResponse};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Portal;
use crate::api::{self, Session};
use crate::i18n::Lang;
use crate::listener::ClientAddr;
use crate::problem::Problem;

mod account;
mod alerts;
mod dashboard;
mod lockbox;
mod login;
mod operator;
mod quarantine;
mod senders;
mod settings;
mod trace;

use account::*;
use alerts::*;
use dashboard::*;
use lockbox::*;
use login::*;
use operator::*;
use quarantine::*;
use senders::*;
use settings::*;
use trace::*;

/// The stylesheet.
const CSS: &str = include_str!("../static/app.css");
/// The little script.
const JS: &str = include_str!("../static/app.js");
/// Most quarantine items a page lists.
const PAGE_ITEMS: i64 = 200;
/// The portal's icon (a checkpoint gate), for the browser's tab.
const ICON: &str = include_str!("../static/favicon.svg");

/// The UI's routes.
pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/enrol", get(enrol_page).post(enrol_submit))
        .route("/enrol/confirm", post(enrol_confirm))
        .route("/quarantine", get(quarantine_page))
        .route("/quarantine/{id}", get(message_page))
        .route("/quarantine/{id}/release", post(release))
        .route("/quarantine/{id}/delete", post(delete))
        .route("/quarantine/{id}/sender", post(item_sender))
        .route("/senders", get(senders_page).post(senders_add))
        .route("/senders/{id}/remove", post(senders_remove))
        .route("/digest/{token}", get(digest_page).post(digest_release))
        .route("/dashboard", get(dashboard))
        .route("/trace", get(trace_page))
        .route("/lockbox", get(lockbox_page).post(lockbox_ask))
        .route("/lockbox/{id}/{act}", post(lockbox_act))
        .route("/alerts", get(alerts_page))
        .route("/alerts/export", post(alerts_export))
        .route("/operator", get(operator_page))
        .route("/operator/{part}", post(operator_post))
        .route("/account", get(account_page))
        .route("/account/passkeys/{id}/remove", post(passkey_remove))
        .route("/settings", get(settings_page))
        .route("/settings/{part}", post(settings_post))
        .route("/static/app.css", get(|| async { asset("text/css", CSS) }))
        .route(
            "/static/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", JS) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// A logged-in user of the UI; without a live session the browser is sent to the login page.
pub struct WebSession {
    s: Session,
    lang: Lang,
}

impl FromRequestParts<Arc<Portal>> for WebSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, p: &Arc<Portal>) -> Result<Self, Response> {
        let lang = Lang::from_headers(&parts.headers);
        match api::resolve_session(&parts.headers, p).await {
            Ok(s) => Ok(WebSession { s, lang }),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                Err(Redirect::to("/login").into_response())
            }
            Err(e) => Err(error_page(lang, None, &e)),
        }
    }
}

impl WebSession {
    /// The refusal, unless the form's CSRF token is the session's.
    fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        if proto::ct_eq(sent.as_bytes(), self.s.csrf.as_bytes()) {
            None
        } else {
            Some(self.error(&Problem::forbidden(
                "the form is out of date or was not sent by this site: reload the page and try again",
            )))
        }
    }

    fn error(&self, p: &Problem) -> Response {
        error_page(self.lang, Some(self), p)
    }

    fn page(&self, title: &str, body: Markup) -> Response {
        page(self.lang, Some(self), title, body)
    }
}

/// A urlencoded form body within the front door's limit.
pub struct FormBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for FormBody<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Response> {
        let lang = Lang::from_headers(req.headers());
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(error_page(
                lang,
                None,
                &Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Form expected",
                    "send the form as application/x-www-form-urlencoded",
                ),
            ));
        }
        let max = crate::front::Limits::default().max_body;
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|_| error_page(lang, None, &crate::front::too_large(max)))?;
        if crate::front::urlencoded_has_nul(&bytes) {
            return Err(error_page(lang, None, &crate::front::nul_refused()));
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(FormBody)
            .map_err(|_| {
                error_page(
                    lang,
                    None,
                    &Problem::bad_request(
                        "the form is incomplete: go back and fill in every field",
                    ),
                )
            })
    }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

fn page(lang: Lang, who: Option<&WebSession>, title: &str, body: Markup) -> Response {
    page_with(StatusCode::OK, lang, who, title, body)
}

fn page_with(
    status: StatusCode,
    lang: Lang,
    who: Option<&WebSession>,
    title: &str,
    body: Markup,
) -> Response {
    let l = lang;
    let m = html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Sekisho" }
                link rel="stylesheet" href="/static/app.css";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "関所 Sekisho" }
                    @if let Some(w) = who {
                        nav {
                            @if w.s.user.role != Role::Auditor {
                                a href="/quarantine" { (l.t("Quarantine", "隔離メール")) }
                            }
                            @if matches!(w.s.user.role, Role::User | Role::TenantAdmin) {
                                a href="/senders" { (l.t("Senders", "送信者リスト")) }
                            }
                            @if w.s.user.role == Role::TenantAdmin {
                                a href="/settings" { (l.t("Settings", "設定")) }
                            }
                            @if matches!(w.s.user.role, Role::Operator | Role::TenantAdmin) {
                                a href="/dashboard" { (l.t("Dashboard", "ダッシュボード")) }
                                a href="/trace" { (l.t("Trace", "配送履歴")) }
                            }
                            @if w.s.user.role != Role::User {
                                a href="/lockbox" { (l.t("Lockbox", "アクセス承認")) }
                            }
                            @if matches!(w.s.user.role, Role::Operator | Role::Auditor) {
                                a href="/alerts" { (l.t("Alerts", "アラート")) }
                            }
                            @if w.s.user.role == Role::Operator {
                                a href="/operator" { (l.t("System", "システム")) }
                            }
                            a href="/account" { (l.t("Account", "アカウント")) }
                        }
                        form.logout method="post" action="/logout" {
                            span.who { (w.s.user.email) " · " (role_name(l, w.s.user.role)) }
                            input type="hidden" name="csrf" value=(w.s.csrf);
                            button type="submit" { (l.t("Log out", "ログアウト")) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    html_response(status, m)
}

/// A verdict's evidence: its heaviest symbols against the message (at most `most`, all of
/// them when `most` is `usize::MAX`, then also those for it), each with its weight and its
/// one-line reason in the reader's language.
fn evidence(l: Lang, list: &str, most: usize) -> Markup {
    let mut items = proto::symbols::parse_list(list);
    if most != usize::MAX {
        items.retain(|(_, w)| *w > 0.0);
        items.sort_by(|a, b| b.1.total_cmp(&a.1));
        items.truncate(most);
    }
    html! {
        @if !items.is_empty() {
            ul.evidence { @for (name, weight) in &items {
                li { code { (name) } " " span.weight { (format!("{weight:+.1}")) }
                     @if let Some(r) = proto::symbols::reason(name, l == Lang::Ja) { " " span.reason { (r) } } }
            } }
        } @else if most == usize::MAX && !list.is_empty() { (list) }
    }
}

fn error_page(lang: Lang, who: Option<&WebSession>, p: &Problem) -> Response {
    let l = lang;
    // A person at a form is told what to do there, not which API call to make.
    let detail = match p.refusal {
        Some(proto::Refusal::StepUpNeeded) => l.t(
            "This change needs a current code from your authenticator: go back, enter the code in the form and submit it again.",
            "この変更には認証アプリの現在のコードが必要です。前の画面に戻り、フォームにコードを入力してもう一度送信してください。",
        ),
        Some(proto::Refusal::WrongFactor) => l.t(
            "The code was wrong or has been used already: go back and enter the next code your authenticator shows.",
            "コードが正しくないか、すでに使用されています。前の画面に戻り、認証アプリに表示される次のコードを入力してください。",
        ),
        _ => &p.detail,
    };
    let body = html! {
        p.error { (detail) }
        p { a href="/" { (l.t("Back to the start page", "トップページへ戻る")) } }
    };
    let title = match p.status {
        StatusCode::NOT_FOUND => l.t("Not found", "見つかりません"),
        StatusCode::FORBIDDEN => l.t("Not allowed", "許可されていません"),
        StatusCode::TOO_MANY_REQUESTS => l.t("Too many requests", "リクエストが多すぎます"),
        s if s.is_client_error() => l.t("The request cannot be used", "リクエストを処理できません"),
        _ => l.t("Service unavailable", "サービスを利用できません"),
    };
    page_with(p.status, l, who, title, body)
}

fn role_name(l: Lang, role: Role) -> &'static str {
    match role {
        Role::Operator => l.t("operator", "運用者"),
        Role::Auditor => l.t("auditor", "監査者"),
        Role::TenantAdmin => l.t("tenant admin", "テナント管理者"),
        Role::User => l.t("user", "利用者"),
    }
}

fn verdict_name(l: Lang, v: &str) -> String {
    match v {
        "deliver" => l.t("delivered", "配送").into(),
        "tag" => l.t("tagged", "タグ付け").into(),
        "quarantine" => l.t("quarantined", "隔離").into(),
        "reject" => l.t("rejected", "拒否").into(),
        "tempfail" => l.t("deferred", "一時拒否").into(),
        "none" => l.t("not inspected", "未検査").into(),
        other => other.to_string(),
    }
}

/// A trace event's word (as the mail path records it) in the reader's language.
fn event_name(l: Lang, e: &str) -> String {
    match e {
        "accepted" => l.t("accepted", "受信"),
        "delivered" => l.t("delivered", "配送済み"),
        "deferred" => l.t("deferred", "配送待ち(再試行)"),
        "failed" => l.t("failed", "配送失敗"),
        "bounced" => l.t("bounced", "不達通知"),
        "expired" => l.t("expired", "期限切れ"),
        "quarantined" => l.t("quarantined", "隔離"),
        "released" => l.t("released", "解放"),
        "deleted" => l.t("deleted", "削除"),
        "held" => l.t("held", "保留"),
        "reject" | "rejected" => l.t("rejected", "拒否"),
        "tempfail" => l.t("temporarily refused", "一時拒否"),
        other => return other.to_string(),
    }
    .to_string()
}

async fn home(State(p): State<Arc<Portal>>, parts: Parts) -> Response {
    match api::resolve_session(&parts.headers, &p).await {
        Ok(s) if s.user.role == Role::Auditor => Redirect::to("/alerts").into_response(),
        Ok(_) => Redirect::to("/quarantine").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
struct CsrfForm {
    pub(super) csrf: String,
}
