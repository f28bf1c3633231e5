//! The one-shot commands: check, plan, windows, stop, report, exempt.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{Duration, Utc};
use serde::Serialize;
use stopd_rules::{Mode, Rule, Trigger, Verdict, human_span, rfc3339};
use tokio_util::sync::CancellationToken;

use crate::UsageError;
use crate::config::Config;
use crate::output::{self, Format};
use crate::run::build_core;
use crate::store::{AuditRecord, ReportFilter, Store};
use crate::sweep::{self, Planned};
use crate::time::{parse_instant, parse_span};

fn user() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid:{}", std::process::id()))
}

fn describe(rule: &Rule) -> String {
    match &rule.trigger {
        Trigger::Freeze { schedule, grace } => {
            let mut s = match schedule {
                stopd_rules::Schedule::Recurring { cron, duration, .. } => format!(
                    "cron \"{}\" for {} ({})",
                    cron.source(),
                    human_span(*duration),
                    rule.timezone
                ),
                stopd_rules::Schedule::OneOff(w) => {
                    format!("from {} to {}", rfc3339(w.start), rfc3339(w.end))
                }
            };
            if !grace.is_zero() {
                s.push_str(&format!(", grace {}", human_span(*grace)));
            }
            s
        }
        Trigger::Timeout { max } => format!("longer than {}", human_span(*max)),
    }
}

