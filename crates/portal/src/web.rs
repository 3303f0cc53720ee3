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

/// The stylesheet.
const CSS: &str = include_str!("static/app.css");
/// The little script.
const JS: &str = include_str!("static/app.js");
/// Most quarantine items a page lists.
const PAGE_ITEMS: i64 = 200;
/// Hours the dashboard covers.
const DASHBOARD_HOURS: u32 = 24;

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

fn error_page(lang: Lang, who: Option<&WebSession>, p: &Problem) -> Response {
    let l = lang;
    let body = html! {
        p.error { (p.detail) }
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

async fn home(State(p): State<Arc<Portal>>, parts: Parts) -> Response {
    match api::resolve_session(&parts.headers, &p).await {
        Ok(s) if s.user.role == Role::Auditor => Redirect::to("/alerts").into_response(),
        Ok(_) => Redirect::to("/quarantine").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

fn login_form(l: Lang, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.card method="post" action="/login" {
            label { (l.t("Login name or e-mail address", "ログイン名またはメールアドレス"))
                input name="email" autocomplete="username" required maxlength="254" autofocus; }
            label { (l.t("Password", "パスワード"))
                input type="password" name="password" autocomplete="current-password" required maxlength="1024"; }
            label { (l.t("Code from your authenticator app (or a recovery code)", "認証アプリのコード(またはリカバリーコード)"))
                input name="code" autocomplete="one-time-code" required maxlength="16"; }
            button type="submit" { (l.t("Log in", "ログイン")) }
        }
        // Shown by the script where the browser has WebAuthn.
        section.card #passkey-login hidden
            data-failed=(l.t("The passkey was not accepted. Log in with your password and code, or try again.",
                             "パスキーが受け付けられませんでした。パスワードとコードでログインするか、もう一度お試しください。")) {
            p { (l.t("Or, with a passkey registered for this account:", "または、このアカウントに登録したパスキーで:")) }
            button type="button" #passkey-login-button { (l.t("Log in with a passkey", "パスキーでログイン")) }
            p.error #passkey-login-error role="alert" hidden {}
        }
    }
}

async fn login_page(lang: Lang) -> Response {
    page(
        lang,
        None,
        lang.t("Log in", "ログイン"),
        login_form(lang, None),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    code: String,
}

async fn login_submit(
    State(p): State<Arc<Portal>>,
    lang: Lang,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    FormBody(f): FormBody<LoginForm>,
) -> Response {
    let l = lang;
    let pass = zeroize::Zeroizing::new(f.password);
    let code: String = f.code.chars().filter(|c| !c.is_whitespace()).collect();
    match api::login_with(&p, f.email, &pass, code, addr).await {
        Ok((token, _csrf, _user)) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                api::session_cookie(&token, proto::vault::SESSION_ABSOLUTE),
            );
            r
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => page_with(
            StatusCode::UNAUTHORIZED,
            l,
            None,
            l.t("Log in", "ログイン"),
            login_form(
                l,
                Some(l.t(
                    "The login name, password or code is wrong, or the account is locked for a while. Wait for the next code and try again.",
                    "ログイン名・パスワード・コードのいずれかが正しくないか、アカウントが一時的にロックされています。次のコードを待って再度お試しください。",
                )),
            ),
        ),
        Err(e) => error_page(l, None, &e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    FormBody(f): FormBody<CsrfForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Err(e) = p
        .vault
        .call(
            &Request::Logout {
                token: w.s.token.clone(),
            },
            &[],
        )
        .await
    {
        return w.error(&api::vault_problem(e));
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, api::session_cookie("", 0));
    r
}

fn enrol_form(l: Lang, token: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        p { (l.t("Choose a password of at least 12 characters. Next you add a second factor to an authenticator app.",
                 "12文字以上のパスワードを設定してください。次に認証アプリに二要素目を登録します。")) }
        form.card method="post" action="/enrol" {
            label { (l.t("Enrolment code (filled in from your link)", "登録コード(リンクから自動入力)"))
                input #token name="token" value=(token) required maxlength="200" autocomplete="off"; }
            label { (l.t("New password", "新しいパスワード"))
                input type="password" name="password" autocomplete="new-password" required minlength="12" maxlength="1024"; }
            label { (l.t("The same password again", "確認のためもう一度"))
                input type="password" name="again" autocomplete="new-password" required minlength="12" maxlength="1024"; }
            button type="submit" { (l.t("Set password", "パスワードを設定")) }
        }
    }
}

async fn enrol_page(lang: Lang) -> Response {
    page(
        lang,
        None,
        lang.t("Activate your account", "アカウントの有効化"),
        enrol_form(lang, "", None),
    )
}

#[derive(Deserialize)]
struct EnrolForm {
    token: String,
    password: String,
    again: String,
}

async fn enrol_submit(
    State(p): State<Arc<Portal>>,
    lang: Lang,
    FormBody(f): FormBody<EnrolForm>,
) -> Response {
    let l = lang;
    let title = l.t("Activate your account", "アカウントの有効化");
    let pass = zeroize::Zeroizing::new(f.password);
    let again = zeroize::Zeroizing::new(f.again);
    if !proto::ct_eq(pass.as_bytes(), again.as_bytes()) {
        let msg = l.t(
            "The two passwords differ.",
            "2つのパスワードが一致しません。",
        );
        return page_with(
            StatusCode::BAD_REQUEST,
            l,
            None,
            title,
            enrol_form(l, &f.token, Some(msg)),
        );
    }
    let token = f.token.trim().to_string();
    match p
        .vault
        .call(
            &Request::EnrolStart {
                token: token.clone(),
            },
            pass.as_bytes(),
        )
        .await
    {
        Ok((VaultResponse::Totp { secret, uri }, _)) => {
            let grouped: Vec<String> = secret
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let body = html! {
                p { (l.t("Add this key to your authenticator app (time-based, 6 digits, 30 seconds), then enter the code it shows.",
                         "この鍵を認証アプリに登録し(時間ベース・6桁・30秒)、表示されたコードを入力してください。")) }
                (crate::qr::svg(&uri, l.t("QR code for your authenticator app", "認証アプリ用のQRコード")))
                p { (l.t("Or type the key:", "または鍵を入力:")) }
                p.secret #totp-secret data-secret=(secret) { (grouped.join(" ")) }
                details { summary { (l.t("As a link for the app", "アプリ用リンク")) } code.uri { (uri) } }
                form.card method="post" action="/enrol/confirm" {
                    input type="hidden" name="token" value=(token);
                    label { (l.t("Code from your authenticator app", "認証アプリのコード"))
                        input name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="16"; }
                    button type="submit" { (l.t("Activate", "有効化")) }
                }
            };
            page(l, None, title, body)
        }
        Ok(_) => error_page(
            l,
            None,
            &Problem::internal("unexpected answer from the vault"),
        ),
        Err(CallError::Refused(r)) => page_with(
            StatusCode::FORBIDDEN,
            l,
            None,
            title,
            enrol_form(l, &token, Some(&r.message)),
        ),
        Err(e) => error_page(l, None, &api::vault_problem(e)),
    }
}

#[derive(Deserialize)]
struct ConfirmForm {
    token: String,
    code: String,
}

async fn enrol_confirm(
    State(p): State<Arc<Portal>>,
    lang: Lang,
    FormBody(f): FormBody<ConfirmForm>,
) -> Response {
    let l = lang;
    let req = Request::EnrolConfirm {
        token: f.token,
        code: f.code.chars().filter(|c| !c.is_whitespace()).collect(),
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Activated { recovery_codes, .. }, _)) => page(
            l,
            None,
            l.t("Your account is active", "アカウントが有効になりました"),
            html! {
                h2 { (l.t("Recovery codes", "リカバリーコード")) }
                p { (l.t("If you lose your authenticator, each of these codes logs you in once in place of a code. They are shown only now: print them or keep them in a password manager.",
                         "認証アプリを紛失した場合、これらのコードはそれぞれ1回だけ認証コードの代わりに使えます。表示は今回限りです。印刷するかパスワードマネージャーに保管してください。")) }
                ul #recovery-codes { @for c in &recovery_codes { li { code { (c) } } } }
                p { (l.t("Log in with your password and the next code of your app.",
                         "パスワードとアプリの次のコードでログインしてください。")) }
                p { a.button href="/login" { (l.t("Log in", "ログイン")) } }
            },
        ),
        Ok(_) => error_page(
            l,
            None,
            &Problem::internal("unexpected answer from the vault"),
        ),
        Err(e) => error_page(l, None, &api::vault_problem(e)),
    }
}

#[derive(Deserialize)]
struct ListParams {
    q: Option<String>,
    done: Option<String>,
    id: Option<String>,
}

fn matches_query(i: &QuarantineItem, q: &str) -> bool {
    let q = q.to_lowercase();
    i.mail_from.to_lowercase().contains(&q)
        || i.rcpts.iter().any(|r| r.to_lowercase().contains(&q))
        || i.symbols.to_lowercase().contains(&q)
        || i.tenant.to_lowercase().contains(&q)
        || i.id.as_str().to_lowercase() == q
}

async fn quarantine_page(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Query(q): Query<ListParams>,
) -> Response {
    let l = w.lang;
    let items = match api::list_items(&p, &w.s, PAGE_ITEMS).await {
        Ok(items) => items,
        Err(e) => return w.error(&e),
    };
    let query = q.q.unwrap_or_default();
    let query = query.trim();
    if query.chars().count() > 200 {
        return w.error(&Problem::bad_request("search for at most 200 characters"));
    }
    let shown: Vec<&QuarantineItem> = items
        .iter()
        .filter(|i| query.is_empty() || matches_query(i, query))
        .collect();
    let notice = match q.done.as_deref() {
        Some("released") => Some(l.t(
            "Released: the message is on its way to the mailbox.",
            "解放しました。メールは受信箱へ配送されます。",
        )),
        Some("deleted") => Some(l.t("Deleted.", "削除しました。")),
        Some("allowed") => Some(l.t(
            "The sender is allowed from now on (when its mail is authenticated).",
            "今後この送信者を許可します(認証に成功したメールのみ)。",
        )),
        Some("blocked") => Some(l.t(
            "The sender is blocked from now on.",
            "今後この送信者を拒否します。",
        )),
        _ => None,
    };
    let body = html! {
        @if let Some(n) = notice {
            p.notice role="status" { (n) @if let Some(id) = &q.id { " (" code { (id) } ")" } }
        }
        form.search method="get" action="/quarantine" {
            input type="search" name="q" value=(query) maxlength="200"
                placeholder=(l.t("Sender, recipient or symbol", "送信者・宛先・シンボル"));
            button type="submit" { (l.t("Search", "検索")) }
        }
        @if shown.is_empty() {
            p.empty { (l.t("No quarantined messages.", "隔離されたメールはありません。")) }
        } @else {
            table.items {
                thead { tr {
                    th { (l.t("Received", "受信日時")) }
                    th { (l.t("From", "送信者")) }
                    th { (l.t("To", "宛先")) }
                    @if w.s.user.role == Role::Operator { th { (l.t("Tenant", "テナント")) } }
                    th { (l.t("Score", "スコア")) }
                    th { (l.t("Why", "理由")) }
                } }
                tbody {
                    @for i in &shown {
                        tr {
                            td { a href={"/quarantine/" (i.id)} { (l.time(i.received_at)) } }
                            td { (if i.mail_from.is_empty() { "<>" } else { &i.mail_from }) }
                            td { (i.rcpts.join(", ")) }
                            @if w.s.user.role == Role::Operator { td { (i.tenant) } }
                            td.num { (format!("{:.1}", i.score)) }
                            td.symbols { (i.symbols) }
                        }
                    }
                }
            }
        }
    };
    w.page(l.t("Quarantine", "隔離メール"), body)
}

async fn message_page(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(id): Path<String>,
) -> Response {
    let l = w.lang;
    let item = match api::visible_item(&p, &w.s, &id).await {
        Ok(i) => i,
        Err(e) => return w.error(&e),
    };
    let openable = api::may_open_now(&p, &w.s, &item).await;
    let view = if openable {
        match api::view_item(&p, &w.s, &id, "viewed in the portal").await {
            Ok(v) => Some(v),
            Err(e) => return w.error(&e),
        }
    } else {
        None
    };
    let body = html! {
        dl.meta {
            dt { (l.t("Received", "受信日時")) } dd { (l.time(item.received_at)) }
            dt { (l.t("Envelope sender", "エンベロープ送信者")) } dd { (if item.mail_from.is_empty() { "<>" } else { &item.mail_from }) }
            dt { (l.t("Recipients", "宛先")) } dd { (item.rcpts.join(", ")) }
            dt { (l.t("Verdict", "判定")) } dd { (verdict_name(l, &item.verdict)) " · " (format!("{:.1}", item.score)) }
            dt { (l.t("Evidence", "根拠")) } dd.symbols { (item.symbols) }
            dt { (l.t("Deleted automatically", "自動削除")) } dd { (l.time(item.expires_at)) }
        }
        @if let Some(v) = &view {
            section.message {
                dl.headers {
                    dt { (l.t("From", "差出人")) } dd #msg-from { (v.from) }
                    dt { (l.t("To", "宛先")) } dd { (v.to.join(", ")) }
                    @if !v.cc.is_empty() { dt { "Cc" } dd { (v.cc.join(", ")) } }
                    dt { (l.t("Subject", "件名")) } dd #msg-subject { (v.subject) }
                    @if let Some(d) = &v.date { dt { (l.t("Date", "日付")) } dd { (d) } }
                }
                @if v.was_html {
                    p.note { (l.t("Shown as text: the HTML of this message is not displayed and nothing in it is loaded.",
                                  "テキストで表示しています。このメールの HTML は表示せず、外部コンテンツも読み込みません。")) }
                }
                pre.body #msg-body { (v.text) }
                @if v.truncated { p.note { (l.t("The text is cut here.", "本文はここまでです。")) } }
                @if !v.attachments.is_empty() {
                    h2 { (l.t("Attachments (not downloadable here)", "添付ファイル(ここからはダウンロードできません)")) }
                    ul.attachments { @for a in &v.attachments {
                        li { (a.name) " — " (a.content_type) ", " (a.size) " B" }
                    } }
                }
                @if !v.links.is_empty() {
                    h2 { (l.t("Links in the message (made unclickable)", "本文中のリンク(クリックできないようにしています)")) }
                    ul.links { @for link in &v.links { li { code { (link) } } } }
                }
            }
            div.actions {
                form method="post" action={"/quarantine/" (item.id) "/release"} {
                    input type="hidden" name="csrf" value=(w.s.csrf);
                    @if proto::verdict::malware_flagged(&item.symbols) {
                        label.stepup { (l.t("Flagged as malware — confirm with your authenticator code", "マルウェアと判定されています。認証アプリのコードで確認してください"))
                            input #stepup-code name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="16"; }
                    }
                    button #release type="submit" { (l.t("Release to my mailbox", "受信箱へ解放")) }
                }
                @if !item.mail_from.is_empty() {
                    form method="post" action={"/quarantine/" (item.id) "/sender"} {
                        input type="hidden" name="csrf" value=(w.s.csrf);
                        input type="hidden" name="action" value="allow";
                        button.secondary #allow-sender type="submit" { (l.t("Always allow this sender", "この送信者を常に許可")) }
                    }
                    form method="post" action={"/quarantine/" (item.id) "/sender"} {
                        input type="hidden" name="csrf" value=(w.s.csrf);
                        input type="hidden" name="action" value="block";
                        button.secondary #block-sender type="submit" { (l.t("Always block this sender", "この送信者を常に拒否")) }
                    }
                }
                form method="post" action={"/quarantine/" (item.id) "/delete"} data-confirm=(l.t("Delete this message for good?", "このメールを完全に削除しますか?")) {
                    input type="hidden" name="csrf" value=(w.s.csrf);
                    button.danger #delete type="submit" { (l.t("Delete", "削除")) }
                }
            }
        } @else {
            p.note { (l.t("Operators see the envelope only: opening a tenant's mail needs an access request the tenant approves (lockbox).",
                          "運用者はエンベロープのみ閲覧できます。テナントのメールを開くには、テナントが承認するアクセス申請(ロックボックス)が必要です。")) }
        }
        p { a href="/quarantine" { (l.t("Back to the quarantine", "隔離メール一覧へ戻る")) } }
    };
    w.page(l.t("Quarantined message", "隔離メール"), body)
}

#[derive(Deserialize)]
struct ReleaseForm {
    csrf: String,
    /// A step-up code (messages flagged as malware).
    code: Option<String>,
}

async fn release(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(id): Path<String>,
    FormBody(f): FormBody<ReleaseForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Some(code) = f.code.as_deref().filter(|c| !c.trim().is_empty())
        && let Err(e) = api::step_up_with(&p, &w.s, code).await
    {
        return w.error(&e);
    }
    match api::release_item(&p, &w.s, &id).await {
        Ok(()) => done("released", &id),
        Err(e) => w.error(&e),
    }
}

async fn delete(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(id): Path<String>,
    FormBody(f): FormBody<CsrfForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    match api::delete_item(&p, &w.s, &id).await {
        Ok(()) => done("deleted", &id),
        Err(e) => w.error(&e),
    }
}

/// Back to the list, saying what was done (post/redirect/get).
fn done(what: &str, id: &str) -> Response {
    // The id was checked to be [A-Za-z0-9-] before the act.
    Redirect::to(&format!("/quarantine?done={what}&id={id}")).into_response()
}

/// What a digest link releases, as the vault vouches for it: (quarantine id, recipient), or
/// the page that says why not.
async fn digest_terms(p: &Portal, lang: Lang, token: &str) -> Result<DigestTerms, Response> {
    let refusal = |status: StatusCode, detail: String| {
        error_page(lang, None, &Problem::new(status, "Refused", detail))
    };
    match p
        .vault
        .call(
            &Request::DigestLink {
                token: token.to_string(),
            },
            &[],
        )
        .await
    {
        Ok((VaultResponse::Link { rcpt, item, .. }, _)) => Ok(DigestTerms { rcpt, item }),
        Err(CallError::Refused(r)) => Err(refusal(StatusCode::FORBIDDEN, r.message)),
        _ => Err(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the vault is not answering; try again in a minute".into(),
        )),
    }
}

/// What a digest link releases: the item (if still quarantined) and its recipient.
struct DigestTerms {
    rcpt: String,
    item: Option<QuarantineItem>,
}

fn digest_title(l: Lang) -> &'static str {
    l.t("Release a quarantined message", "隔離メールの配信")
}

/// A digest link opens this page: it shows what the link releases and asks (a mail
/// client's link preview or a scanner following links releases nothing).
async fn digest_page(
    State(p): State<Arc<Portal>>,
    lang: Lang,
    Path(token): Path<String>,
) -> Response {
    let l = lang;
    let (rcpt, item) = match digest_terms(&p, l, &token).await {
        Ok(t) => (t.rcpt, t.item),
        Err(r) => return r,
    };
    let item = match item {
        Some(i) => i,
        None => {
            return error_page(
                l,
                None,
                &Problem::new(
                    StatusCode::GONE,
                    "Gone",
                    l.t(
                        "This message is no longer in quarantine: it was released, deleted or has expired.",
                        "このメールはすでに隔離されていません（配信済み、削除済み、または保存期間切れ）。",
                    ),
                ),
            );
        }
    };
    let body = html! {
        p { (l.t("This message to", "宛先")) " " strong { (rcpt) } " " (l.t("was quarantined:", "のメールが隔離されています:")) }
        table {
            tr { th { (l.t("From", "差出人")) } td { (item.mail_from) } }
            tr { th { (l.t("Received", "受信日時")) } td { (proto::verdict::rfc2822(item.received_at)) } }
            tr { th { (l.t("Verdict", "判定")) } td { (item.verdict) " (" (format!("{:.1}", item.score)) ")" } }
        }
        p { (l.t("Release it only if you expected it. It will be delivered to your mailbox.",
                 "心当たりがある場合のみ配信してください。メールボックスに配信されます。")) }
        form method="post" action=(format!("/digest/{token}")) {
            button type="submit" { (l.t("Release", "配信する")) }
        }
        p { a href="/quarantine" { (l.t("Log in to see your whole quarantine", "ログインして隔離メール一覧を見る")) } }
    };
    page(l, None, digest_title(l), body)
}

/// The confirmation: the mail node releases the item with the link as its credential (the
/// vault checks it again, records `link:<recipient>` as the principal, and refuses malware).
async fn digest_release(
    State(p): State<Arc<Portal>>,
    lang: Lang,
    Path(token): Path<String>,
) -> Response {
    let l = lang;
    let rcpt = match digest_terms(&p, l, &token).await {
        Ok(t) => t.rcpt,
        Err(r) => return r,
    };
    let req = Request::DigestRelease { token };
    match p.vault.done(&req, &[]).await.map_err(api::vault_problem) {
        Ok(_) => page(
            l,
            None,
            digest_title(l),
            html! {
                p.done { (l.t("Released: the message is on its way to", "配信しました。宛先:")) " " strong { (rcpt) } }
            },
        ),
        Err(e) => error_page(l, None, &e),
    }
}

async fn dashboard(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    let l = w.lang;
    let stats = match api::stats_for(&p, &w.s, DASHBOARD_HOURS).await {
        Ok(s) => s,
        Err(e) => return w.error(&e),
    };
    let labels: Vec<String> = (0..stats.hourly.len())
        .map(|i| {
            let t = stats.from + i as i64 * 3600;
            let hour = t.rem_euclid(86_400) / 3600;
            if i % 3 == 0 {
                format!("{hour:02}:00")
            } else {
                String::new()
            }
        })
        .collect();
    let pairs = |v: &[proto::acts::Count]| -> Vec<(String, i64)> {
        v.iter().map(|c| (c.name.clone(), c.count)).collect()
    };
    let verdicts: Vec<(String, i64)> = stats
        .verdicts
        .iter()
        .map(|c| (verdict_name(l, &c.name), c.count))
        .collect();
    let scope = match &w.s.user.tenant {
        Some(t) => t.clone(),
        None => l.t("all tenants", "全テナント").to_string(),
    };
    let body = html! {
        p.lead { (scope) " · " (l.t("last 24 hours (UTC)", "過去24時間(UTC)")) " · "
            (stats.total) " " (l.t("messages", "通")) }
        div.charts {
            figure #chart-flow {
                figcaption { (l.t("Mail flow per hour", "時間別メール流量")) }
                (crate::charts::columns(l.t("Mail flow per hour", "時間別メール流量"), &labels, &stats.hourly))
            }
            figure #chart-verdicts {
                figcaption { (l.t("Verdicts", "判定の内訳")) }
                (crate::charts::bars(l.t("Verdicts", "判定の内訳"), &verdicts, "verdict"))
            }
            figure #chart-senders {
                figcaption { (l.t("Top senders", "送信者上位")) }
                (crate::charts::bars(l.t("Top senders", "送信者上位"), &pairs(&stats.top_senders), "sender"))
            }
            figure #chart-symbols {
                figcaption { (l.t("Top symbols", "シンボル上位")) }
                (crate::charts::bars(l.t("Top symbols", "シンボル上位"), &pairs(&stats.top_symbols), "symbol"))
            }
        }
    };
    w.page(l.t("Dashboard", "ダッシュボード"), body)
}

