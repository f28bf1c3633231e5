//! Notification tests: payloads, and delivery to a local receiver (at least once, in order).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio_util::sync::CancellationToken;

use super::delivery::{LOOKBACK, mark_delivered, since};
use super::{Backoff, Event, deliver, drain, undelivered};
use crate::clock::{ManualClock, SharedClock};
use crate::config::{EventKind, Format, Target, UrlSource};
use stopd_audit::outbox::{Delivered, Source};
use stopd_audit::{Store, ts};

/// When every test's target starts: records are dated from here on.
fn t0() -> DateTime<Utc> {
    "2026-12-19T18:00:00Z".parse().unwrap()
}

/// A clock standing at [`t0`]: delivery dates its rounds and receipts by it.
fn clock() -> SharedClock {
    ManualClock::new(t0())
}

fn event() -> Event {
    Event {
        event: "stopped",
        at: "2026-12-19T18:00:01.250Z".into(),
        pipeline: Some("prod-web".into()),
        execution_id: Some("1b2c3d4e-0000-4000-8000-000000000001".into()),
        rule: Some("weekend".into()),
        outcome: Some("stopped".into()),
        message: "stopped prod-web execution 1b2c3d4e-0000-4000-8000-000000000001 (stopped, rule weekend): Weekend change freeze until 2026-12-21T08:00:00Z".into(),
        unwatched: None,
        leader: None,
        account: None,
        region: None,
        source: Source::StopOutcomes,
        source_id: 1,
    }
}

#[test]
fn json_payload_has_the_contract_fields() {
    let v = event().payload(Format::Json);
    for k in [
        "event",
        "at",
        "pipeline",
        "execution_id",
        "rule",
        "outcome",
        "message",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    assert!(v.get("source").is_none());
}

#[test]
fn slack_payload_snapshot() {
    let mut e = event();
    e.pipeline = Some("prod-<web>`x`".into());
    let got = serde_json::to_string_pretty(&e.payload(Format::Slack)).unwrap();
    let want = r#"{
  "blocks": [
    {
      "text": {
        "text": "*stopd: stopped* — stopped prod-web execution 1b2c3d4e-0000-4000-8000-000000000001 (stopped, rule weekend): Weekend change freeze until 2026-12-21T08:00:00Z\n*Pipeline:* `prod-&lt;web&gt;'x'`\n*Execution:* `1b2c3d4e-0000-4000-8000-000000000001`\n*Rule:* `weekend`\n*Outcome:* `stopped`\n*At:* 2026-12-19T18:00:01.250Z",
        "type": "mrkdwn"
      },
      "type": "section"
    }
  ],
  "text": "stopd: stopped: stopped prod-web execution 1b2c3d4e-0000-4000-8000-000000000001 (stopped, rule weekend): Weekend change freeze until 2026-12-21T08:00:00Z"
}"#;
    assert_eq!(got, want);
}

/// A receiver on 127.0.0.1:0 that answers 500 to the first `fail` requests, then 200, and
/// keeps every body it accepted.
async fn receiver(fail: usize) -> (String, Arc<Got>, Arc<AtomicUsize>) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Got {
        bodies: Mutex::default(),
        count: watch::Sender::new(0),
    });
    let seen = Arc::new(AtomicUsize::new(0));
    let (got2, seen2) = (got.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (got, seen) = (got2.clone(), seen2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (got, seen) = (got.clone(), seen.clone());
                    async move {
                        use http_body_util::BodyExt;
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail {
                            500
                        } else {
                            let mut bodies = got.lock().await;
                            bodies.push(serde_json::from_slice(&body).unwrap());
                            got.count.send_replace(bodies.len());
                            200
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), got, seen)
}

/// What a receiver accepted.
struct Got {
    /// The bodies, in the order they arrived.
    bodies: Mutex<Vec<serde_json::Value>>,
    /// How many there are, to wait on.
    count: watch::Sender<usize>,
}

impl Got {
    async fn lock(&self) -> MutexGuard<'_, Vec<serde_json::Value>> {
        self.bodies.lock().await
    }

    /// Whether `n` bodies arrive (false only if none comes for a minute: a guard against a
    /// hang, not a latency bound).
    async fn arrived(&self, n: usize) -> bool {
        let mut count = self.count.subscribe();
        tokio::time::timeout(Duration::from_secs(60), count.wait_for(|&c| c >= n))
            .await
            .is_ok()
    }
}

