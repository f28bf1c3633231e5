//! `report --format html`: one self-contained page for auditors (no network, no external
//! assets): a timeline per rule (freeze windows as bands, coverage gaps in red, time before the
//! audit log's first start in grey (not a gap), stops as marks coloured by outcome), then the summary (rule x outcome) and the tables of coverage, stops
//! and lifecycle events.
//!
//! Every mark carries its data (`data-at`, `data-outcome`, ...) beside its position, so a test
//! can check that each is where the data says.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::cli::auditor::{CoverageQuery, coverage_rows};
use crate::config::Config;
use stopd_audit::{ReportFilter, Store, parse_ts};

/// Width of the timeline's SVG, and of its label column.
const WIDTH: f64 = 1000.0;
const LABEL: f64 = 180.0;
const ROW: f64 = 36.0;

/// What the page covers.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// From (default: 30 days ago).
    pub since: Option<DateTime<Utc>>,
    /// To (default and at most: now).
    pub until: Option<DateTime<Utc>>,
    /// One rule only.
    pub rule: Option<&'a str>,
    /// Times in the tables shown in this zone (UTC otherwise).
    pub tz: Option<chrono_tz::Tz>,
}

/// `text` safe inside HTML text and attribute values.
fn esc(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s
}

/// The colour of a stop's mark.
fn colour(outcome: &str) -> &'static str {
    match outcome {
        "stopped" | "already_stopping" | "not_stoppable" => "#2e7d32",
        "failed" | "rejected" => "#6a1b9a",
        "pending" => "#f9a825",
        _ => "#757575",
    }
}

/// The x of instant `t` on a timeline from `since` to `until`.
pub fn x_of(t: DateTime<Utc>, since: DateTime<Utc>, until: DateTime<Utc>) -> f64 {
    let span = (until - since).num_milliseconds().max(1) as f64;
    let at = (t - since).num_milliseconds() as f64;
    LABEL + (at / span).clamp(0.0, 1.0) * (WIDTH - LABEL - 10.0)
}

