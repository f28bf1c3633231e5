//! "What must stop at instant T, and why": decisions, window listings and the next transition.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::policy::{Exemption, Gate, Policy, Rule, RuleKind, Trigger};
use crate::spec::Mode;
use crate::template::Values;
use crate::window::{MERGE_HORIZON, Schedule, Window};

/// What the policy needs to know about one in-progress execution.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionFacts<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Execution id.
    pub execution_id: &'a str,
    /// `startTime`; `None` when the service did not say (the field is optional in the model).
    /// Such an execution is never stopped by a timeout; a freeze treats it as already running
    /// when its window opened (so `grace` applies).
    pub start: Option<DateTime<Utc>>,
    /// Whether `executionType` is ROLLBACK.
    pub rollback: bool,
    /// The pipeline's tags (empty when no rule selects by tag).
    pub tags: &'a BTreeMap<String, String>,
}

/// A decided stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule that won.
    pub rule: String,
    /// Its kind.
    pub kind: RuleKind,
    /// Stop mode.
    pub mode: Mode,
    /// Rendered reason, at most 200 characters.
    pub reason: String,
    /// How long the execution had been running at the decision (`None`: start unknown).
    pub elapsed: Option<Duration>,
    /// The rule's part of the explanation, shared by every decision of one call.
    explain: Arc<str>,
    /// The freeze window in force (freezes only).
    pub window: Option<Window>,
    /// Still Stopping after this long -> abandon.
    pub escalate_after: Option<Duration>,
}

impl Decision {
    /// One human sentence: why this execution must stop now, e.g. "freeze 'weekend' in force
    /// since 2026-11-27T17:00:00Z (Fri 18:00 CET) until 2026-11-30T07:00:00Z; running 12 min".
    pub fn explanation(&self) -> String {
        match self.kind {
            RuleKind::Timeout => format!("{}: running {}", self.explain, self.running()),
            _ => format!("{}; running {}", self.explain, self.running()),
        }
    }

    fn running(&self) -> String {
        self.elapsed.map_or_else(
            || "for an unknown time (no startTime)".to_string(),
            human_span,
        )
    }
}

/// The policy's answer for one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule applies.
    Allow,
    /// Stop it.
    Stop(Decision),
    /// A rule applies, but an exemption wins.
    Exempt {
        /// The exemption.
        exemption: String,
        /// The rule that would have stopped it.
        rule: String,
    },
    /// A freeze applies, but the execution was running when the window opened and its grace
    /// has not passed.
    Grace {
        /// The freeze.
        rule: String,
        /// When the grace ends.
        until: DateTime<Utc>,
    },
    /// A rule applies, but the execution is a ROLLBACK and the rule does not set `rollbacks`.
    SparedRollback {
        /// The rule.
        rule: String,
    },
}

/// A gating freeze holding a pipeline's transitions now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateHold {
    /// The freeze.
    pub rule: String,
    /// Which transitions.
    pub gate: Gate,
    /// The rendered reason (as for a stop, with no execution).
    pub reason: String,
    /// When the window ends.
    pub until: DateTime<Utc>,
}

/// One window of a rule, for `stopd windows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowInstance {
    /// The freeze.
    pub rule: String,
    /// The window.
    pub window: Window,
    /// The rule's zone.
    pub timezone: chrono_tz::Tz,
    /// A recurring freeze whose windows touch without a gap for at least
    /// [`crate::window::MERGE_HORIZON`]: the window was merged only that far, so its `end` is
    /// where the merge stopped looking, not an instant the freeze lifts.
    pub without_gap: bool,
}

/// RFC 3339 in UTC with a `Z`, to the second.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A span in words, the one style of every command, table and reason: `2 d 14 h`,
/// `1 h 30 min`, `45 s` (to the second; units that are zero left out).
pub fn human_span(d: Duration) -> String {
    let mut secs = d.num_seconds().max(0);
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{} {unit}", secs / size));
            secs %= size;
        }
    }
    if parts.is_empty() {
        parts.push("0 s".into());
    }
    parts.join(" ")
}

