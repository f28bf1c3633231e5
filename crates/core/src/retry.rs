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
    /// Largest backoff ceiling after a throttle. The rate limiter paces the operation (and
    /// slows it down when the rate is the cause); the backoff only spreads the retries out, so
    /// it stays short: a throttle that comes whatever the rate costs one short wait, not a
    /// doubling one (seen: every other call throttled made a 0.3 s sweep take 72 s).
    pub throttle_cap: Duration,
    /// Give up when the next attempt could not start before this much time spent on attempts
    /// and backoffs. Time spent waiting for the rate limiter (pacing) does not count: pacing
    /// is the service's pace, not a failure, and a call waits for its turn however long.
    pub deadline: Duration,
    /// Give up after this many attempts, whatever the deadline. Throttled attempts do not
    /// count: they were not served, and the limiter slows down for them.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            throttle_cap: Duration::from_millis(100),
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

    /// After a throttle: full jitter, as [`RetryPolicy::backoff`], under [`RetryPolicy::throttle_cap`].
    pub fn throttle_backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        RetryPolicy {
            cap: self.cap.min(self.throttle_cap),
            ..*self
        }
        .backoff(attempt, rng)
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
    /// An attempt before the last ended without a knowable outcome (timed out, connection
    /// lost, unreadable answer, 5xx): the request may have been carried out, so what later
    /// attempts say ("already stopping") can be the first attempt's own effect.
    pub outcome_unknown: bool,
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
    // Time spent pacing (waiting for the rate limiter) is left out of the deadline.
    let mut paced = Duration::ZERO;
    let (mut attempts, mut throttled) = (0u32, 0u32);
    let (mut outcome_unknown, mut expired) = (false, false);
    let cancelled_error = || ApiError {
        operation,
        kind: ErrorKind::Client,
        code: Some("Cancelled".into()),
        message: "stopd is shutting down".into(),
    };
    let done = |result, attempts, throttled, cancelled, outcome_unknown| Attempted {
        result,
        attempts,
        throttled,
        elapsed: started.elapsed(),
        cancelled,
        outcome_unknown,
    };
    loop {
        let pacing_from = Instant::now();
        // A cancelled token (a shutdown's bound, a leader that lost its lease) starts no call:
        // both selects look at it first (`biased`), so an attempt never goes out after it fired.
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                return done(Err(cancelled_error()), attempts, throttled, true, outcome_unknown);
            }
            sent = limiter.acquire(operation) => sent,
        };
        paced += pacing_from.elapsed();
        attempts += 1;
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                return done(Err(cancelled_error()), attempts, throttled, true, outcome_unknown);
            }
            r = call() => r,
        };
        let err = match outcome {
            Ok(v) => {
                limiter.on_success(operation, sent);
                return done(Ok(v), attempts, throttled, false, outcome_unknown);
            }
            Err(e) => e,
        };
        if err.kind == ErrorKind::Throttled {
            throttled += 1;
            limiter.on_throttle(operation, sent);
        }
        let retry_expired = err.kind == ErrorKind::ExpiredToken && !expired;
        expired |= err.kind == ErrorKind::ExpiredToken;
        let wait = if err.kind == ErrorKind::Throttled {
            policy.throttle_backoff(attempts - 1, &mut rand::rng())
        } else {
            policy.backoff(attempts - 1, &mut rand::rng())
        };
        let spent = started.elapsed().saturating_sub(paced);
        let out_of_budget = attempts - throttled >= policy.max_attempts
            || attempts >= policy.max_attempts.saturating_mul(10)
            || spent + wait >= policy.deadline;
        let retryable = match err.kind {
            ErrorKind::ExpiredToken => retry_expired,
            k => k.is_retryable(),
        };
        if !retryable || out_of_budget {
            return done(Err(err), attempts, throttled, false, outcome_unknown);
        }
        outcome_unknown |= err.kind.outcome_unknown();
        tracing::debug!(operation, attempt = attempts, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::select! {
            () = cancel.cancelled() => {
                return done(Err(err), attempts, throttled, true, outcome_unknown);
            }
            () = tokio::time::sleep(wait) => {}
        }
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
            || async { Err::<(), _>(err(ErrorKind::Server)) },
        )
        .await;
        assert!(r.result.is_err());
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(r.attempts > 3);
        // A storm of throttles ends too: the limiter paces it (not counted), the backoffs
        // count, and attempts are capped at ten times the budget.
        let r = retry(
            &policy,
            &limiter,
            "Op",
            &CancellationToken::new(),
            || async { Err::<(), _>(err(ErrorKind::Throttled)) },
        )
        .await;
        assert_eq!(r.result.unwrap_err().kind, ErrorKind::Throttled);
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

    /// Pacing is the service's pace, not a failure: a call that waits 10 s for its turn under a
    /// 1 s deadline still goes out. (Seen: under throttling the client gave up while pacing and
    /// left most pipelines of a sweep unread.)
    #[tokio::test(start_paused = true)]
    async fn pacing_does_not_count_against_the_deadline() {
        use crate::ratelimit::LimiterConfig;
        let limiter = RateLimiter::new(LimiterConfig {
            initial_rps: Some(0.1),
            min_rps: 0.1,
            increase: 0.0,
            ..LimiterConfig::default()
        });
        let policy = RetryPolicy {
            deadline: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let cancel = CancellationToken::new();
        let started = Instant::now();
        for _ in 0..3 {
            let r = retry(&policy, &limiter, "Op", &cancel, || async { Ok(1) }).await;
            assert_eq!((r.result.unwrap(), r.attempts), (1, 1));
        }
        // One from the burst, then two paced at about 0.1/s: ten times the deadline at least.
        assert!(
            started.elapsed() >= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_attempts_do_not_use_up_the_attempt_budget() {
        let limiter = RateLimiter::unlimited();
        let policy = RetryPolicy {
            max_attempts: 3,
            deadline: Duration::from_secs(3_600),
            ..RetryPolicy::default()
        };
        let n = AtomicU32::new(0);
        // Every other answer throttled, as under a tight rate limit, then a success.
        let r = retry(
            &policy,
            &limiter,
            "Op",
            &CancellationToken::new(),
            || async {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0 | 2 | 4 | 6 => Err(err(ErrorKind::Throttled)),
                    1 | 3 => Err(err(ErrorKind::Server)),
                    _ => Ok(()),
                }
            },
        )
        .await;
        assert!(r.result.is_ok(), "{:?}", r.result);
        // Old budget: given up at the third attempt. Now: three throttles, two 5xx, a success.
        assert_eq!((r.attempts, r.throttled), (6, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_token_is_tried_once_more_then_given_up() {
        let limiter = RateLimiter::unlimited();
        let cancel = CancellationToken::new();
        let r = retry(&RetryPolicy::default(), &limiter, "Op", &cancel, || async {
            Err::<(), _>(err(ErrorKind::ExpiredToken))
        })
        .await;
        assert_eq!(r.attempts, 2);
        let n = AtomicU32::new(0);
        let r = retry(&RetryPolicy::default(), &limiter, "Op", &cancel, || async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(err(ErrorKind::ExpiredToken))
            } else {
                Ok(())
            }
        })
        .await;
        assert!(r.result.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_marks_the_outcome_unknown() {
        let limiter = RateLimiter::unlimited();
        let cancel = CancellationToken::new();
        let n = AtomicU32::new(0);
        let r = retry(&RetryPolicy::default(), &limiter, "Op", &cancel, || async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err::<(), _>(err(ErrorKind::Timeout))
            } else {
                Err(err(ErrorKind::DuplicatedStop))
            }
        })
        .await;
        assert_eq!(r.result.unwrap_err().kind, ErrorKind::DuplicatedStop);
        assert!(r.outcome_unknown);
        let r = retry(&RetryPolicy::default(), &limiter, "Op", &cancel, || async {
            Err::<(), _>(err(ErrorKind::DuplicatedStop))
        })
        .await;
        assert!(!r.outcome_unknown);
    }
}