/// The JSON target "chat" at `url`, for `events`.
fn chat_target(url: String, events: Vec<EventKind>) -> Target {
    Target {
        name: "chat".into(),
        url: UrlSource::Inline(url),
        format: Format::Json,
        events,
    }
}

async fn record_stop(store: &Store, pipeline: &str, outcome: &str) {
    record_stop_at(
        store,
        pipeline,
        outcome,
        t0() + chrono::TimeDelta::seconds(1),
    )
    .await;
}

async fn record_stop_at(store: &Store, pipeline: &str, outcome: &str, at: DateTime<Utc>) {
    let id = store
        .record_intent(&stopd_audit::Intent {
            at,
            sweep_id: None,
            pipeline,
            execution_id: &format!("{pipeline}-exec"),
            rule: "weekend",
            rule_kind: stopd_audit::RuleKind::Freeze,
            mode: stopd_audit::Mode::Abandon,
            reason: "Weekend change freeze",
            explanation: "in window",
            dry_run: false,
            escalate_at: None,
            escalation_of: None,
            account: "default",
            region: "us-east-1",
        })
        .await
        .unwrap();
    store
        .record_outcome(
            id,
            &stopd_audit::OutcomeRow {
                at,
                outcome: outcome.parse().unwrap(),
                attempts: 1,
                throttled: 0,
                elapsed: Duration::ZERO,
                error: (outcome == "failed").then(|| "ThrottlingException".into()),
                reconciled: false,
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_receiver_that_fails_twice_then_succeeds_gets_every_event_once_in_order_and_across_restarts()
 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let store = Store::open(&db).await.unwrap();
    let (url, got, seen) = receiver(2).await;
    let target = chat_target(url, vec![EventKind::Stopped, EventKind::Failed]);
    // Registered before the stops: a new target starts from now, not from history.
    since(&store, "chat", t0()).await.unwrap();
    record_stop(&store, "prod-a", "stopped").await;
    record_stop(&store, "prod-b", "failed").await;
    record_stop(&store, "prod-c", "already_stopping").await;
    let fast = Backoff {
        first: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    let stop = CancellationToken::new();
    assert!(
        deliver(
            store.clone(),
            target.clone(),
            fast,
            stop.clone(),
            true,
            clock()
        )
        .await
    );
    let bodies = got.lock().await.clone();
    let pipelines: Vec<&str> = bodies
        .iter()
        .map(|b| b["pipeline"].as_str().unwrap())
        .collect();
    assert_eq!(pipelines, ["prod-a", "prod-b", "prod-c"]);
    assert_eq!(bodies[1]["event"], "failed");
    assert_eq!(bodies[1]["outcome"], "failed");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "two failures, then three deliveries"
    );
    // A restart (a new store on the same file) sends nothing again...
    store.close().await;
    let store = Store::open(&db).await.unwrap();
    assert!(
        deliver(
            store.clone(),
            target.clone(),
            fast,
            stop.clone(),
            true,
            clock()
        )
        .await
    );
    assert_eq!(got.lock().await.len(), 3);
    // ...and what was recorded while no one delivered (a kill -9 between the stop and its
    // delivery) is sent by the next run.
    record_stop(&store, "prod-d", "stopped").await;
    store.close().await;
    let store = Store::open(&db).await.unwrap();
    assert!(
        drain(
            &store,
            std::slice::from_ref(&target),
            Duration::from_secs(10),
            clock()
        )
        .await
    );
    assert_eq!(got.lock().await.last().unwrap()["pipeline"], "prod-d");
    assert_eq!(got.lock().await.len(), 4);
}

/// 150 events: more than one batch of recorded deliveries, each sent once, in order.
#[tokio::test]
async fn a_storm_is_delivered_once_in_order_and_recorded_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let (url, got, seen) = receiver(0).await;
    let target = chat_target(url, vec![EventKind::Stopped]);
    since(&store, "chat", t0()).await.unwrap();
    for i in 0..150 {
        record_stop(&store, &format!("prod-{i:03}"), "stopped").await;
    }
    let stop = CancellationToken::new();
    assert!(
        deliver(
            store.clone(),
            target.clone(),
            Backoff::default(),
            stop.clone(),
            true,
            clock()
        )
        .await
    );
    assert!(
        deliver(
            store.clone(),
            target,
            Backoff::default(),
            stop,
            true,
            clock()
        )
        .await
    );
    assert_eq!(seen.load(Ordering::SeqCst), 150, "each once");
    let pipelines: Vec<String> = got
        .lock()
        .await
        .iter()
        .map(|b| b["pipeline"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..150).map(|i| format!("prod-{i:03}")).collect();
    assert_eq!(pipelines, want);
    let marked = store.delivered_count().await.unwrap();
    assert_eq!(marked, 150);
}

/// The daemon's task reads from a little before the newest record it delivered: a record
/// committed after a later one was delivered (stops answered together) is still sent.
#[tokio::test]
async fn a_record_committed_after_a_later_one_was_delivered_is_still_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let (url, got, _) = receiver(0).await;
    let target = chat_target(url, vec![EventKind::Stopped]);
    since(&store, "chat", t0()).await.unwrap();
    let now = t0();
    record_stop_at(
        &store,
        "prod-later",
        "stopped",
        now + chrono::TimeDelta::seconds(2),
    )
    .await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(deliver(
        store.clone(),
        target,
        Backoff::default(),
        stop.clone(),
        false,
        clock(),
    ));
    assert!(got.arrived(1).await);
    record_stop_at(
        &store,
        "prod-earlier",
        "stopped",
        now + chrono::TimeDelta::seconds(1),
    )
    .await;
    assert!(got.arrived(2).await, "the earlier record was sent too");
    stop.cancel();
    assert!(!task.await.unwrap());
    let pipelines: Vec<String> = got
        .lock()
        .await
        .iter()
        .map(|b| b["pipeline"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pipelines, ["prod-later", "prod-earlier"]);
}

/// An outage after a recovery made of quiet sweeps (folded into a run, so in `sweep_runs`
/// and not `sweep_results`) is a second outage: it is notified, not taken for a retry of
/// the first.
#[tokio::test]
async fn a_failure_after_a_recovery_by_quiet_sweeps_is_notified_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let (url, _got, _) = receiver(0).await;
    let target = chat_target(url, vec![EventKind::SweepFailed]);
    since(&store, "chat", t0()).await.unwrap();
    store
        .compact_quiet_sweeps(Duration::from_secs(65))
        .await
        .unwrap();
    let failed = stopd_audit::SweepResult {
        errors: 1,
        error: Some("AccessDenied".into()),
        ..Default::default()
    };
    let first = t0() - chrono::TimeDelta::minutes(10);
    let sweep = |at: DateTime<Utc>, r: stopd_audit::SweepResult| {
        let store = store.clone();
        async move {
            let id = store
                .begin_sweep(at, stopd_audit::SweepTrigger::Schedule, false)
                .await
                .unwrap();
            store
                .finish_sweep(id, at, Duration::ZERO, &r)
                .await
                .unwrap();
        }
    };
    let s = chrono::TimeDelta::seconds;
    sweep(first, failed.clone()).await;
    sweep(first + s(30), failed.clone()).await; // a retry: the same outage
    for k in 2..6 {
        sweep(first + s(30 * k), stopd_audit::SweepResult::default()).await; // quiet, good
    }
    sweep(first + s(180), failed.clone()).await; // a second outage
    let pending = undelivered(&store, &target, t0() - LOOKBACK).await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
}

/// A target that wants only `stopped` read failed outcomes too and skipped them, undelivered:
/// a batch's worth of them ahead of a stop held that stop back for good.
#[tokio::test]
async fn a_target_of_one_kind_is_not_held_back_by_rows_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let (url, _got, _) = receiver(0).await;
    let target = chat_target(url, vec![EventKind::Stopped]);
    since(&store, "chat", t0()).await.unwrap();
    for i in 0..(stopd_audit::outbox::BATCH + 10) {
        record_stop(&store, &format!("prod-{i:03}"), "failed").await;
    }
    record_stop(&store, "prod-late", "stopped").await;
    let pending = undelivered(&store, &target, t0() - LOOKBACK).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].pipeline.as_deref(), Some("prod-late"));
}

