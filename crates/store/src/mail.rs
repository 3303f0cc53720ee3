//! mx's handle on the store: the mail path's reads and writes, nothing else. What
//! [`crate::roles::MX_GRANTS`] lets mx's database user do on PostgreSQL, the compiler enforces
//! here on both engines: code of the mx role holds a [`MailStore`], never a [`Store`], so it
//! cannot even name a route change, an account, a secret or an audit key. (The vault's acts
//! and the CLI hold the whole [`Store`]; the portal holds none.)

use crate::{
    Alert, Directory, NewAlert, NewRecord, NodeInfo, QuarantineItem, Store, StoreError, TraceRecord,
};

/// The mail role's store handle.
#[derive(Clone)]
pub struct MailStore(Store);

impl Store {
    /// Narrows this handle to what the mail path may do.
    pub fn into_mail(self) -> MailStore {
        MailStore(self)
    }
}

/// Each granted method, forwarded unchanged (its documentation is the [`Store`] method's).
macro_rules! granted {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        impl MailStore {
            $(
                #[doc = concat!("See [`Store::", stringify!($name), "`].")]
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.0.$name($($arg),*).await
                }
            )*
        }
    };
}

granted! {
    // The directory and the models (read).
    fn directory(&self) -> Result<Directory, StoreError>;
    fn generation(&self) -> Result<i64, StoreError>;
    fn tenant(&self, id: i64) -> Result<Option<crate::Tenant>, StoreError>;
    fn bayes_generations(&self) -> Result<Vec<(i64, i64)>, StoreError>;
    fn bayes_load(&self, tenant: i64) -> Result<crate::BayesCounts, StoreError>;
    fn ngram_load(&self, tenant: i64) -> Result<Option<(i64, Vec<u8>)>, StoreError>;
    fn senders_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, i64, u64)>, StoreError>;
    // The mail path's own tables.
    fn write_trace(&self, records: &[TraceRecord]) -> Result<(), StoreError>;
    fn trace_purge(&self, cutoffs: &[(i64, i64)], others: i64) -> Result<Vec<(i64, u64)>, StoreError>;
    fn quarantine_insert(&self, item: &QuarantineItem) -> Result<(), StoreError>;
    fn quarantine_get(&self, id: &str) -> Result<QuarantineItem, StoreError>;
    fn quarantine_remove(&self, id: &str) -> Result<(), StoreError>;
    fn quarantine_expired(&self, now: i64, limit: i64) -> Result<Vec<QuarantineItem>, StoreError>;
    fn quarantine_received_between(&self, from: i64, to: i64, limit: i64) -> Result<Vec<QuarantineItem>, StoreError>;
    fn node_beat(&self, n: &NodeInfo) -> Result<(), StoreError>;
    fn is_first_up(&self, node: &str) -> bool;
    fn meta_get(&self, key: &str) -> Result<i64, StoreError>;
    fn meta_set(&self, key: &str, value: i64) -> Result<(), StoreError>;
    // TLS reporting: session counts and report claims.
    fn tls_sessions_add(&self, rows: &[(crate::tls_report::SessionKey, u64)]) -> Result<(), StoreError>;
    fn tls_sessions_prune(&self, day: i64) -> Result<u64, StoreError>;
    fn tls_sessions_reportable(&self, day: i64, domain: &str) -> Result<Vec<(crate::tls_report::SessionKey, u64)>, StoreError>;
    fn tls_reports_due(&self, today: i64, limit: i64) -> Result<Vec<(i64, String)>, StoreError>;
    fn tls_report_claim(&self, day: i64, domain: &str, node: &str) -> Result<bool, StoreError>;
    fn tls_report_outcome(&self, day: i64, domain: &str, outcome: &str) -> Result<(), StoreError>;
    // Detection, alerts and its own audit records.
    fn alerts_after(&self, after: i64) -> Result<Vec<Alert>, StoreError>;
    fn alert_raise(&self, a: &NewAlert<'_>) -> Result<i64, StoreError>;
    fn record(&self, r: &NewRecord<'_>) -> Result<i64, StoreError>;
    fn detect_note_n(&self, e: &crate::DetectEvent<'_>, n: usize, window: std::time::Duration, trigger: crate::Trigger, now_ms: i64) -> Result<Option<crate::WindowCount>, StoreError>;
    fn detect_throttle(&self, kind: &str, scope: &str, until_ms: i64) -> Result<(), StoreError>;
    fn detect_throttled(&self, kind: &str, scope: &str, now_ms: i64) -> Result<Option<i64>, StoreError>;
}

impl MailStore {
    /// Closes the connections.
    pub async fn close(&self) {
        self.0.close().await
    }
}