async fn alerts_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    let l = w.lang;
    if !matches!(w.s.user.role, Role::Operator | Role::Auditor) {
        return w.error(&Problem::forbidden("alerts are for operators and auditors"));
    }
    let alerts = match api::alert_list(&p, &w.s, None).await {
        Ok(a) => a,
        Err(e) => return w.error(&e),
    };
    let body = html! {
        @if alerts.is_empty() {
            p.empty { (l.t("No alerts.", "アラートはありません。")) }
        } @else {
            table.items {
                thead { tr {
                    th { (l.t("Last seen", "最終発生")) }
                    th { (l.t("Severity", "重大度")) }
                    th { (l.t("Rule", "ルール")) }
                    th { (l.t("Principal", "主体")) }
                    th { (l.t("What", "内容")) }
                    th { (l.t("Count", "回数")) }
                    th { (l.t("State", "状態")) }
                } }
                tbody { @for a in alerts.iter().take(500) {
                    tr class={"sev-" (a.severity)} {
                        td { (l.time(a.last_at)) }
                        td { (a.severity) }
                        td { (a.rule) }
                        td { (a.principal) }
                        td { (a.summary) }
                        td.num { (a.count) }
                        td { (a.state) }
                    }
                } }
            }
        }
        h2 { (l.t("Export a tenant's audit records", "テナントの監査記録のエクスポート")) }
        (export_form(l, &w.s.csrf, "/alerts/export", true))
    };
    w.page(l.t("Alerts", "アラート"), body)
}

