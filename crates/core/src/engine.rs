//! [`Core`]: discovery of active executions and the stop engine, over one client, one rate
//! limiter and one retry policy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::types::{
    ExecutionType, PipelineExecutionStatus, PipelineExecutionSummary, StageTransitionType,
};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ErrorKind};
use crate::ratelimit::RateLimiter;
use crate::retry::{Attempted, RetryPolicy, retry};
use crate::types::{
    ActiveExecution, ActiveStatus, CallCounts, Discovered, PipelineFailure, PipelineRead,
};

/// At most this many executions that were active at the last sweep, and are older than what a
/// sweep paged through, are checked one by one with GetPipelineExecution; more, and paging on
/// is cheaper (100 a page).
const MAX_SINGLE_CHECKS: usize = 5;

/// The longest reason StopPipelineExecution accepts, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Pages of one listing a sweep reads at most. CodePipeline keeps 12 months of history; at 100
/// executions a page this is a million executions, far past any real pipeline, and a bound on
/// a service that never stops answering with a next page.
pub const MAX_PAGES: usize = 10_000;

/// Follows `nextToken`s, refusing a token seen before (a service that loops would make a
/// sweep that never ends) and more than [`MAX_PAGES`] pages.
#[derive(Debug, Default)]
struct Pages {
    /// Tokens already followed.
    seen: HashSet<String>,
}

impl Pages {
    /// The token of the next page, `None` at the end, or an error for a loop.
    fn next(
        &mut self,
        operation: &'static str,
        token: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let Some(token) = token else { return Ok(None) };
        let problem = if self.seen.len() >= MAX_PAGES {
            format!("more than {MAX_PAGES} pages: stopped paging")
        } else if !self.seen.insert(token.to_string()) {
            format!(
                "the service answered with a nextToken it had already given ({} pages in): stopped paging",
                self.seen.len()
            )
        } else {
            return Ok(Some(token.to_string()));
        };
        Err(ApiError {
            operation,
            kind: ErrorKind::BadResponse,
            code: Some("PaginationLoop".into()),
            message: problem,
        })
    }
}

/// Tuning of discovery and stops.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Pipelines read at once.
    pub concurrency: usize,
    /// How long fetched tags are trusted.
    pub tag_ttl: Duration,
    /// A pipeline's execution history is read to its end at least this often (between, only
    /// what is new since the last sweep is read; see [`Core::discover`]).
    pub full_rescan_every: Duration,
    /// Retry policy of discovery calls.
    pub discovery_retry: RetryPolicy,
    /// Retry policy (and per-stop deadline) of stops.
    pub stop_retry: RetryPolicy,
    /// A bound on requests in flight shared by every account and region's `Core` (each still
    /// paces itself with its own rate limiter).
    pub in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            concurrency: 64,
            tag_ttl: Duration::from_secs(300),
            full_rescan_every: Duration::from_secs(3_600),
            discovery_retry: RetryPolicy {
                deadline: Duration::from_secs(30),
                ..RetryPolicy::default()
            },
            stop_retry: RetryPolicy::default(),
            in_flight: None,
        }
    }
}

/// One stop to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Abandon in-progress actions instead of letting them finish.
    pub abandon: bool,
    /// Reason; cut to 200 characters before sending.
    pub reason: String,
}

/// How a stop ended. Names are the audit log's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The API accepted the stop.
    Stopped,
    /// `DuplicatedStopRequestException`: already stopping. Done, not an error.
    AlreadyStopping,
    /// `PipelineExecutionNotStoppableException`: it finished first. Done, not an error.
    NotStoppable,
    /// The pipeline does not exist (any more).
    PipelineNotFound,
    /// `ValidationException` or another permanent refusal, or a request that could never be
    /// valid (checked before sending).
    Rejected,
    /// Retries, the deadline, or a shutdown ran out first.
    Failed,
}

impl Outcome {
    /// The audit-log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stopped => "stopped",
            Outcome::AlreadyStopping => "already_stopping",
            Outcome::NotStoppable => "not_stoppable",
            Outcome::PipelineNotFound => "pipeline_not_found",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }

    /// Whether the outcome is final: nothing more will happen if nobody asks again.
    pub fn is_final(self) -> bool {
        self != Outcome::Failed
    }
}

