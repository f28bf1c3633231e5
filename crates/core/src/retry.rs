//! The one retry policy of stopd: exponential backoff with full jitter under a deadline.
//!
//! The SDK's own retries are switched off (`max_attempts = 1`, see [`crate::client`]), so an
//! attempt counted here is exactly one HTTP request.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ErrorKind};
use crate::ratelimit::RateLimiter;

/// Backoff parameters.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First backoff ceiling; doubles each attempt.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
    /// Give up when the next attempt could not start before this much time since the first.
    pub deadline: Duration,
    /// Give up after this many attempts, whatever the deadline.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base * 2^attempt))`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32 << attempt.min(20))
            .unwrap_or(self.cap)
            .min(self.cap);
        ceiling.mul_f64(rng.random::<f64>())
    }
}

/// How a retried call ended.
#[derive(Debug, Clone)]
pub struct Attempted<T> {
    /// The value, or the last error.
    pub result: Result<T, ApiError>,
    /// Requests sent.
    pub attempts: u32,
    /// Throttling answers met on the way.
    pub throttled: u32,
    /// Time from the first attempt to the end.
    pub elapsed: Duration,
    /// Cancelled (shutdown) during a backoff or an attempt.
    pub cancelled: bool,
}

/// Runs `call` until it succeeds, fails permanently, the deadline or attempt budget runs out, or
/// `cancel` fires. Every attempt first waits for the operation's rate limiter; throttling slows
/// the limiter down.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    limiter: &RateLimiter,
    operation: &'static str,
    cancel: &CancellationToken,
    mut call: F,
) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let started = Instant::now();
    let (mut attempts, mut throttled) = (0u32, 0u32);
    let cancelled_error = || ApiError {
        operation,
        kind: ErrorKind::Client,
        code: Some("Cancelled".into()),
        message: "stopd is shutting down".into(),
    };
    let mut last_error: Option<ApiError> = None;
    loop {
        // Waiting for the rate limiter counts against the deadline too.
        let remaining = policy.deadline.saturating_sub(started.elapsed());
        tokio::select! {
            () = cancel.cancelled() => {
                return Attempted { result: Err(cancelled_error()), attempts, throttled, elapsed: started.elapsed(), cancelled: true };
            }
            () = limiter.acquire(operation) => {}
            () = tokio::time::sleep(remaining) => {
                let err = last_error.unwrap_or_else(|| ApiError {
                    operation,
                    kind: ErrorKind::Throttled,
                    code: Some("ClientRateLimit".into()),
                    message: "the deadline passed while pacing requests".into(),
                });
                return Attempted { result: Err(err), attempts, throttled, elapsed: started.elapsed(), cancelled: false };
            }
        }
        attempts += 1;
        let outcome = tokio::select! {
            () = cancel.cancelled() => {
                return Attempted { result: Err(cancelled_error()), attempts, throttled, elapsed: started.elapsed(), cancelled: true };
            }
            r = call() => r,
        };
        let err = match outcome {
            Ok(v) => {
                limiter.on_success(operation);
                return Attempted {
                    result: Ok(v),
                    attempts,
                    throttled,
                    elapsed: started.elapsed(),
                    cancelled: false,
                };
            }
            Err(e) => e,
        };
        if err.kind == ErrorKind::Throttled {
            throttled += 1;
            limiter.on_throttle(operation);
        }
        let wait = policy.backoff(attempts - 1, &mut rand::rng());
        let out_of_budget =
            attempts >= policy.max_attempts || started.elapsed() + wait >= policy.deadline;
        if !err.kind.is_retryable() || out_of_budget {
            return Attempted {
                result: Err(err),
                attempts,
                throttled,
                elapsed: started.elapsed(),
                cancelled: false,
            };
        }
        tracing::debug!(operation, attempt = attempts, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::select! {
            () = cancel.cancelled() => {
                return Attempted { result: Err(err), attempts, throttled, elapsed: started.elapsed(), cancelled: true };
            }
            () = tokio::time::sleep(wait) => {}
        }
        last_error = Some(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(kind: ErrorKind) -> ApiError {
        ApiError {
            operation: "Op",
            kind,
            code: None,
            message: String::new(),
        }
    }

    #[test]
    fn backoff_is_bounded_by_the_doubling_ceiling_and_the_cap() {
        let p = RetryPolicy::default();
        let mut rng = rand::rng();
        for attempt in 0..30 {
            let b = p.backoff(attempt, &mut rng);
            let ceiling = (p.base * 2u32.pow(attempt.min(20))).min(p.cap);
            assert!(
                b < ceiling || ceiling.is_zero(),
                "{attempt}: {b:?} >= {ceiling:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_permanent_ones_are_not() {
        let limiter = RateLimiter::unlimited();
        let cancel = CancellationToken::new();
        let n = AtomicU32::new(0);
        let r = retry(&RetryPolicy::default(), &limiter, "Op", &cancel, || async {
            if n.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(err(ErrorKind::Server))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!((r.result.unwrap(), r.attempts), (7, 4));
        let r = retry(&RetryPolicy::default(), &limiter, "Op", &cancel, || async {
            Err::<(), _>(err(ErrorKind::Rejected))
        })
        .await;
        assert_eq!(r.attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_ends_a_storm_of_transient_errors() {
        let limiter = RateLimiter::unlimited();
        let policy = RetryPolicy {
            deadline: Duration::from_secs(10),
            max_attempts: 1_000,
            ..RetryPolicy::default()
        };
        let started = Instant::now();
        let r = retry(
            &policy,
            &limiter,
            "Op",
            &CancellationToken::new(),
            || async { Err::<(), _>(err(ErrorKind::Throttled)) },
        )
        .await;
        assert!(r.result.is_err());
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.throttled, r.attempts);
        assert!(r.attempts > 3);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_during_backoff_returns_promptly() {
        let limiter = RateLimiter::unlimited();
        let policy = RetryPolicy {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
            deadline: Duration::from_secs(3_600),
            ..RetryPolicy::default()
        };
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            c2.cancel();
        });
        let started = Instant::now();
        let r = retry(&policy, &limiter, "Op", &cancel, || async {
            Err::<(), _>(err(ErrorKind::Server))
        })
        .await;
        assert!(r.cancelled);
        assert!(
            started.elapsed() <= Duration::from_millis(10),
            "{:?}",
            started.elapsed()
        );
    }
}
