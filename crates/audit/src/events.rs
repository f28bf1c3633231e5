//! Daemon lifecycle events: start, reload, clean stop, an unclean stop found at the next start,
//! (with `[ha]`) leadership taken and lost, and (with `[events]`) the event queue found
//! unreadable and readable again. Each is an audit record (chained), and each
//! carries the node that recorded it ([`Store::set_node`]; none on a single host).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::chain::Chained;
use super::{LifecycleEvent, ReloadResult, Store, coverage, on_pool, ts, write_tx};
use crate::vocabulary::sql_in;

/// At most this many `unwatched` windows are recorded for one gap (the latest ones): a daemon
/// down for a month under an hourly freeze reports its last hundred windows, and says in the
/// log how many more there were.
pub const UNWATCHED_MAX: usize = 100;

/// One lifecycle event, as `report --events` prints it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRecord {
    /// Row id.
    pub id: i64,
    /// When (for `unclean_stop`: the last sign of life of that process).
    pub at: String,
    /// `start`, `reload`, `stop`, `unclean_stop`, `leader_acquired`, `leader_lost`,
    /// `events_failed` or `events_resumed`.
    pub event: String,
    /// The node that recorded it (`[ha] node`); none on a single host.
    pub node: Option<String>,
    /// `leader_acquired` and `leader_lost`: the lease's epoch.
    pub epoch: Option<i64>,
    /// The daemon's process id.
    pub pid: i64,
    /// `start`: the version of stopd.
    pub version: Option<String>,
    /// `start` and `reload`: SHA-256 of the policy file in force after it, hex.
    pub policy_hash: Option<String>,
    /// `reload`: `ok` or `refused`.
    pub result: Option<String>,
    /// A refused reload's error; an unclean stop's evidence; why leadership was lost; the event
    /// queue and why it cannot be read (`events_failed`), or that it can again.
    pub detail: Option<String>,
}

/// The optional columns of a lifecycle event.
#[derive(Debug, Default)]
struct Fields<'a> {
    hash: Option<&'a str>,
    result: Option<ReloadResult>,
    detail: Option<&'a str>,
    epoch: Option<i64>,
}

/// What a `start` found of the run before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncleanStop {
    /// The process that did not stop cleanly.
    pub pid: i64,
    /// Its last sign of life (its last sweep, or its start).
    pub last_seen: String,
}

/// A freeze window of the policy being started, as [`Store::record_start`] asks for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedWindow {
    /// The freeze.
    pub rule: String,
    /// Its first instant in force.
    pub start: DateTime<Utc>,
    /// Its first instant no longer in force.
    pub end: DateTime<Utc>,
}

/// The freeze windows that start in `[from, to)`: the policy the starting daemon loaded.
pub type WindowsStarting<'a> =
    &'a (dyn Fn(DateTime<Utc>, DateTime<Utc>) -> Vec<StartedWindow> + Sync);

/// A freeze window that began while no daemon was running (an `unwatched_windows` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unwatched {
    /// The freeze.
    pub rule: String,
    /// The window's start and end (RFC 3339 UTC).
    pub window_start: String,
    /// End, exclusive.
    pub window_end: String,
    /// The daemon was not running from (RFC 3339 UTC)...
    pub gap_from: String,
    /// ...to: the start that found it.
    pub gap_to: String,
}

/// What a start recorded besides itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// The run before it did not stop cleanly.
    pub unclean: Option<UncleanStop>,
    /// Freeze windows that began since the run before it ended, oldest first.
    pub unwatched: Vec<Unwatched>,
    /// Windows that began in that gap beyond [`UNWATCHED_MAX`], not recorded.
    pub unwatched_left_out: usize,
    /// [`Store::record_start_try`] (again) found this process's start already recorded (an earlier
    /// try committed, and its answer was lost): nothing was recorded now, and the fields
    /// above are empty (what that try found is in the log).
    pub already_recorded: bool,
}

impl Store {
    /// Records a start. First, if this node's run before it never recorded a stop, an
    /// `unclean_stop` at that run's last sign of life (another node's runs are its own: a start
    /// of node B never declares node A's running process unclean); then the start; then, in the same transaction, each
    /// window of `windows` that began while no daemon was running (from the end of the run
    /// before to `at`, as coverage counts it) as an `unwatched_windows` row, the outbox of the
    /// `unwatched` notification. One transaction: a start is recorded with everything it found,
    /// or not at all (and the next start finds the same gap, longer).
    pub async fn record_start(
        &self,
        at: DateTime<Utc>,
        version: &str,
        policy_hash: Option<&str>,
        windows: WindowsStarting<'_>,
    ) -> Result<Started> {
        self.record_start_try(at, version, policy_hash, windows, false)
            .await
    }

