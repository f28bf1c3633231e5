//! `stopd-rules`: the policy logic of stopd, and nothing else.
//!
//! Given a policy ([`PolicySpec`], as read from the `[defaults]`, `[[freeze]]`, `[[allow]]`,
//! `[[timeout]]` and `[[exempt]]` tables) this crate answers three questions, always for an
//! instant passed in by the caller:
//!
//! - **What must stop at T, and why?** [`Policy::decide`] returns a [`Verdict`] per execution:
//!   stop (with the winning rule, mode, rendered reason and a human explanation), exempt, in
//!   grace, spared as a rollback, or allow.
//! - **Which freeze windows fall in a span?** [`Policy::windows`], merged per rule.
//! - **When can the answer next change?** [`Policy::next_transition`], so a scheduler can wake at
//!   a window edge instead of polling.
//!
//! It does no I/O, knows no AWS types and never reads the clock. Cron expressions follow
//! POSIX/Vixie semantics on the wall clock of an IANA zone, with explicit rules for DST gaps and
//! repeated hours ([`cron`], [`zone`]).
#![deny(missing_docs)]

pub mod cron;
mod decide;
mod policy;
pub mod select;
pub mod span;
pub mod spec;
pub mod template;
pub mod window;
pub mod zone;

pub use decide::{
    Decider, Decision, ExecutionFacts, GateHold, Verdict, WindowInstance, human_span, rfc3339,
};
pub use policy::{
    DEFAULT_ALLOW_REASON, DEFAULT_REASON, Exemption, ExemptionSource, Gate, Location, Policy,
    PolicyError, PolicyErrorKind, Rule, RuleKind, Trigger, Unreadable, parse_time, parse_zone,
    suggest_zone,
};
pub use select::Place;
pub use span::{MAX_SPAN, Span, SpanError};
pub use spec::{
    AllowSpec, DefaultsSpec, ExemptSpec, FreezeSpec, Mode, PolicySpec, RuleRef, Table, TimeoutSpec,
};
pub use window::change_calendar::{CalendarState, ChangeCalendar};
pub use window::{EndCron, Merge, Schedule, Window};
