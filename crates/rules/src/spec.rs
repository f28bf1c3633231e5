//! The policy as written: the `[defaults]`, `[[freeze]]`, `[[allow]]`, `[[timeout]]` and `[[exempt]]` tables
//! of the policy file, before validation. Field names are a contract with users' files; every
//! table rejects unknown keys. Values that serde cannot judge (cron text, zone names, local
//! times, templates) stay strings here and are checked by [`crate::Policy::compile`], which names
//! the table, index and key of each problem.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::span::Span;

/// How a stop is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Stop and wait: running actions finish, nothing new starts.
    Finish,
    /// Stop and abandon running actions.
    Abandon,
}

impl Mode {
    /// The policy-file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Finish => "finish",
            Mode::Abandon => "abandon",
        }
    }
}

/// `[defaults]`: inherited by every rule that does not set the key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    /// IANA zone name (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Stop mode (default `finish`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Reason template (default `stopd: {rule}`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One `[[freeze]]`: recurring (`cron` + `duration` or `end_cron`) or one-off (`start` + `end`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSpec {
    /// Unique rule name.
    pub name: String,
    /// Recurring: when each window starts (5 or 6 cron fields, in `timezone`).
    #[serde(default)]
    pub cron: Option<String>,
    /// Recurring: how long each window lasts (elapsed time).
    #[serde(default)]
    pub duration: Option<Span>,
    /// Recurring, instead of `duration`: each window ends at the first instant of this cron
    /// (in `timezone`, with the same DST rules as `cron`) strictly after its start.
    #[serde(default)]
    pub end_cron: Option<String>,
    /// Windows from an iCalendar file (every VEVENT a window); exclusive with `cron`,
    /// `duration`, `end_cron`, `start` and `end`. Floating and all-day times are in `timezone`.
    #[serde(default)]
    pub ics: Option<String>,
    /// The text of the `ics` file (or why it could not be read), set by the loader, which does
    /// the I/O; never read from the policy file.
    #[serde(skip)]
    pub ics_text: Option<Result<String, String>>,
    /// An AWS Systems Manager Change Calendar (a name or a document ARN): frozen while it is
    /// CLOSED; exclusive with `cron`, `duration`, `end_cron`, `start`, `end` and `ics`.
    #[serde(default)]
    pub change_calendar: Option<String>,
    /// One-off: start, a local date-time in `timezone` or RFC 3339 with an offset.
    #[serde(default)]
    pub start: Option<String>,
    /// One-off: end (exclusive), same forms as `start`.
    #[serde(default)]
    pub end: Option<String>,
    /// IANA zone of `cron`, `start` and `end` (default: `[defaults] timezone`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Pipeline-name globs (default `["*"]`).
    #[serde(default)]
    pub pipelines: Option<Vec<String>>,
    /// Pipeline-name globs never matched (default `[]`).
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
    /// Tags that must all be present with these values (default `{}`).
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Account-name globs (`[[account]] name`; default all; `default` without `[[account]]`).
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// Region globs (default all).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Stop mode (default: `[defaults] mode`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Reason template (default: `[defaults] reason`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Executions already running when the window opens get this long.
    #[serde(default)]
    pub grace: Option<Span>,
    /// Mode `finish` only: still Stopping after this long -> stop again with abandon.
    #[serde(default)]
    pub escalate_after: Option<Span>,
    /// Also stop ROLLBACK executions (default false).
    #[serde(default)]
    pub rollbacks: Option<bool>,
    /// Also hold new work while the window is open: disable the inbound transition of the
    /// gated stages (default false).
    #[serde(default)]
    pub gate: Option<bool>,
    /// With `gate`: only these stages' inbound transitions (default: every stage after the
    /// first).
    #[serde(default)]
    pub gate_stages: Option<Vec<String>>,
}

/// One `[[allow]]` (Argo CD's allow windows): the same keys as a `[[freeze]]`, read the other
/// way round. A pipeline that any allow rule selects is frozen whenever none of the windows of
/// the allow rules that select it is open.
pub type AllowSpec = FreezeSpec;

/// One `[[timeout]]`: no execution may run longer than `max_duration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    /// Unique rule name.
    pub name: String,
    /// Longest allowed run; `now - startTime > max_duration` stops.
    pub max_duration: Span,
    /// Pipeline-name globs (default `["*"]`).
    #[serde(default)]
    pub pipelines: Option<Vec<String>>,
    /// Pipeline-name globs never matched (default `[]`).
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
    /// Tags that must all be present with these values (default `{}`).
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Account-name globs (`[[account]] name`; default all; `default` without `[[account]]`).
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// Region globs (default all).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Stop mode (default: `[defaults] mode`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Reason template (default: `[defaults] reason`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Mode `finish` only: still Stopping after this long -> stop again with abandon.
    #[serde(default)]
    pub escalate_after: Option<Span>,
    /// Also stop ROLLBACK executions (default false).
    #[serde(default)]
    pub rollbacks: Option<bool>,
}

/// One `[[exempt]]`: never stop these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptSpec {
    /// Unique exemption name.
    pub name: String,
    /// Pipeline-name globs (default `["*"]`).
    #[serde(default)]
    pub pipelines: Option<Vec<String>>,
    /// Pipeline-name globs not exempted (default `[]`).
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
    /// Tags that must all be present with these values (default `{}`).
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Account-name globs (`[[account]] name`; default all; `default` without `[[account]]`).
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// Region globs (default all).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Expiry (exclusive): RFC 3339, or a local date-time in `[defaults] timezone`.
    #[serde(default)]
    pub until: Option<String>,
    /// Why (shown by `plan`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The rules part of a policy file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// `[defaults]`.
    #[serde(default)]
    pub defaults: DefaultsSpec,
    /// `[[freeze]]`, in file order.
    #[serde(default)]
    pub freeze: Vec<FreezeSpec>,
    /// `[[allow]]`, in file order.
    #[serde(default)]
    pub allow: Vec<AllowSpec>,
    /// `[[timeout]]`, in file order.
    #[serde(default)]
    pub timeout: Vec<TimeoutSpec>,
    /// `[[exempt]]`, in file order.
    #[serde(default)]
    pub exempt: Vec<ExemptSpec>,
    /// Position of each rule in the file, for "first rule in file order": (table, index) in the
    /// order they appear. Empty means every freeze, then every allow rule, then every timeout. Set by the loader,
    /// which knows where each table starts; never read from the file.
    #[serde(skip)]
    pub file_order: Vec<RuleRef>,
}

/// Which rule table an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// `[defaults]`.
    Defaults,
    /// `[[freeze]]`.
    Freeze,
    /// `[[timeout]]`.
    Timeout,
    /// `[[allow]]`.
    Allow,
    /// `[[exempt]]`.
    Exempt,
    /// An ad-hoc freeze from the audit database (`stopd freeze add`), not from the file.
    Adhoc,
}

impl Table {
    /// The table's name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Defaults => "defaults",
            Table::Freeze => "freeze",
            Table::Timeout => "timeout",
            Table::Allow => "allow",
            Table::Exempt => "exempt",
            Table::Adhoc => "adhoc",
        }
    }
}

/// One entry of a rule table: `freeze[2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// The table.
    pub table: Table,
    /// Index in the table's array (0 for `[defaults]`).
    pub index: usize,
}
