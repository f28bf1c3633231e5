//! Rules whose window source cannot be read: a calendar file that is missing or invalid is never
//! guessed. `check` refuses it ([`Policy::compile`]); a running daemon compiles the policy
//! without that rule ([`Policy::compile_setting_aside_calendars`]), so it stops nothing and gates
//! nothing while the other rules are enforced, and each sweep fails naming it.

use std::fmt;

use super::{Location, Policy, PolicyError, PolicyErrorKind};
use crate::spec::{PolicySpec, Table};

/// A rule left out of a policy because its calendar cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The rule's name.
    pub rule: String,
    /// Where and why: `freeze[0].ics: calendar release.ics:11: ...`.
    pub error: PolicyError,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {:?} stops nothing until its calendar can be read ({})",
            self.rule, self.error
        )
    }
}

impl PolicyErrorKind {
    /// Whether this is a calendar file that cannot be read or is invalid (not a mistake in the
    /// policy file itself).
    pub fn is_calendar(&self) -> bool {
        matches!(
            self,
            PolicyErrorKind::IcsUnreadable { .. } | PolicyErrorKind::Ics { .. }
        )
    }
}

impl Policy {
    /// [`Policy::compile`], except that a rule whose only problem is its calendar (missing,
    /// unreadable or invalid) is left out instead of failing the policy, and listed in
    /// [`Policy::unreadable`]. Any other problem fails it as `compile` does, with every error.
    pub fn compile_setting_aside_calendars(spec: &PolicySpec) -> Result<Policy, Vec<PolicyError>> {
        let (mut policy, errors) = Policy::compile_all(spec);
        if !errors.iter().all(|e| e.kind.is_calendar()) {
            return Err(errors);
        }
        policy.unreadable = errors
            .into_iter()
            .map(|error| {
                let i = error.at.rule.index;
                let rule = match error.at.rule.table {
                    Table::Freeze => spec.freeze.get(i).map(|f| f.name.clone()),
                    Table::Allow => spec.allow.get(i).map(|a| a.name.clone()),
                    _ => None,
                };
                let entry = Location {
                    rule: error.at.rule,
                    key: None,
                };
                Unreadable {
                    rule: rule.unwrap_or_else(|| entry.to_string()),
                    error,
                }
            })
            .collect();
        Ok(policy)
    }

    /// The rules left out because their calendar cannot be read (empty unless compiled by
    /// [`Policy::compile_setting_aside_calendars`]).
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }
}
