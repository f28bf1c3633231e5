//! `[events]`: the daemon consumes the emulator's EventBridge events from its SQS queue. The
//! `stopd` binary runs as users run it, against an emulator on a real-time clock whose feed
//! publishes every execution state change (with faults on request). No assert is on time: each
//! wait is a bound on something that happens much sooner.

use std::time::Duration;

use stopd_emulator::events::EventFeed;
use stopd_emulator::{Fault, FaultRule};

use crate::common::*;

/// A schedule that does not fire during a test: after the start-up sweep only events act.
const HOURLY: &str = "schedule = \"0 * * * *\"";

const QUEUE: &str = "stopd-events";

/// A freeze in force on `prod-*`, abandoning.
const FREEZE: &str = "[[freeze]]\nname = \"change-freeze\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\nmode = \"abandon\"\n";

/// Pipelines with nothing running (PARALLEL: executions started together all run): only what
/// a test starts runs.
fn idle_fleet() -> String {
    let p = |name: &str| {
        format!(
            r#"{{"name": "{name}", "execution_mode": "PARALLEL", "stages": [{{"name": "A", "actions": [{{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}}]}}"#
        )
    };
    format!(
        r#"{{"pipelines": [{}, {}, {}]}}"#,
        p("prod-web"),
        p("prod-api"),
        p("dev-web")
    )
}

fn queue_url(env: &Env) -> String {
    format!("{}/123456789012/{QUEUE}", env.server.endpoint_url())
}

/// An emulator publishing to the queue with `feed`'s faults, and a policy with `[events]`.
async fn start(feed: EventFeed, daemon: &str, extra: &str) -> Env {
    let env = Env::new(&idle_fleet()).await;
    env.emulator.enable_events(EventFeed {
        queue: QUEUE.into(),
        ..feed
    });
    let rules = format!(
        "{FREEZE}\n[events]\nqueue_url = \"{}\"\n{extra}",
        queue_url(&env)
    );
    env.write_config(daemon, &rules);
    env
}

fn status_of(env: &Env, pipeline: &str, id: &str) -> &'static str {
    env.emulator
        .execution(pipeline, id)
        .map_or("missing", |e| e.status)
}

fn stops_of(env: &Env, id: &str) -> usize {
    env.emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "StopPipelineExecution" && c.execution_id.as_deref() == Some(id))
        .count()
}

/// `GET path` on 127.0.0.1:`port`.
async fn get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let _ = s
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn stop(child: std::process::Child) -> std::process::Output {
    signal(&child, "TERM");
    wait_exit(child, Duration::from_secs(30)).await
}

#[tokio::test]
async fn an_execution_started_during_a_freeze_is_stopped_from_its_event_with_an_hourly_schedule() {
    let env = start(EventFeed::default(), HOURLY, "").await;
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await, "the start-up sweep");
    // Let the start-up sweep end (nothing runs: it stops nothing).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listings = env.listings();
    let prod = env.emulator.start_execution("prod-web").unwrap();
    let dev = env.emulator.start_execution("dev-web").unwrap();
    let stopped = wait_for(Duration::from_secs(20), || {
        status_of(&env, "prod-web", &prod) != "InProgress"
    })
    .await;
    let out = stop(child).await;
    assert!(stopped, "stopped from its event: {}", text(&out.stderr));
    assert_eq!(env.listings(), listings, "no sweep did it");
    assert_eq!(
        status_of(&env, "dev-web", &dev),
        "InProgress",
        "out of scope"
    );
    let report = env.report(&[]).await;
    let rec: Vec<_> = report
        .iter()
        .filter(|r| r["execution_id"] == prod.as_str())
        .collect();
    assert_eq!(rec.len(), 1, "{report:?}");
    assert_eq!(rec[0]["rule"], "change-freeze");
    assert_eq!(rec[0]["outcome"], "stopped");
    assert_eq!(rec[0]["mode"], "abandon");
    // `status` says events were flowing.
    let events = status_events(&env).await;
    assert!(events["last_received_at"].is_string(), "{events}");
    assert!(events["error"].is_null(), "{events}");
    assert_eq!(events["queue_url"], queue_url(&env));
}

