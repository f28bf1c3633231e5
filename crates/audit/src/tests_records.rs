//! The store's records on every backend ([`testdb::backends`]): each family written and read
//! back on SQLite and PostgreSQL, answering alike (the same JSON, the same chain head).

use chrono::{TimeZone, Utc};

use crate::testdb;
use crate::tests_backends::{intent, open, outcome};

#[tokio::test]
async fn exemptions_round_trip_and_chain_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let until = at + chrono::Duration::hours(2);
    let mut heads = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        let a = store
            .add_exemption(
                at,
                "prod-*",
                until,
                "hotfix",
                "alice",
                Some("release-freeze"),
            )
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        let b = store
            .add_exemption(at, "web", until, "it's urgent", "bob", None)
            .await
            .unwrap();
        assert_eq!((a, b), (1, 2), "{kind}");
        use crate::Revocation::*;
        assert_eq!(
            store
                .revoke_exemption(a, at, "carol", Some("done"))
                .await
                .unwrap(),
            Revoked,
            "{kind}"
        );
        assert_eq!(
            store.revoke_exemption(a, at, "carol", None).await.unwrap(),
            AlreadyRevoked,
            "{kind}"
        );
        assert_eq!(
            store.revoke_exemption(99, at, "carol", None).await.unwrap(),
            NoSuchExemption,
            "{kind}"
        );
        let all = store.exemptions().await.unwrap();
        assert_eq!(all.len(), 2, "{kind}");
        assert_eq!(all[1].revoked_by.as_deref(), Some("carol"), "{kind}");
        assert_eq!(all[1].revoke_reason.as_deref(), Some("done"), "{kind}");
        assert_eq!(all[1].rule.as_deref(), Some("release-freeze"), "{kind}");
        assert_eq!(all[0].reason, "it's urgent", "{kind}");
        let active = store.active_exemptions(at).await.unwrap();
        assert_eq!(active.len(), 1, "{kind}");
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{kind}: {:?}", v.problems);
        assert_eq!(v.records, 3, "{kind}");
        heads.push(v.head_hash);
        store.close().await;
    }
    heads.dedup();
    assert_eq!(heads.len(), 1, "{heads:?}");
}

#[tokio::test]
async fn ad_hoc_freezes_round_trip_and_chain_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let tags: std::collections::BTreeMap<String, String> =
        [("team".to_owned(), "payments".to_owned())].into();
    let mut heads = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        let new = |gate: bool, account: Option<&'static str>| crate::NewFreeze {
            at,
            until: at + chrono::Duration::hours(1),
            pipeline: "prod-*",
            exclude: Some("prod-docs"),
            tags: &tags,
            mode: stopd_rules::Mode::Abandon,
            gate,
            account,
            region: None,
            reason: "incident 42",
            by: "alice",
        };
        let a = store
            .add_freeze(&new(true, Some("1111*")))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        let b = store.add_freeze(&new(false, None)).await.unwrap();
        assert_eq!((a, b), (1, 2), "{kind}");
        let later = at + chrono::Duration::minutes(5);
        assert!(matches!(
            store
                .lift_freeze(a, later, "resolved", "bob")
                .await
                .unwrap(),
            crate::Lift::Lifted
        ));
        assert!(matches!(
            store.lift_freeze(a, later, "again", "bob").await.unwrap(),
            crate::Lift::AlreadyLifted { .. }
        ));
        assert!(matches!(
            store.lift_freeze(9, later, "x", "bob").await.unwrap(),
            crate::Lift::NoSuchFreeze
        ));
        let active = store.active_freezes(later).await.unwrap();
        assert_eq!(
            active.iter().map(|f| f.id).collect::<Vec<_>>(),
            [b],
            "{kind}"
        );
        assert!(!active[0].gate, "{kind}");
        assert_eq!(active[0].tags, tags, "{kind}");
        let all = store.freezes().await.unwrap();
        assert_eq!(all.len(), 2, "{kind}");
        assert!(all[1].gate, "{kind}");
        assert_eq!(all[1].account.as_deref(), Some("1111*"), "{kind}");
        assert_eq!(all[1].lifted_by.as_deref(), Some("bob"), "{kind}");
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{kind}: {:?}", v.problems);
        heads.push(v.head_hash);
        store.close().await;
    }
    heads.dedup();
    assert_eq!(heads.len(), 1, "{heads:?}");
}

