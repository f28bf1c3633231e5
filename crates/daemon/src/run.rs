//! `stopd run`: the scheduler loop, signals, systemd notification, logging.
//!
//! The loop wakes at the earliest of: the next `schedule` tick, the policy's next transition
//! (a window opening or closing, a grace ending, a known execution passing a timeout) and the
//! next escalation deadline. It never sleeps longer than [`MAX_NAP`] at a time and re-reads the
//! wall clock on every wake, so a suspend or a clock jump is noticed within seconds and a
//! missed tick sweeps at once. One sweep runs at a time, as a task the loop watches while it
//! keeps answering signals and the watchdog.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sd_notify::NotifyState;
use stopd_core::{ClientConfig, Core, CoreConfig, LimiterConfig, RateLimiter, RetryPolicy};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::store::Store;
use crate::sweep::{self, SweepSummary, Sweeper};

/// Longest single sleep: bounds how late a suspend or wall-clock jump is noticed.
const MAX_NAP: Duration = Duration::from_secs(5);

/// Sets up tracing: `STOPD_LOG` filter, `STOPD_LOG_FORMAT=json`, journald-friendly lines.
pub fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("STOPD_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let json = std::env::var("STOPD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().init();
    } else if journald {
        // journald stamps every line itself.
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// The SDK client and the stop engine for a configuration.
pub async fn build_core(cfg: &Config, cancel: CancellationToken) -> Core {
    let client = stopd_core::build_client(&ClientConfig {
        region: cfg.aws.region.clone(),
        profile: cfg.aws.profile.clone(),
        endpoint_url: cfg.aws.endpoint_url.clone(),
        static_credentials: cfg.static_credentials.clone(),
        ..ClientConfig::default()
    })
    .await;
    let core_config = CoreConfig {
        concurrency: cfg.daemon.discovery_concurrency,
        stop_retry: RetryPolicy {
            deadline: cfg.daemon.stop_deadline,
            ..RetryPolicy::default()
        },
        ..CoreConfig::default()
    };
    Core::new(
        client,
        RateLimiter::new(LimiterConfig::default()),
        core_config,
        cancel,
    )
}

fn notify(states: &[NotifyState<'_>]) {
    // Not under systemd (no NOTIFY_SOCKET) this does nothing.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// Why the scheduler woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Tick,
    Edge,
}

struct Loop {
    cfg: Arc<Config>,
    sweeper: Sweeper,
    /// Cancels in-flight API calls (after the shutdown bound).
    core_cancel: CancellationToken,
    dry_run_flag: bool,
    next_tick: Option<DateTime<Utc>>,
    /// InProgress executions of the last sweep, for timeout deadlines.
    known: Vec<stopd_core::ActiveExecution>,
    next_escalation: Option<DateTime<Utc>>,
    /// The instant the last sweep decided at.
    last_decided: Option<DateTime<Utc>>,
}

impl Loop {
    fn dry_run(&self) -> bool {
        self.dry_run_flag || self.cfg.daemon.dry_run
    }

    fn next_wake(&self, now: DateTime<Utc>) -> (DateTime<Utc>, Wake) {
        let facts = sweep::facts(&self.known);
        // The first transition after the instant the last sweep decided at: if it is already
        // past, the decision may be stale and a sweep is due now.
        let since = self.last_decided.unwrap_or(now);
        let edge = self.cfg.policy.next_transition(since, &facts);
        let edge = match (edge, self.next_escalation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (self.next_tick, edge) {
            (Some(t), Some(e)) if e < t => (e, Wake::Edge),
            (Some(t), _) => (t, Wake::Tick),
            (None, Some(e)) => (e, Wake::Edge),
            (None, None) => (now + chrono::Duration::days(1), Wake::Tick),
        }
    }

    fn spawn_sweep(&self, trigger: &'static str) -> JoinHandle<Result<SweepSummary>> {
        let sweeper = self.sweeper.clone();
        let policy = Arc::clone(&self.cfg.policy);
        let dry_run = self.dry_run();
        tokio::spawn(async move { sweeper.sweep(policy, trigger, dry_run).await })
    }

    async fn after_sweep(&mut self, summary: &SweepSummary) {
        if !summary.blind {
            self.known = summary.in_progress.clone();
        }
        self.last_decided = Some(summary.decided_at);
        self.next_escalation = self
            .sweeper
            .store
            .next_escalation(summary.decided_at)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "cannot read escalation deadlines");
                None
            });
        let line = summary.status_line();
        tracing::info!(sweep = summary.sweep_id, "{line}");
        notify(&[NotifyState::Status(&line)]);
    }

    fn reload(&mut self) {
        notify(&[
            NotifyState::Reloading,
            NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
        ]);
        match config::load(&self.cfg.path) {
            Ok(new) => {
                if new.daemon.database != self.cfg.daemon.database {
                    tracing::warn!(
                        "[daemon] database changed; the new path takes effect at the next restart"
                    );
                }
                let mut new = new;
                new.daemon.database = self.cfg.daemon.database.clone();
                tracing::info!(path = %new.path.display(), rules = new.policy.rules().len(), "policy reloaded");
                self.next_tick = new.daemon.schedule.next_after(Utc::now(), chrono_tz::UTC);
                self.cfg = Arc::new(new);
            }
            Err(e) => {
                tracing::error!("reload refused, the previous policy stays in force:\n{e}");
            }
        }
        notify(&[NotifyState::Ready]);
    }
}

