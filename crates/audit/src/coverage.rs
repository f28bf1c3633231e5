//! Coverage: was the daemon watching during each freeze window? Derived from sweeps and
//! lifecycle events (DESIGN.md, "Verifiable audit").
//!
//! - A sweep that finished without error **covers** from the margin (5 s) before it began to
//!   `2 x schedule interval + 5 s` after it finished: the next sweep was due within that.
//! - A node is **running** from each of its `start`s to its next `stop` or `unclean_stop`
//!   (dated at its last sign of life), or to now; the daemon is running while any node is (on
//!   a single host: the one, whose events carry no node). Before the first lifecycle event ever
//!   recorded (a log older than lifecycle events), running is not known and is not held
//!   against it.
//! - With leader election (`[ha]`, PostgreSQL), a **leadership term** runs from a node's
//!   `leader_acquired` to its `leader_lost`, its `stop` or `unclean_stop`, or the next
//!   `leader_acquired` of any node, whichever comes first. From the log's first leader event
//!   on, time when some node runs but no term is open is **leaderless** (only the leader
//!   sweeps). Before it (a single host, or a log moved to PostgreSQL with `stopd copy`) nothing
//!   is leaderless.
//! - Time before the audit log's **first start** (its first `start` event, or its first sweep
//!   when that is older: a log from before lifecycle events, or of `run --once` alone) is not a
//!   gap: stopd was not installed yet. It is reported apart, as `before_first_start`.
//! - Inside a window, from the first start on, time that is not both covered and running is a
//!   **gap**, cut where its cause changes: `not_running` (no node running), else `no_leader`
//!   (nodes running, none leading), else `sweep_failed` (a sweep began in or just before it
//!   and failed or never finished), else `late` (no sweep came in time).
//! - A sweep a clean shutdown interrupted (`result = 'interrupted'`) counts for neither: it
//!   neither covers nor fails, and the time after the stop is `not_running`.

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{LifecycleEvent, Store, SweepEnd, on_pool, parse_ts, ts};

/// The margin after twice the schedule's interval.
pub const MARGIN: Duration = Duration::seconds(5);

/// One sweep, as coverage sees it.
#[derive(Debug, Clone)]
pub struct SweepSpan {
    /// Began.
    pub started: DateTime<Utc>,
    /// Finished (`None`: never, the process died during it).
    pub finished: Option<DateTime<Utc>>,
    /// Finished without an error.
    pub ok: bool,
}

/// A time span `[from, to)`.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// A gap in coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// From (RFC 3339 UTC).
    pub from: String,
    /// To, exclusive.
    pub to: String,
    /// `not_running`, `no_leader`, `sweep_failed` or `late`.
    pub cause: &'static str,
}

/// A span of time, `[from, to)`, in RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// From.
    pub from: String,
    /// To, exclusive.
    pub to: String,
}

/// Coverage of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowCoverage {
    /// The freeze rule.
    pub rule: String,
    /// Window start (cut to the span asked for).
    pub window_start: String,
    /// Window end (cut to the span and to now).
    pub window_end: String,
    /// Seconds of the window the daemon was watching.
    pub watched_seconds: f64,
    /// The rest from the first start on, with causes.
    pub gaps: Vec<Gap>,
    /// The part of the window before the audit log's first start (not a gap), if any.
    pub before_first_start: Option<Period>,
}

/// Sorts and merges overlapping spans.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|(a, b)| a < b);
    spans.sort();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `window` minus the merged `spans`.
fn minus(window: Span, spans: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut at = window.0;
    for &(a, b) in spans {
        if b <= at || a >= window.1 {
            continue;
        }
        if a > at {
            out.push((at, a));
        }
        at = at.max(b);
    }
    if at < window.1 {
        out.push((at, window.1));
    }
    out
}

/// `window` intersected with the merged `spans`.
fn within(window: Span, spans: &[Span]) -> Vec<Span> {
    spans
        .iter()
        .map(|&(a, b)| (a.max(window.0), b.min(window.1)))
        .filter(|(a, b)| a < b)
        .collect()
}

/// A lifecycle event as coverage reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifeEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub event: LifecycleEvent,
    /// The node that recorded it (none on a single host).
    pub node: Option<String>,
}

