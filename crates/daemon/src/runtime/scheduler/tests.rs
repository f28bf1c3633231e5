//! Scheduler tests: the loop under `tokio::time::pause`, with fake sweeps and a paused clock.

use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::clock::Clock;
use stopd_audit::SweepResult;

/// Each sweep: when, and why.
type SweepLog = Vec<(DateTime<Utc>, &'static str)>;

/// Records each sweep (when, why); fails while `fail` is set; a term it is told to lead
/// ended before it was set up while `lost` is set.
#[derive(Clone)]
struct FakeSweeps {
    clock: Arc<crate::clock::PausedClock>,
    log: Arc<Mutex<SweepLog>>,
    fail: Arc<Mutex<bool>>,
    reconfigured: Arc<Mutex<u32>>,
    lost: Arc<Mutex<bool>>,
}

impl Sweeps for FakeSweeps {
    fn sweep(
        &self,
        _policy: Arc<Policy>,
        trigger: SweepTrigger,
        _dry_run: bool,
    ) -> BoxFuture<'static, Result<SweepSummary>> {
        let now = self.clock.now();
        self.log.lock().unwrap().push((now, trigger.as_str()));
        let fail = *self.fail.lock().unwrap();
        Box::pin(async move {
            if fail {
                anyhow::bail!("the audit database is on a full disk");
            }
            Ok(SweepSummary {
                decided_at: now,
                result: SweepResult::default(),
                ..SweepSummary::default()
            })
        })
    }

    fn reconfigure<'a>(
        &'a mut self,
        _old: &'a Config,
        _new: &'a Config,
    ) -> BoxFuture<'a, Vec<String>> {
        *self.reconfigured.lock().unwrap() += 1;
        Box::pin(async { Vec::new() })
    }

    fn lead<'a>(&'a mut self, _cfg: &'a Config, _epoch: i64) -> BoxFuture<'a, bool> {
        let live = !*self.lost.lock().unwrap();
        Box::pin(async move { live })
    }

    fn drain(&self) {}
    fn cut_short(&self) {}
}

struct Setup {
    dir: tempfile::TempDir,
    sweeps: FakeSweeps,
    events: mpsc::UnboundedSender<Event>,
    task: JoinHandle<Ended>,
    base: DateTime<Utc>,
}

impl Setup {
    fn sweeps(&self) -> Vec<(i64, &'static str)> {
        self.sweeps
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|(t, why)| ((*t - self.base).num_seconds(), *why))
            .collect()
    }
}

const HOURLY: &str = "[daemon]\nschedule = \"0 0 * * * *\"\n";

/// A scheduler over `policy` (written to a file, for reloads) at 2026-12-01T10:00:30Z.
async fn start(policy: &str) -> Setup {
    start_as(policy, false).await
}

