//! A client-side request-rate limiter per operation that learns the service's limit, and tells
//! throttles caused by our rate from throttles that come whatever the rate.
//!
//! AWS publishes no request-rate quota for CodePipeline, and throttling is per operation. So each
//! operation starts unpaced, and stays unpaced until a window of answers blames the rate: unpaced
//! is judged as a pace of [`LimiterConfig::max_rps`], so a window served below the baseline is
//! cut (to what was sent × served share) and verified like any pace, and one served under a
//! quarter of it (callers sending as fast as they can into a limit) is paced at once, at a
//! quarter of what was sent, without a verification (windows sized for a share near the baseline
//! are too short to show a rise from a share that small). The first `ThrottlingException` used to
//! pace at twice what was sent in the last second: with every other call throttled and no limit
//! that was 128/s for 64 callers that send 2,560/s, and a 0.3 s sweep took 72 s (issue 26).
//! The pace is judged by *windows* of answers, never by one answer: a
//! service may throttle a share of calls whatever the rate (seen: every other call), and a limiter
//! that slows down on every throttle (AIMD as TCP does, and the AWS SDKs' adaptive retry mode,
//! ×0.7 per throttle) sinks to its floor there, and a 20 s sweep takes most of an hour.
//!
//! **Cut and verify.** The limiter learns a *baseline*: the share of answers served when our rate
//! is not the cause of throttling (at first all of them; it drifts back toward all of them with a
//! time constant of five minutes, so a fault that has gone is forgotten).
//! - A window whose served share is below the baseline by more than its noise (two standard
//!   deviations, at least 10 %) is a suspicion. One more window at the same pace is measured as
//!   the *reference* (the suspect window was picked for being low: comparing with it would make
//!   cuts look good), and the pace is cut to what the reference says the service serves: what
//!   was sent × served share / baseline, less 5 %, keeping between half and nine tenths of the
//!   pace. A window served below a quarter of the baseline is no noise: it is cut at once, to as
//!   little as a quarter of the pace.
//! - The window at the cut pace *verifies*. If the served share rose as a rate limit predicts
//!   (significantly: z ≥ 2.5 on the two shares, or 1.5 after four windows; and at least halfway,
//!   in ratio, to what the cut gives if the rate is the cause), the cut is kept. If it did not
//!   rise, the throttles were not ours: the previous pace comes back and the served share becomes
//!   the baseline. The test is made after one, two and four windows, never in between (peeking
//!   after every answer finds a rise in noise), and a cut not kept after 10 s at its pace is
//!   undone (at a slow pace waiting costs more than throttled calls do).
//! - A window at the baseline raises the pace: halfway back to the pace of the last kept cut while
//!   below it, else by [`LimiterConfig::increase`] per second of the window, a fraction that
//!   doubles with each raise (up to doubling the pace per second) until a cut is kept; never
//!   above twice the rate the window saw answered (a pace the callers do not use says nothing).
//!   A window between the thresholds holds the pace.
//!
//! Answers to requests sent before the pace last changed are not counted: they tell of the old
//! pace. A window holds 24 answers divided by the baseline (a noisier share needs more of them; at
//! most 256), at least 8 of them served and half a second; at slow paces two seconds and 16
//! answers do. Against a simulated service (the unit tests below): a real limit alone is paced at
//! about 1.07 × with 7 % throttled; behind a random half throttled, at 1.2-1.6 × the pace that
//! is served at the limit, 98-100 % of the limit used; every other call or a random half throttled
//! with no limit in reach does not lower the pace. A simulated sweep of 300 calls by 64 callers
//! through `retry` (25 ms a call): every other call throttled costs about 7 clean runs (0.9 s
//! against 0.125 s; 14.3 s before issue 26), and behind a 10/s limit 1.3-1.4 × the floor the limit
//! sets. BENCHMARKS.md has the end-to-end numbers.

use std::collections::HashMap;
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
    /// After a window without excess throttling the pace grows by this fraction per second of
    /// the window (at least one); the fraction doubles with each raise (up to doubling the pace
    /// per second) and starts again when a cut is kept. 0: never grows.
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
            increase: 0.05,
            burst: 1.0,
        }
    }
}

