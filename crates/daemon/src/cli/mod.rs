//! The command line: parsing (clap), one module per command, and the only code that prints.
//!
//! Each command's module holds its clap arguments, the examples its `--help` ends with, and the
//! function that runs it; this one holds the command tree, the dispatch and the exit codes.
//! Commands read the time from the [`crate::clock::Clock`] the dispatch hands them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod auditor;
mod check;
mod common;
mod completions;
mod copy;
pub mod demo;
mod exempt;
mod freeze;
pub mod html;
pub mod logging;
pub mod man;
pub mod output;
mod plan;
pub mod preview;
mod report;
mod run;
pub mod status;
mod stop;
pub mod time;
mod verify;
mod windows;

use crate::config;

use common::TzArg;
use exempt::ExemptCommand;
use freeze::FreezeCommand;

const AFTER_HELP: &str = "\
Examples:
  # Validate /etc/stopd/stopd.toml; show the rules and the next windows
  stopd check
  # What would be stopped right now, and why (stops nothing)
  stopd --config ./stopd.toml plan
  # ... and, hypothetically, at the start of the year-end freeze
  stopd plan --at 2026-12-19T00:00:00Z
  # One sweep that decides and records, stops nothing
  stopd run --once --dry-run
  # Stops of the last week that did not go through
  stopd report --since 7d --outcome failed
  # Let a hotfix through for two hours
  stopd exempt add --pipeline 'prod-hotfix-*' --for 2h --reason \"INC-4711\"
  # All of the above against a local emulator: no AWS, no setup
  stopd demo

Exit codes: 0 success; 1 runtime failure; 2 usage error; 78 invalid configuration.
Logging: STOPD_LOG sets the filter (default \"info\", e.g. \"stopd=debug\");
STOPD_LOG_FORMAT=json for JSON lines. Under systemd (JOURNAL_STREAM set) lines
carry no timestamp of their own.
Each command's --help has examples; `stopd completions bash` and `stopd man`
install help into the shell and man(1).";

const DEMO_EXAMPLES: &str = "\
Examples:
  # A local CodePipeline, a policy, one sweep, the audit log
  stopd demo
  # Keep the audit log to query it afterwards (config/demo.toml names this file)
  stopd demo --database ./stopd-demo.db
  stopd --config config/demo.toml report --summary";

const STATUS_EXAMPLES: &str = "\
Examples:
  # Is the daemon running on this database, healthy, and what is in force
  stopd status
  # From a monitoring check: exit 0 healthy, 1 not running or stale
  stopd status --format json
  # Times in local time (JSON stays UTC)
  stopd status --tz Europe/Berlin";

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

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: sweep on the schedule and at window edges, stop what the policy says.
    ///
    /// SIGHUP reloads the policy (a bad file is logged and the old policy stays in force);
    /// SIGTERM lets in-flight stops finish (up to [daemon] shutdown_timeout), records them and
    /// exits 0. Talks to systemd with sd_notify (READY, RELOADING, STOPPING, STATUS, WATCHDOG).
    /// One `stopd run` per database: a second one exits 1 (the first holds <database>.lock).
    #[command(after_help = run::RUN_EXAMPLES)]
    Run(run::RunArgs),
    /// Validate the policy file; print each rule, its scope and the next window transitions.
    ///
    /// Errors name file, line and column, one per line; the exit code is then 78. Reads every
    /// secret file `run` needs (signing key, webhook URL files, database password; from
    /// $CREDENTIALS_DIRECTORY first) and fails, 78, naming any it cannot. Warns when the audit
    /// database cannot be written by the current user.
    #[command(after_help = check::CHECK_EXAMPLES)]
    Check,
    /// Show what would be stopped now (or at --at) and why, without stopping anything.
    ///
    /// Reads live executions from CodePipeline; decides as the daemon would. With --at, today's
    /// executions are judged as if it were then: a hypothetical, labelled as such.
    #[command(after_help = plan::PLAN_EXAMPLES)]
    Plan(plan::PlanArgs),
    /// List the freeze windows in a span, in each rule's zone and in UTC. Needs no AWS.
    #[command(after_help = windows::WINDOWS_EXAMPLES)]
    Windows(windows::WindowsArgs),
    /// Stop one execution by hand, through the same engine and audit log as the daemon.
    #[command(after_help = stop::STOP_EXAMPLES)]
    Stop(stop::StopArgs),
    /// Query the audit log (works while the daemon is writing).
    #[command(after_help = report::REPORT_EXAMPLES)]
    Report(report::ReportArgs),
    /// Check that the audit log was not altered: recompute its hash chain.
    ///
    /// Exit 0 prints the number of records and the head's sequence number and hash (keep it:
    /// a later verify that prints a chain not extending it means a rebuilt log); exit 1 names
    /// the first record altered, removed or inserted, and any table whose append-only triggers
    /// were dropped.
    #[command(after_help = verify::VERIFY_EXAMPLES)]
    Verify(verify::VerifyArgs),
    /// Break-glass exemptions, stored and audited in the database.
    #[command(subcommand, after_help = exempt::EXEMPT_EXAMPLES)]
    Exempt(ExemptCommand),
    /// Stop the line: an ad-hoc freeze from now, stored and audited in the database; a
    /// running daemon enforces it within seconds.
    #[command(subcommand, after_help = freeze::FREEZE_EXAMPLES)]
    Freeze(FreezeCommand),
    /// Is a daemon running on this database (pid), its last sweep, the policy in force
    /// against the file on disk, rules in force, gates closed, exemptions, escalations.
    ///
    /// Exit 0 healthy; 1 when no `stopd run` holds the database's lock, or no sweep succeeded
    /// within three schedule intervals (the rule of /healthz).
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Run against an in-process emulator with a seeded fleet and print what it stopped.
    ///
    /// Needs no AWS, no setup and no config file: it enforces its own policy (config/demo.toml,
    /// built in), so it refuses --config.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// Copy a whole audit log into an empty database (SQLite path or postgres:// URL), chain
    /// intact.
    ///
    /// Every row of every audit table, ids and hashes as they are, in one transaction on the
    /// target that commits only when the copy verifies with the source's head. Refuses a
    /// target that holds audit rows. Reads no policy file. Prints the rows copied per table
    /// and the head (sequence number and hash) `stopd verify` prints on the copy.
    #[command(after_help = copy::COPY_EXAMPLES)]
    Copy(copy::CopyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = completions::COMPLETIONS_EXAMPLES)]
    Completions(completions::CompletionsArgs),
    /// Print the man page stopd(1) (roff) to stdout, or write every page to a directory.
    ///
    /// --dir writes stopd.1, a stopd-<command>.1 for each command and subcommand
    /// (stopd-exempt-add.1) and stopd.toml.5, the policy file's page.
    #[command(after_help = man::MAN_EXAMPLES)]
    Man(man::ManArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Output format.
    #[arg(long, short = 'o', visible_alias = "output", value_enum, default_value_t = StatusFormat::Table)]
    format: StatusFormat,
    #[command(flatten)]
    tz: TzArg,
}