/// [`start`], or [`Scheduler::standby`] with `standby`.
async fn start_as(policy: &str, standby: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stopd.toml");
    std::fs::write(&path, policy).unwrap();
    let cfg = config::load(Path::new(&path)).unwrap();
    let base: DateTime<Utc> = "2026-12-01T10:00:30Z".parse().unwrap();
    let clock = crate::clock::PausedClock::new(base);
    let sweeps = FakeSweeps {
        clock: Arc::clone(&clock),
        log: Arc::default(),
        fail: Arc::default(),
        reconfigured: Arc::default(),
        lost: Arc::default(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut s = match standby {
        true => Scheduler::standby(Arc::new(cfg), sweeps.clone(), clock, false),
        false => Scheduler::new(Arc::new(cfg), sweeps.clone(), clock, false),
    };
    let task = tokio::spawn(async move { s.run(rx).await });
    Setup {
        dir,
        sweeps,
        events: tx,
        task,
        base,
    }
}

async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn wakes_at_start_at_each_tick_and_at_a_window_edge() {
    let s = start(&format!(
        "{HOURLY}[[freeze]]\nname = \"f\"\nstart = \"2026-12-01T10:20:00Z\"\nend = \"2026-12-01T10:40:00Z\"\n"
    ))
    .await;
    advance(2 * 3600).await;
    assert_eq!(
        s.sweeps(),
        [
            (0, "startup"),
            (1170, "edge"),     // 10:20:00, the window opens
            (2370, "edge"),     // 10:40:00, it closes
            (3570, "schedule"), // 11:00:00
            (7170, "schedule"), // 12:00:00
        ]
    );
    s.task.abort();
}

/// A good SIGHUP is enforced at once, not at the next tick (seen: a stop an hour late).
#[tokio::test(start_paused = true)]
async fn a_good_reload_sweeps_at_once_and_a_bad_one_changes_nothing() {
    let s = start(HOURLY).await;
    advance(60).await;
    std::fs::write(
        s.dir.path().join("stopd.toml"),
        format!("{HOURLY}[[timeout]]\nname = \"t\"\nmax_duration = \"1h\"\n"),
    )
    .unwrap();
    s.events.send(Event::Reload).unwrap();
    advance(1).await;
    std::fs::write(
        s.dir.path().join("stopd.toml"),
        "[daemon]\nschedule = \"nonsense\"\n",
    )
    .unwrap();
    s.events.send(Event::Reload).unwrap();
    advance(60).await;
    assert_eq!(s.sweeps(), [(0, "startup"), (60, "reload")]);
    assert_eq!(*s.sweeps.reconfigured.lock().unwrap(), 1);
    s.task.abort();
}

/// An exemption or freeze added with the CLI is seen within seconds.
#[tokio::test(start_paused = true)]
async fn a_database_change_sweeps_at_once() {
    let s = start(HOURLY).await;
    advance(100).await;
    s.events.send(Event::DatabaseChanged).unwrap();
    advance(1).await;
    assert_eq!(s.sweeps(), [(0, "startup"), (100, "database-changed")]);
    s.task.abort();
}

/// A sweep that fails at a window edge is retried with backoff, not for the same past edge
/// in a loop; the backoff is capped at the schedule's interval.
#[tokio::test(start_paused = true)]
async fn a_failing_sweep_backs_off_up_to_the_schedule_interval() {
    let s = start(
        "[daemon]\nschedule = \"*/30 * * * * *\"\n[[freeze]]\nname = \"f\"\nstart = \"2026-12-01T10:00:40Z\"\nend = \"2026-12-01T12:00:00Z\"\n")
    .await;
    advance(5).await;
    *s.sweeps.fail.lock().unwrap() = true;
    advance(120).await;
    let times: Vec<i64> = s.sweeps().iter().map(|(t, _)| *t).collect();
    // 0 ok; 10 (edge) fails, then +1, +2, +4, +8, +16, then capped at 30 s.
    assert_eq!(
        times,
        [0, 10, 11, 13, 17, 25, 41, 71, 101],
        "{:?}",
        s.sweeps()
    );
    *s.sweeps.fail.lock().unwrap() = false;
    advance(60).await;
    let after: Vec<_> = s.sweeps().into_iter().skip(9).collect();
    assert_eq!(
        after,
        [(131, "retry"), (150, "schedule"), (180, "schedule")]
    );
    s.task.abort();
}

/// A term that ended before it was set up leads nothing: no takeover sweep (it would run
/// with the term's cancelled engines), no scheduled one; the next live term does.
#[tokio::test(start_paused = true)]
async fn a_term_lost_before_it_was_set_up_does_not_lead() {
    let s = start_as("[daemon]\nschedule = \"*/30 * * * * *\"\n", true).await;
    *s.sweeps.lost.lock().unwrap() = true;
    s.events.send(Event::Leading(1)).unwrap();
    advance(100).await;
    assert_eq!(s.sweeps(), []);
    *s.sweeps.lost.lock().unwrap() = false;
    s.events.send(Event::Leading(2)).unwrap();
    advance(31).await;
    assert_eq!(s.sweeps(), [(100, "takeover"), (120, "schedule")]);
    s.task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_ends_the_loop() {
    let s = start(HOURLY).await;
    advance(10).await;
    s.events.send(Event::Shutdown("SIGTERM")).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(1), s.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended, Ended::Shutdown);
}
