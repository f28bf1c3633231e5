//! `[[notify]]` with the real binary: a webhook receiver in the test, the daemon killed with
//! SIGKILL between a stop and its delivery, and freeze windows that began while no daemon ran.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::common::*;

/// A schedule that never fires during a test.
const RARE: &str = "schedule = \"0 0 1 1 *\"";

/// A webhook receiver on 127.0.0.1:0: answers 500 while it is failing, else 200, and keeps
/// every body it accepted (200), in arrival order.
pub struct Receiver {
    url: String,
    /// Bodies answered 200.
    got: Arc<Mutex<Vec<Value>>>,
    /// Requests answered 500.
    refused: Arc<AtomicUsize>,
    /// Whether it answers 500.
    failing: Arc<AtomicBool>,
    /// Every request in arrival order: its body and the status it was answered.
    log: Arc<Mutex<Vec<(Value, u16)>>>,
}

impl Receiver {
    pub async fn start(failing: bool) -> Receiver {
        Receiver::start_with(failing, false).await
    }

    /// A receiver that answers 500 to the first attempt of each event (each distinct body),
    /// and 200 to the attempts after it.
    pub async fn refusing_first_attempts() -> Receiver {
        Receiver::start_with(false, true).await
    }

    async fn start_with(failing: bool, refuse_first: bool) -> Receiver {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(failing));
        let log: Arc<Mutex<Vec<(Value, u16)>>> = Arc::default();
        let (g, r, f, l) = (got.clone(), refused.clone(), failing.clone(), log.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (g, r, f, l) = (g.clone(), r.clone(), f.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (g, r, f, l) = (g.clone(), r.clone(), f.clone(), l.clone());
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let value: Value = serde_json::from_slice(&body).unwrap();
                            let status: u16 = {
                                let mut l = l.lock().unwrap();
                                let first = !l.iter().any(|(b, _)| *b == value);
                                let refuse = f.load(Ordering::SeqCst) || (refuse_first && first);
                                let status = if refuse { 500 } else { 200 };
                                l.push((value.clone(), status));
                                status
                            };
                            if status == 500 {
                                r.fetch_add(1, Ordering::SeqCst);
                            } else {
                                g.lock().unwrap().push(value);
                            }
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
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
            refused,
            failing,
            log,
        }
    }

    /// Each distinct event received, with the statuses of its attempts in order.
    pub fn attempts(&self) -> Vec<(Value, Vec<u16>)> {
        let mut out: Vec<(Value, Vec<u16>)> = Vec::new();
        for (body, status) in self.log.lock().unwrap().iter() {
            match out.iter_mut().find(|(b, _)| b == body) {
                Some((_, s)) => s.push(*status),
                None => out.push((body.clone(), vec![*status])),
            }
        }
        out
    }

    /// The URL it listens on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The accepted bodies whose `event` is `kind`.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["event"] == kind)
            .cloned()
            .collect()
    }

    /// A `[[notify]]` table posting `events` here as JSON.
    pub fn table(&self, events: &[&str]) -> String {
        let events: Vec<String> = events.iter().map(|e| format!("\"{e}\"")).collect();
        format!(
            "[[notify]]\nname = \"test-hook\"\nurl = \"{}\"\nevents = [{}]\n",
            self.url,
            events.join(", ")
        )
    }
}

fn one_off(name: &str, start: DateTime<Utc>) -> String {
    format!(
        "[[freeze]]\nname = \"{name}\"\nstart = \"{}\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\n",
        rfc(start)
    )
}

/// Issue 16's "at least once, also across a kill -9 between the stop and the delivery": the
/// stop is recorded while the receiver fails, the daemon is killed with SIGKILL before any
/// delivery went through, and the next start (receiver up) delivers it.
#[tokio::test]
async fn a_stop_recorded_before_a_kill_9_is_delivered_by_the_next_start() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let hook = Receiver::start(true).await;
    env.write_config(
        RARE,
        &format!(
            "{}\n{}",
            one_off("frozen", Utc::now() - chrono::Duration::hours(1)),
            hook.table(&["stopped", "failed"])
        ),
    );
    let child = env.spawn(&["run"]);
    // The stop is recorded with its outcome, and the receiver has refused its delivery.
    assert!(
        wait_for(Duration::from_secs(15), || {
            hook.refused.load(Ordering::SeqCst) >= 1
        })
        .await,
        "a delivery was attempted"
    );
    assert_eq!(env.stop_calls(), 1);
    signal(&child, "KILL");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_eq!(out.status.code(), None, "killed by a signal");
    assert!(hook.got.lock().unwrap().is_empty(), "nothing delivered yet");
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "stopped");

    // Back up, and so is the receiver: the stop is delivered (at least once).
    hook.failing.store(false, Ordering::SeqCst);
    let child = env.spawn(&["run"]);
    assert!(
        wait_for(Duration::from_secs(15), || !hook
            .events("stopped")
            .is_empty())
        .await,
        "the stop recorded before the kill was delivered after the restart"
    );
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    assert!(
        text(&out.stderr).contains("did not stop cleanly"),
        "{}",
        text(&out.stderr)
    );
    let stopped = hook.events("stopped");
    assert_eq!(stopped[0]["pipeline"], "prod-web");
    assert_eq!(stopped[0]["execution_id"], records[0]["execution_id"]);
    assert_eq!(stopped[0]["outcome"], "stopped");
    assert_eq!(stopped[0]["rule"], "frozen");
}

