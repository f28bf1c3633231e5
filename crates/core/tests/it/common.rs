use std::time::Duration;

use stopd_core::{
    ClientConfig, Core, CoreConfig, LimiterConfig, RateLimiter, RetryPolicy, build_client,
};
use stopd_emulator::{Emulator, EmulatorConfig, Fixture, ServerHandle};
use tokio_util::sync::CancellationToken;

pub struct Env {
    pub emulator: Emulator,
    /// Keeps the server running for the test.
    pub _server: ServerHandle,
    pub core: Core,
    pub cancel: CancellationToken,
}

/// Retries fast enough for tests: the emulator answers in microseconds.
pub fn fast_retry(deadline_ms: u64) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(20),
        throttle_cap: Duration::from_millis(20),
        deadline: Duration::from_millis(deadline_ms),
        max_attempts: 50,
    }
}

pub async fn start(fixture: &str) -> Env {
    start_with(
        fixture,
        CoreConfig {
            discovery_retry: fast_retry(3_000),
            stop_retry: fast_retry(3_000),
            ..CoreConfig::default()
        },
    )
    .await
}

pub async fn start_with(fixture: &str, config: CoreConfig) -> Env {
    start_emulator(fixture, EmulatorConfig::default(), config).await
}

/// An emulator configured as given (e.g. another ListPipelineExecutions order) and a core on it.
pub async fn start_emulator(fixture: &str, emulator: EmulatorConfig, config: CoreConfig) -> Env {
    let emulator = Emulator::new(emulator);
    emulator
        .seed(&Fixture::from_json(fixture).unwrap())
        .unwrap();
    let server = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = build_client(&ClientConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint_url()),
        static_credentials: Some(("AKIDEXAMPLE".into(), "secret".into())),
        attempt_timeout: Some(Duration::from_millis(500)),
        ..ClientConfig::default()
    })
    .await;
    let cancel = CancellationToken::new();
    let limiter = RateLimiter::new(LimiterConfig {
        min_rps: 100.0,
        ..LimiterConfig::default()
    });
    let core = Core::new(client, limiter, config, cancel.clone(), "default");
    Env {
        emulator,
        _server: server,
        core,
        cancel,
    }
}

/// A fixture: `n` pipelines `p-00000`.., each with one InProgress execution (long Approval stage).
pub fn fleet_fixture(n: usize) -> String {
    let pipelines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name": "p-{i:05}", "tags": {{"env": "{}"}}, "stages": [{{"name": "A", "actions": [{{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}}],
                    "executions": [{{"status": "Succeeded", "started_ago": "30h", "duration": "24h"}}, {{"status": "InProgress", "started_ago": "5m"}}]}}"#,
                if i % 2 == 0 { "prod" } else { "dev" }
            )
        })
        .collect();
    format!(r#"{{"pipelines": [{}]}}"#, pipelines.join(","))
}
