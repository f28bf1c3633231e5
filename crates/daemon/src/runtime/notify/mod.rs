//! `[[notify]]`: webhooks people see (JSON records or Slack text), delivered at least once.
//!
//! **The audit log is the outbox.** Every event comes from a row that is committed before it is
//! sent: a stop's outcome (`stopped`, `failed`), a gate's outcome (`gate`), an exemption added
//! or revoked (`exemption`), a sweep result that turned the daemon from good to failing
//! (`sweep_failed`), a freeze window that a start found had begun while no daemon was running
//! (`unwatched`: an `unwatched_windows` row, written with that start), a node taking the lead
//! (`leader_changed`: a `leader_acquired` lifecycle event), the event queue found unreadable
//! (`events_failed`: the lifecycle event of that name, recorded once an outage). A delivery task per target reads the rows it has not received yet
//! (`notify_delivered`), oldest first, posts each one, and records it received only after the
//! receiver answered 2xx. So a notification is "written in the same transaction as the record
//! that causes it" in the strongest sense (it is that record), a kill -9 between a stop and its
//! delivery only delays it, and the sweep's path gains no write and no wait: **a receiver that
//! is down never slows a sweep** (its task backs off, 1 s doubling to a minute).
//!
//! A target first seen starts at that instant (`notify_targets.since`): configuring a webhook
//! does not replay the log's history into a channel. Secrets: the URL comes from `url`,
//! `url_file` or `url_env`, and is never printed (its `Debug` is redacted; errors name the
//! target, not the URL).
//!
//! The spec types (`Target`, `EventKind`, `Format`) are [`crate::config`]'s; this module words
//! the records as events ([`message`]) and delivers them ([`delivery`]).

pub mod delivery;
pub mod message;
#[cfg(test)]
mod tests;

pub use delivery::{Backoff, SHUTDOWN_BOUND, deliver, drain, register, spawn};
pub use message::{Event, UnwatchedFacts, undelivered};
