//! Parsing the text of a policy file into a [`Config`]: serde reads the tables (unknown keys and
//! bad values are rejected with toml's own span), each table's own check finds what serde
//! cannot, and every problem is located at its key's line and column.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use stopd_rules::{
    AllowSpec, DefaultsSpec, ExemptSpec, FreezeSpec, Policy, PolicySpec, TimeoutSpec,
};
use toml::Spanned;
use toml::de::DeTable;

use crate::config::accounts::{self, AccountSpec};
use crate::config::audit::AuditSpec;
use crate::config::aws::AwsSpec;
use crate::config::calendars::{self, BadCalendars};
use crate::config::daemon::{DaemonSettings, DaemonSpec};
use crate::config::events::{self, EventsSpec};
use crate::config::ha::{HaSettings, HaSpec};
use crate::config::metrics::{self, MetricsSpec};
use crate::config::notify::{self, NotifySpec};
use crate::config::spans::{
    entry_key_span, field_at, file_order, key_span, line_col, location_span,
};
use crate::config::{Config, ConfigError, Problem, policy_hash};

/// The whole file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSpec {
    #[serde(default)]
    pub(super) aws: AwsSpec,
    #[serde(default)]
    pub(super) daemon: DaemonSpec,
    #[serde(default)]
    pub(super) audit: AuditSpec,
    #[serde(default)]
    pub(super) defaults: DefaultsSpec,
    #[serde(default)]
    pub(super) freeze: Vec<FreezeSpec>,
    #[serde(default)]
    pub(super) allow: Vec<AllowSpec>,
    #[serde(default)]
    pub(super) timeout: Vec<TimeoutSpec>,
    #[serde(default)]
    pub(super) exempt: Vec<ExemptSpec>,
    #[serde(default)]
    pub(super) metrics: Option<MetricsSpec>,
    #[serde(default)]
    pub(super) notify: Vec<NotifySpec>,
    #[serde(default)]
    pub(super) account: Vec<AccountSpec>,
    #[serde(default)]
    pub(super) ha: Option<HaSpec>,
    pub(super) events: Option<EventsSpec>,
}

/// `[ha]`, checked against `[daemon] database`: leadership by lease on PostgreSQL (with `[ha]`'s
/// node and lease, or their defaults); none on SQLite, where `[ha]` is a configuration error.
fn ha_settings(
    daemon: &DaemonSpec,
    ha: Option<&HaSpec>,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<HaSettings> {
    let postgres = daemon
        .database
        .as_deref()
        .is_some_and(|d| stopd_audit::Location::parse(d).is_postgres());
    match ha {
        Some(_) if !postgres => {
            problems.push(at.table(
                "ha",
                "[ha] needs a PostgreSQL audit database ([daemon] database = \"postgres://...\"): \
                 on SQLite one host runs one `stopd run`"
                    .into(),
            ));
            None
        }
        Some(spec) => {
            let found = spec.check();
            let ok = found.is_empty();
            for (key, message) in found {
                problems.push(at.key("ha", key, message));
            }
            ok.then(|| spec.settings())
        }
        None => postgres.then(|| HaSpec::default().settings()),
    }
}

/// Puts problems at their place in the text (when the text is a spanned TOML document).
struct Locator<'t> {
    /// The file's text.
    text: &'t str,
    /// The text as a spanned document.
    doc: Option<Spanned<DeTable<'t>>>,
}

impl Locator<'_> {
    /// 1-based line and column of a span.
    fn position(&self, span: Option<Range<usize>>) -> (Option<usize>, Option<usize>) {
        span.map(|s| line_col(self.text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)))
    }

    /// Where `table.key` is.
    fn key_position(&self, table: &str, key: &str) -> (Option<usize>, Option<usize>) {
        self.position(
            self.doc
                .as_ref()
                .and_then(|d| key_span(d.get_ref(), &[table, key])),
        )
    }

    /// Where `key` of entry `index` of the array of tables `table` is (or else the entry).
    fn entry_position(
        &self,
        table: &str,
        index: usize,
        key: &str,
    ) -> (Option<usize>, Option<usize>) {
        self.position(
            self.doc
                .as_ref()
                .and_then(|d| entry_key_span(d.get_ref(), table, index, key)),
        )
    }

    /// A problem with one key of a table.
    fn key(&self, table: &str, key: &str, message: String) -> Problem {
        let (line, column) = self.key_position(table, key);
        Problem {
            line,
            column,
            field: Some(format!("{table}.{key}")),
            message,
        }
    }

    /// A problem with a whole table (at its header).
    fn table(&self, table: &str, message: String) -> Problem {
        let span = self
            .doc
            .as_ref()
            .and_then(|d| key_span(d.get_ref(), &[table]));
        let (line, column) = self.position(span);
        Problem {
            line,
            column,
            field: Some(table.to_owned()),
            message,
        }
    }

    /// A problem with one key of one entry of an array of tables.
    fn entry(&self, table: &str, index: usize, key: &str, message: String) -> Problem {
        let (line, column) = self.entry_position(table, index, key);
        Problem {
            line,
            column,
            field: Some(format!("{table}[{index}].{key}")),
            message,
        }
    }
}

/// Validates `text` as if it were the file at `path`; a calendar that cannot be read is a
/// problem, as for `check`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, BadCalendars::Refuse)
}

