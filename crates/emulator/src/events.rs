//! EventBridge's "CodePipeline Pipeline Execution State Change" events, as the emulator
//! publishes them to a queue: what changed in a world since it was last looked at
//! ([`observe`]), each change as EventBridge's envelope ([`envelope`]), and the feed's settings
//! and faults ([`EventFeed`]: loss, delay, jitter, duplication, reordering).
//!
//! Executions are resolved lazily (see `state`), so changes are found by comparing each
//! execution's status with the one last published for it. Each event carries the instant the
//! change happened (`time`), whenever it is found; the protocol layer looks (and publishes)
//! whenever the queue is read, so an event is never later than the read that could see it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::Millis;
use crate::state::{Behaviour, ExecStatus, Execution, Pipeline};

/// The `detail-type` of CodePipeline's execution events.
pub const DETAIL_TYPE: &str = "CodePipeline Pipeline Execution State Change";

/// The `source` of CodePipeline's events.
pub const SOURCE: &str = "aws.codepipeline";

/// Where execution state changes go, and what goes wrong on the way (`POST /_emulator/events`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFeed {
    /// The queue (of the root account) that receives every world's events.
    pub queue: String,
    /// Chance that an event is never delivered (EventBridge is best-effort).
    #[serde(default)]
    pub loss: f64,
    /// Chance that an event is delivered twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Emulated time between a change and its event becoming receivable.
    #[serde(default, with = "humantime_serde")]
    pub delay: Duration,
    /// Up to this much more delay, uniformly at random (events then arrive out of order).
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
    /// Receives hand out visible messages in random order rather than oldest first.
    #[serde(default)]
    pub reorder: bool,
    /// What the feed did so far.
    #[serde(default)]
    pub stats: FeedStats,
}

/// Counters of the feed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FeedStats {
    /// State changes found.
    pub changes: u64,
    /// Messages put on the queue (duplicates included).
    pub delivered: u64,
    /// Changes lost on purpose.
    pub lost: u64,
    /// Changes delivered twice.
    pub duplicated: u64,
}

/// One world's memory of what it published: the status last published for each execution
/// announced (an ended one stays, or it would be news again), and the instant from which new
/// executions are announced.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Executions created before this were there when the feed began (history, not news).
    pub since: Millis,
    /// The last status published per execution.
    pub status: HashMap<Uuid, ExecStatus>,
}

impl Published {
    /// The world's executions as they stand: nothing of them is news, only what changes next.
    pub fn snapshot(
        pipelines: &mut BTreeMap<String, Pipeline>,
        now: Millis,
        behaviour: Behaviour,
    ) -> Published {
        let mut status = HashMap::new();
        for p in pipelines.values_mut() {
            p.resolve(now, behaviour);
            for e in p.executions.iter().filter(|e| !e.status.is_final()) {
                status.insert(e.id, e.status);
            }
        }
        Published { since: now, status }
    }
}

/// One state change found: the event's `detail.state`, when it happened, and its execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline version.
    pub version: i32,
    /// Execution id.
    pub execution_id: Uuid,
    /// `STARTED`, `STOPPING`, `STOPPED`, `SUCCEEDED`, `FAILED`, `SUPERSEDED`, `CANCELED`.
    pub state: &'static str,
    /// When it happened (epoch ms).
    pub at: Millis,
    /// The execution's start.
    pub start: Millis,
    /// `trigger-type`.
    pub trigger: &'static str,
}

/// The states an execution went through from `before` (none: not yet announced) to now, each
/// with its instant.
fn transitions(before: Option<ExecStatus>, e: &Execution) -> Vec<(&'static str, Millis)> {
    let mut out = Vec::new();
    if before.is_none() {
        out.push(("STARTED", e.created));
    }
    let stopped = matches!(e.status, ExecStatus::Stopping | ExecStatus::Stopped);
    if stopped
        && before != Some(ExecStatus::Stopping)
        && let Some(stop) = &e.stop
    {
        out.push(("STOPPING", stop.at));
    }
    let ended = e.ended.unwrap_or(e.last_update);
    match e.status {
        ExecStatus::InProgress | ExecStatus::Stopping => {}
        ExecStatus::Stopped => out.push(("STOPPED", ended)),
        ExecStatus::Succeeded => out.push(("SUCCEEDED", ended)),
        ExecStatus::Failed => out.push(("FAILED", ended)),
        ExecStatus::Superseded => out.push(("SUPERSEDED", ended)),
        ExecStatus::Cancelled => out.push(("CANCELED", ended)),
    }
    out
}

/// Resolves every pipeline to `now` and returns the state changes since `published` last
/// looked, in the order they happened; `published` then holds the new statuses.
pub fn observe(
    pipelines: &mut BTreeMap<String, Pipeline>,
    published: &mut Published,
    now: Millis,
    behaviour: Behaviour,
) -> Vec<Change> {
    let mut out = Vec::new();
    for p in pipelines.values_mut() {
        p.resolve(now, behaviour);
        for e in &p.executions {
            let before = published.status.get(&e.id).copied();
            if before.is_none() && e.created < published.since {
                continue; // history
            }
            if before == Some(e.status) {
                continue;
            }
            for (state, at) in transitions(before, e) {
                out.push(Change {
                    pipeline: p.name.clone(),
                    version: p.version,
                    execution_id: e.id,
                    state,
                    at,
                    start: e.created,
                    trigger: e.trigger.as_str(),
                });
            }
            published.status.insert(e.id, e.status);
        }
    }
    out.sort_by_key(|c| c.at);
    out
}