/// What every read of stops and gates answers, as JSON: the same on both backends.
#[tokio::test]
async fn stop_and_gate_reads_answer_alike_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let mut answers = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        // Three stops: one stopped, one with no outcome (pending), one dry run.
        let a = store
            .record_intent(&intent("prod-web", "e1", at))
            .await
            .unwrap();
        store
            .record_outcome(a, &outcome(at, crate::Outcome::Stopped))
            .await
            .unwrap();
        store
            .record_intent(&intent("prod-api", "e2", at))
            .await
            .unwrap();
        let mut dry = intent("dev-web", "e3", at);
        dry.dry_run = true;
        dry.account = "default";
        let c = store.record_intent(&dry).await.unwrap();
        store
            .record_outcome(c, &outcome(at, crate::Outcome::DryRun))
            .await
            .unwrap();
        // Two gate actions on one transition, the second without an outcome yet.
        let gate = |action| crate::NewGate {
            account: "111122223333",
            region: "eu-west-1",
            pipeline: "prod-web",
            stage: "Deploy",
            rule: "release-freeze",
            action,
            reason: "frozen",
        };
        let g = store
            .gate_intent(at, None, &gate(crate::GateAction::Disable), false)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        store
            .gate_outcome(g, at, crate::GateOutcome::Done, None)
            .await
            .unwrap();
        // The last action is read with its outcome typed: done, ours.
        let key = ("prod-web".to_string(), "Deploy".to_string());
        let last = store.last_gates("111122223333", "eu-west-1").await.unwrap();
        let done = &last[&key];
        assert_eq!(done.outcome, Some(crate::GateOutcome::Done), "{kind}");
        assert!(done.ours() && !done.pending(), "{kind}: {done:?}");
        store
            .gate_intent(
                at + chrono::Duration::minutes(1),
                None,
                &gate(crate::GateAction::Enable),
                false,
            )
            .await
            .unwrap();
        // The enable has no outcome yet: pending, not ours.
        let last = store.last_gates_everywhere().await.unwrap();
        let (.., open) = last
            .iter()
            .find(|(.., p, s, _)| (p, s) == (&key.0, &key.1))
            .unwrap_or_else(|| panic!("{kind}: {last:?}"));
        assert_eq!(open.action, crate::GateAction::Enable, "{kind}");
        assert!(open.pending() && !open.ours(), "{kind}: {open:?}");
        let due = at + chrono::Duration::minutes(11);
        let filtered = crate::ReportFilter {
            pipeline: Some("prod-*".into()),
            account: Some("1111*".into()),
            ..Default::default()
        };
        let answer = serde_json::json!({
            "report": store.report(&crate::ReportFilter::default()).await.unwrap(),
            "filtered": store.report(&filtered).await.unwrap(),
            "pending": store.pending().await.unwrap().iter().map(|p| p.id).collect::<Vec<_>>(),
            "due": store.escalations_due(due).await.unwrap().len(),
            "next": store.next_escalation(at).await.unwrap(),
            "dry": store.dry_run_recorded("e3", "release-freeze").await.unwrap(),
            "not_dry": store.dry_run_recorded("e1", "release-freeze").await.unwrap(),
            "rules": store.rule_names().await.unwrap(),
            "gates": store.gate_records(None, None, Some("prod-*"), None, (Some("1111*"), None)).await.unwrap(),
            "last": store.last_gates("111122223333", "eu-west-1").await.unwrap().len(),
            "everywhere": store.last_gates_everywhere().await.unwrap().len(),
        });
        assert_eq!(
            answer["filtered"].as_array().map(Vec::len),
            Some(2),
            "{kind}: {answer:#}"
        );
        assert_eq!(
            answer["gates"].as_array().map(Vec::len),
            Some(2),
            "{kind}: {answer:#}"
        );
        assert_eq!(answer["dry"], true, "{kind}");
        assert_eq!(answer["not_dry"], false, "{kind}");
        answers.push(answer);
        store.close().await;
    }
    if let [sqlite, postgres] = answers.as_slice() {
        assert_eq!(sqlite, postgres);
    }
}

/// Sweeps written whole, quiet ones folded into runs, a held sweep written before its stop,
/// and each place's last sweep: the same answers on both backends.
#[tokio::test]
async fn sweeps_and_runs_answer_alike_on_every_backend() {
    use crate::SweepTrigger::*;
    let t0 = Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap();
    let quiet = crate::SweepResult {
        pipelines_seen: 10,
        executions_seen: 3,
        api_calls: 4,
        ..Default::default()
    };
    let mut answers = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        store
            .compact_quiet_sweeps(std::time::Duration::from_secs(65))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        // A start-up sweep, kept whole.
        let s = store.begin_sweep(t0, Startup, false).await.unwrap();
        let d = std::time::Duration::from_millis(800);
        store
            .finish_sweep(s, t0 + chrono::Duration::seconds(1), d, &quiet)
            .await
            .unwrap();
        // Five quiet scheduled sweeps: one run.
        for k in 1..=5 {
            let at = t0 + chrono::Duration::seconds(30 * k);
            let id = store.begin_sweep(at, Schedule, false).await.unwrap();
            store
                .finish_sweep(id, at + chrono::Duration::seconds(1), d, &quiet)
                .await
                .unwrap();
        }
        // A scheduled sweep that stops something: its held row is written first.
        let at = t0 + chrono::Duration::seconds(180);
        let id = store.begin_sweep(at, Schedule, false).await.unwrap();
        let mut i = intent("prod-web", "e1", at);
        i.sweep_id = Some(id);
        store.record_intent(&i).await.unwrap();
        let busy = crate::SweepResult {
            stops_decided: 1,
            ..quiet.clone()
        };
        store
            .finish_sweep(id, at + chrono::Duration::seconds(1), d, &busy)
            .await
            .unwrap();
        // Two more quiet ones, left open, then flushed as at shutdown.
        for k in 7..=8 {
            let at = t0 + chrono::Duration::seconds(30 * k);
            let id = store.begin_sweep(at, Schedule, false).await.unwrap();
            store
                .finish_sweep(id, at + chrono::Duration::seconds(1), d, &quiet)
                .await
                .unwrap();
        }
        let open_run = store.last_quiet_sweep().await.unwrap();
        store.flush_sweep_run().await.unwrap();
        let place = |account: &str, ok| crate::PlaceResult {
            account: account.into(),
            region: "eu-west-1".into(),
            ok,
            interrupted: false,
            error: (!ok).then(|| "AccessDenied".to_owned()),
        };
        let end = t0 + chrono::Duration::seconds(300);
        store
            .record_places(
                end,
                &[place("b", true), place("A", false), place("a_", true)],
            )
            .await
            .unwrap();
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{kind}: {:?}", v.problems);
        let answer = serde_json::json!({
            "sweeps": store.sweeps(None, None).await.unwrap(),
            "last_good": store.last_good_sweep().await.unwrap(),
            "open_run": open_run,
            "last_sweep": store.last_sweep().await.unwrap().map(|s| s.finished_at),
            "places": store.place_sweeps().await.unwrap(),
            "head": v.head_hash,
            "records": v.records,
        });
        assert_eq!(
            answer["sweeps"].as_array().map(Vec::len),
            Some(4),
            "{kind}: {answer:#}"
        );
        answers.push(answer);
        store.close().await;
    }
    if let [sqlite, postgres] = answers.as_slice() {
        assert_eq!(sqlite, postgres);
    }
}