/// Why no rule stops an execution although one came close (index of that rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// No rule came close.
    Nothing,
    /// A freeze applies, but its grace has not passed.
    Grace(usize),
    /// A rule applies, but spares rollbacks.
    Rollback(usize),
}

/// What a [`Decider`] knows about a rule, computed once for all executions.
#[derive(Debug)]
struct RuleNow {
    /// The freeze window in force (freezes only).
    window: Option<Window>,
    /// Milliseconds: window start (freezes in force), or the longest allowed run (timeouts).
    start_or_max_ms: i64,
    /// Milliseconds: when the grace of the window in force ends.
    grace_end_ms: i64,
    /// `{until}`: the window end, RFC 3339.
    until: String,
    /// `{max_duration}`: the timeout, human.
    max: String,
    /// The rule's part of the explanation sentence.
    explain: Arc<str>,
}

/// The rules' state at one instant (which freezes are in force, their windows and texts),
/// reusable for any later instant up to the next window edge of any rule. The daemon decides
/// each pipeline's executions as discovery streams them in: one decider per sweep instead of
/// recomputing 50 rules' windows for each of 10,000 pipelines (510 ms against 6 ms; see
/// BENCHMARKS.md).
#[derive(Debug)]
pub struct Decider<'p> {
    policy: &'p Policy,
    rules_now: Vec<RuleNow>,
    nothing_in_force: bool,
    /// The instant it was made for.
    from: DateTime<Utc>,
    /// The first window edge after `from` (None: no rule's window changes again).
    valid_until: Option<DateTime<Utc>>,
}

impl Decider<'_> {
    /// Whether decisions at `now` can use this state: no window opened or closed since it was
    /// made.
    pub fn covers(&self, now: DateTime<Utc>) -> bool {
        self.from <= now && self.valid_until.is_none_or(|u| now < u)
    }

    /// [`Policy::decide`] at `now`. Exact for any `now` (an instant this state does not cover is
    /// decided from fresh state); cheap for the instants it [covers](Decider::covers).
    pub fn decide(
        &self,
        now: DateTime<Utc>,
        executions: &[ExecutionFacts<'_>],
        extra: &[Exemption],
    ) -> Vec<Verdict> {
        if !self.covers(now) {
            return self.policy.decide(now, executions, extra);
        }
        self.policy.decide_in(
            &self.rules_now,
            self.nothing_in_force,
            now,
            executions,
            extra,
        )
    }
}

