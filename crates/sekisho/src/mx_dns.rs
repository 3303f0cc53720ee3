//! Direct delivery's DNS: the node's configured resolver answers egress's MX and address
//! lookups (with TTL caches of their own, apart from the authentication stage's).

use std::net::IpAddr;
use std::sync::Arc;

use egress::mx::{MxAnswer, MxResolver};
use egress::secrets::BoxFuture;
use inspect::dns::{DnsCaches, Exchangers};

/// Mail exchangers and their addresses through the node's resolver.
pub struct NodeDns {
    auth: inspect::dns::Authenticator,
    caches: Arc<DnsCaches>,
}

impl NodeDns {
    /// Looks up through `auth` (the resolver of `[dns] resolver`, or the system's).
    pub fn new(auth: inspect::dns::Authenticator) -> Self {
        Self {
            auth,
            caches: Arc::new(DnsCaches::default()),
        }
    }
}

impl NodeDns {
    /// The TXT record at `name` (its strings joined), `None` when there is none.
    pub async fn txt(&self, name: &str) -> Result<Option<String>, String> {
        inspect::dns::txt(&self.auth, name).await
    }
}

impl MxResolver for NodeDns {
    fn mx(&self, domain: &str) -> BoxFuture<'_, Result<MxAnswer, String>> {
        let domain = domain.to_string();
        Box::pin(async move {
            Ok(
                match inspect::dns::mail_exchangers(&self.auth, &self.caches, &domain).await? {
                    Exchangers::Hosts(h) => MxAnswer::Hosts(h),
                    Exchangers::NoRecords => MxAnswer::NoRecords,
                    Exchangers::NoDomain => MxAnswer::NoDomain,
                },
            )
        })
    }

    fn addresses(&self, host: &str) -> BoxFuture<'_, Result<Vec<IpAddr>, String>> {
        let host = host.to_string();
        Box::pin(async move { inspect::dns::addresses(&self.auth, &self.caches, &host).await })
    }
}
