//! Connections per destination: a concurrency limit and reuse of idle connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::client::{Client, Failure, Outgoing, Reply, TlsClients};
use crate::secrets::Credentials;
use proto::route::{SmtpRoute, TlsPolicy};

struct Destination {
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<(Instant, Client)>>,
}

/// Open connections by destination.
pub struct Pool {
    per_destination: usize,
    idle_for: Duration,
    destinations: Mutex<HashMap<SmtpRoute, Arc<Destination>>>,
}

/// What a connection was, for TLS reporting.
#[derive(Debug, Clone)]
pub struct Session {
    /// TLS version and cipher, if the connection is encrypted.
    pub tls: Option<String>,
    /// Whether the connection was made for it (not an idle one reused): a new TLS session.
    pub fresh: bool,
    /// Our address on the connection.
    pub local: Option<std::net::IpAddr>,
    /// Why an opportunistic connection is in clear text, if it is.
    pub declined: Option<crate::tls_report::ResultType>,
}

impl Sent {
    /// The replies, and what the connection was.
    pub fn split(self) -> (Vec<Reply>, Session) {
        (
            self.replies,
            Session {
                tls: self.tls,
                fresh: self.fresh,
                local: self.local,
                declined: self.declined,
            },
        )
    }
}

/// What one transaction over the pool came to.
pub struct Sent {
    /// The per-recipient replies.
    pub replies: Vec<Reply>,
    /// TLS version and cipher, if the connection is encrypted.
    pub tls: Option<String>,
    /// Whether the connection was made for it (not an idle one reused): a new TLS session.
    pub fresh: bool,
    /// Our address on the connection.
    pub local: Option<std::net::IpAddr>,
    /// Why an opportunistic connection is in clear text, if it is.
    pub declined: Option<crate::tls_report::ResultType>,
}

impl Pool {
    /// A pool allowing `per_destination` connections to each next hop, keeping idle ones
    /// for `idle_for`.
    pub fn new(per_destination: usize, idle_for: Duration) -> Self {
        Self {
            per_destination: per_destination.max(1),
            idle_for,
            destinations: Mutex::new(HashMap::new()),
        }
    }

    fn destination(&self, route: &SmtpRoute) -> Arc<Destination> {
        self.destinations
            .lock()
            .expect("poisoned")
            .entry(route.clone())
            .or_insert_with(|| {
                Arc::new(Destination {
                    slots: Arc::new(Semaphore::new(self.per_destination)),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    fn take_idle(&self, d: &Destination) -> Option<Client> {
        let mut idle = d.idle.lock().expect("poisoned");
        while let Some((since, c)) = idle.pop() {
            if since.elapsed() < self.idle_for {
                return Some(c);
            }
        }
        None
    }

    /// Drops idle connections older than the idle time.
    pub fn sweep(&self) {
        let dests: Vec<_> = self
            .destinations
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect();
        for d in dests {
            d.idle
                .lock()
                .expect("poisoned")
                .retain(|(since, _)| since.elapsed() < self.idle_for);
        }
    }

    async fn connect(
        route: &SmtpRoute,
        helo: &str,
        tls: &TlsClients,
        limit: Duration,
        creds: &Credentials,
    ) -> Result<Client, Failure> {
        match Client::connect(route, helo, tls, limit, creds).await {
            Err(Failure::Tls(why, e)) if route.tls == TlsPolicy::Opportunistic => {
                // Opportunistic TLS failed: fall back to clear text rather than not delivering.
                tracing::warn!(host = %route.host, error = %e, "opportunistic TLS failed; retrying without TLS");
                let plain = SmtpRoute {
                    tls: TlsPolicy::None,
                    ..route.clone()
                };
                let mut client = Client::connect(&plain, helo, tls, limit, creds).await?;
                client.declined = Some(why);
                Ok(client)
            }
            other => other,
        }
    }

    /// Sends `msg` to `route`, reusing an idle connection when there is one. Returns the
    /// per-recipient replies and the TLS parameters of the connection. `creds` are presented
    /// on new connections; the route's owner is part of the pool key, so a connection
    /// authenticated for one tenant never carries another tenant's mail.
    pub async fn send(
        &self,
        route: &SmtpRoute,
        helo: &str,
        tls: &TlsClients,
        limit: Duration,
        msg: &Outgoing<'_>,
        creds: &Credentials,
    ) -> Result<Sent, Failure> {
        let d = self.destination(route);
        let _slot = d
            .slots
            .acquire()
            .await
            .map_err(|_| Failure::Temporary("shutting down".into()))?;
        let (mut client, reused) = match self.take_idle(&d) {
            Some(c) => (c, true),
            None => (Self::connect(route, helo, tls, limit, creds).await?, false),
        };
        let mut result = client.send(msg).await;
        if reused && matches!(result, Err(Failure::Temporary(_))) {
            // The idle connection may have been closed by the next hop: one fresh try.
            client = Self::connect(route, helo, tls, limit, creds).await?;
            result = client.send(msg).await;
        }
        let sent = Sent {
            replies: result?,
            tls: client.tls.clone(),
            fresh: !reused,
            local: client.local,
            declined: client.declined,
        };
        d.idle
            .lock()
            .expect("poisoned")
            .push((Instant::now(), client));
        Ok(sent)
    }
}
