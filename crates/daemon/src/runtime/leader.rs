//! Leadership on PostgreSQL (DESIGN.md, "High availability (PostgreSQL)"): which of the
//! `stopd run` sharing one database sweeps, gates, escalates and delivers notifications.
//!
//! The campaign ([`spawn`]) is one task per node. Every lease/3 a standby tries to take the
//! lease (the database grants it only once it has expired: [`Store::acquire_lease`]); the leader
//! renews it. A leader keeps its own deadline by tokio's monotonic clock: the instant it sent
//! its last good renewal, plus the lease, minus a margin. The database sets the lease's end from
//! its own clock when the renewal reaches it, later than the send, so the deadline passes before
//! any standby can take over. When the deadline passes without a renewal (the database is
//! unreachable or slow), or a renewal finds the lease taken, the node steps down at once: the
//! store is fenced ([`Fence::Standby`]: no intent, outcome or gate action is written), the
//! term's token is cancelled by the campaign itself (`Leadership::end_term`: in-flight calls
//! are cut short, no stop starts, the consumer and deliveries stop, even while the scheduler
//! is busy with a takeover's setup or a reload), and the scheduler is told ([`Event::Standby`])
//! so that it starts no sweep. A standby that takes over begins a term (a fresh token), fences
//! the store to its new epoch, records `leader_acquired`, and tells the scheduler
//! ([`Event::Leading`]), which reconciles what earlier epochs left pending and sweeps at once.
//! The term's work writes and calls through a store handle of its epoch
//! ([`Store::for_term`]): after a quick lose-and-retake, a sweep of epoch N can neither write
//! nor call under epoch N + 1.
//!
//! The state a node shows (`/metrics`, `/healthz`, the `STATUS=` line) is [`Seen`].

use std::sync::Arc;
use std::time::Duration;

use stopd_audit::Store;
use stopd_audit::lease::Fence;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
pub use crate::runtime::leadership::{Leadership, Seen};
use crate::runtime::scheduler::{Event, notify};

/// Starts the campaign of `me` on `store` until `stop` fires. The scheduler hears each change
/// of role on `events`.
pub fn spawn(
    store: Store,
    me: Arc<Leadership>,
    events: mpsc::UnboundedSender<Event>,
    clock: SharedClock,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = me.lease / 3;
        let pid = std::process::id();
        loop {
            let next = match me.seen().leading {
                None => {
                    stand_by(&store, &me, pid, &events, &clock).await;
                    let soon = Instant::now() + every;
                    match me.seen().expires {
                        // Just after the holder's lease runs out (by the database's clock).
                        Some(at) if at > Instant::now() => soon.min(at + Duration::from_millis(20)),
                        _ => soon,
                    }
                }
                Some(epoch) => {
                    renew(&store, &me, epoch, &events, &clock).await;
                    // A failed renewal is tried again soon, before the deadline passes.
                    let soon = match me.seen().database_error {
                        Some(_) => Instant::now() + every.min(Duration::from_millis(500)),
                        None => Instant::now() + every,
                    };
                    match me.deadline() {
                        Some(d) if me.seen().leading.is_some() => soon.min(d),
                        _ => soon,
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
            }
        }
    })
}

/// A standby's look at the lease: takes it if it has expired.
async fn stand_by(
    store: &Store,
    me: &Leadership,
    pid: u32,
    events: &mpsc::UnboundedSender<Event>,
    clock: &SharedClock,
) {
    // A database that does not answer within a look's interval is said to be unreachable (the
    // pool would wait much longer for a connection).
    let asked = bounded(me, store.acquire_lease(&me.node, pid, me.lease)).await;
    match asked {
        Ok((Some(epoch), sent)) => {
            became_leader(store, me, epoch, sent, clock).await;
            let _ = events.send(Event::Leading(epoch));
        }
        Ok((None, _)) => {
            let was_down = me.seen().database_error.is_some();
            read_lease(store, me).await;
            let s = me.seen();
            if was_down && s.database_error.is_none() {
                tracing::info!(node = %me.node, "the audit database answers again");
            }
            if let Some(leader) = &s.leader {
                notify(&[sd_notify::NotifyState::Status(&format!(
                    "standby: {leader} leads (epoch {})",
                    s.epoch
                ))]);
            }
        }
        Err(e) => database_lost(me, &e),
    }
}

