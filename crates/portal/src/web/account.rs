//! Everyone's own account: passkeys.

use super::*;

/// Everyone's own account: passkeys (add, list, remove).
pub(super) async fn account_page(
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
pub(super) struct CodeForm {
    csrf: String,
    code: String,
}

pub(super) async fn passkey_remove(
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
