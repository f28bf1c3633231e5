//! The events a target has not received yet, read from the audit log (the outbox) and worded
//! for people, and the body each is posted as (a JSON record, or Slack's incoming-webhook text).

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::config::{EventKind, Format, Target};
use stopd_audit::Store;
use stopd_audit::outbox::Source;

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Event name.
    pub event: &'static str,
    /// When it happened (RFC 3339 UTC).
    pub at: String,
    /// Pipeline (a glob for an exemption), if any.
    pub pipeline: Option<String>,
    /// Execution, if any.
    pub execution_id: Option<String>,
    /// Rule, if any.
    pub rule: Option<String>,
    /// Outcome (`stopped`, `failed`, `done`, `added`, ...).
    pub outcome: Option<String>,
    /// One sentence for people.
    pub message: String,
    /// `unwatched`: the window, and the time no daemon was running in which it began.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub unwatched: Option<UnwatchedFacts>,
    /// `leader_changed`: the node that leads now, and its epoch.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderFacts>,
    /// Stops and gate actions: the account (`[[account]] name`, `default` for the ambient
    /// credentials' account) and region they were made in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The region, with `account`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The audit table it comes from.
    #[serde(skip)]
    pub source: Source,
    /// Its row id there.
    #[serde(skip)]
    pub source_id: i64,
}

impl Event {
    /// The body to post in `format`.
    pub fn payload(&self, format: Format) -> serde_json::Value {
        match format {
            Format::Json => serde_json::to_value(self).unwrap_or_default(),
            Format::Slack => {
                let mut lines = vec![format!("*stopd: {}* — {}", self.event, self.message)];
                let account = self
                    .account
                    .clone()
                    .filter(|a| a != stopd_audit::Place::DEFAULT_ACCOUNT);
                let region = account.as_ref().and(self.region.clone());
                for (k, v) in [
                    ("Account", &account),
                    ("Region", &region),
                    ("Pipeline", &self.pipeline),
                    ("Execution", &self.execution_id),
                    ("Rule", &self.rule),
                    ("Outcome", &self.outcome),
                ] {
                    if let Some(v) = v {
                        lines.push(format!("*{k}:* `{}`", slack_escape(v)));
                    }
                }
                if let Some(l) = &self.leader {
                    lines.push(format!(
                        "*Node:* `{}` (epoch {})",
                        slack_escape(&l.node),
                        l.epoch
                    ));
                }
                if let Some(u) = &self.unwatched {
                    lines.push(format!("*Window:* {} to {}", u.window_start, u.window_end));
                    lines.push(format!("*Not running:* {} to {}", u.gap_from, u.gap_to));
                }
                lines.push(format!("*At:* {}", self.at));
                let text = lines.join("\n");
                json!({
                    "text": format!("stopd: {}: {}", self.event, self.message),
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                })
            }
        }
    }
}

/// What a `leader_changed` event says besides the common fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaderFacts {
    /// The node that took the lead.
    pub node: String,
    /// Its lease's epoch.
    pub epoch: i64,
}

/// What an `unwatched` event says besides the common fields (RFC 3339 UTC each).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnwatchedFacts {
    /// The window's first instant.
    pub window_start: String,
    /// Its end, exclusive.
    pub window_end: String,
    /// No daemon was running from...
    pub gap_from: String,
    /// ...to (the start that found it).
    pub gap_to: String,
}

/// Slack's three control characters, and backticks (the values sit in code spans).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "'")
}

/// A pipeline's name for a message: with its account and region when it is not in the one
/// ambient account (the same name may exist in several).
fn qualified(pipeline: &str, account: &str, region: Option<&str>) -> String {
    if account == stopd_audit::Place::DEFAULT_ACCOUNT {
        pipeline.to_string()
    } else {
        format!("{pipeline} (account {account}, {})", region.unwrap_or("?"))
    }
}