/// `stopd run [--once] [--dry-run]`.
pub async fn run(cfg: Config, once: bool, dry_run: bool) -> Result<ExitCode> {
    // Held until this function returns (and by the kernel until the process ends).
    let _lock = crate::lock::acquire(&cfg.daemon.database)?;
    let store = Store::open(&cfg.daemon.database).await?;
    let core_cancel = CancellationToken::new();
    let core = build_core(&cfg, core_cancel.clone()).await;
    let draining = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;

    let (resolved, left) = sweep::reconcile(&core, &store).await?;
    if resolved + left > 0 {
        tracing::info!(resolved, left, "pending stops from an earlier run");
    }
    let cfg = Arc::new(cfg);
    let mut lp = Loop {
        sweeper: Sweeper {
            core,
            store: store.clone(),
            concurrency: cfg.daemon.stop_concurrency,
            draining: draining.clone(),
        },
        next_tick: None,
        cfg,
        core_cancel,
        dry_run_flag: dry_run,
        known: Vec::new(),
        next_escalation: None,
        last_decided: None,
    };
    let dry = lp.dry_run();
    tracing::info!(
        config = %lp.cfg.path.display(),
        database = %lp.cfg.daemon.database.display(),
        rules = lp.cfg.policy.rules().len(),
        dry_run = dry,
        once,
        "stopd starting"
    );

    if once {
        // A signal drains as in the daemon: no new stop, in-flight ones finish (within the
        // bound) and are recorded.
        let mut sweep = lp.spawn_sweep("once");
        let signalled = tokio::select! {
            s = &mut sweep => Some(s),
            _ = sigterm.recv() => None,
            _ = sigint.recv() => None,
        };
        let joined = match signalled {
            Some(s) => s,
            None => {
                let (mut shutting_down, mut deadline) = (false, None);
                let bound = lp.cfg.daemon.shutdown_timeout;
                begin_shutdown(
                    &mut shutting_down,
                    &draining,
                    &mut deadline,
                    bound,
                    "signal",
                );
                match tokio::time::timeout(bound, &mut sweep).await {
                    Ok(s) => s,
                    Err(_) => {
                        lp.core_cancel.cancel();
                        sweep.await
                    }
                }
            }
        };
        let summary = joined.context("the sweep task failed")??;
        lp.after_sweep(&summary).await;
        store.close().await;
        for d in summary.done.iter().filter(|d| !d.is_final) {
            eprintln!(
                "stopd: not final: {} {} ({}): {}",
                d.planned.pipeline,
                d.planned.execution_id,
                d.outcome,
                d.error.as_deref().unwrap_or("")
            );
        }
        if summary.blind {
            eprintln!(
                "stopd: the sweep could not list pipelines: {}",
                summary.result.error.as_deref().unwrap_or("")
            );
        }
        return Ok(if summary.all_final() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    notify(&[
        NotifyState::Ready,
        NotifyState::Status("started; first sweep running"),
    ]);
    let watchdog = watchdog_interval();
    let mut watchdog_timer = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    watchdog_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut running: Option<JoinHandle<Result<SweepSummary>>> = Some(lp.spawn_sweep("startup"));
    let mut shutting_down = false;
    let mut shutdown_deadline: Option<tokio::time::Instant> = None;
    loop {
        let now = Utc::now();
        if lp.next_tick.is_none() {
            lp.next_tick = lp.cfg.daemon.schedule.next_after(now, chrono_tz::UTC);
        }
        let (target, why) = lp.next_wake(now);
        if running.is_none() && !shutting_down && target <= now {
            let trigger = match why {
                Wake::Tick if now - target > chrono::Duration::seconds(2) => "catch-up",
                Wake::Tick => "schedule",
                Wake::Edge => "edge",
            };
            if why == Wake::Tick {
                lp.next_tick = lp.cfg.daemon.schedule.next_after(now, chrono_tz::UTC);
            }
            running = Some(lp.spawn_sweep(trigger));
            continue;
        }
        let nap = (target - now).to_std().unwrap_or_default().min(MAX_NAP);
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
                match joined {
                    Ok(Ok(summary)) => lp.after_sweep(&summary).await,
                    Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "sweep failed"),
                    Err(e) => tracing::error!(error = %e, "sweep task failed"),
                }
                // The sweep's buffers are freed: give their pages back while idle.
                crate::memory::release_free_memory();
                // A tick that came due during the sweep is taken now; an edge is recomputed.
                if shutting_down {
                    break;
                }
            }
            () = tokio::time::sleep(nap), if running.is_none() => {}
            _ = watchdog_timer.tick() => {
                if watchdog.is_some() {
                    notify(&[NotifyState::Watchdog]);
                }
            }
            _ = sighup.recv() => lp.reload(),
            _ = sigterm.recv() => {
                begin_shutdown(&mut shutting_down, &draining, &mut shutdown_deadline, lp.cfg.daemon.shutdown_timeout, "SIGTERM");
                if running.is_none() { break; }
            }
            _ = sigint.recv() => {
                begin_shutdown(&mut shutting_down, &draining, &mut shutdown_deadline, lp.cfg.daemon.shutdown_timeout, "SIGINT");
                if running.is_none() { break; }
            }
            () = shutdown_bound => {
                tracing::warn!("shutdown bound reached: cutting in-flight stops short; their outcomes are recorded as failed");
                lp.core_cancel.cancel();
                shutdown_deadline = None;
            }
        }
    }
    store.close().await;
    tracing::info!("stopd stopped");
    Ok(ExitCode::SUCCESS)
}

fn begin_shutdown(
    shutting_down: &mut bool,
    draining: &CancellationToken,
    deadline: &mut Option<tokio::time::Instant>,
    bound: Duration,
    signal: &str,
) {
    if *shutting_down {
        return;
    }
    *shutting_down = true;
    tracing::info!(
        signal,
        bound = %humantime::format_duration(bound),
        "shutting down: no new stops; in-flight stops finish and are recorded"
    );
    notify(&[NotifyState::Stopping]);
    draining.cancel();
    *deadline = Some(tokio::time::Instant::now() + bound);
}