#[derive(Deserialize)]
struct SenderActionForm {
    csrf: String,
    action: String,
}

async fn item_sender(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(id): Path<String>,
    FormBody(f): FormBody<SenderActionForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    match api::item_sender(&p, &w.s, &id, &f.action).await {
        Ok(e) if e.action == "allow" => done("allowed", &id),
        Ok(_) => done("blocked", &id),
        Err(e) => w.error(&e),
    }
}

fn scope_name(l: Lang, scope: &str) -> &'static str {
    match scope {
        "tenant" => l.t("everyone in the tenant", "テナント全体"),
        "me" => l.t("my mailbox", "自分の受信箱"),
        _ => l.t("one recipient", "特定の宛先"),
    }
}

async fn senders_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    let l = w.lang;
    let entries = match api::sender_entries(&p, &w.s).await {
        Ok(e) => e,
        Err(e) => return w.error(&e),
    };
    let admin = w.s.user.role == Role::TenantAdmin;
    let body = html! {
        p.lead { (l.t("Allowed senders skip the spam filter when their mail is authenticated (SPF, DKIM or DMARC); malware is always stopped. Blocked senders are held.",
                      "許可した送信者のメールは、認証(SPF・DKIM・DMARC)に成功した場合に迷惑メール判定を省略します。マルウェアは常に止めます。拒否した送信者のメールは隔離します。")) }
        form.card.inline method="post" action="/senders" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("Address or domain", "アドレスまたはドメイン"))
                input name="pattern" required maxlength="254" placeholder="name@example.com / example.com"; }
            label { (l.t("Action", "動作"))
                select name="action" {
                    option value="allow" { (l.t("Always allow", "常に許可")) }
                    option value="block" { (l.t("Always block", "常に拒否")) }
                }
            }
            @if admin {
                label { (l.t("For", "対象"))
                    select name="scope" {
                        option value="tenant" { (scope_name(l, "tenant")) }
                        option value="me" { (scope_name(l, "me")) }
                    }
                }
            } @else {
                input type="hidden" name="scope" value="me";
            }
            button type="submit" { (l.t("Add", "追加")) }
        }
        @if entries.is_empty() {
            p.empty { (l.t("No allowed or blocked senders yet.", "許可・拒否した送信者はまだありません。")) }
        } @else {
            table.items #senders {
                thead { tr {
                    th { (l.t("Sender", "送信者")) }
                    th { (l.t("Action", "動作")) }
                    th { (l.t("For", "対象")) }
                    th { (l.t("Added", "追加日時")) }
                    th {}
                } }
                tbody { @for e in &entries {
                    tr {
                        td { code { (e.pattern) } }
                        td { (if e.action == "allow" { l.t("allow", "許可") } else { l.t("block", "拒否") }) }
                        td { (scope_name(l, &e.scope)) @if e.scope == "recipient" { " (" (e.rcpt) ")" } }
                        td { (l.time(e.added_at)) }
                        td { @if e.removable {
                            form method="post" action={"/senders/" (e.id) "/remove"} {
                                input type="hidden" name="csrf" value=(w.s.csrf);
                                button.secondary type="submit" { (l.t("Remove", "削除")) }
                            }
                        } }
                    }
                } }
            }
        }
    };
    w.page(
        l.t("Allowed and blocked senders", "送信者の許可・拒否リスト"),
        body,
    )
}

