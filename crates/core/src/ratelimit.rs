//! A client-side request-rate limiter per operation that learns the service's limit.
//!
//! AWS publishes no request-rate quota for CodePipeline, and throttling is per operation. So each
//! operation starts unpaced; the first `ThrottlingException` sets its rate to a fraction of what
//! was being sent, each further throttle cuts it multiplicatively, and each success raises it
//! additively (AIMD, as TCP does). A sweep of thousands of pipelines thus settles just under the
//! service's limit instead of throttling itself into failure.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Tuning of the limiter.
#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    /// Starting rate per operation (requests/s); `None` starts unpaced.
    pub initial_rps: Option<f64>,
    /// Never pace slower than this.
    pub min_rps: f64,
    /// Never pace faster than this once pacing (and stop pacing above it).
    pub max_rps: f64,
    /// On a throttle the rate is multiplied by this.
    pub decrease: f64,
    /// On a success the rate grows by this fraction of itself.
    pub increase: f64,
    /// Requests that may be sent at once after an idle spell.
    pub burst: f64,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            initial_rps: None,
            min_rps: 0.5,
            max_rps: 10_000.0,
            decrease: 0.7,
            increase: 0.01,
            burst: 1.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// Current pace; `None` when unpaced.
    rate: Option<f64>,
    /// Tokens available now.
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
    /// Send times in the last second, to estimate the rate that met the first throttle.
    recent: VecDeque<Instant>,
    /// When the rate was last cut: throttles of requests already in flight do not cut again.
    last_cut: Option<Instant>,
}

/// Per-operation adaptive token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tuning.
    config: LimiterConfig,
    /// Buckets by operation name.
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl RateLimiter {
    /// A limiter with this tuning.
    pub fn new(config: LimiterConfig) -> RateLimiter {
        RateLimiter {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter that starts unpaced (it still learns from throttling).
    pub fn unlimited() -> RateLimiter {
        RateLimiter::new(LimiterConfig::default())
    }

    fn with<R>(&self, op: &'static str, f: impl FnOnce(&mut Bucket, &LimiterConfig) -> R) -> R {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let config = self.config;
        let bucket = buckets.entry(op).or_insert_with(|| Bucket {
            rate: config.initial_rps,
            tokens: config.burst,
            refilled: Instant::now(),
            recent: VecDeque::new(),
            last_cut: None,
        });
        f(bucket, &config)
    }

    /// Waits until a request of `op` may be sent.
    pub async fn acquire(&self, op: &'static str) {
        loop {
            let wait = self.with(op, |b, c| {
                let now = Instant::now();
                while b
                    .recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
                {
                    b.recent.pop_front();
                }
                let Some(rate) = b.rate else {
                    b.recent.push_back(now);
                    return None;
                };
                b.tokens = (b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate)
                    .min(c.burst.max(1.0));
                b.refilled = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    b.recent.push_back(now);
                    None
                } else {
                    // At least 1 ms (the timer's resolution): a wait truncated to 0 ns would
                    // leave the token count just short of 1 and spin without time passing
                    // (forever, under a paused test clock).
                    Some(
                        Duration::from_secs_f64((1.0 - b.tokens) / rate)
                            .max(Duration::from_millis(1)),
                    )
                }
            });
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Records a throttled request of `op`.
    pub fn on_throttle(&self, op: &'static str) {
        self.with(op, |b, c| {
            let now = Instant::now();
            // Requests sent at the old pace come back throttled together: cut once per interval.
            let interval =
                Duration::from_secs_f64(1.0 / b.rate.unwrap_or(c.max_rps).max(c.min_rps))
                    .max(Duration::from_millis(100));
            if b.last_cut.is_some_and(|t| now.duration_since(t) < interval) {
                return;
            }
            let sent = b.recent.len() as f64;
            let new = match b.rate {
                None => sent * c.decrease,
                Some(r) => r * c.decrease,
            };
            b.rate = Some(new.clamp(c.min_rps, c.max_rps));
            b.tokens = 0.0;
            b.refilled = now;
            b.last_cut = Some(now);
            tracing::debug!(operation = op, rps = b.rate, "throttled: slowing down");
        });
    }

    /// Records a successful request of `op`.
    pub fn on_success(&self, op: &'static str) {
        self.with(op, |b, c| {
            if let Some(r) = b.rate {
                let grown = r + (r * c.increase).max(0.05);
                b.rate = (grown < c.max_rps).then_some(grown);
            }
        });
    }

    /// The current pace of `op` (`None`: unpaced).
    pub fn rate(&self, op: &'static str) -> Option<f64> {
        self.with(op, |b, _| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paced_limiter_spaces_requests() {
        let l = RateLimiter::new(LimiterConfig {
            initial_rps: Some(10.0),
            increase: 0.0,
            ..LimiterConfig::default()
        });
        let start = Instant::now();
        for _ in 0..11 {
            l.acquire("Op").await;
        }
        // One from the burst, then ten at 10/s.
        let e = start.elapsed();
        assert!(
            e >= Duration::from_millis(999) && e < Duration::from_millis(1_100),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn first_throttle_paces_below_the_observed_rate_and_success_raises_it() {
        let l = RateLimiter::unlimited();
        for _ in 0..20 {
            l.acquire("Op").await;
        }
        assert_eq!(l.rate("Op"), None);
        l.on_throttle("Op");
        let r = l.rate("Op").unwrap();
        assert!((r - 14.0).abs() < 1e-9, "{r}");
        // A throttle of a request already in flight does not cut again at once.
        l.on_throttle("Op");
        assert_eq!(l.rate("Op"), Some(r));
        l.on_success("Op");
        assert!(l.rate("Op").unwrap() > r);
        // Operations are independent.
        assert_eq!(l.rate("Other"), None);
    }
}
