//! Event-driven enforcement: the consumer of the `[events]` queue, which an EventBridge rule
//! fills with CodePipeline's "Pipeline Execution State Change" events.
//!
//! Events are triggers, never truth (EventBridge delivers CodePipeline's events on a
//! best-effort basis): each one re-reads its execution and is decided as a sweep would decide
//! it ([`decide`]), while the periodic sweep keeps reconciling what events missed. A message is
//! deleted once its decision is recorded (at-least-once: a crash redelivers it, and deciding
//! again is harmless: the execution is then Stopping, and nothing is done). A malformed,
//! foreign, stale or unknown-account message is deleted and counted, never fatal. A poll that
//! fails is an ERROR, retried with backoff; the sweeps go on. An outage ([`outage`]: at once
//! for a failure retrying cannot mend, such as access denied; after [`outage::OUTAGE_POLLS`]
//! failed polls in a row or [`outage::OUTAGE_AFTER`] otherwise, so that one throttle or 5xx
//! pages no one) is a health problem (`/healthz`) and is recorded once in the lifecycle log
//! (`events_failed`, which is notified, and `events_resumed`), judged against the log, not the
//! process: a daemon restarted in a loop against a broken queue, or a new leader, records (and
//! notifies) nothing new.
//!
//! The consumer is a task that runs until its `CancellationToken` fires, and can be started
//! again (leadership: only the leader consumes).
//!
//! - [`message`]: a message body read into typed values (pure).
//! - [`decide`](mod@decide): one execution event routed, re-read, decided and stopped.
//! - [`outage`]: when failed polls are an outage (pure).

pub mod decide;
pub mod message;
pub mod outage;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use stopd_audit::Store;
use stopd_core::CallCounts;
use stopd_core::queue::{EventQueue, MAX_BATCH, MAX_WAIT};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::runtime::metrics::Metrics;
pub use decide::{Handled, Inputs, Routes};
use message::Message;
use outage::{Judged, Poll, Streak};

/// The first wait after the queue could not be read; doubled each time, up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two tries at a queue that cannot be read.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The queue's depth is asked at most this often (an idle queue is long-polled every 20 s).
const DEPTH_EVERY: Duration = Duration::from_secs(60);

/// How long a received message stays invisible beyond the stop deadline: long enough for the
/// slowest decision (a re-read, a stop retried to its deadline, two audit writes).
const VISIBILITY_MARGIN: Duration = Duration::from_secs(60);

/// The event consumer: cheap to clone, started with [`Consumer::run`] as often as needed.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The queue.
    pub queue: EventQueue,
    /// The policy, engines and routes in force (a reload sends new ones).
    pub inputs: watch::Receiver<Arc<Inputs>>,
    /// The audit log.
    pub store: Store,
    /// What time it is: decisions are made, and recorded, by it.
    pub clock: SharedClock,
    /// `[metrics]`, when on.
    pub metrics: Option<Arc<Metrics>>,
    /// How long a received message stays invisible (the stop deadline and a margin).
    pub visibility: Duration,
}

/// What became of one message: the `result` of `stopd_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// A stop was decided and made.
    Acted,
    /// Nothing to do (ended, out of scope, not running, allowed, a duplicate, foreign).
    Ignored,
    /// Not an event.
    Malformed,
    /// Of an account and region not configured.
    UnknownAccount,
}

impl Fate {
    /// The metric's label (one of `metrics::events::EVENT_RESULTS`).
    fn label(self) -> &'static str {
        match self {
            Fate::Acted => "acted",
            Fate::Ignored => "ignored",
            Fate::Malformed => "malformed",
            Fate::UnknownAccount => "unknown_account",
        }
    }
}

/// What one batch came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Messages received.
    pub received: usize,
    /// By what became of them: acted, ignored, malformed, unknown_account.
    pub acted: usize,
    /// Nothing to do.
    pub ignored: usize,
    /// Not an event.
    pub malformed: usize,
    /// Of an account and region not configured.
    pub unknown_account: usize,
    /// Left on the queue (to be received again): the decision could not be made or recorded.
    pub kept: usize,
}

impl Consumer {
    /// The visibility timeout for a stop deadline.
    pub fn visibility_for(stop_deadline: Duration) -> Duration {
        stop_deadline + VISIBILITY_MARGIN
    }

