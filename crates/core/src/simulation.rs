//! The rate limiter and the retry loop against a simulated service, on tokio's paused clock:
//! what pacing does when a real limit, throttles that come whatever the rate, or both meet
//! callers that send as fast as they can. Tests only.
//!
//! Its own module, beside [`crate::ratelimit`] and [`crate::retry`] rather than inside either:
//! it drives both (the limiter through `retry`, and callers that back off as `retry` does), and
//! `retry` imports the limiter, so inside `ratelimit` it would make an import circle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ErrorKind};
use crate::ratelimit::{LimiterConfig, RateLimiter, Scope};
use crate::retry::{RetryPolicy, retry};

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
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.limit)
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
async fn simulate(config: LimiterConfig, service: Service, clients: usize, secs: usize) -> Seen {
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

/// The service's rate limit in a simulated sweep.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// None.
    Off,
    /// This many calls a second for each operation (a bucket each, as the emulator's
    /// `--rate-limit-scope operation`).
    PerOperation(f64),
    /// This many calls a second for every operation together (one bucket, as the emulator's
    /// `--rate-limit-scope account`).
    Shared(f64),
}

/// A sweep, simulated: `calls` calls of `ops` operations in turn, made by 64 callers through
/// [`retry`] with the default policy and a limiter paced per `scope`, against a service that
/// answers in 25 ms, throttles every `every`-th call of any operation (0: none; one counter, as
/// the emulator's `every`) and serves at most `limit` (burst 5). The virtual time it took, and
/// the slowest pace any operation had.
async fn sweep(
    every: u64,
    limit: Limit,
    scope: Scope,
    ops: &[&'static str],
    calls: u64,
) -> (Duration, f64) {
    let limiter = Arc::new(RateLimiter::new(LimiterConfig {
        scope,
        ..LimiterConfig::default()
    }));
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
                let r = retry(&RetryPolicy::default(), &limiter, op, &cancel, || {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut throttled = every > 0 && n.is_multiple_of(every);
                    let bucket = match limit {
                        Limit::Off => None,
                        Limit::PerOperation(rps) => Some((op, rps)),
                        Limit::Shared(rps) => Some(("*", rps)),
                    };
                    if let (false, Some((bucket, limit))) = (throttled, bucket) {
                        let now = Instant::now();
                        let mut b = buckets.lock().unwrap();
                        let (tokens, refilled) = b.entry(bucket).or_insert((5.0, now));
                        *tokens = (*tokens + now.duration_since(*refilled).as_secs_f64() * limit)
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
        let (clean, _) = sweep(0, Limit::Off, Scope::Service, ops, 300).await;
        let (throttled, slowest) = sweep(2, Limit::Off, Scope::Service, ops, 300).await;
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

/// (f) Every other call throttled behind a real limit (10/s per operation), paced per
/// operation: within twice the floor the limit alone sets (the bench measured 6.7 times the
/// limit alone).
#[tokio::test(start_paused = true)]
async fn every_other_call_throttled_under_a_limit_stays_within_twice_the_floor() {
    for ops in [&["Op"][..], &["List", "Stop"][..]] {
        // 300 calls at 10/s per operation.
        let floor = Duration::from_secs_f64(300.0 / 10.0 / ops.len() as f64);
        let limit = Limit::PerOperation(10.0);
        let (alone, _) = sweep(0, limit, Scope::Operation, ops, 300).await;
        let (throttled, _) = sweep(2, limit, Scope::Operation, ops, 300).await;
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

/// (g) Issue 29: two operations drawing on one bucket of the service (20/s for both, as the
/// emulator's `--rate-limit-scope account`, and as users report CodePipeline throttles), 600
/// calls: one pace for the service comes within 1.3 times the floor. And when the service
/// limits each operation apart (10/s each), one pace for both costs at most twice the floor.
/// (Here, where the two operations alternate evenly, a pace per operation reaches the floor
/// too; at a window edge, where stops crowd out listings, it did not: `bench/accounts.py`,
/// BENCHMARKS.md.)
#[tokio::test(start_paused = true)]
async fn one_pace_per_service_uses_a_limit_its_operations_share() {
    let ops = &["ListPipelineExecutions", "StopPipelineExecution"][..];
    // 600 calls at 20/s, less the burst of 5.
    let floor = Duration::from_secs_f64(595.0 / 20.0);
    let (service, _) = sweep(0, Limit::Shared(20.0), Scope::Service, ops, 600).await;
    let (operation, _) = sweep(0, Limit::Shared(20.0), Scope::Operation, ops, 600).await;
    let (apart, _) = sweep(0, Limit::PerOperation(10.0), Scope::Service, ops, 600).await;
    eprintln!(
        "floor {floor:?}: one pace {service:?}, a pace per operation {operation:?}; limits apart, one pace {apart:?}"
    );
    assert!(
        service.as_secs_f64() <= floor.as_secs_f64() * 1.3,
        "one pace: {service:?} against a floor of {floor:?}"
    );
    assert!(
        operation.as_secs_f64() <= floor.as_secs_f64() * 1.3,
        "a pace per operation: {operation:?} against a floor of {floor:?}"
    );
    // 300 calls of each at 10/s each: the floor is the same 30 s.
    assert!(
        apart.as_secs_f64() <= floor.as_secs_f64() * 2.0,
        "limits apart, one pace: {apart:?} against a floor of {floor:?}"
    );
}
