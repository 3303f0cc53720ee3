//! Alerts, and the audit export operators and auditors make from that page.

use super::*;

pub(super) async fn alerts_page(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
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

/// The audit-export form: exporting needs a current code (step-up); operators and auditors
/// name the tenant.
pub(super) fn export_form(l: Lang, csrf: &str, action: &str, tenant: bool) -> Markup {
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
pub(super) struct ExportForm {
    csrf: String,
    code: String,
    tenant: Option<String>,
}

/// Operators and auditors export a named tenant's records (from the alerts page).
pub(super) async fn alerts_export(
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
