//! `[metrics]`: OpenMetrics at `/metrics` and liveness at `/healthz`, on a loopback listener by
//! default.
//!
//! The scheduler feeds [`Metrics`] after every sweep and reload ([`Metrics::after_sweep`],
//! [`Metrics::after_reload`]); what lives in the audit database (exemptions active, pending
//! escalations) is read at scrape time through a read-only connection of its own, so a scrape
//! never queues behind the writer. Labels are bounded: rule names, outcomes, results and API
//! operations, never a pipeline name or an execution id.
//!
//! `/healthz` answers 200 while a sweep succeeded within three schedule intervals and a policy
//! is loaded, else 503 with the reason: the same rule as `stopd status`
//! ([`crate::config::DaemonSettings::stale_after`]).
//!
//! Metrics take their slice of the configuration (the policy, and the `[daemon]` settings whose
//! schedule judges staleness) and a clock; the listener is in `http.rs`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stopd_core::Outcome;
use stopd_rules::Policy;

use crate::clock::SharedClock;
use crate::config::DaemonSettings;
use crate::runtime::sweep::SweepSummary;
use stopd_audit::Store;

pub mod events;
mod http;
#[cfg(test)]
mod tests;

pub use http::{bind, serve};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StopLabels {
    rule: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaceLabels {
    account: String,
    region: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaceResultLabels {
    account: String,
    region: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaceOutcomeLabels {
    account: String,
    region: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Every value of `stopd_sweeps_total{result}` (and the per-account sweeps).
pub const SWEEP_RESULTS: [&str; 3] = ["ok", "failed", "interrupted"];

/// Every outcome a stop is counted with: the engine's, and `dry_run` (decided, never sent).
const STOP_OUTCOMES: [&str; 7] = [
    stop_outcome(Outcome::Stopped),
    stop_outcome(Outcome::AlreadyStopping),
    stop_outcome(Outcome::NotStoppable),
    stop_outcome(Outcome::PipelineNotFound),
    stop_outcome(Outcome::Rejected),
    stop_outcome(Outcome::Failed),
    "dry_run",
];

/// An outcome's name; exhaustive, so that an outcome the engine gains is a compile error until
/// [`STOP_OUTCOMES`] has it.
const fn stop_outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Stopped => "stopped",
        Outcome::AlreadyStopping => "already_stopping",
        Outcome::NotStoppable => "not_stoppable",
        Outcome::PipelineNotFound => "pipeline_not_found",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    }
}

/// What `/healthz` judges by.
#[derive(Debug, Default)]
struct Health {
    /// When the last good sweep ended.
    last_success: Option<DateTime<Utc>>,
    /// The policy in force (the file's; ad-hoc freezes are read at scrape time).
    policy: Option<Arc<Policy>>,
    /// Sweeps are stale after this long without a good one.
    stale_after: Duration,
    /// PostgreSQL: this node's leadership (a standby is healthy while it can reach the
    /// database; the leader as a lone daemon is).
    leadership: Option<Arc<crate::runtime::leadership::Leadership>>,
}

/// The daemon's metrics and health.
#[derive(Debug)]
pub struct Metrics {
    /// Everything below, for encoding.
    registry: Registry,
    /// `stopd_stops_total{rule,outcome}`.
    stops: Family<StopLabels, Counter>,
    /// `stopd_sweeps_total{result}`: `ok`, `failed` or `interrupted` (a clean shutdown cut it
    /// short).
    sweeps: Family<ResultLabel, Counter>,
    /// `stopd_sweep_duration_seconds`.
    sweep_duration: Histogram,
    /// `stopd_last_sweep_success_timestamp_seconds`.
    last_success: Gauge<f64, AtomicU64>,
    /// `stopd_api_calls_total{operation,result}`: `answered` or `throttled`.
    api_calls: Family<CallLabels, Counter>,
    /// `stopd_throttles_total{operation}`.
    throttles: Family<OperationLabel, Counter>,
    /// `stopd_freezes_in_force`: freeze rules (ad-hoc ones included) whose window is open.
    freezes_in_force: Gauge,
    /// `stopd_gates_closed`: transitions stopd holds closed.
    gates_closed: Gauge,
    /// `stopd_exemptions_active` (policy and break-glass).
    exemptions_active: Gauge,
    /// `stopd_pending_escalations`: finish stops waiting for their escalation deadline.
    pending_escalations: Gauge,
    /// `stopd_policy_reloads_total{result}`: `ok` or `refused`.
    reloads: Family<ResultLabel, Counter>,
    /// `stopd_account_sweeps_total{account,region,result}`: each account and region's part.
    place_sweeps: Family<PlaceResultLabels, Counter>,
    /// `stopd_account_last_sweep_success_timestamp_seconds{account,region}`.
    place_last_success: Family<PlaceLabels, Gauge<f64, AtomicU64>>,
    /// `stopd_account_stops_total{account,region,outcome}`.
    place_stops: Family<PlaceOutcomeLabels, Counter>,
    /// `stopd_leader`: 1 on the leader, 0 on a standby (registered on PostgreSQL only).
    leader: Gauge,
    /// `stopd_leader_epoch`: the lease's epoch as this node last saw it.
    leader_epoch: Gauge,
    /// The event consumer's (with `[events]`: [`Metrics::with_events`]).
    pub events: events::EventMetrics,
    /// For `/healthz`.
    health: Mutex<Health>,
    /// Now, the scheduler's clock.
    clock: SharedClock,
}

impl Metrics {
    /// Metrics for a daemon enforcing `policy` on the schedule of `daemon`.
    pub fn new(policy: &Arc<Policy>, daemon: &DaemonSettings, clock: SharedClock) -> Metrics {
        let mut registry = Registry::default();
        let stops = Family::<StopLabels, Counter>::default();
        registry.register(
            "stopd_stops",
            "Stops decided, by winning rule and outcome",
            stops.clone(),
        );
        let sweeps = Family::<ResultLabel, Counter>::default();
        registry.register("stopd_sweeps", "Sweeps, by result", sweeps.clone());
        // 50 ms .. about 100 s.
        let sweep_duration = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "stopd_sweep_duration_seconds",
            "How long sweeps take",
            sweep_duration.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "stopd_last_sweep_success_timestamp_seconds",
            "Unix time at which the last good sweep ended",
            last_success.clone(),
        );
        let api_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "stopd_api_calls",
            "CodePipeline requests, by operation and result (answered or throttled)",
            api_calls.clone(),
        );
        let throttles = Family::<OperationLabel, Counter>::default();
        registry.register(
            "stopd_throttles",
            "ThrottlingException answers, by operation",
            throttles.clone(),
        );
        let freezes_in_force = Gauge::default();
        registry.register(
            "stopd_freezes_in_force",
            "Freeze rules whose window is open (ad-hoc freezes included)",
            freezes_in_force.clone(),
        );
        let gates_closed = Gauge::default();
        registry.register(
            "stopd_gates_closed",
            "Stage transitions stopd holds closed",
            gates_closed.clone(),
        );
        let exemptions_active = Gauge::default();
        registry.register(
            "stopd_exemptions_active",
            "Exemptions in force (policy and break-glass)",
            exemptions_active.clone(),
        );
        let pending_escalations = Gauge::default();
        registry.register(
            "stopd_pending_escalations",
            "Stop-and-wait stops that will be escalated to abandon if still stopping",
            pending_escalations.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "stopd_policy_reloads",
            "Policy reloads, by result (ok or refused)",
            reloads.clone(),
        );
        // Per account and region (names from [[account]]: bounded, never pipeline names).
        let place_sweeps = Family::<PlaceResultLabels, Counter>::default();
        registry.register(
            "stopd_account_sweeps",
            "Each account and region's part of a sweep, by result (ok or failed)",
            place_sweeps.clone(),
        );
        let place_last_success = Family::<PlaceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "stopd_account_last_sweep_success_timestamp_seconds",
            "Unix time at which the last good sweep of an account and region ended",
            place_last_success.clone(),
        );
        let place_stops = Family::<PlaceOutcomeLabels, Counter>::default();
        registry.register(
            "stopd_account_stops",
            "Stops decided, by account, region and outcome",
            place_stops.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        registry.register("stopd_build_info", "stopd's version", build_info.clone());
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let now = clock.now();
        let m = Metrics {
            registry,
            stops,
            sweeps,
            sweep_duration,
            last_success,
            api_calls,
            throttles,
            freezes_in_force,
            gates_closed,
            exemptions_active,
            pending_escalations,
            reloads,
            place_sweeps,
            place_last_success,
            place_stops,
            leader: Gauge::default(),
            leader_epoch: Gauge::default(),
            events: events::EventMetrics::default(),
            health: Mutex::new(Health {
                leadership: None,
                last_success: None,
                policy: Some(Arc::clone(policy)),
                stale_after: daemon.stale_after(now),
            }),
            clock,
        };
        m.start_at_zero(policy);
        m
    }

    /// On PostgreSQL: `stopd_leader` and `stopd_leader_epoch`, and `/healthz` judged by this
    /// node's role (before the metrics are shared).
    #[must_use]
    pub fn with_leadership(
        mut self,
        leadership: Arc<crate::runtime::leadership::Leadership>,
    ) -> Self {
        self.registry.register(
            "stopd_leader",
            "1 on the node that leads (holds the lease), 0 on a standby",
            self.leader.clone(),
        );
        self.registry.register(
            "stopd_leader_epoch",
            "The leader's lease epoch, as this node last saw it",
            self.leader_epoch.clone(),
        );
        self.health().leadership = Some(leadership);
        self
    }

    /// Told when this node takes the lease (`Some(epoch)`) or loses it.
    pub fn set_leading(&self, epoch: Option<i64>) {
        self.leader.set(i64::from(epoch.is_some()));
        if let Some(e) = epoch {
            self.leader_epoch.set(e);
        }
    }

    /// Creates every series of a closed label vocabulary at 0 (the policy's rules by every
    /// stop outcome, sweep and reload results, every operation's results): a series that
    /// first appears at 1 has no increase for `increase()` to see, so an alert on it could
    /// never fire on the first failure. Idempotent; a reload adds the new rules' series.
    fn start_at_zero(&self, policy: &Policy) {
        for rule in policy.rules() {
            for outcome in STOP_OUTCOMES {
                let _ = self.stops.get_or_create(&StopLabels {
                    rule: rule.name.clone(),
                    outcome: outcome.into(),
                });
            }
        }
        for result in SWEEP_RESULTS {
            let _ = self.sweeps.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "refused"] {
            let _ = self.reloads.get_or_create(&ResultLabel { result });
        }
        for operation in stopd_core::OPERATIONS {
            for result in ["answered", "throttled"] {
                let _ = self
                    .api_calls
                    .get_or_create(&CallLabels { operation, result });
            }
            let _ = self.throttles.get_or_create(&OperationLabel { operation });
        }
    }

    /// Creates the series of each account and region enforced (`(account, region)`) at 0: its
    /// sweep results and its stop outcomes.
    pub fn start_places<'a>(&self, places: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (account, region) in places {
            for result in SWEEP_RESULTS {
                let _ = self.place_sweeps.get_or_create(&PlaceResultLabels {
                    account: account.into(),
                    region: region.into(),
                    result,
                });
            }
            for outcome in STOP_OUTCOMES {
                let _ = self.place_stops.get_or_create(&PlaceOutcomeLabels {
                    account: account.into(),
                    region: region.into(),
                    outcome: outcome.into(),
                });
            }
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one sweep: `None` when the sweep itself (or its task) failed.
    pub fn after_sweep(&self, summary: Option<&SweepSummary>, duration: Duration) {
        let now = self.clock.now();
        self.sweep_duration.observe(duration.as_secs_f64());
        let result = match summary {
            Some(s) if s.ok() => "ok",
            Some(s) if s.interrupted() => "interrupted",
            _ => "failed",
        };
        self.sweeps.get_or_create(&ResultLabel { result }).inc();
        let Some(s) = summary else { return };
        for d in &s.done {
            self.stops
                .get_or_create(&StopLabels {
                    rule: d.planned.rule.clone(),
                    outcome: d.outcome.to_string(),
                })
                .inc();
            self.place_stops
                .get_or_create(&PlaceOutcomeLabels {
                    account: d.account.clone(),
                    region: d.region.clone(),
                    outcome: d.outcome.to_string(),
                })
                .inc();
        }
        for p in &s.places {
            self.place_sweeps
                .get_or_create(&PlaceResultLabels {
                    account: p.account.clone(),
                    region: p.region.clone(),
                    result: match (p.ok, p.interrupted) {
                        (true, _) => "ok",
                        (false, true) => "interrupted",
                        (false, false) => "failed",
                    },
                })
                .inc();
            if p.ok {
                self.place_last_success
                    .get_or_create(&PlaceLabels {
                        account: p.account.clone(),
                        region: p.region.clone(),
                    })
                    .set(now.timestamp_millis() as f64 / 1e3);
            }
        }
        for (&op, &n) in &s.calls.requests {
            let throttled = s.calls.throttled.get(op).copied().unwrap_or(0);
            self.api_calls
                .get_or_create(&CallLabels {
                    operation: op,
                    result: "answered",
                })
                .inc_by(n.saturating_sub(throttled));
            if throttled > 0 {
                self.api_calls
                    .get_or_create(&CallLabels {
                        operation: op,
                        result: "throttled",
                    })
                    .inc_by(throttled);
                self.throttles
                    .get_or_create(&OperationLabel { operation: op })
                    .inc_by(throttled);
            }
        }
        self.gates_closed.set(s.gates_closed as i64);
        if let Some(policy) = &s.policy {
            self.freezes_in_force
                .set(policy.open_freezes(s.decided_at) as i64);
        }
        if result == "ok" {
            self.last_success.set(now.timestamp_millis() as f64 / 1e3);
            self.health().last_success = Some(now);
        }
    }

    /// Takes in a reload: the new policy and `[daemon]` settings, or `None` when the file was
    /// refused.
    pub fn after_reload(&self, new: Option<(&Arc<Policy>, &DaemonSettings)>) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if new.is_some() { "ok" } else { "refused" },
            })
            .inc();
        if let Some((policy, daemon)) = new {
            self.start_at_zero(policy);
            let stale_after = daemon.stale_after(self.clock.now());
            let mut h = self.health();
            h.policy = Some(Arc::clone(policy));
            h.stale_after = stale_after;
        }
    }

    /// With `[events]`: the consumer's series, and `/healthz` unhealthy while the queue
    /// cannot be read (before the metrics are shared).
    #[must_use]
    pub fn with_events(mut self) -> Self {
        self.events = events::EventMetrics::register(&mut self.registry);
        self
    }

    /// `/healthz`: `Ok` while healthy, else the reason.
    pub fn healthy(&self) -> Result<String, String> {
        let now = self.clock.now();
        if let Some(e) = self.events.problem() {
            return Err(format!("the event queue cannot be read: {e}"));
        }
        let h = self.health();
        if h.policy.is_none() {
            return Err("no policy loaded".into());
        }
        if let Some(l) = &h.leadership {
            let seen = l.seen();
            if let Some(e) = &seen.database_error {
                return Err(format!("the audit database cannot be reached: {e}"));
            }
            if seen.leading.is_none() {
                return Ok(match &seen.leader {
                    Some(leader) => {
                        format!("ok: standby; {leader} leads (epoch {})", seen.epoch)
                    }
                    None => "ok: standby; no node leads yet (taking the lease)".into(),
                });
            }
        }
        let limit = humantime::format_duration(h.stale_after);
        match h.last_success {
            None => Err(format!("no successful sweep yet (stale after {limit})")),
            Some(t) => {
                let age = (now - t).to_std().unwrap_or_default();
                let ago = humantime::format_duration(Duration::from_secs(age.as_secs()));
                if age <= h.stale_after {
                    Ok(format!("ok: last good sweep {ago} ago"))
                } else {
                    Err(format!(
                        "stale: the last good sweep ended {ago} ago, more than three schedule intervals ({limit})"
                    ))
                }
            }
        }
    }

    /// Reads what lives in the audit database (exemptions, escalations, ad-hoc freezes).
    pub(super) async fn refresh(&self, store: &Store) {
        let now = self.clock.now();
        let leadership = self.health().leadership.clone();
        if let Some(l) = leadership {
            let seen = l.seen();
            self.leader.set(i64::from(seen.leading.is_some()));
            self.leader_epoch.set(seen.epoch);
        }
        let policy = self.health().policy.clone();
        match crate::runtime::status::database_gauges(store, policy.as_deref(), now).await {
            Ok(g) => {
                self.exemptions_active.set(g.exemptions_active as i64);
                self.pending_escalations.set(g.pending_escalations as i64);
                if let Some(f) = g.freezes_in_force {
                    self.freezes_in_force.set(f as i64);
                }
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "metrics: cannot read the audit database")
            }
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
