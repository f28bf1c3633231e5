//! Faults injected on request: per-operation rate limits (token buckets answering
//! `ThrottlingException`), scripted or random errors, latency, and dropped connections.
//!
//! Rate limits run on the machine's real clock, not the emulator's: they model what the service
//! does to a client sending requests now, whatever the emulated time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The whole fault configuration, as set through `PUT /_emulator/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// Added to every API call before it is answered.
    #[serde(default)]
    pub latency: Latency,
    /// A limit for every operation that has no entry in `rate_limits`.
    #[serde(default)]
    pub default_rate_limit: Option<RateLimit>,
    /// Per-operation limits by operation name (e.g. `ListPipelineExecutions`); each has its own
    /// bucket, whatever the scope.
    #[serde(default)]
    pub rate_limits: HashMap<String, RateLimit>,
    /// What `default_rate_limit`'s bucket covers: every operation together (`account`) or each
    /// operation apart (`operation`, the default of the plan for compatibility).
    #[serde(default)]
    pub rate_limit_scope: RateLimitScope,
    /// Scripted or random faults, tried in order; the first that fires answers the call.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// Only a fixed latency on every call (tests whose calls must overlap).
    pub fn latency(fixed: Duration) -> FaultPlan {
        FaultPlan {
            latency: Latency {
                fixed,
                jitter: Duration::ZERO,
            },
            ..FaultPlan::default()
        }
    }
}

/// What one bucket of the default rate limit covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// One bucket per operation: ListPipelineExecutions does not drain StopPipelineExecution's.
    #[default]
    Operation,
    /// One bucket for the account: every operation draws from it. AWS publishes no per-operation
    /// quota for CodePipeline, and users report throttling across operations together.
    Account,
}

/// Fixed latency plus uniform jitter.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Always added.
    #[serde(default, with = "humantime_serde")]
    pub fixed: Duration,
    /// Up to this much more, uniformly at random.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
}

/// A token bucket: `tps` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub tps: f64,
    /// Bucket size (default: `max(1, tps)`).
    #[serde(default)]
    pub burst: Option<f64>,
}

/// What a fault does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 400 `ThrottlingException: Rate exceeded`.
    Throttling,
    /// HTTP 409 `ConflictException`.
    Conflict,
    /// HTTP 500 `InternalFailure`.
    Http500,
    /// HTTP 503 `ServiceUnavailable`.
    Http503,
    /// The connection is closed without an answer.
    Drop,
    /// HTTP 400 `AccessDeniedException`: `User: ... is not authorized to perform:
    /// codepipeline:<Operation> on resource: ...`.
    AccessDenied,
    /// HTTP 403 `ExpiredTokenException`: the session credentials have expired.
    ExpiredToken,
    /// HTTP 403 `UnrecognizedClientException`: the access key or token is not valid.
    UnrecognizedClient,
    /// The call is answered normally, after `delay_ms` more.
    Delay {
        /// Extra milliseconds.
        delay_ms: u64,
    },
    /// A listing answers with the `nextToken` it was sent (or, on its first page, its own
    /// next token): a service that pages forever. Not AWS's behaviour; a test of the client.
    RepeatNextToken,
    /// A listing answers with each entry (pipelines, execution summaries) `copies` times.
    DuplicateEntries {
        /// How many times each entry appears.
        copies: u32,
    },
}

/// When a fault fires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Operation it applies to; all operations when absent.
    #[serde(default)]
    pub operation: Option<String>,
    /// Pipeline it applies to (by name in the request); all when absent.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// What happens.
    pub fault: Fault,
    /// Chance that a matching call is hit (default 1).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Only every n-th matching call is hit (n = 2: the 2nd, 4th, ...).
    #[serde(default)]
    pub every: Option<u64>,
    /// The rule expires after hitting this many calls.
    #[serde(default)]
    pub times: Option<u64>,
    /// Matching calls seen so far.
    #[serde(default)]
    pub seen: u64,
    /// Calls hit so far.
    #[serde(default)]
    pub hits: u64,
}

impl FaultRule {
    /// A rule that hits every call of `operation` with `fault`.
    pub fn new(operation: Option<&str>, fault: Fault) -> FaultRule {
        FaultRule {
            operation: operation.map(str::to_string),
            pipeline: None,
            fault,
            probability: None,
            every: None,
            times: None,
            seen: 0,
            hits: 0,
        }
    }

    /// Hits only every n-th matching call.
    pub fn every(mut self, n: u64) -> FaultRule {
        self.every = Some(n);
        self
    }

    /// Expires after `n` hits.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Hits with probability `p`.
    pub fn probability(mut self, p: f64) -> FaultRule {
        self.probability = Some(p);
        self
    }

    /// Applies only to calls naming this pipeline.
    pub fn pipeline(mut self, name: &str) -> FaultRule {
        self.pipeline = Some(name.to_string());
        self
    }