/// When the daemon was running (any node), from lifecycle events in order (of time, then
/// id); `None`: nothing is known (no event at all).
pub fn running(events: &[LifeEvent], now: DateTime<Utc>) -> Option<Vec<Span>> {
    let first = events.first()?.at;
    // Before the first event: not known, so not held against it.
    let mut spans = vec![(DateTime::<Utc>::MIN_UTC, first)];
    let mut since: std::collections::BTreeMap<Option<&str>, DateTime<Utc>> = Default::default();
    for e in events {
        let node = e.node.as_deref();
        match e.event {
            LifecycleEvent::Start => {
                since.entry(node).or_insert(e.at);
            }
            LifecycleEvent::Stop | LifecycleEvent::UncleanStop => {
                if let Some(s) = since.remove(&node) {
                    spans.push((s, e.at.max(s)));
                }
            }
            LifecycleEvent::Reload
            | LifecycleEvent::LeaderAcquired
            | LifecycleEvent::LeaderLost
            | LifecycleEvent::EventsFailed
            | LifecycleEvent::EventsResumed => {}
        }
    }
    spans.extend(since.into_values().map(|s| (s, now.max(s))));
    Some(merge(spans))
}

/// When some node was running but none leading (see the module docs), from the log's first
/// leader event on; empty in a log without one.
pub fn leaderless(events: &[LifeEvent], now: DateTime<Utc>) -> Vec<Span> {
    let Some(from) = events
        .iter()
        .find(|e| {
            matches!(
                e.event,
                LifecycleEvent::LeaderAcquired | LifecycleEvent::LeaderLost
            )
        })
        .map(|e| e.at)
    else {
        return Vec::new();
    };
    let mut terms = Vec::new();
    let mut open: Option<(Option<&str>, DateTime<Utc>)> = None;
    for e in events {
        let node = e.node.as_deref();
        match e.event {
            LifecycleEvent::LeaderAcquired => {
                if let Some((_, s)) = open.take() {
                    terms.push((s, e.at.max(s)));
                }
                open = Some((node, e.at));
            }
            LifecycleEvent::LeaderLost | LifecycleEvent::Stop | LifecycleEvent::UncleanStop => {
                if let Some((_, s)) = open.take_if(|(n, _)| *n == node) {
                    terms.push((s, e.at.max(s)));
                }
            }
            LifecycleEvent::Start
            | LifecycleEvent::Reload
            | LifecycleEvent::EventsFailed
            | LifecycleEvent::EventsResumed => {}
        }
    }
    if let Some((_, s)) = open {
        terms.push((s, now.max(s)));
    }
    let terms = merge(terms);
    let up = running(events, now).unwrap_or_default();
    within((from, now.max(from)), &up)
        .into_iter()
        .flat_map(|s| minus(s, &terms))
        .collect()
}

/// The time the daemon was not running that ends at `at` (a start): from the end of the run
/// before it (its clean stop, or an unclean stop's last sign of life) to `at`, as
/// [`running`] reads `events` (every lifecycle event before this start). `None` when nothing is
/// known (no event at all) or the run before it reaches `at` (a clock that went back).
pub fn downtime_before(events: &[LifeEvent], at: DateTime<Utc>) -> Option<Span> {
    let up = running(events, at)?;
    minus((DateTime::<Utc>::MIN_UTC, at), &up)
        .pop()
        .filter(|(_, to)| *to == at)
}