/// Answers in a window when every answer is served at the baseline; divided by the baseline.
const WINDOW: f64 = 24.0;
/// At most this many answers in a window, whatever the baseline or the share served.
const MAX_WINDOW: u32 = 256;
/// A window needs this many served answers (a share of a handful says nothing).
const MIN_SERVED: u32 = 8;
/// And this much time with answers coming in.
const MIN_WINDOW_TIME: Duration = Duration::from_millis(500);
/// At slow paces a window closes after this long, with at least [`MIN_ANSWERS`] answers.
const SLOW_WINDOW_TIME: Duration = Duration::from_secs(2);
/// The fewest answers in a window closed by time.
const MIN_ANSWERS: u32 = 16;
/// A served share below the baseline by less than this is never a suspicion.
const MIN_MARGIN: f64 = 0.1;
/// Standard deviations of a window's served share that make a suspicion.
const MARGIN_SDS: f64 = 2.0;
/// The z score of the rise in served share that keeps a cut early.
const KEEP_Z: f64 = 2.5;
/// The z score that keeps it at the last checkpoint (with the rise at least halfway there), when
/// the rise expected is at most [`MILD_RISE`].
const LAST_KEEP_Z: f64 = 1.5;
/// An expected rise of the served share (a ratio) this small is slow to show.
const MILD_RISE: f64 = 1.5;
/// A verification that has not kept its cut after this long at the cut pace decides at once: at
/// a slow pace a long wait costs more than an undone cut (throttled calls).
const VERIFY_BUDGET: Duration = Duration::from_secs(10);
/// Time constant of the baseline's drift back toward "every answer served".
const BASELINE_DRIFT_SECS: f64 = 300.0;
/// A cut aims this far under what the reference window says the service serves.
const CUT_TARGET: f64 = 0.95;
/// A cut keeps at least this share of the pace.
const MIN_CUT: f64 = 0.5;
/// A window served less than this share of the baseline is cut at once, without a reference...
const FAR_BELOW: f64 = 0.25;
/// ... and may be cut to this share of the pace.
const MIN_FAR_CUT: f64 = 0.25;
/// A cut keeps at most this share of the pace.
const MAX_CUT: f64 = 0.9;

/// Answers at one pace.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Answers counted.
    answers: u32,
    /// Of which served (not throttled).
    served: u32,
    /// Time with answers coming in (idle gaps count a little, not whole).
    busy: Duration,
    /// The latest answer (or when the window opened).
    last: Instant,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            answers: 0,
            served: 0,
            busy: Duration::ZERO,
            last: now,
        }
    }

    /// The share of answers served.
    fn share(&self) -> f64 {
        f64::from(self.served) / f64::from(self.answers.max(1))
    }

    /// Answers per second.
    fn rate(&self) -> f64 {
        f64::from(self.answers) / self.busy.as_secs_f64().max(1e-3)
    }
}

/// Where a bucket is in cut and verify.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Judging the pace window by window.
    Steady,
    /// A window was served less than the baseline: measuring one more at the same pace.
    Reference,
    /// At a cut pace, to see whether the served share rose.
    Verify {
        /// The pace before the cut.
        before: f64,
        /// The reference window, at `before`.
        reference: Window,
        /// Checkpoints passed without a decision (the test is made at three, never between).
        checks: u32,
    },
}

#[derive(Debug)]
struct Bucket {
    /// Current pace; `None` when unpaced.
    rate: Option<f64>,
    /// Tokens available now.
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
    /// When the pace last changed: answers to requests sent before say nothing of this pace.
    changed: Instant,
    /// Answers at the current pace.
    window: Window,
    /// Learnt share of answers served when our rate is not the cause of throttling.
    baseline: f64,
    /// Cut and verify.
    phase: Phase,
    /// The pace before the last kept cut: the pace climbs back toward it quickly.
    ceiling: Option<f64>,
    /// The next raise of the pace, as a fraction.
    growth: f64,
}

impl Bucket {
    fn new(config: &LimiterConfig, now: Instant) -> Bucket {
        Bucket {
            rate: config.initial_rps,
            tokens: config.burst,
            refilled: now,
            changed: now,
            window: Window::new(now),
            baseline: 1.0,
            phase: Phase::Steady,
            ceiling: None,
            growth: config.increase,
        }
    }

    /// Answers in a window: a noisier served share needs more of them.
    fn window_len(&self) -> u32 {
        ((WINDOW / self.baseline).round() as u32).clamp(1, MAX_WINDOW)
    }

    /// How far below the baseline a window of `answers` must be served to be a suspicion.
    fn margin(&self, answers: u32) -> f64 {
        let sd = ((1.0 - self.baseline) / (self.baseline * f64::from(answers.max(1)))).sqrt();
        (MARGIN_SDS * sd).max(MIN_MARGIN)
    }