/// This node took the lease at `epoch` (asked at `sent`): fenced to its epoch, its deadline
/// set, `leader_acquired` recorded.
async fn became_leader(
    store: &Store,
    me: &Leadership,
    epoch: i64,
    sent: Instant,
    clock: &SharedClock,
) {
    me.set_deadline(Some(sent + me.lease - me.margin()));
    me.begin_term(epoch);
    store.set_fence(Fence::Leader {
        node: me.node.clone(),
        epoch,
    });
    me.update(|s| {
        s.leading = Some(epoch);
        s.epoch = epoch;
        s.leader = Some(me.node.clone());
        s.database_error = None;
    });
    read_lease(store, me).await;
    tracing::info!(node = %me.node, epoch, "this node leads now: sweeping at once");
    notify(&[sd_notify::NotifyState::Status(&format!(
        "leader (epoch {epoch}); sweeping"
    ))]);
    if let Err(e) = bounded(me, store.record_leader_acquired(clock.now(), epoch)).await {
        tracing::error!(error = %format!("{e:#}"), "cannot record leader_acquired in the audit log");
    }
}

/// Takes the lease now or says who holds it (`run --once`: it sweeps only as the leader).
pub async fn take(store: &Store, me: &Leadership, clock: &SharedClock) -> anyhow::Result<i64> {
    if let (Some(epoch), sent) = store
        .acquire_lease(&me.node, std::process::id(), me.lease)
        .await?
    {
        became_leader(store, me, epoch, sent, clock).await;
        return Ok(epoch);
    }
    let holder = store.lease().await?.map_or_else(
        || "another node".to_owned(),
        |l| {
            format!(
                "node {:?} (epoch {}, its lease ends {})",
                l.holder,
                l.epoch,
                stopd_audit::ts(l.expires_at())
            )
        },
    );
    anyhow::bail!(
        "{holder} leads on this database: `run --once` sweeps only as the leader (the leader sweeps on its schedule; stop it first to sweep from here)"
    )
}

/// Reads the lease into what this node shows.
async fn read_lease(store: &Store, me: &Leadership) {
    let asked = Instant::now();
    match bounded(me, store.lease()).await {
        Ok(lease) => me.update(|s| {
            s.database_error = None;
            if let Some(l) = lease {
                s.epoch = l.epoch;
                s.leader = l.held().then(|| l.holder.clone());
                s.lease_expires_at = Some(l.expires_at());
                let left = u64::try_from(l.expires_ms - l.now_ms).unwrap_or(0);
                s.expires = Some(asked + Duration::from_millis(left));
            }
        }),
        Err(e) => database_lost(me, &e),
    }
}

/// The database did not answer: said loudly (ERROR, the `STATUS=` line, `/healthz`) once
/// when it starts, and again when it answers.
fn database_lost(me: &Leadership, e: &anyhow::Error) {
    let text = format!("{e:#}");
    let first = me.seen().database_error.is_none();
    me.update(|s| s.database_error = Some(text.clone()));
    if first {
        tracing::error!(node = %me.node, error = %text, "the audit database cannot be reached; this node keeps trying");
    }
    notify(&[sd_notify::NotifyState::Status(&format!(
        "FAILING: the audit database cannot be reached: {text}"
    ))]);
}

/// The leader's renewal; steps down when the lease is lost or the deadline passes first.
async fn renew(
    store: &Store,
    me: &Leadership,
    epoch: i64,
    events: &mpsc::UnboundedSender<Event>,
    clock: &SharedClock,
) {
    let Some(deadline) = me.deadline() else {
        return step_down(store, me, epoch, "no deadline", events, clock).await;
    };
    match tokio::time::timeout_at(deadline, store.renew_lease(&me.node, epoch, me.lease)).await {
        Ok(Ok((true, sent))) => {
            me.set_deadline(Some(sent + me.lease - me.margin()));
            if me.seen().database_error.is_some() {
                tracing::info!(node = %me.node, "the audit database answers again");
            }
            read_lease(store, me).await;
        }
        Ok(Ok((false, _))) => {
            step_down(
                store,
                me,
                epoch,
                "another node took the lease over",
                events,
                clock,
            )
            .await;
        }
        Ok(Err(e)) => {
            database_lost(me, &e);
            if Instant::now() >= deadline {
                let why = "the lease could not be renewed in time";
                step_down(store, me, epoch, why, events, clock).await;
            }
        }
        Err(_) => {
            let why = "the lease could not be renewed in time (the database did not answer)";
            database_lost(
                me,
                &anyhow::anyhow!("no answer to the lease's renewal in time"),
            );
            step_down(store, me, epoch, why, events, clock).await;
        }
    }
}

