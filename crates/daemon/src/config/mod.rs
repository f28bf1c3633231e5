//! The policy file: parse, validate, and say exactly where a problem is. A leaf: it owns every
//! spec type (`[daemon]`, `[aws]`, `[audit]`, `[[account]]`, `[metrics]`, `[[notify]]`, `[events]`, and the
//! policy tables through `stopd_rules`) and hands each subsystem its slice; it imports nothing
//! of what it configures.
//!
//! The file is read twice over the same text: once by serde into the typed tables (unknown keys
//! and bad values are rejected with toml's own span), and once as a spanned document, so that an
//! error found later by [`Policy::compile`] (a `Location` such as `freeze[2].cron`) is shown with
//! the line and column of that key. The spanned document also gives the file order of
//! `[[freeze]]` and `[[timeout]]` entries, which decides ties between rules.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use stopd_rules::Policy;

mod accounts;
mod audit;
mod aws;
pub mod calendars;
mod daemon;
mod error;
pub mod events;
mod ha;
mod load;
pub mod metrics;
pub mod notify;
mod parse;
mod spans;
#[cfg(test)]
mod tests;

pub use accounts::{AccountSpec, MAX_PAIRS};
pub use audit::AuditSpec;
pub use aws::AwsSpec;
pub use daemon::{DEFAULT_DATABASE, DEFAULT_SCHEDULE, DaemonSettings, MAX_CONCURRENCY};
pub use error::{ConfigError, Problem};
pub use events::{EventsSettings, EventsSpec};
pub use ha::{DEFAULT_LEASE, HaSettings, MIN_LEASE, host_name};
pub use load::{load, load_for_database, load_for_run};
pub use metrics::MetricsSpec;
pub use notify::{EventKind, Format, NotifySpec, Target, UrlSource};
pub use parse::parse;

/// Where the daemon looks when neither `--config` nor `STOPD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/stopd/stopd.toml";

/// The hash a policy file is known by (`stopd status`: in force against on disk): SHA-256 of
/// its bytes, lowercase hex.
pub fn policy_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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
    /// Leadership by lease (`[ha]`, or its defaults): always on PostgreSQL, never on SQLite.
    pub ha: Option<HaSettings>,
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
    pub notify: Vec<Target>,
    /// SHA-256 of the file's bytes, lowercase hex (`stopd status`: in force against on disk).
    pub policy_hash: String,
    /// `[[account]]` tables, each with its regions resolved (empty: the ambient account).
    pub accounts: Vec<AccountSpec>,
    /// Why the file does not validate, when it was read by [`load_for_database`] with its
    /// `[daemon]` table alone (then `policy` has no rules, only `[defaults]` if they read).
    pub policy_error: Option<ConfigError>,
    /// Where each key naming a secret (`audit.signing_key`, `notify[0].url_file`, ...) is in
    /// the file: line and column, for the errors of the secrets check (`stopd check`, `run`).
    pub secret_keys: Vec<(String, Option<usize>, Option<usize>)>,
    /// The calendar files of `ics` rules, resolved, as read for `policy`: the daemon re-reads
    /// the policy when one of them changes.
    pub calendars: Vec<PathBuf>,
    /// `[events]`: the event queue the leader long-polls; none when absent.
    pub events: Option<EventsSettings>,
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
