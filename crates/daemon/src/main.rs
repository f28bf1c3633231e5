//! `stopd`: stops AWS CodePipeline executions that break a freeze window or a timeout, and keeps
//! an audit log of every stop. See `README.md` for operators and `ARCHITECTURE.md` for
//! maintainers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod commands;
mod config;
mod demo;
mod lock;
mod memory;
mod output;
mod run;
mod scheduler;
mod store;
mod sweep;
mod time;

use output::Format;

const AFTER_HELP: &str = "\
Examples:
  stopd check                                   validate /etc/stopd/stopd.toml, show the next windows
  stopd --config ./stopd.toml windows --days 14 freeze windows of the next two weeks
  stopd plan                                    what would be stopped right now, and why
  stopd plan --at 2026-12-19T00:00:00Z          ... at the start of the year-end freeze
  stopd run                                     the daemon (systemd runs this)
  stopd run --once --dry-run                    one sweep that decides and records, stops nothing
  stopd stop --pipeline prod-web --execution 1b2c... --reason \"bad deploy\"
  stopd report --since 7d --outcome failed      stops of the last week that did not go through
  stopd report --summary                        counts by rule, pipeline, outcome and day
  stopd exempt add --pipeline 'prod-hotfix-*' --for 2h --reason \"INC-4711 hotfix\"
  stopd demo                                    everything above against a local emulator, no AWS

Exit codes: 0 success; 1 runtime failure; 2 usage error; 78 invalid configuration.
Logging: STOPD_LOG sets the filter (default \"info\", e.g. \"stopd=debug\"); STOPD_LOG_FORMAT=json
for JSON lines. Under systemd (JOURNAL_STREAM set) lines carry no timestamp of their own.";

/// Policy-driven stop daemon for AWS CodePipeline: enforces change freezes and timeouts by
/// stopping running executions, and records every stop in a SQLite audit log.
#[derive(Debug, Parser)]
#[command(name = "stopd", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// The policy file.
    #[arg(
        long,
        global = true,
        env = "STOPD_CONFIG",
        default_value = config::DEFAULT_CONFIG_PATH,
        value_name = "PATH"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: sweep on the schedule and at every window edge, stop what the policy says.
    ///
    /// SIGHUP reloads the policy (a bad file is logged and the old policy stays in force);
    /// SIGTERM lets in-flight stops finish (up to [daemon] shutdown_timeout), records them and
    /// exits 0. Talks to systemd with sd_notify (READY, RELOADING, STOPPING, STATUS, WATCHDOG).
    /// One `stopd run` per database: a second one exits 1 (the first holds <database>.lock).
    Run(RunArgs),
    /// Validate the policy file; print a summary and the next window transitions.
    ///
    /// Errors name file, line and column, one per line; the exit code is then 78.
    Check,
    /// Show what would be stopped now (or at --at) and why, without stopping anything.
    ///
    /// Reads live executions from CodePipeline; decides as the daemon would.
    Plan(PlanArgs),
    /// List the freeze windows in a span, in each rule's zone and in UTC. Needs no AWS.
    Windows(WindowsArgs),
    /// Stop one execution by hand, through the same engine and audit log as the daemon.
    Stop(StopArgs),
    /// Query the audit log (works while the daemon is writing).
    Report(ReportArgs),
    /// Break-glass exemptions, stored and audited in the database.
    #[command(subcommand)]
    Exempt(ExemptCommand),
    /// Run against an in-process emulator with a seeded fleet and print what it stopped.
    /// Needs no AWS, no setup and no config file.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// One sweep, then exit: 0 when every decided stop reached a final outcome, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// Decide and record `dry_run`; never call StopPipelineExecution (overrides [daemon] dry_run).
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Decide as of this instant (RFC 3339, or a local date-time in UTC) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Args)]
struct WindowsArgs {
    /// Start of the span (RFC 3339, or a local date-time in UTC); default now.
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// Length of the span in days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
    days: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// Pipeline name.
    #[arg(long)]
    pipeline: String,
    /// Execution id.
    #[arg(long)]
    execution: String,
    /// Abandon in-progress actions instead of letting them finish.
    #[arg(long)]
    abandon: bool,
    /// Why; recorded in the audit log and sent to CodePipeline (cut to 200 characters).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Records at or after: RFC 3339, a date (2026-12-01, UTC), or a span ago (24h, 7d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Records before: same forms as --since.
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Pipeline glob (`*`, `?`, `[...]`).
    #[arg(long, value_name = "GLOB")]
    pipeline: Option<String>,
    /// Rule name (`manual` for stops made with `stopd stop`).
    #[arg(long, value_name = "NAME")]
    rule: Option<String>,
    /// Outcome: stopped, already_stopping, not_stoppable, pipeline_not_found, rejected, failed,
    /// dry_run, pending.
    #[arg(long, value_name = "O")]
    outcome: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Counts by rule, pipeline, outcome and day instead of records.
    #[arg(long, conflicts_with = "sweeps")]
    summary: bool,
    /// The sweep log instead: when the daemon looked, what it saw, how many calls, errors.
    #[arg(long)]
    sweeps: bool,
}