    /// Opens a new window; `changed`: the pace changed, so answers in flight no longer count.
    fn restart(&mut self, now: Instant, changed: bool) {
        if changed {
            self.changed = now;
        }
        self.window = Window::new(now);
    }

    /// Counts an answer to a request sent at `sent`, and acts when a window is complete.
    fn answer(&mut self, c: &LimiterConfig, op: &'static str, sent: Instant, throttled: bool) {
        let now = Instant::now();
        // Unpaced is judged as a pace of `max_rps`: one throttle, or a window of them, paces
        // nothing until a window says the rate is the cause (a cut at what was sent, verified).
        let rate = self.rate.unwrap_or(c.max_rps);
        if sent < self.changed {
            return;
        }
        let w = &mut self.window;
        // An idle spell (between sweeps) is not time at this pace.
        let idle = Duration::from_secs_f64((4.0 / rate).max(1.0));
        w.busy += now.duration_since(w.last).min(idle);
        w.last = now;
        w.answers += 1;
        w.served += u32::from(!throttled);
        let (w, len) = (*w, self.window_len());
        match self.phase {
            Phase::Verify { checks, .. } => {
                // Checkpoints after 1, 2 and 4 windows' worth of answers (or time, when slow).
                let m = 1 << checks;
                if w.answers >= m * len
                    || (w.answers >= m * MIN_ANSWERS && w.busy >= SLOW_WINDOW_TIME * m)
                    || w.busy >= VERIFY_BUDGET
                {
                    self.verify(c, op, now, rate);
                }
            }
            phase => {
                let reference = matches!(phase, Phase::Reference);
                // The reference is compared with up to four windows: it is twice as long.
                let k = if reference { 2 } else { 1 };
                let full =
                    (w.answers >= k * len && w.served >= MIN_SERVED && w.busy >= MIN_WINDOW_TIME)
                        || w.answers >= MAX_WINDOW
                        || (w.answers >= k * MIN_ANSWERS
                            && w.served >= MIN_SERVED
                            && w.busy >= SLOW_WINDOW_TIME * k);
                if full && reference {
                    self.cut(c, op, now, rate, MIN_CUT);
                } else if full {
                    let drift = (-w.busy.as_secs_f64() / BASELINE_DRIFT_SECS).exp();
                    self.baseline = 1.0 - (1.0 - self.baseline) * drift;
                    self.judge(c, op, now, rate);
                }
            }
        }
    }

    /// A complete window at the current pace: suspect it, raise it, or hold it.
    fn judge(&mut self, c: &LimiterConfig, op: &'static str, now: Instant, rate: f64) {
        let w = self.window;
        let (share, margin) = (w.share(), self.margin(w.answers));
        if share < self.baseline * FAR_BELOW {
            // The reference window keeps a window picked for its noise out of the test; this
            // one is too far below for noise: cut at once, and as deep as it says.
            self.cut(c, op, now, rate, MIN_FAR_CUT);
            return;
        }
        if share < self.baseline * (1.0 - margin) {
            self.phase = Phase::Reference;
            self.restart(now, false);
            return;
        }
        let mut new = rate;
        if share >= self.baseline * (1.0 - margin / 2.0) && c.increase > 0.0 {
            new = match self.ceiling {
                Some(top) if rate < top * 0.95 => rate + (top - rate) / 2.0,
                _ => {
                    // Per second of the window, at least one: a slow pace has long windows.
                    let raised = rate * (1.0 + self.growth).powf(w.busy.as_secs_f64().max(1.0));
                    self.growth = (self.growth * 2.0).min(1.0);
                    raised
                }
            };
            new = new.min(rate.max(2.0 * w.rate()));
        }
        if new > rate {
            self.rate = (new < c.max_rps).then_some(new);
            tracing::trace!(operation = op, rps = new, served = share, "pace raised");
        }
        tracing::trace!(operation = op, rps = rate, served = share, answers = w.answers, busy = ?w.busy, baseline = self.baseline, "window judged");
        self.restart(now, new > rate);
    }

