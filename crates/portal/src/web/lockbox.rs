//! Lockbox: operators ask a tenant for time-limited access to content; the tenant approves.

use super::*;

pub(super) fn lockbox_state(l: Lang, state: &str) -> &'static str {
    match state {
        "requested" => l.t("waiting for the tenant", "テナントの承認待ち"),
        "approved" => l.t("approved", "承認済み"),
        "expired" => l.t("expired", "期限切れ"),
        "denied" => l.t("denied", "却下"),
        _ => l.t("revoked", "取り消し"),
    }
}

pub(super) async fn lockbox_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
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

pub(super) fn act_button(w: &WebSession, id: i64, act: &str, label: &str, class: &str) -> Markup {
    html! {
        form method="post" action={"/lockbox/" (id) "/" (act)} {
            input type="hidden" name="csrf" value=(w.s.csrf);
            button class=(class) type="submit" data-act=(act) { (label) }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct LockboxForm {
    csrf: String,
    tenant: String,
    reason: String,
    minutes: i64,
}

pub(super) async fn lockbox_ask(
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

pub(super) async fn lockbox_act(
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
