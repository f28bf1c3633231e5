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
//! ([`crate::cli::status::stale_after`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use stopd_core::Outcome;
use stopd_rules::Policy;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::runtime::sweep::SweepSummary;
use stopd_audit::Store;

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A request's headers must arrive within this long (a stuck client holds no task for ever).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many connections are open at once, each on a task of its own (a few KiB while
/// it idles). Past it a new connection is closed at once rather than queued behind idle ones:
/// 146 half-open connections once held 16 slots in turn and left `/healthz` unanswered for
/// about 30 s.
const MAX_CONNECTIONS: usize = 512;

/// `[metrics]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// Address and port of the listener: `127.0.0.1:9464`.
    #[serde(default)]
    pub listen: Option<String>,
}

/// Checks `[metrics]`; the address to listen on, or why not.
pub fn check_spec(spec: &MetricsSpec) -> Result<Option<SocketAddr>, (&'static str, String)> {
    let Some(listen) = &spec.listen else {
        return Ok(None);
    };
    listen.parse::<SocketAddr>().map(Some).map_err(|_| {
        (
            "listen",
            format!("{listen:?} is not an address and port such as \"127.0.0.1:9464\""),
        )
    })
}

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
    /// For `/healthz`.
    health: Mutex<Health>,
    /// Now, the scheduler's clock.
    clock: Arc<dyn Clock>,
}

