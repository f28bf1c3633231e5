//! The stop engine: every outcome, and what it does under throttling, conflicts, 5xx, latency,
//! dropped connections and shutdown.

use std::time::Duration;

use stopd_core::{CoreConfig, ErrorKind, Outcome, StopRequest};
use stopd_emulator::{Fault, FaultPlan, FaultRule};

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

#[tokio::test]
async fn persistent_failure_ends_as_failed_within_the_deadline() {
    let env = start(&fleet_fixture(1)).await;
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Http500,
    ));
    let id = running(&env, "p-00000");
    let r = env.core.stop(&req("p-00000", &id, false)).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.attempts > 3, "{r:?}");
    assert!(r.elapsed < Duration::from_secs(3), "{r:?}");
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
    let env = start_with(
        &fleet_fixture(1),
        CoreConfig {
            stop_retry: stopd_core::RetryPolicy {
                base: Duration::from_secs(30),
                cap: Duration::from_secs(30),
                throttle_cap: Duration::from_secs(30),
                deadline: Duration::from_secs(600),
                max_attempts: 100,
            },
            discovery_retry: fast_retry(1_000),
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
    let started = std::time::Instant::now();
    let stop = tokio::spawn({
        let core = env.core.clone();
        async move { core.stop(&req("p-00000", &id, false)).await }
    });
    // Cancel once the first attempt has been answered (the engine is then backing off).
    while env.emulator.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    cancel.cancel();
    let r = stop.await.unwrap();
    assert!(r.cancelled, "{r:?}");
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
