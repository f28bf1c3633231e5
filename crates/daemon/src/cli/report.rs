//! `stopd report`: the audit log queried (stops, their summary, gates, sweeps, lifecycle
//! events, coverage, an HTML page); works while the daemon is writing.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use stopd_audit::{AuditRecord, ReportFilter, ReportOutcome, Store};

use crate::cli::common::{TzArg, unknown_rule, write_rows};
use crate::cli::output::{Columns, Format, OutputArgs};
use crate::cli::time::parse_instant;
use crate::clock::Clock;
use crate::config::Config;

pub(super) const REPORT_EXAMPLES: &str = "\
Examples:
  # The last week in counts, stops and dry runs apart, days in local time
  stopd report --since 7d --summary --tz Europe/Berlin
  # Stops that did not go through, of one rule, for a spreadsheet
  stopd report --rule weekend --outcome failed --format csv
  # Transitions held closed for a gating freeze, and released
  stopd report --gates --since 2026-12-19
  # Was the daemon watching during every freeze window? (exit 1 on a gap)
  stopd report --coverage --since 2026-12-19 --until 2027-01-04 --fail-on-gap";

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// Records at or after: RFC 3339, a date or local date-time (2026-12-01, in [defaults]
    /// timezone), or a span ago (24h, 7d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Records before: same forms as --since.
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Pipeline glob (`*`, `?`, `[...]`).
    #[arg(long, value_name = "GLOB", conflicts_with = "sweeps")]
    pipeline: Option<String>,
    /// Rule name (`manual` for stops made with `stopd stop`).
    #[arg(long, value_name = "NAME", conflicts_with = "sweeps")]
    rule: Option<String>,
    /// Account-name glob (`[[account]] name`; `default` without `[[account]]`).
    #[arg(long, value_name = "GLOB", conflicts_with_all = ["sweeps", "events", "coverage"])]
    account: Option<String>,
    /// Region glob.
    #[arg(long, value_name = "GLOB", conflicts_with_all = ["sweeps", "events", "coverage"])]
    region: Option<String>,
    /// Outcome of the stop.
    #[arg(long, value_name = "O", value_parser = outcome_values(), conflicts_with_all = ["sweeps", "gates"])]
    outcome: Option<ReportOutcome>,
    #[command(flatten)]
    output: OutputArgs,
    /// Counts by rule, pipeline, outcome and day instead of records.
    #[arg(long, conflicts_with_all = ["sweeps", "gates"])]
    summary: bool,
    /// The gate log instead: stage transitions disabled and enabled for gating freezes, with
    /// their outcome (done, already_disabled, left_alone, failed, dry_run, pipeline_not_found).
    #[arg(long, conflicts_with = "sweeps")]
    gates: bool,
    /// The sweep log instead: when the daemon looked, what it saw, how many calls, errors.
    /// A sweep covers every pipeline and rule, so --pipeline, --rule and --outcome do not apply.
    #[arg(long)]
    sweeps: bool,
    /// The daemon's lifecycle instead: each start (version, pid, policy hash), reload (ok or
    /// refused, new hash), clean stop, unclean stop (found at the next start), with [ha]
    /// leader_acquired and leader_lost (epoch; why it was lost), and with [events]
    /// events_failed and events_resumed (the queue could not be read, and why; it can again),
    /// each with its node.
    #[arg(long, conflicts_with_all = ["sweeps", "pipeline", "rule", "outcome", "summary"])]
    events: bool,
    /// Coverage instead: for each freeze window in the span (default: the last 30 days; a
    /// window still open is cut at now), the time watched and each gap with its cause
    /// (not_running, no_leader, sweep_failed, late). --rule picks one rule's windows.
    #[arg(long, conflicts_with_all = ["sweeps", "events", "pipeline", "outcome", "summary"])]
    coverage: bool,
    /// With --coverage: exit 1 if any window has a gap (for a compliance job).
    #[arg(long, requires = "coverage")]
    fail_on_gap: bool,
    #[command(flatten)]
    tz: TzArg,
}

/// `--outcome`: every outcome a stop in the audit log can have (the audit vocabulary's, with
/// its words for each).
fn outcome_values() -> impl clap::builder::TypedValueParser<Value = ReportOutcome> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        ReportOutcome::ALL
            .iter()
            .copied()
            .map(|o| PossibleValue::new(o.as_str()).help(o.help())),
    )
    .try_map(|name| name.parse::<ReportOutcome>())
}

/// A `report --summary` record: stops sent and dry runs (decided, recorded, never sent) apart.
#[derive(Debug, Default, Serialize)]
struct SummaryRecord {
    by: &'static str,
    key: String,
    /// Every record: `stops + dry_runs`.
    count: usize,
    /// Stops sent to CodePipeline, whatever their outcome.
    stops: usize,
    /// Dry runs.
    dry_runs: usize,
}

