//! Change Calendars (`change_calendar`): asked at each sweep, before deciding, and handed to
//! the rules. A calendar that answers an error stops nothing (the rules see no window) and
//! fails the sweep, naming the rule and the calendar; the other rules are enforced.

use chrono::{DateTime, Utc};
use stopd_core::{CallCounts, Core};
use stopd_rules::{CalendarState, Policy};

/// What asking the policy's calendars came to.
#[derive(Debug, Default)]
pub struct Asked {
    /// The first calendar that could not be read, in a sentence naming its rule.
    pub error: Option<String>,
    /// Calendars that could not be read.
    pub failures: usize,
    /// The earliest next transition of any calendar: the scheduler wakes then.
    pub next_transition: Option<DateTime<Utc>>,
    /// Requests made.
    pub calls: CallCounts,
}

/// The engine a calendar is asked through: the ambient account's (the first engine of the
/// account named `default`, else the first), in the ARN's region if it names one.
fn engine(cores: &[Core]) -> Option<&Core> {
    cores
        .iter()
        .find(|c| c.account() == stopd_audit::Place::DEFAULT_ACCOUNT)
        .or_else(|| cores.first())
}

/// Asks every calendar of `policy` at `now` and hands each answer to its rule.
pub async fn ask(policy: &Policy, cores: &[Core], now: DateTime<Utc>) -> Asked {
    let mut asked = Asked::default();
    for (rule, calendar) in policy.change_calendars() {
        let state = match engine(cores) {
            None => Err("no account to ask it in".to_string()),
            Some(core) => core
                .calendar_state(calendar.name(), calendar.arn_region(), &mut asked.calls)
                .await
                .map_err(|e| e.to_string()),
        };
        let state = match state {
            Ok(a) => {
                // The sweep's instant, not the answer's `AtTime`: the decision is made at `now`.
                let at = now;
                let next = a.next_transition;
                if let Some(n) = next.filter(|n| *n > now) {
                    asked.next_transition = Some(asked.next_transition.map_or(n, |m| m.min(n)));
                }
                if a.closed {
                    CalendarState::Closed { at, next }
                } else {
                    CalendarState::Open { at, next }
                }
            }
            Err(e) => {
                let message = format!(
                    "rule {}: change calendar {} cannot be read (nothing is stopped by it until it can): {e}",
                    rule.name,
                    calendar.name()
                );
                tracing::error!(rule = %rule.name, calendar = calendar.name(), error = %e, "change calendar unreadable");
                asked.failures += 1;
                if asked.error.is_none() {
                    asked.error = Some(message);
                }
                CalendarState::Unreadable(e)
            }
        };
        calendar.set_state(state);
    }
    asked
}