#[derive(Deserialize)]
struct SenderAddForm {
    csrf: String,
    pattern: String,
    action: String,
    scope: String,
}

async fn senders_add(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    FormBody(f): FormBody<SenderAddForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    match api::sender_put(&p, &w.s, &f.scope, &f.pattern, &f.action).await {
        Ok(_) => Redirect::to("/senders").into_response(),
        Err(e) => w.error(&e),
    }
}

async fn senders_remove(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(id): Path<i64>,
    FormBody(f): FormBody<CsrfForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    match api::sender_remove(&p, &w.s, id).await {
        Ok(()) => Redirect::to("/senders").into_response(),
        Err(e) => w.error(&e),
    }
}

async fn trace_page(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Query(q): Query<api::TraceQuery>,
) -> Response {
    let l = w.lang;
    let (from, rcpt, id) = (
        q.from.clone().unwrap_or_default(),
        q.rcpt.clone().unwrap_or_default(),
        q.id.clone().unwrap_or_default(),
    );
    let searched = !(from.is_empty() && rcpt.is_empty() && id.is_empty());
    let found = match api::trace_for(&p, &w.s, q).await {
        Ok(m) => m,
        Err(e) => return w.error(&e),
    };
    let body = html! {
        form.search method="get" action="/trace" {
            input type="search" name="from" value=(from) maxlength="254" placeholder=(l.t("Sender", "送信者"));
            input type="search" name="rcpt" value=(rcpt) maxlength="254" placeholder=(l.t("Recipient", "宛先"));
            input type="search" name="id" value=(id) maxlength="64" placeholder=(l.t("Queue id", "キューID"));
            button type="submit" { (l.t("Search", "検索")) }
        }
        @if found.is_empty() {
            p.empty { @if searched { (l.t("No message matches.", "該当するメールはありません。")) }
                      @else { (l.t("No mail yet.", "まだメールはありません。")) } }
        } @else {
            table.items #trace {
                thead { tr {
                    th { (l.t("Received", "受信日時")) }
                    th { (l.t("From", "送信者")) }
                    th { (l.t("Verdict", "判定")) }
                    th { (l.t("What happened", "経過")) }
                } }
                tbody { @for m in &found {
                    tr {
                        td { (l.time(m.received_at)) br; code.qid { (m.id) } }
                        td { (if m.mail_from.is_empty() { "<>" } else { &m.mail_from }) br;
                             span.note { (m.client_ip) @if let Some(t) = &m.tls { " · " (t) } } }
                        td { @if let Some(v) = &m.verdict { (verdict_name(l, v)) } @else { "—" }
                             @if let Some(sc) = m.score { " " (format!("{sc:.1}")) } }
                        td { ul.events { @for e in &m.events {
                            li { (l.time(e.at)) " · " (e.rcpt) " · " strong { (e.event) }
                                 @if !e.detail.is_empty() { " · " span.note { (e.detail) } } }
                        } } }
                    }
                } }
            }
        }
    };
    w.page(l.t("Message trace", "配送履歴"), body)
}

