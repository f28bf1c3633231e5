//! The policy file: parse, validate, and say exactly where a problem is.
//!
//! The file is read twice over the same text: once by serde into the typed tables (unknown keys
//! and bad values are rejected with toml's own span), and once as a spanned document, so that an
//! error found later by [`Policy::compile`] (a `Location` such as `freeze[2].cron`) is shown with
//! the line and column of that key. The spanned document also gives the file order of
//! `[[freeze]]` and `[[timeout]]` entries, which decides ties between rules.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stopd_rules::cron::CronExpr;
use stopd_rules::{
    DefaultsSpec, ExemptSpec, FreezeSpec, Location, Policy, PolicySpec, RuleRef, Span, Table,
    TimeoutSpec,
};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where the daemon looks when neither `--config` nor `STOPD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/stopd/stopd.toml";
/// Default sweep cadence: every 30 seconds.
pub const DEFAULT_SCHEDULE: &str = "*/30 * * * * *";
/// Default audit database.
pub const DEFAULT_DATABASE: &str = "/var/lib/stopd/audit.db";
/// The most stops in flight, or pipelines read, at once: far above what one account's rate
/// limit lets through, far below what a semaphore or a task window can hold.
pub const MAX_CONCURRENCY: usize = 4_096;

/// `[aws]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSpec {
    /// Region; the default provider chain otherwise.
    #[serde(default)]
    pub region: Option<String>,
    /// Named profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Endpoint override (a local emulator, a VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Where STS AssumeRole goes for `[[account]]` roles (an emulator, a VPC endpoint).
    #[serde(default)]
    pub sts_endpoint_url: Option<String>,
}

/// One `[[account]]`: another AWS account, reached by assuming a role in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// A short name, unique: rules select it (`accounts = [...]`), the audit log, metrics and
    /// notifications carry it.
    pub name: String,
    /// The role stopd assumes in that account.
    pub role_arn: String,
    /// `sts:ExternalId`, if the role's trust policy requires one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Regions to enforce in (default: `[aws] region`).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
}

/// The most `[[account]]` x region pairs one daemon enforces in.
pub const MAX_PAIRS: usize = 1_000;

/// Whether a name can be an account name: 1-64 of `A-Z a-z 0-9 . _ -` (it is a metric label
/// and a glob target).
fn valid_account_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a text looks like an IAM role ARN: `arn:PARTITION:iam::123456789012:role/NAME`.
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

/// Whether a text looks like a region name (`eu-west-1`, `us-gov-east-1`).
fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[daemon]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonSpec {
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    stop_concurrency: Option<usize>,
    #[serde(default)]
    discovery_concurrency: Option<usize>,
    #[serde(default)]
    stop_deadline: Option<Span>,
    #[serde(default)]
    shutdown_timeout: Option<Span>,
    #[serde(default)]
    database_password_file: Option<PathBuf>,
}

/// `[audit]`: signed digests of the audit log's hash chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// Where the daemon writes a digest file every hour and at shutdown (none: no digests).
    #[serde(default)]
    pub digest_dir: Option<PathBuf>,
    /// The Ed25519 private key (PKCS#8 PEM) that signs them; needed with `digest_dir`.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
}

/// The whole file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    aws: AwsSpec,
    #[serde(default)]
    daemon: DaemonSpec,
    #[serde(default)]
    audit: AuditSpec,
    #[serde(default)]
    defaults: DefaultsSpec,
    #[serde(default)]
    freeze: Vec<FreezeSpec>,
    #[serde(default)]
    timeout: Vec<TimeoutSpec>,
    #[serde(default)]
    exempt: Vec<ExemptSpec>,
    #[serde(default)]
    metrics: Option<crate::runtime::metrics::MetricsSpec>,
    #[serde(default)]
    notify: Vec<crate::runtime::notify::NotifySpec>,
    #[serde(default)]
    account: Vec<AccountSpec>,
}

/// `[daemon]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Sweep cadence (evaluated in UTC).
    pub schedule: CronExpr,
    /// The audit database.
    pub database: PathBuf,
    /// Decide and record, never call StopPipelineExecution.
    pub dry_run: bool,
    /// Stops in flight at once.
    pub stop_concurrency: usize,
    /// Pipelines read at once during discovery.
    pub discovery_concurrency: usize,
    /// How long one stop may take, retries included.
    pub stop_deadline: Duration,
    /// On SIGTERM, how long in-flight stops may still run before they are cut short.
    pub shutdown_timeout: Duration,
    /// The PostgreSQL backend's password (DESIGN.md): read and checked by `check` and `run`
    /// (through systemd credentials first, as every secret file), unused until that backend
    /// lands.
    pub database_password_file: Option<PathBuf>,
}

