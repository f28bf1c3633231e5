//! An AWS Systems Manager Change Calendar (`change_calendar`): frozen while the calendar is
//! CLOSED. The rules do no I/O: the daemon asks `GetCalendarState` at each sweep and hands the
//! answer in with [`ChangeCalendar::set_state_at`]; until then, and while the calendar cannot be
//! read, it has no window (a calendar never stops anything on a guess).
//!
//! **Where a calendar is asked.** A calendar named by its name is a document of the account it
//! is asked in: each account and region a rule selects asks its own (one state per place), and
//! [`ChangeCalendar::at_place`] is the view a place's policy decides by
//! ([`crate::Policy::for_place`]). A calendar named by its document ARN
//! (`arn:aws:ssm:REGION:ACCOUNT:document/NAME`) is that one document wherever the rule applies:
//! one state, asked in the ARN's account and region. The policy as a whole (unbound: `windows`,
//! `status`, the scheduler's edges) reads the union of every place's CLOSED window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::{MERGE_HORIZON, Window};

/// What the daemon last learnt of a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarState {
    /// Not asked yet.
    Unknown,
    /// OPEN at `at`, until `next` (no transition known: `None`).
    Open {
        /// When it was asked.
        at: DateTime<Utc>,
        /// `NextTransitionTime`.
        next: Option<DateTime<Utc>>,
    },
    /// CLOSED at `at`, until `next`.
    Closed {
        /// When it was asked.
        at: DateTime<Utc>,
        /// `NextTransitionTime`.
        next: Option<DateTime<Utc>>,
    },
    /// The calendar answered an error: no window, and the sweep fails naming it.
    Unreadable(String),
}

/// Where an answer was asked: an account's name and a region (an ARN's calendar: one slot,
/// whatever the place).
type Slot = (String, String);

/// A Change Calendar named by a rule, with the states the daemon last handed in (one per place
/// it was asked in), seen from one place or from everywhere.
#[derive(Debug)]
pub struct ChangeCalendar {
    /// The name or document ARN as written.
    name: String,
    /// The last state handed in, per place; shared by every view of the calendar.
    states: Arc<Mutex<BTreeMap<Slot, CalendarState>>>,
    /// The place this view decides for; `None`: every place (the policy as a whole).
    place: Option<Slot>,
}

/// The parts of a document ARN: `arn:PARTITION:ssm:REGION:ACCOUNT:document/NAME`.
fn arn_parts(name: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = name.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "ssm", region, account, resource] => {
            Some((region, account, resource.strip_prefix("document/")?))
        }
        _ => None,
    }
}

/// Why a `change_calendar` value cannot name a calendar, if it cannot: an ARN must be a
/// document's, `arn:aws:ssm:REGION:ACCOUNT:document/NAME` with a 12-digit account.
pub fn invalid_name(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("is empty: name a calendar (its name or its document ARN)".into());
    }
    if !name.starts_with("arn:") {
        return None;
    }
    let good = arn_parts(name).is_some_and(|(region, account, doc)| {
        !region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !doc.is_empty()
    });
    (!good).then(|| {
        format!(
            "{name:?} is not a Change Calendar document ARN (arn:aws:ssm:REGION:123456789012:document/NAME)"
        )
    })
}

impl ChangeCalendar {
    /// A calendar not asked yet, seen from everywhere.
    pub fn new(name: &str) -> ChangeCalendar {
        ChangeCalendar {
            name: name.to_string(),
            states: Arc::new(Mutex::new(BTreeMap::new())),
            place: None,
        }
    }

    /// The view of the calendar that `account` in `region` decides by: its own state for a
    /// name, the one state for an ARN. It shares the states with `self`.
    pub fn at_place(&self, account: &str, region: &str) -> ChangeCalendar {
        ChangeCalendar {
            name: self.name.clone(),
            states: Arc::clone(&self.states),
            place: Some(self.slot(account, region)),
        }
    }

    /// The name or ARN as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region of an ARN (`arn:aws:ssm:REGION:ACCOUNT:document/NAME`); `None` for a name.
    pub fn arn_region(&self) -> Option<&str> {
        arn_parts(&self.name)
            .map(|(region, _, _)| region)
            .filter(|r| !r.is_empty())
    }

    /// The account id of an ARN; `None` for a name.
    pub fn arn_account(&self) -> Option<&str> {
        arn_parts(&self.name)
            .map(|(_, account, _)| account)
            .filter(|a| !a.is_empty())
    }

    /// Whether it is named by a document ARN (one calendar wherever the rule applies).
    pub fn is_arn(&self) -> bool {
        self.name.starts_with("arn:")
    }

    /// Where an answer asked by `account` in `region` is kept: there for a name, the one slot
    /// for an ARN.
    fn slot(&self, account: &str, region: &str) -> Slot {
        if self.is_arn() {
            (String::new(), String::new())
        } else {
            (account.to_string(), region.to_string())
        }
    }

