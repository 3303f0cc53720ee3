//! The tenant admin's settings: filter thresholds, people, connector secrets.

use super::*;

pub(super) async fn settings_page(
    State(p): State<Arc<Portal>>,
    w: WebSession,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    settings_with(&p, &w, q.get("done").map(String::as_str), None).await
}

/// The tenant admin's settings: filter thresholds, people, connector secrets.
pub(super) async fn settings_with(
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
    let (users, invited, secrets) = match (
        w.s.ask(p, proto::acts::AccountList {}).await,
        w.s.ask(p, proto::acts::InvitationList {}).await,
        w.s.ask(p, proto::acts::SecretList {}).await,
    ) {
        (Ok(u), Ok(i), Ok(s)) => (u, i, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return w.error(&e),
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
        Some("names") => Some(l.t(
            "Protected names and trusted forwarders are changed; they apply at once.",
            "保護する名前と信頼する転送元を変更しました。すぐに適用されます。",
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
        h2 { (l.t("Protected names and trusted forwarders", "保護する名前と信頼する転送元")) }
        form.card #names-form method="post" action="/settings/names" {
            input type="hidden" name="csrf" value=(w.s.csrf);
            label { (l.t("Protected display names, one a line: the name, then a colon and their real addresses (none: any address at your domains). Mail showing such a name from another address is held as impersonation.",
                         "保護する表示名(1行に1つ): 名前、続けてコロンと本人のアドレス(省略するとテナントのドメインの全アドレス)。他のアドレスからこの名前を名乗るメールはなりすましとして扱います。"))
                textarea #protected-names name="names" rows="5" maxlength="20000" { (names_text(&policy.policy.protected_names)) } }
            label { (l.t("Forwarders whose ARC seal you trust (mailing lists, a forwarding service), one domain a line",
                         "ARC署名を信頼する転送元(メーリングリスト・転送サービス)のドメイン(1行に1つ)"))
                textarea #trusted-arc name="trusted_arc" rows="3" maxlength="5000" { (policy.policy.trusted_arc.join("\n")) } }
            (code_field)
            button type="submit" { (l.t("Save", "保存")) }
        }
        h2 { (l.t("People", "利用者")) }
        table.items #users {
            thead { tr { th { (l.t("Login", "ログイン名")) } th { (l.t("Role", "権限")) } th { (l.t("State", "状態")) } } }
            tbody { @for u in &users {
                tr { td { (u.email) } td { (role_name(l, u.role)) }
                     td { (if u.active { l.t("active", "有効") } else { l.t("enrolling", "登録中") }) } }
            }
            @for i in &invited {
                tr.invited { td { (i.email) } td { (role_name(l, i.role)) }
                     td { (l.t("invited, link valid until", "招待中・リンク有効期限")) " " (l.time(i.expires_at)) } }
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

#[derive(Deserialize)]
pub(super) struct SettingsForm {
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
    names: Option<String>,
    trusted_arc: Option<String>,
}

/// Protected names as the form shows them: `Name: a@x, b@x`, one a line.
fn names_text(names: &[proto::acts::ProtectedName]) -> String {
    names
        .iter()
        .map(|n| match n.addresses.is_empty() {
            true => n.name.clone(),
            false => format!("{}: {}", n.name, n.addresses.join(", ")),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The form's lines back into protected names (the vault validates names and addresses).
fn parse_names(text: &str) -> Vec<proto::acts::ProtectedName> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, addresses) = l.split_once(':').unwrap_or((l, ""));
            proto::acts::ProtectedName {
                name: name.trim().to_string(),
                addresses: addresses
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

pub(super) async fn settings_post(
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
        "names" => {
            let mut doc = match api::policy_of(&p, &s).await {
                Ok(d) => d.policy,
                Err(e) => return w.error(&e),
            };
            doc.protected_names = parse_names(f.names.as_deref().unwrap_or(""));
            doc.trusted_arc = f
                .trusted_arc
                .as_deref()
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect();
            match api::policy_replace(&p, &s, doc).await {
                Ok(_) => Redirect::to("/settings?done=names").into_response(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_names_round_trip_through_the_form() {
        let text = "Taro Yamada: taro@acme.example, t.yamada@acme.example\n\n  CEO Office  \nNo: addresses: here";
        let names = parse_names(text);
        assert_eq!(names.len(), 3);
        assert_eq!(names[0].name, "Taro Yamada");
        assert_eq!(
            names[0].addresses,
            ["taro@acme.example", "t.yamada@acme.example"]
        );
        assert_eq!(
            (names[1].name.as_str(), names[1].addresses.len()),
            ("CEO Office", 0)
        );
        // Only the first colon splits (the vault refuses what is not an address).
        assert_eq!(names[2].addresses, ["addresses: here"]);
        assert_eq!(parse_names(&names_text(&names[..2])), names[..2].to_vec());
    }
}
