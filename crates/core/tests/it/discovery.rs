//! Discovery: pagination, scope before any per-pipeline call, tags, PARALLEL pipelines,
//! incremental sweeps, and failures that never hide the other pipelines.

use std::collections::BTreeSet;

use chrono::DateTime;
use stopd_core::{ActiveStatus, ErrorKind};
use stopd_emulator::{Clock, EmulatorConfig, Fault, FaultPlan, FaultRule};

use stopd_core::CoreConfig;

use crate::common::{fast_retry, fleet_fixture, start, start_emulator, start_with};

#[tokio::test]
async fn pages_through_2500_pipelines_and_finds_every_running_execution() {
    let env = start(&fleet_fixture(2_500)).await;
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(
        (found.pipelines_seen, found.pipelines_in_scope),
        (2_500, 2_500)
    );
    assert_eq!(found.executions.len(), 2_500);
    assert!(found.failures.is_empty());
    let counts = env.emulator.call_counts();
    assert_eq!(counts["ListPipelines"], 3, "pages of 1,000");
    assert_eq!(
        counts["ListPipelineExecutions"], 2_500,
        "one page per pipeline"
    );
    assert_eq!(found.calls.total(), 2_503);
}

#[tokio::test]
async fn discovery_never_has_more_than_its_concurrency_in_flight() {
    let env = start_with(
        &fleet_fixture(60),
        CoreConfig {
            concurrency: 4,
            discovery_retry: fast_retry(3_000),
            stop_retry: fast_retry(3_000),
            ..CoreConfig::default()
        },
    )
    .await;
    // Each answer takes 20 ms, so requests overlap and the bound is what limits them.
    env.emulator
        .set_faults(FaultPlan::latency(std::time::Duration::from_millis(20)));
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(found.executions.len(), 60);
    let most = env.emulator.max_in_flight();
    assert!(
        (2..=4).contains(&most),
        "{most} requests were in flight at once (bound 4)"
    );
}

#[tokio::test]
async fn out_of_scope_pipelines_cost_no_per_pipeline_call() {
    let env = start(&fleet_fixture(50)).await;
    let in_scope = |n: &str| n.ends_with('7');
    let found = env.core.discover(&in_scope, true).await;
    assert_eq!(found.pipelines_in_scope, 5);
    for call in env.emulator.calls() {
        if call.operation == "ListPipelines" || call.operation == "ListTagsForResource" {
            continue;
        }
        let p = call
            .pipeline
            .expect("per-pipeline calls name their pipeline");
        assert!(
            in_scope(&p),
            "{} was called for out-of-scope {p}",
            call.operation
        );
    }
    assert_eq!(env.emulator.call_counts()["ListTagsForResource"], 5);
}

#[tokio::test]
async fn tags_are_read_once_and_cached() {
    let env = start(&fleet_fixture(6)).await;
    let found = env.core.discover(&|_| true, true).await;
    let prod: BTreeSet<&str> = found
        .executions
        .iter()
        .filter(|e| e.tags.get("env").map(String::as_str) == Some("prod"))
        .map(|e| e.pipeline.as_str())
        .collect();
    assert_eq!(prod, BTreeSet::from(["p-00000", "p-00002", "p-00004"]));
    env.emulator.clear_calls();
    let again = env.core.discover(&|_| true, true).await;
    assert_eq!(again.executions.len(), 6);
    let counts = env.emulator.call_counts();
    assert_eq!(counts.get("GetPipeline"), None);
    assert_eq!(counts.get("ListTagsForResource"), None);
}