/// `stopd report`.
pub(super) async fn run(cfg: &Config, args: ReportArgs, clock: &dyn Clock) -> Result<ExitCode> {
    // `--tz` belongs to the output.
    let q = &ReportArgs {
        output: OutputArgs {
            tz: args.tz.tz,
            ..args.output
        },
        ..args
    };
    let now = clock.now();
    // Bare dates and local date-times are read in [defaults] timezone (DESIGN.md).
    let tz = cfg.policy.default_timezone();
    let since = q
        .since
        .as_deref()
        .map(|t| parse_instant("--since", t, tz, now, true))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|t| parse_instant("--until", t, tz, now, true))
        .transpose()?;
    if let Some(e) = &cfg.policy_error
        && (q.coverage || q.output.format == Format::Html)
    {
        // Without the rules there are no freeze windows: coverage would find no gap to report.
        return Err(e
            .refusing("report --coverage and --format html need the freeze windows of the policy")
            .into());
    }
    let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?).await?;
    if let Some(rule) = q.rule.as_deref() {
        // A rule of the policy, or one the log knows (since renamed or removed), or `manual`.
        let logged = store.rule_names().await?;
        let mut known: Vec<&str> = cfg.policy.rules().iter().map(|r| r.name.as_str()).collect();
        known.extend(logged.iter().map(String::as_str));
        known.push("manual");
        if !known.contains(&rule) {
            let of = format!("{} nor of the audit log", cfg.path.display());
            return Err(unknown_rule(rule, &known, &of).into());
        }
    }
    let mut out = std::io::stdout().lock();
    if q.output.format == Format::Html {
        let page = crate::cli::html::Page {
            since,
            until,
            rule: q.rule.as_deref(),
            tz: q.output.tz,
        };
        return crate::cli::html::report(cfg, &store, &page, now, &mut out).await;
    }
    if q.coverage {
        let c = crate::cli::auditor::CoverageQuery {
            since,
            until,
            rule: q.rule.as_deref(),
            fail_on_gap: q.fail_on_gap,
        };
        return crate::cli::auditor::coverage(cfg, &store, &c, now, q.output, &mut out).await;
    }
    if q.events {
        return crate::cli::auditor::events(&store, since, until, q.output, &mut out).await;
    }
    if q.gates {
        let rows = store
            .gate_records(
                since,
                until,
                q.pipeline.as_deref(),
                q.rule.as_deref(),
                (q.account.as_deref(), q.region.as_deref()),
            )
            .await?;
        write_rows(
            &mut out,
            q.output,
            &rows,
            Columns {
                names: &[
                    "at", "pipeline", "stage", "rule", "action", "outcome", "error", "reason",
                    "id", "account", "region",
                ],
                wide_only: &["reason", "id", "account", "region"],
                whole: &["at", "action", "outcome"],
                to_the_minute: &[],
            },
            |r| {
                vec![
                    r.at.clone(),
                    r.pipeline.clone(),
                    r.stage.clone(),
                    r.rule.clone(),
                    r.action.clone(),
                    r.outcome.clone(),
                    r.error.clone().unwrap_or_default(),
                    r.reason.clone(),
                    r.id.to_string(),
                    r.account.clone().unwrap_or_default(),
                    r.region.clone().unwrap_or_default(),
                ]
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if q.sweeps {
        let rows = store.sweeps(since, until).await?;
        let opt = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
        write_rows(
            &mut out,
            q.output,
            &rows,
            Columns {
                names: &[
                    "id",
                    "started_at",
                    "finished_at",
                    "trigger",
                    "sweeps",
                    "dry_run",
                    "duration_ms",
                    "pipelines_seen",
                    "executions_seen",
                    "stops_decided",
                    "api_calls",
                    "throttled",
                    "errors",
                    "error",
                    "result",
                ],
                wide_only: &[
                    "finished_at",
                    "dry_run",
                    "duration_ms",
                    "api_calls",
                    "throttled",
                    "result",
                ],
                whole: &["started_at"],
                to_the_minute: &["started_at"],
            },
            |r| {
                vec![
                    r.id.to_string(),
                    r.started_at.clone(),
                    r.finished_at
                        .clone()
                        .unwrap_or_else(|| "(unfinished)".into()),
                    r.trigger.clone(),
                    r.sweeps.to_string(),
                    r.dry_run.to_string(),
                    opt(r.duration_ms),
                    opt(r.pipelines_seen),
                    opt(r.executions_seen),
                    opt(r.stops_decided),
                    opt(r.api_calls),
                    opt(r.throttled),
                    opt(r.errors),
                    r.error.clone().unwrap_or_default(),
                    r.result.unwrap_or("").to_string(),
                ]
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let records = store
        .report(&ReportFilter {
            since,
            until,
            pipeline: q.pipeline.clone(),
            rule: q.rule.clone(),
            outcome: q.outcome.map(|o| o.as_str().to_string()),
            account: q.account.clone(),
            region: q.region.clone(),
        })
        .await?;
    if q.summary {
        // A dry run decided a stop and sent none: counted apart, never as a stop.
        let mut counts: BTreeMap<(&'static str, String), (usize, usize)> = BTreeMap::new();
        for r in &records {
            let dry = r.outcome == "dry_run";
            for key in [
                ("rule", r.rule.clone()),
                ("pipeline", r.pipeline.clone()),
                ("outcome", r.outcome.clone()),
                ("day", r.at.get(..10).unwrap_or(&r.at).to_string()),
            ] {
                let c = counts.entry(key).or_default();
                if dry {
                    c.1 += 1;
                } else {
                    c.0 += 1;
                }
            }
        }
        let order = |b: &str| {
            ["rule", "pipeline", "outcome", "day"]
                .iter()
                .position(|x| *x == b)
        };
        let mut rows: Vec<SummaryRecord> = counts
            .into_iter()
            .map(|((by, key), (stops, dry_runs))| SummaryRecord {
                by,
                key,
                count: stops + dry_runs,
                stops,
                dry_runs,
            })
            .collect();
        rows.sort_by(|a, b| order(a.by).cmp(&order(b.by)).then(a.key.cmp(&b.key)));
        write_rows(
            &mut out,
            q.output,
            &rows,
            // Stops and dry runs after count: CSV columns read by position stay where they were.
            Columns {
                wide_only: &["count"],
                ..Columns::all(&["by", "key", "count", "stops", "dry_runs"])
            },
            |r| {
                vec![
                    r.by.to_string(),
                    r.key.clone(),
                    r.count.to_string(),
                    r.stops.to_string(),
                    r.dry_runs.to_string(),
                ]
            },
        )?;
        if q.output.format == Format::Table && !records.is_empty() {
            let dry = records.iter().filter(|r| r.outcome == "dry_run").count();
            writeln!(
                out,
                "\n{} stop(s) and {dry} dry run(s) in total",
                records.len() - dry
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    write_audit(&mut out, q.output, &records)?;
    Ok(ExitCode::SUCCESS)
}

/// Audit records as `stopd report` (and the demo) print them.
pub(crate) fn write_audit(
    out: &mut impl Write,
    opts: OutputArgs,
    records: &[AuditRecord],
) -> Result<()> {
    // Account and region are table columns once some stop was made outside the one ambient
    // account; JSON and CSV always carry them.
    let many = records.iter().any(|r| {
        r.account
            .as_deref()
            .is_some_and(|a| a != stopd_audit::Place::DEFAULT_ACCOUNT)
    });
    let mut wide_only = vec![
        "rule_kind",
        "mode",
        "attempts",
        "id",
        "completed_at",
        "throttled",
        "reconciled",
        "escalation_of",
        "sweep_id",
        "explanation",
    ];
    if !many {
        wide_only.extend(["account", "region"]);
    } else {
        // Several accounts in one region (the demo's): the region says nothing a table needs.
        let mut regions = records.iter().map(|r| r.region.as_deref());
        let first = regions.next().flatten();
        if regions.all(|r| r == first) {
            wide_only.push("region");
        }
    }
    write_rows(
        out,
        opts,
        records,
        Columns {
            // Every field of the JSON record (a test holds CSV and JSON together).
            names: &[
                "at",
                "pipeline",
                "execution_id",
                "rule",
                "rule_kind",
                "mode",
                "outcome",
                "attempts",
                "reason",
                "error",
                "id",
                "completed_at",
                "throttled",
                "reconciled",
                "escalation_of",
                "sweep_id",
                "explanation",
                "account",
                "region",
            ],
            wide_only: &wide_only,
            whole: &["at", "outcome"],
            to_the_minute: &[],
        },
        |r| {
            vec![
                r.at.clone(),
                r.pipeline.clone(),
                r.execution_id.clone(),
                r.rule.clone(),
                r.rule_kind.clone(),
                r.mode.clone(),
                r.outcome.clone(),
                r.attempts.to_string(),
                r.reason.clone(),
                r.error.clone().unwrap_or_default(),
                r.id.to_string(),
                r.completed_at.clone().unwrap_or_default(),
                r.throttled.to_string(),
                r.reconciled.to_string(),
                r.escalation_of.map_or(String::new(), |v| v.to_string()),
                r.sweep_id.map_or(String::new(), |v| v.to_string()),
                r.explanation.clone(),
                r.account.clone().unwrap_or_default(),
                r.region.clone().unwrap_or_default(),
            ]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_of_the_vocabulary_is_a_report_filter_and_nothing_else() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Report {
            #[command(flatten)]
            args: ReportArgs,
        }
        for &o in ReportOutcome::ALL {
            let r = Report::try_parse_from(["report", "--outcome", o.as_str()]).unwrap();
            assert_eq!(r.args.outcome, Some(o));
        }
        let e = Report::try_parse_from(["report", "--outcome", "stop"]).unwrap_err();
        assert!(e.to_string().contains("possible values: stopped,"), "{e}");
    }
}
