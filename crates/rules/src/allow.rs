//! Allow windows (`[[allow]]`, Argo CD's semantics): a pipeline that any allow rule selects is
//! frozen whenever none of the windows of the allow rules that select it is open.
//!
//! An allow rule compiles to a freeze whose schedule is [`Schedule::Outside`] its windows: the
//! gaps between them, listed, edged and enforced like any freeze's windows, and named after the
//! allow rule. One rule's gaps are not yet the pipeline's freeze: a pipeline that several allow
//! rules select is frozen only where all their gaps overlap ([`Policy::allow_window`]), so an
//! allow-derived freeze applies to a pipeline only while every allow rule selecting it is
//! closed, and lasts until the first of them opens (`{until}`).
//!
//! Freezes beat allows: an allow rule only ever adds freezes. Among rules that apply at once, the
//! usual ties hold (abandon over finish, then file order, where an allow rule sits at its place
//! in the file among freezes and timeouts). Stops it decides are of kind `freeze` (the audit
//! log's kinds are freeze, timeout and manual) under the allow rule's name.
//!
//! Window sources: whatever [`Schedule`] a `[[freeze]]` can have (cron with duration or
//! `end_cron`, start/end) an allow rule can have, compiled by the same code. A new source (an
//! ICS file) becomes available to both once `compile_freeze` builds it; its gaps need only its
//! `window_at` and `windows_from`, and an arm in `last_end_at_or_before` here (the match there
//! is exhaustive, so the compiler asks for it).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::Policy;
use crate::policy::{Ctx, PolicyErrorKind, Rule, Trigger, compile_freeze};
use crate::spec::{AllowSpec, Mode};
use crate::window::{MERGE_HORIZON, Schedule, Window};

/// The reason template of an allow rule when neither the rule nor `[defaults]` sets one.
pub const DEFAULT_ALLOW_REASON: &str = "outside {rule} until {until}";

/// How far beyond `from` the gaps of a schedule whose windows never leave one are looked for.
const OUTSIDE_LOOKAHEAD: chrono::Duration = chrono::Duration::days(200 * 366);

/// Compiles one `[[allow]]`: as a `[[freeze]]` (same keys, same checks), frozen outside its
/// windows. Shape errors speak of an allow rule.
pub(crate) fn compile_allow(
    a: &AllowSpec,
    ctx: &mut Ctx<'_>,
    default_tz: Tz,
    default_mode: Mode,
    default_reason: &str,
) -> Option<Rule> {
    let before = ctx.errors.len();
    let rule = compile_freeze(a, ctx, default_tz, default_mode, default_reason);
    for e in &mut ctx.errors[before..] {
        if let PolicyErrorKind::FreezeShape(why) = e.kind {
            e.kind = PolicyErrorKind::AllowShape(why);
        }
    }
    let mut rule = rule?;
    if let Trigger::Freeze { schedule, .. } = &mut rule.trigger {
        *schedule = Schedule::Outside(Arc::new(schedule.clone()));
    }
    Some(rule)
}

impl Rule {
    /// Whether this is an `[[allow]]` rule (a freeze outside its windows).
    pub fn is_allow(&self) -> bool {
        matches!(
            self.trigger,
            Trigger::Freeze {
                schedule: Schedule::Outside(_),
                ..
            }
        )
    }
}

impl Policy {
    /// Whether any rule is an allow rule.
    pub fn has_allow_rules(&self) -> bool {
        self.rules.iter().any(Rule::is_allow)
    }

    /// For the allow rule `i`, whose own gap at the instant in question is `window_of(i)`: the
    /// freeze it imposes on this pipeline, i.e. the overlap of the gaps of every allow rule
    /// that selects the pipeline; `None` when one of them has a window open (or rule `i` has).
    /// `window_of(j)` is rule `j`'s freeze window at that instant. Rule `i` is taken to select
    /// the pipeline; the caller checks.
    pub(crate) fn allow_window(
        &self,
        i: usize,
        pipeline: &str,
        tags: &BTreeMap<String, String>,
        window_of: &dyn Fn(usize) -> Option<Window>,
    ) -> Option<Window> {
        let mut w = window_of(i)?;
        for (j, r) in self.rules.iter().enumerate() {
            if j == i || !r.is_allow() || !r.selector.matches(pipeline, tags) {
                continue;
            }
            let other = window_of(j)?;
            w = Window {
                start: w.start.max(other.start),
                end: w.end.min(other.end),
            };
        }
        Some(w)
    }
}

/// The end of the last window of `inner` that ends at or before `t` (`t` in no window).
fn last_end_at_or_before(inner: &Schedule, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match inner {
        Schedule::OneOff(w) => (w.end <= t).then_some(w.end),
        Schedule::Recurring { cron, tz, .. } => {
            // Ends never decrease with the start: the latest start's window ends last.
            let s = cron.prev_at_or_before(t, *tz)?;
            inner.window_at(s).map(|w| w.end).filter(|e| *e <= t)
        }
        Schedule::Outside(_) => None,
    }
}

/// The gap of `inner` around `t`, if `t` is in one. A gap with no window before it is reported
/// from [`MERGE_HORIZON`] before `t`, one with no window after it to [`MERGE_HORIZON`] after.
pub(crate) fn outside_window_at(inner: &Schedule, t: DateTime<Utc>) -> Option<Window> {
    if inner.window_at(t).is_some() {
        return None;
    }
    let start = last_end_at_or_before(inner, t).unwrap_or(t - MERGE_HORIZON);
    let end = inner
        .windows_from(t)
        .next()
        .map_or(t + MERGE_HORIZON, |w| w.start);
    Some(Window { start, end })
}

/// The gaps of `inner` that end after `from`, in order, lazily.
pub(crate) fn outside_windows_from(
    inner: &Schedule,
    from: DateTime<Utc>,
) -> impl Iterator<Item = Window> + '_ {
    let mut windows = inner.windows_from(from);
    // Where the next gap starts, once known.
    let mut gap_start = if inner.window_at(from).is_none() {
        Some(last_end_at_or_before(inner, from).unwrap_or(from - MERGE_HORIZON))
    } else {
        None
    };
    let mut done = false;
    let give_up = from + OUTSIDE_LOOKAHEAD;
    std::iter::from_fn(move || {
        while !done {
            let Some(w) = windows.next() else {
                done = true;
                // After the last window: a gap without end.
                let p = gap_start.filter(|p| inner.window_at(*p).is_none())?;
                return Some(Window {
                    start: p,
                    end: p.max(from) + MERGE_HORIZON,
                });
            };
            if w.start > give_up {
                done = true;
                return None;
            }
            // A window cut where its merge stopped looking touches the next: no gap between.
            let prev = gap_start.replace(w.end);
            if let Some(p) = prev.filter(|p| *p < w.start && inner.window_at(*p).is_none()) {
                return Some(Window {
                    start: p,
                    end: w.start,
                });
            }
        }
        None
    })
}

/// The first gap of `inner` that starts strictly after `t`.
pub(crate) fn outside_next_start_after(inner: &Schedule, t: DateTime<Utc>) -> Option<Window> {
    outside_windows_from(inner, t).find(|w| w.start > t)
}
