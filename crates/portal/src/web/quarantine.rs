//! The quarantine: the list, one message, release and delete, and the digest's one-click release page.

use super::*;

#[derive(Deserialize)]
pub(super) struct ListParams {
    q: Option<String>,
    done: Option<String>,
    id: Option<String>,
}

pub(super) fn matches_query(i: &QuarantineItem, q: &str) -> bool {
    let q = q.to_lowercase();
    i.mail_from.to_lowercase().contains(&q)
        || i.rcpts.iter().any(|r| r.to_lowercase().contains(&q))
        || i.symbols.to_lowercase().contains(&q)
        || i.tenant.to_lowercase().contains(&q)
        || i.id.as_str().to_lowercase() == q
}

pub(super) async fn quarantine_page(
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

pub(super) async fn message_page(
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
            dt { (l.t("Evidence", "根拠")) } dd.symbols { (evidence(l, &item.symbols, usize::MAX)) }
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
pub(super) struct ReleaseForm {
    csrf: String,
    /// A step-up code (messages flagged as malware).
    code: Option<String>,
}

pub(super) async fn release(
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

pub(super) async fn delete(
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
pub(super) fn done(what: &str, id: &str) -> Response {
    // The id was checked to be [A-Za-z0-9-] before the act.
    Redirect::to(&format!("/quarantine?done={what}&id={id}")).into_response()
}

/// What a digest link releases, as the vault vouches for it: (quarantine id, recipient), or
/// the page that says why not.
pub(super) async fn digest_terms(
    p: &Portal,
    lang: Lang,
    token: &str,
) -> Result<DigestTerms, Response> {
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
pub(super) struct DigestTerms {
    rcpt: String,
    item: Option<QuarantineItem>,
}

pub(super) fn digest_title(l: Lang) -> &'static str {
    l.t("Release a quarantined message", "隔離メールの配信")
}

/// A digest link opens this page: it shows what the link releases and asks (a mail
/// client's link preview or a scanner following links releases nothing).
pub(super) async fn digest_page(
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
pub(super) async fn digest_release(
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
