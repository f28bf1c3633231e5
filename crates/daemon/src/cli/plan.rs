//! `stopd plan`: what would be stopped now (or at `--at`) and why, without stopping anything.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use stopd_audit::Store;
use stopd_rules::Verdict;
use tokio_util::sync::CancellationToken;

use crate::cli::common::{TzArg, shown};
use crate::cli::output::{self, Columns, Format, OutputArgs};
use crate::cli::time::parse_instant;
use crate::clock::Clock;
use crate::config::Config;
use crate::runtime::sweep::{self, Planned};

pub(super) const PLAN_EXAMPLES: &str = "\
Examples:
  # What would be stopped right now, and why
  stopd plan
  # Today's executions as the year-end freeze would see them (hypothetical)
  stopd plan --at 2026-12-19T00:00:00Z
  # For scripts (-o is --format)
  stopd plan -o json";

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
pub(super) struct PlanArgs {
    /// Decide as of this instant (RFC 3339, or a local date-time in [defaults] timezone) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    tz: TzArg,
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
    account: String,
    region: String,
}

/// `stopd plan`: every account and region, each by the rules that select it.
pub(super) async fn run(cfg: &Config, args: PlanArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let opts = OutputArgs {
        tz: args.tz.tz,
        ..args.output
    };
    let at = args.at.as_deref();
    let now = clock.now();
    let hypothetical = at.is_some();
    let at = match at {
        Some(t) => parse_instant("--at", t, cfg.policy.default_timezone(), now, false)?,
        None => now,
    };
    // Break-glass exemptions and ad-hoc freezes live in the database: no database yet means
    // none, but a database that cannot be read is an error, never a plan that silently leaves
    // them out.
    let on_disk = cfg
        .daemon
        .database
        .path()
        .is_none_or(std::path::Path::exists);
    let (extra, policy, held) = if on_disk {
        let why = "cannot read break-glass exemptions and ad-hoc freezes, so no plan can be made";
        let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?)
            .await
            .context(why)?;
        let extra = store.active_exemptions(at).await.context(why)?;
        let policy = crate::runtime::freezes::effective_policy(&store, &cfg.policy, at)
            .await
            .context(why)?;
        let held = store.last_gates_everywhere().await.context(why)?;
        store.close().await;
        (extra, policy, held)
    } else {
        (Vec::new(), Arc::clone(&cfg.policy), Vec::new())
    };
    let cores = crate::runtime::targets::build(cfg, CancellationToken::new()).await;
    let many = cores.len() > 1;
    // Change Calendars are asked now, as a sweep asks them (at a hypothetical --at their state
    // is not known: their rules stop nothing in that plan, and say so).
    let (mut calendar_note, mut calendar_failed) = (None, false);
    if !policy.change_calendars().is_empty() {
        if hypothetical {
            calendar_note = Some(
                "  change calendars are not asked for a time other than now: their rules stop nothing in this plan"
                    .to_string(),
            );
        } else {
            let asked = sweep::calendars::ask(&policy, &cores, now).await;
            calendar_failed = asked.error.is_some();
            calendar_note = asked.error.map(|e| format!("  {}", output::escape(&e)));
        }
    }
    // Each account and region read at once.
    let mut set = tokio::task::JoinSet::new();
    for (i, core) in cores.iter().enumerate() {
        let (core, policy) = (
            core.clone(),
            Arc::new(policy.for_place(core.account(), core.region())),
        );
        set.spawn(async move {
            let found = core
                .discover(&|p| policy.may_apply_to(p), policy.uses_tags())
                .await;
            (i, policy, found)
        });
    }
    let mut places = Vec::new();
    while let Some(joined) = set.join_next().await {
        places.push(joined.context("a discovery task failed")?);
    }
    places.sort_by_key(|(i, ..)| *i);

    let mut rows: Vec<PlanRecord> = Vec::new();
    let mut notes: Vec<String> = calendar_note.into_iter().collect();
    let mut gated: Vec<String> = Vec::new();
    let (mut seen, mut in_scope, mut running, mut failures, mut blind) = (0, 0, 0, 0, 0);
    for (i, policy, found) in places {
        let core = &cores[i];
        let place = if many {
            format!("{}: ", core.place())
        } else {
            String::new()
        };
        if let Some(e) = &found.listing_failed {
            if !many {
                anyhow::bail!("cannot list pipelines: {e}");
            }
            notes.push(format!(
                "  {place}cannot list pipelines: {}",
                output::escape(&e.explain())
            ));
            blind += 1;
            continue;
        }
        seen += found.pipelines_seen;
        in_scope += found.pipelines_in_scope;
        let in_progress: Vec<_> = found
            .executions
            .into_iter()
            .filter(|e| e.status == stopd_core::ActiveStatus::InProgress)
            .collect();
        running += in_progress.len();
        let (planned, others) = sweep::plan(&policy.decider(at), at, &in_progress, &extra);
        rows.extend(planned.into_iter().map(|p: Planned| PlanRecord {
            pipeline: p.pipeline,
            execution_id: p.execution_id,
            rule: p.rule,
            rule_kind: p.rule_kind.to_string(),
            mode: p.mode.as_str().into(),
            reason: p.reason,
            explanation: p.explanation,
            account: core.account().to_string(),
            region: core.region().to_string(),
        }));
        for (i, v) in others {
            let e = &in_progress[i];
            let why = match v {
                Verdict::Exempt { exemption, rule } => {
                    format!("exempt by {exemption} (rule {rule} applies)")
                }
                Verdict::Grace { rule, until } => {
                    format!("in grace of {rule} until {}", shown(until, opts.tz))
                }
                Verdict::SparedRollback { rule } => {
                    format!("a ROLLBACK, spared by {rule} (set rollbacks = true to stop it)")
                }
                Verdict::Allow | Verdict::Stop(_) => continue,
            };
            notes.push(format!(
                "  not stopped: {place}{} {}: {why}",
                output::escape(&e.pipeline),
                e.execution_id
            ));
        }
        failures += found.failures.len();
        for f in &found.failures {
            notes.push(format!(
                "  could not read {place}{}: {}",
                output::escape(&f.pipeline),
                output::escape(&f.error.to_string())
            ));
        }
        // Gates: which pipelines' transitions a gating freeze holds closed then, and which
        // transitions stopd holds that it would open.
        for p in &found.pipelines {
            let holds = policy.gates(at, p, &core.tags_of(p), &extra);
            if let Some(h) = holds.first() {
                // Which transitions, read from the pipeline (a one-stage pipeline has no
                // inbound transition to gate); only planned: nothing is closed by `plan`.
                let mut calls = stopd_core::CallCounts::default();
                let names = match core.pipeline_state(p, &mut calls).await {
                    Ok(st) => Some(st.into_iter().map(|s| s.stage).collect::<Vec<_>>()),
                    Err(_) => None,
                };
                let line = match names.as_deref().map(|n| h.gate.stages_of(n)) {
                    Some(st) if st.is_empty() => format!(
                        "no gate to close: {place}{} {} (by {})",
                        output::escape(p),
                        if h.gate.stages.is_none() {
                            "has one stage, so no inbound transition to gate"
                        } else {
                            "has none of the gated stages"
                        },
                        h.rule
                    ),
                    Some(st) => format!(
                        "gate would close: {place}{} {} (by {})",
                        output::escape(p),
                        output::escape(&st.join(", ")),
                        h.rule
                    ),
                    None => format!(
                        "gate would close: {place}{} ({}) by {}",
                        output::escape(p),
                        match &h.gate.stages {
                            None => "every stage after the first".to_string(),
                            Some(s) => output::escape(&s.join(", ")).into_owned(),
                        },
                        h.rule
                    ),
                };
                gated.push(format!("  {line}"));
            }
        }
        for (account, region, p, stage, g) in &held {
            let here = account == core.account() && (region.is_empty() || region == core.region());
            if !here {
                continue;
            }
            let covered = !policy.gates(at, p, &core.tags_of(p), &extra).is_empty();
            if g.ours() && !covered && policy.cannot_judge(&g.rule) {
                gated.push(format!(
                    "  gate stays closed: {place}{} {} (held for {}, whose calendar cannot be read)",
                    output::escape(p),
                    output::escape(stage),
                    g.rule
                ));
            } else if g.ours() && !covered {
                gated.push(format!(
                    "  gate would open: {place}{} {} (held for {}, which no longer covers it)",
                    output::escape(p),
                    output::escape(stage),
                    g.rule
                ));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if opts.format == Format::Table && hypothetical {
        writeln!(
            out,
            "HYPOTHETICAL: the executions running now ({}), judged as if it were {}.\n\
             By then these may have finished and others started; `plan` without --at shows now.\n",
            shown(now, opts.tz),
            shown(at, opts.tz)
        )?;
    }
    // With one account, its name and region are in JSON and CSV, and in the wide table only.
    let wide_only: &[&str] = if many {
        &["rule_kind", "reason"]
    } else {
        &["rule_kind", "reason", "account", "region"]
    };
    output::write(
        &mut out,
        opts,
        &rows,
        Columns {
            // Account and region last: columns that scripts read by position stay where they were.
            names: &[
                "pipeline",
                "execution_id",
                "rule",
                "rule_kind",
                "mode",
                "reason",
                "explanation",
                "account",
                "region",
            ],
            // The explanation says what the reason says, and why.
            wide_only,
            whole: &[],
            to_the_minute: &[],
        },
        |r| {
            vec![
                r.pipeline.clone(),
                r.execution_id.clone(),
                r.rule.clone(),
                r.rule_kind.clone(),
                r.mode.clone(),
                r.reason.clone(),
                r.explanation.clone(),
                r.account.clone(),
                r.region.clone(),
            ]
        },
    )?;
    if opts.format == Format::Table {
        let width = opts.width();
        let footer = format!(
            "{} {}: {} pipelines ({} in scope){}, {} executions in progress{}, {} would be stopped{}.",
            if hypothetical {
                "Hypothetically, at"
            } else {
                "At"
            },
            shown(at, opts.tz),
            seen,
            in_scope,
            if many {
                format!(" in {} accounts and regions", cores.len())
            } else {
                String::new()
            },
            running,
            if hypothetical { " now" } else { "" },
            rows.len(),
            if hypothetical { " then" } else { "" },
        );
        writeln!(out, "\n{}", output::paragraph("", &footer, "", width))?;
        // Notes and gates: "  " and their text, continued deeper.
        let indented = |line: &str| {
            let text = line.strip_prefix("  ").unwrap_or(line);
            output::paragraph("  ", text, "    ", width)
        };
        for line in notes {
            writeln!(out, "{}", indented(&line))?;
        }
        if !gated.is_empty() {
            writeln!(out, "Gates{}:", if hypothetical { " then" } else { "" })?;
            for line in gated {
                writeln!(out, "{}", indented(&line))?;
            }
        }
    }
    Ok(if failures == 0 && blind == 0 && !calendar_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
