//! This node's leadership as the rest of the daemon sees it (`/metrics`, `/healthz`, the
//! campaign's own state): what it last read of the lease, and, while it leads, its deadline.
//! Kept apart from the campaign ([`crate::runtime::leader`]), which talks to the scheduler, so
//! that the metrics can read it without importing the scheduler's side.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    /// While leading: the epoch of this term and its token, which the campaign cancels itself
    /// the moment the lease is lost (the term's engines, sweeps, consumer and deliveries are
    /// built on children of it), never through the scheduler's queue.
    term: Mutex<Option<(i64, CancellationToken)>>,
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
            term: Mutex::default(),
        })
    }

    /// Begins the term of `epoch` (the lease was just taken): a fresh token; a term still
    /// open is ended first.
    pub(crate) fn begin_term(&self, epoch: i64) {
        let mut term = self
            .term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, token)) = term.take() {
            token.cancel();
        }
        *term = Some((epoch, CancellationToken::new()));
    }

    /// Ends the term in force, if any: its token fires at once (in-flight calls of its
    /// engines are cut, its sweeps start no stop, its consumer and deliveries stop).
    pub(crate) fn end_term(&self) {
        let ended = self
            .term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((_, token)) = ended {
            token.cancel();
        }
    }

    /// The token of the term of `epoch`: the live one while that term lasts; an already
    /// cancelled one once it is over (lost, or followed by another before its work was set
    /// up), so that nothing built on it runs.
    pub fn term(&self, epoch: i64) -> CancellationToken {
        match &*self
            .term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((e, token)) if *e == epoch => token.clone(),
            _ => {
                let over = CancellationToken::new();
                over.cancel();
                over
            }
        }
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
