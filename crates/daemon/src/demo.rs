//! `stopd demo`: the emulator in-process with the fleet of `config/demo-fleet.json`, the
//! policy of `config/demo.toml`, one sweep, and what it did. No AWS, no setup.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use stopd_emulator::{Clock, Emulator, EmulatorConfig, Fixture};
use stopd_rules::Verdict;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::output;
use crate::run::build_core;
use crate::store::{ReportFilter, Store};
use crate::sweep::{self, Sweeper};

const DEMO_TOML: &str = include_str!("../../../config/demo.toml");
const DEMO_FLEET: &str = include_str!("../../../config/demo-fleet.json");

/// Runs the demo.
pub async fn demo(database: Option<PathBuf>) -> Result<ExitCode> {
    let emulator = Emulator::new(EmulatorConfig {
        clock: Clock::scaled(1.0),
        ..EmulatorConfig::default()
    });
    emulator
        .seed(&Fixture::from_json(DEMO_FLEET).context("the demo fleet does not parse")?)
        .context("the demo fleet does not seed")?;
    let server = emulator
        .serve("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the emulator")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut cfg = config::parse(Path::new("config/demo.toml"), DEMO_TOML)?;
    cfg.aws.endpoint_url = Some(server.endpoint_url());
    cfg.daemon.database = database.unwrap_or_else(|| tmp.path().join("audit.db"));
    cfg.static_credentials = Some(("demo".into(), "demo".into()));

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "stopd demo: emulated CodePipeline at {} with the fleet of config/demo-fleet.json,\n\
         policy config/demo.toml (freeze 'demo-freeze' on prod-* tagged env=prod, in force now;\n\
         timeout 'two-hours' everywhere, abandon; exemption 'hotfix-lane' for prod-hotfix-*).\n",
        server.endpoint_url()
    )?;

    let store = Store::open(&cfg.daemon.database).await?;
    let core = build_core(&cfg, CancellationToken::new()).await;

    // What the policy says about each running execution, before anything is stopped.
    let found = core.discover(&|_| true, cfg.policy.uses_tags()).await;
    let now = Utc::now();
    let facts = sweep::facts(&found.executions);
    let verdicts = cfg.policy.decide(now, &facts, &[]);
    let mut rows = Vec::new();
    for (e, v) in found.executions.iter().zip(verdicts) {
        let verdict = match v {
            Verdict::Stop(d) => format!(
                "STOP ({}, {}): {}",
                d.rule,
                d.mode.as_str(),
                d.explanation()
            ),
            Verdict::Exempt { exemption, rule } => {
                format!("exempt by {exemption} (rule {rule} applies)")
            }
            Verdict::Grace { rule, until } => format!("in grace of {rule} until {until}"),
            Verdict::SparedRollback { rule } => {
                format!("spared: a ROLLBACK ({rule} does not set rollbacks = true)")
            }
            Verdict::Allow => "allowed: no rule applies".into(),
        };
        rows.push(vec![
            e.pipeline.clone(),
            e.execution_id.clone(),
            humantime::format_duration(std::time::Duration::from_secs(
                e.start_time
                    .map_or(0, |t| (now - t).num_seconds().max(0) as u64),
            ))
            .to_string(),
            verdict,
        ]);
    }
    writeln!(out, "Running executions and the policy's verdict:")?;
    output::table(
        &mut out,
        &["pipeline", "execution", "running", "verdict"],
        &rows,
    )?;

    let sweeper = Sweeper {
        core,
        store: store.clone(),
        concurrency: cfg.daemon.stop_concurrency,
        draining: CancellationToken::new(),
    };
    let summary = sweeper
        .sweep(Arc::clone(&cfg.policy), "demo", false)
        .await?;
    writeln!(out, "\nOne sweep: {}", summary.status_line())?;
    let mut rows = Vec::new();
    for d in &summary.done {
        let now_status = emulator
            .execution(&d.planned.pipeline, &d.planned.execution_id)
            .map_or("?", |x| x.status);
        rows.push(vec![
            d.planned.pipeline.clone(),
            d.planned.execution_id.clone(),
            d.planned.rule.clone(),
            d.planned.mode.as_str().into(),
            d.outcome.clone(),
            now_status.into(),
        ]);
    }
    rows.sort();
    writeln!(out, "\nWhat it stopped:")?;
    output::table(
        &mut out,
        &[
            "pipeline",
            "execution",
            "rule",
            "mode",
            "outcome",
            "status now",
        ],
        &rows,
    )?;

    writeln!(out, "\nThe audit log (stopd report):")?;
    let records = store.report(&ReportFilter::default()).await?;
    crate::commands::write_audit(&mut out, output::Format::Table, &records)?;
    writeln!(
        out,
        "\nAudit database: {}{}\n\nNext:\n  \
         stopd demo --database ./stopd-demo.db                      keep the audit log (the path of config/demo.toml)\n  \
         stopd --config config/demo.toml report --summary           then query it\n  \
         stopd --config config/demo.toml windows --days 7           freeze windows; needs no AWS\n  \
         stopd-emulator --fixture config/demo-fleet.json &          a standing emulator, then:\n  \
         AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x stopd --config config/demo.toml plan",
        cfg.daemon.database.display(),
        if cfg.daemon.database.starts_with(tmp.path()) {
            " (temporary; pass --database PATH to keep it)"
        } else {
            ""
        }
    )?;
    store.close().await;
    server.shutdown().await;
    Ok(if summary.all_final() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