/// Stops leading at once: fenced first (no intent, outcome or gate action can be written), then
/// the scheduler told; `leader_lost` is recorded if the database answers.
async fn step_down(
    store: &Store,
    me: &Leadership,
    epoch: i64,
    why: &str,
    events: &mpsc::UnboundedSender<Event>,
    clock: &SharedClock,
) {
    store.set_fence(Fence::Standby);
    me.set_deadline(None);
    // The term's work ends now, whatever the scheduler is busy with (a takeover's setup, a
    // reload): it would hear `Event::Standby` only when it next reads its queue.
    me.end_term();
    me.update(|s| s.leading = None);
    tracing::error!(node = %me.node, epoch, reason = why, "this node no longer leads: it starts no call and stands by");
    notify(&[sd_notify::NotifyState::Status(&format!(
        "standby: lost the lease of epoch {epoch} ({why})"
    ))]);
    let _ = events.send(Event::Standby);
    if let Err(e) = bounded(me, store.record_leader_lost(clock.now(), epoch, why)).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot record leader_lost in the audit log");
    }
}

/// `call`, given up after a third of the lease (an error saying so): a half-open connection
/// must not hold the campaign (a leader would never step down on time, a standby never take
/// over).
async fn bounded<T>(
    me: &Leadership,
    call: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let within = me.lease / 3;
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "no answer from the audit database within {}",
                humantime::format_duration(within)
            ))
        })
}

/// Gives up the lease at a clean stop, so a standby takes over at its next look.
pub async fn release(store: &Store, me: &Leadership, clock: &SharedClock) {
    let Some(epoch) = me.seen().leading else {
        return;
    };
    store.set_fence(Fence::Standby);
    me.set_deadline(None);
    me.end_term();
    me.update(|s| s.leading = None);
    if let Err(e) = store
        .record_leader_lost(clock.now(), epoch, "a clean stop")
        .await
    {
        tracing::warn!(error = %format!("{e:#}"), "cannot record leader_lost in the audit log");
    }
    match store.release_lease(&me.node, epoch).await {
        Ok(()) => {
            tracing::info!(node = %me.node, epoch, "gave up the lease: a standby takes over at its next look")
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot give up the lease; a standby takes over when it expires")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HaSettings;

    /// Losing the lease ends the term at once, by the campaign itself: its token fires and its
    /// store handle may call no more, though nobody reads the scheduler's queue (a scheduler
    /// busy with a takeover's setup or a reload hears `Event::Standby` only later).
    #[tokio::test]
    async fn losing_the_lease_ends_the_term_without_the_scheduler() {
        let Some(db) = stopd_audit::testdb::postgres().await else {
            return;
        };
        let store = Store::open(db.location()).await.unwrap();
        let other = Store::open(db.location()).await.unwrap();
        let me = Leadership::new(&HaSettings {
            node: "a".into(),
            lease: Duration::from_secs(3),
        });
        me.bind(&store);
        // The scheduler's queue, never read.
        let (events, _queue) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let campaign = spawn(
            store.clone(),
            Arc::clone(&me),
            events,
            crate::clock::system(),
            stop.clone(),
        );
        within("a leads", async {
            while me.seen().leading.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let epoch = me.seen().leading.unwrap();
        let term = me.term(epoch);
        let work = store.for_term(epoch);
        assert!(!term.is_cancelled());
        assert!(work.may_call());

        // Node b takes the lease over (a's lease ended behind its back).
        let long = Duration::from_secs(60);
        within("b takes over", async {
            loop {
                other.release_lease("a", epoch).await.unwrap();
                if other.acquire_lease("b", 2, long).await.unwrap().0.is_some() {
                    return;
                }
            }
        })
        .await;

        // a's next renewal finds it taken: the term ends, with nobody at the queue.
        within("the term ends", term.cancelled()).await;
        assert!(!work.may_call());
        assert!(me.term(epoch).is_cancelled(), "an ended term's token");
        assert_eq!(store.fence(), Fence::Standby);
        stop.cancel();
        campaign.await.unwrap();
    }

    /// Waits for `what` (a bound, not a timed assert: it only keeps a broken build from hanging).
    async fn within(what: &str, done: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(30), done)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
    }
}
