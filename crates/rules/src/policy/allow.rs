//! Allow windows (`[[allow]]`, Argo CD's semantics): a pipeline that any allow rule selects is
//! frozen whenever none of the windows of the allow rules that select it is open.
//!
//! An allow rule compiles to a freeze whose schedule is [`Schedule::Outside`] its windows: the
//! gaps between them, listed, edged and enforced like any freeze's windows, and named after the
//! allow rule. One rule's gaps are not yet the pipeline's freeze: a pipeline that several allow
//! rules select is frozen only where all their gaps overlap (`Policy::allow_window`), so an
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
//! `window_at` and `windows_from`, and an arm in `last_end_at_or_before` of `window/outside.rs`
//! (the match there is exhaustive, so the compiler asks for it).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono_tz::Tz;

use super::{Ctx, Policy, PolicyErrorKind, Rule, Trigger, compile_freeze};
use crate::spec::{AllowSpec, Mode};
use crate::window::{Schedule, Window};

/// The reason template of an allow rule when neither the rule nor `[defaults]` sets one.
pub const DEFAULT_ALLOW_REASON: &str = "outside {rule} until {until}";

/// Compiles one `[[allow]]`: as a `[[freeze]]` (same keys, same checks), frozen outside its
/// windows. Shape errors speak of an allow rule.
pub(crate) fn compile_allow(
    a: &AllowSpec,
    ctx: &mut Ctx<'_>,
    default_tz: Tz,
    default_mode: Mode,
    default_reason: &str,
) -> Option<Rule> {
    if a.change_calendar.is_some() {
        ctx.err(
            Some("change_calendar"),
            PolicyErrorKind::ChangeCalendarInAllow,
        );
        return None;
    }
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