/// A loaded, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `[aws]`.
    pub aws: AwsSpec,
    /// `[daemon]`.
    pub daemon: DaemonSettings,
    /// `[audit]`.
    pub audit: AuditSpec,
    /// The compiled policy.
    pub policy: Arc<Policy>,
    /// Fixed credentials instead of the provider chain: set by `stopd demo` only, never read
    /// from the file.
    pub static_credentials: Option<(String, String)>,
    /// Things that are allowed but probably wrong (plain HTTP to another host, a policy file
    /// others may write): `check` prints them, `run` logs them at start and on reload.
    pub warnings: Vec<String>,
    /// `[metrics] listen`: where `/metrics` and `/healthz` are served; none when absent.
    pub metrics: Option<std::net::SocketAddr>,
    /// `[[notify]]` webhooks.
    pub notify: Vec<crate::runtime::notify::Target>,
    /// SHA-256 of the file's bytes, lowercase hex (`stopd status`: in force against on disk).
    pub policy_hash: String,
    /// `[[account]]` tables, each with its regions resolved (empty: the ambient account).
    pub accounts: Vec<AccountSpec>,
    /// Why the file does not validate, when it was read by [`load_for_database`] with its
    /// `[daemon]` table alone (then `policy` has no rules, only `[defaults]` if they read).
    pub policy_error: Option<ConfigError>,
    /// Where each key naming a secret (`audit.signing_key`, `notify[0].url_file`, ...) is in
    /// the file: line and column, for the errors of [`crate::runtime::secrets::check`].
    pub secret_keys: Vec<(String, Option<usize>, Option<usize>)>,
}

impl Config {
    /// A problem with `field`, at its line and column when it is a key naming a secret.
    pub fn problem_at(&self, field: &str, message: String) -> Problem {
        let (line, column) = self
            .secret_keys
            .iter()
            .find(|(f, _, _)| f == field)
            .map_or((None, None), |(_, l, c)| (*l, *c));
        Problem {
            line,
            column,
            field: Some(field.to_string()),
            message,
        }
    }
}

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
    /// Path inside the file, e.g. `freeze[1].cron`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration could not be loaded. Display prints one line per problem:
/// `path:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
                if let Some(col) = p.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
            if let Some(field) = &p.field {
                write!(f, "{field}: ")?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// This error, first saying what cannot be done without a valid policy (exit 78).
    pub fn refusing(&self, what: &str) -> ConfigError {
        let mut problems = vec![Problem {
            line: None,
            column: None,
            field: None,
            message: format!("{what}, and the policy file does not validate:"),
        }];
        problems.extend(self.problems.iter().cloned());
        ConfigError {
            path: self.path.clone(),
            problems,
        }
    }

    fn single(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line: None,
                column: None,
                field: None,
                message: message.into(),
            }],
        }
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(path, format!("cannot read the policy file: {e}")))?;
    let mut cfg = parse(path, &text)?;
    cfg.warnings.extend(file_warning(path));
    Ok(cfg)
}

/// Reads the file at `path` for a command that needs only the audit database (`status`,
/// `report`, `verify`, `exempt`, `freeze`): a file that does not validate still gives its
/// `[daemon]` table (and `[defaults]`, if they read), with the reason in
/// [`Config::policy_error`] and no rules. Break-glass must not depend on a clean edit.
///
/// When the file is not even TOML, the `[daemon]` table is cut out of the text and read alone;
/// that is done only when it is unambiguous (one `[daemon]` header, `daemon` named nowhere else,
/// the syntax error outside it), and a file that names no `[daemon]` table at all means the
/// defaults. Otherwise which database the file meant cannot be known, and guessing the default
/// could write a break-glass exemption where no daemon reads it: the error (78) says so.
pub fn load_for_database(path: &Path) -> Result<Config, ConfigError> {
    let invalid = match load(path) {
        Ok(cfg) => return Ok(cfg),
        Err(e) => e,
    };
    // The file was read by `load`; reading it again fails only if it vanished meanwhile.
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(path, format!("cannot read the policy file: {e}")))?;
    let unreadable = |why: String| {
        let mut problems = vec![Problem {
            line: None,
            column: None,
            field: Some("daemon".into()),
            message: format!(
                "{why}, so the audit database this file names is not known; fix the file, or point \
                 --config at a file with the [daemon] table alone"
            ),
        }];
        problems.extend(invalid.problems.iter().cloned());
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    };
    let (daemon, defaults) = match toml::from_str::<toml::Table>(&text) {
        Ok(mut table) => {
            let daemon = match table.remove("daemon") {
                None => DaemonSpec::default(),
                Some(v) => v.try_into::<DaemonSpec>().map_err(|e| {
                    unreadable(format!(
                        "the [daemon] table does not read ({})",
                        e.message().trim()
                    ))
                })?,
            };
            let defaults = table
                .remove("defaults")
                .and_then(|v| v.try_into::<DefaultsSpec>().ok());
            (daemon, defaults)
        }
        Err(e) => {
            let error_line = e.span().map(|s| line_col(&text, s.start).0);
            (daemon_section(&text, error_line).map_err(unreadable)?, None)
        }
    };
    let schedule = CronExpr::parse(daemon.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE))
        .map_err(|e| unreadable(format!("[daemon] schedule does not read ({e})")))?;
    if daemon
        .database
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        return Err(unreadable("[daemon] database is empty".into()));
    }
    let defaults_read = defaults.is_some();
    let policy = Policy::compile(&PolicySpec {
        defaults: defaults.unwrap_or_default(),
        ..PolicySpec::default()
    })
    .ok()
    .filter(|_| defaults_read)
    .map(|p| (p, true))
    .unwrap_or_else(|| {
        let empty = Policy::compile(&PolicySpec::default()).expect("the empty policy compiles");
        (empty, false)
    });
    let mut warnings: Vec<String> = file_warning(path).into_iter().collect();
    if !policy.1 {
        warnings.push(
            "[defaults] could not be read either: local times without an offset are read in UTC, \
             and the stop mode defaults to finish"
                .into(),
        );
    }
    Ok(Config {
        path: path.to_path_buf(),
        aws: AwsSpec::default(),
        daemon: DaemonSettings {
            schedule,
            database: daemon
                .database
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
            dry_run: daemon.dry_run.unwrap_or(false),
            database_password_file: daemon.database_password_file,
            stop_concurrency: daemon.stop_concurrency.unwrap_or(64),
            discovery_concurrency: daemon.discovery_concurrency.unwrap_or(64),
            stop_deadline: daemon
                .stop_deadline
                .map_or(Duration::from_secs(60), Span::get),
            shutdown_timeout: daemon
                .shutdown_timeout
                .map_or(Duration::from_secs(20), Span::get),
        },
        audit: AuditSpec::default(),
        policy: Arc::new(policy.0),
        static_credentials: None,
        warnings,
        metrics: None,
        notify: Vec::new(),
        policy_hash: crate::cli::status::sha256_hex(text.as_bytes()),
        accounts: Vec::new(),
        policy_error: Some(invalid),
        secret_keys: Vec::new(),
    })
}

