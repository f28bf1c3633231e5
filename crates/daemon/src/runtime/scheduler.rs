//! The scheduler: when to sweep, and what to do when the operator acts.
//!
//! It wakes at the earliest of: the next `schedule` tick, the policy's next transition (a window
//! opening or closing, a grace ending, a known execution passing a timeout), the next escalation
//! deadline, and at once after a good reload or a change to the database made by someone else
//! (`stopd exempt`, `stopd freeze`). It never naps longer than [`MAX_NAP`] and re-reads the
//! clock on every wake, so a suspend or a clock jump is noticed within seconds and a missed tick
//! sweeps at once. A failed sweep is retried with exponential backoff capped at the schedule's
//! next interval, never in a loop. One sweep runs at a time, as a task the loop watches while it
//! keeps answering events and the watchdog.
//!
//! Everything outside comes in through [`Event`]s and the [`Sweeps`] trait, and time through a
//! [`Clock`](crate::clock::Clock), so the loop is tested under `tokio::time::pause` without signals, AWS or waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use sd_notify::NotifyState;
use stopd_audit::SweepTrigger;
use stopd_rules::Policy;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;

use crate::config::{self, Config};
use crate::runtime::sweep::{self, SweepSummary};

/// Longest single sleep: bounds how late a suspend or wall-clock jump is noticed.
pub const MAX_NAP: Duration = Duration::from_secs(5);
/// First wait after a failed sweep; doubles per consecutive failure, up to the schedule's
/// next interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// A boxed future, for the [`Sweeps`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the loop reacts to besides time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: read the policy file again.
    Reload,
    /// SIGTERM or SIGINT (named): drain and stop.
    Shutdown(&'static str),
    /// Someone else changed the audit database (an exemption or ad-hoc freeze was added or
    /// lifted): decide again now.
    DatabaseChanged,
    /// This node took the lease (PostgreSQL) at this epoch: reconcile what earlier epochs left
    /// pending, and sweep at once.
    Leading(i64),
    /// This node lost the lease (or could not renew it in time): start no sweep and no call.
    Standby,
}

/// What the loop needs from the world: sweeps, and a way to apply a new configuration.
pub trait Sweeps: Send + Sync {
    /// Runs one sweep (as a task of its own).
    fn sweep(
        &self,
        policy: Arc<Policy>,
        trigger: SweepTrigger,
        dry_run: bool,
    ) -> BoxFuture<'static, Result<SweepSummary>>;

    /// Applies what changed between `old` and `new` that the sweeps use (the client, the
    /// concurrency, the deadlines); returns the names of settings it could not apply.
    fn reconfigure<'a>(
        &'a mut self,
        old: &'a Config,
        new: &'a Config,
    ) -> BoxFuture<'a, Vec<String>>;

    /// Records a reload in the audit log: `Ok` with the hash of the policy now in force (and
    /// `note`, what of it is not enforced: rules whose calendar cannot be read), or `Err` with
    /// why it was refused. Recording nothing is the default (tests).
    fn reloaded(
        &self,
        _at: DateTime<Utc>,
        _result: Result<Option<String>, String>,
        _note: Option<String>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// This node took the lease at `epoch` (PostgreSQL): set up for a new term (fresh cancel
    /// tokens, pending intents and gates of earlier epochs reconciled, notifications
    /// delivered). Whether the term is live once set up: `false` when it ended first (the
    /// lease lost meanwhile; `Standby` follows), and the scheduler then does not lead. Nothing
    /// to do by default (SQLite: always the leader).
    fn lead<'a>(&'a mut self, _cfg: &'a Config, _epoch: i64) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    /// This node no longer leads: in-flight calls are cut short, no new one starts, deliveries
    /// stop. Nothing by default.
    fn step_down(&mut self) {}

    /// The accounts and regions enforced now, `(account, region)`: a reload that adds some
    /// creates their metrics at 0. None by default (tests).
    fn places(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Begins a shutdown: no new stop starts.
    fn drain(&self);

    /// The shutdown bound passed: in-flight API calls are cut short.
    fn cut_short(&self);
}

/// Why the loop woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Tick,
    Edge,
    Retry,
}