/// `stopd status --format json`'s `events`.
async fn status_events(env: &Env) -> serde_json::Value {
    let out = env.stopd(&["status", "--format", "json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    status["events"].clone()
}

#[tokio::test]
async fn duplicated_and_reordered_events_stop_an_execution_once() {
    let feed = EventFeed {
        duplicate: 1.0,
        reorder: true,
        jitter: Duration::from_millis(300),
        ..EventFeed::default()
    };
    let env = start(feed, HOURLY, "").await;
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> = (0..3)
        .map(|_| env.emulator.start_execution("prod-api").unwrap())
        .collect();
    let all = wait_for(Duration::from_secs(20), || {
        ids.iter()
            .all(|id| status_of(&env, "prod-api", id) == "Stopped")
    })
    .await;
    // Every copy delivered and taken off the queue (STARTED, STOPPING and STOPPED, twice each).
    let drained = wait_for(Duration::from_secs(20), || {
        env.emulator
            .queue_depth(QUEUE)
            .is_some_and(|d| d.visible + d.in_flight + d.delayed == 0)
    })
    .await;
    let depth = env.emulator.queue_depth(QUEUE);
    let out = stop(child).await;
    assert!(all, "{}", text(&out.stderr));
    assert!(
        drained,
        "the queue was drained: {depth:?} {:?}\n{}",
        env.emulator.feed(),
        text(&out.stderr)
    );
    for id in &ids {
        assert_eq!(stops_of(&env, id), 1, "one stop for {id}");
    }
    let report = env.report(&[]).await;
    assert_eq!(report.len(), 3, "one record each: {report:?}");
}

#[tokio::test]
async fn junk_and_other_accounts_events_are_deleted_and_counted() {
    let port = free_port();
    let daemon = format!("{HOURLY}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"");
    let env = start(EventFeed::default(), &daemon, "").await;
    let url = queue_url(&env);
    let sqs = {
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("AKID", "secret", None, None, "t"))
                .endpoint_url(env.server.endpoint_url())
                .build(),
        )
    };
    let other_account = r#"{"version":"0","id":"e1","detail-type":"CodePipeline Pipeline Execution State Change","source":"aws.codepipeline","account":"999999999999","time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{"pipeline":"prod-web","execution-id":"0d8a3b4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f","state":"STARTED","version":1.0}}"#;
    let foreign = r#"{"version":"0","id":"e2","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{}}"#;
    for body in [
        "not json at all",
        "{\"half\": true}",
        other_account,
        foreign,
    ] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let child = env.spawn(&["run"]);
    let drained = wait_for(Duration::from_secs(20), || {
        env.emulator
            .queue_depth(QUEUE)
            .is_some_and(|d| d.visible + d.in_flight == 0)
    })
    .await;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = get(port, "/metrics").await;
        if metrics.contains("stopd_events_total{result=\"malformed\"} 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = stop(child).await;
    assert!(drained, "junk deleted: {}", text(&out.stderr));
    for want in [
        "stopd_events_total{result=\"malformed\"} 2",
        "stopd_events_total{result=\"unknown_account\"} 1",
        "stopd_events_total{result=\"ignored\"} 1",
        "stopd_events_total{result=\"acted\"} 0",
    ] {
        assert!(metrics.contains(want), "{want} in:\n{metrics}");
    }
    assert_eq!(env.stop_calls(), 0);
}

#[tokio::test]
async fn lost_events_are_caught_by_the_sweep() {
    let feed = EventFeed {
        loss: 1.0,
        ..EventFeed::default()
    };
    let env = start(feed, "schedule = \"*/1 * * * * *\"", "").await;
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await);
    let id = env.emulator.start_execution("prod-web").unwrap();
    let stopped = wait_for(Duration::from_secs(20), || {
        status_of(&env, "prod-web", &id) != "InProgress"
    })
    .await;
    let out = stop(child).await;
    assert!(stopped, "{}", text(&out.stderr));
    assert!(env.emulator.feed().unwrap().stats.lost >= 1);
    assert_eq!(stops_of(&env, &id), 1);
}

#[tokio::test]
async fn a_queue_that_cannot_be_read_is_an_error_and_a_health_problem_while_sweeps_go_on() {
    let port = free_port();
    let daemon =
        format!("schedule = \"*/1 * * * * *\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"");
    let env = start(EventFeed::default(), &daemon, "").await;
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::AccessDenied));
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await);
    let id = env.emulator.start_execution("prod-web").unwrap();
    let stopped = wait_for(Duration::from_secs(20), || {
        status_of(&env, "prod-web", &id) != "InProgress"
    })
    .await;
    let mut health = String::new();
    for _ in 0..100 {
        health = get(port, "/healthz").await;
        if health.contains("event queue") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = stop(child).await;
    let stderr = text(&out.stderr);
    assert!(stopped, "the sweep stopped it: {stderr}");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("sqs:ReceiveMessage"), "{health}");
    assert!(
        stderr.contains("ERROR") && stderr.contains("the event queue cannot be read"),
        "{stderr}"
    );
    let events = status_events(&env).await;
    assert!(
        events["error"]
            .as_str()
            .is_some_and(|e| e.contains("sqs:ReceiveMessage")),
        "{events}"
    );
}

