//! Reading a policy file from disk: [`load`] for commands that enforce it, and
//! [`load_for_database`] for those that need only the audit database it names (a file that does
//! not validate still gives its `[daemon]` table: break-glass must not depend on a clean edit).

use std::path::Path;
use std::sync::Arc;

use stopd_rules::cron::CronExpr;
use stopd_rules::{DefaultsSpec, Policy, PolicySpec};

use crate::config::audit::AuditSpec;
use crate::config::aws::AwsSpec;
use crate::config::calendars::BadCalendars;
use crate::config::daemon::{DEFAULT_SCHEDULE, DaemonSettings, DaemonSpec};
use crate::config::parse::parse_with;
use crate::config::spans::line_col;
use crate::config::{Config, ConfigError, Problem, policy_hash};

/// Reads and validates the file at `path`; a calendar that cannot be read is a problem.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, BadCalendars::Refuse)
}

/// Reads and validates the file at `path` for `run`: a rule whose calendar cannot be read is
/// left out of the policy and listed in `Policy::unreadable` (each sweep fails naming it); the
/// other rules load as [`load`] does.
pub fn load_for_run(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, BadCalendars::SetAside)
}

/// [`load`] or [`load_for_run`].
fn load_with(path: &Path, bad_calendars: BadCalendars) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(path, format!("cannot read the policy file: {e}")))?;
    let mut cfg = parse_with(path, &text, bad_calendars)?;
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
    if daemon.database.as_ref().is_some_and(String::is_empty) {
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
        ha: None,
        daemon: DaemonSettings::new(daemon, schedule),
        audit: AuditSpec::default(),
        policy: Arc::new(policy.0),
        static_credentials: None,
        warnings,
        metrics: None,
        notify: Vec::new(),
        policy_hash: policy_hash(text.as_bytes()),
        accounts: Vec::new(),
        policy_error: Some(invalid),
        secret_keys: Vec::new(),
        calendars: Vec::new(),
        events: None,
    })
}

/// The `[daemon]` table of a file that is not TOML (its syntax error on `error_line`), read
/// alone, when that is unambiguous; else why not.
pub(super) fn daemon_section(text: &str, error_line: Option<usize>) -> Result<DaemonSpec, String> {
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
