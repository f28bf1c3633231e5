//! The command line: parsing (clap), one module per command, and the only code that prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod auditor;
pub mod commands;
pub mod demo;
pub mod html;
pub mod man;
pub mod output;
pub mod preview;
pub mod status;
pub mod time;

use crate::config;
use crate::runtime::{run, secrets};

use output::OutputArgs;

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

const RUN_EXAMPLES: &str = "\
Examples:
  # The daemon, as systemd runs it
  stopd run
  # One sweep, then exit 0 if every decided stop reached a final outcome
  stopd --config ./stopd.toml run --once
  # Decide and record `dry_run`; call nothing that changes CodePipeline
  stopd run --once --dry-run && stopd report --outcome dry_run";

const CHECK_EXAMPLES: &str = "\
Examples:
  # Validate the installed policy (systemd's ExecStartPre does this)
  stopd check
  # Validate a policy before installing it
  stopd --config ./stopd.toml check";

const PLAN_EXAMPLES: &str = "\
Examples:
  # What would be stopped right now, and why
  stopd plan
  # Today's executions as the year-end freeze would see them (hypothetical)
  stopd plan --at 2026-12-19T00:00:00Z
  # For scripts (-o is --format)
  stopd plan -o json";

const WINDOWS_EXAMPLES: &str = "\
Examples:
  # The next 30 days
  stopd windows
  # Two weeks from a date, every column
  stopd --config ./stopd.toml windows --from 2026-12-14 --days 14 --wide
  # For a calendar or a spreadsheet
  stopd windows --days 365 --format csv > freezes.csv";

const STOP_EXAMPLES: &str = "\
Examples:
  # Stop and let running actions finish
  stopd stop --pipeline prod-web --execution 1b2c3d4e-... --reason \"bad deploy\"
  # Stop at once, abandoning running actions
  stopd stop --pipeline prod-web --execution 1b2c3d4e-... --abandon --reason \"INC-4711\"

Exit codes: 0 when the outcome is stopped, already_stopping, not_stoppable or dry_run;
1 for pipeline_not_found, rejected or failed.";

const REPORT_EXAMPLES: &str = "\
Examples:
  # The last week in counts, stops and dry runs apart, days in local time
  stopd report --since 7d --summary --tz Europe/Berlin
  # Stops that did not go through, of one rule, for a spreadsheet
  stopd report --rule weekend --outcome failed --format csv
  # Transitions held closed for a gating freeze, and released
  stopd report --gates --since 2026-12-19
  # Was the daemon watching during every freeze window? (exit 1 on a gap)
  stopd report --coverage --since 2026-12-19 --until 2027-01-04 --fail-on-gap";

const VERIFY_EXAMPLES: &str = "\
Examples:
  # Has the audit log been altered? (exit 0: intact; note the head it prints)
  stopd verify
  # The daemon's database (run as its user, or with sudo)
  stopd --config /etc/stopd/stopd.toml verify
  # And that nothing was cut from its end (digests shipped off the host)
  stopd verify --digests /mnt/audit/digests --public-key digest-key.pub.pem";

const EXEMPT_EXAMPLES: &str = "\
Examples:
  # Let one pipeline through every rule for two hours
  stopd exempt add --pipeline prod-payments --for 2h --reason \"INC-4711\"
  # Who exempted what, and who revoked it
  stopd exempt list
  # End an exemption early, saying why (kept, shown by `exempt list`)
  stopd exempt revoke 3 --reason \"INC-4711 resolved\"";

const EXEMPT_ADD_EXAMPLES: &str = "\
Examples:
  # Let one pipeline through every rule for two hours
  stopd exempt add --pipeline prod-payments --for 2h --reason \"INC-4711\"
  # Hotfix pipelines, from the weekend freeze only, until a local time
  stopd exempt add --pipeline 'prod-hotfix-*' --rule weekend --until 2026-12-24T18:00 \\
    --reason \"CHG-88\"
  # Every pipeline, more than 5, or longer than a week, needs --yes
  stopd exempt add --pipeline '*' --for 30m --yes --reason \"freeze called off\"";