/// Issue 29: at a window edge the executions stopd already knows of (its last listing, and
/// events since) are stopped first; the fleet is listed after, to reconcile. Every call takes
/// 1 s, so a stop that waited for the edge's listing would come after the pipeline's
/// ListPipelineExecutions.
#[tokio::test]
async fn at_a_window_edge_the_known_executions_are_stopped_before_the_fleet_is_listed() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("dev-c", "dev"),
    ]))
    .await;
    env.emulator
        .set_faults(stopd_emulator::FaultPlan::latency(Duration::from_secs(1)));
    let now = chrono::Utc::now();
    let edge = now + chrono::TimeDelta::seconds(6)
        - chrono::TimeDelta::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
    let rules = format!(
        "[[freeze]]\nname = \"f\"\nstart = \"{}\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\n",
        rfc(edge)
    );
    env.write_config(HOURLY, &rules);
    let child = env.spawn(&["run"]);
    // Two stops, and two sweeps' listings of both prod pipelines (dev-c is out of scope).
    let done = wait_for(Duration::from_secs(30), || {
        env.stop_calls() >= 2
            && env
                .emulator
                .calls()
                .iter()
                .filter(|c| c.operation == "ListPipelineExecutions")
                .count()
                >= 4
    })
    .await;
    let out = stop(child).await;
    assert!(done, "{}", text(&out.stderr));
    let calls = env.emulator.calls();
    for pipeline in ["prod-a", "prod-b"] {
        let of = |op: &str| {
            calls
                .iter()
                .filter(|c| c.operation == op && c.pipeline.as_deref() == Some(pipeline))
                .map(|c| c.seq)
                .collect::<Vec<_>>()
        };
        let (stops, listings) = (of("StopPipelineExecution"), of("ListPipelineExecutions"));
        assert_eq!(stops.len(), 1, "{pipeline} stopped once");
        assert_eq!(
            listings.iter().filter(|&&l| l < stops[0]).count(),
            1,
            "{pipeline}: only the start-up sweep listed its executions before its stop ({listings:?}, stop {})",
            stops[0]
        );
        assert!(
            listings.iter().any(|&l| l > stops[0]),
            "{pipeline}: the edge's sweep listed it after, to reconcile"
        );
    }
    assert_eq!(env.stop_calls(), 2);
}

/// The lifecycle events of the audit log named `events_failed` or `events_resumed`, with their
/// detail, read while the daemon may be running.
async fn queue_events(env: &Env) -> Vec<(String, Option<String>)> {
    let store = stopd_audit::Store::open_read_only(env.db()).await.unwrap();
    let events = store.events(None, None).await.unwrap();
    store.close().await;
    events
        .into_iter()
        .filter(|e| e.event.starts_with("events_"))
        .map(|e| (e.event, e.detail))
        .collect()
}

/// ReceiveMessage calls answered with an error, from call `from` on.
fn failed_receives(env: &Env, from: u64) -> usize {
    env.emulator
        .calls_since(from)
        .iter()
        .filter(|c| c.operation == "ReceiveMessage" && c.status != 200)
        .count()
}