/// Issue 25: an exemption whose delivery row id differs from its own id (deliveries of
/// other kinds came first) is delivered once, not on every round.
#[tokio::test]
async fn an_exemption_after_deliveries_of_stops_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let (url, got, _) = receiver(0).await;
    let target = chat_target(url, vec![EventKind::Stopped, EventKind::Exemption]);
    since(&store, "chat", t0()).await.unwrap();
    record_stop(&store, "prod-a", "stopped").await;
    record_stop(&store, "prod-b", "stopped").await;
    let stop = CancellationToken::new();
    assert!(
        deliver(
            store.clone(),
            target.clone(),
            Backoff::default(),
            stop,
            true,
            clock()
        )
        .await
    );
    let now = t0() + chrono::TimeDelta::minutes(1);
    store
        .add_exemption(
            now,
            "prod-web-*",
            now + chrono::TimeDelta::hours(2),
            "INC-4712 hotfix",
            "alice",
            Some("weekend"),
        )
        .await
        .unwrap();
    let pending = undelivered(&store, &target, now - LOOKBACK).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].event, "exemption");
    let mut done = vec![Delivered {
        at: ts(now),
        source: pending[0].source,
        source_id: pending[0].source_id,
        attempts: 1,
    }];
    mark_delivered(&store, "chat", &mut done).await.unwrap();
    let again = undelivered(&store, &target, now - LOOKBACK).await.unwrap();
    assert!(again.is_empty(), "read again once delivered: {again:?}");
    assert_eq!(got.lock().await.len(), 2, "the stops, once each");
}