fn parallel_fixture(active: usize, finished_after: usize) -> String {
    // The oldest execution has run for 5 days (a long approval); `finished_after` finished
    // executions are newer than it; then `active` running ones.
    let mut execs = vec![r#"{"status": "InProgress", "started_ago": "5d"}"#.to_string()];
    for i in 0..finished_after {
        execs.push(format!(
            r#"{{"status": "Succeeded", "started_ago": "{}m", "duration": "1m"}}"#,
            4_000 - i
        ));
    }
    for i in 0..active {
        execs.push(format!(
            r#"{{"status": "InProgress", "started_ago": "{}s"}}"#,
            1_000 - i
        ));
    }
    format!(
        r#"{{"pipelines": [{{"name": "par", "execution_mode": "PARALLEL", "stages": [{{"name": "A", "actions": [{{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "30d"}}]}}], "executions": [{}]}}]}}"#,
        execs.join(",")
    )
}

#[tokio::test]
async fn parallel_pipeline_with_many_active_and_one_behind_a_long_history() {
    // The emulator's clock stands at a fixed time, so start times are exact.
    let now = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .to_utc();
    let env = start_emulator(
        &parallel_fixture(250, 300),
        EmulatorConfig {
            clock: Clock::manual(now.timestamp_millis()),
            ..EmulatorConfig::default()
        },
        CoreConfig {
            discovery_retry: fast_retry(3_000),
            stop_retry: fast_retry(3_000),
            ..CoreConfig::default()
        },
    )
    .await;
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(found.executions.len(), 251);
    // 551 executions, 100 a page.
    assert_eq!(env.emulator.call_counts()["ListPipelineExecutions"], 6);
    let oldest = found
        .executions
        .iter()
        .min_by_key(|e| e.start_time)
        .unwrap();
    assert_eq!(oldest.start_time, Some(now - chrono::Duration::days(5)));

    // Second sweep: 151 of the active ones are older than the first page, too many to check
    // one by one, so paging goes on (3 pages hold the 250 recent ones); the one 5-day-old
    // execution behind 300 finished ones is then checked by itself.
    env.emulator.clear_calls();
    let again = env.core.discover(&|_| true, false).await;
    assert_eq!(again.executions.len(), 251);
    let counts = env.emulator.call_counts();
    assert_eq!(counts["ListPipelineExecutions"], 3);
    assert_eq!(counts["GetPipelineExecution"], 1);
}

#[tokio::test]
async fn second_sweep_reads_one_page_and_checks_an_old_active_one_by_one() {
    // One execution active for 5 days behind 300 finished ones, and 2 recent.
    let env = start(&parallel_fixture(2, 300)).await;
    let first = env.core.discover(&|_| true, false).await;
    assert_eq!(first.executions.len(), 3);
    assert_eq!(env.emulator.call_counts()["ListPipelineExecutions"], 4);
    env.emulator.clear_calls();
    let new = env.emulator.start_execution("par").unwrap();
    let again = env.core.discover(&|_| true, false).await;
    assert_eq!(again.executions.len(), 4);
    assert!(again.executions.iter().any(|e| e.execution_id == new));
    let counts = env.emulator.call_counts();
    assert_eq!(counts["ListPipelineExecutions"], 1);
    assert_eq!(counts["GetPipelineExecution"], 1);
}

#[tokio::test]
async fn incremental_sweep_drops_what_ended_and_keeps_what_stops() {
    let env = start(&parallel_fixture(3, 120)).await;
    let first = env.core.discover(&|_| true, false).await;
    assert_eq!(first.executions.len(), 4);
    let old = first
        .executions
        .iter()
        .min_by_key(|e| e.start_time)
        .unwrap()
        .clone();
    let newest = first
        .executions
        .iter()
        .max_by_key(|e| e.start_time)
        .unwrap()
        .clone();
    // Stop the old one (behind 120 finished: not on the first page) with stop-and-wait, abandon
    // the newest.
    let stop = |id: &str, abandon: bool| stopd_core::StopRequest {
        pipeline: "par".into(),
        execution_id: id.into(),
        abandon,
        reason: "t".into(),
    };
    assert_eq!(
        env.core.stop(&stop(&old.execution_id, false)).await.outcome,
        stopd_core::Outcome::Stopped
    );
    assert_eq!(
        env.core
            .stop(&stop(&newest.execution_id, true))
            .await
            .outcome,
        stopd_core::Outcome::Stopped
    );
    // The abandon settles (the emulator's default: 1 s of Stopping, as AWS's "very short time").
    env.emulator.advance(std::time::Duration::from_secs(1));
    let again = env.core.discover(&|_| true, false).await;
    let ids: BTreeSet<&str> = again
        .executions
        .iter()
        .map(|e| e.execution_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(newest.execution_id.as_str()));
    let old_now = again
        .executions
        .iter()
        .find(|e| e.execution_id == old.execution_id)
        .unwrap();
    assert_eq!(old_now.status, ActiveStatus::Stopping);
}

#[tokio::test]
async fn a_failing_or_deleted_pipeline_is_reported_and_never_hides_the_others() {
    let env = start(&fleet_fixture(10)).await;
    env.emulator.add_fault(
        FaultRule::new(Some("ListPipelineExecutions"), Fault::Http500).pipeline("p-00003"),
    );
    let emulator = env.emulator.clone();
    // Deleted between ListPipelines and its own calls.
    let scope = move |n: &str| {
        if n == "p-00007" {
            emulator.delete_pipeline(n);
        }
        true
    };
    let found = env.core.discover(&scope, false).await;
    assert_eq!(found.executions.len(), 8);
    let failures: Vec<(&str, ErrorKind)> = found
        .failures
        .iter()
        .map(|f| (f.pipeline.as_str(), f.error.kind))
        .collect();
    assert_eq!(
        failures,
        vec![
            ("p-00003", ErrorKind::Server),
            ("p-00007", ErrorKind::PipelineNotFound)
        ]
    );
}

#[tokio::test]
async fn listing_failure_is_reported_not_an_empty_fleet() {
    let env = start(&fleet_fixture(3)).await;
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Http500));
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(
        found.listing_failed.map(|e| e.kind),
        Some(ErrorKind::Server)
    );
    assert!(found.executions.is_empty());
}