/// Issue 29: an unreadable queue is one `events_failed` (one notification, by default) however
/// many polls fail and however often the daemon restarts against it, while the sweeps go on;
/// readable again, one `events_resumed`, and no second notification.
#[tokio::test]
async fn an_unreadable_queue_is_recorded_and_notified_once_across_polls_and_restarts() {
    let hook = crate::notify::Receiver::start(false).await;
    // No `events` list: `events_failed` is among the defaults.
    let notify = format!("[[notify]]\nname = \"hook\"\nurl = \"{}\"\n", hook.url());
    let env = start(
        EventFeed::default(),
        "schedule = \"*/1 * * * * *\"",
        &notify,
    )
    .await;
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::AccessDenied));
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await);
    let id = env.emulator.start_execution("prod-web").unwrap();
    // The sweep stops what the events cannot; the outage is notified; polls keep failing.
    let done = wait_for(Duration::from_secs(30), || {
        status_of(&env, "prod-web", &id) != "InProgress"
            && !hook.events("events_failed").is_empty()
            && failed_receives(&env, 0) >= 3
    })
    .await;
    let out = stop(child).await;
    let stderr = text(&out.stderr);
    assert!(
        done,
        "stopped by the sweep, notified, polled again: {stderr}"
    );
    let url = queue_url(&env);
    let recorded = queue_events(&env).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (event, detail) = &recorded[0];
    assert_eq!(event, "events_failed");
    let detail = detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{url} cannot be read: "))
            && detail.contains("sqs:ReceiveMessage"),
        "{detail}"
    );
    let posted = hook.events("events_failed");
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(
        posted[0]["message"],
        format!(
            "the event queue {detail}; executions are enforced by the periodic sweeps alone until it can"
        )
    );

    // Restarted against the queue, still unreadable: nothing new is recorded or sent.
    let from = env.emulator.calls().len() as u64;
    let listings = env.listings();
    let child = env.spawn(&["run"]);
    let polled = wait_for(Duration::from_secs(30), || {
        failed_receives(&env, from) >= 2 && env.listings() > listings + 1
    })
    .await;
    assert_eq!(queue_events(&env).await.len(), 1, "no second events_failed");

    // Readable again: an event (of a pipeline out of scope) ends the long poll at once.
    env.emulator
        .set_faults(stopd_emulator::FaultPlan::default());
    let dev = env.emulator.start_execution("dev-web").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let recorded = queue_events(&env).await;
        if recorded.len() >= 2 || std::time::Instant::now() > deadline {
            break recorded;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let resumed = recorded.len() >= 2;
    let out = stop(child).await;
    let stderr = text(&out.stderr);
    assert!(polled, "the restarted daemon polled and swept: {stderr}");
    assert!(resumed, "events_resumed recorded: {recorded:?}\n{stderr}");
    let kinds: Vec<&str> = recorded.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["events_failed", "events_resumed"]);
    assert_eq!(
        recorded[1].1.as_deref(),
        Some(format!("{url} can be read again").as_str())
    );
    assert_eq!(
        status_of(&env, "dev-web", &dev),
        "InProgress",
        "out of scope"
    );
    assert_eq!(
        hook.events("events_failed").len(),
        1,
        "one notification per outage"
    );
    assert!(hook.events("events_resumed").is_empty());
}

/// Whether a ReceiveMessage answered 200 was made after the last failed one (from call `from`
/// on, with at least `failures` failed): the consumer took in those failures (a call is logged
/// when it arrives, so the failures were judged before the poll that followed them).
fn polled_after_failures(env: &Env, from: u64, failures: usize) -> bool {
    let receives: Vec<u16> = env
        .emulator
        .calls_since(from)
        .iter()
        .filter(|c| c.operation == "ReceiveMessage")
        .map(|c| c.status)
        .collect();
    receives.iter().filter(|s| **s != 200).count() >= failures && receives.last() == Some(&200)
}

