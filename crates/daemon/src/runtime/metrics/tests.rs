//! Metrics tests: values after sweeps, series at zero, staleness on a manual clock, the listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::http::HEADER_TIMEOUT;
use super::*;
use crate::clock::{Clock, ManualClock};
use crate::runtime::sweep::{Done, Planned};
use stopd_core::CallCounts;

fn done(rule: &str, outcome: &str) -> Done {
    Done {
        stop_id: Some(1),
        planned: Planned {
            pipeline: "prod-secret-name".into(),
            execution_id: "exec-should-not-appear".into(),
            rule: rule.into(),
            rule_kind: stopd_audit::RuleKind::Freeze,
            mode: stopd_rules::Mode::Abandon,
            reason: "r".into(),
            explanation: "e".into(),
            escalate_after: None,
            escalation_of: None,
        },
        outcome: outcome.parse().unwrap(),
        is_final: outcome != "failed",
        attempts: 1,
        error: None,
        denied: None,
        calls: CallCounts::default(),
        audit_error: None,
        account: "default".into(),
        region: "us-east-1".into(),
    }
}

fn setup() -> (Arc<ManualClock>, Metrics) {
    let cfg = crate::config::parse(
        Path::new("x.toml"),
        "[daemon]\nschedule = \"*/10 * * * * *\"\n[[freeze]]\nname = \"always\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2099-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    let clock = ManualClock::new("2026-12-19T18:00:00Z".parse().unwrap());
    let m = Metrics::new(&cfg.policy, &cfg.daemon, clock.clone());
    (clock, m)
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn values_after_sweeps_with_stops_throttles_and_a_failure() {
    let (clock, m) = setup();
    let mut calls = CallCounts::default();
    calls.add("ListPipelines", 3, 2);
    calls.add("StopPipelineExecution", 4, 0);
    let good = SweepSummary {
        done: vec![done("weekend", "stopped"), done("weekend", "stopped"), done("two-hours", "already_stopping")],
        calls,
        gates_closed: 2,
        decided_at: clock.now(),
        policy: Some(Arc::new(
            crate::config::parse(Path::new("x.toml"), "[[freeze]]\nname = \"f\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2099-01-01T00:00:00Z\"\n")
                .unwrap()
                .policy
                .as_ref()
                .clone(),
        )),
        ..SweepSummary::default()
    };
    assert!(good.ok());
    m.after_sweep(Some(&good), Duration::from_millis(300));
    clock.advance(chrono::TimeDelta::seconds(10));
    let failed = SweepSummary {
        done: vec![done("weekend", "failed")],
        decided_at: clock.now(),
        ..SweepSummary::default()
    };
    assert!(!failed.ok());
    m.after_sweep(Some(&failed), Duration::from_secs(2));
    m.after_sweep(None, Duration::ZERO);
    m.after_reload(None);
    let text = m.encode();
    for (prefix, want) in [
        (
            "stopd_stops_total{rule=\"weekend\",outcome=\"stopped\"}",
            "2",
        ),
        (
            "stopd_stops_total{rule=\"two-hours\",outcome=\"already_stopping\"}",
            "1",
        ),
        (
            "stopd_stops_total{rule=\"weekend\",outcome=\"failed\"}",
            "1",
        ),
        ("stopd_sweeps_total{result=\"ok\"}", "1"),
        ("stopd_sweeps_total{result=\"failed\"}", "2"),
        (
            "stopd_api_calls_total{operation=\"ListPipelines\",result=\"answered\"}",
            "1",
        ),
        (
            "stopd_api_calls_total{operation=\"ListPipelines\",result=\"throttled\"}",
            "2",
        ),
        (
            "stopd_api_calls_total{operation=\"StopPipelineExecution\",result=\"answered\"}",
            "4",
        ),
        ("stopd_throttles_total{operation=\"ListPipelines\"}", "2"),
        ("stopd_gates_closed", "0"),
        ("stopd_freezes_in_force", "1"),
        ("stopd_policy_reloads_total{result=\"refused\"}", "1"),
        ("stopd_build_info{version=", "1"),
        ("stopd_sweep_duration_seconds_count", "3"),
        ("stopd_last_sweep_success_timestamp_seconds", "1797703200.0"),
    ] {
        let l = line(&text, prefix);
        assert_eq!(l.rsplit(' ').next(), Some(want), "{l}\n{text}");
    }
    // The second sweep's summary had no gates: the gauge follows the last sweep.
    assert!(!text.contains("prod-secret-name") && !text.contains("exec-should-not-appear"));
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Issue 25 item 6: every series of a closed label vocabulary exists at 0 from the start
/// (and a reload's new rule's too), so that `increase()` sees the first failure.
#[test]
fn every_closed_label_set_starts_at_zero() {
    let (_clock, m) = setup();
    m.start_places([("default", "us-east-1")]);
    let mut want: Vec<String> = Vec::new();
    for outcome in STOP_OUTCOMES {
        want.push(format!(
            "stopd_stops_total{{rule=\"always\",outcome=\"{outcome}\"}} 0"
        ));
        want.push(format!(
            "stopd_account_stops_total{{account=\"default\",region=\"us-east-1\",outcome=\"{outcome}\"}} 0"
        ));
    }
    for result in SWEEP_RESULTS {
        want.push(format!("stopd_sweeps_total{{result=\"{result}\"}} 0"));
        want.push(format!(
            "stopd_account_sweeps_total{{account=\"default\",region=\"us-east-1\",result=\"{result}\"}} 0"
        ));
    }
    for result in ["ok", "refused"] {
        want.push(format!(
            "stopd_policy_reloads_total{{result=\"{result}\"}} 0"
        ));
    }
    for op in stopd_core::OPERATIONS {
        for result in ["answered", "throttled"] {
            want.push(format!(
                "stopd_api_calls_total{{operation=\"{op}\",result=\"{result}\"}} 0"
            ));
        }
        want.push(format!("stopd_throttles_total{{operation=\"{op}\"}} 0"));
    }
    let text = m.encode();
    for w in &want {
        assert!(text.lines().any(|l| l == w), "no {w} in\n{text}");
    }
    for o in ["failed", "rejected", "pipeline_not_found", "dry_run"] {
        assert!(STOP_OUTCOMES.contains(&o), "{o}");
    }
    // A reload's new rule starts at 0 too; the first failure then counts 1.
    let cfg = crate::config::parse(
        Path::new("x.toml"),
        "[[timeout]]\nname = \"two-hours\"\nmax_duration = \"2h\"\n",
    )
    .unwrap();
    m.after_reload(Some((&cfg.policy, &cfg.daemon)));
    let text = m.encode();
    let failed = "stopd_stops_total{rule=\"two-hours\",outcome=\"failed\"} ";
    assert!(text.contains(&format!("{failed}0")), "{text}");
    assert!(text.contains("stopd_policy_reloads_total{result=\"ok\"} 1"));
    m.after_sweep(
        Some(&SweepSummary {
            done: vec![done("two-hours", "failed")],
            ..SweepSummary::default()
        }),
        Duration::ZERO,
    );
    assert!(m.encode().contains(&format!("{failed}1")));
}

/// A sweep a clean shutdown cut short is counted apart: neither ok nor failed, and no
/// success; cut short with another problem, it is failed.
#[test]
fn a_sweep_cut_short_by_shutdown_counts_as_interrupted() {
    let (clock, m) = setup();
    let interrupted = SweepSummary {
        cut_short: true,
        blind: true,
        decided_at: clock.now(),
        ..SweepSummary::default()
    };
    assert!(interrupted.interrupted() && !interrupted.ok());
    m.after_sweep(Some(&interrupted), Duration::from_millis(10));
    let also_failed = SweepSummary {
        cut_short: true,
        done: vec![done("weekend", "rejected")],
        decided_at: clock.now(),
        ..SweepSummary::default()
    };
    assert!(!also_failed.interrupted() && !also_failed.ok());
    m.after_sweep(Some(&also_failed), Duration::from_millis(10));
    let text = m.encode();
    assert_eq!(
        line(&text, "stopd_sweeps_total{result=\"interrupted\"}")
            .rsplit(' ')
            .next(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        line(&text, "stopd_sweeps_total{result=\"failed\"}")
            .rsplit(' ')
            .next(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        line(&text, "stopd_sweeps_total{result=\"ok\"}")
            .rsplit(' ')
            .next(),
        Some("0"),
        "{text}"
    );
    assert!(m.healthy().is_err(), "an interrupted sweep is no success");
}

#[test]
fn healthz_turns_503_when_sweeps_stop_succeeding() {
    let (clock, m) = setup();
    let e = m.healthy().unwrap_err();
    assert!(e.contains("no successful sweep yet"), "{e}");
    let good = SweepSummary {
        decided_at: clock.now(),
        ..SweepSummary::default()
    };
    m.after_sweep(Some(&good), Duration::from_millis(10));
    assert!(m.healthy().is_ok());
    // Every 10 s: stale after 30 s without a good sweep, failures or not.
    clock.advance(chrono::TimeDelta::seconds(20));
    m.after_sweep(None, Duration::ZERO);
    assert!(m.healthy().is_ok(), "{:?}", m.healthy());
    clock.advance(chrono::TimeDelta::seconds(11));
    let e = m.healthy().unwrap_err();
    assert!(e.contains("stale") && e.contains("31s"), "{e}");
    m.after_sweep(Some(&good), Duration::from_millis(10));
    assert!(m.healthy().is_ok());
}

/// PostgreSQL: a standby is healthy without sweeping and says who leads; `stopd_leader` and
/// `stopd_leader_epoch` follow the role; a database that cannot be reached is a 503 whatever
/// the role; the leader is judged by its sweeps, as a lone daemon is.
#[test]
fn leadership_in_healthz_and_metrics() {
    use crate::runtime::leadership::{Leadership, Seen};
    let (clock, m) = setup();
    let me = Leadership::new(&crate::config::HaSettings {
        node: "b".into(),
        lease: Duration::from_secs(15),
    });
    let m = m.with_leadership(Arc::clone(&me));
    assert_eq!(
        m.healthy().unwrap(),
        "ok: standby; no node leads yet (taking the lease)"
    );
    me.pretend(Seen {
        epoch: 4,
        leader: Some("a".into()),
        ..Seen::default()
    });
    assert_eq!(m.healthy().unwrap(), "ok: standby; a leads (epoch 4)");
    m.set_leading(None);
    let text = m.encode();
    assert_eq!(line(&text, "stopd_leader "), "stopd_leader 0");
    me.pretend(Seen {
        database_error: Some("connection refused".into()),
        ..Seen::default()
    });
    let e = m.healthy().unwrap_err();
    assert!(e.contains("cannot be reached: connection refused"), "{e}");
    // It leads (epoch 5): no good sweep yet is unhealthy, then it is judged by its sweeps.
    me.pretend(Seen {
        leading: Some(5),
        epoch: 5,
        leader: Some("b".into()),
        ..Seen::default()
    });
    m.set_leading(Some(5));
    let text = m.encode();
    assert_eq!(line(&text, "stopd_leader "), "stopd_leader 1");
    assert_eq!(line(&text, "stopd_leader_epoch "), "stopd_leader_epoch 5");
    assert!(m.healthy().unwrap_err().contains("no successful sweep yet"));
    let good = SweepSummary {
        decided_at: clock.now(),
        ..SweepSummary::default()
    };
    m.after_sweep(Some(&good), Duration::from_millis(10));
    assert!(m.healthy().is_ok());
}

#[tokio::test]
async fn the_listener_serves_metrics_and_healthz() {
    let (_clock, m) = setup();
    let m = Arc::new(m);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    tokio::spawn(serve(
        listener,
        Arc::clone(&m),
        dir.path().join("none.db").into(),
        cancel.clone(),
    ));
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let h = get("/healthz").await;
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
    assert!(h.contains("no successful sweep yet"), "{h}");
    m.after_sweep(Some(&SweepSummary::default()), Duration::ZERO);
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let text = get("/metrics").await;
    assert!(text.contains("application/openmetrics-text"), "{text}");
    assert!(
        text.contains("stopd_sweeps_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    cancel.cancel();
}

/// 146 idle (half-open) connections left `/healthz` unanswered for about 30 s: 16 slots,
/// each held until its connection's header timeout. Beside 300 idle connections it answers
/// long before any of them times out (the bound below is shorter than `HEADER_TIMEOUT`, so
/// with a queue behind idle connections it cannot pass).
#[tokio::test]
async fn healthz_answers_beside_hundreds_of_idle_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_clock, m) = setup();
    let m = Arc::new(m);
    m.after_sweep(Some(&SweepSummary::default()), Duration::ZERO);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    tokio::spawn(serve(
        listener,
        Arc::clone(&m),
        dir.path().join("none.db").into(),
        cancel.clone(),
    ));
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // Half a request line, then nothing.
            s.write_all(b"GET /heal").await.unwrap();
        }
        idle.push(s);
    }
    let answered = tokio::time::timeout(HEADER_TIMEOUT - Duration::from_secs(1), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    })
    .await
    .expect("/healthz did not answer beside idle connections");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    drop(idle);
    cancel.cancel();
}
