//! The auditor's commands: `stopd verify` (the hash chain), and the audit reports that are
//! not stop records.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::cli::output::{self, Columns, OutputArgs};
use crate::config::Config;
use stopd_audit::Store;
use stopd_audit::coverage::{self, WindowCoverage};

/// `stopd verify`: exit 0 printing the record count and the head hash when the chain is
/// intact; exit 1 naming the first record altered, removed or inserted (and every table that
/// lost its append-only triggers).
pub async fn verify(
    cfg: &Config,
    digests: Option<(&Path, &Path)>,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?).await?;
    let checked = async {
        let mut v = store.verify().await?;
        let mut read = None;
        if let Some((dir, key)) = digests {
            let running = crate::cli::status::running(cfg, &store).await.0;
            let c = stopd_audit::digest::check(&store, dir, key, v.head_seq, running, now).await?;
            v.problems.extend(c.problems);
            read = Some((c.read, c.uncovered));
        }
        anyhow::Ok((v, read))
    }
    .await;
    store.close().await;
    let (v, digests_read) = checked?;
    if let Some((n, uncovered)) = digests_read
        && v.intact()
    {
        println!("{n} digest(s) signed and consistent with the log");
        if uncovered > 0 {
            println!(
                "{uncovered} record(s) after the newest digest are not yet covered by a signature \
                 (the next digest covers them; digests alone cannot show records cut from there)"
            );
        }
    }
    if v.intact() {
        println!(
            "audit log intact: {} records, head {} {}",
            v.records, v.head_seq, v.head_hash
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &v.problems {
        println!("TAMPERED: {p}");
    }
    println!(
        "{} records read; the chain is intact up to record {} ({})",
        v.records, v.head_seq, v.head_hash
    );
    Ok(ExitCode::from(1))
}

/// `report --events`: the daemon's lifecycle, oldest first.
pub async fn events(
    store: &Store,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    opts: OutputArgs,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let rows = store.events(since, until).await?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    crate::cli::common::write_rows(
        out,
        opts,
        &rows,
        Columns {
            names: &[
                "id",
                "at",
                "event",
                "node",
                "epoch",
                "pid",
                "version",
                "policy_hash",
                "result",
                "detail",
            ],
            wide_only: &["id", "version", "epoch"],
            whole: &["at"],
            to_the_minute: &[],
        },
        |r| {
            vec![
                r.id.to_string(),
                r.at.clone(),
                r.event.clone(),
                opt(&r.node),
                r.epoch.map(|e| e.to_string()).unwrap_or_default(),
                r.pid.to_string(),
                opt(&r.version),
                opt(&r.policy_hash),
                opt(&r.result),
                opt(&r.detail),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What `report --coverage` was asked.
#[derive(Debug, Clone)]
pub struct CoverageQuery<'a> {
    /// From (default: 30 days ago).
    pub since: Option<DateTime<Utc>>,
    /// To (default and at most: now).
    pub until: Option<DateTime<Utc>>,
    /// One rule's windows only.
    pub rule: Option<&'a str>,
    /// Exit 1 on any gap.
    pub fail_on_gap: bool,
}

/// The coverage of each freeze window in the span (see [`coverage()`]) at `now`, and the
/// schedule's interval it was judged by ([`crate::config::DaemonSettings::interval`]).
pub async fn coverage_rows(
    cfg: &Config,
    store: &Store,
    q: &CoverageQuery<'_>,
    now: DateTime<Utc>,
) -> Result<(Vec<WindowCoverage>, chrono::Duration)> {
    let until = q.until.unwrap_or(now).min(now);
    let since = q.since.unwrap_or(now - chrono::Duration::days(30));
    let interval = cfg.daemon.interval(now);
    let lead = interval * 2 + coverage::MARGIN;
    let sweeps = store.sweep_spans(since - lead, until, lead).await?;
    let lifecycle = store.lifecycle(until).await?;
    let running = coverage::running(&lifecycle, now);
    let leaderless = coverage::leaderless(&lifecycle, now);
    let first_start = store
        .first_start()
        .await?
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let rows = cfg
        .policy
        .windows(since, until)
        .into_iter()
        .filter(|w| q.rule.is_none_or(|r| r == w.rule))
        .filter_map(|w| {
            let span = (w.window.start.max(since), w.window.end.min(until));
            (span.0 < span.1).then(|| {
                coverage::cover(
                    &w.rule,
                    span,
                    &sweeps,
                    running.as_deref(),
                    &leaderless,
                    interval,
                    first_start,
                )
            })
        })
        .collect();
    Ok((rows, interval))
}

/// `report --coverage`: for each freeze window in the span, the time watched and each gap, at
/// `now`.
pub async fn coverage(
    cfg: &Config,
    store: &Store,
    q: &CoverageQuery<'_>,
    now: DateTime<Utc>,
    opts: OutputArgs,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (rows, interval) = coverage_rows(cfg, store, q, now).await?;
    let lead = interval * 2 + coverage::MARGIN;
    let gaps = rows.iter().map(|r| r.gaps.len()).sum::<usize>();
    output::write(
        out,
        opts,
        &rows,
        Columns {
            names: &[
                "rule",
                "window_start",
                "window_end",
                "watched_seconds",
                "gaps",
                "before_first_start",
            ],
            wide_only: &["before_first_start"],
            whole: &["window_start", "window_end"],
            to_the_minute: &[],
        },
        |r| {
            let gaps: Vec<String> = r
                .gaps
                .iter()
                .map(|g| format!("{} {}..{}", g.cause, g.from, g.to))
                .collect();
            vec![
                r.rule.clone(),
                r.window_start.clone(),
                r.window_end.clone(),
                format!("{:.3}", r.watched_seconds),
                gaps.join("; "),
                r.before_first_start
                    .as_ref()
                    .map(|b| format!("{}..{}", b.from, b.to))
                    .unwrap_or_default(),
            ]
        },
    )?;
    if opts.format == output::Format::Table {
        writeln!(
            out,
            "\n{} window(s), {gaps} gap(s); a sweep covers {} after it finished (2 x the schedule's {} + {})",
            rows.len(),
            crate::cli::time::human(lead),
            crate::cli::time::human(interval),
            crate::cli::time::human(coverage::MARGIN),
        )?;
        let before = rows
            .iter()
            .filter(|r| r.before_first_start.is_some())
            .count();
        if before > 0 {
            writeln!(
                out,
                "{before} window(s) reach back before the audit log's first start: that time is before_first_start, not a gap (--wide shows it)"
            )?;
        }
    }
    if q.fail_on_gap && gaps > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
