//! Change Calendars (`change_calendar`): asked at each sweep, before deciding, and handed to
//! the rules. A calendar that answers an error stops nothing (the rules see no window) and
//! fails the sweep, naming the rule and the calendar; the other rules are enforced.
//!
//! Where each is asked: a calendar named by its name, in every account and region its rule
//! selects, through that place's SSM client (the same credentials as its CodePipeline calls:
//! the ambient ones, or the `[[account]]`'s role), each place deciding by its own answer. A
//! document ARN, once, in the ARN's region, through an engine of the ARN's account (with
//! `[[account]]`s; `check` refuses an ARN of an account not configured), or with the ambient
//! credentials (without). All of them at once, each call bounded like any other (the shared
//! bound on requests in flight, the engine's rate limiter).

use chrono::{DateTime, Utc};
use stopd_core::{ApiError, CalendarAnswer, CallCounts, Core};
use stopd_rules::{CalendarState, ChangeCalendar, Policy, Rule};
use tokio::task::JoinSet;

/// What asking the policy's calendars came to.
#[derive(Debug, Default)]
pub struct Asked {
    /// The first calendar that could not be read, in a sentence naming its rule.
    pub error: Option<String>,
    /// Calendars that could not be read (one per place asked).
    pub failures: usize,
    /// The earliest next transition of any calendar: the scheduler wakes then.
    pub next_transition: Option<DateTime<Utc>>,
    /// Requests made.
    pub calls: CallCounts,
}

/// One question: a calendar, asked through `core` (in `region`, the engine's own when `None`),
/// its answer kept for `core`'s place.
struct Ask {
    /// Index into the policy's calendars.
    calendar: usize,
    /// The engine asked through.
    core: Core,
    /// An ARN's region.
    region: Option<String>,
}

/// Where `calendar` of `rule` is asked: one engine for an ARN, every engine whose place the
/// rule selects for a name; or why it cannot be asked at all.
fn engines<'c>(
    rule: &Rule,
    calendar: &ChangeCalendar,
    cores: &'c [Core],
) -> Result<Vec<&'c Core>, String> {
    if let Some(id) = calendar.arn_account() {
        // With [[account]]s every engine knows its account's id; the ambient one does not.
        let known = cores.iter().any(|c| c.account_id().is_some());
        let core = if known {
            cores.iter().find(|c| c.account_id() == Some(id))
        } else {
            cores
                .iter()
                .find(|c| c.account() == stopd_audit::Place::DEFAULT_ACCOUNT)
                .or_else(|| cores.first())
        };
        return core
            .map(|c| vec![c])
            .ok_or_else(|| format!("no configured account is {id}, the calendar's account"));
    }
    Ok(cores
        .iter()
        .filter(|c| rule.place.matches(c.account(), c.region()))
        .collect())
}

/// Records that `c` of `rule` cannot be read (asked through `place`, if it was asked): logged,
/// counted, and the sweep's error if it is the first.
fn fail(
    asked: &mut Asked,
    many: bool,
    rule: &Rule,
    c: &ChangeCalendar,
    place: Option<&Core>,
    e: &str,
) {
    let where_ = match place {
        Some(core) if many && !c.is_arn() => format!(" ({})", core.place()),
        _ => String::new(),
    };
    let message = format!(
        "rule {}: change calendar {}{where_} cannot be read (nothing is stopped by it until it can): {e}",
        rule.name,
        c.name()
    );
    tracing::error!(rule = %rule.name, calendar = c.name(), place = place.map(Core::place), error = %e, "change calendar unreadable");
    asked.failures += 1;
    if asked.error.is_none() {
        asked.error = Some(message);
    }
}

/// Asks every calendar of `policy` at `now` and hands each answer to its rule, for the place
/// it was asked for.
pub async fn ask(policy: &Policy, cores: &[Core], now: DateTime<Utc>) -> Asked {
    let mut asked = Asked::default();
    let calendars = policy.change_calendars();
    let many = cores.len() > 1;
    let mut questions = Vec::new();
    for (i, (rule, calendar)) in calendars.iter().enumerate() {
        match engines(rule, calendar, cores) {
            Ok(found) => questions.extend(found.into_iter().map(|core| Ask {
                calendar: i,
                core: core.clone(),
                region: calendar.arn_region().map(str::to_string),
            })),
            Err(e) => {
                fail(&mut asked, many, rule, calendar, None, &e);
                calendar.set_state(CalendarState::Unreadable(e));
            }
        }
    }
    let mut set: JoinSet<(Ask, Result<CalendarAnswer, ApiError>, CallCounts)> = JoinSet::new();
    for q in questions {
        let name = calendars[q.calendar].1.name().to_string();
        set.spawn(async move {
            let mut calls = CallCounts::default();
            let got = q
                .core
                .calendar_state(&name, q.region.as_deref(), &mut calls)
                .await;
            (q, got, calls)
        });
    }
    while let Some(joined) = set.join_next().await {
        let Ok((q, got, calls)) = joined else {
            // A task that panicked: a bug; its calendar stays as last asked, and the sweep fails.
            asked.failures += 1;
            asked.error.get_or_insert_with(|| {
                "a change calendar's question failed (a bug: please report it)".to_string()
            });
            continue;
        };
        asked.calls.merge(&calls);
        let (rule, calendar) = &calendars[q.calendar];
        let state = match got {
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
                let e = e.to_string();
                fail(&mut asked, many, rule, calendar, Some(&q.core), &e);
                CalendarState::Unreadable(e)
            }
        };
        calendar.set_state_at(q.core.account(), q.core.region(), state);
    }
    asked
}
