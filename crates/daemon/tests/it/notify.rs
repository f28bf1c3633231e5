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
}

impl Receiver {
    pub async fn start(failing: bool) -> Receiver {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(failing));
        let (g, r, f) = (got.clone(), refused.clone(), failing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (g, r, f) = (g.clone(), r.clone(), f.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (g, r, f) = (g.clone(), r.clone(), f.clone());
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = if f.load(Ordering::SeqCst) {
                                r.fetch_add(1, Ordering::SeqCst);
                                500
                            } else {
                                g.lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(&body).unwrap());
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
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
            refused,
            failing,
        }
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
