//! `[[notify]]`: webhooks people see (JSON records or Slack text), delivered at least once.
//!
//! **The audit log is the outbox.** Every event comes from a row that is committed before it is
//! sent: a stop's outcome (`stopped`, `failed`), a gate's outcome (`gate`), an exemption added
//! or revoked (`exemption`), a sweep result that turned the daemon from good to failing
//! (`sweep_failed`), a freeze window that a start found had begun while no daemon was running
//! (`unwatched`: an `unwatched_windows` row, written with that start). A delivery task per target reads the rows it has not received yet
//! (`notify_delivered`), oldest first, posts each one, and records it received only after the
//! receiver answered 2xx. So a notification is "written in the same transaction as the record
//! that causes it" in the strongest sense (it is that record), a kill -9 between a stop and its
//! delivery only delays it, and the sweep's path gains no write and no wait: **a receiver that
//! is down never slows a sweep** (its task backs off, 1 s doubling to a minute).
//!
//! A target first seen starts at that instant (`notify_targets.since`): configuring a webhook
//! does not replay the log's history into a channel. Secrets: the URL comes from `url`,
//! `url_file` or `url_env`, and is never printed (its `Debug` is redacted; errors name the
//! target, not the URL).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use stopd_audit::outbox::{Delivered, Source};
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
const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// Deliveries are recorded in one transaction per this many (and at the end of a round, and
/// before a wait): a storm of 650 stops costs the single connection the sweep writes on a
/// dozen commits, not 650. A kill before a commit resends at most this many (at least once).
const MARK_EVERY: usize = 64;

/// Event names, as in `events = [...]` and the payload's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A stop went through (`stopped`, `already_stopping`, `not_stoppable`).
    Stopped,
    /// A stop did not (`failed`, `rejected`, `pipeline_not_found`).
    Failed,
    /// A stage transition was closed or opened for a gating freeze.
    Gate,
    /// A break-glass exemption was added or revoked.
    Exemption,
    /// A sweep failed after a good one.
    SweepFailed,
    /// A freeze window started while the daemon was not running, found at the next start.
    Unwatched,
}

impl EventKind {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Stopped => "stopped",
            EventKind::Failed => "failed",
            EventKind::Gate => "gate",
            EventKind::Exemption => "exemption",
            EventKind::SweepFailed => "sweep_failed",
            EventKind::Unwatched => "unwatched",
        }
    }
}

/// Payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per event.
    #[default]
    Json,
    /// Slack's incoming-webhook payload: text and a section block.
    Slack,
}

/// `[[notify]]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Unique name (in logs and the delivery log).
    #[serde(default)]
    pub name: String,
    /// The webhook URL (a secret: prefer `url_file` or `url_env`).
    #[serde(default)]
    pub url: Option<String>,
    /// A file whose first line is the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// An environment variable that holds the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Which events; default all.
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
}

/// Where a target's URL comes from.
#[derive(Clone, PartialEq)]
pub enum UrlSource {
    /// Written in the policy.
    Inline(String),
    /// Read from a file at start.
    File(PathBuf),
    /// Read from the environment at start.
    Env(String),
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            UrlSource::File(p) => write!(f, "File({})", p.display()),
            UrlSource::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// A validated `[[notify]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Name.
    pub name: String,
    /// The URL's source (never printed).
    pub url: UrlSource,
    /// Payload format.
    pub format: Format,
    /// Events sent.
    pub events: Vec<EventKind>,
}

impl Target {
    /// The URL, read now. Errors name the source, never the URL.
    pub fn resolve_url(&self) -> Result<hyper::Uri> {
        let text = match &self.url {
            UrlSource::Inline(u) => u.clone(),
            // Its systemd credential first (`crate::runtime::secrets`).
            UrlSource::File(p) => crate::runtime::secrets::read(p)
                .map_err(|e| anyhow::anyhow!("[[notify]] {}: url_file: {e}", self.name))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            UrlSource::Env(v) => std::env::var(v).with_context(|| {
                format!(
                    "[[notify]] {}: environment variable {v} is not set",
                    self.name
                )
            })?,
        };
        // A URL read from a file: say which file (never what it holds).
        let what = match &self.url {
            UrlSource::File(p) => format!(
                "the URL in {}",
                crate::runtime::secrets::source(p).display()
            ),
            _ => "the URL".to_string(),
        };
        check_url(&text).map_err(|e| anyhow::anyhow!("[[notify]] {}: {what} {e}", self.name))?;
        text.parse()
            .map_err(|_| anyhow::anyhow!("[[notify]] {}: the URL is not a valid URI", self.name))
    }
}