/// What happened to one stop.
#[derive(Debug, Clone, PartialEq)]
pub struct StopReport {
    /// The outcome.
    pub outcome: Outcome,
    /// Requests sent (0: refused before sending).
    pub attempts: u32,
    /// Throttling answers met.
    pub throttled: u32,
    /// Time from the first attempt to the outcome.
    pub elapsed: Duration,
    /// The last error, if any (also for `already_stopping` and `not_stoppable`).
    pub error: Option<ApiError>,
    /// The stop was cut short by a shutdown (the outcome is then `failed`).
    pub cancelled: bool,
    /// The reason as sent (at most 200 characters).
    pub reason_sent: String,
    /// Requests made for this stop, by operation (with the read that checks a lost answer).
    pub calls: CallCounts,
    /// How the outcome was established when an attempt's answer was lost, in a sentence.
    pub note: Option<String>,
}

/// The longest reason DisableStageTransition accepts, in characters.
pub const MAX_GATE_REASON_CHARS: usize = 300;

/// A reason as DisableStageTransition accepts it: the model's alphabet
/// (`[a-zA-Z0-9!@ ()\.\*\?\-]+`; anything else becomes a space, runs of spaces one) and at
/// most 300 characters.
pub fn gate_reason(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() || "!@ ().*?-".contains(c) {
            c
        } else {
            ' '
        };
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    let out = out.trim();
    let out = if out.is_empty() { "stopd" } else { out };
    cut_chars(out, MAX_GATE_REASON_CHARS).trim_end().to_string()
}

/// One stage's inbound transition, as GetPipelineState says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageGate {
    /// Stage name.
    pub stage: String,
    /// Whether executions may enter.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Who last changed it.
    pub last_changed_by: Option<String>,
    /// Executions waiting to enter.
    pub waiting: Vec<String>,
}

/// What GetPipelineExecution says of one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionState {
    /// `status`.
    pub status: PipelineExecutionStatus,
    /// `stopTrigger.reason`: the reason the stop that is under way, or was made, was given.
    pub stop_reason: Option<String>,
}

impl ExecutionState {
    /// Whether the execution is Stopping or Stopped by a stop whose reason is `reason` (the
    /// reason as it was sent).
    pub fn stopped_with(&self, reason: &str) -> bool {
        matches!(
            self.status,
            PipelineExecutionStatus::Stopping | PipelineExecutionStatus::Stopped
        ) && self.stop_reason.as_deref() == Some(reason)
    }
}

/// What discovery remembers of a pipeline between sweeps.
#[derive(Debug, Clone)]
struct Memory {
    /// The newest execution id seen at the last sweep.
    newest_seen: Option<String>,
    /// The executions that were active at the last sweep.
    active: Vec<ActiveExecution>,
    /// When the history was last read to its end.
    full_scan_at: Instant,
}

/// Discovery and stops against one account and region.
#[derive(Debug, Clone)]
pub struct Core {
    /// Shared state; `Core` is cheap to clone into tasks.
    inner: Arc<Inner>,
}

/// Tags of one pipeline and when they were fetched.
type CachedTags = (Instant, Arc<BTreeMap<String, String>>);

