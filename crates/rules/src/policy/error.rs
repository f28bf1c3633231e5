//! What is wrong with a policy, and where: [`PolicyError`]s, each at a [`Location`] such as
//! `freeze[2].cron`.

use std::fmt;

use crate::cron::CronError;
use crate::policy::suggest_zone;
use crate::select::GlobError;
use crate::spec::{RuleRef, Table};
use crate::template::TemplateError;

/// Where a policy error is: `freeze[2].cron`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The table entry.
    pub rule: RuleRef,
    /// The key inside it, if the error is about one key.
    pub key: Option<&'static str>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule.table {
            Table::Defaults => write!(f, "defaults")?,
            t => write!(f, "{}[{}]", t.as_str(), self.rule.index)?,
        }
        if let Some(k) = self.key {
            write!(f, ".{k}")?;
        }
        Ok(())
    }
}

/// What is wrong with a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    /// `name = ""`.
    #[error("name must not be empty")]
    EmptyName,
    /// Two entries share a name.
    #[error("name {name:?} is already used by {first}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Where it was first used, e.g. `freeze[0]`.
        first: String,
    },
    /// A cron expression that does not parse or never fires.
    #[error("{0}")]
    Cron(#[from] CronError),
    /// Not an IANA zone name (the message suggests the zone meant, if one is near).
    #[error("unknown time zone {0:?}: {hint}", hint = zone_hint(.0))]
    UnknownZone(String),
    /// A one-off window whose end is not after its start.
    #[error("end {end} is not after start {start}")]
    EndNotAfterStart {
        /// Start, UTC.
        start: String,
        /// End, UTC.
        end: String,
    },
    /// `escalate_after` on a rule whose mode is already abandon.
    #[error("escalate_after needs mode \"finish\": a stop that abandons cannot be escalated")]
    EscalateWithAbandon,
    /// A reason template with an unknown placeholder or an unbalanced brace.
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// A glob that does not compile.
    #[error("{0}")]
    Glob(#[from] GlobError),
    /// Not a date-time.
    #[error(
        "{0:?} is not a date-time: write RFC 3339 with an offset (\"2026-12-19T00:00:00Z\") or a local date-time (\"2026-12-19T00:00:00\")"
    )]
    BadTime(String),
    /// A freeze that is neither recurring nor one-off, or both.
    #[error(
        "a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); {0}"
    )]
    FreezeShape(&'static str),
    /// An allow rule that is neither recurring nor one-off, or both.
    #[error(
        "an allow rule is either recurring (cron + duration or end_cron) or one-off (start + end); {0}"
    )]
    AllowShape(&'static str),
    /// `ics` with a key of another window source.
    #[error("ics is exclusive with cron, duration, end_cron, start and end; remove {0}")]
    IcsExclusive(&'static str),
    /// `change_calendar` with a key of another window source.
    #[error(
        "change_calendar is exclusive with cron, duration, end_cron, start, end and ics; remove {0}"
    )]
    ChangeCalendarExclusive(&'static str),
    /// `change_calendar` on an `[[allow]]` rule.
    #[error(
        "change_calendar is a [[freeze]] key, not an [[allow]] one: a Change Calendar already says when changes are allowed (OPEN) and when not (CLOSED); write it as a [[freeze]], which freezes while it is CLOSED"
    )]
    ChangeCalendarInAllow,
    /// `change_calendar` that cannot name a calendar (empty, or an ARN not of a document).
    #[error("change_calendar {0}")]
    ChangeCalendarName(String),
    /// The `ics` file could not be read (or the loader did not read it).
    #[error("cannot read the calendar {path}: {error}")]
    IcsUnreadable {
        /// The path as written.
        path: String,
        /// Why.
        error: String,
    },
    /// The `ics` file is not a calendar stopd can read exactly.
    #[error("calendar {path}:{line}: {message}")]
    Ics {
        /// The path as written.
        path: String,
        /// 1-based line in the calendar file.
        line: usize,
        /// What.
        message: String,
    },
    /// An empty `pipelines` list matches nothing.
    #[error("an empty list matches no pipeline; leave the key out to match all")]
    EmptyPipelines,
    /// An empty `accounts` or `regions` list matches nothing.
    #[error("an empty list matches nothing; leave the key out to match all")]
    EmptyPlaces,
    /// `gate_stages` without `gate = true`, or an empty one.
    #[error("{0}")]
    GateStages(&'static str),
}

/// One problem in a policy, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct PolicyError {
    /// Where.
    pub at: Location,
    /// What.
    pub kind: PolicyErrorKind,
}

/// What to say after "unknown time zone": the zone meant, or what a zone looks like.
fn zone_hint(name: &str) -> String {
    match suggest_zone(name) {
        Some(z) => format!("did you mean \"{}\"?", z.name()),
        None => "use an IANA name such as \"Europe/Berlin\" or \"UTC\"".to_string(),
    }
}