/// Coverage of `window` by `sweeps` while `running`, from `first_start` on (see the module
/// docs; `DateTime::MAX_UTC` when nothing ever started); `leaderless` ([`leaderless`]) names
/// the gaps `no_leader`.
pub fn cover(
    rule: &str,
    window: Span,
    sweeps: &[SweepSpan],
    running: Option<&[Span]>,
    leaderless: &[Span],
    interval: Duration,
    first_start: DateTime<Utc>,
) -> WindowCoverage {
    let before = (window.0, first_start.min(window.1));
    let window = (first_start.clamp(window.0, window.1), window.1);
    let after = interval * 2 + MARGIN;
    let covered = merge(
        sweeps
            .iter()
            .filter(|s| s.ok)
            .filter_map(|s| Some((s.started - MARGIN, s.finished? + after)))
            .collect(),
    );
    // What a failed (or unfinished) sweep is blamed for: the time it would have covered.
    let failed = merge(
        sweeps
            .iter()
            .filter(|s| !s.ok)
            .map(|s| (s.started - MARGIN, s.finished.unwrap_or(s.started) + after))
            .collect(),
    );
    let always = [(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC)];
    let running = running.unwrap_or(&always);
    let watched: Vec<Span> = within(window, &covered)
        .into_iter()
        .flat_map(|w| within(w, running))
        .collect();
    let watched_ms: i64 = watched
        .iter()
        .map(|(a, b)| (*b - *a).num_milliseconds())
        .sum();
    let mut gaps = Vec::new();
    for gap in minus(window, &merge(watched)) {
        // Cut where the daemon was not running.
        let up = within(gap, running);
        let mut pieces: Vec<(Span, &'static str)> = minus(gap, &up)
            .into_iter()
            .map(|s| (s, "not_running"))
            .collect();
        for up in up {
            pieces.extend(within(up, leaderless).into_iter().map(|s| (s, "no_leader")));
            for s in minus(up, leaderless) {
                pieces.extend(within(s, &failed).into_iter().map(|f| (f, "sweep_failed")));
                pieces.extend(minus(s, &failed).into_iter().map(|l| (l, "late")));
            }
        }
        pieces.sort_by_key(|(s, _)| *s);
        gaps.extend(pieces.into_iter().map(|((a, b), cause)| Gap {
            from: ts(a),
            to: ts(b),
            cause,
        }));
    }
    WindowCoverage {
        rule: rule.to_owned(),
        window_start: ts(before.0),
        window_end: ts(window.1),
        watched_seconds: watched_ms as f64 / 1000.0,
        gaps,
        before_first_start: (before.0 < before.1).then(|| Period {
            from: ts(before.0),
            to: ts(before.1),
        }),
    }
}

impl Store {
    /// Sweeps that began in `[since, until)`, and runs of quiet sweeps that overlap it, for
    /// coverage; `gap` is the longest a sweep may come after the one before and still count
    /// as watched (twice the interval plus the margin).
    pub async fn sweep_spans(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        gap: Duration,
    ) -> Result<Vec<SweepSpan>> {
        /// A sweep: its start and end, its error, and whether a result was written. A sweep a
        /// clean shutdown interrupted is neither watched nor a failure: it is left out, and the
        /// time after the stop is `not_running` as for any stop.
        #[derive(sqlx::FromRow)]
        struct Row {
            started_at: String,
            finished_at: Option<String>,
            error: Option<String>,
            result_id: Option<i64>,
        }
        /// A run of quiet sweeps.
        #[derive(sqlx::FromRow)]
        struct Run {
            first_started_at: String,
            last_finished_at: String,
            max_gap_ms: i64,
        }
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
            "SELECT w.started_at, r.finished_at, r.error, r.sweep_id AS result_id FROM sweeps w \
             LEFT JOIN sweep_results r ON r.sweep_id = w.id \
             WHERE w.started_at >= $1 AND w.started_at < $2 \
               AND (r.result IS NULL OR r.result <> '{}') ORDER BY w.started_at",
            SweepEnd::Interrupted
        ))
        .bind(ts(since))
        .bind(ts(until))
        .fetch_all(pool)
        .await
        })
        .context("cannot read the sweep log")?;
        let mut spans = rows
            .into_iter()
            .map(|r| {
                Ok(SweepSpan {
                    started: parse_ts(&r.started_at)?,
                    finished: r.finished_at.as_deref().map(parse_ts).transpose()?,
                    ok: r.result_id.is_some() && r.error.is_none(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Runs of quiet sweeps, the one a daemon has open included: one span each when no
        // sweep in it came later than the gap coverage allows (so it is watched throughout);
        // otherwise only its two ends count.
        let runs: Vec<Run> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT first_started_at, last_finished_at, max_gap_ms FROM sweep_runs \
             WHERE last_finished_at >= $1 AND first_started_at < $2 \
             UNION ALL SELECT first_started_at, last_finished_at, max_gap_ms FROM sweep_run_open \
             WHERE last_finished_at >= $1 AND first_started_at < $2",
        )
        .bind(ts(since))
        .bind(ts(until))
        .fetch_all(pool)
        .await)
        .context("cannot read the sweep log")?;
        for run in runs {
            let (first, last) = (
                parse_ts(&run.first_started_at)?,
                parse_ts(&run.last_finished_at)?,
            );
            if Duration::milliseconds(run.max_gap_ms) <= gap {
                spans.push(SweepSpan {
                    started: first,
                    finished: Some(last),
                    ok: true,
                });
            } else {
                for t in [first, last] {
                    spans.push(SweepSpan {
                        started: t,
                        finished: Some(t),
                        ok: true,
                    });
                }
            }
        }
        Ok(spans)
    }

    /// The audit log's first start: its first `start` lifecycle event, or its first sweep
    /// (whole or in a run, the open one included) when that is older; `None` when nothing
    /// ever started.
    pub async fn first_start(&self) -> Result<Option<DateTime<Utc>>> {
        let at: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(&format!(
            "SELECT MIN(t) FROM ( \
               SELECT MIN(at) AS t FROM lifecycle_events WHERE event = '{}' \
               UNION ALL SELECT MIN(started_at) FROM sweeps \
               UNION ALL SELECT MIN(first_started_at) FROM sweep_runs \
               UNION ALL SELECT MIN(first_started_at) FROM sweep_run_open) AS q",
            LifecycleEvent::Start
        ))
        .fetch_one(pool)
        .await)
        .context("cannot read the sweep log")?;
        at.as_deref().map(parse_ts).transpose()
    }

    /// Every lifecycle event before `until`, oldest first.
    pub async fn lifecycle(&self, until: DateTime<Utc>) -> Result<Vec<LifeEvent>> {
        let rows: Vec<Lifecycle> = on_pool!(self, |pool| sqlx::query_as(&format!(
            "SELECT {LIFECYCLE_COLUMNS} FROM lifecycle_events WHERE at < $1 ORDER BY at, id"
        ))
        .bind(ts(until))
        .fetch_all(pool)
        .await)
        .context("cannot read the lifecycle events")?;
        rows.into_iter().map(Lifecycle::timed).collect()
    }
}