    /// Counts a call the rule matches, and whether the rule fires on it (not expired, its
    /// n-th, and drawn under its probability).
    fn fires(&mut self, rng: &mut impl Rng) -> bool {
        if self.times.is_some_and(|t| self.hits >= t) {
            return false;
        }
        self.seen += 1;
        if self
            .every
            .is_some_and(|n| n > 1 && !self.seen.is_multiple_of(n))
        {
            return false;
        }
        if self.probability.is_some_and(|p| rng.random::<f64>() >= p) {
            return false;
        }
        self.hits += 1;
        true
    }
}

/// The key of the account-wide bucket (not an operation name).
const ACCOUNT_BUCKET: &str = "*account*";

/// Takes a token from the bucket under `key`; whether there was one.
fn take(buckets: &mut HashMap<String, (f64, Instant)>, key: &str, limit: RateLimit) -> bool {
    let burst = limit.burst.unwrap_or(limit.tps.max(1.0));
    let now = Instant::now();
    let (tokens, last) = buckets.entry(key.to_string()).or_insert((burst, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * limit.tps).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

/// Live state of the fault machinery.
#[derive(Debug, Default)]
pub struct Faults {
    /// The configuration and rule counters.
    pub plan: FaultPlan,
    /// Token buckets by operation: (tokens, last refill).
    buckets: HashMap<String, (f64, Instant)>,
}

impl Faults {
    /// Replaces the plan and empties the buckets.
    pub fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
        self.buckets.clear();
    }

    /// Decides the fault (if any) for one call, updating counters and buckets.
    pub fn decide(
        &mut self,
        operation: &str,
        pipeline: Option<&str>,
        rng: &mut impl Rng,
    ) -> Option<Fault> {
        for rule in &mut self.plan.rules {
            if rule.operation.as_deref().is_some_and(|o| o != operation)
                || rule
                    .pipeline
                    .as_deref()
                    .is_some_and(|p| Some(p) != pipeline)
            {
                continue;
            }
            if rule.fires(rng) {
                return Some(rule.fault);
            }
        }
        if let Some(limit) = self.plan.rate_limits.get(operation).copied()
            && !take(&mut self.buckets, operation, limit)
        {
            return Some(Fault::Throttling);
        }
        let limit = self.plan.default_rate_limit?;
        let key = match self.plan.rate_limit_scope {
            RateLimitScope::Operation if self.plan.rate_limits.contains_key(operation) => {
                return None;
            }
            RateLimitScope::Operation => operation,
            RateLimitScope::Account => ACCOUNT_BUCKET,
        };
        (!take(&mut self.buckets, key, limit)).then_some(Fault::Throttling)
    }

    /// The fault (if any) of a rule that names `operation`: for services other than
    /// CodePipeline (SQS), which neither rules for every operation nor CodePipeline's rate
    /// limits touch.
    pub fn decide_named(&mut self, operation: &str, rng: &mut impl Rng) -> Option<Fault> {
        self.plan
            .rules
            .iter_mut()
            .filter(|r| r.operation.as_deref() == Some(operation))
            .find_map(|r| r.fires(rng).then_some(r.fault))
    }

    /// The latency to add to one call.
    pub fn latency(&self, rng: &mut impl Rng) -> Duration {
        let l = self.plan.latency;
        if l.jitter.is_zero() {
            l.fixed
        } else {
            l.fixed + l.jitter.mul_f64(rng.random::<f64>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_second_call_and_times_limit() {
        let mut f = Faults::default();
        f.set_plan(FaultPlan {
            rules: vec![
                FaultRule::new(Some("StopPipelineExecution"), Fault::Conflict)
                    .every(2)
                    .times(2),
            ],
            ..FaultPlan::default()
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let got: Vec<_> = (0..8)
            .map(|_| f.decide("StopPipelineExecution", None, &mut rng))
            .collect();
        let c = Some(Fault::Conflict);
        assert_eq!(got, vec![None, c, None, c, None, None, None, None]);
        assert_eq!(f.decide("ListPipelines", None, &mut rng), None);
    }

    #[test]
    fn empty_bucket_throttles() {
        let mut f = Faults::default();
        f.set_plan(FaultPlan {
            default_rate_limit: Some(RateLimit {
                tps: 0.001,
                burst: Some(2.0),
            }),
            ..FaultPlan::default()
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(f.decide("ListPipelines", None, &mut rng), None);
        assert_eq!(f.decide("ListPipelines", None, &mut rng), None);
        assert_eq!(
            f.decide("ListPipelines", None, &mut rng),
            Some(Fault::Throttling)
        );
        // Each operation has its own bucket.
        assert_eq!(f.decide("GetPipeline", None, &mut rng), None);
    }

    #[test]
    fn account_scope_shares_one_bucket_between_operations() {
        let mut f = Faults::default();
        f.set_plan(FaultPlan {
            default_rate_limit: Some(RateLimit {
                tps: 0.001,
                burst: Some(2.0),
            }),
            rate_limit_scope: RateLimitScope::Account,
            ..FaultPlan::default()
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(f.decide("ListPipelines", None, &mut rng), None);
        assert_eq!(f.decide("ListPipelineExecutions", None, &mut rng), None);
        assert_eq!(
            f.decide("StopPipelineExecution", None, &mut rng),
            Some(Fault::Throttling)
        );
    }
}