/// Writes the page.
pub async fn report(
    cfg: &Config,
    store: &Store,
    p: &Page<'_>,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let until = p.until.unwrap_or(now).min(now);
    let since = p.since.unwrap_or(now - chrono::Duration::days(30));
    let show = |t: &str| match (p.tz, parse_ts(t)) {
        (Some(tz), Ok(t)) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        _ => t.replace('T', " "),
    };
    let (coverage, _) = coverage_rows(
        cfg,
        store,
        &CoverageQuery {
            since: Some(since),
            until: Some(until),
            rule: p.rule,
            fail_on_gap: false,
        },
        now,
    )
    .await?;
    let stops = store
        .report(&ReportFilter {
            since: Some(since),
            until: Some(until),
            rule: p.rule.map(str::to_owned),
            ..ReportFilter::default()
        })
        .await?;
    let events = store.events(Some(since), Some(until)).await?;

    // Rows of the timeline: every freeze rule with a window in the span, then every other
    // rule that stopped something.
    let mut rules: Vec<String> = Vec::new();
    for r in coverage
        .iter()
        .map(|c| &c.rule)
        .chain(stops.iter().map(|s| &s.rule))
    {
        if !rules.contains(r) {
            rules.push(r.clone());
        }
    }
    let x = |t: &str| parse_ts(t).map(|t| x_of(t, since, until)).unwrap_or(LABEL);
    let height = ROW * rules.len() as f64 + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" data-since="{}" data-until="{}">"##,
        stopd_audit::ts(since),
        stopd_audit::ts(until)
    );
    // Day ticks (at most about 15 labels).
    let days = (until - since).num_days().max(1);
    let step = (days / 15).max(1);
    let mut day = since.date_naive();
    while let Some(t) = day.and_hms_opt(0, 0, 0).map(|d| d.and_utc()) {
        if t > until {
            break;
        }
        if t >= since {
            let tx = x_of(t, since, until);
            let _ = write!(
                svg,
                r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="0" y2="{:.0}" stroke="#e0e0e0"/><text x="{tx:.1}" y="{:.0}" font-size="10" fill="#555">{}</text>"##,
                height - 20.0,
                height - 6.0,
                t.format("%m-%d")
            );
        }
        day += chrono::Duration::days(step);
    }
    for (k, rule) in rules.iter().enumerate() {
        let y = 4.0 + ROW * k as f64;
        let _ = write!(
            svg,
            r##"<text x="4" y="{:.0}" font-size="12" fill="#222">{}</text>"##,
            y + 20.0,
            esc(rule)
        );
        for c in coverage.iter().filter(|c| &c.rule == rule) {
            let (a, b) = (x(&c.window_start), x(&c.window_end));
            let _ = write!(
                svg,
                r##"<rect class="window" x="{a:.1}" y="{:.0}" width="{:.1}" height="24" fill="#bbdefb" data-start="{}" data-end="{}"><title>{} window {} .. {}</title></rect>"##,
                y + 4.0,
                (b - a).max(1.0),
                c.window_start,
                c.window_end,
                esc(rule),
                c.window_start,
                c.window_end
            );
            if let Some(b) = &c.before_first_start {
                let (a, e) = (x(&b.from), x(&b.to));
                let _ = write!(
                    svg,
                    r##"<rect class="before-first-start" x="{a:.1}" y="{:.0}" width="{:.1}" height="24" fill="#e0e0e0" data-from="{}" data-to="{}"><title>before the audit log's first start (not a gap) {} .. {}</title></rect>"##,
                    y + 4.0,
                    (e - a).max(1.0),
                    b.from,
                    b.to,
                    b.from,
                    b.to
                );
            }
            for g in &c.gaps {
                let (a, b) = (x(&g.from), x(&g.to));
                let _ = write!(
                    svg,
                    r##"<rect class="gap" x="{a:.1}" y="{:.0}" width="{:.1}" height="24" fill="#e53935" data-from="{}" data-to="{}" data-cause="{}"><title>gap ({}) {} .. {}</title></rect>"##,
                    y + 4.0,
                    (b - a).max(2.0),
                    g.from,
                    g.to,
                    g.cause,
                    g.cause,
                    g.from,
                    g.to
                );
            }
        }
        for s in stops.iter().filter(|s| &s.rule == rule) {
            let cx = x(&s.at);
            let _ = write!(
                svg,
                r##"<circle class="stop" cx="{cx:.1}" cy="{:.0}" r="5" fill="{}" data-at="{}" data-outcome="{}"><title>{} {} {}</title></circle>"##,
                y + 16.0,
                colour(&s.outcome),
                s.at,
                esc(&s.outcome),
                esc(&s.pipeline),
                esc(&s.execution_id),
                esc(&s.outcome)
            );
        }
    }
    svg.push_str("</svg>");

    // Summary: rule x outcome.
    let outcomes: BTreeSet<&str> = stops.iter().map(|s| s.outcome.as_str()).collect();
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for s in &stops {
        *counts.entry((&s.rule, &s.outcome)).or_default() += 1;
    }
    let mut summary = String::from("<table id=\"summary\"><tr><th>rule</th>");
    for o in &outcomes {
        let _ = write!(summary, "<th>{}</th>", esc(o));
    }
    summary.push_str("</tr>");
    for rule in rules.iter().filter(|r| stops.iter().any(|s| &&s.rule == r)) {
        let _ = write!(summary, "<tr><td>{}</td>", esc(rule));
        for o in &outcomes {
            let n = counts.get(&(rule.as_str(), *o)).copied().unwrap_or(0);
            let _ = write!(summary, "<td>{n}</td>");
        }
        summary.push_str("</tr>");
    }
    // Totals: per outcome, so dry runs (decided, never sent) stay apart from stops.
    if !stops.is_empty() {
        summary.push_str("<tr class=\"total\"><th>total</th>");
        for o in &outcomes {
            let n = stops.iter().filter(|s| s.outcome == *o).count();
            let _ = write!(summary, "<th>{n}</th>");
        }
        summary.push_str("</tr>");
    }
    summary.push_str("</table>");

    let mut tables = String::from(
        "<h2>Coverage</h2><table id=\"coverage\"><tr><th>rule</th><th>window start</th><th>window end</th><th>watched</th><th>gaps</th><th>before first start</th></tr>",
    );
    for c in &coverage {
        let gaps: Vec<String> = c
            .gaps
            .iter()
            .map(|g| {
                format!(
                    "<span class=\"bad\">{}</span> {} .. {}",
                    g.cause,
                    show(&g.from),
                    show(&g.to)
                )
            })
            .collect();
        let _ = write!(
            tables,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.rule),
            show(&c.window_start),
            show(&c.window_end),
            crate::cli::time::human(chrono::Duration::milliseconds(
                (c.watched_seconds * 1000.0) as i64
            )),
            if gaps.is_empty() {
                "none".to_owned()
            } else {
                gaps.join("<br>")
            },
            c.before_first_start
                .as_ref()
                .map_or_else(String::new, |b| format!(
                    "<span class=\"neutral\">not installed yet</span> {} .. {}",
                    show(&b.from),
                    show(&b.to)
                ))
        );
    }
    tables.push_str("</table><h2>Stops</h2><table id=\"stops\"><tr><th>at</th><th>pipeline</th><th>execution</th><th>rule</th><th>mode</th><th>outcome</th><th>reason</th><th>error</th></tr>");
    for s in &stops {
        let _ = write!(
            tables,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            show(&s.at),
            esc(&s.pipeline),
            esc(&s.execution_id),
            esc(&s.rule),
            esc(&s.mode),
            esc(&s.outcome),
            esc(&s.reason),
            esc(s.error.as_deref().unwrap_or(""))
        );
    }
    tables.push_str("</table><h2>Daemon lifecycle</h2><table id=\"events\"><tr><th>at</th><th>event</th><th>node</th><th>epoch</th><th>pid</th><th>policy hash</th><th>result</th><th>detail</th></tr>");
    for e in &events {
        let _ = write!(
            tables,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            show(&e.at),
            esc(&e.event),
            esc(e.node.as_deref().unwrap_or("")),
            e.epoch.map(|n| n.to_string()).unwrap_or_default(),
            e.pid,
            esc(e.policy_hash.as_deref().unwrap_or("")),
            esc(e.result.as_deref().unwrap_or("")),
            esc(e.detail.as_deref().unwrap_or(""))
        );
    }
    tables.push_str("</table>");

    let gaps: usize = coverage.iter().map(|c| c.gaps.len()).sum();
    let dry_runs = stops.iter().filter(|s| s.outcome == "dry_run").count();
    write!(
        out,
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stopd audit report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 24px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.bad {{ color: #c62828; font-weight: bold; }}
.neutral {{ color: #757575; }}
.legend span {{ display: inline-block; margin-right: 14px; }}
.sw {{ display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin-right: 4px; }}
</style></head><body>
<h1>stopd audit report</h1>
<p>From {} to {} ({}). Policy <code>{}</code>. {} freeze window(s), {} coverage gap(s), {} stop(s), {} dry run(s).</p>
<p class="legend"><span><i class="sw" style="background:#bbdefb"></i>freeze window</span><span><i class="sw" style="background:#e53935"></i>coverage gap</span><span><i class="sw" style="background:#e0e0e0"></i>before the audit log's first start</span><span><i class="sw" style="background:#2e7d32"></i>stopped</span><span><i class="sw" style="background:#6a1b9a"></i>failed / rejected</span><span><i class="sw" style="background:#f9a825"></i>pending</span><span><i class="sw" style="background:#757575"></i>other</span></p>
{svg}
<h2>Summary (rule x outcome)</h2>
{summary}
{tables}
</body></html>
"##,
        show(&stopd_audit::ts(since)),
        show(&stopd_audit::ts(until)),
        p.tz.map_or("UTC".to_owned(), |z| z.name().to_owned()),
        esc(&cfg.path.display().to_string()),
        coverage.len(),
        gaps,
        stops.len() - dry_runs,
        dry_runs
    )?;
    Ok(ExitCode::SUCCESS)
}