    /// [`Store::record_start`], `again` when a try before failed: if that try's COMMIT went
    /// through and only its answer was lost, this node's last start is this process's own
    /// (same node and pid): the start is on record, and nothing is recorded again
    /// ([`Started::already_recorded`]; a plain `record_start` would take it for a run before
    /// that never stopped, and record an `unclean_stop` of this very process). Only on a
    /// retry: on a first try, a last start of the same pid is another process's (pids repeat:
    /// a container's daemon is often pid 1).
    pub async fn record_start_try(
        &self,
        at: DateTime<Utc>,
        version: &str,
        policy_hash: Option<&str>,
        windows: WindowsStarting<'_>,
        again: bool,
    ) -> Result<Started> {
        /// The last start or stop, by name.
        #[derive(sqlx::FromRow)]
        struct Last {
            event: LifecycleEvent,
            pid: i64,
            at: String,
        }
        let node = self.node();
        write_tx!(self, |tx| {
            let bounds = sql_in(
                [
                    LifecycleEvent::Start,
                    LifecycleEvent::Stop,
                    LifecycleEvent::UncleanStop,
                ]
                .iter()
                .map(|e| e.as_str()),
            );
            let mut unclean = None;
            // This node's own runs; and, for a named node, a single host's run without a node
            // left open (a log copied from a daemon that was then killed, or never stopped):
            // nothing else would ever close it.
            let owners: &[Option<&str>] = match node.as_deref() {
                Some(n) => &[Some(n), None],
                None => &[None],
            };
            for owner in owners {
                let last: Option<Last> = sqlx::query_as(&format!(
                    "SELECT event, pid, at FROM lifecycle_events \
                     WHERE event IN {bounds} AND node IS NOT DISTINCT FROM $1 ORDER BY id DESC LIMIT 1"
                ))
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let own = i64::from(std::process::id());
                if again
                    && *owner == node.as_deref()
                    && matches!(&last, Some(l) if l.event == LifecycleEvent::Start && l.pid == own)
                {
                    // This process's start, committed by the try before: done.
                    return Ok(Started {
                        already_recorded: true,
                        ..Started::default()
                    });
                }
                if let Some(Last {
                    event: LifecycleEvent::Start,
                    pid,
                    at: started,
                }) = last
                {
                    // Its last sign of life: its last event (of this node: pids repeat across
                    // hosts), or the last sweep it started or finished (a run it left open
                    // included; sweeps name no node, only the leader sweeps).
                    let seen: String = sqlx::query_scalar(
                        "SELECT MAX(t) FROM ( \
                           SELECT at AS t FROM lifecycle_events \
                             WHERE pid = $1 AND at >= $2 AND node IS NOT DISTINCT FROM $3 \
                           UNION ALL SELECT started_at FROM sweeps WHERE pid = $1 AND started_at >= $2 \
                           UNION ALL SELECT r.finished_at FROM sweep_results r JOIN sweeps s ON s.id = r.sweep_id \
                             WHERE s.pid = $1 AND s.started_at >= $2 \
                           UNION ALL SELECT last_finished_at FROM sweep_runs \
                             WHERE pid = $1 AND first_started_at >= $2 \
                           UNION ALL SELECT last_finished_at FROM sweep_run_open \
                             WHERE pid = $1 AND first_started_at >= $2) AS q",
                    )
                    .bind(pid)
                    .bind(&started)
                    .bind(owner)
                    .fetch_one(&mut *tx)
                    .await?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO lifecycle_events (at, event, pid, detail, node) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(&seen)
                    .bind(LifecycleEvent::UncleanStop)
                    .bind(pid)
                    .bind(format!(
                        "pid {pid}, started {started}, recorded no stop; last sign of life {seen}"
                    ))
                    .bind(owner)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.link("lifecycle_events", id).await?;
                    unclean.get_or_insert(UncleanStop {
                        pid,
                        last_seen: seen,
                    });
                }
            }
            // The gap this start ends, read from the lifecycle events as coverage reads them.
            let events: Vec<coverage::Lifecycle> = sqlx::query_as(&format!(
                "SELECT {} FROM lifecycle_events ORDER BY at, id",
                coverage::LIFECYCLE_COLUMNS
            ))
            .fetch_all(&mut *tx)
            .await?;
            let events = events
                .into_iter()
                .map(coverage::Lifecycle::timed)
                .collect::<Result<Vec<_>>>()?;
            let gap = coverage::downtime_before(&events, at);
            let start_id: i64 = sqlx::query_scalar(
                "INSERT INTO lifecycle_events (at, event, pid, version, policy_hash, node) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(ts(at))
            .bind(LifecycleEvent::Start)
            .bind(i64::from(std::process::id()))
            .bind(version)
            .bind(policy_hash)
            .bind(&node)
            .fetch_one(&mut *tx)
            .await?;
            tx.link("lifecycle_events", start_id).await?;
            let mut started = Started {
                unclean,
                ..Started::default()
            };
            if let Some((from, to)) = gap {
                let mut found: Vec<StartedWindow> = windows(from, to)
                    .into_iter()
                    .filter(|w| from <= w.start && w.start < to)
                    .collect();
                found.sort_by(|a, b| (a.start, &a.rule).cmp(&(b.start, &b.rule)));
                started.unwatched_left_out = found.len().saturating_sub(UNWATCHED_MAX);
                for w in found.into_iter().skip(started.unwatched_left_out) {
                    let u = Unwatched {
                        rule: w.rule,
                        window_start: ts(w.start),
                        window_end: ts(w.end),
                        gap_from: ts(from),
                        gap_to: ts(to),
                    };
                    // A window already reported (a clock that went back) is not reported again.
                    let id: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO unwatched_windows \
                         (found_at, start_event_id, rule, window_start, window_end, gap_from, gap_to) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING id",
                    )
                    .bind(ts(at))
                    .bind(start_id)
                    .bind(&u.rule)
                    .bind(&u.window_start)
                    .bind(&u.window_end)
                    .bind(&u.gap_from)
                    .bind(&u.gap_to)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(id) = id {
                        tx.link("unwatched_windows", id).await?;
                        started.unwatched.push(u);
                    }
                }
            }
            tx.commit().await.context("cannot record the start")?;
            Ok(started)
        })
    }