/// `stopd check`.
pub fn check(cfg: &Config) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let p = &cfg.policy;
    let count = |k: stopd_rules::RuleKind| p.rules().iter().filter(|r| r.kind == k).count();
    writeln!(out, "{}: OK", cfg.path.display())?;
    for w in &cfg.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    writeln!(
        out,
        "  {} freeze rule(s), {} timeout rule(s), {} exemption(s)",
        count(stopd_rules::RuleKind::Freeze),
        count(stopd_rules::RuleKind::Timeout),
        p.exemptions().len()
    )?;
    writeln!(
        out,
        "  sweeps on \"{}\" (UTC) and at every window edge; audit log {}{}",
        cfg.daemon.schedule.source(),
        cfg.daemon.database.display(),
        if cfg.daemon.dry_run {
            "; DRY RUN: nothing will be stopped"
        } else {
            ""
        }
    )?;
    match (&cfg.aws.endpoint_url, &cfg.aws.region) {
        (Some(url), _) => writeln!(out, "  CodePipeline at {url}")?,
        (None, Some(r)) => writeln!(out, "  CodePipeline in {r}")?,
        (None, None) => writeln!(
            out,
            "  CodePipeline in the default region of the AWS config"
        )?,
    }
    writeln!(out, "\nRules (ties: abandon wins, then this order):")?;
    for r in p.rules() {
        writeln!(
            out,
            "  {:<7} {:<20} {:<8} {}",
            r.kind.as_str(),
            r.name,
            r.mode.as_str(),
            describe(r)
        )?;
    }
    for e in p.exemptions() {
        let until = e.until.map_or("no end".to_string(), rfc3339);
        writeln!(out, "  exempt  {:<20} until {until}", e.name)?;
    }
    let now = Utc::now();
    let windows = p.windows(now, now + Duration::days(366));
    let mut edges: Vec<(chrono::DateTime<Utc>, &str, &str, chrono_tz::Tz)> = Vec::new();
    for w in &windows {
        if w.window.start > now {
            edges.push((w.window.start, "opens ", &w.rule, w.timezone));
        }
        // A freeze whose windows never leave a gap has no closing edge to show.
        if !w.without_gap {
            edges.push((w.window.end, "closes", &w.rule, w.timezone));
        }
    }
    edges.sort_by_key(|e| e.0);
    writeln!(out, "\nNext window transitions:")?;
    if edges.is_empty() {
        writeln!(out, "  none in the next 366 days")?;
    }
    for (t, what, rule, tz) in edges.iter().take(10) {
        writeln!(
            out,
            "  {}  {what} {rule}  ({} {})",
            rfc3339(*t),
            t.with_timezone(tz).format("%a %Y-%m-%d %H:%M:%S %Z"),
            tz
        )?;
    }
    for w in &windows {
        if w.window.contains(now) && w.without_gap {
            writeln!(
                out,
                "\nIn force now: {} (its windows leave no gap in the next 366 days)",
                w.rule
            )?;
        } else if w.window.contains(now) {
            writeln!(
                out,
                "\nIn force now: {} until {}",
                w.rule,
                rfc3339(w.window.end)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A `plan` record.
#[derive(Debug, Serialize)]
struct PlanRecord {
    pipeline: String,
    execution_id: String,
    rule: String,
    rule_kind: String,
    mode: String,
    reason: String,
    explanation: String,
}

/// `stopd plan`.
pub async fn plan(cfg: &Config, at: Option<&str>, format: Format) -> Result<ExitCode> {
    let now = Utc::now();
    let at = match at {
        Some(t) => parse_instant("--at", t, chrono_tz::UTC, now, false)?,
        None => now,
    };
    let store = Store::open_read_only(&cfg.daemon.database).await.ok();
    let extra = match &store {
        Some(s) => s.active_exemptions(at).await?,
        None => Vec::new(),
    };
    let core = build_core(cfg, CancellationToken::new()).await;
    let found = core
        .discover(&|p| cfg.policy.may_apply_to(p), cfg.policy.uses_tags())
        .await;
    if let Some(e) = &found.listing_failed {
        anyhow::bail!("cannot list pipelines: {e}");
    }
    let in_progress: Vec<_> = found
        .executions
        .into_iter()
        .filter(|e| e.status == stopd_core::ActiveStatus::InProgress)
        .collect();
    let (planned, others) = sweep::plan(&cfg.policy.decider(at), at, &in_progress, &extra);
    let rows: Vec<PlanRecord> = planned
        .into_iter()
        .map(|p: Planned| PlanRecord {
            pipeline: p.pipeline,
            execution_id: p.execution_id,
            rule: p.rule,
            rule_kind: p.rule_kind,
            mode: p.mode.as_str().into(),
            reason: p.reason,
            explanation: p.explanation,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    output::write(
        &mut out,
        format,
        &rows,
        &[
            "pipeline",
            "execution_id",
            "rule",
            "rule_kind",
            "mode",
            "reason",
            "explanation",
        ],
        |r| {
            vec![
                r.pipeline.clone(),
                r.execution_id.clone(),
                r.rule.clone(),
                r.rule_kind.clone(),
                r.mode.clone(),
                r.reason.clone(),
                r.explanation.clone(),
            ]
        },
    )?;
    if format == Format::Table {
        writeln!(
            out,
            "\nAt {}: {} pipelines ({} in scope), {} executions in progress, {} would be stopped.",
            rfc3339(at),
            found.pipelines_seen,
            found.pipelines_in_scope,
            in_progress.len(),
            rows.len()
        )?;
        for (i, v) in others {
            let e = &in_progress[i];
            let why = match v {
                Verdict::Exempt { exemption, rule } => {
                    format!("exempt by {exemption} (rule {rule} applies)")
                }
                Verdict::Grace { rule, until } => {
                    format!("in grace of {rule} until {}", rfc3339(until))
                }
                Verdict::SparedRollback { rule } => {
                    format!("a ROLLBACK, spared by {rule} (set rollbacks = true to stop it)")
                }
                Verdict::Allow | Verdict::Stop(_) => continue,
            };
            writeln!(
                out,
                "  not stopped: {} {}: {why}",
                e.pipeline, e.execution_id
            )?;
        }
        for f in &found.failures {
            writeln!(out, "  could not read {}: {}", f.pipeline, f.error)?;
        }
    }
    Ok(if found.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
}

/// `stopd windows`.
pub fn windows(cfg: &Config, from: Option<&str>, days: u32, format: Format) -> Result<ExitCode> {
    let now = Utc::now();
    let from = match from {
        Some(t) => parse_instant("--from", t, chrono_tz::UTC, now, false)?,
        None => now,
    };
    let to = from + Duration::days(i64::from(days));
    let local = |t: chrono::DateTime<Utc>, tz: chrono_tz::Tz| {
        t.with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    let rows: Vec<WindowRecord> = cfg
        .policy
        .windows(from, to)
        .into_iter()
        .map(|w| WindowRecord {
            start: rfc3339(w.window.start),
            end: rfc3339(w.window.end),
            start_local: local(w.window.start, w.timezone),
            end_local: local(w.window.end, w.timezone),
            timezone: w.timezone.name().to_string(),
            rule: w.rule,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    output::write(
        &mut out,
        format,
        &rows,
        &[
            "rule",
            "start",
            "end",
            "timezone",
            "start_local",
            "end_local",
        ],
        |r| {
            vec![
                r.rule.clone(),
                r.start.clone(),
                r.end.clone(),
                r.timezone.clone(),
                r.start_local.clone(),
                r.end_local.clone(),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `stopd stop`.
pub async fn stop(
    cfg: &Config,
    pipeline: &str,
    execution: &str,
    abandon: bool,
    reason: &str,
) -> Result<ExitCode> {
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    let store = Store::open(&cfg.daemon.database).await?;
    let core = build_core(cfg, CancellationToken::new()).await;
    let mode = if abandon { Mode::Abandon } else { Mode::Finish };
    let done = sweep::execute(
        &core,
        &store,
        None,
        Planned {
            pipeline: pipeline.into(),
            execution_id: execution.into(),
            rule: "manual".into(),
            rule_kind: "manual".into(),
            mode,
            reason: reason.into(),
            explanation: format!("manual stop by {}", user()),
            escalate_after: None,
            escalation_of: None,
        },
        cfg.daemon.dry_run,
    )
    .await;
    store.close().await;
    let id = done.stop_id.map_or("-".into(), |i| i.to_string());
    println!(
        "{} {} {}: {} (audit #{id}, {} attempt(s)){}",
        mode.as_str(),
        pipeline,
        execution,
        done.outcome,
        done.attempts,
        done.error.map(|e| format!(": {e}")).unwrap_or_default()
    );
    Ok(if done.is_final && done.stop_id.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What `stopd report` was asked.
#[derive(Debug)]
pub struct ReportQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub pipeline: Option<String>,
    pub rule: Option<String>,
    pub outcome: Option<String>,
    pub format: Format,
    pub summary: bool,
    pub sweeps: bool,
}

const OUTCOMES: [&str; 8] = [
    "stopped",
    "already_stopping",
    "not_stoppable",
    "pipeline_not_found",
    "rejected",
    "failed",
    "dry_run",
    "pending",
];

/// A `report --summary` record.
#[derive(Debug, Serialize)]
struct SummaryRecord {
    by: &'static str,
    key: String,
    count: usize,
}

/// `stopd report`.
pub async fn report(cfg: &Config, q: &ReportQuery) -> Result<ExitCode> {
    let now = Utc::now();
    let tz = chrono_tz::UTC;
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
    if let Some(o) = &q.outcome
        && !OUTCOMES.contains(&o.as_str())
    {
        return Err(UsageError(format!(
            "--outcome {o:?} is not an outcome: use one of {}",
            OUTCOMES.join(", ")
        ))
        .into());
    }
    let store = Store::open_read_only(&cfg.daemon.database).await?;
    let mut out = std::io::stdout().lock();
    if q.sweeps {
        let rows = store.sweeps(since, until).await?;
        let opt = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
        output::write(
            &mut out,
            q.format,
            &rows,
            &[
                "id",
                "started_at",
                "finished_at",
                "trigger",
                "dry_run",
                "duration_ms",
                "pipelines_seen",
                "executions_seen",
                "stops_decided",
                "api_calls",
                "errors",
                "error",
            ],
            |r| {
                vec![
                    r.id.to_string(),
                    r.started_at.clone(),
                    r.finished_at
                        .clone()
                        .unwrap_or_else(|| "(unfinished)".into()),
                    r.trigger.clone(),
                    r.dry_run.to_string(),
                    opt(r.duration_ms),
                    opt(r.pipelines_seen),
                    opt(r.executions_seen),
                    opt(r.stops_decided),
                    opt(r.api_calls),
                    opt(r.errors),
                    r.error.clone().unwrap_or_default(),
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
            outcome: q.outcome.clone(),
        })
        .await?;
    if q.summary {
        let mut counts: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
        for r in &records {
            *counts.entry(("rule", r.rule.clone())).or_default() += 1;
            *counts.entry(("pipeline", r.pipeline.clone())).or_default() += 1;
            *counts.entry(("outcome", r.outcome.clone())).or_default() += 1;
            *counts
                .entry(("day", r.at.get(..10).unwrap_or(&r.at).to_string()))
                .or_default() += 1;
        }
        let order = |b: &str| {
            ["rule", "pipeline", "outcome", "day"]
                .iter()
                .position(|x| *x == b)
        };
        let mut rows: Vec<SummaryRecord> = counts
            .into_iter()
            .map(|((by, key), count)| SummaryRecord { by, key, count })
            .collect();
        rows.sort_by(|a, b| order(a.by).cmp(&order(b.by)).then(a.key.cmp(&b.key)));
        output::write(&mut out, q.format, &rows, &["by", "key", "count"], |r| {
            vec![r.by.to_string(), r.key.clone(), r.count.to_string()]
        })?;
        if q.format == Format::Table {
            writeln!(out, "\n{} stop(s) in total", records.len())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    write_audit(&mut out, q.format, &records)?;
    Ok(ExitCode::SUCCESS)
}

/// Audit records as `stopd report` (and the demo) print them.
pub fn write_audit(out: &mut impl Write, format: Format, records: &[AuditRecord]) -> Result<()> {
    output::write(
        out,
        format,
        records,
        &[
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
        ],
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
            ]
        },
    )
}

/// `stopd exempt add`.
pub async fn exempt_add(
    cfg: &Config,
    glob: &str,
    for_: Option<&str>,
    until: Option<&str>,
    reason: &str,
) -> Result<ExitCode> {
    let now = Utc::now();
    let until = match (for_, until) {
        (Some(span), _) => now + Duration::from_std(parse_span("--for", span)?)?,
        (None, Some(t)) => parse_instant("--until", t, cfg.policy.default_timezone(), now, false)?,
        (None, None) => unreachable!("clap requires one"),
    };
    if until <= now {
        return Err(UsageError(format!("--until {} is not in the future", rfc3339(until))).into());
    }
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    stopd_rules::Exemption::break_glass("check", glob, until, reason)
        .map_err(|e| UsageError(format!("--pipeline {glob:?}: {e}")))?;
    let store = Store::open(&cfg.daemon.database).await?;
    let id = store
        .add_exemption(now, glob, until, reason, &user())
        .await?;
    store.close().await;
    println!(
        "exemption #{id}: pipelines {glob:?} are exempt from every rule until {} (revoke with `stopd exempt revoke {id}`)",
        rfc3339(until)
    );
    Ok(ExitCode::SUCCESS)
}

/// `stopd exempt list`.
pub async fn exempt_list(cfg: &Config, format: Format) -> Result<ExitCode> {
    let store = Store::open_read_only(&cfg.daemon.database).await?;
    let rows = store.exemptions().await?;
    let now = crate::store::ts(Utc::now());
    let mut out = std::io::stdout().lock();
    output::write(
        &mut out,
        format,
        &rows,
        &[
            "id",
            "pipeline",
            "until",
            "state",
            "reason",
            "created_by",
            "created_at",
        ],
        |r| {
            let state = if r.revoked_at.is_some() {
                "revoked"
            } else if r.until <= now {
                "expired"
            } else {
                "active"
            };
            vec![
                r.id.to_string(),
                r.pipeline.clone(),
                r.until.clone(),
                state.into(),
                r.reason.clone(),
                r.created_by.clone(),
                r.created_at.clone(),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `stopd exempt revoke`.
pub async fn exempt_revoke(cfg: &Config, id: i64) -> Result<ExitCode> {
    let store = Store::open(&cfg.daemon.database).await?;
    store.revoke_exemption(id, Utc::now(), &user()).await?;
    store.close().await;
    println!("exemption #{id} revoked");
    Ok(ExitCode::SUCCESS)
}
