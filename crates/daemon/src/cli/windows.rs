//! `stopd windows`: the freeze windows in a span, in each rule's zone and in UTC (for an
//! `[[allow]]` rule, the time outside its windows, marked `outside`). Needs no AWS, but for a
//! Change Calendar (`change_calendar`): its state is asked now (GetCalendarState) and said on
//! stderr with its next transition, a line per calendar; its CLOSED window is listed.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use serde::Serialize;
use stopd_audit::Store;
use stopd_rules::{CalendarState, rfc3339};

use crate::cli::output::{self, Columns, OutputArgs};
use crate::cli::time::{human, parse_instant};
use crate::clock::Clock;
use crate::config::Config;

pub(super) const WINDOWS_EXAMPLES: &str = "\
Examples:
  # The next 30 days
  stopd windows
  # Two weeks from a date, every column
  stopd --config ./stopd.toml windows --from 2026-12-14 --days 14 --wide
  # For a calendar or a spreadsheet
  stopd windows --days 365 --format csv > freezes.csv";

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
pub(super) struct WindowsArgs {
    /// Start of the span (RFC 3339, or a local date-time in [defaults] timezone); default now.
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// Length of the span in days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
    days: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// A `windows` record.
#[derive(Debug, Serialize)]
struct WindowRecord {
    rule: String,
    start: String,
    end: String,
    timezone: String,
    start_local: String,
    end_local: String,
    /// Weekdays it spans in the rule's zone: `Fri-Mon`, `Sat`.
    weekday: String,
    /// Its length in words: `2 d 14 h`.
    duration: String,
    /// The freeze also holds new work at stage transitions.
    gate: bool,
    /// With `[[allow]]` rules only (the output of other policies is unchanged): whether the
    /// window is an allow rule's freeze, i.e. a time outside that rule's windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<bool>,
}

/// The most windows `stopd windows` lists at once.
const WINDOWS_MAX: usize = 10_000;

/// `stopd windows`.
pub(super) async fn run(cfg: &Config, args: WindowsArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let (from, days, opts) = (args.from.as_deref(), args.days, args.output);
    let now = clock.now();
    let from = match from {
        Some(t) => parse_instant("--from", t, cfg.policy.default_timezone(), now, false)?,
        None => now,
    };
    let to = from + Duration::days(i64::from(days));
    // Ad-hoc freezes (`stopd freeze add`) are one-off windows named adhoc-ID.
    let policy = if cfg.daemon.database.exists() {
        let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?)
            .await
            .context("cannot read the ad-hoc freezes")?;
        let freezes = store.freezes_between(from, to).await?;
        store.close().await;
        crate::runtime::freezes::with_freezes(&cfg.policy, &freezes)?
    } else {
        Arc::clone(&cfg.policy)
    };
    let calendars_ok = calendar_lines(cfg, &policy, now).await;
    let local = |t: DateTime<Utc>, tz: chrono_tz::Tz| {
        t.with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    let weekdays = |w: stopd_rules::Window, tz: chrono_tz::Tz| {
        let first = w.start.with_timezone(&tz).format("%a").to_string();
        // The end is exclusive: a window that ends at Monday 00:00 ends on Sunday.
        let last = (w.end - Duration::seconds(1))
            .with_timezone(&tz)
            .format("%a")
            .to_string();
        if first == last && w.end - w.start < Duration::days(1) {
            first
        } else {
            format!("{first}-{last}")
        }
    };
    // Only the windows shown are computed; a listing that reaches the cap says so.
    let mut windows = policy.windows_first(from, to, WINDOWS_MAX + 1);
    if windows.len() > WINDOWS_MAX {
        windows.truncate(WINDOWS_MAX);
        let last = windows.last().map(|w| rfc3339(w.window.start));
        eprintln!(
            "stopd: showing the first {WINDOWS_MAX} windows (to {}); use --from and --days to see later ones",
            last.unwrap_or_default()
        );
    }
    let has_allow = policy.has_allow_rules();
    let rows: Vec<WindowRecord> = windows
        .into_iter()
        .map(|w| WindowRecord {
            start: rfc3339(w.window.start),
            end: rfc3339(w.window.end),
            start_local: local(w.window.start, w.timezone),
            end_local: local(w.window.end, w.timezone),
            timezone: w.timezone.name().to_string(),
            weekday: weekdays(w.window, w.timezone),
            duration: human(w.window.end - w.window.start),
            gate: policy.rule(&w.rule).is_some_and(|r| r.gate.is_some()),
            allow: has_allow.then(|| policy.rule(&w.rule).is_some_and(|r| r.is_allow())),
            rule: w.rule,
        })
        .collect();
    let mut names = vec![
        "rule",
        "start",
        "end",
        "timezone",
        "start_local",
        "end_local",
        "weekday",
        "duration",
        "gate",
    ];
    if has_allow {
        names.push("allow");
    }
    let mut out = std::io::stdout().lock();
    output::write(
        &mut out,
        opts,
        &rows,
        Columns {
            names: &names,
            // The local times carry their UTC offset; the zone is the rule's (in --wide).
            wide_only: &["start", "end", "timezone", "gate"],
            whole: &["start_local", "end_local"],
            to_the_minute: &["start_local", "end_local"],
        },
        |r| {
            vec![
                r.rule.clone(),
                r.start.clone(),
                r.end.clone(),
                r.timezone.clone(),
                r.start_local.clone(),
                r.end_local.clone(),
                r.weekday.clone(),
                r.duration.clone(),
                r.gate.to_string(),
            ]
            .into_iter()
            // An allow rule's window is the time outside its windows: said so in the table.
            .chain(r.allow.map(|a| if a { "outside" } else { "" }.to_string()))
            .collect()
        },
    )?;
    Ok(if calendars_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Asks the policy's Change Calendars now and says each one's state and next transition on
/// stderr; `false` if one cannot be read (the listing lacks its windows).
async fn calendar_lines(cfg: &Config, policy: &stopd_rules::Policy, now: DateTime<Utc>) -> bool {
    let calendars = policy.change_calendars();
    if calendars.is_empty() {
        return true;
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let cores = crate::runtime::targets::build(cfg, cancel).await;
    let asked = crate::runtime::sweep::calendars::ask(policy, &cores, now).await;
    let many = cores.len() > 1;
    for (rule, c) in &calendars {
        let next = |n: Option<DateTime<Utc>>| n.map_or("none".to_string(), rfc3339);
        let words = |state: CalendarState| match state {
            CalendarState::Closed { next: n, .. } => {
                format!("CLOSED, next transition {}", next(n))
            }
            CalendarState::Open { next: n, .. } => format!("OPEN, next transition {}", next(n)),
            CalendarState::Unreadable(e) => format!("cannot be read: {e}"),
            CalendarState::Unknown => "not asked".to_string(),
        };
        let states = c.states_by_place();
        if states.is_empty() {
            eprintln!(
                "stopd: change calendar {} (rule {}): {}",
                output::escape(c.name()),
                output::escape(&rule.name),
                words(CalendarState::Unknown)
            );
        }
        // A name is asked in each place its rule selects: a line each (with [[account]]s).
        for ((account, region), state) in states {
            let place = if many && !account.is_empty() {
                format!(
                    ", account {} in {}",
                    output::escape(&account),
                    output::escape(&region)
                )
            } else {
                String::new()
            };
            eprintln!(
                "stopd: change calendar {} (rule {}{place}): {}",
                output::escape(c.name()),
                output::escape(&rule.name),
                words(state)
            );
        }
    }
    asked.error.is_none()
}