    /// Records a reload: `Ok(hash)` for a policy now in force, `Err(error)` for a refused one.
    /// `note` is the detail of a policy in force that does not enforce all of itself (rules set
    /// aside because their calendar cannot be read): the reload is `ok`, since that file is
    /// the policy in force, and the detail says what of it is not.
    pub async fn record_reload(
        &self,
        at: DateTime<Utc>,
        result: Result<Option<&str>, &str>,
        note: Option<&str>,
    ) -> Result<()> {
        let (outcome, hash, detail) = match result {
            Ok(hash) => (ReloadResult::Ok, hash, note),
            Err(e) => (ReloadResult::Refused, None, Some(e)),
        };
        let fields = Fields {
            hash,
            result: Some(outcome),
            detail,
            epoch: None,
        };
        self.record_event(at, LifecycleEvent::Reload, fields)
            .await
            .context("cannot record the reload")
    }

    /// Records a clean stop.
    pub async fn record_stop(&self, at: DateTime<Utc>) -> Result<()> {
        self.record_event(at, LifecycleEvent::Stop, Fields::default())
            .await
            .context("cannot record the stop")
    }

    /// Records that this node ([`Store::set_node`]) took the lease and leads at `epoch`.
    pub async fn record_leader_acquired(&self, at: DateTime<Utc>, epoch: i64) -> Result<()> {
        let fields = Fields {
            epoch: Some(epoch),
            ..Fields::default()
        };
        self.record_event(at, LifecycleEvent::LeaderAcquired, fields)
            .await
            .context("cannot record the leadership taken")
    }

    /// Records that this node gave up or lost the lease of `epoch`, and why.
    pub async fn record_leader_lost(
        &self,
        at: DateTime<Utc>,
        epoch: i64,
        reason: &str,
    ) -> Result<()> {
        let fields = Fields {
            epoch: Some(epoch),
            detail: Some(reason),
            ..Fields::default()
        };
        self.record_event(at, LifecycleEvent::LeaderLost, fields)
            .await
            .context("cannot record the leadership lost")
    }