    /// A reference window (or one far below the baseline) is complete: cut to what it says the
    /// service serves, to no less than `least` of the pace, and verify.
    fn cut(&mut self, c: &LimiterConfig, op: &'static str, now: Instant, rate: f64, least: f64) {
        let reference = self.window;
        let served = reference.share() / self.baseline;
        // From what was sent, when callers sent less than the pace allowed.
        let sent = rate.min(reference.rate());
        let new = (sent * (served * CUT_TARGET).clamp(least, MAX_CUT)).max(c.min_rps);
        if new >= rate {
            // Already at the floor: nothing to cut, nothing to verify.
            self.phase = Phase::Steady;
            self.restart(now, false);
            return;
        }
        self.phase = Phase::Verify {
            before: rate,
            reference,
            checks: 0,
        };
        if self.rate.is_none() {
            // Pacing starts now, with no burst saved up while unpaced.
            self.tokens = 0.0;
            self.refilled = now;
            if least <= MIN_FAR_CUT {
                // Unpaced and served less than a quarter: callers sending as fast as they can
                // into a limit. Paced without a verification (its windows, sized for a share
                // near the baseline, are too short to show a rise from a share this small);
                // windows judge the pace from here.
                self.phase = Phase::Steady;
            }
        }
        self.rate = Some(new);
        self.restart(now, true);
        tracing::debug!(
            operation = op,
            from = rate,
            rps = new,
            served = reference.share(),
            baseline = self.baseline,
            "throttled beyond the baseline: slowing down, to verify"
        );
    }

