//! [`Core`] itself: one account and region's client, rate limiter, retry policies and caches,
//! and the one way every request goes out ([`Core::call`]: the shared bound on requests in
//! flight, the rate limiter and the retry policy, counted by operation).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_codepipeline::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::ratelimit::RateLimiter;
use crate::retry::{Attempted, RetryPolicy, retry};
use crate::types::{ActiveExecution, CallCounts};

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

/// What discovery remembers of a pipeline between sweeps.
#[derive(Debug, Clone)]
pub(super) struct Memory {
    /// The newest execution id seen at the last sweep.
    pub(super) newest_seen: Option<String>,
    /// The executions that were active at the last sweep.
    pub(super) active: Vec<ActiveExecution>,
    /// When the history was last read to its end.
    pub(super) full_scan_at: Instant,
}

/// Discovery and stops against one account and region.
#[derive(Debug, Clone)]
pub struct Core {
    /// Shared state; `Core` is cheap to clone into tasks.
    pub(super) inner: Arc<Inner>,
}

/// What events said of one pipeline since it was last listed (`known`).
#[derive(Debug, Clone, Default)]
pub(super) struct Heard {
    /// Executions announced and re-read InProgress, by id.
    pub(super) running: HashMap<String, ActiveExecution>,
    /// Executions that ended, are stopping, or were stopped by stopd.
    pub(super) gone: std::collections::HashSet<String>,
}

/// Tags of one pipeline and when they were fetched.
pub(super) type CachedTags = (Instant, Arc<BTreeMap<String, String>>);

#[derive(Debug)]
pub(super) struct Inner {
    /// The SDK client (its own retries off).
    pub(super) client: Client,
    /// Per-operation pacing.
    pub(super) limiter: RateLimiter,
    /// Tuning.
    pub(super) config: CoreConfig,
    /// Fires on shutdown: backoffs and attempts end at once.
    pub(super) cancel: CancellationToken,
    /// Per pipeline: what the last sweep saw.
    pub(super) memory: Mutex<HashMap<String, Memory>>,
    /// Per pipeline: ARN (never changes for a name).
    pub(super) arns: Mutex<HashMap<String, String>>,
    /// Per pipeline: tags and when they were fetched.
    pub(super) tags: Mutex<HashMap<String, CachedTags>>,
    /// The account's name (`default`: the ambient credentials' account).
    pub(super) account: Arc<str>,
    /// The region the client calls.
    pub(super) region: Arc<str>,
    /// The SSM client (Change Calendars), once given.
    pub(super) ssm: std::sync::OnceLock<aws_sdk_ssm::Client>,
    /// The account's 12-digit id, when known (an assumed role's): a Change Calendar's ARN
    /// names the account it is asked in by it.
    pub(super) account_id: std::sync::OnceLock<String>,
    /// What events said since each pipeline was last listed (see `known`).
    pub(super) heard: Mutex<HashMap<String, Heard>>,
    /// Executions a stop was claimed for, and when (see `known`): the sweep and the event
    /// consumer never both stop one.
    pub(super) claims: Mutex<HashMap<String, Instant>>,
}

/// Locks a cache; a task that panicked holding it leaves nothing half-written that matters.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// Discovery and stops over this client. `cancel` ends backoffs and attempts on shutdown.
    /// The account is named `account` (the daemon names the ambient one `default`); the region is the
    /// client's.
    pub fn new(
        client: Client,
        limiter: RateLimiter,
        config: CoreConfig,
        cancel: CancellationToken,
        account: &str,
    ) -> Core {
        let region = client
            .config()
            .region()
            .map(ToString::to_string)
            .unwrap_or_default();
        Core::new_at(client, limiter, config, cancel, account, &region)
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
                ssm: std::sync::OnceLock::new(),
                account_id: std::sync::OnceLock::new(),
                heard: Mutex::new(HashMap::new()),
                claims: Mutex::new(HashMap::new()),
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

    /// One call of `op`, retried under `policy`: each attempt waits for the shared bound on
    /// requests in flight (if any) and the operation's rate limiter; requests are counted in
    /// `counts`.
    pub(super) async fn call<T, F, Fut>(
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
}