/// Checks a webhook URL without echoing it (it is a secret).
fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|_| "is not a URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("is not an http:// or https:// URL".into());
    }
    if url.host().is_none() {
        return Err("names no host".into());
    }
    Ok(())
}

/// Validates the `[[notify]]` entries: `(index, key, message)` for each problem.
pub fn check_specs(specs: &[NotifySpec]) -> (Vec<Target>, Vec<(usize, &'static str, String)>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        if s.name.trim().is_empty() {
            problems.push((i, "name", "a [[notify]] needs a name".to_string()));
        } else if specs[..i].iter().any(|o| o.name == s.name) {
            problems.push((
                i,
                "name",
                format!("{:?} is already the name of another [[notify]]", s.name),
            ));
        }
        let url = match (&s.url, &s.url_file, &s.url_env) {
            (Some(u), None, None) => match check_url(u) {
                Ok(()) => Some(UrlSource::Inline(u.clone())),
                Err(e) => {
                    problems.push((i, "url", format!("the URL {e}")));
                    None
                }
            },
            (None, Some(f), None) => Some(UrlSource::File(f.clone())),
            (None, None, Some(v)) if !v.is_empty() => Some(UrlSource::Env(v.clone())),
            _ => {
                problems.push((
                    i,
                    "url",
                    "give exactly one of url, url_file or url_env".to_string(),
                ));
                None
            }
        };
        let events = s.events.clone().unwrap_or_else(|| {
            vec![
                EventKind::Stopped,
                EventKind::Failed,
                EventKind::Gate,
                EventKind::Exemption,
                EventKind::SweepFailed,
                EventKind::Unwatched,
            ]
        });
        if let Some(url) = url {
            targets.push(Target {
                name: s.name.clone(),
                url,
                format: s.format.unwrap_or_default(),
                events,
            });
        }
    }
    (targets, problems)
}

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

/// Registers every target not seen before (from now on): the daemon does so before it records
/// its start, so that what the start finds (`unwatched`) goes to a target new with it.
pub async fn register(store: &Store, targets: &[Target]) -> Result<()> {
    for t in targets {
        since(store, &t.name).await?;
    }
    Ok(())
}

/// Registers `target` (first seen: from now on) and returns the instant it starts from.
async fn since(store: &Store, target: &str) -> Result<DateTime<Utc>> {
    store.notify_since(target, Utc::now()).await
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
                account: None,
                region: None,
                source: Source::UnwatchedWindows,
                source_id: r.source_id,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.at, a.source.table(), a.source_id).cmp(&(&b.at, b.source.table(), b.source_id))
    });
    Ok(out)
}