/// The `[daemon]` table of a file that is not TOML (its syntax error on `error_line`), read
/// alone, when that is unambiguous; else why not.
fn daemon_section(text: &str, error_line: Option<usize>) -> Result<DaemonSpec, String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = |l: &str| {
        let l = l.split('#').next().unwrap_or("").trim();
        l.starts_with('[').then(|| l.to_string())
    };
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| header(lines[i]).as_deref() == Some("[daemon]"))
        .collect();
    let mentions = lines.iter().filter(|l| l.contains("daemon")).count();
    match starts.as_slice() {
        [] if mentions == 0 => Ok(DaemonSpec::default()),
        [start] if mentions == 1 => {
            let end = (start + 1..lines.len())
                .find(|&i| header(lines[i]).is_some())
                .unwrap_or(lines.len());
            // 1-based lines of the table's body: start + 2 ..= end.
            if error_line.is_some_and(|l| l > start + 1 && l <= end) {
                return Err("the syntax error is in the [daemon] table".into());
            }
            toml::from_str::<DaemonSpec>(&lines[start + 1..end].join("\n")).map_err(|e| {
                format!(
                    "the [daemon] table does not read alone ({})",
                    e.message().trim()
                )
            })
        }
        _ => Err("the file is not valid TOML and its [daemon] table cannot be told apart".into()),
    }
}

/// A policy file that others than its owner may write, or that belongs to another user than
/// root or the one running stopd, decides what stopd stops: say so (sshd and sudo refuse such
/// files).
fn file_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    // Only root and our own user are trusted owners.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let foreign = meta.uid() != 0 && Some(meta.uid()) != me;
    let writable = meta.mode() & 0o022 != 0;
    match (writable, foreign) {
        (false, false) => None,
        (true, _) => Some(format!(
            "{}: others may write this policy file (mode {:o}): anyone who can edit it decides what stopd stops; chmod go-w it",
            path.display(),
            meta.mode() & 0o777
        )),
        (false, true) => Some(format!(
            "{}: the policy file belongs to uid {}, neither root nor the user running stopd",
            path.display(),
            meta.uid()
        )),
    }
}

/// Why `[daemon] database` cannot be an audit database `run` could open, if it cannot: `check`
/// once passed `"\u0000"`, `"/"` and a directory, which `run` then failed to open.
fn database_problem(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().is_empty() {
        // SQLite reads "" as a private temporary database that vanishes at exit: an audit
        // log nobody could ever read.
        return Some("must name a file (an empty path would be a temporary database that vanishes with the process)".into());
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Some("must not contain a NUL character".into());
    }
    if path.file_name().is_none() || path.as_os_str().as_bytes().ends_with(b"/") {
        return Some(format!(
            "must name a file, not a directory ({})",
            path.display()
        ));
    }
    if path.is_dir() {
        return Some(format!(
            "{} is a directory: name a file in it, e.g. {}",
            path.display(),
            path.join("audit.db").display()
        ));
    }
    None
}

