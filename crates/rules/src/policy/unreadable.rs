//! Rules whose window source cannot be read: a calendar file that is missing or invalid is never
//! guessed. `check` refuses it ([`Policy::compile`]); a running daemon compiles the policy
//! without that rule ([`Policy::compile_setting_aside_calendars`]), so it stops nothing and gates
//! nothing while the other rules are enforced, and each sweep fails naming it.

use std::fmt;

use super::{Location, Policy, PolicyError, PolicyErrorKind, Trigger};
use crate::spec::{PolicySpec, Table};
use crate::window::Schedule;
use crate::window::change_calendar::CalendarState;

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

    /// Whether the rule named `rule` cannot be judged now: set aside because its calendar file
    /// cannot be read, or a Change Calendar rule whose calendar could not be read (or was not
    /// asked) where this policy decides. Such a rule stops nothing, and what it holds (a gate
    /// it closed) is not released either: either would be a guess.
    pub fn cannot_judge(&self, rule: &str) -> bool {
        self.unreadable.iter().any(|u| u.rule == rule)
            || self.rules.iter().any(|r| {
                r.name == rule
                    && matches!(
                        &r.trigger,
                        Trigger::Freeze {
                            schedule: Schedule::ChangeCalendar(c),
                            ..
                        } if matches!(
                            c.state(),
                            CalendarState::Unreadable(_) | CalendarState::Unknown
                        )
                    )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FreezeSpec;

    fn calendar_rule(name: &str, text: Result<&str, &str>) -> FreezeSpec {
        FreezeSpec {
            name: name.into(),
            ics: Some(format!("{name}.ics")),
            ics_text: Some(text.map(String::from).map_err(String::from)),
            ..FreezeSpec::default()
        }
    }

    fn cron_rule(name: &str) -> FreezeSpec {
        FreezeSpec {
            name: name.into(),
            cron: Some("* * * * *".into()),
            duration: Some("1h".parse().unwrap()),
            ..FreezeSpec::default()
        }
    }

    const INVALID: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n\
        DTSTART;TZID=Nowhere/City:20270101T000000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_rule_whose_calendar_cannot_be_read_is_set_aside_and_named() {
        let spec = PolicySpec {
            freeze: vec![
                calendar_rule("missing", Err("No such file or directory")),
                cron_rule("always"),
            ],
            allow: vec![calendar_rule("office", Ok(INVALID))],
            ..PolicySpec::default()
        };
        // check refuses both calendars.
        let errors = Policy::compile(&spec).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        // run: only the cron rule is in force (the allow rule freezes nothing either).
        let policy = Policy::compile_setting_aside_calendars(&spec).unwrap();
        let names: Vec<&str> = policy.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["always"]);
        let unreadable: Vec<String> = policy.unreadable().iter().map(|u| u.to_string()).collect();
        assert_eq!(unreadable.len(), 2, "{unreadable:?}");
        assert!(unreadable[0].contains("\"missing\""), "{unreadable:?}");
        assert!(unreadable[0].contains("missing.ics"), "{unreadable:?}");
        assert!(unreadable[1].contains("\"office\""), "{unreadable:?}");
        assert!(unreadable[1].contains("office.ics:3"), "{unreadable:?}");
        // What a place's or an ad-hoc policy decides by still says so.
        assert_eq!(policy.for_place("a", "r").unreadable().len(), 2);
        assert_eq!(
            policy
                .with_adhoc(&[cron_rule("adhoc")])
                .unwrap()
                .unreadable()
                .len(),
            2
        );
    }

    #[test]
    fn any_other_problem_fails_the_policy_with_every_error() {
        let mut bad = cron_rule("bad");
        bad.cron = Some("not cron".into());
        let spec = PolicySpec {
            freeze: vec![calendar_rule("missing", Err("gone")), bad],
            ..PolicySpec::default()
        };
        let errors = Policy::compile_setting_aside_calendars(&spec).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            Policy::compile(&PolicySpec::default())
                .unwrap()
                .unreadable()
                .is_empty()
        );
    }

    #[test]
    fn a_rule_that_cannot_be_read_cannot_be_judged_and_the_others_can() {
        let spec = PolicySpec {
            freeze: vec![
                calendar_rule("missing", Err("No such file or directory")),
                cron_rule("always"),
                FreezeSpec {
                    name: "cc".into(),
                    change_calendar: Some("prod-changes".into()),
                    ..FreezeSpec::default()
                },
            ],
            ..PolicySpec::default()
        };
        let policy = Policy::compile_setting_aside_calendars(&spec).unwrap();
        assert!(policy.cannot_judge("missing"));
        assert!(!policy.cannot_judge("always"));
        assert!(!policy.cannot_judge("removed-long-ago"));
        // A Change Calendar: not asked yet, or unreadable, here; OPEN or CLOSED can be judged.
        let here = policy.for_place("a", "r");
        assert!(here.cannot_judge("cc"));
        let (_, c) = policy.change_calendars().pop().unwrap();
        let t = "2027-01-01T00:00:00Z".parse().unwrap();
        c.set_state_at("a", "r", CalendarState::Open { at: t, next: None });
        assert!(!here.cannot_judge("cc"));
        assert!(
            policy.for_place("b", "r").cannot_judge("cc"),
            "not asked there"
        );
        c.set_state_at("a", "r", CalendarState::Unreadable("denied".into()));
        assert!(here.cannot_judge("cc"));
    }
}
