//! A client-side request-rate limiter per service (or per operation) that learns the service's
//! limit, and tells throttles caused by our rate from throttles that come whatever the rate.
//!
//! **What one pace covers** ([`Scope`]). AWS publishes no request-rate quota for CodePipeline.
//! One [`RateLimiter`] serves one account and region; by default ([`Scope::Service`]) it keeps
//! one pace for all of a service's operations (every CodePipeline call, and apart from them
//! every SSM call), as the AWS SDKs' own adaptive retry mode keeps one token bucket per client:
//! when the service's bucket is shared by its operations (as users report of CodePipeline, and
//! as the emulator's `--rate-limit-scope account` does), a pace per operation sees the other
//! operations' throttles as its own, and at a window edge, where listings and stops go together,
//! each cut the other's pace (issue 29 measured 3.7x the floor over 40 accounts and regions).
//! When the service limits each operation apart, one pace for all costs the operation that is
//! not throttled its share (see BENCHMARKS.md, "Many accounts and regions"); [`Scope::Operation`]
//! keeps a pace per operation.
//!
//! Each pace starts unpaced, and stays unpaced until a window of answers blames the rate: unpaced
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
//! most 256), at least 8 of them served and half a second; at slow paces two seconds and 16 answers
//! do. Against a simulated service (the tests in `simulation.rs`): a real limit alone is paced at
//! about 1.07 × with 7 % throttled; behind a random half throttled, at 1.2-1.6 × the pace that is
//! served at the limit, 98-100 % of the limit used; every other call or a random half throttled
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
    /// What one pace covers.
    pub scope: Scope,
}

/// What one pace covers: the requests that share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// One pace for every operation of a service ([`service_of`]): CodePipeline's, and apart
    /// from them SSM's.
    #[default]
    Service,
    /// One pace per operation.
    Operation,
}

/// The service an operation belongs to: `ssm` for Change Calendars (`GetCalendarState`),
/// `codepipeline` for everything else this limiter paces.
pub fn service_of(operation: &'static str) -> &'static str {
    match operation {
        "GetCalendarState" => "ssm",
        _ => "codepipeline",
    }
}

impl Scope {
    /// The bucket `operation` is paced in.
    fn bucket(self, operation: &'static str) -> &'static str {
        match self {
            Scope::Service => service_of(operation),
            Scope::Operation => operation,
        }
    }
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            initial_rps: None,
            min_rps: 0.5,
            max_rps: 10_000.0,
            increase: 0.05,
            burst: 1.0,
            scope: Scope::Service,
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
            tracing::trace!(pace = op, rps = new, served = share, "pace raised");
        }
        tracing::trace!(pace = op, rps = rate, served = share, answers = w.answers, busy = ?w.busy, baseline = self.baseline, "window judged");
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
            pace = op,
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
            tracing::debug!(pace = op, rps = rate, served = f2, "the cut helped: kept");
            // This window also judges the new pace.
            self.judge(c, op, now, rate);
        } else if z < 0.0 || (checks >= 1 && z < 1.0) || last || w.busy >= VERIFY_BUDGET {
            self.phase = Phase::Steady;
            self.rate = (before < c.max_rps).then_some(before);
            // Both windows measured the same thing when the share did not rise at all.
            self.baseline = if z < 1.0 { pooled } else { f2 }.clamp(0.05, 1.0);
            self.restart(now, true);
            tracing::debug!(
                pace = op,
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

/// Adaptive token buckets, one per service or per operation ([`LimiterConfig::scope`]).
#[derive(Debug)]
pub struct RateLimiter {
    /// Tuning.
    config: LimiterConfig,
    /// Buckets by service or operation name.
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

    /// Runs `f` on the bucket of `op` (the key in logs is the bucket's).
    fn with<R>(&self, op: &'static str, f: impl FnOnce(&mut Bucket, &LimiterConfig) -> R) -> R {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let config = self.config;
        let bucket = buckets
            .entry(config.scope.bucket(op))
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
        self.with(op, |b, c| b.answer(c, c.scope.bucket(op), sent, true));
    }

    /// Records that a request of `op` let through at `sent` was served.
    pub fn on_success(&self, op: &'static str, sent: Instant) {
        self.with(op, |b, c| b.answer(c, c.scope.bucket(op), sent, false));
    }

    /// The current pace of `op`'s bucket (`None`: unpaced).
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
        // Every operation of the service is paced with it; another service's are not.
        assert_eq!(l.rate("StopPipelineExecution"), Some(rate));
        assert_eq!(l.rate("GetCalendarState"), None);
    }
}