impl Policy {
    /// Decides, for each execution (all InProgress at `now`), whether it must stop and why.
    /// `extra` holds break-glass exemptions from the database. The answer is aligned with
    /// `executions`. To decide many batches over a short span, make one [`Policy::decider`].
    pub fn decide(
        &self,
        now: DateTime<Utc>,
        executions: &[ExecutionFacts<'_>],
        extra: &[Exemption],
    ) -> Vec<Verdict> {
        let (rules_now, nothing_in_force) = self.state_at(now);
        self.decide_in(&rules_now, nothing_in_force, now, executions, extra)
    }

    /// Window state depends only on the rule and the instant: once per rule, for every
    /// execution. Also whether nothing can stop anything.
    fn state_at(&self, now: DateTime<Utc>) -> (Vec<RuleNow>, bool) {
        let rules_now: Vec<RuleNow> = self.rules.iter().map(|r| rule_now(r, now)).collect();
        let nothing_in_force =
            !rules_now.iter().any(|r| r.window.is_some()) && !self.has_timeouts();
        (rules_now, nothing_in_force)
    }

    /// The verdicts at `now`, from the rules' state at `now`.
    fn decide_in(
        &self,
        rules_now: &[RuleNow],
        nothing_in_force: bool,
        now: DateTime<Utc>,
        executions: &[ExecutionFacts<'_>],
        extra: &[Exemption],
    ) -> Vec<Verdict> {
        let exemptions: Vec<&Exemption> = self
            .exemptions
            .iter()
            .chain(extra)
            .filter(|e| e.active_at(now))
            .collect();
        executions
            .iter()
            .map(|ex| {
                if nothing_in_force {
                    return Verdict::Allow;
                }
                let winner = match self.winner(now, ex, rules_now, &|_| false) {
                    Ok(w) => w,
                    Err(Held::Nothing) => return Verdict::Allow,
                    Err(Held::Grace(i)) => {
                        let grace_end_ms = match self.rules[i].is_allow() {
                            true => self
                                .render(i, rules_now, now, ex)
                                .window
                                .map_or(rules_now[i].grace_end_ms, |w| {
                                    outside_state(&self.rules[i], w).grace_end_ms
                                }),
                            false => rules_now[i].grace_end_ms,
                        };
                        return Verdict::Grace {
                            rule: self.rules[i].name.clone(),
                            until: DateTime::from_timestamp_millis(grace_end_ms).unwrap_or(now),
                        };
                    }
                    Err(Held::Rollback(i)) => {
                        return Verdict::SparedRollback {
                            rule: self.rules[i].name.clone(),
                        };
                    }
                };
                let rule = &self.rules[winner];
                let mut matching = exemptions
                    .iter()
                    .filter(|e| e.selector.matches(ex.pipeline, ex.tags))
                    .peekable();
                if matching.peek().is_none() {
                    return Verdict::Stop(self.render(winner, rules_now, now, ex));
                }
                let matching: Vec<&Exemption> = matching.copied().collect();
                let covers =
                    |e: &Exemption, name: &str| e.rule.as_deref().is_none_or(|r| r == name);
                if let Some(e) = matching
                    .iter()
                    .find(|e| e.rule.is_none())
                    .or_else(|| matching.iter().find(|e| covers(e, &rule.name)))
                {
                    // Exempt from the winner: the next rule that no exemption covers may still
                    // stop it.
                    let skip = |i: usize| matching.iter().any(|e| covers(e, &self.rules[i].name));
                    if let Ok(w) = self.winner(now, ex, rules_now, &skip) {
                        return Verdict::Stop(self.render(w, rules_now, now, ex));
                    }
                    return Verdict::Exempt {
                        exemption: e.name.clone(),
                        rule: rule.name.clone(),
                    };
                }
                Verdict::Stop(self.render(winner, rules_now, now, ex))
            })
            .collect()
    }

    /// Whether any freeze gates (`gate = true`).
    pub fn has_gates(&self) -> bool {
        self.rules.iter().any(|r| r.gate.is_some())
    }

    /// The gating freezes in force over this pipeline at `now` that no exemption (of the file,
    /// or `extra` from the database) covers, in file order. Gates close at a window's start,
    /// whatever its grace (grace is for running work, not for new work).
    pub fn gates(
        &self,
        now: DateTime<Utc>,
        pipeline: &str,
        tags: &BTreeMap<String, String>,
        extra: &[Exemption],
    ) -> Vec<GateHold> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let (Some(gate), Trigger::Freeze { schedule, .. }) = (&rule.gate, &rule.trigger) else {
                continue;
            };
            let Some(mut window) = schedule.window_at(now) else {
                continue;
            };
            if !rule.selector.matches(pipeline, tags) {
                continue;
            }
            if rule.is_allow() {
                let window_of = |j: usize| match &self.rules[j].trigger {
                    Trigger::Freeze { schedule, .. } => schedule.window_at(now),
                    Trigger::Timeout { .. } => None,
                };
                match self.allow_window(i, pipeline, tags, &window_of) {
                    Some(w) => window = w,
                    None => continue,
                }
            }
            let exempt = self.exemptions.iter().chain(extra).any(|e| {
                e.active_at(now)
                    && e.rule.as_deref().is_none_or(|r| r == rule.name)
                    && e.selector.matches(pipeline, tags)
            });
            if exempt {
                continue;
            }
            let until = rfc3339(window.end);
            let reason = rule.reason.render(&Values {
                rule: &rule.name,
                kind: rule.kind.as_str(),
                pipeline,
                execution: "",
                until: &until,
                max_duration: "",
                elapsed: "",
            });
            out.push(GateHold {
                rule: rule.name.clone(),
                gate: gate.clone(),
                reason,
                until: window.end,
            });
        }
        out
    }