fn lockbox_state(l: Lang, state: &str) -> &'static str {
    match state {
        "requested" => l.t("waiting for the tenant", "テナントの承認待ち"),
        "approved" => l.t("approved", "承認済み"),
        "expired" => l.t("expired", "期限切れ"),
        "denied" => l.t("denied", "却下"),
        _ => l.t("revoked", "取り消し"),
    }
}

async fn lockbox_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    let l = w.lang;
    let requests = match api::lockbox_requests(&p, &w.s).await {
        Ok(r) => r,
        Err(e) => return w.error(&e),
    };
    let role = w.s.user.role;
    let body = html! {
        p.lead { (l.t("Operators see envelopes only. To open a tenant's mail an operator asks here; one of the tenant's admins approves for a limited time. Every step is in the audit log.",
                      "運用者が見られるのはエンベロープのみです。テナントのメールを開くには運用者がここで申請し、テナント管理者が期限付きで承認します。すべての操作は監査ログに記録されます。")) }
        @if role == Role::Operator {
            form.card method="post" action="/lockbox" {
                input type="hidden" name="csrf" value=(w.s.csrf);
                label { (l.t("Tenant", "テナント")) input name="tenant" required maxlength="200"; }
                label { (l.t("Why (the tenant reads this)", "理由(テナントが確認します)"))
                    input name="reason" required minlength="10" maxlength="500"; }
                label { (l.t("Minutes", "時間(分)"))
                    input type="number" name="minutes" value="60" min="5" max="1440" required; }
                button type="submit" { (l.t("Request access", "アクセスを申請")) }
            }
        }
        @if requests.is_empty() {
            p.empty { (l.t("No requests.", "申請はありません。")) }
        } @else {
            table.items #lockbox {
                thead { tr {
                    th { (l.t("Requested", "申請日時")) }
                    th { (l.t("Operator", "運用者")) }
                    th { (l.t("Tenant", "テナント")) }
                    th { (l.t("Why", "理由")) }
                    th { (l.t("Minutes", "時間(分)")) }
                    th { (l.t("State", "状態")) }
                    th {}
                } }
                tbody { @for r in &requests {
                    tr {
                        td { (l.time(r.requested_at)) }
                        td { (r.operator) }
                        td { (r.tenant) }
                        td { (r.reason) }
                        td.num { (r.minutes) }
                        td.state { (lockbox_state(l, &r.state))
                            @if let (Some(e), "approved") = (r.expires_at, r.state.as_str()) { br; span.note { (l.t("until", "期限")) " " (l.time(e)) } } }
                        td.actions {
                            @if role == Role::TenantAdmin && r.state == "requested" {
                                (act_button(&w, r.id, "approve", l.t("Approve", "承認"), ""))
                                (act_button(&w, r.id, "deny", l.t("Deny", "却下"), "danger"))
                            }
                            @if role != Role::Auditor && matches!(r.state.as_str(), "requested" | "approved") {
                                (act_button(&w, r.id, "revoke", l.t("Revoke", "取り消す"), "secondary"))
                            }
                        }
                    }
                } }
            }
        }
    };
    w.page(
        l.t(
            "Lockbox: access to tenants' mail",
            "アクセス承認(ロックボックス)",
        ),
        body,
    )
}

fn act_button(w: &WebSession, id: i64, act: &str, label: &str, class: &str) -> Markup {
    html! {
        form method="post" action={"/lockbox/" (id) "/" (act)} {
            input type="hidden" name="csrf" value=(w.s.csrf);
            button class=(class) type="submit" data-act=(act) { (label) }
        }
    }
}

#[derive(Deserialize)]
struct LockboxForm {
    csrf: String,
    tenant: String,
    reason: String,
    minutes: i64,
}

async fn lockbox_ask(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    FormBody(f): FormBody<LockboxForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    match api::lockbox_ask(&p, &w.s, &f.tenant, &f.reason, f.minutes).await {
        Ok(_) => Redirect::to("/lockbox").into_response(),
        Err(e) => w.error(&e),
    }
}

async fn lockbox_act(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path((id, act)): Path<(i64, String)>,
    FormBody(f): FormBody<CsrfForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    let done = match act.as_str() {
        "approve" => api::lockbox_decision(&p, &w.s, id, true).await,
        "deny" => api::lockbox_decision(&p, &w.s, id, false).await,
        "revoke" => api::lockbox_end(&p, &w.s, id).await,
        _ => Err(Problem::not_found("no such page")),
    };
    match done {
        Ok(()) => Redirect::to("/lockbox").into_response(),
        Err(e) => w.error(&e),
    }
}