/// Checks an endpoint URL; `Err` says why it cannot be used, `Ok(Some)` warns.
fn check_endpoint(text: &str) -> Result<Option<String>, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    let Some(host) = url.host() else {
        return Err(format!("{text:?} names no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo what was written: it may be a secret.
        return Err("must not carry a user name or password (user:password@host): CodePipeline endpoints take none, and the policy file is no place for secrets".into());
    }
    let loopback = match host {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    };
    Ok((url.scheme() == "http" && !loopback).then(|| {
        format!(
            "[aws] endpoint_url {text} is plain HTTP to another host: requests and their signatures travel unencrypted"
        )
    }))
}

/// Validates `text` as if it were the file at `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let doc = DeTable::parse(text).ok();
    let file: FileSpec = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_col(text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        // A bad value: name the key it belongs to (an unknown key names itself).
        let field = match (&doc, e.span()) {
            (Some(d), Some(span)) => field_at(d.get_ref(), span.start, String::new()),
            _ => None,
        };
        ConfigError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line,
                column,
                field,
                message: e.message().trim().to_string(),
            }],
        }
    })?;
    let locate = |field: &str, span: Option<Range<usize>>| {
        let (line, column) = span
            .map(|s| line_col(text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        (line, column, Some(field.to_string()))
    };

    let mut problems = Vec::new();
    // A problem with one key of a table, located in the file.
    let key_problem = |table: &str, key: &str, message: String| {
        let (line, column, field) = locate(
            &format!("{table}.{key}"),
            doc.as_ref()
                .and_then(|d| key_span(d.get_ref(), &[table, key])),
        );
        Problem {
            line,
            column,
            field,
            message,
        }
    };
    let FileSpec {
        aws,
        daemon,
        audit,
        defaults,
        freeze,
        timeout,
        exempt,
        metrics,
        notify,
        account,
    } = file;

    match (&audit.digest_dir, &audit.signing_key) {
        (Some(_), None) => problems.push(key_problem(
            "audit",
            "digest_dir",
            "digests are signed: set [audit] signing_key too (an Ed25519 PKCS#8 PEM file)".into(),
        )),
        (None, Some(_)) => problems.push(key_problem(
            "audit",
            "signing_key",
            "a signing key without [audit] digest_dir signs nothing".into(),
        )),
        _ => {}
    }

    let schedule_text = daemon.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE);
    let schedule = match CronExpr::parse(schedule_text) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(key_problem("daemon", "schedule", e.to_string()));
            None
        }
    };
    for (key, value) in [
        ("stop_concurrency", daemon.stop_concurrency),
        ("discovery_concurrency", daemon.discovery_concurrency),
    ] {
        if value.is_some_and(|n| !(1..=MAX_CONCURRENCY).contains(&n)) {
            problems.push(key_problem(
                "daemon",
                key,
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
    }
    if let Some(problem) = daemon.database.as_deref().and_then(database_problem) {
        problems.push(key_problem("daemon", "database", problem));
    }
    let mut warnings = Vec::new();
    if let Some(url) = &aws.endpoint_url {
        match check_endpoint(url) {
            Ok(w) => warnings.extend(w),
            Err(e) => problems.push(key_problem("aws", "endpoint_url", e)),
        }
    }

    if let Some(url) = &aws.sts_endpoint_url {
        match check_endpoint(url) {
            Ok(w) => warnings.extend(w),
            Err(e) => problems.push(key_problem("aws", "sts_endpoint_url", e)),
        }
    }
    let mut accounts = account;
    {
        let mut names = std::collections::HashSet::new();
        let mut pairs = 0;
        for (index, a) in accounts.iter_mut().enumerate() {
            let mut bad = |key: &str, message: String| {
                let span = doc
                    .as_ref()
                    .and_then(|d| entry_key_span(d.get_ref(), "account", index, key));
                let (line, column, field) = locate(&format!("account[{index}].{key}"), span);
                problems.push(Problem {
                    line,
                    column,
                    field,
                    message,
                });
            };
            if !valid_account_name(&a.name) {
                bad("name", "1 to 64 of A-Z a-z 0-9 . _ - (it names the account in rules, the audit log and metrics)".into());
            } else if !names.insert(a.name.clone()) {
                bad("name", format!("account {:?} is defined twice", a.name));
            }
            if !valid_role_arn(&a.role_arn) {
                bad(
                    "role_arn",
                    format!(
                        "{:?} is not a role ARN (arn:aws:iam::123456789012:role/NAME)",
                        a.role_arn
                    ),
                );
            }
            if a.external_id
                .as_ref()
                .is_some_and(|e| !(2..=1224).contains(&e.len()))
            {
                bad(
                    "external_id",
                    "must be 2 to 1224 characters (STS's limit)".into(),
                );
            }
            match (&a.regions, &aws.region) {
                (Some(r), _) if r.is_empty() => {
                    bad(
                        "regions",
                        "an empty list enforces nowhere; leave the key out for [aws] region".into(),
                    );
                }
                (Some(r), _) => {
                    if let Some(bad_region) = r.iter().find(|r| !valid_region(r)) {
                        bad(
                            "regions",
                            format!("{bad_region:?} is not a region name (like \"eu-west-1\")"),
                        );
                    }
                    let mut seen = std::collections::HashSet::new();
                    if let Some(twice) = r.iter().find(|r| !seen.insert(*r)) {
                        bad("regions", format!("{twice:?} is listed twice"));
                    }
                }
                (None, Some(region)) => a.regions = Some(vec![region.clone()]),
                (None, None) => bad(
                    "regions",
                    "needed: there is no [aws] region to default to".into(),
                ),
            }
            pairs += a.regions.as_ref().map_or(0, Vec::len);
        }
        if pairs > MAX_PAIRS {
            problems.push(Problem {
                line: None,
                column: None,
                field: Some("account".into()),
                message: format!("{pairs} account and region pairs; at most {MAX_PAIRS}"),
            });
        }
    }

    let metrics = match crate::runtime::metrics::check_spec(&metrics.unwrap_or_default()) {
        Ok(addr) => addr,
        Err((key, message)) => {
            problems.push(key_problem("metrics", key, message));
            None
        }
    };
    let mut secret_keys = Vec::new();
    for (set, key) in [
        (audit.signing_key.is_some(), ["audit", "signing_key"]),
        (
            daemon.database_password_file.is_some(),
            ["daemon", "database_password_file"],
        ),
    ] {
        if set {
            let (line, column, _) =
                locate("", doc.as_ref().and_then(|d| key_span(d.get_ref(), &key)));
            secret_keys.push((key.join("."), line, column));
        }
    }
    for (index, n) in notify.iter().enumerate() {
        for (set, key) in [
            (n.url.is_some(), "url"),
            (n.url_file.is_some(), "url_file"),
            (n.url_env.is_some(), "url_env"),
        ] {
            if set {
                let (line, column, _) = locate(
                    "",
                    doc.as_ref()
                        .and_then(|d| entry_key_span(d.get_ref(), "notify", index, key)),
                );
                secret_keys.push((format!("notify[{index}].{key}"), line, column));
            }
        }
    }
    if daemon
        .database_password_file
        .as_ref()
        .is_some_and(|p| p.file_name().is_none())
    {
        problems.push(key_problem(
            "daemon",
            "database_password_file",
            "must name a file".into(),
        ));
    } else if daemon.database_password_file.is_some() {
        warnings.push(
            "[daemon] database_password_file is read and checked, but unused: the audit database is SQLite until the PostgreSQL backend lands".into(),
        );
    }
    let (notify, notify_problems) = crate::runtime::notify::check_specs(&notify);
    for (index, key, message) in notify_problems {
        let span = doc
            .as_ref()
            .and_then(|d| entry_key_span(d.get_ref(), "notify", index, key));
        let (line, column, field) = locate(&format!("notify[{index}].{key}"), span);
        problems.push(Problem {
            line,
            column,
            field,
            message,
        });
    }

    let mut spec = PolicySpec {
        defaults,
        freeze,
        timeout,
        exempt,
        file_order: Vec::new(),
    };
    if let Some(d) = &doc {
        spec.file_order = file_order(d.get_ref());
    }
    let policy = match Policy::compile(&spec) {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in errors {
                let span = doc.as_ref().and_then(|d| location_span(d.get_ref(), &e.at));
                let (line, column, field) = locate(&e.at.to_string(), span);
                problems.push(Problem {
                    line,
                    column,
                    field,
                    message: e.kind.to_string(),
                });
            }
            None
        }
    };

    if let Some(policy) = &policy {
        // A rule limited to accounts or regions none of the configured pairs has is never
        // enforced: allowed (a policy shared by several daemons), but said.
        let pairs: Vec<(String, Option<String>)> = if accounts.is_empty() {
            vec![(
                stopd_audit::Place::DEFAULT_ACCOUNT.to_string(),
                aws.region.clone(),
            )]
        } else {
            accounts
                .iter()
                .flat_map(|a| {
                    a.regions
                        .iter()
                        .flatten()
                        .map(|r| (a.name.clone(), Some(r.clone())))
                })
                .collect()
        };
        for rule in policy.rules() {
            if rule.place.is_everywhere() {
                continue;
            }
            let anywhere = pairs.iter().any(|(a, r)| match r {
                Some(r) => rule.place.matches(a, r),
                // The region comes from the environment: judge the account alone.
                None => stopd_rules::Place::new(rule.place.accounts(), None)
                    .is_ok_and(|p| p.matches(a, "")),
            });
            if !anywhere {
                warnings.push(format!(
                    "rule '{}' selects accounts {:?} and regions {:?}, and no configured account and region matches: it is never enforced by this daemon",
                    rule.name,
                    rule.place.accounts().unwrap_or(&["*".to_string()]),
                    rule.place.regions().unwrap_or(&["*".to_string()]),
                ));
            }
        }
    }

    match (schedule, policy) {
        (Some(schedule), Some(policy)) if problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            aws,
            daemon: DaemonSettings {
                schedule,
                database: daemon
                    .database
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
                dry_run: daemon.dry_run.unwrap_or(false),
                stop_concurrency: daemon.stop_concurrency.unwrap_or(64),
                discovery_concurrency: daemon.discovery_concurrency.unwrap_or(64),
                stop_deadline: daemon
                    .stop_deadline
                    .map_or(Duration::from_secs(60), Span::get),
                shutdown_timeout: daemon
                    .shutdown_timeout
                    .map_or(Duration::from_secs(20), Span::get),
                database_password_file: daemon.database_password_file,
            },
            audit,
            policy: Arc::new(policy),
            static_credentials: None,
            warnings,
            metrics,
            notify,
            policy_hash: crate::cli::status::sha256_hex(text.as_bytes()),
            accounts,
            policy_error: None,
            secret_keys,
        }),
        _ => {
            problems.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column));
            Err(ConfigError {
                path: path.to_path_buf(),
                problems,
            })
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn get<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