    /// The rules' state at `now`, for [`Decider::decide`] at `now` and after.
    pub fn decider(&self, now: DateTime<Utc>) -> Decider<'_> {
        let (rules_now, nothing_in_force) = self.state_at(now);
        let mut valid_until: Option<DateTime<Utc>> = None;
        for (rule, state) in self.rules.iter().zip(&rules_now) {
            let Trigger::Freeze { schedule, .. } = &rule.trigger else {
                continue;
            };
            // In force: until its window ends. Out of force: until the next one starts.
            let edge = match state.window {
                Some(w) => Some(w.end),
                None => schedule.next_start_after(now).map(|w| w.start),
            };
            if let Some(e) = edge {
                valid_until = Some(valid_until.map_or(e, |u| u.min(e)));
            }
        }
        Decider {
            policy: self,
            rules_now,
            nothing_in_force,
            from: now,
            valid_until,
        }
    }

    fn has_timeouts(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.trigger, Trigger::Timeout { .. }))
    }

    /// The index of the rule that stops this execution, if any; otherwise why none does
    /// (grace, spared rollback), if a rule came close. Rules for which `skip` is true (an
    /// exemption covers them) are not considered.
    fn winner(
        &self,
        now: DateTime<Utc>,
        ex: &ExecutionFacts<'_>,
        rules_now: &[RuleNow],
        skip: &dyn Fn(usize) -> bool,
    ) -> Result<usize, Held> {
        let mut winner: Option<usize> = None;
        let mut held = Held::Nothing;
        let now_ms = now.timestamp_millis();
        let start_ms = ex.start.map(|s| s.timestamp_millis());
        for (i, rule) in self.rules.iter().enumerate() {
            if skip(i) {
                continue;
            }
            // Cheap checks first, in integer milliseconds: rules out of force cost nothing more.
            let state = &rules_now[i];
            let in_grace = match &rule.trigger {
                Trigger::Freeze { .. } => {
                    if state.window.is_none() {
                        continue;
                    }
                    // Unknown start: treated as running before the window opened.
                    start_ms.is_none_or(|s| s < state.start_or_max_ms)
                        && now_ms < state.grace_end_ms
                }
                Trigger::Timeout { .. } => {
                    // Never stop on a guess: without a start there is no elapsed time.
                    match start_ms {
                        Some(s) if now_ms - s > state.start_or_max_ms => false,
                        _ => continue,
                    }
                }
            };
            if winner
                .is_some_and(|w| self.rules[w].mode == Mode::Abandon || rule.mode == Mode::Finish)
            {
                // Cannot beat the current winner: abandon beats finish, then file order.
                continue;
            }
            if !rule.selector.matches(ex.pipeline, ex.tags) {
                continue;
            }
            // An allow rule freezes a pipeline only while every allow rule selecting it is
            // closed, since the last of them closed.
            let in_grace = match &rule.trigger {
                Trigger::Freeze { grace, .. } if rule.is_allow() => {
                    let window_of = |j: usize| rules_now[j].window;
                    let Some(w) = self.allow_window(i, ex.pipeline, ex.tags, &window_of) else {
                        continue;
                    };
                    let opened = w.start.timestamp_millis();
                    start_ms.is_none_or(|s| s < opened) && now < w.start + *grace
                }
                _ => in_grace,
            };
            if in_grace {
                if held == Held::Nothing {
                    held = Held::Grace(i);
                }
                continue;
            }
            if ex.rollback && !rule.rollbacks {
                if held == Held::Nothing {
                    held = Held::Rollback(i);
                }
                continue;
            }
            winner = Some(i);
        }
        winner.ok_or(held)
    }

    /// Every freeze window overlapping `[from, to)`, merged per rule, sorted by start then file
    /// order. Its cost grows with the number of windows: over a long span, bound it with
    /// [`Policy::windows_first`] or [`Policy::windows_per_rule`].
    pub fn windows(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<WindowInstance> {
        self.windows_first(from, to, usize::MAX)
    }

    /// The first `limit` windows of [`Policy::windows`], computing only those (a merge of each
    /// rule's windows in order): `stopd windows` over a century of hourly freezes costs what it
    /// prints.
    pub fn windows_first(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<WindowInstance> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut lists: Vec<_> = self
            .freezes()
            .map(|(i, rule, schedule)| {
                let list = schedule
                    .windows_from(from)
                    .take_while(move |w| w.start < to)
                    .filter(move |w| from < w.end);
                (i, rule, schedule, list)
            })
            .collect();
        let mut heap = BinaryHeap::new();
        for (k, (i, _, _, list)) in lists.iter_mut().enumerate() {
            if let Some(w) = list.next() {
                heap.push(Reverse((w.start, *i, k, w.end)));
            }
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(Reverse((start, _, k, end))) = heap.pop() else {
                break;
            };
            let (i, rule, schedule, list) = &mut lists[k];
            out.push(instance(rule, schedule, Window { start, end }));
            if let Some(w) = list.next() {
                heap.push(Reverse((w.start, *i, k, w.end)));
            }
        }
        out
    }

    /// At most `per_rule` windows of each freeze overlapping `[from, to)`, sorted as
    /// [`Policy::windows`]: enough for the next few window edges of every rule, at a cost
    /// bounded by the number of rules.
    pub fn windows_per_rule(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        per_rule: usize,
    ) -> Vec<WindowInstance> {
        let mut out: Vec<(usize, WindowInstance)> = Vec::new();
        for (i, rule, schedule) in self.freezes() {
            for window in schedule
                .windows_from(from)
                .take_while(|w| w.start < to)
                .filter(|w| from < w.end)
                .take(per_rule)
            {
                out.push((i, instance(rule, schedule, window)));
            }
        }
        out.sort_by_key(|(i, w)| (w.window.start, *i));
        out.into_iter().map(|(_, w)| w).collect()
    }

    /// The freezes with their file-order index.
    fn freezes(&self) -> impl Iterator<Item = (usize, &Rule, &Schedule)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| match &rule.trigger {
                Trigger::Freeze { schedule, .. } => Some((i, rule, schedule)),
                Trigger::Timeout { .. } => None,
            })
    }

    /// The first instant after `after` at which a decision can change: a window opens or
    /// closes, a grace ends, or one of these executions passes a timeout. The scheduler sleeps
    /// until then (or its cron tick, whichever is first).
    pub fn next_transition(
        &self,
        after: DateTime<Utc>,
        executions: &[ExecutionFacts<'_>],
    ) -> Option<DateTime<Utc>> {
        let mut best: Option<DateTime<Utc>> = None;
        let mut consider = |t: DateTime<Utc>| {
            if t > after && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        for rule in &self.rules {
            match &rule.trigger {
                Trigger::Freeze { schedule, grace } => {
                    if let Some(w) = schedule.window_at(after) {
                        consider(w.end);
                        consider(w.start + *grace);
                    }
                    if let Some(w) = schedule.next_start_after(after) {
                        consider(w.start);
                        if !grace.is_zero() {
                            consider(w.start + *grace);
                        }
                    }
                }
                Trigger::Timeout { .. } => {}
            }
        }
        for rule in &self.rules {
            if let Trigger::Timeout { max } = &rule.trigger {
                for ex in executions {
                    // Strictly greater than max: the first millisecond past it. Only a deadline
                    // earlier than the best so far is worth a glob match.
                    let Some(due) = ex
                        .start
                        .and_then(|s| s.checked_add_signed(*max + Duration::milliseconds(1)))
                    else {
                        continue;
                    };
                    if due > after
                        && best.is_none_or(|b| due < b)
                        && rule.selector.matches(ex.pipeline, ex.tags)
                    {
                        best = Some(due);
                    }
                }
            }
        }
        best
    }

    /// When a stop-and-wait decided by `rule` at `stopped_at` is due for escalation to abandon.
    pub fn escalation_due_at(
        &self,
        rule: &str,
        stopped_at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let r = self.rule(rule)?;
        Some(stopped_at + r.escalate_after?)
    }
}

fn instance(rule: &Rule, schedule: &Schedule, window: Window) -> WindowInstance {
    WindowInstance {
        rule: rule.name.clone(),
        window,
        timezone: rule.timezone,
        without_gap: !matches!(schedule, Schedule::OneOff(_))
            && window.end - window.start >= MERGE_HORIZON,
    }
}

fn rule_now(rule: &Rule, now: DateTime<Utc>) -> RuleNow {
    match &rule.trigger {
        Trigger::Freeze { schedule, .. } => {
            let window = schedule.window_at(now);
            let (until, explain) = match window {
                Some(w) => (rfc3339(w.end), explain_window(rule, w).into()),
                None => (String::new(), Arc::from("")),
            };
            let (start_or_max_ms, grace_end_ms) = match (window, &rule.trigger) {
                (Some(w), Trigger::Freeze { grace, .. }) => (
                    w.start.timestamp_millis(),
                    (w.start + *grace).timestamp_millis(),
                ),
                _ => (0, 0),
            };
            RuleNow {
                window,
                start_or_max_ms,
                grace_end_ms,
                until,
                max: String::new(),
                explain,
            }
        }
        Trigger::Timeout { max } => RuleNow {
            window: None,
            start_or_max_ms: max.num_milliseconds(),
            grace_end_ms: 0,
            until: String::new(),
            max: human_span(*max),
            explain: format!("timeout '{}' of {}", rule.name, human_span(*max)).into(),
        },
    }
}

impl Policy {
    /// The decision of rule `i` for this execution. An allow rule's window is the pipeline's
    /// (where the gaps of every allow rule selecting it overlap), not only the rule's own.
    fn render(
        &self,
        i: usize,
        rules_now: &[RuleNow],
        now: DateTime<Utc>,
        ex: &ExecutionFacts<'_>,
    ) -> Decision {
        let (rule, state) = (&self.rules[i], &rules_now[i]);
        if rule.is_allow() {
            let window_of = |j: usize| rules_now[j].window;
            let own = self.allow_window(i, ex.pipeline, ex.tags, &window_of);
            if let Some(w) = own.filter(|w| Some(*w) != state.window) {
                let narrower = outside_state(rule, w);
                return render(rule, &narrower, now, ex);
            }
        }
        render(rule, state, now, ex)
    }
}

/// The state of an allow rule whose freeze over a pipeline is `w`.
fn outside_state(rule: &Rule, w: Window) -> RuleNow {
    let grace = match &rule.trigger {
        Trigger::Freeze { grace, .. } => *grace,
        Trigger::Timeout { .. } => Duration::zero(),
    };
    RuleNow {
        window: Some(w),
        start_or_max_ms: w.start.timestamp_millis(),
        grace_end_ms: (w.start + grace).timestamp_millis(),
        until: rfc3339(w.end),
        max: String::new(),
        explain: explain_window(rule, w).into(),
    }
}

/// "freeze 'weekend' in force since ... until ...", or for an allow rule "outside allow
/// 'office-hours' since ... until ...".
fn explain_window(rule: &Rule, w: Window) -> String {
    let what = if rule.is_allow() {
        "outside allow"
    } else {
        "freeze"
    };
    let verb = if rule.is_allow() { "" } else { " in force" };
    format!(
        "{what} '{}'{verb} since {} ({}) until {}",
        rule.name,
        rfc3339(w.start),
        w.start.with_timezone(&rule.timezone).format("%a %H:%M %Z"),
        rfc3339(w.end),
    )
}

fn render(rule: &Rule, state: &RuleNow, now: DateTime<Utc>, ex: &ExecutionFacts<'_>) -> Decision {
    let elapsed = ex.start.map(|s| now - s);
    let elapsed_text = if rule.reason.uses("elapsed") {
        elapsed.map_or_else(|| "an unknown time".to_string(), human_span)
    } else {
        String::new()
    };
    let reason = rule.reason.render(&Values {
        rule: &rule.name,
        kind: rule.kind.as_str(),
        pipeline: ex.pipeline,
        execution: ex.execution_id,
        until: &state.until,
        max_duration: &state.max,
        elapsed: &elapsed_text,
    });
    Decision {
        rule: rule.name.clone(),
        kind: rule.kind,
        mode: rule.mode,
        reason,
        elapsed,
        explain: Arc::clone(&state.explain),
        window: state.window,
        escalate_after: rule.escalate_after,
    }
}
