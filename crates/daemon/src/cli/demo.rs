//! `stopd demo`: the emulator in-process with two accounts, each with the fleet of
//! `config/demo-fleet.json`, the policy of `config/demo.toml`, one sweep of both, and what it
//! did. No AWS, no setup.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use stopd_emulator::{Clock, Emulator, EmulatorConfig, Fixture};
use stopd_rules::Verdict;
use tokio_util::sync::CancellationToken;

use crate::cli::output::{self, OutputArgs};
use crate::config;
use crate::runtime::sweep::{self, Sweeper};
use stopd_audit::{ReportFilter, Store};

const DEMO_TOML: &str = include_str!("../../../../config/demo.toml");
const DEMO_FLEET: &str = include_str!("../../../../config/demo-fleet.json");

/// Runs the demo.
pub async fn demo(database: Option<PathBuf>, clock: &dyn crate::clock::Clock) -> Result<ExitCode> {
    let emulator = Emulator::new(EmulatorConfig {
        clock: Clock::scaled(1.0),
        ..EmulatorConfig::default()
    });
    let fleet = Fixture::from_json(DEMO_FLEET).context("the demo fleet does not parse")?;
    let server = emulator
        .serve("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the emulator")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut cfg = config::parse(Path::new("config/demo.toml"), DEMO_TOML)?;
    // The emulator's accounts: one per [[account]], each with the demo fleet in each region.
    emulator.add_accounts(
        cfg.accounts.len(),
        &[cfg.aws.region.clone().unwrap_or_else(|| "us-east-1".into())],
        None,
        None,
        None,
    );
    // Account name -> the emulator's account id (from the role's ARN).
    let mut ids = std::collections::BTreeMap::new();
    for a in &cfg.accounts {
        let id = a.role_arn.split(':').nth(4).unwrap_or_default().to_string();
        for region in a.regions.iter().flatten() {
            emulator
                .world_of(&id, region)
                .seed(&fleet)
                .context("the demo fleet does not seed")?;
        }
        ids.insert(a.name.clone(), id);
    }
    cfg.aws.endpoint_url = Some(server.endpoint_url());
    cfg.aws.sts_endpoint_url = Some(server.endpoint_url());
    let db_path = database.unwrap_or_else(|| tmp.path().join("audit.db"));
    cfg.daemon.database = stopd_audit::Location::Sqlite(db_path.clone());
    cfg.static_credentials = Some(("demo".into(), "demo".into()));

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "stopd demo: an emulated CodePipeline at {}\n\
         with two accounts, payments and search, each with the fleet of\n\
         config/demo-fleet.json, and the policy of config/demo.toml: freeze\n\
         'demo-freeze' on prod-* tagged env=prod in the payments account, in force\n\
         now; timeout 'two-hours' everywhere, abandon; exemption 'hotfix-lane' for\n\
         prod-hotfix-*.\n",
        server.endpoint_url()
    )?;

    let store = Store::open(&db_path).await?;
    let started = clock.now();
    let earlier = store.report(&ReportFilter::default()).await?.len();
    let cores = crate::runtime::targets::build(&cfg, CancellationToken::new()).await;

    // What the policy says about each running execution, before anything is stopped.
    let mut rows = Vec::new();
    for core in &cores {
        let found = core.discover(&|_| true, cfg.policy.uses_tags()).await;
        if let Some(e) = &found.listing_failed {
            anyhow::bail!(
                "account {}: cannot list pipelines: {}",
                core.place(),
                e.explain()
            );
        }
        let now = clock.now();
        let facts = sweep::facts(&found.executions);
        let policy = cfg.policy.for_place(core.account(), core.region());
        let verdicts = policy.decide(now, &facts, &[]);
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
                core.account().to_string(),
                e.pipeline.clone(),
                short_id(&e.execution_id),
                crate::cli::time::human(e.start_time.map_or(chrono::Duration::zero(), |t| now - t)),
                verdict,
            ]);
        }
    }
    writeln!(out, "Running executions and the policy's verdict:")?;
    // The verdicts are the point: wrapped, not cut.
    output::render(
        &mut out,
        &["account", "pipeline", "execution", "running", "verdict"],
        &[true, true, true, true, false],
        &rows,
        OutputArgs::TABLE.width(),
        output::Fit::Wrap,
    )?;

    let sweeper = Sweeper {
        cores: Arc::new(cores),
        store: store.clone(),
        concurrency: cfg.daemon.stop_concurrency,
        draining: CancellationToken::new(),
        clock: crate::clock::system(),
    };
    let summary = sweeper
        .sweep(
            Arc::clone(&cfg.policy),
            stopd_audit::SweepTrigger::Demo,
            false,
        )
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
        let now_status = ids.get(&d.account).and_then(|id| {
            emulator
                .world_of(id, &d.region)
                .execution(&d.planned.pipeline, &d.planned.execution_id)
        });
        rows.push(vec![
            d.account.clone(),
            d.planned.pipeline.clone(),
            d.planned.execution_id.clone(),
            d.planned.rule.clone(),
            d.planned.mode.as_str().into(),
            d.outcome.to_string(),
            now_status.map_or("?", |x| x.status).into(),
        ]);
    }
    rows.sort();
    writeln!(out, "\nWhat it stopped:")?;
    output::table(
        &mut out,
        OutputArgs::TABLE,
        &[
            "account",
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
    crate::cli::report::write_audit(&mut out, OutputArgs::TABLE, &records)?;
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
    let kept = db_path.starts_with(tmp.path());
    let database = format!(
        "{}{}",
        db_path.display(),
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
            &format!(
                "{} --fixture config/demo-fleet.json --accounts 2 &",
                run.emulator
            ),
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