async fn operator_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    let l = w.lang;
    if w.s.user.role != Role::Operator {
        return w.error(&Problem::forbidden("system health is for operators"));
    }
    let tenants = match api::tenant_docs(&p, &w.s).await {
        Ok(t) => t,
        Err(e) => return w.error(&e),
    };
    let h = match api::health_of(&p, &w.s).await {
        Ok(h) => h,
        Err(e) => return w.error(&e),
    };
    let up = |ok: bool| {
        if ok {
            l.t("up", "稼働中")
        } else {
            l.t("NOT ANSWERING", "応答なし")
        }
    };
    let body = html! {
        h2 { (l.t("Health", "稼働状況")) }
        dl.meta #health {
            dt { (l.t("Version", "バージョン")) } dd { (h.version) }
            dt { (l.t("Mail node (mx)", "メールノード(mx)")) } dd.{"ok-" (h.mx)} { (up(h.mx)) }
            dt { (l.t("Vault", "ボールト")) } dd.{"ok-" (h.vault)} { (up(h.vault)) }
            dt { (l.t("Store", "ストア")) } dd.{"ok-" (h.store)} { (up(h.store)) }
            dt { (l.t("Open alerts", "未対応アラート")) } dd { (h.open_alerts) }
        }
        h2 { (l.t("Queue", "キュー")) }
        dl.meta #queue {
            @for (state, n) in &h.queue { dt { (state) } dd { (n) } }
            @if h.queue.is_empty() { dt { (l.t("messages", "メール")) } dd { "0" } }
            dt { (l.t("Bytes", "バイト")) } dd { (h.queue_bytes) }
            @if let Some(age) = h.oldest_queued_seconds {
                dt { (l.t("Oldest", "最古")) } dd { (age / 60) " " (l.t("min", "分")) }
            }
        }
        h2 { (l.t("Nodes", "ノード")) }
        table.items #nodes {
            thead { tr {
                th { (l.t("Node", "ノード")) }
                th { (l.t("Status", "状態")) }
                th { (l.t("Version", "バージョン")) }
                th { "SMTP" }
                th { (l.t("Queue (active · deferred · held)", "キュー(配送中・再送待ち・保留)")) }
                th { (l.t("Last heartbeat", "最終応答")) }
            } }
            tbody { @for n in &h.nodes {
                tr {
                    td { (n.name) }
                    td.{"node-" (n.status)} { (match n.status.as_str() {
                        "up" => l.t("up", "稼働中"),
                        "stopped" => l.t("stopped", "停止"),
                        _ => l.t("NOT ANSWERING", "応答なし"),
                    }) }
                    td { (n.version) }
                    td { code { (n.smtp) } }
                    td.num { (n.active) " · " (n.deferred) " · " (n.hold) }
                    td.num { (n.seen_seconds_ago) " " (l.t("s ago", "秒前")) }
                }
            } }
        }
        h2 { (l.t("Tenants", "テナント")) }
        table.items #tenants {
            thead { tr {
                th { (l.t("Tenant", "テナント")) }
                th { (l.t("Domains", "ドメイン")) }
                th { (l.t("Route", "配送先")) }
                th { (l.t("Recipients", "受信者")) }
                th { (l.t("Quarantined", "隔離中")) }
            } }
            tbody { @for t in &tenants {
                tr {
                    td { (t.name) }
                    td { (t.domains.join(", ")) }
                    td { code { (t.route) } }
                    td.num { (t.recipient_policy) " · " (t.recipients) }
                    td.num { (t.quarantined) }
                }
            } }
        }
        h2 { (l.t("New tenant", "テナントの追加")) }
        form.card #tenant-form method="post" action="/operator/tenant" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("Name", "名前")) input name="name" required maxlength="64"; }
            label { (l.t("Domains (separated by commas)", "ドメイン(カンマ区切り)")) input name="domains" required maxlength="4000"; }
            label { (l.t("Route (smtp://host:port?tls=required)", "配送先(smtp://host:port?tls=required)")) input name="route" required maxlength="1000"; }
            button type="submit" { (l.t("Create", "作成")) }
        }
        h2 { (l.t("Add a domain", "ドメインの追加")) }
        form.card #domain-form method="post" action="/operator/domain" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("Tenant", "テナント")) select name="tenant" {
                @for t in &tenants { option value=(t.id) { (t.name) } }
            } }
            label { (l.t("Domain", "ドメイン")) input name="domain" required maxlength="253"; }
            button type="submit" { (l.t("Add", "追加")) }
        }
    };
    w.page(l.t("System", "システム"), body)
}

#[derive(Deserialize)]
struct OperatorForm {
    csrf: String,
    name: Option<String>,
    domains: Option<String>,
    route: Option<String>,
    tenant: Option<i64>,
    domain: Option<String>,
}

/// The operator page's forms: a new tenant, a domain for a tenant (the API's acts).
async fn operator_post(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(part): Path<String>,
    FormBody(f): FormBody<OperatorForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    let done = match part.as_str() {
        "tenant" => {
            let (Some(name), Some(domains), Some(route)) = (f.name, f.domains, f.route) else {
                return w.error(&Problem::bad_request(
                    "fill in the name, the domains and the route",
                ));
            };
            let t = crate::api::tenants::NewTenant {
                name,
                domains: domains
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect(),
                route,
            };
            crate::api::tenants::create(&p, &w.s, &t).await.map(|_| ())
        }
        "domain" => {
            let (Some(tenant), Some(domain)) = (f.tenant, f.domain) else {
                return w.error(&Problem::bad_request(
                    "choose the tenant and fill in the domain",
                ));
            };
            crate::api::tenants::add_domain(&p, &w.s, tenant, &domain).await
        }
        _ => Err(Problem::not_found("no such form")),
    };
    match done {
        Ok(()) => Redirect::to("/operator#tenants").into_response(),
        Err(e) => w.error(&e),
    }
}

/// Everyone's own account: passkeys (add, list, remove).
async fn account_page(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let l = w.lang;
    let keys = match crate::passkeys::list_of(&p, &w.s).await {
        Ok(k) => k,
        Err(e) => return w.error(&e),
    };
    let done = q.get("done").map(String::as_str);
    let code_label = l.t(
        "Current code from your authenticator app (to confirm it is you)",
        "認証アプリの現在のコード(ご本人確認のため)",
    );
    let body = html! {
        @match done {
            Some("added") => p.notice role="status" { (l.t("The passkey was added.", "パスキーを追加しました。")) },
            Some("removed") => p.notice role="status" { (l.t("The passkey was removed.", "パスキーを削除しました。")) },
            _ => {}
        }
        p.lead { (w.s.user.email) " · " (role_name(l, w.s.user.role)) }
        h2 { (l.t("Passkeys", "パスキー")) }
        p { (l.t("A passkey signs you in with this device's screen lock or a security key, instead of a password and code. It cannot be phished: it only works on this site.",
                 "パスキーを使うと、パスワードとコードの代わりに、この端末の画面ロックやセキュリティキーでログインできます。このサイトでしか使えないため、フィッシングで盗まれることはありません。")) }
        @if keys.is_empty() {
            p.empty #passkeys-empty { (l.t("No passkey is registered yet.", "パスキーはまだ登録されていません。")) }
        } @else {
            table.items #passkeys {
                thead { tr {
                    th { (l.t("Name", "名前")) }
                    th { (l.t("Added", "追加日時")) }
                    th { (l.t("Last used", "最終使用")) }
                    th {}
                } }
                tbody { @for k in &keys {
                    tr {
                        td.name { (k.name) }
                        td { (l.time(k.created_at)) }
                        td { @match k.last_used_at { Some(t) => (l.time(t)), None => "—" } }
                        td {
                            form.inline method="post" action={"/account/passkeys/" (k.id) "/remove"} {
                                input type="hidden" name="csrf" value=(w.s.csrf);
                                label { (code_label)
                                    input name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="16"; }
                                button.secondary type="submit" { (l.t("Remove", "削除")) }
                            }
                        }
                    }
                } }
            }
        }
        // Needs the script (WebAuthn is a browser API); shown by it.
        form.card #passkey-add hidden
            data-failed=(l.t("The passkey could not be added: ", "パスキーを追加できませんでした: ")) {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("A name for it (e.g. work laptop)", "名前(例: 会社のノートPC)"))
                input name="name" maxlength="64" placeholder="passkey"; }
            label { (code_label)
                input name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="16"; }
            button type="submit" { (l.t("Add a passkey", "パスキーを追加")) }
            p.error #passkey-add-error role="alert" hidden {}
        }
    };
    w.page(l.t("Account", "アカウント"), body)
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