    /// Long-polls the queue and decides what it receives until `cancel` fires. A batch being
    /// decided is finished (its stops made and recorded) before it returns.
    pub async fn run(&self, cancel: CancellationToken) {
        tracing::info!(queue = %self.queue.url(), "consuming execution events");
        let mut backoff = FIRST_BACKOFF;
        // What `status` was last told: the error, and when.
        let mut recorded: Option<(Option<String>, tokio::time::Instant)> = None;
        let mut last_received = None;
        let mut received_unrecorded = false;
        // Whether the lifecycle log says the queue cannot be read (`events_failed` latest), as
        // last read or written; `None` until then. The log, not this, decides: a restart or a
        // new leader starts from `None` and finds an outage already recorded.
        let mut logged_failed: Option<bool> = None;
        // The failed polls in a row: when they are an outage.
        let mut streak = Streak::default();
        loop {
            let got = tokio::select! {
                () = cancel.cancelled() => break,
                got = self.queue.receive(MAX_BATCH, MAX_WAIT, self.visibility) => got,
            };
            let mut poll = Poll::Read;
            let error = match got {
                Err(e) => {
                    let text = e.explain();
                    tracing::error!(queue = %self.queue.url(), error = %text, iam_action = %e.iam_action(),
                        "the event queue cannot be read: executions are enforced by the sweeps alone until it can");
                    poll = if e.kind.is_retryable() {
                        Poll::Transient
                    } else {
                        Poll::Permanent
                    };
                    Some(text)
                }
                Ok(messages) => {
                    if recorded.as_ref().is_some_and(|(e, _)| e.is_some()) {
                        tracing::info!(queue = %self.queue.url(), "the event queue can be read again");
                    }
                    backoff = FIRST_BACKOFF;
                    if !messages.is_empty() {
                        let now = self.clock.now();
                        last_received = Some(now);
                        received_unrecorded |= recorded
                            .as_ref()
                            .is_none_or(|(_, at)| at.elapsed() >= DEPTH_EVERY);
                        if let Some(m) = &self.metrics {
                            m.events.received(now);
                        }
                        let batch = self.batch(messages).await;
                        tracing::debug!(?batch, "events decided");
                    }
                    None
                }
            };
            // A blip (a failed poll that is not yet an outage) changes neither the health nor
            // the log: the health problem and `events_failed` wait for an outage.
            let judged = streak.judge(self.clock.now(), poll);
            if judged != Judged::Blip {
                let outage = error.as_deref().filter(|_| judged == Judged::Outage);
                if let Some(m) = &self.metrics {
                    m.events.queue_error(outage.map(str::to_owned));
                }
                if logged_failed != Some(outage.is_some()) {
                    logged_failed = self.record_readability(outage).await.or(logged_failed);
                }
            }
            // `status` is told when the queue's readability changes, when messages come after
            // a quiet minute, and otherwise once every DEPTH_EVERY (with the depth).
            let due = match &recorded {
                None => true,
                Some((was, at)) => {
                    *was != error || received_unrecorded || at.elapsed() >= DEPTH_EVERY
                }
            };
            if due {
                self.record(last_received, error.as_deref()).await;
                recorded = Some((error.clone(), tokio::time::Instant::now()));
                received_unrecorded = false;
            }
            if error.is_some() {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tracing::info!(queue = %self.queue.url(), "no longer consuming execution events");
    }

    /// Records in the lifecycle log that the queue cannot be read (`events_failed`, the outbox
    /// of the `events_failed` notification) or can again (`events_resumed`), if the log's
    /// latest says otherwise (of any node: one record per outage, whatever restarts and leader
    /// changes). Returns whether the log now says it cannot; `None` (a WARN) when that could
    /// not be recorded: the next poll tries again.
    async fn record_readability(&self, error: Option<&str>) -> Option<bool> {
        match self
            .store
            .record_events_state(self.clock.now(), self.queue.url(), error)
            .await
        {
            Ok(recorded) => {
                if let Some(event) = recorded {
                    tracing::debug!(queue = %self.queue.url(), %event, "recorded in the lifecycle log");
                }
                Some(error.is_some())
            }
            Err(e) => {
                tracing::warn!(queue = %self.queue.url(), error = %format!("{e:#}"),
                    "cannot record the event queue's readability in the audit log (events_failed, events_resumed): tried again at the next poll");
                None
            }
        }
    }

    /// Tells `stopd status` (through the audit database) and the metrics how the queue is:
    /// the last message received, its depth (asked now, when it can be read), the error.
    async fn record(
        &self,
        last_received: Option<chrono::DateTime<chrono::Utc>>,
        error: Option<&str>,
    ) {
        let depth = match error {
            Some(_) => None,
            None => self.queue.depth().await.ok(),
        };
        if let (Some(n), Some(m)) = (depth, &self.metrics) {
            m.events.depth(n);
        }
        if let Err(e) = self
            .store
            .record_event_queue(
                self.queue.url(),
                self.clock.now(),
                last_received,
                depth,
                error,
            )
            .await
        {
            tracing::warn!(error = %format!("{e:#}"), "cannot record the event queue's state for `stopd status`");
        }
    }

    /// Decides one batch and deletes what was decided; returns what became of it.
    pub async fn batch(&self, messages: Vec<stopd_core::queue::QueueMessage>) -> Batch {
        let inputs = Arc::clone(&self.inputs.borrow());
        let now = self.clock.now();
        let mut out = Batch {
            received: messages.len(),
            ..Batch::default()
        };
        let mut delete = Vec::new();
        let mut results: Vec<(Fate, Option<chrono::DateTime<chrono::Utc>>)> = Vec::new();
        let mut to_decide = Vec::new();
        // One decision per execution per batch, however often the batch repeats its events
        // (a duplicate delivery, or STARTED and RESUMED together).
        let mut seen = HashSet::new();
        for m in messages {
            match message::parse(&m.body) {
                Message::Malformed(why) => {
                    tracing::warn!(message = %m.id, reason = %why, "a message on the event queue is not an event: deleted");
                    results.push((Fate::Malformed, None));
                    delete.push(m.handle);
                }
                Message::Foreign => {
                    tracing::debug!(message = %m.id, "an event of another kind: deleted");
                    results.push((Fate::Ignored, None));
                    delete.push(m.handle);
                }
                Message::Execution(e) => {
                    if e.state.may_run() && !seen.insert(e.execution_id.clone()) {
                        results.push((Fate::Ignored, Some(e.time)));
                        delete.push(m.handle);
                        continue;
                    }
                    to_decide.push((m, e));
                }
            }
        }
        // What every decision shares: the file's rules with the ad-hoc freezes in force, and
        // the break-glass exemptions (read from the audit log, as a sweep reads them).
        let shared = if to_decide.iter().any(|(_, e)| e.state.may_run()) {
            let effective =
                crate::runtime::freezes::effective_policy(&self.store, &inputs.policy, now).await;
            let extra = self.store.active_exemptions(now).await;
            match (effective, extra) {
                (Ok(p), Ok(x)) => Some((p, Arc::new(x))),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read ad-hoc freezes or exemptions: the events are left on the queue");
                    out.kept += to_decide.len();
                    to_decide.clear();
                    None
                }
            }
        } else {
            Some((Arc::clone(&inputs.policy), Arc::new(Vec::new())))
        };
        let mut tasks = JoinSet::new();
        if let Some((effective, extra)) = shared {
            for (m, e) in to_decide {
                let (inputs, store, clock) = (
                    Arc::clone(&inputs),
                    self.store.clone(),
                    SharedClock::clone(&self.clock),
                );
                let (effective, extra) = (Arc::clone(&effective), Arc::clone(&extra));
                tasks.spawn(async move {
                    let mut calls = CallCounts::default();
                    let handled = decide::decide(
                        &inputs,
                        &store,
                        clock.as_ref(),
                        &effective,
                        &extra,
                        &e,
                        &mut calls,
                    )
                    .await;
                    (m, e, handled)
                });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((m, e, handled)) = joined else {
                tracing::error!(
                    "an event's decision failed (a bug: please report it); it stays on the queue"
                );
                out.kept += 1;
                continue;
            };
            match handled {
                Ok(h) => {
                    let result = match &h {
                        Handled::Acted => Fate::Acted,
                        Handled::Ignored(why) => {
                            tracing::debug!(pipeline = %e.pipeline, execution = %e.execution_id, reason = why, "event: nothing to do");
                            Fate::Ignored
                        }
                        Handled::UnknownAccount => {
                            tracing::warn!(account = %e.account, region = %e.region, pipeline = %e.pipeline,
                                "an event of an account and region stopd is not configured for: deleted");
                            Fate::UnknownAccount
                        }
                    };
                    results.push((result, Some(e.time)));
                    delete.push(m.handle);
                }
                Err(why) => {
                    tracing::warn!(pipeline = %e.pipeline, execution = %e.execution_id, error = %why,
                        "an event could not be decided: it stays on the queue and comes back");
                    out.kept += 1;
                }
            }
        }
        let decided_at = self.clock.now();
        for (result, time) in &results {
            match result {
                Fate::Acted => out.acted += 1,
                Fate::Malformed => out.malformed += 1,
                Fate::UnknownAccount => out.unknown_account += 1,
                Fate::Ignored => out.ignored += 1,
            }
            if let Some(m) = &self.metrics {
                m.events.count(result.label());
                if let Some(t) = time {
                    m.events
                        .lag((decided_at - *t).num_milliseconds() as f64 / 1e3);
                }
            }
        }
        // Deleted only once decided and recorded: a crash before this redelivers them.
        for chunk in delete.chunks(MAX_BATCH) {
            match self.queue.delete(chunk).await {
                Ok(refused) if refused.is_empty() => {}
                Ok(refused) => {
                    tracing::warn!(
                        refused = refused.len(),
                        "the queue refused to delete some messages: they come back, and are decided again"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e.explain(), "cannot delete decided messages: they come back, and are decided again");
                }
            }
        }
        out
    }
}

/// The event queue's client for `cfg`: the ambient credentials, at `sqs_endpoint_url` or
/// `endpoint_url`, in the queue's region (from its URL) or `[aws] region`.
pub async fn queue(cfg: &crate::config::Config) -> Option<EventQueue> {
    let events = cfg.events.as_ref()?;
    let client = stopd_core::build_sqs_client(
        &stopd_core::ClientConfig {
            region: cfg.aws.region.clone(),
            profile: cfg.aws.profile.clone(),
            endpoint_url: cfg.aws.endpoint_url.clone(),
            static_credentials: cfg.static_credentials.clone(),
            sqs_endpoint_url: cfg.aws.sqs_endpoint_url.clone(),
            ..stopd_core::ClientConfig::default()
        },
        events.region.as_deref(),
    )
    .await;
    Some(EventQueue::new(client, &events.queue_url))
}

/// What `run` keeps to hand the consumer the policy and engines in force after a reload.
#[derive(Debug)]
pub struct Feed {
    /// Where new inputs go.
    tx: watch::Sender<Arc<Inputs>>,
    /// `run --dry-run` (the file's `[daemon] dry_run` is read at each update).
    dry_run_flag: bool,
}

impl Feed {
    /// The policy and engines of `cfg` (after a reload).
    pub fn update(&self, cfg: &crate::config::Config, cores: &Arc<Vec<stopd_core::Core>>) {
        self.tx
            .send_replace(Arc::new(inputs(cfg, cores, self.dry_run_flag)));
    }
}

fn inputs(
    cfg: &crate::config::Config,
    cores: &Arc<Vec<stopd_core::Core>>,
    dry_run_flag: bool,
) -> Inputs {
    Inputs {
        policy: Arc::clone(&cfg.policy),
        cores: Arc::clone(cores),
        dry_run: dry_run_flag || cfg.daemon.dry_run,
        routes: Routes::new(cfg, cores),
    }
}

/// With `[events]`: the consumer (not started) and the feed that keeps its inputs current.
pub async fn prepare(
    cfg: &crate::config::Config,
    cores: &Arc<Vec<stopd_core::Core>>,
    store: &Store,
    clock: &SharedClock,
    dry_run_flag: bool,
) -> Option<(Feed, Consumer)> {
    let queue = queue(cfg).await?;
    let (tx, rx) = watch::channel(Arc::new(inputs(cfg, cores, dry_run_flag)));
    Some((
        Feed { tx, dry_run_flag },
        Consumer {
            queue,
            inputs: rx,
            store: store.clone(),
            clock: SharedClock::clone(clock),
            metrics: None,
            visibility: Consumer::visibility_for(cfg.daemon.stop_deadline),
        },
    ))
}
