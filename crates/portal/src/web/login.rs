//! Signing in and out, and enrolment (a one-time link, then password and second factor).

use super::*;

pub(super) fn login_form(l: Lang, error: Option<&str>) -> Markup {
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

pub(super) async fn login_page(lang: Lang) -> Response {
    page(
        lang,
        None,
        lang.t("Log in", "ログイン"),
        login_form(lang, None),
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    email: String,
    password: String,
    code: String,
}

pub(super) async fn login_submit(
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

pub(super) async fn logout(
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

pub(super) fn enrol_form(l: Lang, token: &str, error: Option<&str>) -> Markup {
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

pub(super) async fn enrol_page(lang: Lang) -> Response {
    page(
        lang,
        None,
        lang.t("Activate your account", "アカウントの有効化"),
        enrol_form(lang, "", None),
    )
}

#[derive(Deserialize)]
pub(super) struct EnrolForm {
    token: String,
    password: String,
    again: String,
}

pub(super) async fn enrol_submit(
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
pub(super) struct ConfirmForm {
    token: String,
    code: String,
}

pub(super) async fn enrol_confirm(
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
        Ok((
            VaultResponse::Activated {
                recovery_codes,
                login,
                ..
            },
            _,
        )) => page(
            l,
            None,
            l.t("Your account is active", "アカウントが有効になりました"),
            html! {
                p { (l.t("Your login name:", "ログイン名:")) " " strong #login-name { (login) } }
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
