//! The daemon's time-dependent behaviour, in-process, on clocks the test moves: window edges,
//! backoff after a failed sweep, a decision gone stale across a suspend, escalation, and the
//! expiry of exemptions and ad-hoc freezes. Nothing here waits on real time.
//!
//! Two drives, both against an in-process emulator over real HTTP and a real SQLite file:
//! - [`Rig::sweep_at`]: one sweep ([`Sweeper::sweep`]) deciding at an instant the test sets, on
//!   a [`ManualClock`] (the emulator's manual clock is set to the same instant).
//! - [`Rig::schedule`]: the real [`Scheduler`] under `tokio::time::pause` on a [`PausedClock`],
//!   its sweeps real ones. A paused runtime auto-advances whenever it waits, which would fire
//!   the SDK's timeouts during HTTP I/O; so each sweep runs to its end on a separate real-time
//!   runtime while the scheduler's thread waits, blocked: no paused time passes during a sweep,
//!   and the sweep decides at the instant the scheduler's clock says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use stopd::clock::{Clock, ManualClock, PausedClock, SharedClock};
use stopd::config::Config;
use stopd::runtime::scheduler::{BoxFuture, Scheduler, Sweeps};
use stopd::runtime::sweep::{SweepSummary, Sweeper};
use stopd_audit::{AuditRecord, ReportFilter, Store};
use stopd_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, Fixture, ServerHandle};
use stopd_rules::Policy;
use tokio_util::sync::CancellationToken;

use crate::common::{fleet, rfc};

/// A schedule that never fires during a test: only edges wake the scheduler.
const RARE: &str = "schedule = \"0 0 1 1 *\"";

