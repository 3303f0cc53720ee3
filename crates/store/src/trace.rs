//! The message trace: every message's envelope, size, TLS and timestamps, and each
//! recipient's delivery events.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// One record to write to the trace.
#[derive(Debug, Clone)]
pub enum TraceRecord {
    /// A message was received (one `accepted` event per recipient is written with it, unless
    /// the verdict refused it at DATA).
    Received {
        /// Queue id.
        id: String,
        /// Unix seconds.
        at: i64,
        /// Envelope sender.
        mail_from: String,
        /// Size in octets.
        size: u64,
        /// Client IP.
        client_ip: String,
        /// HELO/EHLO name.
        helo: String,
        /// TLS version and cipher, if any.
        tls: Option<String>,
        /// Recipients with their tenant ids.
        rcpts: Vec<(String, i64)>,
        /// Inspection action (`deliver`, `tag`, `quarantine`, `reject`, …), if inspected.
        verdict: Option<String>,
        /// Inspection score.
        score: Option<f64>,
        /// Symbols with weights, `NAME(w), …`.
        symbols: String,
    },
    /// Something happened to one recipient (delivered, deferred, bounced, …).
    Event(TraceEvent),
    /// A sender address (hash) wrote to a tenant for the first time.
    SenderSeen {
        /// Tenant id.
        tenant: i64,
        /// Hash of the lower-cased From address.
        sender: u64,
        /// Unix seconds.
        at: i64,
    },
}

/// One recipient event.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    /// Queue id.
    pub message_id: String,
    /// Recipient.
    pub rcpt: String,
    /// Tenant id, when known.
    pub tenant_id: Option<i64>,
    /// Unix seconds.
    pub at: i64,
    /// `accepted`, `delivered`, `deferred`, `bounced`, `deleted`, `held`, `dsn-sent`.
    pub event: String,
    /// The next hop's reply or the reason.
    pub detail: String,
}

/// A traced message with its events.
#[derive(Debug, Clone, Serialize)]
pub struct TraceMessage {
    /// Queue id.
    pub id: String,
    /// Unix seconds.
    pub received_at: i64,
    /// Envelope sender.
    pub mail_from: String,
    /// Size in octets.
    pub size: i64,
    /// Client IP.
    pub client_ip: String,
    /// HELO name.
    pub helo: String,
    /// TLS details.
    pub tls: Option<String>,
    /// Inspection action.
    pub verdict: Option<String>,
    /// Inspection score.
    pub score: Option<f64>,
    /// Symbols with weights.
    pub symbols: String,
    /// Events, oldest first.
    pub events: Vec<TraceEvent>,
}

/// What to search for.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// Messages with an event for this recipient.
    pub rcpt: Option<String>,
    /// Messages from this sender.
    pub mail_from: Option<String>,
    /// One message by id.
    pub id: Option<String>,
    /// Only messages with an event for this tenant, and only that tenant's events.
    pub tenant: Option<i64>,
    /// Most messages returned (newest first).
    pub limit: i64,
}

