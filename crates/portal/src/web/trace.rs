//! Message trace: what happened to a message, recipient by recipient.

use super::*;

pub(super) async fn trace_page(
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
                             @if let Some(sc) = m.score { " " (format!("{sc:.1}")) }
                             (evidence(l, &m.symbols, 3)) }
                        td { ul.events { @for e in &m.events {
                            li { (l.time(e.at)) " · " (e.rcpt) " · " strong data-event=(e.event) { (event_name(l, &e.event)) }
                                 @if !e.detail.is_empty() { " · " span.note { (e.detail) } } }
                        } } }
                    }
                } }
            }
        }
    };
    w.page(l.t("Message trace", "配送履歴"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_words_are_in_the_readers_language() {
        assert_eq!(event_name(Lang::En, "quarantined"), "quarantined");
        assert_eq!(event_name(Lang::Ja, "quarantined"), "隔離");
        assert_eq!(event_name(Lang::Ja, "reject"), "拒否");
        assert_eq!(event_name(Lang::Ja, "some-new-event"), "some-new-event");
    }
}