/// Where every test starts.
fn t0() -> DateTime<Utc> {
    "2027-03-01T09:00:00Z".parse().unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn mins(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

/// A freeze on `prod-*` from `start` on.
fn freeze(start: DateTime<Utc>, extra: &str) -> String {
    format!(
        "[[freeze]]\nname = \"f\"\nstart = \"{}\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\n{extra}\n",
        rfc(start)
    )
}

/// When a stop was decided.
fn at(r: &AuditRecord) -> DateTime<Utc> {
    r.at.parse().unwrap()
}

/// What the rig holds besides its runtime (dropped inside it).
struct Parts {
    emulator: Emulator,
    _server: ServerHandle,
    _dir: tempfile::TempDir,
    cfg: Arc<Config>,
    sweeper: Sweeper,
    /// The sweeps' clock.
    clock: Arc<ManualClock>,
}

/// An emulator on a manual clock, a policy, an audit database and a [`Sweeper`] on a
/// [`ManualClock`], all at [`t0`].
struct Rig {
    parts: Option<Parts>,
    /// Real time: the emulator's server, the SDK, SQLite.
    io: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for Rig {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        self.parts.as_ref().unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            let parts = self.parts.take();
            io.block_on(async move {
                if let Some(p) = &parts {
                    p.sweeper.store.close().await;
                }
                drop(parts);
            });
            io.shutdown_background();
        }
    }
}

/// One step of a scheduler run.
enum Step {
    /// Lets the paused clock run this long.
    Wait(u64),
    /// The wall clock jumps (a suspend) while tokio's does not.
    Jump(TimeDelta),
    /// The emulator answers with this fault from now on.
    AddFault(FaultRule),
    /// The emulator's faults are cleared.
    ClearFaults,
}

/// A sweep as the scheduler started it: when it decided, why, and whether it was good.
type Swept = (DateTime<Utc>, &'static str, bool);

impl Rig {
    fn new(fixture: &str, daemon: &str, rules: &str) -> Rig {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emulator = Emulator::new(EmulatorConfig {
            clock: stopd_emulator::Clock::manual(t0().timestamp_millis()),
            ..EmulatorConfig::default()
        });
        emulator
            .seed(&Fixture::from_json(fixture).unwrap())
            .unwrap();
        let server = io
            .block_on(emulator.serve("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stopd.toml");
        std::fs::write(
            &path,
            format!(
                "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[daemon]\ndatabase = \"{}\"\n{daemon}\n\n{rules}\n",
                server.endpoint_url(),
                dir.path().join("audit.db").display()
            ),
        )
        .unwrap();
        let mut cfg = stopd::config::load(&path).unwrap();
        cfg.static_credentials = Some(("AKIDTEST".into(), "secret".into()));
        let clock = ManualClock::new(t0());
        let (store, cores) = io.block_on(async {
            let store = Store::open(&cfg.daemon.database).await.unwrap();
            let cores = stopd::runtime::targets::build(&cfg, CancellationToken::new()).await;
            (store, cores)
        });
        let sweeper = Sweeper {
            cores: Arc::new(cores),
            store,
            concurrency: cfg.daemon.stop_concurrency,
            draining: CancellationToken::new(),
            clock: Arc::clone(&clock) as SharedClock,
        };
        Rig {
            parts: Some(Parts {
                emulator,
                _server: server,
                _dir: dir,
                cfg: Arc::new(cfg),
                sweeper,
                clock,
            }),
            io: Some(io),
        }
    }

    fn io(&self) -> &tokio::runtime::Runtime {
        self.io.as_ref().unwrap()
    }

    /// Sets the sweeps' clock and the emulator's to `at`.
    fn set(&self, at: DateTime<Utc>) {
        self.clock.set(at);
        self.emulator.set_time(at.timestamp_millis());
    }

    /// One sweep deciding at `at`.
    fn sweep_at(&self, at: DateTime<Utc>) -> SweepSummary {
        self.set(at);
        let policy = Arc::clone(&self.cfg.policy);
        self.io()
            .block_on(
                self.sweeper
                    .sweep(policy, stopd_audit::SweepTrigger::Schedule, false),
            )
            .unwrap()
    }

    /// Every stop recorded, oldest first.
    fn stops(&self) -> Vec<AuditRecord> {
        let mut r = self
            .io()
            .block_on(self.sweeper.store.report(&ReportFilter::default()))
            .unwrap();
        r.sort_by_key(|r| r.id);
        r
    }

    /// The InProgress execution of `pipeline`.
    fn in_progress(&self, pipeline: &str) -> String {
        self.emulator
            .executions(pipeline)
            .into_iter()
            .find(|e| e.status == "InProgress")
            .expect("an InProgress execution")
            .id
    }

    fn stop_calls(&self) -> usize {
        self.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "StopPipelineExecution")
            .count()
    }

    /// Runs the scheduler from `from` on a paused clock through `steps`; returns the sweeps it
    /// started.
    fn schedule(&self, from: DateTime<Utc>, steps: Vec<Step>) -> Vec<Swept> {
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        paused.block_on(async {
            let time = Arc::new(Jumpy {
                paused: PausedClock::new(from),
                jumped: Mutex::new(TimeDelta::zero()),
            });
            let bridge = Bridge {
                sweeper: self.sweeper.clone(),
                io: self.io().handle().clone(),
                time: Arc::clone(&time) as SharedClock,
                decide: Arc::clone(&self.clock),
                emulator: self.emulator.clone(),
                log: Arc::clone(&log),
            };
            let mut s = Scheduler::new(Arc::clone(&self.cfg), bridge, time.clone(), false);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let task = tokio::spawn(async move { s.run(rx).await });
            for step in steps {
                match step {
                    Step::Wait(n) => tokio::time::sleep(Duration::from_secs(n)).await,
                    Step::Jump(by) => *time.jumped.lock().unwrap() += by,
                    Step::AddFault(f) => self.emulator.add_fault(f),
                    Step::ClearFaults => self.emulator.set_faults(Default::default()),
                }
            }
            task.abort();
            drop(tx);
        });
        log.lock().unwrap().clone()
    }
}

/// Tokio's paused time, anchored at a wall-clock instant, plus the jumps a test makes.
#[derive(Debug)]
struct Jumpy {
    paused: Arc<PausedClock>,
    jumped: Mutex<TimeDelta>,
}

impl Clock for Jumpy {
    fn now(&self) -> DateTime<Utc> {
        self.paused.now() + *self.jumped.lock().unwrap()
    }
}

/// The scheduler's [`Sweeps`]: a real sweep, run to its end on the real-time runtime while the
/// scheduler's (paused) thread waits, deciding at the scheduler's now.
struct Bridge {
    sweeper: Sweeper,
    io: tokio::runtime::Handle,
    /// The scheduler's clock.
    time: SharedClock,
    /// The sweeps' clock, set to the scheduler's now at each sweep.
    decide: Arc<ManualClock>,
    emulator: Emulator,
    log: Arc<Mutex<Vec<Swept>>>,
}

impl Sweeps for Bridge {
    fn sweep(
        &self,
        policy: Arc<Policy>,
        trigger: stopd_audit::SweepTrigger,
        dry_run: bool,
    ) -> BoxFuture<'static, anyhow::Result<SweepSummary>> {
        let now = self.time.now();
        self.decide.set(now);
        self.emulator.set_time(now.timestamp_millis());
        let (sweeper, io) = (self.sweeper.clone(), self.io.clone());
        let result = std::thread::scope(|s| {
            s.spawn(move || io.block_on(sweeper.sweep(policy, trigger, dry_run)))
                .join()
                .unwrap()
        });
        let ok = result.as_ref().is_ok_and(SweepSummary::ok);
        self.log.lock().unwrap().push((now, trigger.as_str(), ok));
        Box::pin(async move { result })
    }

    fn reconfigure<'a>(
        &'a mut self,
        _old: &'a Config,
        _new: &'a Config,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    fn drain(&self) {}

    fn cut_short(&self) {}
}

#[test]
fn nothing_is_stopped_a_second_before_a_freeze_opens_and_it_is_at_the_edge() {
    let edge = t0() + TimeDelta::hours(1);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod"), ("dev-web", "dev")]),
        RARE,
        &freeze(edge, ""),
    );
    let before = rig.sweep_at(edge - secs(1));
    assert!(before.ok(), "{}", before.status_line());
    assert!(before.done.is_empty(), "{:?}", before.done);
    assert_eq!(rig.stop_calls(), 0);

    let at_edge = rig.sweep_at(edge);
    assert!(at_edge.ok(), "{}", at_edge.status_line());
    assert_eq!(at_edge.decided_at, edge);
    assert_eq!(rig.stop_calls(), 1);
    let stops = rig.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0].pipeline, "prod-web");
    assert_eq!(stops[0].outcome, "stopped");
    assert_eq!(at(&stops[0]), edge, "recorded as decided at the edge");
}