#[derive(Debug, Subcommand)]
enum ExemptCommand {
    /// Exempt pipelines from every rule for a while.
    Add(ExemptAddArgs),
    /// List exemptions, newest first.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Revoke an exemption by id.
    Revoke {
        /// The id shown by `exempt add` and `exempt list`.
        id: i64,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["for_", "until"])))]
struct ExemptAddArgs {
    /// Pipeline glob.
    #[arg(long, value_name = "GLOB")]
    pipeline: String,
    /// How long (e.g. 2h, 1d).
    #[arg(long = "for", id = "for_", value_name = "SPAN")]
    for_: Option<String>,
    /// Until when (RFC 3339, or a local date-time in [defaults] timezone).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Why; shown by `plan` and kept in the database.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the demo's audit database here instead of a temporary directory.
    #[arg(long, value_name = "PATH")]
    database: Option<PathBuf>,
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own story; its logs would only interleave.
    run::init_logging(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stopd: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<config::ConfigError>() {
                eprintln!("stopd: invalid configuration:\n{c}");
                ExitCode::from(78)
            } else if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("stopd: error: {u}");
                ExitCode::from(2)
            } else {
                eprintln!("stopd: error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config;
    match cli.command {
        Command::Demo(a) => demo::demo(a.database).await,
        command => {
            let cfg = config::load(&path)?;
            match command {
                Command::Run(a) => run::run(cfg, a.once, a.dry_run).await,
                Command::Check => commands::check(&cfg),
                Command::Plan(a) => commands::plan(&cfg, a.at.as_deref(), a.format).await,
                Command::Windows(a) => commands::windows(&cfg, a.from.as_deref(), a.days, a.format),
                Command::Stop(a) => {
                    commands::stop(&cfg, &a.pipeline, &a.execution, a.abandon, &a.reason).await
                }
                Command::Report(a) => {
                    commands::report(
                        &cfg,
                        &commands::ReportQuery {
                            since: a.since,
                            until: a.until,
                            pipeline: a.pipeline,
                            rule: a.rule,
                            outcome: a.outcome,
                            format: a.format,
                            summary: a.summary,
                            sweeps: a.sweeps,
                        },
                    )
                    .await
                }
                Command::Exempt(ExemptCommand::Add(a)) => {
                    commands::exempt_add(
                        &cfg,
                        &a.pipeline,
                        a.for_.as_deref(),
                        a.until.as_deref(),
                        &a.reason,
                    )
                    .await
                }
                Command::Exempt(ExemptCommand::List { format }) => {
                    commands::exempt_list(&cfg, format).await
                }
                Command::Exempt(ExemptCommand::Revoke { id }) => {
                    commands::exempt_revoke(&cfg, id).await
                }
                Command::Demo(_) => unreachable!("handled above"),
            }
        }
    }
}