/// SDK retries are off for SQS, so one throttle or 5xx fails one poll: a failed poll, and two
/// in a row, are blips (an ERROR in the log, but no `events_failed`, no notification, and
/// `/healthz` stays healthy). A queue that goes on failing (a 503 every poll) is an outage
/// once it has failed three polls in a row: `events_failed`, and `/healthz` unhealthy.
#[tokio::test]
async fn a_failed_poll_or_two_are_a_blip_and_a_queue_that_goes_on_failing_an_outage() {
    let port = free_port();
    let daemon = format!("schedule = \"0 * * * *\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"");
    let env = start(EventFeed::default(), &daemon, "").await;
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await);
    let from = env.emulator.calls().len() as u64;
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::Http500).times(1));
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::Throttling).times(1));
    // An event (of a pipeline out of scope) ends the long poll under way, so that the faults
    // meet the next polls; another, once they have, ends the long poll after them.
    env.emulator.start_execution("dev-web").unwrap();
    let mut unhealthy = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut nudged = false;
    // Sticky: the next long poll is logged as soon as it arrives, so "the last poll read" holds
    // only until then.
    let mut blipped = false;
    while !blipped && std::time::Instant::now() < deadline {
        blipped = polled_after_failures(&env, from, 2);
        if blipped {
            break;
        }
        let health = get(port, "/healthz").await;
        // Unhealthy because of the queue (the start-up sweep may still be under way: "no
        // successful sweep yet" is another problem).
        if health.starts_with("HTTP/1.1 503") && health.contains("event queue") {
            unhealthy.push(health);
        }
        if !nudged && failed_receives(&env, from) >= 2 {
            env.emulator.start_execution("dev-web").unwrap();
            nudged = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_blips = queue_events(&env).await;

    // The queue fails on: an outage after three polls in a row.
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::Http503));
    let from = env.emulator.calls().len() as u64;
    env.emulator.start_execution("dev-web").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let recorded = queue_events(&env).await;
        if !recorded.is_empty() || std::time::Instant::now() > deadline {
            break recorded;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failed_then = failed_receives(&env, from);
    let mut health = String::new();
    for _ in 0..100 {
        health = get(port, "/healthz").await;
        if health.contains("event queue") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = stop(child).await;
    let stderr = text(&out.stderr);
    assert!(blipped, "two failed polls, then one read: {stderr}");
    assert!(
        stderr.contains("ERROR") && stderr.contains("the event queue cannot be read"),
        "each failed poll is an ERROR: {stderr}"
    );
    assert!(after_blips.is_empty(), "{after_blips:?}");
    assert!(
        unhealthy.is_empty(),
        "healthy through the blips: {unhealthy:?}"
    );
    assert_eq!(recorded.len(), 1, "{recorded:?}\n{stderr}");
    assert_eq!(recorded[0].0, "events_failed");
    assert!(
        recorded[0]
            .1
            .as_deref()
            .unwrap_or_default()
            .contains("ServiceUnavailable"),
        "{recorded:?}"
    );
    assert!(
        failed_then >= 3,
        "recorded after {failed_then} failed polls"
    );
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
}

/// A failure that retrying cannot mend (access denied) is an outage at its first poll:
/// recorded at once, though the next poll reads the queue again (and records `events_resumed`).
#[tokio::test]
async fn access_denied_is_an_outage_at_the_first_failed_poll() {
    let env = start(EventFeed::default(), "schedule = \"0 * * * *\"", "").await;
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::AccessDenied).times(1));
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut nudged = false;
    let recorded = loop {
        let recorded = queue_events(&env).await;
        if recorded.len() >= 2 || std::time::Instant::now() > deadline {
            break recorded;
        }
        // Once the queue failed, an event ends the long poll after it.
        if !nudged && failed_receives(&env, 0) >= 1 {
            env.emulator.start_execution("dev-web").unwrap();
            nudged = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = stop(child).await;
    let stderr = text(&out.stderr);
    let kinds: Vec<&str> = recorded.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["events_failed", "events_resumed"], "{stderr}");
    assert_eq!(failed_receives(&env, 0), 1);
    assert!(
        recorded[0]
            .1
            .as_deref()
            .unwrap_or_default()
            .contains("sqs:ReceiveMessage"),
        "{recorded:?}"
    );
}