async fn passkey_remove(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Path(id): Path<i64>,
    FormBody(f): FormBody<CodeForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Err(e) = api::step_up_with(&p, &w.s, &f.code).await {
        return w.error(&e);
    }
    match crate::passkeys::remove_with(&p, &w.s, id).await {
        Ok(()) => Redirect::to("/account?done=removed").into_response(),
        Err(e) => w.error(&e),
    }
}

async fn settings_page(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    settings_with(&p, &w, q.get("done").map(String::as_str), None).await
}

/// The tenant admin's settings: filter thresholds, people, connector secrets.
async fn settings_with(
    p: &Portal,
    w: &WebSession,
    done: Option<&str>,
    link: Option<&str>,
) -> Response {
    let l = w.lang;
    let policy = match api::policy_of(p, &w.s).await {
        Ok(x) => x,
        Err(e) => return w.error(&e),
    };
    let [tag, quarantine, reject] = policy.effective;
    let tenant = w.s.user.tenant_id.map(|t| t.0);
    let (users, secrets) = match (
        w.s.ask(p, proto::acts::AccountList {}).await,
        w.s.ask(p, proto::acts::SecretList {}).await,
    ) {
        (Ok(u), Ok(s)) => (u, s),
        (Err(e), _) | (_, Err(e)) => return w.error(&e),
    };
    // The tenant's route and recipients (tenant admins manage their own).
    let delivery = match tenant {
        Some(id) if w.s.user.role == Role::TenantAdmin => {
            match (
                crate::api::tenants::tenant_doc(p, &w.s, id).await,
                crate::api::tenants::recipients_of(p, &w.s, id).await,
            ) {
                (Ok(t), Ok(list)) => Some((t.route, list)),
                (Err(e), _) | (_, Err(e)) => return w.error(&e),
            }
        }
        _ => None,
    };
    let notice = match done {
        Some("route") => Some(l.t(
            "The route is changed; mail goes there from now on.",
            "配送先を変更しました。以後のメールはそこへ配送されます。",
        )),
        Some("recipients") => Some(l.t(
            "The recipients are changed; they apply at once.",
            "受信者の設定を変更しました。すぐに適用されます。",
        )),
        Some("policy") => Some(l.t(
            "The thresholds are changed; mail is judged by them from now on.",
            "しきい値を変更しました。以後のメールに適用されます。",
        )),
        Some("secret") => Some(l.t(
            "The secret is sealed. It cannot be shown again, only replaced.",
            "シークレットを封印しました。再表示はできず、置き換えのみ可能です。",
        )),
        _ => None,
    };
    let code_field = html! {
        label { (l.t("Code from your authenticator (needed to loosen filtering or change a secret)", "認証アプリのコード(フィルターを緩める・シークレットを変更する場合に必要)"))
            input name="code" autocomplete="one-time-code" maxlength="16"; }
    };
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        @if let Some(link) = link {
            p.notice role="status" { (l.t("Invited. Send this one-time link (valid 72 hours):", "招待しました。この一回限りのリンク(72時間有効)を送ってください:")) br; code #invite-link { (link) } }
        }
        h2 { (l.t("Filter thresholds", "判定のしきい値")) }
        form.card #policy-form method="post" action="/settings/policy" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("Tag from score", "タグ付けするスコア")) input type="number" step="0.1" name="tag" value=(tag) required; }
            label { (l.t("Quarantine from score", "隔離するスコア")) input type="number" step="0.1" name="quarantine" value=(quarantine) required; }
            label { (l.t("Reject from score", "拒否するスコア")) input type="number" step="0.1" name="reject" value=(reject) required; }
            (code_field)
            button type="submit" { (l.t("Save", "保存")) }
        }
        h2 { (l.t("People", "利用者")) }
        table.items #users {
            thead { tr { th { (l.t("Login", "ログイン名")) } th { (l.t("Role", "権限")) } th { (l.t("State", "状態")) } } }
            tbody { @for u in &users {
                tr { td { (u.email) } td { (role_name(l, u.role)) }
                     td { (if u.active { l.t("active", "有効") } else { l.t("enrolling", "登録中") }) } }
            } }
        }
        form.card.inline method="post" action="/settings/invite" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("E-mail address", "メールアドレス")) input type="email" name="email" required maxlength="254"; }
            label { (l.t("Role", "権限")) select name="role" {
                option value="user" { (role_name(l, Role::User)) }
                option value="tenant-admin" { (role_name(l, Role::TenantAdmin)) }
            } }
            button type="submit" { (l.t("Invite", "招待")) }
        }
        h2 { (l.t("Smarthost credentials (write-only)", "スマートホスト認証情報(書き込み専用)")) }
        ul #secrets { @for x in &secrets { li { code { (x.kind) } " · " (l.t("set", "設定日時")) " " (l.time(x.updated_at)) } } }
        form.card #secret-form method="post" action="/settings/secret" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("SMTP user", "SMTPユーザー")) input name="username" required maxlength="512" autocomplete="off"; }
            label { (l.t("SMTP password", "SMTPパスワード")) input type="password" name="password" required maxlength="4096" autocomplete="new-password"; }
            (code_field)
            button type="submit" { (l.t("Seal", "封印")) }
        }
        @if let Some((route, list)) = &delivery {
            h2 { (l.t("Delivery and recipients", "配送先と受信者")) }
            form.card #route-form method="post" action="/settings/route" {
                input type="hidden" name="csrf" value=(w.s.csrf);
                label { (l.t("Route: where all of your mail goes (smtp://host:port?tls=required)", "配送先: すべてのメールの送り先(smtp://host:port?tls=required)"))
                    input name="route" value=(route) required maxlength="1000"; }
                label { (l.t("Code from your authenticator (needed to change the route)", "認証アプリのコード(配送先の変更に必要)"))
                    input name="code" autocomplete="one-time-code" maxlength="16" required; }
                button type="submit" { (l.t("Change the route", "配送先を変更")) }
            }
            form.card.inline #recipient-policy-form method="post" action="/settings/recipient-policy" {
                input type="hidden" name="csrf" value=(w.s.csrf);
                label { (l.t("Recipients accepted", "受け付ける宛先")) select name="policy" {
                    @for (v, en, ja) in [("auto", "listed ones, or all while none is listed", "登録済みのみ(未登録時はすべて)"),
                                         ("verify", "listed ones only", "登録済みのみ"),
                                         ("catch-all", "every mailbox of our domains", "ドメインのすべて")] {
                        option value=(v) selected[list.policy == v] { (l.t(en, ja)) }
                    }
                } }
                button type="submit" { (l.t("Save", "保存")) }
            }
            table.items #recipients {
                thead { tr { th { (l.t("Listed recipient", "登録済みの受信者")) } th {} } }
                tbody { @for a in &list.recipients {
                    tr { td { (a) } td {
                        form.inline method="post" action="/settings/recipient-remove" {
                            input type="hidden" name="csrf" value=(w.s.csrf);
                            input type="hidden" name="address" value=(a);
                            button type="submit" { (l.t("Remove", "削除")) }
                        }
                    } }
                } }
            }
            form.card.inline #recipient-form method="post" action="/settings/recipient-add" {
                input type="hidden" name="csrf" value=(w.s.csrf);
                label { (l.t("Mailbox", "メールアドレス")) input type="email" name="address" required maxlength="254"; }
                button type="submit" { (l.t("List", "登録")) }
            }
        }
        h2 { (l.t("Audit records", "監査記録")) }
        p { (l.t("Download your organisation's audit records with their chain links and signed checkpoints (JSON Lines), to verify or keep yourself.",
                 "組織の監査記録を、ハッシュチェーンと署名付きチェックポイントとともにダウンロードします(JSON Lines)。独自に検証・保管できます。")) }
        (export_form(l, &w.s.csrf, "/settings/audit-export", false))
    };
    w.page(l.t("Settings", "設定"), body)
}

