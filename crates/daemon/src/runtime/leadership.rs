//! This node's leadership as the rest of the daemon sees it (`/metrics`, `/healthz`, the
//! campaign's own state): what it last read of the lease, and, while it leads, its deadline.
//! Kept apart from the campaign ([`crate::runtime::leader`]), which talks to the scheduler, so
//! that the metrics can read it without importing the scheduler's side.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::config::HaSettings;

/// What this node knows about leadership, as of its last look at the lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// This node's epoch while it leads.
    pub leading: Option<i64>,
    /// The epoch of the lease as last read (this node's or another's).
    pub epoch: i64,
    /// The node that holds the lease, if one does.
    pub leader: Option<String>,
    /// When the lease ends unless renewed, as last read.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Why the database could not be asked, while it cannot.
    pub database_error: Option<String>,
    /// When the lease as last read expires, by this node's monotonic clock (the database's
    /// time left, counted from the read): a standby looks again right then, not up to a third
    /// of a lease later.
    pub expires: Option<Instant>,
}

/// This node's leadership, shared by the campaign, the scheduler's sweeps and `/metrics`.
#[derive(Debug)]
pub struct Leadership {
    /// This node.
    pub node: String,
    /// The lease.
    pub lease: Duration,
    seen: Mutex<Seen>,
    /// While leading: no call may start after this instant unless the lease was renewed.
    deadline: Mutex<Option<Instant>>,
    /// The store whose calls the deadline bounds ([`stopd_audit::Store::may_call`]).
    store: std::sync::OnceLock<stopd_audit::Store>,
}

impl Leadership {
    /// A standby named `ha.node`.
    pub fn new(ha: &HaSettings) -> Arc<Leadership> {
        Arc::new(Leadership {
            node: ha.node.clone(),
            lease: ha.lease,
            seen: Mutex::default(),
            deadline: Mutex::default(),
            store: std::sync::OnceLock::new(),
        })
    }

    /// Bounds the calls made through `store` by this node's deadline.
    pub fn bind(&self, store: &stopd_audit::Store) {
        let _ = self.store.set(store.clone());
    }

    /// What this node knows now.
    pub fn seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets what this node knows (tests of what `/healthz` and `/metrics` show).
    #[cfg(test)]
    pub(crate) fn pretend(&self, seen: Seen) {
        self.update(|s| *s = seen);
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub(crate) fn set_deadline(&self, at: Option<Instant>) {
        if let Some(store) = self.store.get() {
            store.set_call_deadline(at);
        }
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The margin the leader keeps below its lease: a tenth of it, at least half a second.
    pub fn margin(&self) -> Duration {
        (self.lease / 10).max(Duration::from_millis(500))
    }
}
