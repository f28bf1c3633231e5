//! The keys of a rule's window source: which may go together, and the schedules of the
//! sources that are not written inline (an `ics` file, a Change Calendar).

use std::sync::Arc;

use chrono_tz::Tz;

use super::{Ctx, Policy, PolicyErrorKind, Rule, Trigger};
use crate::spec::FreezeSpec;
use crate::window::Schedule;
use crate::window::change_calendar::{ChangeCalendar, invalid_name};
use crate::window::ics::Calendar;

/// Whether the rule's window-source keys go together (errors recorded otherwise).
pub(super) fn exclusive(f: &FreezeSpec, ctx: &mut Ctx<'_>) -> bool {
    if let Some(name) = &f.change_calendar {
        if let Some(why) = invalid_name(name) {
            ctx.err(
                Some("change_calendar"),
                PolicyErrorKind::ChangeCalendarName(why),
            );
            return false;
        }
        let clash = [
            ("cron", f.cron.is_some()),
            ("duration", f.duration.is_some()),
            ("end_cron", f.end_cron.is_some()),
            ("start", f.start.is_some()),
            ("end", f.end.is_some()),
            ("ics", f.ics.is_some()),
        ];
        if let Some((key, _)) = clash.iter().find(|(_, set)| *set) {
            ctx.err(Some(key), PolicyErrorKind::ChangeCalendarExclusive(key));
            return false;
        }
    }
    if f.ics.is_some() {
        let clash = [
            ("cron", f.cron.is_some()),
            ("duration", f.duration.is_some()),
            ("end_cron", f.end_cron.is_some()),
            ("start", f.start.is_some()),
            ("end", f.end.is_some()),
        ];
        if let Some((key, _)) = clash.iter().find(|(_, set)| *set) {
            ctx.err(Some(key), PolicyErrorKind::IcsExclusive(key));
            return false;
        }
    }
    true
}

/// The schedule of a `change_calendar` freeze: no window until the daemon hands in a state.
pub(super) fn change_calendar(f: &FreezeSpec) -> Schedule {
    let name = f.change_calendar.as_deref().unwrap_or_default();
    Schedule::ChangeCalendar(Arc::new(ChangeCalendar::new(name)))
}

/// The schedule of an `ics` freeze, from the text the loader read.
pub(super) fn ics_schedule(f: &FreezeSpec, ctx: &mut Ctx<'_>, tz: Tz) -> Option<Schedule> {
    let path = f.ics.clone().unwrap_or_default();
    let text = match &f.ics_text {
        Some(Ok(text)) => text,
        Some(Err(error)) => {
            let error = error.clone();
            ctx.err(Some("ics"), PolicyErrorKind::IcsUnreadable { path, error });
            return None;
        }
        None => {
            let error = "the file was not read".to_string();
            ctx.err(Some("ics"), PolicyErrorKind::IcsUnreadable { path, error });
            return None;
        }
    };
    match Calendar::parse(&path, text, tz) {
        Ok(c) => Some(Schedule::Calendar(Arc::new(c))),
        Err(e) => {
            let kind = PolicyErrorKind::Ics {
                path,
                line: e.line,
                message: e.message,
            };
            ctx.err(Some("ics"), kind);
            None
        }
    }
}

impl Policy {
    /// The Change Calendars of the policy's rules, with the rule naming each, in file order:
    /// the daemon asks each at every sweep and hands the answer in.
    pub fn change_calendars(&self) -> Vec<(&Rule, Arc<ChangeCalendar>)> {
        self.rules
            .iter()
            .filter_map(|r| match &r.trigger {
                Trigger::Freeze {
                    schedule: Schedule::ChangeCalendar(c),
                    ..
                } => Some((r, Arc::clone(c))),
                _ => None,
            })
            .collect()
    }
}

impl Rule {
    /// The rule as `account` in `region` decides by it: a Change Calendar seen from that place
    /// (its own state for a name, the ARN's one state), everything else as it is.
    pub(super) fn at_place(&self, account: &str, region: &str) -> Rule {
        let mut rule = self.clone();
        if let Trigger::Freeze {
            schedule: Schedule::ChangeCalendar(c),
            ..
        } = &mut rule.trigger
        {
            *c = Arc::new(c.at_place(account, region));
        }
        rule
    }
}
