//! The stop engine: every outcome, and what it does under throttling, conflicts, 5xx, latency,
//! dropped connections and shutdown.

use std::sync::Arc;
use std::time::Duration;

use stopd_core::{CoreConfig, ErrorKind, Outcome, RetryPolicy, StopRequest};
use stopd_emulator::{Fault, FaultPlan, FaultRule};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::common::{Env, fast_retry, fleet_fixture, start, start_with};

fn running(env: &Env, pipeline: &str) -> String {
    env.emulator
        .executions(pipeline)
        .into_iter()
        .find(|e| e.status == "InProgress")
        .expect("a running execution")
        .id
}

fn req(pipeline: &str, id: &str, abandon: bool) -> StopRequest {
    StopRequest {
        pipeline: pipeline.into(),
        execution_id: id.into(),
        abandon,
        reason: "stopd test".into(),
    }
}

#[tokio::test]
async fn every_outcome_of_a_stop() {
    let env = start(&fleet_fixture(3)).await;
    let id = running(&env, "p-00000");
    let r = env.core.stop(&req("p-00000", &id, false)).await;
    assert_eq!(
        (r.outcome, r.attempts, r.error.as_ref()),
        (Outcome::Stopped, 1, None)
    );
    assert_eq!(
        env.emulator
            .execution("p-00000", &id)
            .unwrap()
            .stop_reason
            .as_deref(),
        Some("stopd test")
    );

    let r = env.core.stop(&req("p-00000", &id, false)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::AlreadyStopping, 1));
    assert_eq!(r.error.unwrap().kind, ErrorKind::DuplicatedStop);

    let finished = env.emulator.executions("p-00001")[0].id.clone();
    let r = env.core.stop(&req("p-00001", &finished, true)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::NotStoppable, 1));

    let r = env.core.stop(&req("gone", &finished, true)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::PipelineNotFound, 1));

    // Refused before any request: nothing reaches the service.
    let before = env.emulator.calls().len();
    let r = env.core.stop(&req("p-00002", "NOT-A-UUID", true)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::Rejected, 0));
    let r = env.core.stop(&req("bad name", &finished, true)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::Rejected, 0));
    assert_eq!(env.emulator.calls().len(), before);
}

#[tokio::test]
async fn multibyte_reason_is_cut_to_200_characters_safely() {
    let env = start(&fleet_fixture(1)).await;
    let id = running(&env, "p-00000");
    let r = env
        .core
        .stop(&StopRequest {
            reason: "Wochenend-Änderungsstopp 🚫 ".repeat(20),
            ..req("p-00000", &id, true)
        })
        .await;
    assert_eq!(r.outcome, Outcome::Stopped);
    let sent = env
        .emulator
        .execution("p-00000", &id)
        .unwrap()
        .stop_reason
        .unwrap();
    assert_eq!(sent.chars().count(), 200);
    assert_eq!(sent, r.reason_sent);
}

#[tokio::test]
async fn conflict_then_success_and_500s_are_retried() {
    let env = start(&fleet_fixture(2)).await;
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Conflict).times(2));
    let id = running(&env, "p-00000");
    let r = env.core.stop(&req("p-00000", &id, true)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::Stopped, 3));
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Http500).times(1));
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Http503).times(1));
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Drop).times(1));
    let id = running(&env, "p-00001");
    let r = env.core.stop(&req("p-00001", &id, true)).await;
    assert_eq!((r.outcome, r.attempts), (Outcome::Stopped, 4));
}

#[tokio::test]
async fn latency_beyond_the_attempt_timeout_is_a_retried_timeout() {
    let env = start(&fleet_fixture(1)).await;
    // The client's attempt timeout is 500 ms (common.rs).
    env.emulator.add_fault(
        FaultRule::new(
            Some("StopPipelineExecution"),
            Fault::Delay { delay_ms: 800 },
        )
        .times(1),
    );
    let id = running(&env, "p-00000");
    let r = env.core.stop(&req("p-00000", &id, false)).await;
    // The first attempt was carried out (the emulator serves, then holds the answer past the
    // client's timeout); the second meets "already stopping". Reading the execution shows the
    // stop is ours: `stopped`, not `already_stopping` or `not_stoppable`.
    assert_eq!((r.outcome, r.attempts), (Outcome::Stopped, 2), "{r:?}");
    assert!(r.error.is_none(), "{r:?}");
    assert!(
        r.note
            .as_deref()
            .is_some_and(|n| n.contains("the stop was ours")),
        "{r:?}"
    );
    assert_eq!(r.calls.requests.get("ListPipelineExecutions"), Some(&1));
}