#[derive(Debug)]
struct Inner {
    /// The SDK client (its own retries off).
    client: Client,
    /// Per-operation pacing.
    limiter: RateLimiter,
    /// Tuning.
    config: CoreConfig,
    /// Fires on shutdown: backoffs and attempts end at once.
    cancel: CancellationToken,
    /// Per pipeline: what the last sweep saw.
    memory: Mutex<HashMap<String, Memory>>,
    /// Per pipeline: ARN (never changes for a name).
    arns: Mutex<HashMap<String, String>>,
    /// Per pipeline: tags and when they were fetched.
    tags: Mutex<HashMap<String, CachedTags>>,
    /// The account's name (`default`: the ambient credentials' account).
    account: Arc<str>,
    /// The region the client calls.
    region: Arc<str>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `None` for a missing (or unrepresentable) time: never 1970, which a timeout would read as
/// "running for 56 years".
fn to_utc(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// Whether a name can be a pipeline name (`[A-Za-z0-9.@\-_]{1,100}`).
pub fn valid_pipeline_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'))
}

/// Whether an id is a lower-case UUID, as execution ids are.
pub fn valid_execution_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// The longest prefix with at most `max` characters (never splits a character).
pub fn cut_chars(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

impl Core {
    /// Discovery and stops over this client. `cancel` ends backoffs and attempts on shutdown.
    /// The account is named `default`; the region is the client's.
    pub fn new(
        client: Client,
        limiter: RateLimiter,
        config: CoreConfig,
        cancel: CancellationToken,
    ) -> Core {
        let region = client
            .config()
            .region()
            .map(ToString::to_string)
            .unwrap_or_default();
        Core::new_at(client, limiter, config, cancel, "default", &region)
    }

    /// [`Core::new`] for the account named `account` in `region`.
    pub fn new_at(
        client: Client,
        limiter: RateLimiter,
        config: CoreConfig,
        cancel: CancellationToken,
        account: &str,
        region: &str,
    ) -> Core {
        Core {
            inner: Arc::new(Inner {
                client,
                limiter,
                config,
                cancel,
                memory: Mutex::new(HashMap::new()),
                arns: Mutex::new(HashMap::new()),
                tags: Mutex::new(HashMap::new()),
                account: Arc::from(account),
                region: Arc::from(region),
            }),
        }
    }

    /// The account's name (`default` for the ambient credentials' account).
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// Pipelines read at once (`CoreConfig::concurrency`).
    pub fn concurrency(&self) -> usize {
        self.inner.config.concurrency
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// "account NAME in REGION", for messages.
    pub fn place(&self) -> String {
        format!("account {} in {}", self.inner.account, self.inner.region)
    }

    /// Whether a record made in `account` and `region` belongs here (`None`: recorded before
    /// accounts and regions were, in the ambient account).
    pub fn owns(&self, account: Option<&str>, region: Option<&str>) -> bool {
        account.unwrap_or("default") == &*self.inner.account
            && region.is_none_or(|r| r == &*self.inner.region)
    }

    /// The tags discovery last read for a pipeline (empty if it read none).
    pub fn tags_of(&self, pipeline: &str) -> Arc<BTreeMap<String, String>> {
        lock(&self.inner.tags)
            .get(pipeline)
            .map_or_else(Arc::default, |(_, t)| Arc::clone(t))
    }

    /// The rate limiter (for reports).
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        policy: &RetryPolicy,
        counts: &mut CallCounts,
        f: F,
    ) -> Attempted<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let gate = self.inner.config.in_flight.clone();
        let mut f = f;
        let attempt = move || {
            let gate = gate.clone();
            let request = f();
            async move {
                // Closed only if dropped, which a shared bound never is.
                let _permit = match &gate {
                    Some(g) => g.acquire().await.ok(),
                    None => None,
                };
                request.await
            }
        };
        let r = retry(policy, &self.inner.limiter, op, &self.inner.cancel, attempt).await;
        counts.add(op, r.attempts, r.throttled);
        r
    }

    /// Finds every InProgress and Stopping execution of the pipelines `in_scope` keeps.
    ///
    /// Pipelines are listed (paginated) and filtered by name before any per-pipeline call.
    /// Then, for each pipeline, with bounded concurrency: its tags if `with_tags` (GetPipeline
    /// for the ARN once, ListTagsForResource, cached for `tag_ttl`), and its executions.
    ///
    /// The first time a pipeline is seen, and every `full_rescan_every`, its whole history is
    /// read, so an active execution behind any number of finished ones is found. In between,
    /// while the pages come newest first (AWS does, without documenting it; start times say
    /// so), pages are read only until the newest execution of the previous sweep (by start
    /// time); executions active then and not on those pages are checked one by one with
    /// GetPipelineExecution (if there are only a few; otherwise paging goes on until they are
    /// all seen). Listed in any other order, the whole history is read. Nothing active is missed, except an execution that a
    /// stage retry brings back from a final status: that one is found by the next full rescan.
    pub async fn discover(
        &self,
        in_scope: &(dyn Fn(&str) -> bool + Sync),
        with_tags: bool,
    ) -> Discovered {
        self.discover_streaming(in_scope, with_tags, None).await
    }

    /// [`Core::discover`], also sending each pipeline to `sink` as soon as it has been read
    /// (with its active executions), so the caller can stop and gate while the rest is still
    /// being listed (listing, stopping and gating then overlap instead of adding up). Every
    /// pipeline in scope is sent once, read or not (a read that panicked is a failure). The
    /// sender is dropped when discovery ends.
    pub async fn discover_streaming(
        &self,
        in_scope: &(dyn Fn(&str) -> bool + Sync),
        with_tags: bool,
        sink: Option<tokio::sync::mpsc::UnboundedSender<PipelineRead>>,
    ) -> Discovered {
        let mut out = Discovered::default();
        let names = match self.list_pipelines(&mut out.calls).await {
            Ok(n) => n,
            Err(e) => {
                out.listing_failed = Some(e);
                return out;
            }
        };
        out.pipelines_seen = names.len();
        let names: Vec<String> = names.into_iter().filter(|n| in_scope(n)).collect();
        out.pipelines_in_scope = names.len();
        out.pipelines.clone_from(&names);
        // A window of at most `concurrency` tasks: a pipeline's task is spawned only when a
        // slot is free. (Spawning one task per pipeline up front, each waiting on a semaphore,
        // held ~5 KiB per pipeline until its turn: 50 MiB at 10,000 pipelines.)
        let limit = self.inner.config.concurrency.max(1);
        let mut names = names.into_iter();
        let mut tasks = JoinSet::new();
        // Whose task is whose, so that one that panicked is still reported (and sent).
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            while tasks.len() < limit {
                let Some(name) = names.next() else { break };
                let core = self.clone();
                let task = name.clone();
                let handle = tasks.spawn(async move {
                    let mut calls = CallCounts::default();
                    let r = core.read_pipeline(&task, with_tags, &mut calls).await;
                    (r, calls)
                });
                running.insert(handle.id(), name);
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (name, result, calls) = match joined {
                Ok((id, (result, calls))) => {
                    (running.remove(&id).unwrap_or_default(), result, calls)
                }
                Err(e) => {
                    let error = ApiError {
                        operation: "ListPipelineExecutions",
                        kind: ErrorKind::Client,
                        code: Some("Panicked".into()),
                        message: format!("reading the pipeline failed inside stopd: {e}"),
                    };
                    (
                        running.remove(&e.id()).unwrap_or_default(),
                        Err(error),
                        CallCounts::default(),
                    )
                }
            };
            out.calls.merge(&calls);
            // A closed receiver only means the caller stopped listening.
            match result {
                Ok((mut execs, cut)) => {
                    if let Some(sink) = &sink {
                        let _ = sink.send(PipelineRead {
                            pipeline: name.clone(),
                            executions: execs.clone(),
                        });
                    }
                    out.executions.append(&mut execs);
                    // A listing cut short is a failure of the pipeline's read (loud: the sweep
                    // is not a good one), but what it did return is real and is decided.
                    if let Some(error) = cut {
                        out.failures.push(PipelineFailure {
                            pipeline: name,
                            error,
                        });
                    }
                }
                Err(error) => {
                    if let Some(sink) = &sink {
                        let _ = sink.send(PipelineRead {
                            pipeline: name.clone(),
                            executions: Vec::new(),
                        });
                    }
                    out.failures.push(PipelineFailure {
                        pipeline: name,
                        error,
                    });
                }
            }
        }
        out.executions
            .sort_by(|a, b| (&a.pipeline, a.start_time).cmp(&(&b.pipeline, b.start_time)));
        out.failures.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        out
    }

    async fn list_pipelines(&self, calls: &mut CallCounts) -> Result<Vec<String>, ApiError> {
        let policy = self.inner.config.discovery_retry;
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = Pages::default();
        loop {
            let client = &self.inner.client;
            let t = token.clone();
            let page = self
                .call("ListPipelines", &policy, calls, || {
                    let req = client
                        .list_pipelines()
                        .max_results(1000)
                        .set_next_token(t.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("ListPipelines", e))
                    }
                })
                .await
                .result?;
            names.extend(
                page.pipelines()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
            token = pages.next("ListPipelines", page.next_token())?;
            if token.is_none() {
                // A name listed twice is one pipeline.
                let mut seen = HashSet::new();
                names.retain(|n| seen.insert(n.clone()));
                return Ok(names);
            }
        }
    }

    /// The active executions of one pipeline. `Ok` with an error beside them when the listing
    /// was cut short (a service that repeats a `nextToken`, or more than [`MAX_PAGES`] pages):
    /// the executions of the pages read are real, and a sweep still decides them.
    async fn read_pipeline(
        &self,
        name: &str,
        with_tags: bool,
        calls: &mut CallCounts,
    ) -> Result<(Vec<ActiveExecution>, Option<ApiError>), ApiError> {
        let tags = if with_tags {
            self.tags(name, calls).await?
        } else {
            Arc::new(BTreeMap::new())
        };
        let memory = lock(&self.inner.memory).get(name).cloned();
        let full = memory
            .as_ref()
            .is_none_or(|m| m.full_scan_at.elapsed() >= self.inner.config.full_rescan_every);
        let policy = self.inner.config.discovery_retry;
        let mut active = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        // The newest execution seen, by start time (not by place: AWS does not document the
        // listing's order).
        let mut newest: Option<(Option<DateTime<Utc>>, String)> = None;
        let mut token: Option<String> = None;
        let mut pages = Pages::default();
        let mut reached_marker = false;
        // Whether every page so far was listed newest first: only then can paging stop at the
        // previous sweep's newest, since everything after it is older.
        let mut newest_first = true;
        let mut previous_start: Option<DateTime<Utc>> = None;
        // Why the listing ended before its last page, if it did.
        let mut cut: Option<ApiError> = None;
        loop {
            let client = &self.inner.client;
            let t = token.clone();
            let page = self
                .call("ListPipelineExecutions", &policy, calls, || {
                    let req = client
                        .list_pipeline_executions()
                        .pipeline_name(name)
                        .max_results(100)
                        .set_next_token(t.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("ListPipelineExecutions", e))
                    }
                })
                .await
                .result?;
            for s in page.pipeline_execution_summaries() {
                let Some(id) = s.pipeline_execution_id() else {
                    continue;
                };
                let start = to_utc(s.start_time());
                match (previous_start, start) {
                    (Some(p), Some(t)) if t > p => newest_first = false,
                    (_, None) => newest_first = false,
                    _ => {}
                }
                previous_start = start.or(previous_start);
                if newest.as_ref().is_none_or(|(t, _)| start > *t) {
                    newest = Some((start, id.to_string()));
                }
                if memory.as_ref().and_then(|m| m.newest_seen.as_deref()) == Some(id) {
                    reached_marker = true;
                }
                // An execution listed twice (on one page or across pages) is one execution:
                // one stop per execution per sweep.
                if !seen.insert(id.to_string()) {
                    continue;
                }
                if let Some(a) = active_from_summary(name, s, &tags) {
                    active.push(a);
                }
            }
            token = match pages.next("ListPipelineExecutions", page.next_token()) {
                Ok(next) => next,
                Err(e) => {
                    cut = Some(e);
                    None
                }
            };
            if token.is_none() {
                break;
            }
            // Past the previous sweep's newest: stop paging once the executions active then and
            // not yet seen are few enough to check one by one.
            let unseen = memory.as_ref().map_or(0, |m| {
                m.active
                    .iter()
                    .filter(|p| !seen.contains(&p.execution_id))
                    .count()
            });
            if !full && newest_first && reached_marker && unseen <= MAX_SINGLE_CHECKS {
                break;
            }
        }
        if cut.is_some() {
            // Nothing is remembered from a listing cut short: the next sweep reads it whole.
            return Ok((active, cut));
        }
        let history_exhausted = token.is_none();
        if !full
            && !history_exhausted
            && let Some(m) = &memory
        {
            for prev in m.active.iter().filter(|p| !seen.contains(&p.execution_id)) {
                if let Some(status) = self
                    .execution_status(name, &prev.execution_id, calls)
                    .await?
                {
                    active.push(ActiveExecution {
                        status,
                        tags: Arc::clone(&tags),
                        ..prev.clone()
                    });
                }
            }
        }
        let full_scan_at = match (&memory, full) {
            (Some(m), false) => m.full_scan_at,
            _ => Instant::now(),
        };
        lock(&self.inner.memory).insert(
            name.to_string(),
            Memory {
                newest_seen: newest
                    .map(|(_, id)| id)
                    .or_else(|| memory.and_then(|m| m.newest_seen)),
                active: active.clone(),
                full_scan_at,
            },
        );
        Ok((active, None))
    }