#[tokio::test]
async fn a_receiver_that_is_down_leaves_drain_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let (url, got, _) = receiver(usize::MAX).await;
    let target = Target {
        name: "chat".into(),
        url: UrlSource::Inline(url),
        format: Format::Slack,
        events: vec![EventKind::Stopped],
    };
    since(&store, "chat", t0()).await.unwrap();
    record_stop(&store, "prod-a", "stopped").await;
    // The guard turns a drain that ignores its bound into a failure, not a hang.
    let drained = tokio::time::timeout(
        Duration::from_secs(60),
        drain(&store, &[target], Duration::from_millis(300), clock()),
    )
    .await;
    assert_eq!(
        drained,
        Ok(false),
        "not delivered, and back within its bound"
    );
    assert!(got.lock().await.is_empty());
}

/// An outage of the event queue is one `events_failed`, worded with the queue and the error,
/// in both formats; its end (`events_resumed`) is not notified, and neither is anything a
/// target did not ask for.
#[tokio::test]
async fn an_event_queue_outage_is_one_notification_naming_the_queue_and_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    let target = chat_target(
        "http://127.0.0.1:9/hook".into(),
        vec![EventKind::EventsFailed],
    );
    since(&store, "chat", t0()).await.unwrap();
    let queue = "https://sqs.eu-west-1.amazonaws.com/111122223333/stopd-events";
    let s = chrono::TimeDelta::seconds;
    for (k, error) in [
        (1, Some("AccessDenied")),
        (2, Some("AccessDenied")),
        (3, None),
    ] {
        store
            .record_events_state(t0() + s(k), queue, error)
            .await
            .unwrap();
    }
    let pending = undelivered(&store, &target, t0() - LOOKBACK).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let e = &pending[0];
    assert_eq!(
        (e.event, e.source),
        ("events_failed", Source::EventsFailures)
    );
    assert_eq!(
        e.message,
        format!(
            "the event queue {queue} cannot be read: AccessDenied; executions are enforced by \
             the periodic sweeps alone until it can"
        )
    );
    let json = e.payload(Format::Json);
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["message"], e.message.as_str());
    let slack = e.payload(Format::Slack);
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("stopd: events_failed: the event queue https://")),
        "{slack}"
    );
    let others = chat_target(
        "http://127.0.0.1:9/hook".into(),
        vec![EventKind::SweepFailed, EventKind::LeaderChanged],
    );
    assert!(
        undelivered(&store, &others, t0() - LOOKBACK)
            .await
            .unwrap()
            .is_empty()
    );
}