/// The check after a lost answer does not claim someone else's stop.
#[tokio::test]
async fn a_lost_answer_does_not_claim_a_stop_made_by_someone_else() {
    let env = start(&fleet_fixture(1)).await;
    let id = running(&env, "p-00000");
    let by_hand = env
        .core
        .stop(&StopRequest {
            reason: "stopped by hand".into(),
            ..req("p-00000", &id, false)
        })
        .await;
    assert_eq!(by_hand.outcome, Outcome::Stopped);
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Http500).times(1));
    let r = env.core.stop(&req("p-00000", &id, false)).await;
    assert_eq!(
        (r.outcome, r.attempts),
        (Outcome::AlreadyStopping, 2),
        "{r:?}"
    );
    assert_eq!(r.note, None);
    assert_eq!(r.calls.requests.get("ListPipelineExecutions"), Some(&1));
}

/// A 5xx that never stops ends as `failed` when the stop's deadline runs out: before its attempt
/// budget, which is out of reach within the deadline (ignoring the deadline, it makes all 1,000
/// attempts). That the deadline is never overrun is `retry`'s unit test, on a paused clock.
#[tokio::test]
async fn persistent_failure_ends_as_failed_within_the_deadline() {
    let budget = 1_000;
    let env = start_with(
        &fleet_fixture(1),
        CoreConfig {
            // Backoffs of up to 20 ms: about 90 attempts in a second.
            stop_retry: RetryPolicy {
                max_attempts: budget,
                ..fast_retry(1_000)
            },
            discovery_retry: fast_retry(3_000),
            ..CoreConfig::default()
        },
    )
    .await;
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Http500,
    ));
    let id = running(&env, "p-00000");
    let r = env.core.stop(&req("p-00000", &id, false)).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.attempts > 3, "{r:?}");
    assert!(
        r.attempts < budget,
        "the attempt budget ended it, not the deadline: {r:?}"
    );
    assert_eq!(r.error.unwrap().kind, ErrorKind::Server);
    assert_eq!(
        env.emulator.execution("p-00000", &id).unwrap().status,
        "InProgress"
    );
}

#[tokio::test]
async fn throttling_storm_every_second_call_still_stops_everything() {
    let env = start(&fleet_fixture(40)).await;
    env.emulator
        .add_fault(FaultRule::new(None, Fault::Throttling).every(2));
    let found = env.core.discover(&|_| true, false).await;
    assert!(found.failures.is_empty(), "{:?}", found.failures);
    assert_eq!(found.executions.len(), 40);
    let mut tasks = tokio::task::JoinSet::new();
    for e in found.executions {
        let core = env.core.clone();
        tasks.spawn(async move { core.stop(&req(&e.pipeline, &e.execution_id, true)).await });
    }
    let mut throttled = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.outcome, Outcome::Stopped, "{r:?}");
        throttled += r.throttled;
    }
    assert!(throttled > 0);
    // Abandoned executions stay Stopping for the emulator's settle time (1 s), then are Stopped.
    env.emulator.advance(Duration::from_secs(1));
    assert!(env.emulator.active_executions().is_empty());
}

#[tokio::test]
async fn shutdown_during_backoff_returns_promptly_as_failed_and_cancelled() {
    // One permit, shared with the engine: it holds it while an attempt is in flight, so with
    // the permit free after the first call the engine is in a backoff.
    let in_flight = Arc::new(Semaphore::new(1));
    let env = start_with(
        &fleet_fixture(1),
        CoreConfig {
            stop_retry: RetryPolicy {
                base: Duration::from_secs(30),
                cap: Duration::from_secs(30),
                throttle_cap: Duration::from_secs(30),
                deadline: Duration::from_secs(600),
                max_attempts: 100,
            },
            discovery_retry: fast_retry(1_000),
            in_flight: Some(Arc::clone(&in_flight)),
            ..CoreConfig::default()
        },
    )
    .await;
    env.emulator.set_faults(FaultPlan {
        rules: vec![FaultRule::new(
            Some("StopPipelineExecution"),
            Fault::Http503,
        )],
        ..FaultPlan::default()
    });
    let id = running(&env, "p-00000");
    let cancel = env.cancel.clone();
    let stop = tokio::spawn({
        let core = env.core.clone();
        async move { core.stop(&req("p-00000", &id, false)).await }
    });
    // Cancel once an attempt has been answered: the engine is then backing off (up to 30 s).
    while env.emulator.calls().is_empty() || in_flight.available_permits() == 0 {
        tokio::task::yield_now().await;
    }
    // From here nothing needs the network, so tokio's clock can stand still: it moves only if
    // the stop waits on a timer (the backoff) instead of returning at the cancel.
    tokio::time::pause();
    let cancelled_at = Instant::now();
    cancel.cancel();
    let r = stop.await.unwrap();
    assert!(r.cancelled, "{r:?}");
    assert_eq!(r.outcome, Outcome::Failed);
    // Cut short in a backoff, the stop keeps the last answer (in an attempt: "Cancelled").
    assert_eq!(r.error.map(|e| e.kind), Some(ErrorKind::Server));
    assert_eq!(
        Instant::now() - cancelled_at,
        Duration::ZERO,
        "the stop waited for a timer after the cancel"
    );
}