    /// The status of one execution: `Some` if it is still InProgress or Stopping, `None` if it
    /// has ended or no longer exists.
    async fn execution_status(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<Option<ActiveStatus>, ApiError> {
        match self.get_execution_status(pipeline, id, calls).await {
            Ok(status) => Ok(active_status(Some(&status))),
            Err(e) if e.kind == ErrorKind::ExecutionNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GetPipelineExecution's status of one execution (e.g. `Stopped`), with retries. Used to
    /// resolve stops left pending by a crash, and to watch escalations.
    pub async fn get_execution_status(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<PipelineExecutionStatus, ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let got = self
            .call("GetPipelineExecution", &policy, calls, || {
                let req = client
                    .get_pipeline_execution()
                    .pipeline_name(pipeline)
                    .pipeline_execution_id(id);
                async move {
                    req.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("GetPipelineExecution", e))
                }
            })
            .await
            .result?;
        got.pipeline_execution()
            .and_then(|e| e.status().cloned())
            .ok_or_else(|| ApiError {
                operation: "GetPipelineExecution",
                kind: ErrorKind::BadResponse,
                code: None,
                message: "the answer has no status".into(),
            })
    }

    /// Status and `stopTrigger.reason` of one execution. Only the listing's summaries carry
    /// the stop reason (GetPipelineExecution's answer has none), so this pages through
    /// ListPipelineExecutions, newest first, for at most `MAX_SINGLE_CHECKS` pages; `None`
    /// when the execution is not among them.
    pub async fn find_execution(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<Option<ExecutionState>, ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let mut token: Option<String> = None;
        let mut pages = Pages::default();
        for _ in 0..MAX_SINGLE_CHECKS {
            let t = token.clone();
            let page = self
                .call("ListPipelineExecutions", &policy, calls, || {
                    let req = client
                        .list_pipeline_executions()
                        .pipeline_name(pipeline)
                        .max_results(100)
                        .set_next_token(t.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("ListPipelineExecutions", e))
                    }
                })
                .await
                .result?;
            if let Some(s) = page
                .pipeline_execution_summaries()
                .iter()
                .find(|s| s.pipeline_execution_id() == Some(id))
            {
                return Ok(s.status().map(|status| ExecutionState {
                    status: status.clone(),
                    stop_reason: s
                        .stop_trigger()
                        .and_then(|t| t.reason())
                        .map(str::to_string),
                }));
            }
            token = pages.next("ListPipelineExecutions", page.next_token())?;
            if token.is_none() {
                break;
            }
        }
        Ok(None)
    }

    async fn tags(
        &self,
        name: &str,
        calls: &mut CallCounts,
    ) -> Result<Arc<BTreeMap<String, String>>, ApiError> {
        if let Some((at, tags)) = lock(&self.inner.tags).get(name)
            && at.elapsed() < self.inner.config.tag_ttl
        {
            return Ok(Arc::clone(tags));
        }
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let cached_arn = lock(&self.inner.arns).get(name).cloned();
        let arn = match cached_arn {
            Some(arn) => arn,
            None => {
                let got = self
                    .call("GetPipeline", &policy, calls, || {
                        let req = client.get_pipeline().name(name);
                        async move {
                            req.send()
                                .await
                                .map_err(|e| ApiError::from_sdk("GetPipeline", e))
                        }
                    })
                    .await
                    .result?;
                let arn = got
                    .metadata()
                    .and_then(|m| m.pipeline_arn())
                    .ok_or_else(|| ApiError {
                        operation: "GetPipeline",
                        kind: ErrorKind::BadResponse,
                        code: None,
                        message: "the answer has no pipelineArn".into(),
                    })?
                    .to_string();
                lock(&self.inner.arns).insert(name.to_string(), arn.clone());
                arn
            }
        };
        let mut tags = BTreeMap::new();
        let mut token: Option<String> = None;
        let mut pages = Pages::default();
        loop {
            let t = token.clone();
            let page = self
                .call("ListTagsForResource", &policy, calls, || {
                    let req = client
                        .list_tags_for_resource()
                        .resource_arn(&arn)
                        .set_next_token(t.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("ListTagsForResource", e))
                    }
                })
                .await
                .result?;
            for tag in page.tags() {
                tags.insert(tag.key().to_string(), tag.value().to_string());
            }
            token = pages.next("ListTagsForResource", page.next_token())?;
            if token.is_none() {
                break;
            }
        }
        let tags = Arc::new(tags);
        lock(&self.inner.tags).insert(name.to_string(), (Instant::now(), Arc::clone(&tags)));
        Ok(tags)
    }