/// The scheduler's state.
pub struct Scheduler<S: Sweeps> {
    /// The configuration in force.
    pub cfg: Arc<Config>,
    /// Makes sweeps.
    pub sweeps: S,
    /// Time.
    pub clock: SharedClock,
    /// `run --dry-run`.
    pub dry_run_flag: bool,
    /// The next schedule tick.
    next_tick: Option<DateTime<Utc>>,
    /// InProgress executions of the last sweep that saw the fleet, for timeout deadlines.
    known: Vec<stopd_core::ActiveExecution>,
    /// The next escalation deadline.
    next_escalation: Option<DateTime<Utc>>,
    /// When the first exemption in force at the last sweep ends (as an edge: what it held
    /// back is stopped then).
    next_exemption_end: Option<DateTime<Utc>>,
    /// The next transition of a Change Calendar (its `NextTransitionTime`).
    next_calendar_transition: Option<DateTime<Utc>>,
    /// The instant the last sweep that decided anything decided at.
    last_decided: Option<DateTime<Utc>>,
    /// The policy that sweep decided by (with the ad-hoc freezes then in force), for edges.
    last_policy: Option<Arc<Policy>>,
    /// Sweep as soon as none is running, for this reason (a reload, a database change).
    sweep_now: Option<SweepTrigger>,
    /// Sweeps failed in a row.
    failures: u32,
    /// After a failure: no sweep before this instant.
    retry_at: Option<DateTime<Utc>>,
    /// `[metrics]`: told of every sweep and reload.
    pub metrics: Option<Arc<crate::runtime::metrics::Metrics>>,
    /// Whether this node sweeps: always on SQLite; on PostgreSQL while it holds the lease.
    pub leading: bool,
}

impl<S: Sweeps> std::fmt::Debug for Scheduler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("next_tick", &self.next_tick)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A shutdown, after in-flight stops finished or were cut short.
    Shutdown,
    /// Every event source is gone.
    NoMoreEvents,
}

