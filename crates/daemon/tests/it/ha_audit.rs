//! The audit side of high availability through the binary: `report --events` shows each
//! event's node and a leader event's epoch in every format, and `report --coverage` calls the
//! time when nodes ran but none led `no_leader`. The log is written through `stopd_audit` as
//! two nodes would write it (the leader election itself is the daemon's).

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use stopd_audit::{Store, SweepResult, SweepTrigger};

use crate::common::*;

const FREEZE: &str = r#"
[[freeze]]
name = "change-freeze"
start = "2026-11-02T10:00:00Z"
end = "2026-11-02T10:10:00Z"
pipelines = ["prod-*"]
"#;

fn t(s: &str) -> DateTime<Utc> {
    format!("2026-11-02T{s}Z").parse().unwrap()
}

/// A sweep recorded by `store` at `at`, good.
async fn sweep(store: &Store, at: DateTime<Utc>) {
    let id = store
        .begin_sweep(at, SweepTrigger::Schedule, false)
        .await
        .unwrap();
    store
        .finish_sweep(id, at, std::time::Duration::ZERO, &SweepResult::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn report_shows_each_nodes_events_and_the_time_without_a_leader() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config("", FREEZE);
    // host-a leads from 10:00 and sweeps each minute; it loses the lease at 10:03 (and keeps
    // running, a standby now); host-b, up since 10:00:10, takes over only at 10:08.
    let a = Store::open(env.db()).await.unwrap();
    let b = Store::open(env.db()).await.unwrap();
    a.set_node("host-a");
    b.set_node("host-b");
    let none = &|_, _| Vec::new();
    a.record_start(t("10:00:00"), "1.0", Some("aa"), none)
        .await
        .unwrap();
    a.record_leader_acquired(t("10:00:00"), 1).await.unwrap();
    b.record_start(t("10:00:10"), "1.0", Some("aa"), none)
        .await
        .unwrap();
    for m in 0..3 {
        sweep(&a, t("10:00:00") + Duration::minutes(m)).await;
    }
    a.record_leader_lost(t("10:03:00"), 1, "lease not renewed in time")
        .await
        .unwrap();
    b.record_leader_acquired(t("10:08:00"), 2).await.unwrap();
    for m in 8..11 {
        sweep(&b, t("10:00:00") + Duration::minutes(m)).await;
    }
    a.close().await;
    b.close().await;

    let events = env.report(&["--events"]).await;
    let lost = events
        .iter()
        .find(|e| e["event"] == "leader_lost")
        .expect("leader_lost reported");
    assert_eq!(lost["node"], "host-a", "{lost}");
    assert_eq!(lost["epoch"], 1, "{lost}");
    assert_eq!(lost["detail"], "lease not renewed in time", "{lost}");
    let nodes: Vec<&Value> = events.iter().map(|e| &e["node"]).collect();
    assert_eq!(nodes, ["host-a", "host-a", "host-b", "host-a", "host-b"]);
    let csv = env.stopd(&["report", "--events", "--format", "csv"]).await;
    assert_ok(&csv);
    assert!(
        text(&csv.stdout).starts_with("id,at,event,node,epoch,pid,"),
        "{}",
        text(&csv.stdout)
    );
    let table = env.stopd(&["report", "--events"]).await;
    assert!(
        text(&table.stdout).contains("leader_acquired  host-b"),
        "{}",
        text(&table.stdout)
    );

    let coverage = env
        .report(&[
            "--coverage",
            "--since",
            "2026-11-02T09:00:00Z",
            "--until",
            "2026-11-02T11:00:00Z",
        ])
        .await;
    let gaps: Vec<(&str, &str, &str)> = coverage[0]["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["cause"].as_str().unwrap(),
                &g["from"].as_str().unwrap()[11..19],
                &g["to"].as_str().unwrap()[11..19],
            )
        })
        .collect();
    // The 10:02 sweep covers to 10:03:05 (twice the default 30 s interval plus 5 s); the 10:08 one from
    // 10:07:55: between, nodes ran and none led.
    assert_eq!(
        gaps,
        [("no_leader", "10:03:05", "10:07:55")],
        "{coverage:?}"
    );
}