    /// GetPipelineState: each stage in order, its inbound transition, and the executions
    /// waiting at it.
    pub async fn pipeline_state(
        &self,
        pipeline: &str,
        calls: &mut CallCounts,
    ) -> Result<Vec<StageGate>, ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let got = self
            .call("GetPipelineState", &policy, calls, || {
                let req = client.get_pipeline_state().name(pipeline);
                async move {
                    req.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("GetPipelineState", e))
                }
            })
            .await
            .result?;
        Ok(got
            .stage_states()
            .iter()
            .filter_map(|st| {
                let stage = st.stage_name()?.to_string();
                let t = st.inbound_transition_state();
                let mut waiting: Vec<String> = st
                    .inbound_executions()
                    .iter()
                    .chain(st.inbound_execution())
                    .map(|e| e.pipeline_execution_id().to_string())
                    .collect();
                waiting.sort();
                waiting.dedup();
                Some(StageGate {
                    stage,
                    enabled: t.is_none_or(|t| t.enabled()),
                    disabled_reason: t.and_then(|t| t.disabled_reason()).map(str::to_string),
                    last_changed_by: t.and_then(|t| t.last_changed_by()).map(str::to_string),
                    waiting,
                })
            })
            .collect())
    }

    /// DisableStageTransition (inbound) with `reason` (already reduced by [`gate_reason`]),
    /// or EnableStageTransition (inbound) when `reason` is `None`. Retried like every call.
    pub async fn set_inbound_transition(
        &self,
        pipeline: &str,
        stage: &str,
        reason: Option<&str>,
        calls: &mut CallCounts,
    ) -> Result<(), ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.stop_retry;
        match reason {
            Some(reason) => {
                self.call("DisableStageTransition", &policy, calls, || {
                    let req = client
                        .disable_stage_transition()
                        .pipeline_name(pipeline)
                        .stage_name(stage)
                        .transition_type(StageTransitionType::Inbound)
                        .reason(reason);
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("DisableStageTransition", e))
                    }
                })
                .await
                .result?;
            }
            None => {
                self.call("EnableStageTransition", &policy, calls, || {
                    let req = client
                        .enable_stage_transition()
                        .pipeline_name(pipeline)
                        .stage_name(stage)
                        .transition_type(StageTransitionType::Inbound);
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("EnableStageTransition", e))
                    }
                })
                .await
                .result?;
            }
        }
        Ok(())
    }

    /// Stops one execution and says exactly what happened.
    pub async fn stop(&self, req: &StopRequest) -> StopReport {
        let reason = cut_chars(&req.reason, MAX_REASON_CHARS).to_string();
        let refuse = |message: String| StopReport {
            outcome: Outcome::Rejected,
            attempts: 0,
            throttled: 0,
            elapsed: Duration::ZERO,
            error: Some(ApiError::precheck("StopPipelineExecution", message)),
            cancelled: false,
            reason_sent: reason.clone(),
            calls: CallCounts::default(),
            note: None,
        };
        if !valid_pipeline_name(&req.pipeline) {
            return refuse(format!(
                "{:?} is not a pipeline name (1-100 of A-Z a-z 0-9 . @ - _)",
                req.pipeline
            ));
        }
        if !valid_execution_id(&req.execution_id) {
            return refuse(format!(
                "{:?} is not an execution id (a lower-case UUID)",
                req.execution_id
            ));
        }
        let client = &self.inner.client;
        let mut calls = CallCounts::default();
        let policy = self.inner.config.stop_retry;
        let r = self
            .call("StopPipelineExecution", &policy, &mut calls, || {
                let call = client
                    .stop_pipeline_execution()
                    .pipeline_name(&req.pipeline)
                    .pipeline_execution_id(&req.execution_id)
                    .abandon(req.abandon)
                    .reason(&reason);
                async move {
                    call.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("StopPipelineExecution", e))
                }
            })
            .await;
        let (mut outcome, mut error) = match r.result {
            Ok(_) => (Outcome::Stopped, None),
            Err(e) => {
                let outcome = match (r.cancelled, e.kind) {
                    (true, _) => Outcome::Failed,
                    (_, ErrorKind::DuplicatedStop) => Outcome::AlreadyStopping,
                    (_, ErrorKind::NotStoppable) => Outcome::NotStoppable,
                    (_, ErrorKind::PipelineNotFound) => Outcome::PipelineNotFound,
                    (_, k) if k.is_retryable() => Outcome::Failed,
                    _ => Outcome::Rejected,
                };
                (outcome, Some(e))
            }
        };
        // An attempt's answer was lost, and a later one heard "already stopping" or "not
        // stoppable" (or nothing): that may be our own first attempt's doing. Ask the execution.
        let mut note = None;
        if r.outcome_unknown
            && !r.cancelled
            && matches!(
                outcome,
                Outcome::AlreadyStopping | Outcome::NotStoppable | Outcome::Failed
            )
            && let Ok(Some(state)) = self
                .find_execution(&req.pipeline, &req.execution_id, &mut calls)
                .await
            && state.stopped_with(&reason)
        {
            note = Some(format!(
                "an earlier attempt's answer was lost; the last answer was {}, and the execution is {} with this stop's reason: the stop was ours",
                error
                    .as_ref()
                    .map_or_else(|| "a success".to_string(), ToString::to_string),
                state.status.as_str()
            ));
            outcome = Outcome::Stopped;
            error = None;
        }
        StopReport {
            outcome,
            attempts: r.attempts,
            throttled: r.throttled,
            elapsed: r.elapsed,
            error,
            cancelled: r.cancelled,
            reason_sent: reason,
            calls,
            note,
        }
    }
}

