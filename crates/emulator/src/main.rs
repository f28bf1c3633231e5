//! `stopd-emulator`: serve a local CodePipeline on an address until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use stopd_emulator::faults::RateLimitScope;
use stopd_emulator::state::{Behaviour, ListOrder};
use stopd_emulator::{
    Clock, Emulator, EmulatorConfig, Fault, FaultPlan, FaultRule, Fixture, FleetSpec, Latency,
    RateLimit,
};

/// `KIND` or `KIND:OPERATION` (a fault kind of the plan, in its snake_case name).
fn parse_fault(s: &str) -> Result<FaultRule, String> {
    let (kind, operation) = match s.split_once(':') {
        Some((k, o)) => (k, Some(o)),
        None => (s, None),
    };
    let fault: Fault = serde_json::from_value(serde_json::Value::String(kind.to_string()))
        .map_err(|_| format!("unknown fault kind {kind:?}"))?;
    Ok(FaultRule::new(operation, fault))
}

/// A local AWS CodePipeline for tests, benchmarks and demos.
///
/// Point any AWS client at it with an endpoint URL and dummy credentials:
///
///   stopd-emulator --listen 127.0.0.1:4599 --fleet 100 &
///   AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --region us-east-1 \
///     --endpoint-url http://127.0.0.1:4599 codepipeline list-pipelines
///
/// The admin API lives under /_emulator/: GET state, POST seed (a fixture), POST fleet,
/// GET|POST clock, GET|PUT faults, GET|DELETE calls, POST reset (?faults=true also clears the
/// fault plan). Several accounts: POST accounts, GET accounts, PUT roles (deny one),
/// POST expire-sessions; add ?account=ID&region=R to address one account's world, and
/// GET calls?all=true for every world's calls. GET calls also says the most requests that were
/// in flight at once (max_in_flight) and how many TCP connections carried API calls
/// (connections), since the log was last cleared. PUT calendars sets the SSM Change Calendars
/// that GetCalendarState (X-Amz-Target AmazonSSM.GetCalendarState, same address) answers:
/// {"NAME": [[from_ms, to_ms], ...]}, each a CLOSED interval on the emulator's clock; a
/// fixture's "calendars" set them too (see the crate docs).
///
/// Many accounts (STS AssumeRole is served at the same address):
///
///   stopd-emulator --accounts 3 --regions eu-west-1,us-east-1 --fleet 50
///   # roles arn:aws:iam::100000000001:role/stopd ... 100000000003, 50 pipelines per region
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// Seed the account from this fixture file (JSON; see the crate docs for the format); with
    /// --accounts, each account in each region too (as `stopd demo` does).
    #[arg(long, conflicts_with = "fleet")]
    fixture: Option<PathBuf>,
    /// Seed the account with a generated fleet of N pipelines (with --accounts: each account
    /// in each region).
    #[arg(long)]
    fleet: Option<usize>,
    /// Also serve N more accounts, reached through STS AssumeRole of
    /// arn:aws:iam::ID:role/stopd (ids 100000000001, 100000000002, ...).
    #[arg(long, default_value_t = 0)]
    accounts: usize,
    /// Regions of those accounts' worlds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "us-east-1")]
    regions: Vec<String>,
    /// The external id every role requires.
    #[arg(long)]
    external_id: Option<String>,
    /// How long issued credentials last, e.g. 15m (default: what AssumeRole asks, 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    session: Option<Duration>,
    /// Seed of the generated fleet and of ids (same seed, same fleet).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Finished executions per generated pipeline.
    #[arg(long, default_value_t = 5)]
    history: usize,
    /// Latency added to every API call, e.g. 25ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Uniform random extra latency up to this much, e.g. 5ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// Per-operation request rate limit in requests per second (ThrottlingException beyond it).
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Token-bucket burst for --rate-limit (default: the rate).
    #[arg(long, requires = "rate_limit")]
    burst: Option<f64>,
    /// What one --rate-limit bucket covers: the whole account (all operations share it, as AWS
    /// users observe) or each operation separately.
    #[arg(long, value_enum, default_value = "account")]
    rate_limit_scope: RateLimitScope,
    /// Inject a fault from the start: KIND or KIND:OPERATION, repeatable. Kinds: access_denied,
    /// expired_token, unrecognized_client, throttling, conflict, http500, http503, drop.
    #[arg(long = "fault", value_name = "KIND[:OPERATION]", value_parser = parse_fault)]
    faults: Vec<FaultRule>,
    /// The order of ListPipelineExecutions (AWS does not document one; it is seen newest first).
    #[arg(long, value_enum, default_value = "newest-first")]
    list_order: ListOrder,
    /// Accept API requests without a SigV4 Authorization header (AWS refuses them).
    #[arg(long)]
    allow_unsigned: bool,
    /// Emulated seconds per real second (executions run this much faster).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Use a manual clock that only POST /_emulator/clock moves.
    #[arg(long)]
    manual_clock: bool,
    /// How long an abandoned execution stays Stopping before Stopped, in emulated time (AWS: "a
    /// very short time"); --time-scale shortens it in real time like everything else.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    abandon_settle: Duration,
    /// Publish every execution state change, as EventBridge would, to this SQS queue (created;
    /// its URL is http://LISTEN/ACCOUNT/NAME). Faults: POST /_emulator/events.
    #[arg(long, value_name = "NAME")]
    events_queue: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.time_scale.is_finite() && args.time_scale > 0.0,
        "--time-scale must be a positive number"
    );
    let clock = if args.manual_clock {
        Clock::manual(stopd_emulator::clock::system_now())
    } else {
        Clock::scaled(args.time_scale)
    };
    let faults = FaultPlan {
        latency: Latency {
            fixed: args.latency.unwrap_or_default(),
            jitter: args.jitter.unwrap_or_default(),
        },
        default_rate_limit: args.rate_limit.map(|tps| RateLimit {
            tps,
            burst: args.burst,
        }),
        rate_limit_scope: args.rate_limit_scope,
        rules: args.faults.clone(),
        ..FaultPlan::default()
    };
    let emulator = Emulator::new(EmulatorConfig {
        clock,
        seed: args.seed,
        behaviour: Behaviour {
            abandon_settle_ms: args.abandon_settle.as_millis() as i64,
            list_order: args.list_order,
        },
        faults,
        require_signature: !args.allow_unsigned,
    });
    let mut fixture = None;
    if let Some(path) = &args.fixture {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let f = Fixture::from_json(&text).with_context(|| format!("loading {}", path.display()))?;
        let n = emulator
            .seed(&f)
            .with_context(|| format!("loading {}", path.display()))?;
        tracing::info!(pipelines = n, fixture = %path.display(), "seeded");
        fixture = Some(f);
    }
    if let Some(n) = args.fleet {
        emulator.seed_fleet(FleetSpec {
            pipelines: n,
            seed: args.seed,
            history: args.history,
        });
        tracing::info!(pipelines = n, seed = args.seed, "generated fleet");
    }
    if args.accounts > 0 {
        let fleet = args.fleet.map(|pipelines| FleetSpec {
            pipelines,
            seed: args.seed,
            history: args.history,
        });
        let roles = emulator.add_accounts(
            args.accounts,
            &args.regions,
            fleet,
            args.external_id.as_deref(),
            args.session,
        );
        tracing::info!(accounts = roles.len(), regions = ?args.regions, first_role = %roles[0], "accounts");
        if let Some(f) = &fixture {
            for i in 0..args.accounts {
                let account = format!("{:012}", 100_000_000_001_u64 + i as u64);
                for region in &args.regions {
                    emulator
                        .world_of(&account, region)
                        .seed(f)
                        .with_context(|| format!("seeding account {account} in {region}"))?;
                }
            }
        }
    }
    if let Some(queue) = &args.events_queue {
        emulator.enable_events(stopd_emulator::events::EventFeed {
            queue: queue.clone(),
            ..Default::default()
        });
    }
    let server = emulator
        .serve(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // Scripts wait for this line to know the port is open.
    println!("stopd-emulator listening on {}", server.endpoint_url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn fault_flag_takes_a_kind_and_an_optional_operation() {
        let r = parse_fault("access_denied:StopPipelineExecution").unwrap();
        assert_eq!(r.fault, Fault::AccessDenied);
        assert_eq!(r.operation.as_deref(), Some("StopPipelineExecution"));
        let r = parse_fault("expired_token").unwrap();
        assert_eq!((r.fault, r.operation), (Fault::ExpiredToken, None));
        assert!(parse_fault("teapot").unwrap_err().contains("teapot"));
        let args = Args::try_parse_from([
            "stopd-emulator",
            "--fault",
            "unrecognized_client",
            "--rate-limit-scope",
            "operation",
            "--list-order",
            "oldest-first",
        ])
        .unwrap();
        assert_eq!(args.faults[0].fault, Fault::UnrecognizedClient);
        assert_eq!(args.rate_limit_scope, RateLimitScope::Operation);
        assert_eq!(args.list_order, ListOrder::OldestFirst);
        // The binary's defaults: one account-wide bucket, a 1 s abandon settle, signed requests.
        let args = Args::try_parse_from(["stopd-emulator"]).unwrap();
        assert_eq!(args.rate_limit_scope, RateLimitScope::Account);
        assert_eq!(args.abandon_settle, Duration::from_secs(1));
        assert!(!args.allow_unsigned);
    }

    /// Pasted into a shell, the help's example reaches the emulator: the `aws` line continues.
    #[test]
    fn help_example_continues_its_line() {
        let help = Args::command().render_long_help().to_string();
        let example = help
            .lines()
            .skip_while(|l| !l.contains("aws --region"))
            .take(2)
            .collect::<Vec<_>>();
        assert_eq!(example.len(), 2, "{help}");
        assert!(example[0].trim_end().ends_with('\\'), "{help}");
        assert!(example[1].contains("--endpoint-url http://127.0.0.1:4599"));
    }
}
