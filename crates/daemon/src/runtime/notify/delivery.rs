//! Delivery: one task per target reads what it has not received yet ([`undelivered`]), posts
//! each event, and records it received only after the receiver answered 2xx; a receiver that is
//! down is retried with a backoff, 1 s doubling to a minute, and never slows a sweep.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, SharedClock};
use crate::config::Target;
use crate::runtime::notify::message::undelivered;
use stopd_audit::outbox::Delivered;
use stopd_audit::{Store, parse_ts, ts};

/// One delivery attempt may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long delivery tasks get, once told to stop, to record what was acknowledged.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle target looks for new records.
const POLL: Duration = Duration::from_secs(1);
/// A round reads each source from this long before the newest record the task delivered (the
/// first round of a task: from the target's start). Records are delivered in the order of
/// their time, but one may be committed a little after a later one was read (stops answered
/// together, committed in one batch): this margin finds it. One committed later than that
/// behind its successors is sent by the next start, which reads from the target's start.
pub(super) const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// Deliveries are recorded in one transaction per this many (and at the end of a round, and
/// before a wait): a storm of 650 stops costs the single connection the sweep writes on a
/// dozen commits, not 650. A kill before a commit resends at most this many (at least once).
const MARK_EVERY: usize = 64;

/// Registers every target not seen before (from now on): the daemon does so before it records
/// its start, so that what the start finds (`unwatched`) goes to a target new with it.
pub async fn register(store: &Store, targets: &[Target], clock: &dyn Clock) -> Result<()> {
    for t in targets {
        since(store, &t.name, clock.now()).await?;
    }
    Ok(())
}

/// Registers `target` (first seen: from `now` on) and returns the instant it starts from.
pub(super) async fn since(
    store: &Store,
    target: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    store.notify_since(target, now).await
}

/// Records `done` (and empties it), in one transaction.
pub(super) async fn mark_delivered(
    store: &Store,
    target: &str,
    done: &mut Vec<Delivered>,
) -> Result<()> {
    store.mark_delivered(target, done).await?;
    done.clear();
    Ok(())
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> Result<Client> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("cannot load the system's TLS roots for webhooks")?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// One POST; `Err` says why it did not go through (never the URL).
async fn post(client: &Client, url: &hyper::Uri, body: &serde_json::Value) -> Result<()> {
    let req = hyper::Request::post(url.clone())
        .header("content-type", "application/json")
        .header("user-agent", concat!("stopd/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {ATTEMPT_TIMEOUT:?}"))?
        .map_err(|e| anyhow::anyhow!("request failed: {}", without_url(&e)))?;
    if !resp.status().is_success() {
        bail!("the receiver answered {}", resp.status());
    }
    Ok(())
}

/// An error's text with any URL cut out (hyper's errors do not carry it; this is belt and
/// braces for the chain).
fn without_url(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.split_whitespace()
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Delivery settings (tests shorten the backoff).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First wait after a failed attempt; doubles.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: MAX_BACKOFF,
        }
    }
}

