//! An AWS Systems Manager Change Calendar (`change_calendar`): frozen while the calendar is
//! CLOSED. The rules do no I/O: the daemon asks `GetCalendarState` at each sweep and hands the
//! answer in with [`ChangeCalendar::set_state`]; until then, and while the calendar cannot be
//! read, it has no window (a calendar never stops anything on a guess).

use std::sync::{Mutex, PoisonError};

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

/// A Change Calendar named by a rule, with the state the daemon last handed in.
#[derive(Debug)]
pub struct ChangeCalendar {
    /// The name or document ARN as written.
    name: String,
    /// The last state handed in.
    state: Mutex<CalendarState>,
}

impl ChangeCalendar {
    /// A calendar not asked yet.
    pub fn new(name: &str) -> ChangeCalendar {
        ChangeCalendar {
            name: name.to_string(),
            state: Mutex::new(CalendarState::Unknown),
        }
    }

    /// The name or ARN as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region of an ARN (`arn:aws:ssm:REGION:ACCOUNT:document/NAME`); `None` for a name.
    pub fn arn_region(&self) -> Option<&str> {
        let rest = self.name.strip_prefix("arn:")?;
        rest.split(':').nth(2).filter(|r| !r.is_empty())
    }

    /// The last state handed in.
    pub fn state(&self) -> CalendarState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Hands in what `GetCalendarState` answered (or that it failed). A calendar still CLOSED
    /// keeps the instant it was first seen CLOSED: its window opened then, and grace counts
    /// from then (not from each sweep).
    pub fn set_state(&self, state: CalendarState) {
        let mut held = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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

    /// The CLOSED window the last answer describes: from when it was asked to its next
    /// transition (or [`MERGE_HORIZON`] beyond it, if none is known).
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

    /// When the answer should be asked again: its next transition.
    pub fn next_transition(&self) -> Option<DateTime<Utc>> {
        match self.state() {
            CalendarState::Closed { next, .. } | CalendarState::Open { next, .. } => next,
            _ => None,
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
}
