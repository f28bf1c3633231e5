//! Criterion benchmarks of the policy engine (numbers go to BENCHMARKS.md):
//! - deciding 10,000 executions against 50 rules (target: under 5 ms);
//! - listing a year of windows for 50 rules;
//! - the pathological policies of issue 26 (an every-second cron lasting 1 h or 1 s; 2,000
//!   hourly freezes lasting 100 years): deciding, the next edge, `check`'s edges, a capped
//!   listing. Target: each under 10 ms (a sweep is every 5 s; before, minutes).
//!
//! Run: `cargo bench -p stopd-rules --bench rules`

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use stopd_rules::{ExecutionFacts, Policy, PolicySpec};

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Tokyo",
];

/// 50 realistic rules: 40 recurring freezes (weekends, nights, release days) over several
/// zones and globs, 5 one-off holiday freezes, 5 timeouts, and 3 exemptions. At the decision
/// instant (Friday evening) the weekend freezes and the timeouts are in force.
fn policy() -> Policy {
    policy_from(|i| match i % 4 {
        0 => ("0 18 * * FRI", "62h"),
        1 => ("0 22 * * *", "8h"),
        2 => ("0 16 * * 5", "3d"),
        _ => ("30 17 25 12 *", "48h"),
    })
}

/// The costly shape: freezes whose windows never leave a gap (daily, 30 h), so every window
/// is merged up to the horizon in each direction.
fn continuous_policy() -> Policy {
    policy_from(|_| ("0 0 * * *", "30h"))
}

/// One freeze per (cron, duration), `n` times, in `zone`.
fn pathological(cron: &str, duration: &str, n: usize, zone: &str) -> Policy {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "[[freeze]]\nname = \"p{i}\"\ncron = \"{cron}\"\nduration = \"{duration}\"\ntimezone = \"{zone}\"\n"
        ));
    }
    let spec: PolicySpec = toml::from_str(&text).expect("bench policy parses");
    Policy::compile(&spec).expect("bench policy compiles")
}