fn get_key_span(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, _)| k.span())
}

/// Span of a dotted key path (`daemon.schedule`).
fn key_span(root: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let (last, parents) = path.split_last()?;
    let mut table = root;
    for p in parents {
        match get(table, p)?.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    get_key_span(table, last)
}

/// Span of `key` in entry `index` of the array of tables `table` (or of the entry itself).
fn entry_key_span(
    root: &DeTable<'_>,
    table: &str,
    index: usize,
    key: &str,
) -> Option<Range<usize>> {
    let DeValue::Array(items) = get(root, table)?.get_ref() else {
        return None;
    };
    let item = items.get(index)?;
    match item.get_ref() {
        DeValue::Table(t) => get_key_span(t, key).or(Some(item.span())),
        _ => Some(item.span()),
    }
}

/// Span of a policy error's location: the key inside the entry, or else the entry itself.
fn location_span(root: &DeTable<'_>, at: &Location) -> Option<Range<usize>> {
    let name = at.rule.table.as_str();
    let (entry, entry_span) = match at.rule.table {
        Table::Defaults => {
            let v = get(root, name)?;
            match v.get_ref() {
                DeValue::Table(t) => (t, get_key_span(root, name)?),
                _ => return None,
            }
        }
        _ => {
            let v = get(root, name)?;
            let DeValue::Array(items) = v.get_ref() else {
                return None;
            };
            let item = items.get(at.rule.index)?;
            match item.get_ref() {
                DeValue::Table(t) => (t, item.span()),
                _ => return None,
            }
        }
    };
    match at.key {
        Some(key) => get_key_span(entry, key).or(Some(entry_span)),
        None => Some(entry_span),
    }
}

/// The dotted path (`timeout[0].max_duration`) of the value whose text holds byte `at`.
fn field_at(table: &DeTable<'_>, at: usize, prefix: String) -> Option<String> {
    for (k, v) in table.iter() {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if let Some(found) = value_at(v, at, name) {
            return Some(found);
        }
    }
    None
}

fn value_at(v: &Spanned<DeValue<'_>>, at: usize, name: String) -> Option<String> {
    match v.get_ref() {
        DeValue::Table(t) => field_at(t, at, name),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let inner = value_at(item, at, format!("{name}[{i}]"));
            match item.get_ref() {
                DeValue::Table(_) => inner,
                _ => inner.or_else(|| v.span().contains(&at).then(|| name.clone())),
            }
        }),
        _ => v.span().contains(&at).then_some(name),
    }
}