/// The scheduler wakes at the edge itself (no tick is due for a year) and the sweep it starts
/// decides there: the window is enforced from its first instant.
#[test]
fn the_scheduler_sweeps_at_a_window_edge_and_stops_there() {
    let edge = t0() + mins(20);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod"), ("dev-web", "dev")]),
        RARE,
        &freeze(edge, ""),
    );
    let swept = rig.schedule(t0(), vec![Step::Wait(3600)]);
    assert_eq!(
        swept,
        [(t0(), "startup", true), (edge, "edge", true)],
        "a start-up sweep, then one at the edge"
    );
    let stops = rig.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        (stops[0].pipeline.as_str(), at(&stops[0])),
        ("prod-web", edge)
    );
}

/// A sweep that fails at a window edge (here the listing is refused: it saw nothing, so the
/// edge is still to be enforced) is retried after 1, 2, 4, 8, 16 s, then every 30 s (the
/// schedule's interval caps the backoff), never in a loop; once one succeeds it enforces the
/// window and the schedule resumes.
#[test]
fn a_failed_sweep_is_retried_with_backoff_and_the_schedule_resumes() {
    let edge = t0() + secs(10);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        "schedule = \"*/30 * * * * *\"",
        &freeze(edge, ""),
    );
    let refused = FaultRule::new(Some("ListPipelines"), Fault::AccessDenied);
    let swept = rig.schedule(
        t0(),
        vec![
            Step::Wait(5),
            Step::AddFault(refused),
            Step::Wait(120),
            Step::ClearFaults,
            Step::Wait(60),
        ],
    );
    let got: Vec<(i64, &str, bool)> = swept
        .iter()
        .map(|(t, why, ok)| ((*t - t0()).num_seconds(), *why, *ok))
        .collect();
    assert_eq!(
        got,
        [
            (0, "startup", true),
            (10, "edge", false),
            (11, "retry", false),
            (13, "retry", false),
            (17, "retry", false),
            (25, "retry", false),
            (41, "retry", false),
            (71, "retry", false),
            (101, "retry", false),
            (131, "retry", true),
            (150, "schedule", true),
            (180, "schedule", true),
        ]
    );
    let stops = rig.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    // At the edge, from what the start-up sweep listed (issue 29: the known executions are
    // stopped first), although the edge's own listing was refused; before that, by the first
    // good sweep (131 s).
    assert_eq!(at(&stops[0]), edge, "at the edge, from what was known");
}