/// Starts, stops, an unclean stop, a window that began unwatched, coverage's reads and the
/// notification outbox: the same answers on both backends.
#[tokio::test]
async fn lifecycle_coverage_and_outbox_answer_alike_on_every_backend() {
    let t0 = Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap();
    let h = |n: i64| t0 + chrono::Duration::hours(n);
    let windows = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        let start = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        if from <= start && start < to {
            vec![crate::events::StartedWindow {
                rule: "release-freeze".into(),
                start,
                end: start + chrono::Duration::hours(8),
            }]
        } else {
            Vec::new()
        }
    };
    let mut answers = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        let first = store
            .record_start(t0, "1.0.0", Some("abc"), &windows)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        let s = store
            .begin_sweep(t0, crate::SweepTrigger::Startup, false)
            .await
            .unwrap();
        store
            .finish_sweep(
                s,
                t0,
                std::time::Duration::from_millis(5),
                &Default::default(),
            )
            .await
            .unwrap();
        store
            .record_reload(h(1), Ok(Some("def")), None)
            .await
            .unwrap();
        store
            .record_reload(h(1), Err("line 3: bad"), None)
            .await
            .unwrap();
        store.record_stop(h(1)).await.unwrap();
        // Down from 09:00 to 11:00: the 10:00 window began unwatched.
        let second = store
            .record_start(h(3), "1.0.1", Some("def"), &windows)
            .await
            .unwrap();
        // No stop: the next start finds an unclean one.
        let third = store
            .record_start(h(5), "1.0.1", None, &windows)
            .await
            .unwrap();
        assert!(
            first.unclean.is_none() && second.unclean.is_none(),
            "{kind}"
        );
        assert_eq!(second.unwatched.len(), 1, "{kind}");
        assert!(third.unclean.is_some(), "{kind}");
        store
            .add_exemption(h(5), "prod-*", h(6), "hotfix", "alice", None)
            .await
            .unwrap();
        let since = store.notify_since("ops", t0).await.unwrap();
        let exemptions = store.pending_exemptions("ops", since).await.unwrap();
        let unwatched = store.pending_unwatched("ops", since).await.unwrap();
        assert_eq!((exemptions.len(), unwatched.len()), (1, 1), "{kind}");
        let done = crate::outbox::Delivered {
            at: crate::ts(h(5)),
            source: crate::outbox::Source::Exemptions,
            source_id: exemptions[0].source_id,
            attempts: 1,
        };
        store
            .mark_delivered("ops", std::slice::from_ref(&done))
            .await
            .unwrap();
        // Again: a receipt recorded twice is one.
        store.mark_delivered("ops", &[done]).await.unwrap();
        assert_eq!(store.delivered_count().await.unwrap(), 1, "{kind}");
        assert!(
            store
                .pending_exemptions("ops", since)
                .await
                .unwrap()
                .is_empty()
        );
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{kind}: {:?}", v.problems);
        let answer = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}",
            (first, second, third),
            store.events(None, None).await.unwrap(),
            store.lifecycle(h(6)).await.unwrap(),
            store.first_start().await.unwrap(),
            store
                .sweep_spans(t0, h(6), chrono::Duration::seconds(65))
                .await
                .unwrap(),
            unwatched,
            store.pending_unwatched("ops", since).await.unwrap(),
            v.head_hash,
        );
        answers.push(answer);
        store.close().await;
    }
    if let [sqlite, postgres] = answers.as_slice() {
        assert_eq!(sqlite, postgres);
    }
}