async fn insert_event(conn: &mut crate::Conn, e: &TraceEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO trace_events (message_id, rcpt, tenant_id, at, event, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.message_id)
    .bind(&e.rcpt)
    .bind(e.tenant_id)
    .bind(e.at)
    .bind(&e.event)
    .bind(&e.detail)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Sender-history rows after row `after` (at most `limit`): `(id, tenant, sender hash)`.
    pub async fn senders_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, sender FROM sender_history WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2) as u64))
            .collect())
    }

    /// Writes a batch of trace records in one transaction. Records about a tenant that no
    /// longer exists (terminated while they waited in the writer's queue) are dropped: nothing
    /// of a terminated tenant's mail may come back after its purge.
    pub async fn write_trace(&self, batch: &[TraceRecord]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let mut live: std::collections::HashMap<i64, bool> = std::collections::HashMap::new();
        for record in batch {
            let mut tenants: Vec<i64> = match record {
                TraceRecord::Received { rcpts, .. } => rcpts.iter().map(|(_, t)| *t).collect(),
                TraceRecord::Event(e) => e.tenant_id.into_iter().filter(|&t| t != 0).collect(),
                TraceRecord::SenderSeen { tenant, .. } => vec![*tenant],
            };
            tenants.sort_unstable();
            tenants.dedup();
            for t in &tenants {
                if !live.contains_key(t) {
                    let found: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE id = $1")
                            .bind(t)
                            .fetch_one(&mut *tx)
                            .await?;
                    live.insert(*t, found > 0);
                }
            }
            if !tenants.is_empty() && !tenants.iter().any(|t| live[t]) {
                continue;
            }
            match record {
                TraceRecord::Received {
                    id,
                    at,
                    mail_from,
                    size,
                    client_ip,
                    helo,
                    tls,
                    rcpts,
                    verdict,
                    score,
                    symbols,
                } => {
                    sqlx::query(
                        "INSERT INTO trace_messages (id, received_at, mail_from, size, client_ip, helo, tls, verdict, score, symbols)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(at)
                    .bind(mail_from)
                    .bind(*size as i64)
                    .bind(client_ip)
                    .bind(helo)
                    .bind(tls)
                    .bind(verdict)
                    .bind(score)
                    .bind(symbols)
                    .execute(&mut *tx)
                    .await?;
                    // A message refused at DATA was never accepted: its events are the refusal.
                    let refused = matches!(verdict.as_deref(), Some("reject" | "tempfail"));
                    for (rcpt, tenant) in rcpts.iter().filter(|(_, t)| !refused && live[t]) {
                        let e = TraceEvent {
                            message_id: id.clone(),
                            rcpt: rcpt.clone(),
                            tenant_id: Some(*tenant),
                            at: *at,
                            event: "accepted".into(),
                            detail: String::new(),
                        };
                        insert_event(&mut tx, &e).await?;
                    }
                }
                TraceRecord::Event(e) => insert_event(&mut tx, e).await?,
                TraceRecord::SenderSeen { tenant, sender, at } => {
                    sqlx::query(
                        "INSERT INTO sender_history (tenant_id, sender, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(*sender as i64)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes trace events older than each tenant's cutoff (`(tenant, cutoff)`; events of
    /// no tenant — refusals before a recipient was known — go by `others`), then messages
    /// left without events that are older than the latest cutoff. Returns, per tenant, the
    /// events deleted (tenant 0: those of no tenant).
    pub async fn trace_purge(
        &self,
        cutoffs: &[(i64, i64)],
        others: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::new();
        for &(tenant, cutoff) in cutoffs {
            let n = sqlx::query("DELETE FROM trace_events WHERE tenant_id = $1 AND at < $2")
                .bind(tenant)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                out.push((tenant, n));
            }
        }
        let n = sqlx::query(
            "DELETE FROM trace_events WHERE (tenant_id IS NULL OR tenant_id = 0) AND at < $1",
        )
        .bind(others)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            out.push((0, n));
        }
        let latest = cutoffs.iter().map(|c| c.1).fold(others, i64::max);
        sqlx::query(
            "DELETE FROM trace_messages WHERE received_at < $1
             AND NOT EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = trace_messages.id)",
        )
        .bind(latest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Searches the trace, newest messages first.
    pub async fn trace(&self, f: &TraceFilter) -> Result<Vec<TraceMessage>, StoreError> {
        let rcpt = f.rcpt.as_ref().map(|r| r.to_lowercase());
        let rows = sqlx::query(
            "SELECT id, received_at, mail_from, size, client_ip, helo, tls, verdict, score, symbols FROM trace_messages m
             WHERE ($1 IS NULL OR lower(mail_from) = lower($1))
               AND ($2 IS NULL OR id = $2)
               AND ($3 IS NULL OR EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = m.id AND lower(e.rcpt) = $3
                                          AND ($5 IS NULL OR e.tenant_id = $5)))
               AND ($5 IS NULL OR EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = m.id AND e.tenant_id = $5))
             ORDER BY received_at DESC, id DESC LIMIT $4",
        )
        .bind(&f.mail_from)
        .bind(&f.id)
        .bind(&rcpt)
        .bind(if f.limit > 0 { f.limit } else { 100 })
        .bind(f.tenant)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let events = sqlx::query(
                "SELECT message_id, rcpt, tenant_id, at, event, detail FROM trace_events
                 WHERE message_id = $1 AND ($2 IS NULL OR tenant_id = $2) ORDER BY seq",
            )
            .bind(&id)
            .bind(f.tenant)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|e| TraceEvent {
                message_id: e.get(0),
                rcpt: e.get(1),
                tenant_id: e.get(2),
                at: e.get(3),
                event: e.get(4),
                detail: e.get(5),
            })
            .collect();
            out.push(TraceMessage {
                id,
                received_at: r.get(1),
                mail_from: r.get(2),
                size: r.get(3),
                client_ip: r.get(4),
                helo: r.get(5),
                tls: r.get(6),
                verdict: r.get(7),
                score: r.get(8),
                symbols: r.get(9),
                events,
            });
        }
        Ok(out)
    }
}