/// A freeze window that began while the daemon was stopped is announced once (`unwatched`) by
/// the next start, and never again by the starts after it.
#[tokio::test]
async fn a_window_that_began_while_stopped_is_notified_once_at_the_next_start() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let hook = Receiver::start(false).await;
    let events = ["stopped", "exemption", "unwatched"];
    let later = Utc::now() + chrono::Duration::days(30);
    env.write_config(
        RARE,
        &format!("{}\n{}", one_off("later", later), hook.table(&events)),
    );
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await, "the start-up sweep ran");
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);

    // While it is stopped, a freeze window begins: the next whole second, written into the
    // policy once that second has come (so it began after the clean stop, before the start).
    let now = Utc::now();
    let begin = now
        + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(now.timestamp_subsec_nanos()));
    assert!(wait_for(Duration::from_secs(2), || Utc::now() >= begin).await);
    env.write_config(
        RARE,
        &format!("{}\n{}", one_off("incident", begin), hook.table(&events)),
    );
    let child = env.spawn(&["run"]);
    assert!(
        wait_for(Duration::from_secs(15), || !hook
            .events("unwatched")
            .is_empty())
        .await,
        "the start announced the window it missed"
    );
    // The window is enforced too.
    assert!(
        wait_for(Duration::from_secs(15), || !hook
            .events("stopped")
            .is_empty())
        .await
    );
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    assert!(
        text(&out.stderr).contains("a freeze window began while stopd was not running"),
        "{}",
        text(&out.stderr)
    );
    let unwatched = hook.events("unwatched");
    assert_eq!(unwatched.len(), 1, "{unwatched:#?}");
    let u = &unwatched[0];
    assert_eq!(u["rule"], "incident");
    assert_eq!(u["outcome"], "in_force");
    let t = |k: &str| -> DateTime<Utc> { u[k].as_str().unwrap().parse().unwrap() };
    assert_eq!(t("window_start"), begin);
    assert!(t("gap_from") < begin && begin < t("gap_to"), "{u:#}");
    assert_eq!(
        t("gap_to"),
        t("at"),
        "found at the start that ended the gap"
    );
    // In order of occurrence: announced before the stop it led to.
    let order: Vec<&str> = {
        let got = hook.got.lock().unwrap();
        got.iter()
            .map(|b| b["event"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    }
    .iter()
    .map(|e| {
        if e == "unwatched" {
            "unwatched"
        } else {
            "other"
        }
    })
    .collect();
    assert_eq!(order, ["unwatched", "other"]);

    // Started again (and killed, and started again): no second `unwatched`. An exemption added
    // while the last daemon runs is delivered after everything before it, so once it has
    // arrived, a duplicate would have too.
    let listings = || {
        env.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "ListPipelines")
            .count()
    };
    let before = listings();
    let child = env.spawn(&["run"]);
    assert!(wait_for(Duration::from_secs(15), || listings() > before).await);
    signal(&child, "KILL");
    let _ = wait_exit(child, Duration::from_secs(10)).await;
    let child = env.spawn(&["run"]);
    assert_ok(
        &env.stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-api",
            "--for",
            "1h",
            "--reason",
            "barrier",
        ])
        .await,
    );
    assert!(
        wait_for(Duration::from_secs(15), || !hook
            .events("exemption")
            .is_empty())
        .await,
        "the exemption was delivered"
    );
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
    assert_eq!(hook.events("unwatched").len(), 1, "no duplicate");
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);
}

/// prod-web and prod-api (one long approval each) and prod-gated (Source, Build, Deploy; its
/// execution in Build): an execution InProgress in each.
fn every_kind_fleet() -> String {
    let plain = |name: &str| {
        format!(
            r#"{{"name": "{name}", "tags": {{"env": "prod"}},
                "stages": [{{"name": "A", "actions": [{{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}}],
                "executions": [{{"status": "InProgress", "started_ago": "5m"}}]}}"#
        )
    };
    let gated = r#"{"name": "prod-gated", "tags": {"env": "prod"}, "stages": [
            {"name": "Source", "actions": [{"name": "S", "category": "Source", "provider": "CodeStarSourceConnection", "duration": "1s"}]},
            {"name": "Build", "actions": [{"name": "B", "category": "Approval", "provider": "Manual", "duration": "24h"}]},
            {"name": "Deploy", "actions": [{"name": "D", "category": "Deploy", "provider": "CodeDeploy", "duration": "10m"}]}],
          "executions": [{"status": "InProgress", "started_ago": "5m"}]}"#;
    format!(
        r#"{{"pipelines": [{}, {}, {gated}]}}"#,
        plain("prod-web"),
        plain("prod-api")
    )
}