    /// The states handed in, by place.
    fn states(&self) -> std::sync::MutexGuard<'_, BTreeMap<Slot, CalendarState>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last state this view sees: its place's; seen from everywhere, the only one (an ARN,
    /// or a single place), else CLOSED if any place is (from the first to the last of their
    /// ends), else the first unreadable, else OPEN until the earliest transition.
    pub fn state(&self) -> CalendarState {
        let states = self.states();
        if let Some(slot) = &self.place {
            return states.get(slot).cloned().unwrap_or(CalendarState::Unknown);
        }
        let all: Vec<&CalendarState> = states.values().collect();
        if let [one] = all.as_slice() {
            return (*one).clone();
        }
        let closed: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = all
            .iter()
            .filter_map(|s| match s {
                CalendarState::Closed { at, next } => Some((*at, *next)),
                _ => None,
            })
            .collect();
        if let Some(at) = closed.iter().map(|(at, _)| *at).min() {
            // Ends at the last known end; one without a known end: none.
            let next = closed
                .iter()
                .map(|(_, n)| *n)
                .try_fold(None::<DateTime<Utc>>, |m, n| {
                    n.map(|n| Some(m.map_or(n, |m| m.max(n))))
                })
                .flatten();
            return CalendarState::Closed { at, next };
        }
        if let Some(bad) = all
            .iter()
            .find(|s| matches!(s, CalendarState::Unreadable(_)))
        {
            return (*bad).clone();
        }
        let open: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = all
            .iter()
            .filter_map(|s| match s {
                CalendarState::Open { at, next } => Some((*at, *next)),
                _ => None,
            })
            .collect();
        match open.iter().map(|(at, _)| *at).max() {
            Some(at) => CalendarState::Open {
                at,
                next: open.iter().filter_map(|(_, n)| *n).min(),
            },
            None => CalendarState::Unknown,
        }
    }

    /// Every place's last state, by (account, region) (an ARN's: one, at `("", "")`).
    pub fn states_by_place(&self) -> Vec<((String, String), CalendarState)> {
        self.states()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Hands in what `GetCalendarState` answered (or that it failed) when `account` asked it in
    /// `region`. A calendar still CLOSED keeps the instant it was first seen CLOSED: its window
    /// opened then, and grace counts from then (not from each sweep).
    pub fn set_state_at(&self, account: &str, region: &str, state: CalendarState) {
        let slot = self.slot(account, region);
        let mut states = self.states();
        let held = states.entry(slot).or_insert(CalendarState::Unknown);
        *held = match (&*held, state) {
            (CalendarState::Closed { at: since, .. }, CalendarState::Closed { at, next }) => {
                CalendarState::Closed {
                    at: (*since).min(at),
                    next,
                }
            }
            (_, state) => state,
        };
    }

    /// [`ChangeCalendar::set_state_at`] for this view's place (seen from everywhere: the
    /// ambient account's, in no particular region).
    pub fn set_state(&self, state: CalendarState) {
        let (account, region) = self.place.clone().unwrap_or_default();
        self.set_state_at(&account, &region, state);
    }

    /// The CLOSED window the last answer describes: from when it was first seen CLOSED to its
    /// next transition (or [`MERGE_HORIZON`] beyond it, if none is known).
    pub fn window(&self) -> Option<Window> {
        match self.state() {
            CalendarState::Closed { at, next } => Some(Window {
                start: at,
                end: next.unwrap_or(at + MERGE_HORIZON),
            }),
            _ => None,
        }
    }

    /// The CLOSED window in force at `t`, if the last answer says so.
    pub fn window_at(&self, t: DateTime<Utc>) -> Option<Window> {
        self.window().filter(|w| w.contains(t))
    }

    /// When the answer should be asked again: its next transition (from everywhere: the
    /// earliest of any place's).
    pub fn next_transition(&self) -> Option<DateTime<Utc>> {
        let next = |s: &CalendarState| match s {
            CalendarState::Closed { next, .. } | CalendarState::Open { next, .. } => *next,
            _ => None,
        };
        match &self.place {
            Some(_) => next(&self.state()),
            None => self.states().values().filter_map(next).min(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn closed_is_a_window_to_the_next_transition_and_the_rest_is_none() {
        let c = ChangeCalendar::new("prod-changes");
        assert_eq!(c.window_at(t("2027-01-01T00:00:00Z")), None);
        c.set_state(CalendarState::Closed {
            at: t("2027-01-01T00:00:00Z"),
            next: Some(t("2027-01-01T02:00:00Z")),
        });
        let w = c.window_at(t("2027-01-01T01:00:00Z")).unwrap();
        assert_eq!(w.end, t("2027-01-01T02:00:00Z"));
        assert_eq!(c.window_at(t("2027-01-01T02:00:00Z")), None);
        // Still CLOSED at the next sweep: the window still opened at the first answer.
        c.set_state(CalendarState::Closed {
            at: t("2027-01-01T00:30:00Z"),
            next: Some(t("2027-01-01T03:00:00Z")),
        });
        let w = c.window_at(t("2027-01-01T01:00:00Z")).unwrap();
        assert_eq!(
            (w.start, w.end),
            (t("2027-01-01T00:00:00Z"), t("2027-01-01T03:00:00Z"))
        );
        c.set_state(CalendarState::Unreadable("boom".into()));
        assert_eq!(c.window_at(t("2027-01-01T01:00:00Z")), None);
        c.set_state(CalendarState::Open {
            at: t("2027-01-01T00:00:00Z"),
            next: None,
        });
        assert_eq!(c.window_at(t("2027-01-01T01:00:00Z")), None);
    }

    #[test]
    fn an_arn_names_its_region() {
        let arn = ChangeCalendar::new("arn:aws:ssm:eu-west-1:111122223333:document/prod");
        assert_eq!(arn.arn_region(), Some("eu-west-1"));
        assert_eq!(ChangeCalendar::new("prod").arn_region(), None);
    }

    #[test]
    fn a_name_has_a_state_per_place_and_an_arn_one_for_all() {
        let c = ChangeCalendar::new("prod-changes");
        let (a, b) = (c.at_place("a", "eu-west-1"), c.at_place("b", "eu-west-1"));
        c.set_state_at(
            "a",
            "eu-west-1",
            CalendarState::Closed {
                at: t("2027-01-01T00:00:00Z"),
                next: Some(t("2027-01-01T02:00:00Z")),
            },
        );
        c.set_state_at(
            "b",
            "eu-west-1",
            CalendarState::Open {
                at: t("2027-01-01T00:00:00Z"),
                next: Some(t("2027-01-01T01:00:00Z")),
            },
        );
        let at = t("2027-01-01T00:30:00Z");
        assert!(a.window_at(at).is_some());
        assert_eq!(b.window_at(at), None, "b's calendar is OPEN");
        assert_eq!(
            c.at_place("a", "us-east-1").window_at(at),
            None,
            "not asked there"
        );
        // Everywhere: frozen somewhere; asked again at the earliest transition.
        assert!(c.window_at(at).is_some());
        assert_eq!(c.next_transition(), Some(t("2027-01-01T01:00:00Z")));
        assert_eq!(a.next_transition(), Some(t("2027-01-01T02:00:00Z")));
        // One place unreadable: that place has no window, the others keep theirs.
        c.set_state_at("b", "eu-west-1", CalendarState::Unreadable("denied".into()));
        assert_eq!(b.window_at(at), None);
        assert!(a.window_at(at).is_some());

        let arn = ChangeCalendar::new("arn:aws:ssm:eu-west-1:111122223333:document/prod");
        arn.set_state_at(
            "ops",
            "eu-west-1",
            CalendarState::Closed {
                at: t("2027-01-01T00:00:00Z"),
                next: None,
            },
        );
        for (account, region) in [("a", "us-east-1"), ("b", "eu-west-1")] {
            assert!(
                arn.at_place(account, region).window_at(at).is_some(),
                "one document wherever the rule applies"
            );
        }
        assert_eq!(arn.arn_account(), Some("111122223333"));
    }

    #[test]
    fn closed_places_together_span_the_first_start_to_the_last_end() {
        let c = ChangeCalendar::new("prod-changes");
        for (account, at, next) in [
            ("a", "2027-01-01T00:00:00Z", Some("2027-01-01T02:00:00Z")),
            ("b", "2027-01-01T00:10:00Z", Some("2027-01-01T03:00:00Z")),
        ] {
            c.set_state_at(
                account,
                "r",
                CalendarState::Closed {
                    at: t(at),
                    next: next.map(t),
                },
            );
        }
        let w = c.window().unwrap();
        assert_eq!(
            (w.start, w.end),
            (t("2027-01-01T00:00:00Z"), t("2027-01-01T03:00:00Z"))
        );
        c.set_state_at(
            "c",
            "r",
            CalendarState::Closed {
                at: t("2027-01-01T00:20:00Z"),
                next: None,
            },
        );
        assert_eq!(
            c.window().unwrap().end,
            t("2027-01-01T00:00:00Z") + MERGE_HORIZON
        );
    }

    #[test]
    fn a_calendar_arn_must_be_a_documents() {
        assert_eq!(invalid_name("prod-changes"), None);
        assert_eq!(
            invalid_name("arn:aws:ssm:eu-west-1:111122223333:document/prod"),
            None
        );
        for bad in [
            "",
            "arn:aws:ssm:eu-west-1:1111:document/prod",
            "arn:aws:ssm::111122223333:document/prod",
            "arn:aws:s3:eu-west-1:111122223333:document/prod",
            "arn:aws:ssm:eu-west-1:111122223333:parameter/prod",
            "arn:aws:ssm:eu-west-1:111122223333:document/",
        ] {
            assert!(invalid_name(bad).is_some(), "{bad:?}");
        }
    }
}