/// Records `done` (and empties it), in one transaction.
async fn mark_delivered(store: &Store, target: &str, done: &mut Vec<Delivered>) -> Result<()> {
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
/// When `stop` fires it records what was acknowledged and returns.
pub async fn deliver(
    store: Store,
    target: Target,
    backoff: Backoff,
    stop: CancellationToken,
    until_empty: bool,
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
            let url = target.resolve_url()?;
            let since = match from {
                Some(t) => t,
                None => *from.insert(since(&store, &target.name).await?),
            };
            let read_from = newest.map_or(since, |n| (n - LOOKBACK).max(since));
            let began = Utc::now();
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
                    at: ts(Utc::now()),
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
pub async fn drain(store: &Store, targets: &[Target], bound: Duration) -> bool {
    let stop = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for t in targets {
        set.spawn(deliver(
            store.clone(),
            t.clone(),
            Backoff::default(),
            stop.clone(),
            true,
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
pub fn spawn(store: &Store, targets: &[Target], stop: &CancellationToken) -> TaskTracker {
    let tracker = TaskTracker::new();
    for t in targets {
        tracker.spawn(deliver(
            store.clone(),
            t.clone(),
            Backoff::default(),
            stop.clone(),
            false,
        ));
    }
    tracker.close();
    tracker
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Mutex;

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

    #[test]
    fn specs_need_one_url_source_and_never_echo_the_url() {
        let spec = |url: Option<&str>, env: Option<&str>| NotifySpec {
            name: "chat".into(),
            url: url.map(Into::into),
            url_env: env.map(Into::into),
            ..NotifySpec::default()
        };
        let (_, p) = check_specs(&[spec(None, None)]);
        assert_eq!(p[0].1, "url");
        let (_, p) = check_specs(&[spec(Some("https://x.invalid/a"), Some("HOOK"))]);
        assert!(p[0].2.contains("exactly one"), "{p:?}");
        let (_, p) = check_specs(&[spec(Some("ftp://hunter2.invalid/T0/secret"), None)]);
        assert!(!p[0].2.contains("hunter2"), "{p:?}");
        let (t, p) = check_specs(&[spec(Some("https://hooks.invalid/T0/secret"), None)]);
        assert!(p.is_empty());
        assert!(!format!("{t:?}").contains("secret"), "{t:?}");
        assert_eq!(t[0].events.len(), 6);
    }

    /// A receiver on 127.0.0.1:0 that answers 500 to the first `fail` requests, then 200, and
    /// keeps every body it accepted.
    async fn receiver(
        fail: usize,
    ) -> (String, Arc<Mutex<Vec<serde_json::Value>>>, Arc<AtomicUsize>) {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
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
                                got.lock()
                                    .await
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
        (format!("http://{addr}/hook"), got, seen)
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
        record_stop_at(store, pipeline, outcome, Utc::now()).await;
    }

    async fn record_stop_at(store: &Store, pipeline: &str, outcome: &str, at: DateTime<Utc>) {
        let id = store
            .record_intent(&stopd_audit::Intent {
                at: Utc::now(),
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
        since(&store, "chat").await.unwrap();
        record_stop(&store, "prod-a", "stopped").await;
        record_stop(&store, "prod-b", "failed").await;
        record_stop(&store, "prod-c", "already_stopping").await;
        let fast = Backoff {
            first: Duration::from_millis(5),
            max: Duration::from_millis(20),
        };
        let stop = CancellationToken::new();
        assert!(deliver(store.clone(), target.clone(), fast, stop.clone(), true).await);
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
        assert!(deliver(store.clone(), target.clone(), fast, stop.clone(), true).await);
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
                Duration::from_secs(10)
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
        since(&store, "chat").await.unwrap();
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
                true
            )
            .await
        );
        assert!(deliver(store.clone(), target, Backoff::default(), stop, true).await);
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
        since(&store, "chat").await.unwrap();
        let now = Utc::now();
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
        ));
        let arrived = |n: usize| {
            let got = got.clone();
            async move {
                for _ in 0..500 {
                    if got.lock().await.len() >= n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        assert!(arrived(1).await);
        record_stop_at(
            &store,
            "prod-earlier",
            "stopped",
            now + chrono::TimeDelta::seconds(1),
        )
        .await;
        assert!(arrived(2).await, "the earlier record was sent too");
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
        since(&store, "chat").await.unwrap();
        store
            .compact_quiet_sweeps(Duration::from_secs(65))
            .await
            .unwrap();
        let failed = stopd_audit::SweepResult {
            errors: 1,
            error: Some("AccessDenied".into()),
            ..Default::default()
        };
        let t0 = Utc::now() - chrono::TimeDelta::minutes(10);
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
        sweep(t0, failed.clone()).await;
        sweep(t0 + s(30), failed.clone()).await; // a retry: the same outage
        for k in 2..6 {
            sweep(t0 + s(30 * k), stopd_audit::SweepResult::default()).await; // quiet, good
        }
        sweep(t0 + s(180), failed.clone()).await; // a second outage
        let pending = undelivered(&store, &target, Utc::now() - LOOKBACK)
            .await
            .unwrap();
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
        since(&store, "chat").await.unwrap();
        for i in 0..(stopd_audit::outbox::BATCH + 10) {
            record_stop(&store, &format!("prod-{i:03}"), "failed").await;
        }
        record_stop(&store, "prod-late", "stopped").await;
        let pending = undelivered(&store, &target, Utc::now() - LOOKBACK)
            .await
            .unwrap();
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
        since(&store, "chat").await.unwrap();
        record_stop(&store, "prod-a", "stopped").await;
        record_stop(&store, "prod-b", "stopped").await;
        let stop = CancellationToken::new();
        assert!(
            deliver(
                store.clone(),
                target.clone(),
                Backoff::default(),
                stop,
                true
            )
            .await
        );
        let now = Utc::now();
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
            at: ts(Utc::now()),
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
        since(&store, "chat").await.unwrap();
        record_stop(&store, "prod-a", "stopped").await;
        let started = std::time::Instant::now();
        assert!(!drain(&store, &[target], Duration::from_millis(300)).await);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(got.lock().await.is_empty());
    }
}
