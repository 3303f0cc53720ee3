//! Sender lists: allow and block entries, per tenant or per user.

use super::*;

#[derive(Deserialize)]
pub(super) struct SenderActionForm {
    csrf: String,
    action: String,
}

pub(super) async fn item_sender(
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

pub(super) fn scope_name(l: Lang, scope: &str) -> &'static str {
    match scope {
        "tenant" => l.t("everyone in the tenant", "テナント全体"),
        "me" => l.t("my mailbox", "自分の受信箱"),
        _ => l.t("one recipient", "特定の宛先"),
    }
}

pub(super) async fn senders_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
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
pub(super) struct SenderAddForm {
    csrf: String,
    pattern: String,
    action: String,
    scope: String,
}

pub(super) async fn senders_add(
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

pub(super) async fn senders_remove(
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