/// How the user invoked stopd, for the commands that hints print: `stopd`, or `stopd --config
/// my.toml` when the policy file was given on the command line (a hint printed without it
/// would run against the default policy and database).
static INVOCATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `stopd [--config PATH] <rest>`, as the user ran it: for hints ("revoke with `...`").
pub fn hint(rest: &str) -> String {
    format!(
        "{} {rest}",
        INVOCATION.get().map_or("stopd", String::as_str)
    )
}

/// `path` as a shell word: as it is when it needs no quoting, else in single quotes.
fn shell_word(path: &str) -> String {
    let plain = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        path.to_string()
    } else {
        format!("'{}'", path.replace('\'', "'\\''"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatusFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the demo's audit database in this file instead of a temporary directory.
    #[arg(long, value_name = "PATH")]
    database: Option<PathBuf>,
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The binary: parses the command line, runs the command, and maps its error to an exit code.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let config_source = matches.value_source("config");
    if config_source == Some(ValueSource::CommandLine) {
        let given = format!(
            "stopd --config {}",
            shell_word(&cli.config.to_string_lossy())
        );
        INVOCATION.set(given).expect("set once");
    }
    // The demo prints its own story; its logs would only interleave.
    logging::init_logging(if matches!(cli.command, Command::Demo(_)) {
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
    let result = runtime.block_on(dispatch(cli, config_source));
    // Whatever a command left running in the background (a connection pool's maintenance task
    // once spun at exit and held a `report` for minutes) does not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        // A reader that stopped reading (`stopd report | head`) is not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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

/// Commands that only need the audit database: they go on when the policy does not validate
/// (DESIGN.md: break-glass must not depend on a clean edit).
fn needs_only_the_database(command: &Command) -> bool {
    matches!(
        command,
        Command::Status(_)
            | Command::Report(_)
            | Command::Verify(_)
            | Command::Exempt(_)
            | Command::Freeze(_)
    )
}

/// Whether `e` is, somewhere in its chain, a write to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
            || c.downcast_ref::<csv::Error>().is_some_and(
                |c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe),
            )
    })
}

/// Runs the command, each with what it needs: the policy (or only its `[daemon]` table, for the
/// commands that need only the audit database) and the clock.
async fn dispatch(cli: Cli, config_source: Option<ValueSource>) -> anyhow::Result<ExitCode> {
    let path = cli.config;
    let clock = crate::clock::system();
    let clock = clock.as_ref();
    match cli.command {
        Command::Demo(a) => {
            match config_source {
                Some(ValueSource::CommandLine) => {
                    return Err(UsageError(format!(
                        "demo enforces its own built-in policy (config/demo.toml) on its own \
                         emulator and does not read --config {}; to try that policy, run \
                         `stopd --config {0} check`, then `plan` against CodePipeline",
                        path.display()
                    ))
                    .into());
                }
                Some(ValueSource::EnvVariable) => eprintln!(
                    "stopd: note: demo ignores STOPD_CONFIG ({}); it enforces its own built-in \
                     policy (config/demo.toml)",
                    path.display()
                ),
                _ => {}
            }
            demo::demo(a.database, clock).await
        }
        Command::Completions(a) => completions::run(&a, Cli::command()),
        Command::Man(a) => man::run(&a, Cli::command()),
        // Both databases are on the command line: no policy file is read, valid or not.
        Command::Copy(a) => copy::run(&a).await,
        command => {
            let cfg = if needs_only_the_database(&command) {
                let cfg = config::load_for_database(&path)?;
                if let Some(e) = &cfg.policy_error {
                    eprintln!(
                        "stopd: warning: the policy file does not validate; going on with its \
                         [daemon] table alone (a running daemon keeps the policy it last loaded):\n{e}"
                    );
                    for w in &cfg.warnings {
                        eprintln!("stopd: warning: {w}");
                    }
                }
                cfg
            } else if matches!(command, Command::Run(_)) {
                // A calendar that cannot be read: its rule is set aside, each sweep fails.
                config::load_for_run(&path)?
            } else {
                config::load(&path)?
            };
            match command {
                Command::Run(a) => run::run(cfg, &a).await,
                Command::Check => check::run(cfg, clock).await,
                Command::Status(a) => {
                    status::command(&cfg, a.format == StatusFormat::Json, a.tz.tz, clock).await
                }
                Command::Plan(a) => plan::run(&cfg, a, clock).await,
                Command::Windows(a) => windows::run(&cfg, a, clock).await,
                Command::Stop(a) => stop::run(&cfg, &a, clock).await,
                Command::Report(a) => report::run(&cfg, a, clock).await,
                Command::Verify(a) => verify::run(&cfg, &a, clock).await,
                Command::Exempt(c) => exempt::run(&cfg, c, clock).await,
                Command::Freeze(c) => freeze::run(&cfg, c, clock).await,
                Command::Demo(_) | Command::Completions(_) | Command::Man(_) | Command::Copy(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command and subcommand teaches by example.
    #[test]
    fn every_subcommand_help_has_examples() {
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut all = vec![sub.clone()];
            all.extend(sub.get_subcommands().cloned());
            for mut c in all {
                if c.get_name() == "help" {
                    continue;
                }
                let help = c.render_long_help().to_string();
                let examples = help.split_once("Examples:").map_or(0, |(_, rest)| {
                    rest.lines()
                        .skip(1)
                        .take_while(|l| !l.trim().is_empty())
                        .filter(|l| l.trim_start().starts_with("stopd "))
                        .count()
                });
                if !(2..=4).contains(&examples) {
                    missing.push(format!("{}: {examples} examples in\n{help}", c.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:?}");
    }

    /// A hint's `--config` runs as printed when pasted into a shell.
    #[test]
    fn hints_quote_a_config_path_only_when_the_shell_needs_it() {
        assert_eq!(shell_word("./conf/stopd.toml"), "./conf/stopd.toml");
        assert_eq!(shell_word("my dir/stopd.toml"), "'my dir/stopd.toml'");
        assert_eq!(shell_word("it's.toml"), "'it'\\''s.toml'");
        assert_eq!(shell_word("$HOME.toml"), "'$HOME.toml'");
    }

    /// The top-level help fits 100 columns without clap re-wrapping the examples.
    #[test]
    fn top_level_help_wraps_cleanly() {
        let help = Cli::command().render_long_help().to_string();
        for line in help.lines() {
            assert!(line.chars().count() <= 100, "too wide: {line:?}");
        }
        assert!(
            help.contains(
                "\n  stopd exempt add --pipeline 'prod-hotfix-*' --for 2h --reason \"INC-4711\"\n"
            ),
            "{help}"
        );
    }
}
