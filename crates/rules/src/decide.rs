//! "What must stop at instant T, and why": decisions, window listings and the next transition.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::policy::{Exemption, Policy, Rule, RuleKind, Trigger};
use crate::spec::Mode;
use crate::template::Values;
use crate::window::Window;

/// What the policy needs to know about one in-progress execution.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionFacts<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Execution id.
    pub execution_id: &'a str,
    /// `startTime`.
    pub start: DateTime<Utc>,
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
    /// One human sentence: why this execution must stop now.
    pub explanation: String,
    /// The freeze window in force (freezes only).
    pub window: Option<Window>,
    /// Still Stopping after this long -> abandon.
    pub escalate_after: Option<Duration>,
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

/// One window of a rule, for `stopd windows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowInstance {
    /// The freeze.
    pub rule: String,
    /// The window.
    pub window: Window,
    /// The rule's zone.
    pub timezone: chrono_tz::Tz,
}

/// RFC 3339 in UTC with a `Z`, to the second.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A span as humans write it: `2h 13m 5s`.
pub fn human_span(d: Duration) -> String {
    let secs = d.num_seconds().max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

impl Policy {
    /// Decides, for each execution (all InProgress at `now`), whether it must stop and why.
    /// `extra` holds break-glass exemptions from the database. The answer is aligned with
    /// `executions`.
    pub fn decide(
        &self,
        now: DateTime<Utc>,
        executions: &[ExecutionFacts<'_>],
        extra: &[Exemption],
    ) -> Vec<Verdict> {
        // Window state depends only on the rule and the instant: once per rule.
        let windows: Vec<Option<Window>> = self
            .rules
            .iter()
            .map(|r| match &r.trigger {
                Trigger::Freeze { schedule, .. } => schedule.window_at(now),
                Trigger::Timeout { .. } => None,
            })
            .collect();
        let exemptions: Vec<&Exemption> = self
            .exemptions
            .iter()
            .chain(extra)
            .filter(|e| e.active_at(now))
            .collect();
        executions
            .iter()
            .map(|ex| self.decide_one(now, ex, &windows, &exemptions))
            .collect()
    }

    fn decide_one(
        &self,
        now: DateTime<Utc>,
        ex: &ExecutionFacts<'_>,
        windows: &[Option<Window>],
        exemptions: &[&Exemption],
    ) -> Verdict {
        let mut winner: Option<(&Rule, Option<Window>)> = None;
        let mut held: Option<Verdict> = None;
        for (rule, window) in self.rules.iter().zip(windows) {
            // Cheap checks first: most rules are out of force at most instants.
            let grace_until = match &rule.trigger {
                Trigger::Freeze { grace, .. } => {
                    let Some(w) = window else { continue };
                    Some(w.start + *grace).filter(|g| ex.start < w.start && now < *g)
                }
                Trigger::Timeout { max } => {
                    if now - ex.start <= *max {
                        continue;
                    }
                    None
                }
            };
            if !rule.selector.matches(ex.pipeline, ex.tags) {
                continue;
            }
            if let Some(until) = grace_until {
                held.get_or_insert(Verdict::Grace {
                    rule: rule.name.clone(),
                    until,
                });
                continue;
            }
            if ex.rollback && !rule.rollbacks {
                held.get_or_insert(Verdict::SparedRollback {
                    rule: rule.name.clone(),
                });
                continue;
            }
            // Abandon beats finish; then the first rule in file order (iteration order).
            let better = match winner {
                None => true,
                Some((w, _)) => w.mode == Mode::Finish && rule.mode == Mode::Abandon,
            };
            if better {
                winner = Some((rule, *window));
            }
        }
        let Some((rule, window)) = winner else {
            return held.unwrap_or(Verdict::Allow);
        };
        if let Some(e) = exemptions
            .iter()
            .find(|e| e.selector.matches(ex.pipeline, ex.tags))
        {
            return Verdict::Exempt {
                exemption: e.name.clone(),
                rule: rule.name.clone(),
            };
        }
        Verdict::Stop(render(rule, window, now, ex))
    }

    /// Every freeze window overlapping `[from, to)`, merged per rule, sorted by start then file
    /// order.
    pub fn windows(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<WindowInstance> {
        let mut out: Vec<(usize, WindowInstance)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Trigger::Freeze { schedule, .. } = &rule.trigger {
                for window in schedule.windows_between(from, to) {
                    out.push((
                        i,
                        WindowInstance {
                            rule: rule.name.clone(),
                            window,
                            timezone: rule.timezone,
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(i, w)| (w.window.start, *i));
        out.into_iter().map(|(_, w)| w).collect()
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
                Trigger::Timeout { max } => {
                    for ex in executions {
                        if rule.selector.matches(ex.pipeline, ex.tags) {
                            // Strictly greater than max: the first millisecond past it.
                            consider(ex.start + *max + Duration::milliseconds(1));
                        }
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

fn render(
    rule: &Rule,
    window: Option<Window>,
    now: DateTime<Utc>,
    ex: &ExecutionFacts<'_>,
) -> Decision {
    let elapsed = now - ex.start;
    let (until, max_duration, explanation) = match (&rule.trigger, window) {
        (Trigger::Freeze { .. }, Some(w)) => (
            rfc3339(w.end),
            String::new(),
            format!(
                "freeze '{}' in force since {} ({}) until {}; running {}",
                rule.name,
                rfc3339(w.start),
                w.start.with_timezone(&rule.timezone).format("%a %H:%M %Z"),
                rfc3339(w.end),
                human_span(elapsed),
            ),
        ),
        (Trigger::Timeout { max }, _) => (
            String::new(),
            human_span(*max),
            format!(
                "timeout '{}': running {}, longer than {}",
                rule.name,
                human_span(elapsed),
                human_span(*max)
            ),
        ),
        (Trigger::Freeze { .. }, None) => (
            String::new(),
            String::new(),
            format!("freeze '{}'", rule.name),
        ),
    };
    let reason = rule.reason.render(&Values {
        rule: &rule.name,
        kind: rule.kind.as_str(),
        pipeline: ex.pipeline,
        execution: ex.execution_id,
        until,
        max_duration,
        elapsed: human_span(elapsed),
    });
    Decision {
        rule: rule.name.clone(),
        kind: rule.kind,
        mode: rule.mode,
        reason,
        explanation,
        window,
        escalate_after: rule.escalate_after,
    }
}