/// Core config for the list-order tests: fast retries, the default full-rescan interval.
fn order_config() -> CoreConfig {
    CoreConfig {
        discovery_retry: fast_retry(3_000),
        stop_retry: fast_retry(3_000),
        ..CoreConfig::default()
    }
}

fn emulator_listing(order: stopd_emulator::state::ListOrder) -> EmulatorConfig {
    EmulatorConfig {
        behaviour: stopd_emulator::state::Behaviour {
            list_order: order,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// AWS documents no order for ListPipelineExecutions. A first (full) sweep finds every active
/// execution in either order, including one started before 100 newer active ones and 150
/// finished ones in a PARALLEL pipeline.
#[tokio::test]
async fn discovery_finds_every_active_execution_in_either_list_order() {
    use stopd_emulator::state::ListOrder;
    for order in [ListOrder::NewestFirst, ListOrder::OldestFirst] {
        let env = start_emulator(
            &parallel_fixture(100, 150),
            emulator_listing(order),
            order_config(),
        )
        .await;
        let expected: BTreeSet<String> = env
            .emulator
            .active_executions()
            .into_iter()
            .map(|(_, e)| e.id)
            .collect();
        assert_eq!(expected.len(), 101);
        let found = env.core.discover(&|_| true, false).await;
        assert!(found.failures.is_empty(), "{order:?}: {:?}", found.failures);
        let ids: BTreeSet<String> = found
            .executions
            .iter()
            .map(|e| e.execution_id.clone())
            .collect();
        assert_eq!(ids, expected, "{order:?}");
    }
}

/// The incremental sweep (within `full_rescan_every`) took the first listed execution as "the
/// newest" and stopped paging once it saw the previous sweep's first one. With the list oldest
/// first, the first listed is the oldest, so a second sweep stopped after one page and missed
/// an execution started since, on a later page, until the next full rescan (an hour by
/// default). Now the newest is the latest start time, and paging stops early only while the
/// pages are listed newest first.
#[tokio::test]
async fn incremental_sweep_finds_a_new_execution_with_the_list_oldest_first() {
    let env = start_emulator(
        &parallel_fixture(2, 300),
        emulator_listing(stopd_emulator::state::ListOrder::OldestFirst),
        order_config(),
    )
    .await;
    let first = env.core.discover(&|_| true, false).await;
    assert_eq!(first.executions.len(), 3);
    let new = env.emulator.start_execution("par").unwrap();
    let again = env.core.discover(&|_| true, false).await;
    assert!(
        again.executions.iter().any(|e| e.execution_id == new),
        "the execution started between sweeps was not found"
    );
    assert_eq!(again.executions.len(), 4);
}

/// A service that answers every page with the `nextToken` it was sent made a sweep that never
/// ended (15,229 calls in 200 s). The repeated token ends that pipeline's listing as a failure,
/// after two pages; the other pipelines are read.
#[tokio::test]
async fn a_repeated_next_token_ends_the_listing_instead_of_looping() {
    let env = start(&parallel_fixture(2, 300)).await;
    env.emulator.add_fault(FaultRule::new(
        Some("ListPipelineExecutions"),
        Fault::RepeatNextToken,
    ));
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(found.failures.len(), 1, "{:?}", found.failures);
    let e = &found.failures[0].error;
    assert_eq!(e.code.as_deref(), Some("PaginationLoop"), "{e}");
    assert!(e.message.contains("already given"), "{e}");
    assert_eq!(found.calls.requests.get("ListPipelineExecutions"), Some(&2));
}

/// With a looping `nextToken`, the executions already returned on the first page were
/// dropped with the rest of the listing: 0 of 200 executions past their timeout were stopped.
/// The listing is cut short, loudly (a failure), and what it did return is still found.
#[tokio::test]
async fn a_listing_cut_short_by_a_repeated_token_keeps_what_it_read() {
    // 251 running executions, 100 a page: the second page answers with the first page's
    // token again, so two pages (200 executions) are read before the loop is seen.
    let env = start(&parallel_fixture(250, 0)).await;
    env.emulator.add_fault(FaultRule::new(
        Some("ListPipelineExecutions"),
        Fault::RepeatNextToken,
    ));
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(found.failures.len(), 1, "{:?}", found.failures);
    assert_eq!(
        found.failures[0].error.code.as_deref(),
        Some("PaginationLoop")
    );
    assert_eq!(found.executions.len(), 200);
}

/// An execution listed many times on one page is one execution (it got 50 stop calls).
#[tokio::test]
async fn an_execution_listed_fifty_times_is_found_once() {
    let env = start(&parallel_fixture(2, 10)).await;
    env.emulator.add_fault(FaultRule::new(
        Some("ListPipelineExecutions"),
        Fault::DuplicateEntries { copies: 50 },
    ));
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(found.executions.len(), 3, "{:?}", found.executions);
}

#[tokio::test]
async fn a_burst_of_calls_reuses_its_connections() {
    // 300 pipelines read 32 at a time, 10 ms a call: each connection carries many calls. (With
    // at most 8 idle connections kept, 45-47 were opened here: a connection given back while 8
    // were idle was closed, and a later call opened another; on AWS, a TLS handshake each.)
    let env = start_with(
        &fleet_fixture(300),
        CoreConfig {
            concurrency: 32,
            discovery_retry: fast_retry(3_000),
            stop_retry: fast_retry(3_000),
            ..CoreConfig::default()
        },
    )
    .await;
    env.emulator
        .set_faults(FaultPlan::latency(std::time::Duration::from_millis(10)));
    let found = env.core.discover(&|_| true, false).await;
    assert_eq!(found.executions.len(), 300);
    let opened = env.emulator.connections();
    assert!(
        opened <= 40,
        "{opened} connections for 301 calls at 32 in flight (32 seen; a few more if hyper \
         connects while a connection is being given back)"
    );
}

/// Issue 29: the executions in progress an engine knows of without a call: its last listing's,
/// plus what events announced since, less what ended; a new listing replaces what events said.
#[tokio::test]
async fn the_known_executions_are_the_last_listing_and_events_since() {
    let env = start(&fleet_fixture(3)).await;
    assert!(
        env.core.known_in_progress().is_empty(),
        "nothing listed yet"
    );
    let found = env.core.discover(&|_| true, false).await;
    let ids = |v: Vec<stopd_core::ActiveExecution>| -> BTreeSet<String> {
        v.into_iter().map(|e| e.execution_id).collect()
    };
    let listed = ids(found.executions.clone());
    assert_eq!(listed.len(), 3);
    assert_eq!(ids(env.core.known_in_progress()), listed);
    // An event says one ended; another announces a new one.
    let first = found.executions[0].clone();
    env.core.note_gone(&first.pipeline, &first.execution_id);
    let new = stopd_core::ActiveExecution {
        execution_id: "00000000-0000-4000-8000-000000000001".into(),
        ..found.executions[1].clone()
    };
    env.core.note_running(new.clone());
    let known = ids(env.core.known_in_progress());
    assert!(!known.contains(&first.execution_id) && known.contains(&new.execution_id));
    assert_eq!(known.len(), 3);
    // A listing is the truth again: the made-up execution is gone, the listed one is back.
    env.core.discover(&|_| true, false).await;
    assert_eq!(ids(env.core.known_in_progress()), listed);
}

/// A stop is claimed once: the sweep and the event consumer never both stop an execution; a
/// claim given back (the stop did not happen) can be taken again.
#[tokio::test]
async fn a_stop_is_claimed_once_until_given_back() {
    let env = start(&fleet_fixture(1)).await;
    assert!(env.core.claim_stop("e1"));
    assert!(!env.core.claim_stop("e1"), "claimed by the other path");
    assert!(env.core.claim_stop("e2"), "another execution");
    env.core.release_stop("e1");
    assert!(env.core.claim_stop("e1"));
}