/// A stop-and-wait still Stopping at its escalate_after is stopped again with abandon at the
/// deadline, not a second before.
#[test]
fn a_stop_and_wait_is_escalated_to_abandon_at_its_deadline_not_before() {
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        RARE,
        &freeze(t0() - TimeDelta::hours(1), "escalate_after = \"10m\""),
    );
    let id = rig.in_progress("prod-web");
    rig.sweep_at(t0());
    assert_eq!(
        rig.emulator.execution("prod-web", &id).unwrap().status,
        "Stopping"
    );
    let early = rig.sweep_at(t0() + mins(10) - secs(1));
    assert!(
        early.done.is_empty(),
        "not escalated early: {:?}",
        early.done
    );
    let due = rig.sweep_at(t0() + mins(10));
    assert!(due.ok(), "{}", due.status_line());
    let stops = rig.stops();
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!(stops[0].mode, "finish");
    assert_eq!(stops[1].mode, "abandon");
    assert_eq!(stops[1].escalation_of, Some(stops[0].id));
    assert_eq!(at(&stops[1]), t0() + mins(10));
    assert!(rig.emulator.execution("prod-web", &id).unwrap().abandoned);
}

/// The scheduler wakes at an escalation deadline (no tick is due) and the sweep escalates.
#[test]
fn the_scheduler_sweeps_at_an_escalation_deadline() {
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        RARE,
        &freeze(t0() - TimeDelta::hours(1), "escalate_after = \"10m\""),
    );
    let swept = rig.schedule(t0(), vec![Step::Wait(3600)]);
    assert_eq!(
        swept,
        [(t0(), "startup", true), (t0() + mins(10), "edge", true)]
    );
    let stops = rig.stops();
    let modes: Vec<(&str, DateTime<Utc>)> =
        stops.iter().map(|r| (r.mode.as_str(), at(r))).collect();
    assert_eq!(modes, [("finish", t0()), ("abandon", t0() + mins(10))]);
}

/// An exemption that ends while its freeze is open is an edge too: the scheduler sweeps at its
/// `until` and stops what it held back then, not at the next tick (an hour away here).
#[test]
fn the_scheduler_sweeps_when_an_exemption_ends() {
    let until = t0() + mins(30);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        RARE,
        &freeze(t0() - TimeDelta::hours(1), ""),
    );
    rig.io()
        .block_on(rig.sweeper.store.add_exemption(
            t0() - mins(1),
            "prod-web",
            until,
            "hotfix",
            "tester",
            None,
        ))
        .unwrap();
    let swept = rig.schedule(t0(), vec![Step::Wait(3000)]);
    assert_eq!(swept, [(t0(), "startup", true), (until, "edge", true)]);
    let stops = rig.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(at(&stops[0]), until);
}

/// A Change Calendar's `NextTransitionTime` is an edge: OPEN at start-up with a CLOSED interval
/// 20 minutes on, the scheduler sweeps when it closes (not at the next tick, a year away here)
/// and stops then, naming the rule.
#[test]
fn the_scheduler_sweeps_at_a_change_calendars_next_transition() {
    let closes = t0() + mins(20);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        RARE,
        "[[freeze]]\nname = \"cc\"\nchange_calendar = \"prod-changes\"\npipelines = [\"prod-*\"]\n",
    );
    rig.emulator.lock().calendars = [(
        "prod-changes".to_string(),
        vec![(
            closes.timestamp_millis(),
            (closes + TimeDelta::hours(2)).timestamp_millis(),
        )],
    )]
    .into_iter()
    .collect();
    let swept = rig.schedule(t0(), vec![Step::Wait(3000)]);
    assert_eq!(swept, [(t0(), "startup", true), (closes, "edge", true)]);
    let stops = rig.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(at(&stops[0]), closes);
    assert_eq!(stops[0].rule, "cc");
}