/// The order in which `[[freeze]]` and `[[timeout]]` entries appear in the file.
fn file_order(root: &DeTable<'_>) -> Vec<RuleRef> {
    let mut found: Vec<(usize, RuleRef)> = Vec::new();
    for table in [Table::Freeze, Table::Timeout] {
        if let Some(v) = get(root, table.as_str())
            && let DeValue::Array(items) = v.get_ref()
        {
            for (index, item) in items.iter().enumerate() {
                found.push((item.span().start, RuleRef { table, index }));
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(Path::new("/etc/stopd/stopd.toml"), text).unwrap_err()
    }

    /// A file that is not TOML: its `[daemon]` table is read alone only when unambiguous.
    #[test]
    fn daemon_table_of_a_file_that_is_not_toml_is_read_only_when_unambiguous() {
        let db = |t: &str, line| daemon_section(t, Some(line)).map(|d| d.database);
        // No [daemon] anywhere: the defaults, whatever the error.
        assert_eq!(db("[[freeze]]\nname = \"x\n", 2), Ok(None));
        // The error is elsewhere: the table, alone.
        let text = "[daemon]\ndatabase = \"/srv/a.db\"\n\n[[freeze]]\nname = \"x\n";
        assert_eq!(db(text, 5), Ok(Some(PathBuf::from("/srv/a.db"))));
        // The error is in it, or the table cannot be told apart: refused.
        let text = "[daemon]\ndatabase = \"/srv/a.db\n[[freeze]]\n";
        assert!(db(text, 2).unwrap_err().contains("in the [daemon] table"));
        let text = "daemon.database = \"/srv/a.db\"\n[[freeze]]\nname = \"x\n";
        assert!(db(text, 3).unwrap_err().contains("cannot be told apart"));
        let text = "[daemon]\n[daemon]\n[x\n";
        assert!(db(text, 3).is_err());
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = err("[daemon]\nschedule = \"* * * * *\"\nshedule = \"x\"\n");
        assert_eq!(e.problems[0].line, Some(3));
        assert_eq!(e.problems[0].column, Some(1));
        assert!(e.problems[0].message.contains("shedule"), "{e}");
        assert!(
            e.to_string().starts_with("/etc/stopd/stopd.toml:3:1: "),
            "{e}"
        );
    }

    #[test]
    fn policy_errors_point_at_the_key_of_the_right_entry() {
        let text = "\
[[freeze]]
name = \"ok\"
cron = \"0 18 * * FRI\"
duration = \"62h\"

[[timeout]]
name = \"t\"
max_duration = \"2h\"

[[freeze]]
name = \"bad\"
cron = \"0 25 * * *\"
duration = \"1h\"
  timezone = \"Mars/Olympus\"
";
        let e = err(text);
        let fields: Vec<_> = e
            .problems
            .iter()
            .map(|p| (p.field.clone().unwrap(), p.line, p.column))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("freeze[1].cron".to_string(), Some(12), Some(1)),
                ("freeze[1].timezone".to_string(), Some(14), Some(3)),
            ],
            "{e}"
        );
    }

    /// Digests are signed: a directory without a key (or a key without a directory) is an
    /// error at the key's line, not a daemon that writes nothing.
    #[test]
    fn audit_digests_need_both_keys() {
        let e = err("[audit]\ndigest_dir = \"/var/lib/stopd/digests\"\n");
        assert_eq!(e.problems[0].field.as_deref(), Some("audit.digest_dir"));
        assert_eq!(e.problems[0].line, Some(2));
        let e = err("[audit]\n\nsigning_key = \"/etc/stopd/k.pem\"\n");
        assert_eq!(e.problems[0].field.as_deref(), Some("audit.signing_key"));
        assert_eq!(e.problems[0].line, Some(3));
        let e = err("[audit]\ndigests = \"x\"\n");
        assert_eq!(e.problems[0].line, Some(2));
    }

    #[test]
    fn daemon_schedule_is_checked() {
        let e = err("[daemon]\nschedule = \"every minute\"\n");
        assert_eq!(e.problems[0].field.as_deref(), Some("daemon.schedule"));
        assert_eq!(e.problems[0].line, Some(2));
    }

    #[test]
    fn zero_bounds_and_a_bad_endpoint_are_located_in_file_order() {
        let e = err("[aws]\nendpoint_url = \"localhost:4599\"\n\n[daemon]\nstop_concurrency = 0\n");
        let got: Vec<_> = e
            .problems
            .iter()
            .map(|p| (p.field.clone().unwrap(), p.line, p.message.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "aws.endpoint_url".to_string(),
                    Some(2),
                    "\"localhost:4599\" is not an http:// or https:// URL".to_string()
                ),
                (
                    "daemon.stop_concurrency".to_string(),
                    Some(5),
                    "must be between 1 and 4096".to_string()
                ),
            ],
            "{e}"
        );
    }

    #[test]
    fn file_order_follows_the_text_not_the_table() {
        let text = "\
[[timeout]]
name = \"t\"
max_duration = \"2h\"
[[freeze]]
name = \"f\"
start = \"2026-12-19T00:00:00\"
end = \"2027-01-04T09:00:00\"
";
        let c = parse(Path::new("x.toml"), text).unwrap();
        let names: Vec<&str> = c.policy.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["t", "f"]);
    }

    #[test]
    fn empty_file_is_a_valid_policy_with_defaults() {
        let c = parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(c.daemon.database, PathBuf::from(DEFAULT_DATABASE));
        assert!(!c.daemon.dry_run);
        assert_eq!(c.daemon.schedule.source(), DEFAULT_SCHEDULE);
    }

    /// `config/stopd.example.toml` is valid and shows every key of every table.
    #[test]
    fn the_example_config_is_valid_and_complete() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/stopd.example.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        parse(path, &text).unwrap();
        fn keys<T: Serialize + Default>() -> Vec<String> {
            let v = serde_json::to_value(T::default()).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        }
        let tables = [
            ("aws", keys::<AwsSpec>()),
            ("daemon", keys::<DaemonSpec>()),
            ("audit", keys::<AuditSpec>()),
            ("defaults", keys::<DefaultsSpec>()),
            ("freeze", keys::<FreezeSpec>()),
            ("timeout", keys::<TimeoutSpec>()),
            ("exempt", keys::<ExemptSpec>()),
            ("metrics", keys::<crate::runtime::metrics::MetricsSpec>()),
            ("notify", keys::<crate::runtime::notify::NotifySpec>()),
            ("account", keys::<AccountSpec>()),
        ];
        for (table, keys) in tables {
            for key in keys {
                let shown = text.lines().any(|l| {
                    let l = l.trim_start().trim_start_matches('#').trim_start();
                    l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
                });
                assert!(shown, "[{table}] {key} is not in config/stopd.example.toml");
            }
        }
    }

    /// These passed `check` and then panicked the daemon (rc 101) in window arithmetic, at a
    /// semaphore or on SIGTERM; `database = ""` recorded into a vanishing temporary database.
    #[test]
    fn values_that_crashed_the_daemon_are_located_errors() {
        for (text, line, field, want) in [
            (
                "[daemon]\nstop_concurrency = 9223372036854775807\n",
                2,
                "daemon.stop_concurrency",
                "between 1 and 4096",
            ),
            (
                "[daemon]\n\nshutdown_timeout = \"18446744073709551615s\"\n",
                3,
                "daemon.shutdown_timeout",
                "longer than the longest span",
            ),
            (
                "[daemon]\nstop_deadline = \"0s\"\n",
                2,
                "daemon.stop_deadline",
                "must be longer than zero",
            ),
            (
                "[daemon]\ndatabase = \"\"\n",
                2,
                "daemon.database",
                "must name a file",
            ),
            // These passed `check`, and `run` could not open them.
            (
                "[daemon]\ndatabase = \"\\u0000\"\n",
                2,
                "daemon.database",
                "NUL character",
            ),
            (
                "[daemon]\ndatabase = \"/\"\n",
                2,
                "daemon.database",
                "not a directory",
            ),
            (
                "[daemon]\ndatabase = \"/var/lib/stopd/\"\n",
                2,
                "daemon.database",
                "not a directory",
            ),
            (
                "[daemon]\ndatabase = \"/tmp\"\n",
                2,
                "daemon.database",
                "is a directory",
            ),
            (
                "[[freeze]]\nname = \"w\"\ncron = \"0 18 * * FRI\"\nduration = \"99999999999h\"\n",
                4,
                "freeze[0].duration",
                "longer than the longest span",
            ),
            (
                "[[timeout]]\nname = \"t\"\nmax_duration = \"2h\"\nescalate_after = \"99999999999h\"\n",
                4,
                "timeout[0].escalate_after",
                "longer than the longest span",
            ),
        ] {
            let e = err(text);
            let p = &e.problems[0];
            assert_eq!(
                (p.line, p.field.as_deref()),
                (Some(line), Some(field)),
                "{text}: {e}"
            );
            assert!(p.message.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn endpoints_are_urls_without_secrets_and_plain_http_leaves_only_loopback_quietly() {
        for (url, want) in [
            ("http://", "is not a URL"),
            ("http://[::1", "is not a URL"),
            ("ftp://example.com", "is not an http:// or https:// URL"),
            (
                "https://user:hunter2@vpce.example.com",
                "must not carry a user name or password",
            ),
        ] {
            let e = err(&format!("[aws]\nendpoint_url = \"{url}\"\n"));
            assert!(e.problems[0].message.contains(want), "{url}: {e}");
            assert!(
                !e.to_string().contains("hunter2"),
                "the password is echoed: {e}"
            );
        }
        let ok = |url: &str| {
            parse(
                Path::new("x.toml"),
                &format!("[aws]\nendpoint_url = \"{url}\"\n"),
            )
            .unwrap()
            .warnings
        };
        assert!(ok("http://127.0.0.1:4599").is_empty());
        assert!(ok("http://[::1]:4599").is_empty());
        assert!(ok("http://localhost:4599").is_empty());
        assert!(ok("https://codepipeline.eu-west-1.amazonaws.com").is_empty());
        assert!(ok("http://10.1.2.3:4599")[0].contains("plain HTTP to another host"));
    }

    #[test]
    fn a_policy_file_others_may_write_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stopd.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&path).unwrap().warnings.is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let w = load(&path).unwrap().warnings;
        assert!(
            w[0].contains("others may write this policy file (mode 666)"),
            "{w:?}"
        );
    }

    #[test]
    fn bad_duration_value_is_located() {
        let e = err("[[timeout]]\nname = \"t\"\nmax_duration = \"2 fortnights\"\n");
        assert_eq!(e.problems[0].line, Some(3), "{e}");
    }
}