const FREEZE_EXAMPLES: &str = "\
Examples:
  # Stop the line: every prod pipeline, for two hours, stopping what runs now
  stopd freeze add --pipeline 'prod-*' --for 2h --reason \"INC-4711 database failover\"
  # What is frozen, by whom, and what was lifted
  stopd freeze list
  # Lift it early (the reason is required and kept)
  stopd freeze lift 7 --reason \"INC-4711 resolved\"";

const FREEZE_ADD_EXAMPLES: &str = "\
Examples:
  # Stop every prod pipeline now, for two hours; hotfix lanes stay open
  stopd freeze add --pipeline 'prod-*' --exclude 'prod-hotfix-*' --for 2h \\
    --reason \"INC-4711 database failover\"
  # Abandon running actions, pipelines tagged team=payments, until a local time
  stopd freeze add --pipeline '*' --tag team=payments --mode abandon \\
    --until 2026-12-24T18:00 --yes --reason \"CHG-88\"
  # Every pipeline, more than 5 (or 5 stops), or longer than a day, needs --yes
  stopd freeze add --pipeline '*' --for 30m --yes --reason \"region outage\"";

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

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  stopd completions bash | sudo tee /usr/share/bash-completion/completions/stopd
  stopd completions zsh > \"${fpath[1]}/_stopd\"
  stopd completions fish > ~/.config/fish/completions/stopd.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  # Read stopd(1) now
  stopd man | man -l -
  # Install every page: stopd.1, stopd-<command>.1 for each command, stopd.toml.5
  stopd man --dir /tmp/stopd-man && sudo cp /tmp/stopd-man/*.1 /usr/local/share/man/man1/ \\
    && sudo cp /tmp/stopd-man/*.5 /usr/local/share/man/man5/";

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
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Validate the policy file; print each rule, its scope and the next window transitions.
    ///
    /// Errors name file, line and column, one per line; the exit code is then 78. Reads every
    /// secret file `run` needs (signing key, webhook URL files, database password; from
    /// $CREDENTIALS_DIRECTORY first) and fails, 78, naming any it cannot. Warns when the audit
    /// database cannot be written by the current user.
    #[command(after_help = CHECK_EXAMPLES)]
    Check,
    /// Show what would be stopped now (or at --at) and why, without stopping anything.
    ///
    /// Reads live executions from CodePipeline; decides as the daemon would. With --at, today's
    /// executions are judged as if it were then: a hypothetical, labelled as such.
    #[command(after_help = PLAN_EXAMPLES)]
    Plan(PlanArgs),
    /// List the freeze windows in a span, in each rule's zone and in UTC. Needs no AWS.
    #[command(after_help = WINDOWS_EXAMPLES)]
    Windows(WindowsArgs),
    /// Stop one execution by hand, through the same engine and audit log as the daemon.
    #[command(after_help = STOP_EXAMPLES)]
    Stop(StopArgs),
    /// Query the audit log (works while the daemon is writing).
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Check that the audit log was not altered: recompute its hash chain.
    ///
    /// Exit 0 prints the number of records and the head's sequence number and hash (keep it:
    /// a later verify that prints a chain not extending it means a rebuilt log); exit 1 names
    /// the first record altered, removed or inserted, and any table whose append-only triggers
    /// were dropped.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Break-glass exemptions, stored and audited in the database.
    #[command(subcommand, after_help = EXEMPT_EXAMPLES)]
    Exempt(ExemptCommand),
    /// Stop the line: an ad-hoc freeze from now, stored and audited in the database; a
    /// running daemon enforces it within seconds.
    #[command(subcommand, after_help = FREEZE_EXAMPLES)]
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page stopd(1) (roff) to stdout, or write every page to a directory.
    ///
    /// --dir writes stopd.1, a stopd-<command>.1 for each command and subcommand
    /// (stopd-exempt-add.1) and stopd.toml.5, the policy file's page.
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
struct ManArgs {
    /// Write every page into this directory (created if missing) instead of printing stopd(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
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
struct StatusArgs {
    /// Output format.
    #[arg(long, short = 'o', visible_alias = "output", value_enum, default_value_t = StatusFormat::Table)]
    format: StatusFormat,
    #[command(flatten)]
    tz: TzArg,
}

/// `--tz`, for the commands that show audit times.
#[derive(Debug, Clone, Copy, Args)]
struct TzArg {
    /// Tables and CSV show times in this zone (Europe/Berlin), with its offset; JSON stays UTC.
    #[arg(long, value_name = "ZONE", value_parser = parse_tz)]
    tz: Option<chrono_tz::Tz>,
}

/// An IANA zone for `--tz`; a name that is not one gets the policy's message (`Berlin`: did you
/// mean "Europe/Berlin"?).
fn parse_tz(name: &str) -> Result<chrono_tz::Tz, String> {
    stopd_rules::parse_zone(name)
        .ok_or_else(|| stopd_rules::PolicyErrorKind::UnknownZone(name.to_string()).to_string())
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

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
struct PlanArgs {
    /// Decide as of this instant (RFC 3339, or a local date-time in [defaults] timezone) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    tz: TzArg,
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
struct WindowsArgs {
    /// Start of the span (RFC 3339, or a local date-time in [defaults] timezone); default now.
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// Length of the span in days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
    days: u32,
    #[command(flatten)]
    output: OutputArgs,
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
    /// The `[[account]]` the pipeline is in (needed when there are several).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// The region the pipeline is in (needed when an account has several).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// A directory of signed digests (`[audit] digest_dir`, as shipped off the host): finds a
    /// log cut short or rebuilt, which the chain alone cannot.
    #[arg(long, value_name = "DIR", requires = "public_key")]
    digests: Option<PathBuf>,
    /// The Ed25519 public key (PEM) the digests are checked with.
    #[arg(long, value_name = "FILE", requires = "digests")]
    public_key: Option<PathBuf>,
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
struct ReportArgs {
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
    #[arg(long, value_name = "O", value_enum, conflicts_with_all = ["sweeps", "gates"])]
    outcome: Option<commands::OutcomeArg>,
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
    /// refused, new hash), clean stop, and unclean stop (found at the next start).
    #[arg(long, conflicts_with_all = ["sweeps", "pipeline", "rule", "outcome", "summary"])]
    events: bool,
    /// Coverage instead: for each freeze window in the span (default: the last 30 days; a
    /// window still open is cut at now), the time watched and each gap with its cause
    /// (not_running, sweep_failed, late). --rule picks one rule's windows.
    #[arg(long, conflicts_with_all = ["sweeps", "events", "pipeline", "outcome", "summary"])]
    coverage: bool,
    /// With --coverage: exit 1 if any window has a gap (for a compliance job).
    #[arg(long, requires = "coverage")]
    fail_on_gap: bool,
    #[command(flatten)]
    tz: TzArg,
}

#[derive(Debug, Subcommand)]
enum ExemptCommand {
    /// Exempt pipelines from every rule, or from one (--rule), for a while.
    #[command(after_help = EXEMPT_ADD_EXAMPLES)]
    Add(ExemptAddArgs),
    /// List exemptions, newest first: who added them, who revoked them and when.
    ///
    /// RULE is empty for an exemption from every rule.
    #[command(after_help = EXEMPT_EXAMPLES)]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        tz: TzArg,
    },
    /// Revoke an exemption by id; the reason, if given, is kept.
    #[command(after_help = EXEMPT_EXAMPLES)]
    Revoke {
        /// The id shown by `exempt add` and `exempt list`.
        id: i64,
        /// Why it is revoked early (shown by `exempt list`).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["for_", "until"])))]
struct ExemptAddArgs {
    /// Pipeline glob; `*` (every pipeline) needs --yes.
    #[arg(long, value_name = "GLOB")]
    pipeline: String,
    /// How long (e.g. 2h, 1d); more than 7 days needs --yes.
    #[arg(long = "for", id = "for_", value_name = "SPAN")]
    for_: Option<String>,
    /// Until when (RFC 3339, or a local date-time in [defaults] timezone).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Why; shown by `plan` and kept in the database.
    #[arg(long)]
    reason: String,
    /// Exempt from this rule only (a name in the policy); another rule that applies still stops.
    #[arg(long, value_name = "NAME")]
    rule: Option<String>,
    /// Confirm an exemption of every pipeline, of more than 7 days, or of more than 5 pipelines
    /// or unseen (the preview, read live first, could not be)
    #[arg(long)]
    yes: bool,
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Subcommand)]
enum FreezeCommand {
    /// Freeze pipelines from now until a time: what runs is stopped, nothing new may run.
    ///
    /// A one-off freeze named adhoc-ID, as a [[freeze]] from now would be: no grace, rollbacks
    /// spared, exemptions still win. The stop reason says who froze and why.
    ///
    /// First shows what it does, read live from CodePipeline as `plan` reads it: the pipelines
    /// frozen, the running executions it stops and, with --gate, the transitions it closes. More
    /// than 5 pipelines or 5 stops, or a preview that cannot be read, needs --yes (else exit 2,
    /// nothing recorded).
    #[command(after_help = FREEZE_ADD_EXAMPLES)]
    Add(FreezeAddArgs),
    /// List ad-hoc freezes, newest first: who froze, until when, who lifted them.
    #[command(after_help = FREEZE_EXAMPLES)]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        tz: TzArg,
    },
    /// Lift an ad-hoc freeze before its end; the reason is kept.
    #[command(after_help = FREEZE_EXAMPLES)]
    Lift {
        /// The id shown by `freeze add` and `freeze list`.
        id: i64,
        /// Why it is lifted early.
        #[arg(long)]
        reason: String,
    },
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["for_", "until"])))]
struct FreezeAddArgs {
    /// Pipeline glob; `*` (every pipeline) needs --yes.
    #[arg(long, value_name = "GLOB")]
    pipeline: String,
    /// Pipelines not frozen (glob), e.g. a hotfix lane.
    #[arg(long, value_name = "GLOB")]
    exclude: Option<String>,
    /// Only pipelines with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// How long (e.g. 2h); more than a day needs --yes.
    #[arg(long = "for", id = "for_", value_name = "SPAN")]
    for_: Option<String>,
    /// Until when (RFC 3339, or a local date-time in [defaults] timezone).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Why; sent with every stop it makes and kept in the database.
    #[arg(long)]
    reason: String,
    /// finish (stop and wait) or abandon; default: [defaults] mode.
    #[arg(long, value_parser = ["finish", "abandon"])]
    mode: Option<String>,
    /// Also hold new work at stage transitions while the freeze lasts.
    #[arg(long)]
    gate: bool,
    /// Only in these `[[account]]`s (a name glob; `default` without `[[account]]`).
    #[arg(long, value_name = "GLOB")]
    account: Option<String>,
    /// Only in these regions (a glob).
    #[arg(long, value_name = "GLOB")]
    region: Option<String>,
    /// Confirm a freeze of every pipeline, of more than a day, of more than 5 pipelines or 5
    /// running executions, or one whose preview cannot be read (CodePipeline unreachable).
    #[arg(long)]
    yes: bool,
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

async fn dispatch(cli: Cli, config_source: Option<ValueSource>) -> anyhow::Result<ExitCode> {
    let path = cli.config;
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
            demo::demo(a.database).await
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stopd", &mut out);
            commands::print(&out)
        }
        Command::Man(a) => match a.dir {
            None => commands::print(&man::main_page(Cli::command())?),
            Some(dir) => {
                let written = man::write_all(Cli::command(), &dir)?;
                commands::print(
                    format!(
                        "wrote {} pages to {}: {}\n",
                        written.len(),
                        dir.display(),
                        written.join(" ")
                    )
                    .as_bytes(),
                )
            }
        },
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
            } else {
                config::load(&path)?
            };
            match command {
                // Both read every secret file `run` needs, before anything else (exit 78).
                Command::Run(a) => {
                    secrets::check(&cfg)?;
                    let mut cfg = cfg;
                    cfg.warnings.extend(secrets::warnings(&cfg));
                    run::run(cfg, a.once, a.dry_run).await
                }
                Command::Check => {
                    secrets::check(&cfg)?;
                    let mut cfg = cfg;
                    cfg.warnings.extend(secrets::warnings(&cfg));
                    commands::check(&cfg).await
                }
                Command::Status(a) => {
                    status::command(
                        &cfg,
                        a.format == StatusFormat::Json,
                        a.tz.tz,
                        &crate::clock::SystemClock,
                    )
                    .await
                }
                Command::Plan(a) => {
                    let output = OutputArgs {
                        tz: a.tz.tz,
                        ..a.output
                    };
                    commands::plan(&cfg, a.at.as_deref(), output).await
                }
                Command::Windows(a) => {
                    commands::windows(&cfg, a.from.as_deref(), a.days, a.output).await
                }
                Command::Stop(a) => {
                    commands::stop(
                        &cfg,
                        &a.pipeline,
                        &a.execution,
                        a.abandon,
                        &a.reason,
                        (a.account.as_deref(), a.region.as_deref()),
                    )
                    .await
                }
                Command::Report(a) => {
                    commands::report(
                        &cfg,
                        &commands::ReportQuery {
                            since: a.since,
                            until: a.until,
                            pipeline: a.pipeline,
                            rule: a.rule,
                            account: a.account,
                            region: a.region,
                            outcome: a.outcome,
                            output: OutputArgs {
                                tz: a.tz.tz,
                                ..a.output
                            },
                            summary: a.summary,
                            sweeps: a.sweeps,
                            gates: a.gates,
                            events: a.events,
                            coverage: a.coverage,
                            fail_on_gap: a.fail_on_gap,
                        },
                    )
                    .await
                }
                Command::Verify(a) => {
                    auditor::verify(&cfg, a.digests.as_deref().zip(a.public_key.as_deref())).await
                }
                Command::Exempt(ExemptCommand::Add(a)) => {
                    commands::exempt_add(
                        &cfg,
                        &commands::ExemptRequest {
                            glob: &a.pipeline,
                            for_: a.for_.as_deref(),
                            until: a.until.as_deref(),
                            reason: &a.reason,
                            rule: a.rule.as_deref(),
                            yes: a.yes,
                        },
                    )
                    .await
                }
                Command::Exempt(ExemptCommand::List { output, tz }) => {
                    commands::exempt_list(
                        &cfg,
                        OutputArgs {
                            tz: tz.tz,
                            ..output
                        },
                    )
                    .await
                }
                Command::Exempt(ExemptCommand::Revoke { id, reason }) => {
                    commands::exempt_revoke(&cfg, id, reason.as_deref()).await
                }
                Command::Freeze(FreezeCommand::Add(a)) => {
                    commands::freeze_add(
                        &cfg,
                        &commands::FreezeRequest {
                            glob: &a.pipeline,
                            exclude: a.exclude.as_deref(),
                            tags: &a.tags,
                            for_: a.for_.as_deref(),
                            until: a.until.as_deref(),
                            reason: &a.reason,
                            mode: a.mode.as_deref(),
                            gate: a.gate,
                            account: a.account.as_deref(),
                            region: a.region.as_deref(),
                            yes: a.yes,
                        },
                    )
                    .await
                }
                Command::Freeze(FreezeCommand::List { output, tz }) => {
                    commands::freeze_list(
                        &cfg,
                        OutputArgs {
                            tz: tz.tz,
                            ..output
                        },
                    )
                    .await
                }
                Command::Freeze(FreezeCommand::Lift { id, reason }) => {
                    commands::freeze_lift(&cfg, id, &reason).await
                }
                Command::Demo(_) | Command::Completions { .. } | Command::Man(_) => {
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