    /// Records a change in whether the event queue `queue_url` can be read, judged against the
    /// lifecycle log rather than the caller's memory: with `error` (it cannot), an
    /// `events_failed` (detail: `QUEUE cannot be read: ERROR`) unless the latest
    /// `events_failed`/`events_resumed` of this queue, of any node, is already an
    /// `events_failed`; without (it can), an `events_resumed` (detail: `QUEUE can be read
    /// again`) if the latest is an `events_failed`. So an outage is one record (and one
    /// notification) however many polls fail, daemons restart or leaders change; and another
    /// queue's outage (a `queue_url` changed by a reload) neither hides nor ends this one's.
    /// The queue is the detail's start, `QUEUE ` (compared as a prefix, not with `LIKE`,
    /// whose wildcards a URL may hold). The read and the write are one transaction
    /// under the log's write lock: two nodes never both record one change. Returns the event
    /// recorded, if any.
    pub async fn record_events_state(
        &self,
        at: DateTime<Utc>,
        queue_url: &str,
        error: Option<&str>,
    ) -> Result<Option<LifecycleEvent>> {
        let node = self.node();
        let kinds = sql_in(
            [LifecycleEvent::EventsFailed, LifecycleEvent::EventsResumed]
                .iter()
                .map(|e| e.as_str()),
        );
        write_tx!(self, |tx| {
            let latest: Option<LifecycleEvent> = sqlx::query_scalar(&format!(
                "SELECT event FROM lifecycle_events WHERE event IN {kinds} \
                 AND substr(detail, 1, length($1) + 1) = $1 || ' ' ORDER BY id DESC LIMIT 1"
            ))
            .bind(queue_url)
            .fetch_optional(&mut *tx)
            .await?;
            let failed = latest == Some(LifecycleEvent::EventsFailed);
            let (event, detail) = match error {
                Some(e) if !failed => (
                    LifecycleEvent::EventsFailed,
                    format!("{queue_url} cannot be read: {e}"),
                ),
                None if failed => (
                    LifecycleEvent::EventsResumed,
                    format!("{queue_url} can be read again"),
                ),
                _ => return Ok(None),
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO lifecycle_events (at, event, pid, detail, node) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(ts(at))
            .bind(event)
            .bind(i64::from(std::process::id()))
            .bind(&detail)
            .bind(&node)
            .fetch_one(&mut *tx)
            .await?;
            tx.link("lifecycle_events", id).await?;
            tx.commit()
                .await
                .context("cannot record the event queue's state")?;
            Ok(Some(event))
        })
    }

    /// One lifecycle event of this process and node, chained.
    async fn record_event(
        &self,
        at: DateTime<Utc>,
        event: LifecycleEvent,
        f: Fields<'_>,
    ) -> Result<()> {
        let node = self.node();
        write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO lifecycle_events (at, event, pid, policy_hash, result, detail, node, epoch) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(ts(at))
            .bind(event)
            .bind(i64::from(std::process::id()))
            .bind(f.hash)
            .bind(f.result)
            .bind(f.detail)
            .bind(&node)
            .bind(f.epoch)
            .fetch_one(&mut *tx)
            .await?;
            tx.link("lifecycle_events", id).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Lifecycle events at or after `since` and before `until`, oldest first.
    pub async fn events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<EventRecord>> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, at, event, node, epoch, pid, version, policy_hash, result, detail \
             FROM lifecycle_events \
             WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR at < $2) ORDER BY at, id",
        )
        .bind(since.map(ts))
        .bind(until.map(ts))
        .fetch_all(pool)
        .await)
        .context("cannot read the lifecycle events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SweepTrigger;

    #[tokio::test]
    async fn a_start_after_a_start_without_a_stop_records_the_unclean_stop_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let t0: DateTime<Utc> = "2026-12-19T23:00:00Z".parse().unwrap();
        let m = chrono::Duration::minutes;
        assert_eq!(
            store
                .record_start(t0, "1.0", Some("aa"), &|_, _| vec![])
                .await
                .unwrap()
                .unclean,
            None
        );
        let s = store
            .begin_sweep(t0 + m(1), SweepTrigger::Schedule, false)
            .await
            .unwrap();
        store
            .finish_sweep(s, t0 + m(2), std::time::Duration::ZERO, &Default::default())
            .await
            .unwrap();
        // Killed: no stop. The next start finds it.
        let unclean = store
            .record_start(t0 + m(600), "1.0", Some("aa"), &|_, _| vec![])
            .await
            .unwrap()
            .unclean
            .expect("an unclean stop");
        assert_eq!(unclean.last_seen, ts(t0 + m(2)));
        store
            .record_reload(t0 + m(601), Err("bad"), None)
            .await
            .unwrap();
        store
            .record_reload(t0 + m(602), Ok(Some("bb")), None)
            .await
            .unwrap();
        store.record_stop(t0 + m(603)).await.unwrap();
        // A clean stop: the next start finds nothing.
        assert_eq!(
            store
                .record_start(t0 + m(700), "1.0", None, &|_, _| vec![])
                .await
                .unwrap()
                .unclean,
            None
        );
        let kinds: Vec<(String, String, Option<String>)> = store
            .events(None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.at, e.event, e.result))
            .collect();
        let at = |k| ts(t0 + m(k));
        assert_eq!(
            kinds,
            [
                (at(0), "start".into(), None),
                (at(2), "unclean_stop".into(), None),
                (at(600), "start".into(), None),
                (at(601), "reload".into(), Some("refused".into())),
                (at(602), "reload".into(), Some("ok".into())),
                (at(603), "stop".into(), None),
                (at(700), "start".into(), None),
            ]
        );
        assert!(store.verify().await.unwrap().intact());
    }

    /// An hourly window (on the hour, 10 minutes long) and a one-off one; the daemon killed
    /// at 01:30 (last sign of life 01:31) and started at 04:20: the windows of 02:00, 03:00
    /// and 04:00 began unwatched, 01:00 (watched) and 05:00 (later) did not. A second start
    /// after a clean stop finds only its own gap.
    #[tokio::test]
    async fn a_start_records_each_window_that_began_since_the_run_before_ended_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let t = |s: &str| -> DateTime<Utc> { format!("2026-12-20T{s}Z").parse().unwrap() };
        let hourly = |from: DateTime<Utc>, to: DateTime<Utc>| -> Vec<StartedWindow> {
            (0..24)
                .map(|h| t(&format!("{h:02}:00:00")))
                .filter(|s| *s + chrono::Duration::minutes(10) > from && *s < to)
                .map(|s| StartedWindow {
                    rule: "hourly".into(),
                    start: s,
                    end: s + chrono::Duration::minutes(10),
                })
                .chain(
                    (t("03:30:00") < to && t("09:00:00") > from).then(|| StartedWindow {
                        rule: "one-off".into(),
                        start: t("03:30:00"),
                        end: t("09:00:00"),
                    }),
                )
                .collect()
        };
        let none = store
            .record_start(t("00:55:00"), "1.0", None, &hourly)
            .await
            .unwrap();
        assert_eq!(none, Started::default(), "a first start knows no gap");
        let s = store
            .begin_sweep(t("01:31:00"), SweepTrigger::Schedule, false)
            .await
            .unwrap();
        store
            .finish_sweep(
                s,
                t("01:31:00"),
                std::time::Duration::ZERO,
                &Default::default(),
            )
            .await
            .unwrap();
        let started = store
            .record_start(t("04:20:00"), "1.0", None, &hourly)
            .await
            .unwrap();
        assert!(started.unclean.is_some());
        let got: Vec<(&str, &str, &str, &str)> = started
            .unwatched
            .iter()
            .map(|u| {
                (
                    u.rule.as_str(),
                    &u.window_start[11..19],
                    &u.gap_from[11..19],
                    &u.gap_to[11..19],
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("hourly", "02:00:00", "01:31:00", "04:20:00"),
                ("hourly", "03:00:00", "01:31:00", "04:20:00"),
                ("one-off", "03:30:00", "01:31:00", "04:20:00"),
                ("hourly", "04:00:00", "01:31:00", "04:20:00"),
            ]
        );
        store.record_stop(t("04:30:00")).await.unwrap();
        let again = store
            .record_start(t("06:10:00"), "1.0", None, &hourly)
            .await
            .unwrap();
        let starts: Vec<&str> = again
            .unwatched
            .iter()
            .map(|u| &u.window_start[11..19])
            .collect();
        assert_eq!(starts, ["05:00:00", "06:00:00"]);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM unwatched_windows")
            .fetch_one(store.pool().unwrap())
            .await
            .unwrap();
        assert_eq!(rows, 6);
        assert!(store.verify().await.unwrap().intact());
    }
}