/// The columns of a [`Lifecycle`] row (`lifecycle_events`).
pub(crate) const LIFECYCLE_COLUMNS: &str = "at, event, node";

/// A lifecycle event's time, kind and node, as coverage reads them.
#[derive(sqlx::FromRow)]
pub(crate) struct Lifecycle {
    at: String,
    event: LifecycleEvent,
    node: Option<String>,
}

impl Lifecycle {
    /// A [`LifeEvent`], the time parsed.
    pub(crate) fn timed(self) -> Result<LifeEvent> {
        Ok(LifeEvent {
            at: parse_ts(&self.at)?,
            event: self.event,
            node: self.node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-12-20T{s}Z").parse().unwrap()
    }

    fn sweep(at: &str, ok: bool) -> SweepSpan {
        SweepSpan {
            started: t(at),
            finished: Some(t(at) + Duration::seconds(1)),
            ok,
        }
    }

    /// Events `(time, event, node)`.
    fn ev(v: &[(&str, &str, Option<&str>)]) -> Vec<LifeEvent> {
        v.iter()
            .map(|(a, e, n)| LifeEvent {
                at: t(a),
                event: e.parse().unwrap(),
                node: n.map(str::to_owned),
            })
            .collect()
    }

    fn gaps(c: &WindowCoverage) -> Vec<(String, String, &'static str)> {
        c.gaps
            .iter()
            .map(|g| (g.from[11..19].to_owned(), g.to[11..19].to_owned(), g.cause))
            .collect()
    }

    /// Every 30 s from 10:00 to 10:10, except: 10:03 to 10:04:30 failed, none from 10:05 to
    /// 10:06:30 (late), and the daemon killed after its 10:08 sweep (last sign of life 10:08:01)
    /// and back at 10:09. Interval 30 s: a sweep covers 65 s after it finished.
    #[test]
    fn gaps_are_cut_by_cause() {
        let mut sweeps = Vec::new();
        for m in 0..10 {
            for s in [0, 30] {
                let missing = (5..7).contains(&m) || (m, s) == (8, 30);
                if !missing {
                    sweeps.push(sweep(&format!("10:{m:02}:{s:02}"), !(3..5).contains(&m)));
                }
            }
        }
        let events = ev(&[
            ("09:00:00", "start", None),
            ("10:08:01", "unclean_stop", None),
            ("10:09:00", "start", None),
        ]);
        let run = running(&events, t("10:10:00")).unwrap();
        let c = cover(
            "r",
            (t("10:00:00"), t("10:10:00")),
            &sweeps,
            Some(&run),
            &leaderless(&events, t("10:10:00")),
            Duration::seconds(30),
            DateTime::<Utc>::MIN_UTC,
        );
        assert_eq!(
            gaps(&c),
            [
                // The last good sweep finished 10:02:31; the last failed one 10:04:31.
                ("10:03:36".into(), "10:05:36".into(), "sweep_failed"),
                // The next good one began 10:07:00 (the margin: 5 s before).
                ("10:05:36".into(), "10:06:55".into(), "late"),
                ("10:08:01".into(), "10:09:00".into(), "not_running"),
            ]
        );
        assert!(
            (c.watched_seconds - (600.0 - 258.0)).abs() < 0.01,
            "{}",
            c.watched_seconds
        );
    }

    #[test]
    fn downtime_before_a_start_runs_from_the_last_stop_or_sign_of_life() {
        let ev = |v: &[(&str, &str)]| -> Vec<LifeEvent> {
            ev(&v.iter().map(|(a, e)| (*a, *e, None)).collect::<Vec<_>>())
        };
        assert_eq!(downtime_before(&[], t("10:00:00")), None);
        let clean = ev(&[("09:00:00", "start"), ("09:10:00", "stop")]);
        assert_eq!(
            downtime_before(&clean, t("10:00:00")),
            Some((t("09:10:00"), t("10:00:00")))
        );
        let unclean = ev(&[
            ("08:00:00", "start"),
            ("08:05:00", "stop"),
            ("09:00:00", "start"),
            ("09:00:00", "reload"),
            ("09:20:30", "unclean_stop"),
        ]);
        assert_eq!(
            downtime_before(&unclean, t("10:00:00")),
            Some((t("09:20:30"), t("10:00:00")))
        );
        // A run still open (no stop recorded) reaches the start: no downtime.
        assert_eq!(
            downtime_before(&ev(&[("09:00:00", "start")]), t("10:00:00")),
            None
        );
    }

    #[test]
    fn a_log_without_lifecycle_events_holds_no_not_running_against_it() {
        assert_eq!(running(&[], t("10:00:00")), None);
        let c = cover(
            "r",
            (t("10:00:00"), t("10:10:00")),
            &[sweep("09:59:50", true)],
            None,
            &[],
            Duration::seconds(30),
            DateTime::<Utc>::MIN_UTC,
        );
        assert_eq!(gaps(&c), [("10:00:56".into(), "10:10:00".into(), "late")]);
    }
    /// Before the first start: neither watched nor a gap, reported apart; the rest as before.
    #[test]
    fn time_before_the_first_start_is_reported_apart_not_as_a_gap() {
        let events = ev(&[("10:05:00", "start", None)]);
        let run = running(&events, t("10:10:00")).unwrap();
        let sweeps = [sweep("10:05:01", true)];
        let window = (t("10:00:00"), t("10:10:00"));
        let c = cover(
            "r",
            window,
            &sweeps,
            Some(&run),
            &[],
            Duration::seconds(30),
            t("10:05:00"),
        );
        assert_eq!(c.window_start, ts(t("10:00:00")));
        assert_eq!(
            c.before_first_start,
            Some(Period {
                from: ts(t("10:00:00")),
                to: ts(t("10:05:00")),
            })
        );
        // Watched from the start to 10:05:02 + 65 s; late after.
        assert_eq!(gaps(&c), [("10:06:07".into(), "10:10:00".into(), "late")]);
        assert!(
            (c.watched_seconds - 67.0).abs() < 0.01,
            "{}",
            c.watched_seconds
        );
        // A window wholly before it: no gap at all; nothing ever started: the same.
        for first in [t("10:20:00"), DateTime::<Utc>::MAX_UTC] {
            let c = cover("r", window, &[], None, &[], Duration::seconds(30), first);
            assert!(c.gaps.is_empty());
            assert_eq!(c.watched_seconds, 0.0);
            assert_eq!(c.before_first_start.unwrap().to, ts(t("10:10:00")));
        }
    }

    /// Two nodes: running while either runs; a start of one never ends the other's run.
    #[test]
    fn the_daemon_runs_while_any_node_runs() {
        let events = ev(&[
            ("09:00:00", "start", Some("a")),
            ("09:10:00", "start", Some("b")),
            ("09:20:00", "stop", Some("a")),
            ("09:30:00", "start", Some("a")),
            ("09:40:00", "unclean_stop", Some("b")),
            ("09:45:00", "stop", Some("a")),
            ("09:50:00", "start", Some("b")),
        ]);
        let run = running(&events, t("10:00:00")).unwrap();
        assert_eq!(
            run,
            [
                (DateTime::<Utc>::MIN_UTC, t("09:45:00")),
                (t("09:50:00"), t("10:00:00"))
            ]
        );
        assert_eq!(
            downtime_before(&events[..6], t("09:50:00")),
            Some((t("09:45:00"), t("09:50:00")))
        );
        // Node b starting while a runs: no downtime before it.
        assert_eq!(downtime_before(&events[..1], t("09:10:00")), None);
    }

    /// Two nodes leading in turn: terms end at the leader's loss, stop or unclean stop, or at
    /// another node's acquisition; time with nodes running and no term open is `no_leader`,
    /// time with no node running `not_running`; before the first leader event, nothing is
    /// leaderless.
    #[test]
    fn time_without_a_leader_is_a_no_leader_gap() {
        let events = ev(&[
            ("10:00:00", "start", Some("a")),
            ("10:00:00", "start", Some("b")),
            ("10:00:01", "leader_acquired", Some("a")),
            // a loses the lease (a database hiccup); b takes it 20 s later.
            ("10:02:00", "leader_lost", Some("a")),
            ("10:02:20", "leader_acquired", Some("b")),
            // b is killed (its last sign of life 10:04:00); a takes over at 10:04:18.
            ("10:04:00", "unclean_stop", Some("b")),
            ("10:04:18", "leader_acquired", Some("a")),
            // a takes it again without losing it first (no gap), then stops cleanly.
            ("10:05:00", "leader_acquired", Some("a")),
            ("10:06:00", "stop", Some("a")),
        ]);
        let now = t("10:10:00");
        let nl = leaderless(&events, now);
        assert_eq!(
            nl,
            [
                // (10:00:00 to 10:00:01: before the log's first leader event, not leaderless.)
                (t("10:02:00"), t("10:02:20")),
                (t("10:04:00"), t("10:04:18")),
            ]
        );
        // The leader sweeps every 30 s while it leads (interval 30 s: covered 65 s after).
        let mut sweeps = Vec::new();
        for (from, to) in [
            ("10:00:01", "10:02:00"),
            ("10:02:20", "10:04:00"),
            ("10:04:18", "10:06:00"),
        ] {
            let mut at = t(from);
            while at < t(to) {
                sweeps.push(SweepSpan {
                    started: at,
                    finished: Some(at),
                    ok: true,
                });
                at += Duration::seconds(30);
            }
        }
        let run = running(&events, now).unwrap();
        let c = cover(
            "r",
            (t("10:00:00"), t("10:08:00")),
            &sweeps,
            Some(&run),
            &nl,
            Duration::seconds(30),
            t("10:00:00"),
        );
        assert_eq!(
            gaps(&c),
            [("10:06:00".into(), "10:08:00".into(), "not_running"),],
            "sweeps cover the short leaderless spans: only the stop is a gap"
        );
        // Without the sweeps that covered them, the leaderless spans are gaps of their own.
        let sparse: Vec<SweepSpan> = sweeps
            .iter()
            .filter(|s| s.started < t("10:01:00") || s.started >= t("10:05:00"))
            .cloned()
            .collect();
        let c = cover(
            "r",
            (t("10:00:00"), t("10:08:00")),
            &sparse,
            Some(&run),
            &nl,
            Duration::seconds(30),
            t("10:00:00"),
        );
        assert_eq!(
            gaps(&c),
            [
                ("10:01:36".into(), "10:02:00".into(), "late"),
                ("10:02:00".into(), "10:02:20".into(), "no_leader"),
                ("10:02:20".into(), "10:04:00".into(), "late"),
                ("10:04:00".into(), "10:04:18".into(), "no_leader"),
                ("10:04:18".into(), "10:05:13".into(), "late"),
                ("10:06:00".into(), "10:08:00".into(), "not_running"),
            ]
        );
        // A log without leader events (one host) has nothing leaderless.
        let single = ev(&[("10:00:00", "start", None)]);
        assert!(leaderless(&single, now).is_empty());
    }
}