/// Issue 25 item 1: every source of the outbox (stops stopped and failed, gates, a sweep that
/// failed after a good one, exemptions added and revoked, a window that began while no daemon
/// ran), each recorded after deliveries of other kinds, is delivered exactly once: its first
/// attempt is refused (500), the next one is accepted, and no round after that (`run --once`
/// several times, the daemon, restarts) sends it again.
#[tokio::test]
async fn every_source_is_delivered_once_after_a_refused_attempt_and_never_again() {
    use stopd_emulator::{Fault, FaultRule};
    let env = Env::new(&every_kind_fleet()).await;
    let hook = Receiver::refusing_first_attempts().await;
    let all = [
        "stopped",
        "failed",
        "gate",
        "exemption",
        "sweep_failed",
        "unwatched",
    ];
    let rules = |extra: &str| {
        format!(
            "[[freeze]]\nname = \"frozen\"\nstart = \"{}\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-web\", \"prod-api\"]\n\n\
             [[freeze]]\nname = \"release\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-gated\"]\ngate = true\n\n{extra}\n{}",
            rfc(Utc::now() - chrono::Duration::hours(1)),
            hook.table(&all)
        )
    };
    env.write_config(RARE, &rules(""));
    let once = || async { env.stopd(&["run", "--once"]).await };
    // Every event so far: refused once, then accepted once, and never sent again.
    let each_once = |step: &str| {
        for (body, statuses) in hook.attempts() {
            assert_eq!(statuses, [500, 200], "{step}: {body:#}");
        }
    };
    let kinds = || {
        hook.attempts()
            .iter()
            .map(|(b, _)| {
                format!(
                    "{}:{}",
                    b["event"].as_str().unwrap(),
                    b["outcome"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
    };

    // Stops (prod-api's refused: `failed`) and a gate.
    env.emulator.add_fault(
        FaultRule::new(Some("StopPipelineExecution"), Fault::AccessDenied).pipeline("prod-api"),
    );
    let _ = once().await;
    env.emulator.set_faults(Default::default());
    // A good sweep (prod-api stopped now), then one that fails: `sweep_failed`.
    let _ = once().await;
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::AccessDenied));
    assert_eq!(once().await.status.code(), Some(1));
    env.emulator.set_faults(Default::default());
    let _ = once().await;
    each_once("stops, gates, sweeps");
    for k in [
        "stopped:stopped",
        "failed:rejected",
        "gate:done",
        "sweep_failed:failed",
    ] {
        assert!(kinds().iter().any(|x| x == k), "{k} in {:?}", kinds());
    }

    // The operator's break-glass exemption, then its revocation: several rounds each.
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-web-*",
            "--rule",
            "frozen",
            "--for",
            "2h",
            "--reason",
            "INC-4712 hotfix",
        ])
        .await;
    assert_ok(&out);
    for _ in 0..3 {
        let _ = once().await;
    }
    each_once("exemption added");
    assert_ok(&env.stopd(&["exempt", "revoke", "1"]).await);
    for _ in 0..2 {
        let _ = once().await;
    }
    each_once("exemption revoked");
    for k in ["exemption:added", "exemption:revoked"] {
        assert!(kinds().iter().any(|x| x == k), "{k} in {:?}", kinds());
    }

    // A window that begins while no daemon runs (`unwatched`): a daemon started and stopped,
    // a one-off freeze beginning at the next whole second after, a daemon started again.
    let child = env.spawn(&["run"]);
    let listings = || {
        env.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "ListPipelines")
            .count()
    };
    let before = listings();
    assert!(wait_for(Duration::from_secs(15), || listings() > before).await);
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
    let now = Utc::now();
    let begin = now
        + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(now.timestamp_subsec_nanos()));
    assert!(wait_for(Duration::from_secs(2), || Utc::now() >= begin).await);
    env.write_config(RARE, &rules(&one_off("incident", begin)));
    let child = env.spawn(&["run"]);
    assert!(
        wait_for(Duration::from_secs(15), || !hook
            .events("unwatched")
            .is_empty())
        .await,
        "the start announced the window it missed"
    );
    // A barrier: an exemption added while this daemon runs is delivered after everything
    // before it, so once it has arrived, a second copy of anything before would have too.
    assert_ok(
        &env.stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-barrier",
            "--for",
            "1h",
            "--reason",
            "barrier",
        ])
        .await,
    );
    assert!(
        wait_for(Duration::from_secs(15), || hook
            .events("exemption")
            .iter()
            .any(|e| e["pipeline"] == "prod-barrier"))
        .await,
        "the barrier was delivered"
    );
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
    // And rounds after a restart.
    for _ in 0..2 {
        let _ = once().await;
    }
    each_once("unwatched, and after restarts");
    assert!(
        kinds().iter().any(|x| x == "unwatched:in_force"),
        "{:?}",
        kinds()
    );
}