/// RFC 3339 in whole seconds, as EventBridge writes an event's `time`.
fn seconds(ms: Millis) -> String {
    let s = crate::clock::rfc3339(ms);
    // "2026-12-04T10:00:00.123Z" -> "2026-12-04T10:00:00Z"
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

/// The event EventBridge delivers for a change, as the JSON text of an SQS message body.
pub fn envelope(c: &Change, id: Uuid, account: &str, region: &str) -> String {
    let arn = format!("arn:aws:codepipeline:{region}:{account}:{}", c.pipeline);
    let v: Value = json!({
        "version": "0",
        "id": id.to_string(),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": seconds(c.at),
        "region": region,
        "resources": [arn],
        "detail": {
            "pipeline": c.pipeline,
            "execution-id": c.execution_id.to_string(),
            "start-time": crate::clock::rfc3339(c.start),
            "execution-trigger": {"trigger-type": c.trigger},
            "state": c.state,
            "version": f64::from(c.version),
        },
    });
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ActionDef, ExecutionMode, ListOrder, StageDef, Template};
    use std::sync::Arc;

    const B: Behaviour = Behaviour {
        abandon_settle_ms: 0,
        list_order: ListOrder::NewestFirst,
    };

    fn world() -> BTreeMap<String, Pipeline> {
        let template = Arc::new(Template::new(vec![StageDef {
            name: "Build".into(),
            actions: vec![ActionDef {
                name: "Compile".into(),
                category: "Build".into(),
                provider: "CodeBuild".into(),
                duration_ms: 60_000,
            }],
        }]));
        let p = Pipeline::new(
            "p".into(),
            ExecutionMode::Parallel,
            template,
            0,
            0,
            vec![],
            vec![],
            0,
        );
        BTreeMap::from([("p".to_string(), p)])
    }

    fn states(changes: &[Change]) -> Vec<(&'static str, Millis)> {
        changes.iter().map(|c| (c.state, c.at)).collect()
    }

    #[test]
    fn an_execution_is_announced_started_then_each_change_once_with_its_instant() {
        let mut w = world();
        let mut published = Published::snapshot(&mut w, 0, B);
        let id = Uuid::from_u128(7);
        w.get_mut("p").unwrap().start(1_000, id, B);
        assert_eq!(
            states(&observe(&mut w, &mut published, 2_000, B)),
            [("STARTED", 1_000)]
        );
        assert!(observe(&mut w, &mut published, 3_000, B).is_empty());
        // Stopped and settled before anyone looked: STOPPING and STOPPED, at their instants.
        w.get_mut("p")
            .unwrap()
            .stop(4_000, id, true, Some("r".into()), B);
        assert_eq!(
            states(&observe(&mut w, &mut published, 9_000, B)),
            [("STOPPING", 4_000), ("STOPPED", 4_000)]
        );
        // Ended is ended: never announced again.
        assert!(observe(&mut w, &mut published, 10_000, B).is_empty());
    }

    #[test]
    fn history_is_not_news_and_a_run_seen_whole_is_started_and_succeeded() {
        let mut w = world();
        w.get_mut("p").unwrap().start(0, Uuid::from_u128(1), B);
        let mut published = Published::snapshot(&mut w, 500, B);
        w.get_mut("p").unwrap().start(1_000, Uuid::from_u128(2), B);
        let got = observe(&mut w, &mut published, 100_000, B);
        assert_eq!(
            got.iter()
                .map(|c| (c.execution_id.as_u128(), c.state))
                .collect::<Vec<_>>(),
            [(2, "STARTED"), (1, "SUCCEEDED"), (2, "SUCCEEDED")]
        );
    }

    #[test]
    fn the_envelope_has_eventbridges_fields() {
        let c = Change {
            pipeline: "prod-api".into(),
            version: 3,
            execution_id: Uuid::from_u128(1),
            state: "STARTED",
            at: 1_700_000_000_123,
            start: 1_700_000_000_123,
            trigger: "StartPipelineExecution",
        };
        let v: Value = serde_json::from_str(&envelope(
            &c,
            Uuid::from_u128(2),
            "111122223333",
            "eu-west-1",
        ))
        .unwrap();
        assert_eq!(v["detail-type"], DETAIL_TYPE);
        assert_eq!(v["source"], SOURCE);
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
        assert_eq!(
            v["resources"][0],
            "arn:aws:codepipeline:eu-west-1:111122223333:prod-api"
        );
        assert_eq!(v["detail"]["state"], "STARTED");
        assert_eq!(v["detail"]["start-time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["detail"]["version"], 3.0);
    }
}