    /// A checkpoint of the window at the cut pace: keep the cut, undo it, or go on measuring.
    fn verify(&mut self, c: &LimiterConfig, op: &'static str, now: Instant, rate: f64) {
        let Phase::Verify {
            before,
            reference,
            checks,
        } = self.phase
        else {
            return;
        };
        let w = self.window;
        let (f1, n1) = (reference.share(), f64::from(reference.answers.max(1)));
        let (f2, n2) = (w.share(), f64::from(w.answers));
        // If the rate was the cause, the served share rises by 1/cut, or up to the baseline.
        let expected = (before / rate).min(self.baseline / f1.max(1e-9)).max(1.0);
        let risen_enough = f2 / f1.max(1e-9) >= expected.sqrt();
        let pooled = (f1 * n1 + f2 * n2) / (n1 + n2);
        let sd = ((pooled * (1.0 - pooled)).max(1e-9) * (1.0 / n1 + 1.0 / n2)).sqrt();
        let z = (f2 - f1) / sd;
        let last = checks >= 2;
        // A small expected rise (a mild cut) takes all four windows to show; a large one that
        // has not shown by then is not there.
        let mild = expected <= MILD_RISE;
        if risen_enough && (z >= KEEP_Z || (last && mild && z >= LAST_KEEP_Z)) {
            self.phase = Phase::Steady;
            self.ceiling = Some(before);
            self.growth = c.increase;
            tracing::debug!(
                operation = op,
                rps = rate,
                served = f2,
                "the cut helped: kept"
            );
            // This window also judges the new pace.
            self.judge(c, op, now, rate);
        } else if z < 0.0 || (checks >= 1 && z < 1.0) || last || w.busy >= VERIFY_BUDGET {
            self.phase = Phase::Steady;
            self.rate = (before < c.max_rps).then_some(before);
            // Both windows measured the same thing when the share did not rise at all.
            self.baseline = if z < 1.0 { pooled } else { f2 }.clamp(0.05, 1.0);
            self.restart(now, true);
            tracing::debug!(
                operation = op,
                rps = before,
                baseline = self.baseline,
                "throttling does not follow the rate: pace restored"
            );
        } else {
            self.phase = Phase::Verify {
                before,
                reference,
                checks: checks + 1,
            };
        }
    }
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
        let bucket = buckets
            .entry(op)
            .or_insert_with(|| Bucket::new(&config, Instant::now()));
        f(bucket, &config)
    }

    /// Waits until a request of `op` may be sent; returns when it was let through, which its
    /// answer ([`RateLimiter::on_success`], [`RateLimiter::on_throttle`]) passes back.
    pub async fn acquire(&self, op: &'static str) -> Instant {
        loop {
            let wait = self.with(op, |b, c| {
                let now = Instant::now();
                let Some(rate) = b.rate else {
                    return Ok(now);
                };
                b.tokens = (b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate)
                    .min(c.burst.max(1.0));
                b.refilled = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    Ok(now)
                } else {
                    // At least 1 ms (the timer's resolution): a wait truncated to 0 ns would
                    // leave the token count just short of 1 and spin without time passing
                    // (forever, under a paused test clock).
                    Err(Duration::from_secs_f64((1.0 - b.tokens) / rate)
                        .max(Duration::from_millis(1)))
                }
            });
            match wait {
                Ok(sent) => return sent,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Records that a request of `op` let through at `sent` was throttled.
    pub fn on_throttle(&self, op: &'static str, sent: Instant) {
        self.with(op, |b, c| b.answer(c, op, sent, true));
    }

    /// Records that a request of `op` let through at `sent` was served.
    pub fn on_success(&self, op: &'static str, sent: Instant) {
        self.with(op, |b, c| b.answer(c, op, sent, false));
    }

    /// The current pace of `op` (`None`: unpaced).
    pub fn rate(&self, op: &'static str) -> Option<f64> {
        self.with(op, |b, _| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::retry::RetryPolicy;

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

    /// One throttle is no evidence that the rate is the cause: the operation stays unpaced until
    /// a window of answers says so (here a tenth served, far below: paced at once, at a quarter
    /// of what was sent).
    #[tokio::test(start_paused = true)]
    async fn unpaced_until_a_window_says_the_rate_is_the_cause_and_older_answers_do_not_count() {
        let l = RateLimiter::unlimited();
        let first = l.acquire("Op").await;
        tokio::time::advance(Duration::from_millis(10)).await;
        l.on_throttle("Op", first);
        assert_eq!(l.rate("Op"), None);
        let mut sent = Vec::new();
        while l.rate("Op").is_none() && sent.len() < 1_000 {
            let s = l.acquire("Op").await;
            tokio::time::advance(Duration::from_millis(10)).await;
            if sent.len() % 10 == 0 {
                l.on_success("Op", s);
            } else {
                l.on_throttle("Op", s);
            }
            sent.push(s);
        }
        let rate = l.rate("Op").expect("a tenth served at 100/s: paced");
        assert!((20.0..=30.0).contains(&rate), "{rate} after {}", sent.len());
        // Answers to requests sent before the pace was set tell of the old pace: however many
        // come back throttled, they change nothing.
        for _ in 0..10 {
            for s in &sent {
                l.on_throttle("Op", *s);
            }
        }
        assert_eq!(l.rate("Op"), Some(rate));
        // Operations are independent.
        assert_eq!(l.rate("Other"), None);
    }

    /// The service, simulated: a token bucket (its rate limit, per operation) and throttles that
    /// come whatever the rate (every n-th call, or a random share), decided first and using no
    /// token, as `stopd-emulator` does.
    #[derive(Debug)]
    struct Service {
        /// Requests served per second at most.
        limit: f64,
        /// Tokens the bucket holds at most.
        burst: f64,
        /// Tokens now.
        tokens: f64,
        /// When `tokens` was last refilled.
        refilled: Instant,
        /// Every n-th call throttled whatever the rate (0: none).
        every: u64,
        /// A random share of calls throttled whatever the rate.
        share: f64,
        /// Calls so far.
        calls: u64,
        /// Seeded: a run is the same every time.
        rng: StdRng,
    }

    impl Service {
        fn new(limit: f64, burst: f64) -> Service {
            Service {
                limit,
                burst,
                tokens: burst,
                refilled: Instant::now(),
                every: 0,
                share: 0.0,
                calls: 0,
                rng: StdRng::seed_from_u64(7),
            }
        }

        fn seed(self, seed: u64) -> Service {
            Service {
                rng: StdRng::seed_from_u64(seed),
                ..self
            }
        }

        fn every(self, every: u64) -> Service {
            Service { every, ..self }
        }

        fn share(self, share: f64) -> Service {
            Service { share, ..self }
        }

        /// Whether the call arriving now is throttled.
        fn throttles(&mut self) -> bool {
            self.calls += 1;
            if self.every > 0 && self.calls.is_multiple_of(self.every) {
                return true;
            }
            if self.share > 0.0 && self.rng.random::<f64>() < self.share {
                return true;
            }
            let now = Instant::now();
            self.tokens = (self.tokens
                + now.duration_since(self.refilled).as_secs_f64() * self.limit)
                .min(self.burst);
            self.refilled = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                false
            } else {
                true
            }
        }
    }

    /// What a simulated run saw.
    #[derive(Debug)]
    struct Seen {
        /// The pace every 100 ms (infinite: unpaced).
        pace: Vec<f64>,
        /// Calls served, by the second they were sent in.
        served: Vec<u32>,
        /// Calls throttled, by the second they were sent in.
        throttled: Vec<u32>,
    }

    impl Seen {
        /// The mean pace of each ten seconds, for a failure's message.
        fn brief(&self) -> String {
            let tens: Vec<String> = (0..self.served.len() / 10)
                .map(|t| format!("{:.1}", self.pace(t * 10, t * 10 + 10)))
                .collect();
            format!("pace by 10 s: {}", tens.join(" "))
        }

        /// The mean pace over seconds `from..to`.
        fn pace(&self, from: usize, to: usize) -> f64 {
            let p = &self.pace[from * 10..to * 10];
            p.iter().sum::<f64>() / p.len() as f64
        }

        /// The share of samples of seconds `from..to` paced below `rps`.
        fn below(&self, from: usize, to: usize, rps: f64) -> f64 {
            let p = &self.pace[from * 10..to * 10];
            p.iter().filter(|r| **r < rps).count() as f64 / p.len() as f64
        }

        /// Calls served per second over seconds `from..to`.
        fn served(&self, from: usize, to: usize) -> f64 {
            f64::from(self.served[from..to].iter().sum::<u32>()) / (to - from) as f64
        }

        /// The share of calls throttled over seconds `from..to`.
        fn throttled(&self, from: usize, to: usize) -> f64 {
            let t = f64::from(self.throttled[from..to].iter().sum::<u32>());
            t / (t + f64::from(self.served[from..to].iter().sum::<u32>()))
        }
    }

    /// Runs `clients` callers of one operation against `service` for `secs` seconds of paused
    /// time: each waits for the limiter, is answered 25 ms later, and after a throttle backs off
    /// as `retry` does before it tries again.
    async fn simulate(
        config: LimiterConfig,
        service: Service,
        clients: usize,
        secs: usize,
    ) -> Seen {
        let limiter = Arc::new(RateLimiter::new(config));
        let service = Arc::new(Mutex::new(service));
        let seen = Arc::new(Mutex::new(Seen {
            pace: Vec::new(),
            served: vec![0; secs],
            throttled: vec![0; secs],
        }));
        let start = Instant::now();
        let end = start + Duration::from_secs(secs as u64);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (limiter, service, seen) = (limiter.clone(), service.clone(), seen.clone());
            tasks.spawn(async move {
                let mut attempt = 0;
                loop {
                    let sent = limiter.acquire("Op").await;
                    if sent >= end {
                        return;
                    }
                    let throttled = service.lock().unwrap().throttles();
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    let second = sent.duration_since(start).as_secs() as usize;
                    {
                        let mut s = seen.lock().unwrap();
                        (if throttled {
                            &mut s.throttled
                        } else {
                            &mut s.served
                        })[second] += 1;
                    }
                    if throttled {
                        limiter.on_throttle("Op", sent);
                        let wait = RetryPolicy::default()
                            .throttle_backoff(attempt, &mut service.lock().unwrap().rng);
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                    } else {
                        limiter.on_success("Op", sent);
                        attempt = 0;
                    }
                }
            });
        }
        while Instant::now() < end {
            let pace = limiter.rate("Op").unwrap_or(f64::INFINITY);
            seen.lock().unwrap().pace.push(pace);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while tasks.join_next().await.is_some() {}
        let seen = seen.lock().unwrap();
        Seen {
            pace: seen.pace.clone(),
            served: seen.served.clone(),
            throttled: seen.throttled.clone(),
        }
    }

    fn paced_at(rps: f64) -> LimiterConfig {
        LimiterConfig {
            initial_rps: Some(rps),
            ..LimiterConfig::default()
        }
    }

    /// Seeds of the simulated service's randomness (throttles and backoff jitter): the three
    /// worst of the first twenty for a random half throttled at a slow pace (a reference window
    /// drawn far below half served, a cut kept, most of a minute to climb back).
    const SEEDS: [u64; 3] = [7, 16, 20];

    /// (a) Every other call throttled whatever the rate (`--throttle-every 2` on the bench), at
    /// a pace under a real limit: the throttles are not ours, and the pace does not fall. (The
    /// AIMD pacing this replaced fell to its 0.5/s floor within seconds; a 20 s sweep took an hour.)
    #[tokio::test(start_paused = true)]
    async fn alternating_throttles_under_a_real_limit_do_not_lower_the_pace() {
        for seed in SEEDS {
            let service = Service::new(50.0, 5.0).every(2).seed(seed);
            let seen = simulate(paced_at(10.0), service, 16, 120).await;
            // One verifying cut to half, at most; then it climbs toward the limit (100/s sent).
            assert!(
                seen.below(5, 120, 9.0) < 0.1,
                "seed {seed}: {}",
                seen.brief()
            );
            assert!(seen.pace(20, 120) >= 20.0, "seed {seed}: {}", seen.brief());
            assert!(
                seen.served(20, 120) >= 10.0,
                "seed {seed}: {}",
                seen.brief()
            );
            assert!(
                seen.pace[seen.pace.len() - 1] >= 10.0,
                "seed {seed}: {}",
                seen.brief()
            );
        }
    }

    /// (b) A random half of calls throttled whatever the rate: the pace is not driven down. A
    /// reference window drawn far below half served can cost a kept cut at the start (half the
    /// pace for up to a minute); it comes back.
    #[tokio::test(start_paused = true)]
    async fn a_random_half_throttled_does_not_drive_the_pace_down() {
        for seed in SEEDS {
            let service = Service::new(50.0, 5.0).share(0.5).seed(seed);
            let seen = simulate(paced_at(10.0), service, 16, 120).await;
            assert!(seen.pace(20, 120) >= 12.0, "seed {seed}: {}", seen.brief());
            // 5/s were served at the pace it started with.
            assert!(seen.served(20, 120) >= 6.0, "seed {seed}: {}", seen.brief());
            assert!(
                seen.pace[seen.pace.len() - 1] >= 10.0,
                "seed {seed}: {}",
                seen.brief()
            );
        }
    }

    /// (c) A real limit alone (10/s, burst 5, as on the bench), 64 callers starting unpaced: the
    /// pace settles near the limit, few calls are throttled, and the limit is used.
    #[tokio::test(start_paused = true)]
    async fn the_pace_settles_near_a_real_limit() {
        for seed in SEEDS {
            let service = Service::new(10.0, 5.0).seed(seed);
            let seen = simulate(LimiterConfig::default(), service, 64, 120).await;
            let pace = seen.pace(60, 120);
            assert!(
                (7.0..=13.0).contains(&pace),
                "seed {seed}: {pace} {}",
                seen.brief()
            );
            assert!(
                seen.throttled(60, 120) <= 0.15,
                "seed {seed}: {}",
                seen.brief()
            );
            assert!(seen.served(60, 120) >= 9.0, "seed {seed}: {}", seen.brief());
        }
    }

    /// (d) A real limit behind a random half throttled: the pace stays near the pace that is
    /// served at the limit (20/s: half of what is sent passes the fault, 10/s of that is served),
    /// and the limit is used.
    #[tokio::test(start_paused = true)]
    async fn a_real_limit_behind_a_random_half_keeps_the_pace_near_it() {
        for seed in SEEDS {
            let service = Service::new(10.0, 5.0).share(0.5).seed(seed);
            let seen = simulate(LimiterConfig::default(), service, 64, 300).await;
            let pace = seen.pace(100, 300);
            assert!(
                (14.0..=32.0).contains(&pace),
                "seed {seed}: {pace} {}",
                seen.brief()
            );
            assert!(
                seen.served(100, 300) >= 8.5,
                "seed {seed}: {}",
                seen.brief()
            );
            assert!(
                seen.throttled(100, 300) <= 0.7,
                "seed {seed}: {}",
                seen.brief()
            );
        }
    }

    /// A sweep, simulated: `calls` calls of `ops` operations in turn, made by 64 callers through
    /// [`retry`](crate::retry::retry) with the default policy, against a service that answers in
    /// 25 ms, throttles every `every`-th call of any operation (0: none; one counter, as the
    /// emulator's `every`) and serves each operation at most `limit` a second (burst 5). The
    /// virtual time it took, and the slowest pace any operation had.
    async fn sweep(
        every: u64,
        limit: Option<f64>,
        ops: &[&'static str],
        calls: u64,
    ) -> (Duration, f64) {
        use std::sync::atomic::{AtomicU64, Ordering};

        use crate::error::{ApiError, ErrorKind};
        use tokio_util::sync::CancellationToken;

        let limiter = Arc::new(RateLimiter::unlimited());
        let counter = Arc::new(AtomicU64::new(0));
        let buckets = Arc::new(Mutex::new(HashMap::<&str, (f64, Instant)>::new()));
        let jobs = Arc::new(AtomicU64::new(0));
        let slowest = Arc::new(Mutex::new(f64::INFINITY));
        let ops: Arc<[&'static str]> = ops.into();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (limiter, counter, buckets, jobs, slowest, ops) = (
                limiter.clone(),
                counter.clone(),
                buckets.clone(),
                jobs.clone(),
                slowest.clone(),
                ops.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let job = jobs.fetch_add(1, Ordering::SeqCst);
                    if job >= calls {
                        return;
                    }
                    let op = ops[job as usize % ops.len()];
                    let cancel = CancellationToken::new();
                    let r =
                        crate::retry::retry(&RetryPolicy::default(), &limiter, op, &cancel, || {
                            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                            let mut throttled = every > 0 && n.is_multiple_of(every);
                            if let (false, Some(limit)) = (throttled, limit) {
                                let now = Instant::now();
                                let mut b = buckets.lock().unwrap();
                                let (tokens, refilled) = b.entry(op).or_insert((5.0, now));
                                *tokens = (*tokens
                                    + now.duration_since(*refilled).as_secs_f64() * limit)
                                    .min(5.0);
                                *refilled = now;
                                throttled = *tokens < 1.0;
                                if !throttled {
                                    *tokens -= 1.0;
                                }
                            }
                            async move {
                                tokio::time::sleep(Duration::from_millis(25)).await;
                                if throttled {
                                    Err(ApiError {
                                        operation: op,
                                        kind: ErrorKind::Throttled,
                                        code: None,
                                        message: String::new(),
                                    })
                                } else {
                                    Ok(())
                                }
                            }
                        })
                        .await;
                    assert!(r.result.is_ok(), "{:?}", r.result);
                    let pace = limiter.rate(op).unwrap_or(f64::INFINITY);
                    let mut s = slowest.lock().unwrap();
                    *s = s.min(pace);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let slowest = *slowest.lock().unwrap();
        (start.elapsed(), slowest)
    }

    /// (e) Issue 26: every other call throttled and no rate limit (`--throttle-every 2`): the
    /// sweep costs a few times the clean run, not a hundred (it took 78 times as long: the first
    /// throttle paced at twice what was sent in the last second, and the backoff doubled to 5 s).
    #[tokio::test(start_paused = true)]
    async fn every_other_call_throttled_costs_a_few_clean_runs_not_a_hundred() {
        for ops in [&["Op"][..], &["List", "Stop"][..]] {
            let (clean, _) = sweep(0, None, ops, 300).await;
            let (throttled, slowest) = sweep(2, None, ops, 300).await;
            eprintln!(
                "{ops:?}: clean {clean:?}, every other throttled {throttled:?}, slowest pace {slowest}"
            );
            // Full jitter makes each run differ: 6.5-7.9 times the clean run over 32 runs (the
            // clean run here has no process start or SQLite; the bench's figure is 3.3 times),
            // 114 times before the fix.
            assert!(
                throttled <= clean * 10,
                "{ops:?}: {throttled:?} against {clean:?} clean"
            );
            // 64 callers at 25 ms send 2,560/s: a verifying cut to half of what was sent, undone,
            // at most; never paced below a fifth of it. (Only for one operation: with two that
            // share one throttle counter, calls that alternate can leave nearly every throttle to
            // one operation for a while, which no pacer can tell from a limit on it; its pace
            // then dips, seen at 76-108/s in 5 of 8 runs, and the sweep's time above is what
            // holds.)
            if ops.len() == 1 {
                assert!(slowest >= 512.0, "{ops:?}: paced at {slowest}/s");
            }
        }
    }

    /// (f) Every other call throttled behind a real limit (10/s per operation): within twice the
    /// floor the limit alone sets (the bench measured 6.7 times the limit alone).
    #[tokio::test(start_paused = true)]
    async fn every_other_call_throttled_under_a_limit_stays_within_twice_the_floor() {
        for ops in [&["Op"][..], &["List", "Stop"][..]] {
            // 300 calls at 10/s per operation.
            let floor = Duration::from_secs_f64(300.0 / 10.0 / ops.len() as f64);
            let (alone, _) = sweep(0, Some(10.0), ops, 300).await;
            let (throttled, _) = sweep(2, Some(10.0), ops, 300).await;
            eprintln!(
                "{ops:?}: floor {floor:?}, limit alone {alone:?}, every other throttled {throttled:?}"
            );
            // One operation: 1.1-1.3 times the floor over 16 runs. Two that share one throttle
            // counter: 1.05-2.5 times (two runs of 16 over 2: one operation can get nearly every
            // throttle for a while, see (e)); the bench, one counter per request, measured 1.27.
            let bound = if ops.len() == 1 { 2.0 } else { 3.0 };
            assert!(
                throttled.as_secs_f64() <= floor.as_secs_f64() * bound,
                "{ops:?}: {throttled:?} against a floor of {floor:?}"
            );
        }
    }
}