/// The audit-export form: exporting needs a current code (step-up); operators and auditors
/// name the tenant.
fn export_form(l: Lang, csrf: &str, action: &str, tenant: bool) -> Markup {
    html! {
        form.card #export-form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            @if tenant {
                label { (l.t("Tenant", "テナント")) input name="tenant" required maxlength="64"; }
            }
            label { (l.t("Code from your authenticator (needed to export)", "認証アプリのコード(エクスポートに必要)"))
                input name="code" autocomplete="one-time-code" maxlength="16" required; }
            button type="submit" { (l.t("Export", "エクスポート")) }
        }
    }
}

#[derive(Deserialize)]
struct ExportForm {
    csrf: String,
    code: String,
    tenant: Option<String>,
}

/// Operators and auditors export a named tenant's records (from the alerts page).
async fn alerts_export(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    headers: axum::http::HeaderMap,
    FormBody(f): FormBody<ExportForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Err(e) = api::step_up_with(&p, &w.s, &f.code).await {
        return w.error(&e);
    }
    let s = match api::resolve_session(&headers, &p).await {
        Ok(s) => s,
        Err(e) => return w.error(&e),
    };
    let q = api::ExportQuery {
        tenant: f.tenant,
        from: None,
        to: None,
    };
    api::export_for(&p, &s, &q)
        .await
        .unwrap_or_else(|e| w.error(&e))
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    code: Option<String>,
    tag: Option<f64>,
    quarantine: Option<f64>,
    reject: Option<f64>,
    email: Option<String>,
    role: Option<String>,
    username: Option<String>,
    password: Option<String>,
    route: Option<String>,
    policy: Option<String>,
    address: Option<String>,
}

async fn settings_post(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    headers: axum::http::HeaderMap,
    Path(part): Path<String>,
    FormBody(f): FormBody<SettingsForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Some(code) = f.code.as_deref().filter(|c| !c.trim().is_empty())
        && let Err(e) = api::step_up_with(&p, &w.s, code).await
    {
        return w.error(&e);
    }
    // A step-up just made is seen by the vault, not yet by this request's session.
    let s = match api::resolve_session(&headers, &p).await {
        Ok(s) => s,
        Err(e) => return w.error(&e),
    };
    match part.as_str() {
        "policy" => {
            let mut doc = match api::policy_of(&p, &s).await {
                Ok(d) => d.policy,
                Err(e) => return w.error(&e),
            };
            doc.tag = f.tag;
            doc.quarantine = f.quarantine;
            doc.reject = f.reject;
            match api::policy_replace(&p, &s, doc).await {
                Ok(_) => Redirect::to("/settings?done=policy").into_response(),
                Err(e) => w.error(&e),
            }
        }
        "invite" => {
            let (Some(email), Some(role)) = (f.email, f.role) else {
                return w.error(&Problem::bad_request("fill in the address and the role"));
            };
            match api::invite_with(&p, &s, email, role, None, &headers).await {
                Ok(link) => settings_with(&p, &w, None, Some(&link)).await,
                Err(e) => w.error(&e),
            }
        }
        "route" | "recipient-policy" | "recipient-add" | "recipient-remove" => {
            let Some(id) = s.user.tenant_id.map(|t| t.0) else {
                return w.error(&Problem::forbidden("tenant settings are for tenant admins"));
            };
            let missing = || Problem::bad_request("fill in the form");
            let done = match part.as_str() {
                "route" => match f.route {
                    Some(r) => crate::api::tenants::set_route(&p, &s, id, &r).await,
                    None => Err(missing()),
                },
                "recipient-policy" => match f.policy {
                    Some(x) => crate::api::tenants::set_recipient_policy(&p, &s, id, &x).await,
                    None => Err(missing()),
                },
                "recipient-add" => match f.address {
                    Some(a) => crate::api::tenants::add_recipient(&p, &s, id, &a)
                        .await
                        .map(|_| ()),
                    None => Err(missing()),
                },
                _ => match f.address {
                    Some(a) => crate::api::tenants::remove_recipient(&p, &s, id, &a).await,
                    None => Err(missing()),
                },
            };
            match done {
                Ok(()) if part == "route" => Redirect::to("/settings?done=route").into_response(),
                Ok(()) => Redirect::to("/settings?done=recipients").into_response(),
                Err(e) => w.error(&e),
            }
        }
        "audit-export" => {
            let q = api::ExportQuery {
                tenant: None,
                from: None,
                to: None,
            };
            api::export_for(&p, &s, &q)
                .await
                .unwrap_or_else(|e| w.error(&e))
        }
        "secret" => {
            let (Some(username), Some(password)) = (f.username, f.password) else {
                return w.error(&Problem::bad_request("fill in the user and the password"));
            };
            let password = zeroize::Zeroizing::new(password);
            let value = zeroize::Zeroizing::new(
                serde_json::json!({ "kind": "smtp-auth", "username": username, "password": password.as_str() })
                    .to_string(),
            );
            match api::secret_seal(&p, &s, value.as_bytes()).await {
                Ok(_) => Redirect::to("/settings?done=secret").into_response(),
                Err(e) => w.error(&e),
            }
        }
        _ => w.error(&Problem::not_found("no such settings form")),
    }
}