pub(crate) fn notify(states: &[NotifyState<'_>]) {
    // Not under systemd (no NOTIFY_SOCKET) this does nothing.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

impl<S: Sweeps> Scheduler<S> {
    /// A scheduler; the first sweep runs as soon as [`Scheduler::run`] starts.
    pub fn new(cfg: Arc<Config>, sweeps: S, clock: SharedClock, dry_run_flag: bool) -> Self {
        Scheduler {
            cfg,
            sweeps,
            clock,
            dry_run_flag,
            next_tick: None,
            known: Vec::new(),
            next_escalation: None,
            next_exemption_end: None,
            next_calendar_transition: None,
            last_decided: None,
            last_policy: None,
            sweep_now: Some(SweepTrigger::Startup),
            failures: 0,
            retry_at: None,
            metrics: None,
            leading: true,
        }
    }

    /// A scheduler that does not lead yet (PostgreSQL): it sweeps once told
    /// [`Event::Leading`].
    pub fn standby(cfg: Arc<Config>, sweeps: S, clock: SharedClock, dry_run_flag: bool) -> Self {
        let mut s = Scheduler::new(cfg, sweeps, clock, dry_run_flag);
        s.leading = false;
        s.sweep_now = None;
        s
    }

    fn dry_run(&self) -> bool {
        self.dry_run_flag || self.cfg.daemon.dry_run
    }

    /// The backoff's cap: the schedule's next interval after `now`
    /// ([`config::DaemonSettings::next_interval`]).
    fn interval(&self, now: DateTime<Utc>) -> Duration {
        self.cfg
            .daemon
            .next_interval(now)
            .to_std()
            .unwrap_or(Duration::from_secs(30))
    }

    fn next_wake(&self, now: DateTime<Utc>) -> (DateTime<Utc>, Wake) {
        let facts = sweep::facts(&self.known);
        // The first transition after the instant the last sweep decided at: if it is already
        // past, the decision may be stale and a sweep is due now.
        let since = self.last_decided.unwrap_or(now);
        let policy = self.last_policy.as_ref().unwrap_or(&self.cfg.policy);
        let edge = policy.next_transition(since, &facts);
        let edge = [
            edge,
            self.next_escalation,
            self.next_exemption_end,
            self.next_calendar_transition,
        ]
        .into_iter()
        .flatten()
        .min();
        let (at, why) = match (self.next_tick, edge) {
            (Some(t), Some(e)) if e < t => (e, Wake::Edge),
            (Some(t), _) => (t, Wake::Tick),
            (None, Some(e)) => (e, Wake::Edge),
            (None, None) => (now + chrono::Duration::days(1), Wake::Tick),
        };
        match self.retry_at {
            Some(r) if r > at => (r, Wake::Retry),
            _ => (at, why),
        }
    }

    fn spawn_sweep(&self, trigger: SweepTrigger) -> JoinHandle<Result<SweepSummary>> {
        tokio::spawn(
            self.sweeps
                .sweep(Arc::clone(&self.cfg.policy), trigger, self.dry_run()),
        )
    }

    /// Takes in a sweep's result: what it saw, and whether it failed (then back off).
    fn after_sweep(&mut self, joined: Result<Result<SweepSummary>, tokio::task::JoinError>) {
        let now = self.clock.now();
        if let Some(m) = &self.metrics {
            let summary = joined.as_ref().ok().and_then(|r| r.as_ref().ok());
            m.after_sweep(summary, summary.map(|s| s.duration).unwrap_or_default());
        }
        let failure = match joined {
            Ok(Ok(summary)) => {
                if !summary.blind {
                    self.known = summary.in_progress.clone();
                    self.last_decided = Some(summary.decided_at);
                    self.last_policy.clone_from(&summary.policy);
                }
                self.next_escalation = summary.next_escalation;
                self.next_exemption_end = summary.next_exemption_end;
                self.next_calendar_transition = summary.next_calendar_transition;
                let line = summary.status_line();
                notify(&[NotifyState::Status(&line)]);
                // An interrupted sweep (a clean shutdown cut it short) is no failure.
                if summary.ok() || summary.interrupted() {
                    tracing::info!(sweep = summary.sweep_id, "{line}");
                    None
                } else {
                    Some(format!("sweep {}: {line}", summary.sweep_id))
                }
            }
            Ok(Err(e)) => Some(format!("sweep failed: {e:#}")),
            Err(e) => Some(format!("sweep task failed: {e}")),
        };
        match failure {
            None => {
                self.failures = 0;
                self.retry_at = None;
            }
            Some(text) => {
                self.failures = self.failures.saturating_add(1);
                let cap = self.interval(now);
                let wait = FIRST_RETRY
                    .saturating_mul(1u32 << (self.failures - 1).min(20))
                    .min(cap);
                self.retry_at = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                tracing::error!(
                    failures = self.failures,
                    retry_in = %humantime::format_duration(wait),
                    "{text}; next try in {}",
                    humantime::format_duration(wait)
                );
                notify(&[NotifyState::Status(&format!(
                    "FAILING ({} in a row, next try in {}): {text}",
                    self.failures,
                    humantime::format_duration(wait)
                ))]);
            }
        }
    }

    /// SIGHUP: a good file replaces the policy and is enforced at once; a bad one is logged
    /// and the last good policy stays in force. A calendar that cannot be read does not make
    /// the file bad: its rule is set aside (it stops nothing, never guessed from the last good
    /// windows) and each sweep fails naming it until the file is fixed.
    async fn reload(&mut self) {
        notify(&[
            NotifyState::Reloading,
            NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
        ]);
        match config::load_for_run(&self.cfg.path) {
            Ok(mut new) => {
                if new.daemon.database != self.cfg.daemon.database {
                    tracing::warn!(
                        old = %self.cfg.daemon.database,
                        new = %new.daemon.database,
                        "[daemon] database cannot change while running: the new one takes effect at the next restart"
                    );
                    new.daemon.database = self.cfg.daemon.database.clone();
                }
                if new.ha != self.cfg.ha {
                    tracing::warn!(
                        "[ha] cannot change while running: the new node name or lease takes effect at the next restart"
                    );
                    new.ha.clone_from(&self.cfg.ha);
                }
                new.static_credentials
                    .clone_from(&self.cfg.static_credentials);
                let old = Arc::clone(&self.cfg);
                for ignored in self.sweeps.reconfigure(&old, &new).await {
                    tracing::warn!(
                        setting = %ignored,
                        "{ignored} cannot change while running: it takes effect at the next restart"
                    );
                }
                for w in &new.warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!(path = %new.path.display(), rules = new.policy.rules().len(), "policy reloaded; sweeping now");
                self.next_tick = new
                    .daemon
                    .schedule
                    .next_after(self.clock.now(), chrono_tz::UTC);
                if let Some(m) = &self.metrics {
                    m.after_reload(Some((&new.policy, &new.daemon)));
                    // Accounts and regions a reload added start at 0, as at start.
                    let places = self.sweeps.places();
                    m.start_places(places.iter().map(|(a, r)| (a.as_str(), r.as_str())));
                }
                self.cfg = Arc::new(new);
                self.last_policy = None;
                let hash = Some(self.cfg.policy_hash.clone());
                // In force, with the rules whose calendar cannot be read set aside: `ok`, and
                // the detail names them (each sweep fails naming them too).
                let set_aside: Vec<String> = self
                    .cfg
                    .policy
                    .unreadable()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let note = (!set_aside.is_empty()).then(|| set_aside.join("; "));
                self.sweeps.reloaded(self.clock.now(), Ok(hash), note).await;
                // A good reload is enforced at once, not at the next tick.
                self.sweep_now = Some(SweepTrigger::Reload);
                self.retry_at = None;
            }
            Err(e) => {
                if let Some(m) = &self.metrics {
                    m.after_reload(None);
                }
                tracing::error!("reload refused, the previous policy stays in force:\n{e}");
                self.sweeps
                    .reloaded(self.clock.now(), Err(e.to_string()), None)
                    .await;
            }
        }
        notify(&[NotifyState::Ready]);
    }

    /// Runs until a shutdown (or until `events` closes). The first sweep starts at once.
    pub async fn run(&mut self, mut events: mpsc::UnboundedReceiver<Event>) -> Ended {
        let watchdog = watchdog_interval();
        let mut watchdog_timer =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        watchdog_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running: Option<JoinHandle<Result<SweepSummary>>> = None;
        let mut shutting_down = false;
        let mut shutdown_deadline: Option<tokio::time::Instant> = None;
        let mut events_open = true;
        // Memory is given back twice after a sweep: when it ends, and once its idle
        // connections have closed (their buffers are freed then, `IDLE_TIMEOUT` after their
        // last call and within as much again).
        let mut release_at: Option<tokio::time::Instant> = None;
        loop {
            let now = self.clock.now();
            if self.next_tick.is_none() {
                self.next_tick = self.cfg.daemon.schedule.next_after(now, chrono_tz::UTC);
            }
            if running.is_none() && !shutting_down && self.leading {
                if let Some(trigger) = self.sweep_now.take() {
                    running = Some(self.spawn_sweep(trigger));
                    continue;
                }
                let (target, why) = self.next_wake(now);
                if target <= now {
                    let trigger = match why {
                        Wake::Tick if now - target > chrono::Duration::seconds(2) => {
                            SweepTrigger::CatchUp
                        }
                        Wake::Tick => SweepTrigger::Schedule,
                        Wake::Edge => SweepTrigger::Edge,
                        Wake::Retry => SweepTrigger::Retry,
                    };
                    if self.next_tick.is_some_and(|t| t <= now) {
                        self.next_tick = self.cfg.daemon.schedule.next_after(now, chrono_tz::UTC);
                    }
                    running = Some(self.spawn_sweep(trigger));
                    continue;
                }
            }
            let (target, why) = self.next_wake(now);
            // A standby sweeps nothing: it naps until an event (it is told when it leads).
            let nap = if self.leading {
                (target - now).to_std().unwrap_or_default().min(MAX_NAP)
            } else {
                self.next_tick = None;
                MAX_NAP
            };
            tracing::debug!(next = %target, why = ?why, nap_ms = nap.as_millis() as u64, sweeping = running.is_some(), "scheduler");
            let shutdown_bound = async {
                match shutdown_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                    running = None;
                    self.after_sweep(joined);
                    // The sweep's buffers are freed: give their pages back while idle.
                    crate::runtime::memory::release_free_memory();
                    release_at = Some(
                        tokio::time::Instant::now()
                            + 2 * stopd_core::IDLE_TIMEOUT
                            + Duration::from_millis(500),
                    );
                    if shutting_down {
                        return Ended::Shutdown;
                    }
                }
                () = tokio::time::sleep(nap), if running.is_none() && !shutting_down => {}
                () = async { tokio::time::sleep_until(release_at.expect("guarded")).await },
                    if release_at.is_some() && running.is_none() =>
                {
                    release_at = None;
                    crate::runtime::memory::release_free_memory();
                }
                _ = watchdog_timer.tick() => {
                    if watchdog.is_some() {
                        notify(&[NotifyState::Watchdog]);
                    }
                }
                event = events.recv(), if events_open => match event {
                    Some(Event::Reload) => self.reload().await,
                    Some(Event::DatabaseChanged) => {
                        if self.leading {
                            tracing::info!("the database changed (an exemption or freeze was added or lifted); sweeping now");
                            self.sweep_now = Some(SweepTrigger::DatabaseChanged);
                        }
                    }
                    Some(Event::Leading(epoch)) if !shutting_down => {
                        let cfg = Arc::clone(&self.cfg);
                        // A term that ended before it was set up leads nothing (no sweep with
                        // its cancelled engines, no leader metric): `Standby` comes next.
                        self.leading = self.sweeps.lead(&cfg, epoch).await;
                        self.sweep_now = None;
                        if self.leading {
                            self.failures = 0;
                            self.retry_at = None;
                            // What the last term knew may be stale: decide from a fresh sweep.
                            self.last_decided = None;
                            self.sweep_now = Some(SweepTrigger::Takeover);
                        }
                        if let Some(m) = &self.metrics {
                            m.set_leading(self.leading.then_some(epoch));
                        }
                    }
                    Some(Event::Leading(_)) => {}
                    Some(Event::Standby) => {
                        self.leading = false;
                        self.sweep_now = None;
                        self.sweeps.step_down();
                        if let Some(m) = &self.metrics {
                            m.set_leading(None);
                        }
                    }
                    Some(Event::Shutdown(signal)) => {
                        if !shutting_down {
                            shutting_down = true;
                            let bound = self.cfg.daemon.shutdown_timeout;
                            begin_shutdown(signal, bound);
                            self.sweeps.drain();
                            shutdown_deadline = Some(tokio::time::Instant::now() + bound);
                        }
                        if running.is_none() {
                            return Ended::Shutdown;
                        }
                    }
                    None => {
                        events_open = false;
                        if running.is_none() && shutting_down {
                            return Ended::NoMoreEvents;
                        }
                    }
                },
                () = shutdown_bound => {
                    tracing::warn!("shutdown bound reached: cutting in-flight stops short; their outcomes are recorded as failed");
                    self.sweeps.cut_short();
                    shutdown_deadline = None;
                }
            }
        }
    }
}

/// Says that a shutdown began.
pub fn begin_shutdown(signal: &str, bound: Duration) {
    tracing::info!(
        signal,
        bound = %humantime::format_duration(bound),
        "shutting down: no new stops; in-flight stops finish and are recorded"
    );
    notify(&[NotifyState::Stopping]);
}

#[cfg(test)]
mod tests;
