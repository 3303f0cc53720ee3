//! What each evidence symbol means, in one line a reader understands, in English and
//! Japanese: the portal shows these beside a verdict's symbols. The symbols themselves (and
//! their weights and full descriptions) are `inspect`'s; a test there requires a line here for
//! every one of them.

/// `(symbol, English, Japanese)`.
const REASONS: &[(&str, &str, &str)] = &[
    (
        "GTUBE",
        "The spam test string (GTUBE) is in the message.",
        "迷惑メール判定のテスト文字列 (GTUBE) が含まれています。",
    ),
    (
        "MISSING_FROM",
        "The message has no sender (From) line.",
        "差出人 (From) がありません。",
    ),
    (
        "MULTIPLE_FROM",
        "The message names more than one sender (From).",
        "差出人 (From) が複数あります。",
    ),
    (
        "MISSING_DATE",
        "The message has no date.",
        "日付 (Date) がありません。",
    ),
    (
        "MISSING_MESSAGE_ID",
        "The message has no Message-ID.",
        "Message-ID がありません。",
    ),
    (
        "MISSING_SUBJECT",
        "The message has no subject line.",
        "件名 (Subject) がありません。",
    ),
    (
        "HTML_ONLY",
        "HTML only, without a plain-text version.",
        "HTML のみで、テキスト版がありません。",
    ),
    (
        "FREEMAIL_HTML_ONLY",
        "HTML only from a free mail address: written by bulk-mail software, not a mail app.",
        "フリーメールのアドレスから HTML のみ: メールアプリではなく一斉送信ソフトで作られたメールです。",
    ),
    (
        "BAYES_999",
        "The learned filter is almost certain this is spam.",
        "学習型フィルターが迷惑メールとほぼ確実に判定しました。",
    ),
    (
        "BAYES_99",
        "The learned filter is very sure this is spam.",
        "学習型フィルターが迷惑メールの可能性が非常に高いと判定しました。",
    ),
    (
        "BAYES_95",
        "The learned filter is sure this is spam.",
        "学習型フィルターが迷惑メールの可能性が高いと判定しました。",
    ),
    (
        "BAYES_80",
        "The learned filter finds this likely spam.",
        "学習型フィルターが迷惑メールらしいと判定しました。",
    ),
    (
        "BAYES_60",
        "The learned filter leans towards spam.",
        "学習型フィルターがやや迷惑メール寄りと判定しました。",
    ),
    (
        "BAYES_HAM",
        "The learned filter finds this ordinary mail.",
        "学習型フィルターが通常のメールと判定しました。",
    ),
    (
        "LR_SPAM_99",
        "The text classifier is very sure this is spam.",
        "本文の分類器が迷惑メールの可能性が非常に高いと判定しました。",
    ),
    (
        "LR_SPAM_90",
        "The text classifier finds this likely spam.",
        "本文の分類器が迷惑メールらしいと判定しました。",
    ),
    (
        "LR_SPAM_70",
        "The text classifier leans towards spam.",
        "本文の分類器がやや迷惑メール寄りと判定しました。",
    ),
    (
        "LR_HAM",
        "The text classifier finds this ordinary mail.",
        "本文の分類器が通常のメールと判定しました。",
    ),
    (
        "DATE_IN_FUTURE",
        "The message is dated in the future.",
        "日付が未来になっています。",
    ),
    (
        "DATE_IN_PAST",
        "The message is dated days before it arrived.",
        "日付が受信の何日も前になっています。",
    ),
    (
        "INVALID_DATE",
        "The message's date cannot be read.",
        "日付を読み取れません。",
    ),
    (
        "INVALID_MSGID",
        "The Message-ID is malformed.",
        "Message-ID の形式が正しくありません。",
    ),
    (
        "SUBJ_ALL_CAPS",
        "The subject is written in capitals.",
        "件名がすべて大文字です。",
    ),
    (
        "FROM_NAME_ADDRESS",
        "The sender's name shows an address other than the real one.",
        "差出人名に実際とは別のアドレスが表示されています。",
    ),
    (
        "MIXED_SCRIPT",
        "A word mixes alphabets (look-alike letters).",
        "単語の中に異なる文字種（似た形の文字）が混ざっています。",
    ),
    (
        "FOREIGN_SCRIPT",
        "The text is mostly in a script your organisation does not expect.",
        "本文の大半が、組織で想定していない文字で書かれています。",
    ),
    (
        "CHARSET_MISSING",
        "8-bit text without a declared character set.",
        "文字コードの指定がない 8 ビットの本文です。",
    ),
    (
        "HELO_IP_MISMATCH",
        "The sending server gave an address that is not its own.",
        "送信サーバーが自分のものではないアドレスを名乗りました。",
    ),
    (
        "HELO_NOT_FQDN",
        "The sending server did not give a proper host name.",
        "送信サーバーが正しいホスト名を名乗りませんでした。",
    ),
    (
        "HELO_CLAIMS_TENANT",
        "An outside server greeted with your own domain.",
        "外部のサーバーがあなたの組織のドメインを名乗りました。",
    ),
    (
        "RCVD_NONE",
        "Sent straight by a program, without passing any mail server.",
        "メールサーバーを経由せず、プログラムから直接送られています。",
    ),
    (
        "URL_SHORTENER",
        "A link goes through a URL shortener, hiding where it leads.",
        "リンクが短縮 URL を経由しており、本当の行き先が隠れています。",
    ),
    (
        "HIDDEN_TEXT",
        "The message hides text from the reader.",
        "読み手に見えない隠しテキストがあります。",
    ),
    (
        "NEWSLETTER_OWN_LINKS",
        "Looks like a newsletter: a way to unsubscribe and links to the sender's own site.",
        "ニュースレターの形式です（配信停止の方法と送信者自身のサイトへのリンク）。",
    ),
    (
        "NEWSLETTER_FOOTER",
        "A newsletter with a company's copyright footer and no sign of impersonation.",
        "企業の著作権表示のあるニュースレターで、なりすましの兆候はありません。",
    ),
    (
        "LIST_UNSUB_SIGNED",
        "Bulk mail whose sender is authenticated and offers unsubscribing.",
        "送信者が認証され、配信停止の方法がある一斉配信メールです。",
    ),
    (
        "SUBJ_PADDED",
        "The subject is padded with blanks to hide a tracking code, as bulk-mailing tools do.",
        "件名に空白を詰めて追跡用の文字列を隠しています（一斉送信ツールの手口）。",
    ),
    (
        "RCVD_FORGED_DATE",
        "A delivery trace line is dated in a form no mail server writes: it was forged.",
        "配送経路の記録（Received）の日付がメールサーバーの書かない形式で、偽造されています。",
    ),
    (
        "BASE64_TEXT",
        "Plain text was encoded to hide it from filters.",
        "普通のテキストをフィルターから隠すために符号化しています。",
    ),
    (
        "SPAM_PHRASES",
        "Several phrases typical of unsolicited offers.",
        "勧誘メールによくある言い回しが複数あります。",
    ),
    (
        "SPAM_PHRASES_MANY",
        "Many phrases typical of unsolicited offers.",
        "勧誘メールによくある言い回しが多数あります。",
    ),
    (
        "ADVANCE_FEE",
        "Phrases of the advance-fee scam (an inheritance, a transfer of funds).",
        "前払い金詐欺（遺産・送金話）によくある言い回しがあります。",
    ),
    (
        "OBFUSCATED_WORD",
        "A word disguised to slip past filters (v1agra).",
        "フィルターをすり抜けるために崩して書かれた単語があります。",
    ),
    (
        "URL_USERINFO",
        "A link shows one site but goes to another.",
        "リンクが表示とは別のサイトへつながっています。",
    ),
    (
        "URL_NUMERIC_HOST",
        "A link goes to a bare IP address instead of a name.",
        "リンク先が名前ではなく IP アドレスです。",
    ),
    (
        "MIME_TOO_DEEP",
        "The message is nested deeper than allowed.",
        "メールの入れ子構造が許容より深くなっています。",
    ),
    (
        "MIME_TOO_MANY_PARTS",
        "The message has more parts than allowed.",
        "メールの構成部分が許容より多くなっています。",
    ),
    (
        "MIME_UNPARSEABLE",
        "The message's structure cannot be read.",
        "メールの構造を読み取れません。",
    ),
    (
        "SPF_PASS",
        "The sending server is allowed to send for the sender's domain (SPF).",
        "送信サーバーは差出人ドメインから送信を許可されています (SPF)。",
    ),
    (
        "SPF_FAIL",
        "The sending server is not allowed to send for the sender's domain (SPF).",
        "送信サーバーは差出人ドメインから送信を許可されていません (SPF)。",
    ),
    (
        "SPF_SOFTFAIL",
        "The sender's domain doubts this sending server (SPF softfail).",
        "差出人ドメインはこの送信サーバーを疑わしいとしています (SPF softfail)。",
    ),
    (
        "SPF_NEUTRAL",
        "The sender's domain says nothing about this server (SPF neutral).",
        "差出人ドメインはこのサーバーについて何も示していません (SPF neutral)。",
    ),
    (
        "SPF_NONE",
        "The sender's domain publishes no SPF record.",
        "差出人ドメインに SPF レコードがありません。",
    ),
    (
        "SPF_TEMPERROR",
        "SPF could not be checked just now (DNS).",
        "SPF を確認できませんでした (DNS)。",
    ),
    (
        "SPF_PERMERROR",
        "The sender's SPF record is broken.",
        "差出人の SPF レコードに誤りがあります。",
    ),
    (
        "DKIM_PASS",
        "The message carries a valid signature (DKIM).",
        "有効な電子署名 (DKIM) があります。",
    ),
    (
        "DKIM_FAIL",
        "The message's signature does not match (DKIM).",
        "電子署名 (DKIM) が一致しません。",
    ),
    (
        "DKIM_TEMPERROR",
        "The signature could not be checked just now (DNS).",
        "電子署名を確認できませんでした (DNS)。",
    ),
    (
        "DKIM_PERMERROR",
        "The signature or its key is malformed (DKIM).",
        "電子署名 (DKIM) またはその鍵の形式が正しくありません。",
    ),
    (
        "DKIM_NONE",
        "The message is not signed (DKIM).",
        "電子署名 (DKIM) がありません。",
    ),
    (
        "DMARC_PASS",
        "The sender's domain is authenticated (DMARC).",
        "差出人ドメインが認証されました (DMARC)。",
    ),
    (
        "DMARC_REJECT",
        "Fails the sender's domain's authentication, which asks to reject (DMARC).",
        "差出人ドメインの認証に失敗し、ドメインは拒否を求めています (DMARC)。",
    ),
    (
        "DMARC_QUARANTINE",
        "Fails the sender's domain's authentication, which asks to quarantine (DMARC).",
        "差出人ドメインの認証に失敗し、ドメインは隔離を求めています (DMARC)。",
    ),
    (
        "DMARC_POLICY_NONE",
        "Fails the sender's domain's authentication (its policy is to monitor).",
        "差出人ドメインの認証に失敗しました（ドメインの方針は監視のみ）。",
    ),
    (
        "DMARC_TEMPERROR",
        "DMARC could not be checked just now (DNS).",
        "DMARC を確認できませんでした (DNS)。",
    ),
    (
        "DMARC_PERMERROR",
        "The sender's DMARC record is broken.",
        "差出人の DMARC レコードに誤りがあります。",
    ),
    (
        "DNSBL_CLIENT",
        "The sending server is on a block list.",
        "送信サーバーがブロックリストに載っています。",
    ),
    (
        "DNSBL_LINK",
        "A link's domain is on a block list.",
        "リンク先のドメインがブロックリストに載っています。",
    ),
    (
        "ARC_PASS",
        "A forwarder's authentication record (ARC) is intact.",
        "転送元の認証記録 (ARC) は正常です。",
    ),
    (
        "ARC_TRUSTED",
        "Forwarded by a forwarder your organisation trusts (ARC).",
        "組織が信頼する転送元から転送されています (ARC)。",
    ),
    (
        "ARC_FAIL",
        "A forwarder's authentication record (ARC) is broken.",
        "転送元の認証記録 (ARC) が壊れています。",
    ),
    (
        "AUTH_TIMEOUT",
        "Authentication did not finish in time.",
        "送信者の認証が時間内に終わりませんでした。",
    ),
    (
        "LOOKALIKE_DOMAIN",
        "The sender's domain imitates yours or a well-known brand.",
        "差出人のドメインがあなたの組織や有名ブランドのドメインを装っています。",
    ),
    (
        "IMPERSONATION",
        "The sender uses the name of someone in your organisation, from another address.",
        "組織内の人物の名前を、別のアドレスから名乗っています。",
    ),
    (
        "LOOKALIKE_LURE",
        "An imitating sender with a lure: misleading links or the imitated brand's name.",
        "なりすましの差出人が、誤解を招くリンクやブランド名で誘導しています。",
    ),
    (
        "SENDER_ALLOWED",
        "The sender is on your allow list and authenticated.",
        "差出人は許可リストに登録され、認証されています。",
    ),
    (
        "SENDER_ALLOWED_UNAUTHENTICATED",
        "The sender is on your allow list but not authenticated, so the allow does not apply.",
        "差出人は許可リストにありますが、認証されていないため許可は適用されません。",
    ),
    (
        "SENDER_BLOCKED",
        "The sender is on your block list.",
        "差出人は拒否リストに登録されています。",
    ),
    (
        "FIRST_CONTACT",
        "This sender has never written to your organisation before.",
        "この差出人から組織へのメールは初めてです。",
    ),
    (
        "REPLYTO_MISMATCH",
        "Replies would go to another domain than the sender's.",
        "返信先が差出人とは別のドメインになっています。",
    ),
    (
        "LINK_TEXT_MISMATCH",
        "A link shows one address but leads to another.",
        "リンクの表示と実際の行き先が異なります。",
    ),
    (
        "PHISH_FEED_DOMAIN",
        "A link or the sender is on the list of known phishing sites.",
        "リンクまたは差出人が既知のフィッシングサイトの一覧に載っています。",
    ),
    (
        "LOOKALIKE_LINK",
        "A link leads to an imitation of your domain or a well-known brand.",
        "リンクがあなたの組織や有名ブランドを装ったサイトへつながっています。",
    ),
    (
        "VIRUS_FOUND",
        "The virus scanner found malware.",
        "ウイルススキャナーがマルウェアを検出しました。",
    ),
    (
        "SCANNER_UNAVAILABLE",
        "The virus scanner could not be asked.",
        "ウイルススキャナーに確認できませんでした。",
    ),
    (
        "EXECUTABLE_ATTACHMENT",
        "An attachment is a program.",
        "添付ファイルが実行ファイル（プログラム）です。",
    ),
    (
        "DOUBLE_EXTENSION",
        "An attachment hides a program behind another file type (invoice.pdf.exe).",
        "添付ファイルが別の種類を装った実行ファイルです (invoice.pdf.exe)。",
    ),
    (
        "OFFICE_MACRO",
        "An Office document contains macros.",
        "Office 文書にマクロが含まれています。",
    ),
    (
        "HTML_PASSWORD_FORM",
        "An attached web page asks for a password.",
        "添付の HTML ファイルがパスワードの入力を求めています。",
    ),
    (
        "HTML_SMUGGLING",
        "An attached web page unpacks hidden content.",
        "添付の HTML ファイルが隠された内容を展開します。",
    ),
    (
        "ENCRYPTED_ARCHIVE",
        "An attached archive is encrypted, so it cannot be scanned.",
        "添付の圧縮ファイルが暗号化されており、検査できません。",
    ),
    (
        "ARCHIVE_BOMB",
        "An attached archive is built to overwhelm scanners.",
        "添付の圧縮ファイルが検査を妨げる構造になっています。",
    ),
];