fn policy_from(shape: impl Fn(usize) -> (&'static str, &'static str)) -> Policy {
    let mut text =
        String::from("[defaults]\nreason = \"stopd: {rule} on {pipeline} until {until}\"\n");
    for i in 0..40 {
        let zone = ZONES[i % ZONES.len()];
        let glob = ["prod-*", "*-api-*", "staging-*", "*"][i % 4];
        let tags = if i % 5 == 0 {
            "tags = { env = \"prod\" }\n"
        } else {
            ""
        };
        let (cron, duration) = shape(i);
        text.push_str(&format!(
            "[[freeze]]\nname = \"f{i}\"\ncron = \"{cron}\"\nduration = \"{duration}\"\ntimezone = \"{zone}\"\npipelines = [\"{glob}\"]\nexclude = [\"*-hotfix-*\"]\n{tags}grace = \"5m\"\nmode = \"{}\"\n",
            if i % 3 == 0 { "abandon" } else { "finish" }
        ));
    }
    for i in 0..5 {
        text.push_str(&format!(
            "[[freeze]]\nname = \"o{i}\"\nstart = \"2026-12-2{i}T00:00:00\"\nend = \"2027-01-0{}T00:00:00\"\ntimezone = \"Europe/Berlin\"\npipelines = [\"prod-*-{i}*\"]\n",
            i + 1
        ));
    }
    for i in 0..5 {
        text.push_str(&format!(
            "[[timeout]]\nname = \"t{i}\"\nmax_duration = \"{}h\"\n",
            i + 1
        ));
    }
    for i in 0..3 {
        text.push_str(&format!(
            "[[exempt]]\nname = \"x{i}\"\npipelines = [\"prod-web-0000{i}\"]\n"
        ));
    }
    let spec: PolicySpec = toml::from_str(&text).expect("bench policy parses");
    Policy::compile(&spec).expect("bench policy compiles")
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let now: DateTime<Utc> = "2026-11-27T18:30:00Z".parse().unwrap();
    let prod: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
    let dev: BTreeMap<String, String> = [("env".to_string(), "dev".to_string())].into();
    let envs = ["prod", "staging", "dev"];
    let services = ["web", "api", "payments", "search"];
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("{}-{}-{i:05}", envs[i % 3], services[i % 4]))
        .collect();
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("{i:08x}-0000-4000-8000-000000000000"))
        .collect();
    let executions: Vec<ExecutionFacts<'_>> = (0..10_000)
        .map(|i| ExecutionFacts {
            pipeline: &names[i],
            execution_id: &ids[i],
            start: Some(now - Duration::minutes((i % 600) as i64)),
            rollback: i % 50 == 0,
            tags: if i % 3 == 0 { &prod } else { &dev },
        })
        .collect();
    let stops = policy
        .decide(now, &executions, &[])
        .iter()
        .filter(|v| matches!(v, stopd_rules::Verdict::Stop(_)))
        .count();
    eprintln!("decide: {stops} of 10000 executions stopped");
    c.bench_function("decide 10k executions x 50 rules", |b| {
        b.iter(|| black_box(policy.decide(black_box(now), &executions, &[])))
    });
    // The daemon decides each pipeline's executions as discovery streams them in: one call per
    // pipeline, not one per sweep. With one Decider per sweep (what the daemon does), and with
    // the rules' state remade for every call (what it did before).
    c.bench_function(
        "decide per pipeline, one Decider: 10k calls x 50 rules",
        |b| {
            b.iter(|| {
                let decider = policy.decider(black_box(now));
                for ex in &executions {
                    black_box(decider.decide(now, std::slice::from_ref(ex), &[]));
                }
            })
        },
    );
    let mut slow = c.benchmark_group("before");
    slow.sample_size(10);
    slow.bench_function(
        "decide per pipeline, state remade per call: 10k calls x 50 rules",
        |b| {
            b.iter(|| {
                for ex in &executions {
                    black_box(policy.decide(black_box(now), std::slice::from_ref(ex), &[]));
                }
            })
        },
    );
    slow.finish();
    let from: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let to = from + Duration::days(365);
    eprintln!("windows: {} in a year", policy.windows(from, to).len());
    c.bench_function("windows for a year x 50 rules", |b| {
        b.iter(|| black_box(policy.windows(black_box(from), to)))
    });
    c.bench_function("next_transition x 50 rules, 10k executions", |b| {
        b.iter(|| black_box(policy.next_transition(black_box(now), &executions)))
    });
    let continuous = continuous_policy();
    c.bench_function("decide 10k executions x 50 continuous freezes", |b| {
        b.iter(|| black_box(continuous.decide(black_box(now), &executions, &[])))
    });
    pathological_cases(c, now, &executions);
}

/// Issue 26: policies that once took minutes per evaluation. Each is timed deciding 10,000
/// executions (a sweep's decider and verdicts), the next transition, the window edges `check`
/// shows (6 windows per rule over 366 days) and the first 10,000 windows of a year.
fn pathological_cases(c: &mut Criterion, now: DateTime<Utc>, executions: &[ExecutionFacts<'_>]) {
    let cases = [
        (
            "every second, 1h, UTC",
            pathological("* * * * * *", "1h", 1, "UTC"),
        ),
        (
            "every second, 1s, UTC",
            pathological("* * * * * *", "1s", 1, "UTC"),
        ),
        (
            "every second, 1s, New York (a gap each fall-back)",
            pathological("* * * * * *", "1s", 1, "America/New_York"),
        ),
        (
            "every minute, 1s, New York (a window per minute)",
            pathological("* * * * *", "1s", 1, "America/New_York"),
        ),
        (
            "2,000 hourly freezes of 100 years",
            pathological("0 * * * *", "36525days", 2_000, "UTC"),
        ),
    ];
    let mut g = c.benchmark_group("pathological");
    g.sample_size(10);
    for (name, policy) in &cases {
        g.bench_function(format!("{name}: decider + decide 10k"), |b| {
            b.iter(|| {
                let decider = policy.decider(black_box(now));
                black_box(decider.decide(now, executions, &[]))
            })
        });
        g.bench_function(format!("{name}: next_transition"), |b| {
            b.iter(|| black_box(policy.next_transition(black_box(now), &[])))
        });
        g.bench_function(format!("{name}: check's edges (366 days)"), |b| {
            b.iter(|| {
                black_box(policy.windows_per_rule(black_box(now), now + Duration::days(366), 6))
            })
        });
        g.bench_function(format!("{name}: first 10,000 windows of a year"), |b| {
            b.iter(|| {
                black_box(policy.windows_first(black_box(now), now + Duration::days(366), 10_000))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
