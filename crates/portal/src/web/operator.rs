//! The operator's page: health, nodes, tenants and their domains, invitations.

use super::*;

pub(super) async fn operator_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    operator_with(&p, &w, None).await
}

/// The operator's page, with the one-time link of an invitation just made.
async fn operator_with(p: &Portal, w: &WebSession, link: Option<&str>) -> Response {
    let l = w.lang;
    if w.s.user.role != Role::Operator {
        return w.error(&Problem::forbidden("system health is for operators"));
    }
    let tenants = match api::tenant_docs(p, &w.s).await {
        Ok(t) => t,
        Err(e) => return w.error(&e),
    };
    let h = match api::health_of(p, &w.s).await {
        Ok(h) => h,
        Err(e) => return w.error(&e),
    };
    // Outbound TLS is shown when the store answers; its absence is the health table's news.
    let tls = api::tls_outcomes_for(p, &w.s, 7).await.unwrap_or_default();
    let up = |ok: bool| {
        if ok {
            l.t("up", "稼働中")
        } else {
            l.t("NOT ANSWERING", "応答なし")
        }
    };
    let body = html! {
        @if let Some(link) = link {
            p.notice role="status" { (l.t("Invited. Send this one-time link (valid 72 hours):", "招待しました。この一回限りのリンク(72時間有効)を送ってください:")) br; code #invite-link { (link) } }
        }
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
        h2 { (l.t("Outbound TLS, last 7 days", "送信TLS(過去7日間)")) }
        @if tls.is_empty() {
            p #tls-outcomes { (l.t("No direct deliveries yet.", "直接配送はまだありません。")) }
        } @else {
            table.items #tls-outcomes {
                thead { tr {
                    th { (l.t("Recipient domain", "宛先ドメイン")) }
                    th { (l.t("Policy", "ポリシー")) }
                    th { (l.t("TLS as asked", "TLS成功")) }
                    th { (l.t("Failed", "失敗")) }
                    th { (l.t("Most frequent failure", "主な失敗")) }
                    th { (l.t("Last day", "最終日")) }
                } }
                tbody { @for o in &tls {
                    tr {
                        td { (o.domain) }
                        td { (if o.policy == "sts" { "MTA-STS" } else { "—" }) }
                        td.num { (o.successful) }
                        td.num.{"failed-" (o.failed > 0)} { (o.failed) }
                        td { @if let Some(f) = &o.top_failure { code { (f) } } }
                        td { (o.last_day) }
                    }
                } }
            }
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
        h2 { (l.t("Invite a person", "利用者の招待")) }
        form.card #invite-form method="post" action="/operator/invite" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("E-mail address (their login name)", "メールアドレス(ログイン名)")) input type="email" name="email" required maxlength="254"; }
            label { (l.t("Role", "権限")) select name="role" {
                @for r in [Role::Operator, Role::Auditor, Role::TenantAdmin, Role::User] {
                    option value=(r.as_str()) { (role_name(l, r)) }
                }
            } }
            label { (l.t("Tenant (tenant admins and users)", "テナント(テナント管理者・利用者)")) select name="tenant_name" {
                option value="" { "—" }
                @for t in &tenants { option value=(t.name) { (t.name) } }
            } }
            button type="submit" { (l.t("Invite", "招待")) }
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
pub(super) struct OperatorForm {
    csrf: String,
    name: Option<String>,
    domains: Option<String>,
    route: Option<String>,
    tenant: Option<i64>,
    domain: Option<String>,
    email: Option<String>,
    role: Option<String>,
    tenant_name: Option<String>,
}

/// The operator page's forms: a new tenant, a domain for a tenant, an invitation (the API's
/// acts; the vault decides who may invite whom).
pub(super) async fn operator_post(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    headers: axum::http::HeaderMap,
    Path(part): Path<String>,
    FormBody(f): FormBody<OperatorForm>,
) -> Response {
    if let Some(r) = w.csrf_refusal(&f.csrf) {
        return r;
    }
    if part == "invite" {
        let (Some(email), Some(role)) = (f.email, f.role) else {
            return w.error(&Problem::bad_request("fill in the address and the role"));
        };
        let tenant = f.tenant_name.filter(|t| !t.is_empty());
        return match api::invite_with(&p, &w.s, email, role, tenant, &headers).await {
            Ok(link) => operator_with(&p, &w, Some(&link)).await,
            Err(e) => w.error(&e),
        };
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