/// The one-line reason for `symbol` (its name, any case), in Japanese when `japanese`.
pub fn reason(symbol: &str, japanese: bool) -> Option<&'static str> {
    REASONS
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(symbol))
        .map(|(_, en, ja)| if japanese { *ja } else { *en })
}

/// Every symbol that has a reason here.
pub fn known() -> impl Iterator<Item = &'static str> {
    REASONS.iter().map(|(name, _, _)| *name)
}

/// A verdict's symbol list as stored (`NAME(weight), NAME(weight)`): each name and weight.
pub fn parse_list(list: &str) -> Vec<(String, f64)> {
    list.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (name, rest) = item.split_once('(')?;
            let weight = rest.trim_end_matches(')').parse().ok()?;
            Some((name.trim().to_string(), weight))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_in_both_languages_by_name() {
        assert_eq!(
            reason("gtube", false),
            Some("The spam test string (GTUBE) is in the message.")
        );
        assert!(reason("SPF_FAIL", true).unwrap().contains("SPF"));
        assert_eq!(reason("NO_SUCH_SYMBOL", false), None);
        let mut names: Vec<_> = known().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a symbol twice");
    }

    #[test]
    fn a_stored_list_reads_back() {
        assert_eq!(
            parse_list("GTUBE(1000.00), DKIM_NONE(0.50), BAYES_HAM(-1.50)"),
            [
                ("GTUBE".to_string(), 1000.0),
                ("DKIM_NONE".to_string(), 0.5),
                ("BAYES_HAM".to_string(), -1.5)
            ]
        );
        assert!(parse_list("").is_empty());
    }
}
