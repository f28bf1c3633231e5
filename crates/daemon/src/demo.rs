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
use crate::output::{self, OutputArgs};
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
        "stopd demo: an emulated CodePipeline at {}\n\
         with the fleet of config/demo-fleet.json, and the policy of config/demo.toml:\n\
         freeze 'demo-freeze' on prod-* tagged env=prod, in force now;\n\
         timeout 'two-hours' everywhere, abandon; exemption 'hotfix-lane' for\n\
         prod-hotfix-*.\n",
        server.endpoint_url()
    )?;

    let store = Store::open(&cfg.daemon.database).await?;
    let started = Utc::now();
    let earlier = store.report(&ReportFilter::default()).await?.len();
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
            short_id(&e.execution_id),
            crate::time::human(e.start_time.map_or(chrono::Duration::zero(), |t| now - t)),
            verdict,
        ]);
    }
    writeln!(out, "Running executions and the policy's verdict:")?;
    // The verdicts are the point: wrapped, not cut.
    output::render(
        &mut out,
        &["pipeline", "execution", "running", "verdict"],
        &[true, true, true, false],
        &rows,
        OutputArgs::TABLE.width(),
        output::Fit::Wrap,
    )?;

    let sweeper = Sweeper {
        cores: Arc::new(vec![core]),
        store: store.clone(),
        concurrency: cfg.daemon.stop_concurrency,
        draining: CancellationToken::new(),
    };
    let summary = sweeper
        .sweep(Arc::clone(&cfg.policy), "demo", false)
        .await?;
    let status = summary.status_line();
    writeln!(
        out,
        "\n{}",
        output::paragraph(
            "One sweep: ",
            status.strip_prefix("last sweep: ").unwrap_or(&status),
            "  ",
            OutputArgs::TABLE.width(),
        )
    )?;
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
        OutputArgs::TABLE,
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

    let records = store
        .report(&ReportFilter {
            since: Some(started),
            ..ReportFilter::default()
        })
        .await?;
    if earlier == 0 {
        writeln!(out, "\nThe audit log (stopd report):")?;
    } else {
        writeln!(
            out,
            "\nThis run's part of the audit log (stopd report --since {});\n\
             the {earlier} record(s) before it, from earlier runs with this database, are not shown:",
            stopd_rules::rfc3339(started)
        )?;
    }
    crate::commands::write_audit(&mut out, OutputArgs::TABLE, &records)?;
    let gates = store
        .gate_records(Some(started), None, None, None, (None, None))
        .await?;
    if !gates.is_empty() {
        // One line per pipeline: its gated stages.
        let mut by: std::collections::BTreeMap<(String, String, String, String), Vec<String>> =
            std::collections::BTreeMap::new();
        for g in &gates {
            by.entry((
                g.pipeline.clone(),
                g.rule.clone(),
                g.action.clone(),
                g.outcome.clone(),
            ))
            .or_default()
            .push(g.stage.clone());
        }
        let rows: Vec<Vec<String>> = by
            .into_iter()
            .map(|((pipeline, rule, action, outcome), stages)| {
                vec![pipeline, stages.join(", "), rule, action, outcome]
            })
            .collect();
        writeln!(
            out,
            "\nGates: nothing new starts while the freeze lasts (stopd report --gates):"
        )?;
        output::table(
            &mut out,
            OutputArgs::TABLE,
            &["pipeline", "stages (inbound)", "rule", "action", "outcome"],
            &rows,
        )?;
    }
    let run = Invocation::current();
    let demo_toml = if Path::new("config/demo.toml").exists() {
        ""
    } else {
        "\n  (config/demo.toml is in the stopd source tree: run these from its top\n  directory)"
    };
    let kept = cfg.daemon.database.starts_with(tmp.path());
    let database = format!(
        "{}{}",
        cfg.daemon.database.display(),
        if kept {
            " (temporary: deleted now; pass --database PATH to keep it)"
        } else {
            ""
        }
    );
    writeln!(
        out,
        "\n{}\n\nNext:{demo_toml}\n\
         {}\n\
         {}\n\
         {}\n\
         {}\n\
         {}",
        output::paragraph(
            "Audit database: ",
            &database,
            "  ",
            OutputArgs::TABLE.width()
        ),
        next(
            &format!("{} demo --database ./stopd-demo.db", run.stopd),
            "run again, keeping the audit log in ./stopd-demo.db (the database config/demo.toml names)"
        ),
        next(
            &format!("{} --config config/demo.toml report --summary", run.stopd),
            "then query that log"
        ),
        next(
            &format!("{} --config config/demo.toml windows --days 7", run.stopd),
            "the demo policy's freeze windows; needs no AWS"
        ),
        next(
            &format!("{} --fixture config/demo-fleet.json &", run.emulator),
            "a standing emulator (another terminal), then:"
        ),
        next(
            &format!(
                "AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x {} --config config/demo.toml plan",
                run.stopd
            ),
            "what the daemon would stop there"
        ),
    )?;
    store.close().await;
    server.shutdown().await;
    Ok(if summary.all_final() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One "Next:" line: the command, then what it does (on the next line if the command is long).
fn next(command: &str, what: &str) -> String {
    if command.chars().count() <= 52 {
        format!("  {command:<52}  {what}")
    } else {
        format!(
            "{}\n  {command}",
            output::paragraph("  # ", what, "  # ", OutputArgs::TABLE.width())
        )
    }
}

/// How to run `stopd` and `stopd-emulator` the way the user started this demo.
#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    /// `stopd`, `./target/release/stopd`, or `cargo run --release -p stopd --`.
    stopd: String,
    /// The same for the emulator.
    emulator: String,
}

