//! Daemon lifecycle events: start, reload, clean stop, and an unclean stop found at the next
//! start. Each is an audit record (chained).

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, chain, ts};

/// SHA-256 of the policy file's bytes, hex (`None` if it cannot be read).
pub fn policy_hash(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| hex::encode(Sha256::digest(&b)))
}

/// One lifecycle event, as `report --events` prints it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRecord {
    /// Row id.
    pub id: i64,
    /// When (for `unclean_stop`: the last sign of life of that process).
    pub at: String,
    /// `start`, `reload`, `stop` or `unclean_stop`.
    pub event: String,
    /// The daemon's process id.
    pub pid: i64,
    /// `start`: the version of stopd.
    pub version: Option<String>,
    /// `start` and `reload`: SHA-256 of the policy file in force after it, hex.
    pub policy_hash: Option<String>,
    /// `reload`: `ok` or `refused`.
    pub result: Option<String>,
    /// A refused reload's error; an unclean stop's evidence.
    pub detail: Option<String>,
}

/// What a `start` found of the run before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncleanStop {
    /// The process that did not stop cleanly.
    pub pid: i64,
    /// Its last sign of life (its last sweep, or its start).
    pub last_seen: String,
}

impl Store {
    /// Records a start; first, if the run before it never recorded a stop, an `unclean_stop`
    /// at that run's last sign of life (returned).
    pub async fn record_start(
        &self,
        at: DateTime<Utc>,
        version: &str,
        policy_hash: Option<&str>,
    ) -> Result<Option<UncleanStop>> {
        let mut tx = self.begin_write().await?;
        let last: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT event, pid, at FROM lifecycle_events \
             WHERE event IN ('start', 'stop', 'unclean_stop') ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let mut unclean = None;
        if let Some((event, pid, started)) = last
            && event == "start"
        {
            // Its last sign of life: its last event, or the last sweep it started or finished.
            let seen: String = sqlx::query_scalar(
                "SELECT MAX(t) FROM ( \
                   SELECT at AS t FROM lifecycle_events WHERE pid = ?1 AND at >= ?2 \
                   UNION ALL SELECT started_at FROM sweeps WHERE pid = ?1 AND started_at >= ?2 \
                   UNION ALL SELECT r.finished_at FROM sweep_results r JOIN sweeps s ON s.id = r.sweep_id \
                     WHERE s.pid = ?1 AND s.started_at >= ?2 \
                   UNION ALL SELECT last_finished_at FROM sweep_runs \
                     WHERE pid = ?1 AND first_started_at >= ?2)",
            )
            .bind(pid)
            .bind(&started)
            .fetch_one(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO lifecycle_events (at, event, pid, detail) VALUES (?, 'unclean_stop', ?, ?) RETURNING id",
            )
            .bind(&seen)
            .bind(pid)
            .bind(format!(
                "pid {pid}, started {started}, recorded no stop; last sign of life {seen}"
            ))
            .fetch_one(&mut *tx)
            .await?;
            chain::link(&mut tx, "lifecycle_events", id).await?;
            unclean = Some(UncleanStop {
                pid,
                last_seen: seen,
            });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lifecycle_events (at, event, pid, version, policy_hash) \
             VALUES (?, 'start', ?, ?, ?) RETURNING id",
        )
        .bind(ts(at))
        .bind(i64::from(std::process::id()))
        .bind(version)
        .bind(policy_hash)
        .fetch_one(&mut *tx)
        .await?;
        chain::link(&mut tx, "lifecycle_events", id).await?;
        tx.commit().await.context("cannot record the start")?;
        Ok(unclean)
    }

    /// Records a reload: `Ok(hash)` for a policy now in force, `Err(error)` for a refused one.
    pub async fn record_reload(
        &self,
        at: DateTime<Utc>,
        result: Result<Option<&str>, &str>,
    ) -> Result<()> {
        let (outcome, hash, detail) = match result {
            Ok(hash) => ("ok", hash, None),
            Err(e) => ("refused", None, Some(e)),
        };
        self.record_event(at, "reload", outcome, hash, detail)
            .await
            .context("cannot record the reload")
    }

    /// Records a clean stop.
    pub async fn record_stop(&self, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lifecycle_events (at, event, pid) VALUES (?, 'stop', ?) RETURNING id",
        )
        .bind(ts(at))
        .bind(i64::from(std::process::id()))
        .fetch_one(&mut *tx)
        .await?;
        chain::link(&mut tx, "lifecycle_events", id).await?;
        tx.commit().await.context("cannot record the stop")?;
        Ok(())
    }

    async fn record_event(
        &self,
        at: DateTime<Utc>,
        event: &str,
        result: &str,
        hash: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lifecycle_events (at, event, pid, policy_hash, result, detail) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ts(at))
        .bind(event)
        .bind(i64::from(std::process::id()))
        .bind(hash)
        .bind(result)
        .bind(detail)
        .fetch_one(&mut *tx)
        .await?;
        chain::link(&mut tx, "lifecycle_events", id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifecycle events at or after `since` and before `until`, oldest first.
    pub async fn events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<EventRecord>> {
        sqlx::query_as(
            "SELECT id, at, event, pid, version, policy_hash, result, detail FROM lifecycle_events \
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2) ORDER BY at, id",
        )
        .bind(since.map(ts))
        .bind(until.map(ts))
        .fetch_all(&self.pool)
        .await
        .context("cannot read the lifecycle events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_start_after_a_start_without_a_stop_records_the_unclean_stop_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let t0: DateTime<Utc> = "2026-12-19T23:00:00Z".parse().unwrap();
        let m = chrono::Duration::minutes;
        assert_eq!(
            store.record_start(t0, "1.0", Some("aa")).await.unwrap(),
            None
        );
        let s = store
            .begin_sweep(t0 + m(1), "schedule", false)
            .await
            .unwrap();
        store
            .finish_sweep(s, t0 + m(2), std::time::Duration::ZERO, &Default::default())
            .await
            .unwrap();
        // Killed: no stop. The next start finds it.
        let unclean = store
            .record_start(t0 + m(600), "1.0", Some("aa"))
            .await
            .unwrap()
            .expect("an unclean stop");
        assert_eq!(unclean.last_seen, ts(t0 + m(2)));
        store.record_reload(t0 + m(601), Err("bad")).await.unwrap();
        store
            .record_reload(t0 + m(602), Ok(Some("bb")))
            .await
            .unwrap();
        store.record_stop(t0 + m(603)).await.unwrap();
        // A clean stop: the next start finds nothing.
        assert_eq!(
            store.record_start(t0 + m(700), "1.0", None).await.unwrap(),
            None
        );
        let kinds: Vec<(String, String, Option<String>)> = store
            .events(None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.at, e.event, e.result))
            .collect();
        let at = |k| ts(t0 + m(k));
        assert_eq!(
            kinds,
            [
                (at(0), "start".into(), None),
                (at(2), "unclean_stop".into(), None),
                (at(600), "start".into(), None),
                (at(601), "reload".into(), Some("refused".into())),
                (at(602), "reload".into(), Some("ok".into())),
                (at(603), "stop".into(), None),
                (at(700), "start".into(), None),
            ]
        );
        assert!(store.verify().await.unwrap().intact());
    }
}