/// [`parse`], with a calendar that cannot be read refused or set aside (`run`: its rule is left
/// out of the policy, listed in [`Policy::unreadable`], and each sweep fails naming it).
pub(super) fn parse_with(
    path: &Path,
    text: &str,
    bad_calendars: BadCalendars,
) -> Result<Config, ConfigError> {
    let at = Locator {
        text,
        doc: DeTable::parse(text).ok(),
    };
    let file: FileSpec = toml::from_str(text).map_err(|e| {
        let (line, column) = at.position(e.span());
        // A bad value: name the key it belongs to (an unknown key names itself).
        let field = match (&at.doc, e.span()) {
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
    let FileSpec {
        aws,
        daemon,
        audit,
        defaults,
        freeze,
        allow,
        timeout,
        exempt,
        metrics,
        notify,
        account,
        ha,
        events,
    } = file;

    let mut problems = Vec::new();
    if let Some((key, message)) = audit.check() {
        problems.push(at.key("audit", key, message));
    }
    let mut daemon_warnings = Vec::new();
    let (schedule, daemon_problems) = daemon.check(&mut daemon_warnings);
    for (key, message) in daemon_problems {
        problems.push(at.key("daemon", key, message));
    }
    let ha = ha_settings(&daemon, ha.as_ref(), &at, &mut problems);
    let mut warnings = Vec::new();
    for (key, message) in aws.check(&mut warnings) {
        problems.push(at.key("aws", key, message));
    }
    warnings.extend(daemon_warnings);
    let mut accounts = account;
    let (account_problems, too_many) = accounts::check(&mut accounts, aws.region.as_ref());
    for (index, key, message) in account_problems {
        problems.push(at.entry("account", index, key, message));
    }
    if let Some(message) = too_many {
        problems.push(Problem {
            line: None,
            column: None,
            field: Some("account".into()),
            message,
        });
    }
    let metrics = match metrics::check_spec(&metrics.unwrap_or_default()) {
        Ok(addr) => addr,
        Err((key, message)) => {
            problems.push(at.key("metrics", key, message));
            None
        }
    };
    let events = match events.as_ref().map(events::check_spec) {
        None => None,
        Some(Ok(settings)) => Some(settings),
        Some(Err((key, message))) => {
            problems.push(at.key("events", key, message));
            None
        }
    };
    let secret_keys = secret_keys(&at, &audit, &daemon, &notify);
    let (notify, notify_problems) = notify::check_specs(&notify);
    for (index, key, message) in notify_problems {
        problems.push(at.entry("notify", index, key, message));
    }

    let mut spec = PolicySpec {
        defaults,
        freeze,
        allow,
        timeout,
        exempt,
        file_order: Vec::new(),
    };
    if let Some(d) = &at.doc {
        spec.file_order = file_order(d.get_ref());
    }
    for (index, message) in accounts::calendar_accounts(&spec.freeze, &accounts) {
        problems.push(at.entry("freeze", index, "change_calendar", message));
    }
    let mut calendars = calendars::read(path, &mut spec.freeze);
    calendars.extend(calendars::read(path, &mut spec.allow));
    let compiled = match bad_calendars {
        BadCalendars::Refuse => Policy::compile(&spec),
        BadCalendars::SetAside => Policy::compile_setting_aside_calendars(&spec),
    };
    let policy = match compiled {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in errors {
                let span = at
                    .doc
                    .as_ref()
                    .and_then(|d| location_span(d.get_ref(), &e.at));
                let (line, column) = at.position(span);
                problems.push(Problem {
                    line,
                    column,
                    field: Some(e.at.to_string()),
                    message: e.kind.to_string(),
                });
            }
            None
        }
    };
    if let Some(policy) = &policy {
        warnings.extend(policy.unreadable().iter().map(ToString::to_string));
        warnings.extend(accounts::never_enforced(
            policy,
            &accounts,
            aws.region.as_ref(),
        ));
    }

    match (schedule, policy) {
        (Some(schedule), Some(policy)) if problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            aws,
            daemon: DaemonSettings::new(daemon, schedule),
            ha,
            audit,
            policy: Arc::new(policy),
            static_credentials: None,
            warnings,
            metrics,
            notify,
            policy_hash: policy_hash(text.as_bytes()),
            accounts,
            policy_error: None,
            secret_keys,
            calendars,
            events,
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

/// Where each key naming a secret is: `(field, line, column)`.
fn secret_keys(
    at: &Locator<'_>,
    audit: &AuditSpec,
    daemon: &DaemonSpec,
    notify: &[NotifySpec],
) -> Vec<(String, Option<usize>, Option<usize>)> {
    let mut keys = Vec::new();
    for (set, table, key) in [
        (audit.signing_key.is_some(), "audit", "signing_key"),
        (
            daemon.database_password_file.is_some(),
            "daemon",
            "database_password_file",
        ),
    ] {
        if set {
            let (line, column) = at.key_position(table, key);
            keys.push((format!("{table}.{key}"), line, column));
        }
    }
    for (index, n) in notify.iter().enumerate() {
        for (set, key) in [
            (n.url.is_some(), "url"),
            (n.url_file.is_some(), "url_file"),
            (n.url_env.is_some(), "url_env"),
        ] {
            if set {
                let (line, column) = at.entry_position("notify", index, key);
                keys.push((format!("notify[{index}].{key}"), line, column));
            }
        }
    }
    keys
}