/// A decision gone stale: the machine sleeps through a window edge (the wall clock jumps, tokio's
/// does not). The scheduler notices within one nap and sweeps at once, deciding by the time it
/// is now, not by the stale instant.
#[test]
fn after_a_suspend_past_an_edge_the_scheduler_sweeps_at_once() {
    let edge = t0() + mins(20);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        "schedule = \"0 0 * * * *\"",
        &freeze(edge, ""),
    );
    let suspend = TimeDelta::hours(1);
    let swept = rig.schedule(
        t0(),
        vec![Step::Wait(66), Step::Jump(suspend), Step::Wait(60)],
    );
    assert_eq!(swept.len(), 2, "{swept:?}");
    assert_eq!(swept[0], (t0(), "startup", true));
    let (woke, why, ok) = swept[1];
    let resumed = t0() + secs(66) + suspend;
    assert!(
        woke >= resumed && woke <= resumed + secs(5),
        "swept at {woke}, within a nap (5 s of the clock's time) of the resume at {resumed}"
    );
    assert_eq!((why, ok), ("edge", true));
    let stops = rig.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(at(&stops[0]), woke);
}

/// A break-glass exemption wins until its `until`, and not at it.
#[test]
fn a_break_glass_exemption_expires_at_its_until() {
    let until = t0() + mins(30);
    let rig = Rig::new(
        &fleet(&[("prod-web", "prod")]),
        RARE,
        &freeze(t0() - TimeDelta::hours(1), ""),
    );
    rig.io()
        .block_on(rig.sweeper.store.add_exemption(
            t0(),
            "prod-web",
            until,
            "hotfix",
            "tester",
            None,
        ))
        .unwrap();
    assert!(rig.sweep_at(t0()).done.is_empty(), "exempt");
    assert!(
        rig.sweep_at(until - secs(1)).done.is_empty(),
        "still exempt a second before it expires"
    );
    let expired = rig.sweep_at(until);
    assert_eq!(expired.done.len(), 1, "{:?}", expired.done);
    assert_eq!(rig.stops()[0].pipeline, "prod-web");
    assert_eq!(at(&rig.stops()[0]), until);
}

/// An ad-hoc freeze (`stopd freeze add`) is in force from its start to its `until` or its
/// lift, read at the instant each sweep decides.
#[test]
fn an_adhoc_freeze_holds_from_its_start_until_lifted_or_expired() {
    let rig = Rig::new(
        &fleet(&[
            ("prod-web", "prod"),
            ("prod-api", "prod"),
            ("dev-web", "dev"),
        ]),
        RARE,
        "",
    );
    let store = &rig.sweeper.store;
    let add = |glob: &'static str, from: DateTime<Utc>, until: DateTime<Utc>| {
        rig.io()
            .block_on(store.add_freeze(&stopd_audit::NewFreeze {
                at: from,
                until,
                pipeline: glob,
                exclude: None,
                tags: &Default::default(),
                mode: stopd_rules::Mode::Finish,
                gate: false,
                account: None,
                region: None,
                reason: "INC-42",
                by: "tester",
            }))
            .unwrap()
    };
    let api = add("prod-api", t0(), t0() + mins(30));
    assert!(
        rig.sweep_at(t0() - secs(1)).done.is_empty(),
        "not yet in force"
    );
    let first = rig.sweep_at(t0());
    let stopped: Vec<&str> = first
        .done
        .iter()
        .map(|d| d.planned.pipeline.as_str())
        .collect();
    assert_eq!(stopped, ["prod-api"]);
    assert_eq!(first.done[0].planned.rule, format!("adhoc-{api}"));
    let web = add("prod-web", t0() + mins(5), t0() + TimeDelta::hours(2));
    let second = rig.sweep_at(t0() + mins(5));
    let stopped: Vec<&str> = second
        .done
        .iter()
        .map(|d| d.planned.pipeline.as_str())
        .collect();
    assert_eq!(stopped, ["prod-web"]);

    // Lifted, prod-web's stops nothing more; prod-api's holds to its until, not at it.
    rig.io()
        .block_on(store.lift_freeze(web, t0() + mins(6), "resolved", "tester"))
        .unwrap();
    rig.set(t0() + mins(10));
    rig.emulator.start_execution("prod-web").unwrap();
    rig.emulator.start_execution("prod-api").unwrap();
    let third = rig.sweep_at(t0() + mins(30) - secs(1));
    let stopped: Vec<&str> = third
        .done
        .iter()
        .map(|d| d.planned.pipeline.as_str())
        .collect();
    assert_eq!(stopped, ["prod-api"], "the lifted freeze stopped nothing");
    rig.emulator.start_execution("prod-api").unwrap();
    assert!(
        rig.sweep_at(t0() + mins(30)).done.is_empty(),
        "expired at its until"
    );
    assert_eq!(rig.stop_calls(), 3);
}