/// The events `target` has not received yet among the records dated `since` or later, oldest
/// first.
pub async fn undelivered(
    store: &Store,
    target: &Target,
    since: DateTime<Utc>,
) -> Result<Vec<Event>> {
    let wants = |k: EventKind| target.events.contains(&k);
    let name = target.name.as_str();
    let mut out = Vec::new();
    let rows = store
        .pending_stop_outcomes(
            name,
            since,
            wants(EventKind::Stopped),
            wants(EventKind::Failed),
        )
        .await?;
    for r in rows {
        let ok = r.outcome.stopped_it();
        let kind = if ok {
            EventKind::Stopped
        } else {
            EventKind::Failed
        };
        if !wants(kind) {
            continue;
        }
        let shown = qualified(&r.pipeline, &r.account, r.region.as_deref());
        let (execution, outcome, rule) = (&r.execution_id, &r.outcome, &r.rule);
        let message = if ok {
            format!(
                "stopped {shown} execution {execution} ({outcome}, rule {rule}): {}",
                r.reason
            )
        } else {
            format!(
                "could not stop {shown} execution {execution} ({outcome}, rule {rule}): {}",
                r.error.as_deref().unwrap_or("no error recorded")
            )
        };
        out.push(Event {
            event: kind.as_str(),
            at: r.at,
            pipeline: Some(r.pipeline),
            execution_id: Some(r.execution_id),
            rule: Some(r.rule),
            outcome: Some(r.outcome.to_string()),
            message,
            unwatched: None,
            leader: None,
            account: Some(r.account),
            region: r.region,
            source: Source::StopOutcomes,
            source_id: r.source_id,
        });
    }
    if wants(EventKind::Gate) {
        for r in store.pending_gate_outcomes(name, since).await? {
            let verb = if r.action == stopd_audit::GateAction::Disable {
                "closed"
            } else {
                "opened"
            };
            let shown = qualified(&r.pipeline, &r.account, r.region.as_deref());
            let mut message = format!(
                "{verb} the transition into {} of {shown} for {} ({})",
                r.stage, r.rule, r.outcome
            );
            if let Some(e) = &r.error {
                message.push_str(&format!(": {e}"));
            }
            out.push(Event {
                event: "gate",
                at: r.at,
                pipeline: Some(r.pipeline),
                execution_id: None,
                rule: Some(r.rule),
                outcome: Some(r.outcome.to_string()),
                message,
                unwatched: None,
                leader: None,
                account: Some(r.account),
                region: r.region,
                source: Source::GateOutcomes,
                source_id: r.source_id,
            });
        }
    }
    if wants(EventKind::Exemption) {
        for r in store.pending_exemptions(name, since).await? {
            let from = r
                .rule
                .as_deref()
                .map_or("every rule".to_string(), |r| format!("rule {r}"));
            out.push(Event {
                event: "exemption",
                at: r.at,
                message: format!(
                    "{} exempted {} from {from} until {}: {}",
                    r.created_by, r.pipeline_glob, r.until, r.reason
                ),
                pipeline: Some(r.pipeline_glob),
                execution_id: None,
                rule: r.rule,
                outcome: Some("added".into()),
                unwatched: None,
                leader: None,
                account: None,
                region: None,
                source: Source::Exemptions,
                source_id: r.source_id,
            });
        }
        for r in store.pending_revocations(name, since).await? {
            out.push(Event {
                event: "exemption",
                at: r.at,
                message: format!(
                    "{} revoked exemption {} of {}",
                    r.revoked_by, r.source_id, r.pipeline_glob
                ),
                pipeline: Some(r.pipeline_glob),
                execution_id: None,
                rule: r.rule,
                outcome: Some("revoked".into()),
                unwatched: None,
                leader: None,
                account: None,
                region: None,
                source: Source::ExemptionRevocations,
                source_id: r.source_id,
            });
        }
    }
    if wants(EventKind::SweepFailed) {
        for r in store.pending_sweep_failures(name, since).await? {
            out.push(Event {
                event: "sweep_failed",
                at: r.at,
                pipeline: None,
                execution_id: None,
                rule: None,
                outcome: Some("failed".into()),
                message: format!("a sweep failed: {}", r.error),
                unwatched: None,
                leader: None,
                account: None,
                region: None,
                source: Source::SweepResults,
                source_id: r.source_id,
            });
        }
    }
    if wants(EventKind::Unwatched) {
        for r in store.pending_unwatched(name, since).await? {
            let rule = r.rule;
            let u = UnwatchedFacts {
                window_start: r.window_start,
                window_end: r.window_end,
                gap_from: r.gap_from,
                gap_to: r.gap_to,
            };
            let found_at = r.at;
            // RFC 3339 UTC with milliseconds: the text orders as the time.
            let (message, outcome) = if u.window_end > found_at {
                (
                    format!(
                        "freeze {rule} began at {} while stopd was not running ({} to {}): enforced from {} until {}",
                        u.window_start, u.gap_from, u.gap_to, u.gap_to, u.window_end
                    ),
                    "in_force",
                )
            } else {
                (
                    format!(
                        "freeze {rule} ran from {} to {} while stopd was not running ({} to {}): nothing was enforced",
                        u.window_start, u.window_end, u.gap_from, u.gap_to
                    ),
                    "ended",
                )
            };
            out.push(Event {
                event: "unwatched",
                at: found_at,
                pipeline: None,
                execution_id: None,
                rule: Some(rule),
                outcome: Some(outcome.into()),
                message,
                unwatched: Some(u),
                leader: None,
                account: None,
                region: None,
                source: Source::UnwatchedWindows,
                source_id: r.source_id,
            });
        }
    }
    if wants(EventKind::LeaderChanged) {
        for r in store.pending_leader_changes(name, since).await? {
            let node = r.node.unwrap_or_else(|| "a node".into());
            let epoch = r.epoch.unwrap_or_default();
            out.push(Event {
                event: "leader_changed",
                at: r.at,
                pipeline: None,
                execution_id: None,
                rule: None,
                outcome: Some("leading".into()),
                message: format!(
                    "{node} leads now (epoch {epoch}): it sweeps, gates and notifies; the other nodes stand by"
                ),
                unwatched: None,
                leader: Some(LeaderFacts { node, epoch }),
                account: None,
                region: None,
                source: Source::LeaderChanges,
                source_id: r.source_id,
            });
        }
    }
    if wants(EventKind::EventsFailed) {
        for r in store.pending_events_failures(name, since).await? {
            let detail = r.detail.unwrap_or_else(|| "cannot be read".into());
            out.push(Event {
                event: EventKind::EventsFailed.as_str(),
                at: r.at,
                pipeline: None,
                execution_id: None,
                rule: None,
                outcome: Some("failed".into()),
                message: format!(
                    "the event queue {detail}; executions are enforced by the periodic sweeps alone until it can"
                ),
                unwatched: None,
                leader: None,
                account: None,
                region: None,
                source: Source::EventsFailures,
                source_id: r.source_id,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.at, a.source.table(), a.source_id).cmp(&(&b.at, b.source.table(), b.source_id))
    });
    Ok(out)
}