impl Metrics {
    /// Metrics for a daemon enforcing `cfg`.
    pub fn new(cfg: &Config, clock: Arc<dyn Clock>) -> Metrics {
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
            health: Mutex::new(Health {
                last_success: None,
                policy: Some(Arc::clone(&cfg.policy)),
                stale_after: crate::cli::status::stale_after(cfg, now),
            }),
            clock,
        };
        m.start_at_zero(&cfg.policy);
        m
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
                    outcome: d.outcome.clone(),
                })
                .inc();
            self.place_stops
                .get_or_create(&PlaceOutcomeLabels {
                    account: d.account.clone(),
                    region: d.region.clone(),
                    outcome: d.outcome.clone(),
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
                .set(freezes_open(policy, s.decided_at) as i64);
        }
        if result == "ok" {
            self.last_success.set(now.timestamp_millis() as f64 / 1e3);
            self.health().last_success = Some(now);
        }
    }

    /// Takes in a reload: the new configuration, or `None` when the file was refused.
    pub fn after_reload(&self, new: Option<&Config>) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if new.is_some() { "ok" } else { "refused" },
            })
            .inc();
        if let Some(cfg) = new {
            self.start_at_zero(&cfg.policy);
            let stale_after = crate::cli::status::stale_after(cfg, self.clock.now());
            let mut h = self.health();
            h.policy = Some(Arc::clone(&cfg.policy));
            h.stale_after = stale_after;
        }
    }

    /// `/healthz`: `Ok` while healthy, else the reason.
    pub fn healthy(&self) -> Result<String, String> {
        let now = self.clock.now();
        let h = self.health();
        if h.policy.is_none() {
            return Err("no policy loaded".into());
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
    async fn refresh(&self, store: &Store) {
        let now = self.clock.now();
        let policy = self.health().policy.clone();
        match crate::cli::status::database_gauges(store, policy.as_deref(), now).await {
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

/// Freeze rules of `policy` whose window is open at `t`.
pub fn freezes_open(policy: &Policy, t: DateTime<Utc>) -> usize {
    let mut open: Vec<String> = policy
        .windows(t, t + chrono::Duration::seconds(1))
        .into_iter()
        .filter(|w| w.window.start <= t && t < w.window.end)
        .map(|w| w.rule)
        .collect();
    open.sort();
    open.dedup();
    open.len()
}

/// Serves `/metrics` and `/healthz` on `listener` until `cancel` fires. `database` is opened
/// read-only for the gauges the audit log holds.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    database: std::path::PathBuf,
    cancel: CancellationToken,
) {
    let store: Arc<tokio::sync::OnceCell<Store>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: shed this one (the client sees the connection closed) instead of making
            // it, and every connection after it, wait for an idle one to time out.
            drop(stream);
            continue;
        };
        let (metrics, store, database) =
            (Arc::clone(&metrics), Arc::clone(&store), database.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (metrics, store, database) =
                    (Arc::clone(&metrics), Arc::clone(&store), database.clone());
                async move { Ok::<_, Infallible>(answer(&req, &metrics, &store, &database).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn answer(
    req: &Request<hyper::body::Incoming>,
    metrics: &Metrics,
    store: &tokio::sync::OnceCell<Store>,
    database: &std::path::Path,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            if let Ok(store) = store
                .get_or_try_init(|| Store::open_read_only(database))
                .await
            {
                metrics.refresh(store).await;
            }
            reply(StatusCode::OK, CONTENT_TYPE, metrics.encode())
        }
        "/healthz" => match metrics.healthy() {
            Ok(text) => reply(StatusCode::OK, "text/plain", text + "\n"),
            Err(text) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", text + "\n"),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /metrics or /healthz\n".into(),
        ),
    }
}

/// Binds the listener of `[metrics]` (before the first sweep, so a port in use fails the start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("[metrics] cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %local, "metrics listening on http://{local}/metrics and /healthz");
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::runtime::sweep::{Done, Planned};
    use stopd_core::CallCounts;

    /// A clock the test moves.
    #[derive(Debug)]
    struct ManualClock(Mutex<DateTime<Utc>>);

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    impl ManualClock {
        fn advance(&self, secs: i64) {
            *self.0.lock().unwrap() += chrono::Duration::seconds(secs);
        }
    }

    fn done(rule: &str, outcome: &str) -> Done {
        Done {
            stop_id: Some(1),
            planned: Planned {
                pipeline: "prod-secret-name".into(),
                execution_id: "exec-should-not-appear".into(),
                rule: rule.into(),
                rule_kind: stopd_audit::RuleKind::Freeze,
                mode: stopd_rules::Mode::Abandon,
                reason: "r".into(),
                explanation: "e".into(),
                escalate_after: None,
                escalation_of: None,
            },
            outcome: outcome.into(),
            is_final: outcome != "failed",
            attempts: 1,
            error: None,
            denied: None,
            calls: CallCounts::default(),
            audit_error: None,
            account: "default".into(),
            region: "us-east-1".into(),
        }
    }

    fn setup() -> (Arc<ManualClock>, Metrics) {
        let cfg = crate::config::parse(
            Path::new("x.toml"),
            "[daemon]\nschedule = \"*/10 * * * * *\"\n[[freeze]]\nname = \"always\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2099-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let t0 = "2026-12-19T18:00:00Z".parse().unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(t0)));
        let m = Metrics::new(&cfg, clock.clone());
        (clock, m)
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }

    #[test]
    fn values_after_sweeps_with_stops_throttles_and_a_failure() {
        let (clock, m) = setup();
        let mut calls = CallCounts::default();
        calls.add("ListPipelines", 3, 2);
        calls.add("StopPipelineExecution", 4, 0);
        let good = SweepSummary {
            done: vec![done("weekend", "stopped"), done("weekend", "stopped"), done("two-hours", "already_stopping")],
            calls,
            gates_closed: 2,
            decided_at: clock.now(),
            policy: Some(Arc::new(
                crate::config::parse(Path::new("x.toml"), "[[freeze]]\nname = \"f\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2099-01-01T00:00:00Z\"\n")
                    .unwrap()
                    .policy
                    .as_ref()
                    .clone(),
            )),
            ..SweepSummary::default()
        };
        assert!(good.ok());
        m.after_sweep(Some(&good), Duration::from_millis(300));
        clock.advance(10);
        let failed = SweepSummary {
            done: vec![done("weekend", "failed")],
            decided_at: clock.now(),
            ..SweepSummary::default()
        };
        assert!(!failed.ok());
        m.after_sweep(Some(&failed), Duration::from_secs(2));
        m.after_sweep(None, Duration::ZERO);
        m.after_reload(None);
        let text = m.encode();
        for (prefix, want) in [
            (
                "stopd_stops_total{rule=\"weekend\",outcome=\"stopped\"}",
                "2",
            ),
            (
                "stopd_stops_total{rule=\"two-hours\",outcome=\"already_stopping\"}",
                "1",
            ),
            (
                "stopd_stops_total{rule=\"weekend\",outcome=\"failed\"}",
                "1",
            ),
            ("stopd_sweeps_total{result=\"ok\"}", "1"),
            ("stopd_sweeps_total{result=\"failed\"}", "2"),
            (
                "stopd_api_calls_total{operation=\"ListPipelines\",result=\"answered\"}",
                "1",
            ),
            (
                "stopd_api_calls_total{operation=\"ListPipelines\",result=\"throttled\"}",
                "2",
            ),
            (
                "stopd_api_calls_total{operation=\"StopPipelineExecution\",result=\"answered\"}",
                "4",
            ),
            ("stopd_throttles_total{operation=\"ListPipelines\"}", "2"),
            ("stopd_gates_closed", "0"),
            ("stopd_freezes_in_force", "1"),
            ("stopd_policy_reloads_total{result=\"refused\"}", "1"),
            ("stopd_build_info{version=", "1"),
            ("stopd_sweep_duration_seconds_count", "3"),
            ("stopd_last_sweep_success_timestamp_seconds", "1797703200.0"),
        ] {
            let l = line(&text, prefix);
            assert_eq!(l.rsplit(' ').next(), Some(want), "{l}\n{text}");
        }
        // The second sweep's summary had no gates: the gauge follows the last sweep.
        assert!(!text.contains("prod-secret-name") && !text.contains("exec-should-not-appear"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Issue 25 item 6: every series of a closed label vocabulary exists at 0 from the start
    /// (and a reload's new rule's too), so that `increase()` sees the first failure.
    #[test]
    fn every_closed_label_set_starts_at_zero() {
        let (_clock, m) = setup();
        m.start_places([("default", "us-east-1")]);
        let mut want: Vec<String> = Vec::new();
        for outcome in STOP_OUTCOMES {
            want.push(format!(
                "stopd_stops_total{{rule=\"always\",outcome=\"{outcome}\"}} 0"
            ));
            want.push(format!(
                "stopd_account_stops_total{{account=\"default\",region=\"us-east-1\",outcome=\"{outcome}\"}} 0"
            ));
        }
        for result in SWEEP_RESULTS {
            want.push(format!("stopd_sweeps_total{{result=\"{result}\"}} 0"));
            want.push(format!(
                "stopd_account_sweeps_total{{account=\"default\",region=\"us-east-1\",result=\"{result}\"}} 0"
            ));
        }
        for result in ["ok", "refused"] {
            want.push(format!(
                "stopd_policy_reloads_total{{result=\"{result}\"}} 0"
            ));
        }
        for op in stopd_core::OPERATIONS {
            for result in ["answered", "throttled"] {
                want.push(format!(
                    "stopd_api_calls_total{{operation=\"{op}\",result=\"{result}\"}} 0"
                ));
            }
            want.push(format!("stopd_throttles_total{{operation=\"{op}\"}} 0"));
        }
        let text = m.encode();
        for w in &want {
            assert!(text.lines().any(|l| l == w), "no {w} in\n{text}");
        }
        for o in ["failed", "rejected", "pipeline_not_found", "dry_run"] {
            assert!(STOP_OUTCOMES.contains(&o), "{o}");
        }
        // A reload's new rule starts at 0 too; the first failure then counts 1.
        let cfg = crate::config::parse(
            Path::new("x.toml"),
            "[[timeout]]\nname = \"two-hours\"\nmax_duration = \"2h\"\n",
        )
        .unwrap();
        m.after_reload(Some(&cfg));
        let text = m.encode();
        let failed = "stopd_stops_total{rule=\"two-hours\",outcome=\"failed\"} ";
        assert!(text.contains(&format!("{failed}0")), "{text}");
        assert!(text.contains("stopd_policy_reloads_total{result=\"ok\"} 1"));
        m.after_sweep(
            Some(&SweepSummary {
                done: vec![done("two-hours", "failed")],
                ..SweepSummary::default()
            }),
            Duration::ZERO,
        );
        assert!(m.encode().contains(&format!("{failed}1")));
    }

    /// A sweep a clean shutdown cut short is counted apart: neither ok nor failed, and no
    /// success; cut short with another problem, it is failed.
    #[test]
    fn a_sweep_cut_short_by_shutdown_counts_as_interrupted() {
        let (clock, m) = setup();
        let interrupted = SweepSummary {
            cut_short: true,
            blind: true,
            decided_at: clock.now(),
            ..SweepSummary::default()
        };
        assert!(interrupted.interrupted() && !interrupted.ok());
        m.after_sweep(Some(&interrupted), Duration::from_millis(10));
        let also_failed = SweepSummary {
            cut_short: true,
            done: vec![done("weekend", "rejected")],
            decided_at: clock.now(),
            ..SweepSummary::default()
        };
        assert!(!also_failed.interrupted() && !also_failed.ok());
        m.after_sweep(Some(&also_failed), Duration::from_millis(10));
        let text = m.encode();
        assert_eq!(
            line(&text, "stopd_sweeps_total{result=\"interrupted\"}")
                .rsplit(' ')
                .next(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            line(&text, "stopd_sweeps_total{result=\"failed\"}")
                .rsplit(' ')
                .next(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            line(&text, "stopd_sweeps_total{result=\"ok\"}")
                .rsplit(' ')
                .next(),
            Some("0"),
            "{text}"
        );
        assert!(m.healthy().is_err(), "an interrupted sweep is no success");
    }

    #[test]
    fn healthz_turns_503_when_sweeps_stop_succeeding() {
        let (clock, m) = setup();
        let e = m.healthy().unwrap_err();
        assert!(e.contains("no successful sweep yet"), "{e}");
        let good = SweepSummary {
            decided_at: clock.now(),
            ..SweepSummary::default()
        };
        m.after_sweep(Some(&good), Duration::from_millis(10));
        assert!(m.healthy().is_ok());
        // Every 10 s: stale after 30 s without a good sweep, failures or not.
        clock.advance(20);
        m.after_sweep(None, Duration::ZERO);
        assert!(m.healthy().is_ok(), "{:?}", m.healthy());
        clock.advance(11);
        let e = m.healthy().unwrap_err();
        assert!(e.contains("stale") && e.contains("31s"), "{e}");
        m.after_sweep(Some(&good), Duration::from_millis(10));
        assert!(m.healthy().is_ok());
    }

    #[tokio::test]
    async fn the_listener_serves_metrics_and_healthz() {
        let (_clock, m) = setup();
        let m = Arc::new(m);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        tokio::spawn(serve(
            listener,
            Arc::clone(&m),
            dir.path().join("none.db"),
            cancel.clone(),
        ));
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let h = get("/healthz").await;
        assert!(h.starts_with("HTTP/1.1 503"), "{h}");
        assert!(h.contains("no successful sweep yet"), "{h}");
        m.after_sweep(Some(&SweepSummary::default()), Duration::ZERO);
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        let text = get("/metrics").await;
        assert!(text.contains("application/openmetrics-text"), "{text}");
        assert!(
            text.contains("stopd_sweeps_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        cancel.cancel();
    }

    /// 146 idle (half-open) connections left `/healthz` unanswered for about 30 s: 16 slots,
    /// each held until its connection's header timeout. Beside 300 idle connections it answers
    /// long before any of them times out (the bound below is shorter than `HEADER_TIMEOUT`, so
    /// with a queue behind idle connections it cannot pass).
    #[tokio::test]
    async fn healthz_answers_beside_hundreds_of_idle_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (_clock, m) = setup();
        let m = Arc::new(m);
        m.after_sweep(Some(&SweepSummary::default()), Duration::ZERO);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        tokio::spawn(serve(
            listener,
            Arc::clone(&m),
            dir.path().join("none.db"),
            cancel.clone(),
        ));
        let mut idle = Vec::new();
        for i in 0..300 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            if i % 2 == 0 {
                // Half a request line, then nothing.
                s.write_all(b"GET /heal").await.unwrap();
            }
            idle.push(s);
        }
        let answered = tokio::time::timeout(HEADER_TIMEOUT - Duration::from_secs(1), async {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        })
        .await
        .expect("/healthz did not answer beside idle connections");
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        drop(idle);
        cancel.cancel();
    }
}