impl Invocation {
    fn current() -> Invocation {
        let mut arg0 = std::env::args().next().unwrap_or_else(|| "stopd".into());
        // Shorter, and still right from here: ./target/release/stopd.
        if let Ok(cwd) = std::env::current_dir()
            && let Ok(rel) = Path::new(&arg0).strip_prefix(&cwd)
        {
            arg0 = format!("./{}", rel.display());
        }
        // `cargo run` sets CARGO and CARGO_MANIFEST_DIR for the program it runs.
        let cargo =
            std::env::var_os("CARGO").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some();
        Invocation::from(&arg0, cargo, cfg!(debug_assertions))
    }

    fn from(arg0: &str, under_cargo: bool, debug: bool) -> Invocation {
        if under_cargo {
            let profile = if debug { "" } else { " --release" };
            return Invocation {
                stopd: format!("cargo run{profile} -p stopd --"),
                emulator: format!("cargo run{profile} -p stopd-emulator --"),
            };
        }
        if !arg0.contains('/') {
            // Found on PATH.
            return Invocation {
                stopd: "stopd".into(),
                emulator: "stopd-emulator".into(),
            };
        }
        let quote = |s: &str| {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
            {
                s.to_string()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        };
        let emulator = Path::new(arg0).with_file_name("stopd-emulator");
        Invocation {
            stopd: quote(arg0),
            emulator: if emulator.exists() {
                quote(&emulator.to_string_lossy())
            } else {
                "stopd-emulator".into()
            },
        }
    }
}

/// An execution id cut to its first 8 characters, as `git` shortens hashes.
fn short_id(id: &str) -> String {
    match id.char_indices().nth(8) {
        Some((i, _)) => format!("{}…", &id[..i]),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_commands_work_as_the_user_started_the_demo() {
        let cargo = Invocation::from("/src/stopd/target/release/stopd", true, false);
        assert_eq!(cargo.stopd, "cargo run --release -p stopd --");
        assert_eq!(cargo.emulator, "cargo run --release -p stopd-emulator --");
        assert_eq!(
            Invocation::from("target/debug/stopd", true, true).stopd,
            "cargo run -p stopd --"
        );
        assert_eq!(Invocation::from("stopd", false, false).stopd, "stopd");
        let path = Invocation::from("./bin dir/stopd", false, false);
        assert_eq!(path.stopd, "'./bin dir/stopd'");
        assert_eq!(path.emulator, "stopd-emulator");
    }
}