fn active_status(status: Option<&PipelineExecutionStatus>) -> Option<ActiveStatus> {
    match status? {
        PipelineExecutionStatus::InProgress => Some(ActiveStatus::InProgress),
        PipelineExecutionStatus::Stopping => Some(ActiveStatus::Stopping),
        _ => None,
    }
}

fn active_from_summary(
    pipeline: &str,
    s: &PipelineExecutionSummary,
    tags: &Arc<BTreeMap<String, String>>,
) -> Option<ActiveExecution> {
    Some(ActiveExecution {
        pipeline: pipeline.to_string(),
        execution_id: s.pipeline_execution_id()?.to_string(),
        status: active_status(s.status())?,
        start_time: to_utc(s.start_time()),
        rollback: s.execution_type() == Some(&ExecutionType::Rollback),
        trigger: s
            .trigger()
            .and_then(|t| t.trigger_type())
            .map(|t| t.as_str().to_string()),
        stop_reason: s
            .stop_trigger()
            .and_then(|t| t.reason())
            .map(str::to_string),
        tags: Arc::clone(tags),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prechecks_follow_the_model_patterns() {
        assert!(valid_pipeline_name("prod-web_1.0@x"));
        assert!(!valid_pipeline_name(""));
        assert!(!valid_pipeline_name("bad name"));
        assert!(!valid_pipeline_name(&"a".repeat(101)));
        assert!(valid_execution_id("3f2a0c1e-0000-4000-8000-00000000abcd"));
        assert!(!valid_execution_id("3F2A0C1E-0000-4000-8000-00000000ABCD"));
        assert!(!valid_execution_id("3f2a0c1e00000-4000-8000-00000000abcd"));
    }

    #[test]
    fn gate_reasons_keep_to_the_model_alphabet_and_300_characters() {
        assert_eq!(
            gate_reason("Weekend freeze until 2026-11-30T07:00:00Z: prod_web/{x}"),
            "Weekend freeze until 2026-11-30T07 00 00Z prod web x"
        );
        assert_eq!(gate_reason("ünïcødé"), "n c d");
        assert_eq!(gate_reason(":::"), "stopd");
        assert_eq!(gate_reason(&"a".repeat(400)).len(), 300);
    }

    #[test]
    fn reason_cut_on_a_character_boundary() {
        let s = "é".repeat(250);
        assert_eq!(cut_chars(&s, 200).chars().count(), 200);
        assert_eq!(cut_chars("short", 200), "short");
    }
}