/// Delivers what `target` has not received until `stop` fires (the daemon) or, with
/// `until_empty`, until nothing is left (then it returns `true`) or `stop` fires (`false`).
/// When `stop` fires it records what was acknowledged and returns. `clock` dates the target's
/// start, the rounds and the deliveries.
pub async fn deliver(
    store: Store,
    target: Target,
    backoff: Backoff,
    stop: CancellationToken,
    until_empty: bool,
    clock: SharedClock,
) -> bool {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target = %target.name, "{e:#}");
            return false;
        }
    };
    let mut wait = backoff.first;
    // The instant the target starts from (registered once; the row never changes).
    let mut from: Option<DateTime<Utc>> = None;
    // Every record dated before this, less LOOKBACK, was delivered: the newest record this
    // task delivered, or when a round that found nothing left began.
    let mut newest: Option<DateTime<Utc>> = None;
    loop {
        let round = async {
            let url = crate::runtime::secrets::webhook_url(&target)?;
            let since = match from {
                Some(t) => t,
                None => *from.insert(since(&store, &target.name, clock.now()).await?),
            };
            let read_from = newest.map_or(since, |n| (n - LOOKBACK).max(since));
            let began = clock.now();
            let events = undelivered(&store, &target, read_from).await?;
            let empty = events.is_empty();
            if empty {
                newest = newest.max(Some(began));
            }
            let mut done = Vec::new();
            for e in events {
                let mut attempts = 0u32;
                let body = e.payload(target.format);
                loop {
                    attempts += 1;
                    let posted = tokio::select! {
                        () = stop.cancelled() => None,
                        r = post(&client, &url, &body) => Some(r),
                    };
                    match posted {
                        // Shutting down: what went through is recorded (this one is sent
                        // again by the next run, if it arrived).
                        None => {
                            mark_delivered(&store, &target.name, &mut done).await?;
                            return Ok(None);
                        }
                        Some(Ok(())) => break,
                        Some(Err(err)) => {
                            tracing::warn!(target = %target.name, event = e.event, attempts,
                                retry_in = ?wait, "notification not delivered: {err:#}");
                            // What went through is recorded before waiting.
                            mark_delivered(&store, &target.name, &mut done).await?;
                            tokio::select! {
                                () = stop.cancelled() => return Ok::<_, anyhow::Error>(None),
                                () = tokio::time::sleep(wait) => {}
                            }
                            wait = (wait * 2).min(backoff.max);
                        }
                    }
                }
                wait = backoff.first;
                tracing::debug!(target = %target.name, event = e.event, attempts, "notification delivered");
                if let Ok(at) = parse_ts(&e.at) {
                    newest = newest.max(Some(at));
                }
                done.push(Delivered {
                    at: ts(clock.now()),
                    source: e.source,
                    source_id: e.source_id,
                    attempts,
                });
                if done.len() >= MARK_EVERY {
                    mark_delivered(&store, &target.name, &mut done).await?;
                }
            }
            mark_delivered(&store, &target.name, &mut done).await?;
            Ok(Some(empty))
        };
        match round.await {
            Ok(None) => return false,
            Ok(Some(true)) if until_empty => return true,
            Ok(Some(true)) => {}
            Ok(Some(false)) => continue,
            Err(e) => {
                tracing::error!(target = %target.name, retry_in = ?wait, "notifications: {e:#}");
                wait = (wait * 2).min(backoff.max);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(if until_empty { wait } else { POLL.max(wait.min(backoff.first)) }) => {}
        }
    }
}

/// `run --once`: delivers what is pending to every target, for at most `bound`. Returns
/// whether everything was delivered (undelivered ones wait for the next run or the daemon).
pub async fn drain(store: &Store, targets: &[Target], bound: Duration, clock: SharedClock) -> bool {
    let stop = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for t in targets {
        set.spawn(deliver(
            store.clone(),
            t.clone(),
            Backoff::default(),
            stop.clone(),
            true,
            clock.clone(),
        ));
    }
    let all = async {
        let mut ok = true;
        while let Some(r) = set.join_next().await {
            ok &= r.unwrap_or(false);
        }
        ok
    };
    let done = tokio::time::timeout(bound, all).await;
    stop.cancel();
    // Let the tasks record what was acknowledged (their answer is no longer awaited).
    let _ = tokio::time::timeout(SHUTDOWN_BOUND, async {
        while set.join_next().await.is_some() {}
    })
    .await;
    match done {
        Ok(ok) => ok,
        Err(_) => {
            tracing::warn!(
                "notifications left undelivered after {bound:?}: the next run or the daemon sends them"
            );
            false
        }
    }
}

/// The daemon: one delivery task per target, until `stop`; wait on the tracker (within
/// [`SHUTDOWN_BOUND`]) after `stop` so that the tasks record what was acknowledged before the
/// store closes.
pub fn spawn(
    store: &Store,
    targets: &[Target],
    stop: &CancellationToken,
    clock: SharedClock,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    for t in targets {
        tracker.spawn(deliver(
            store.clone(),
            t.clone(),
            Backoff::default(),
            stop.clone(),
            false,
            clock.clone(),
        ));
    }
    tracker.close();
    tracker
}
