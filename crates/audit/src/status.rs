//! Reads and writes behind `stopd status`, `/healthz` and the metrics' database gauges.

use crate::{OPEN_ESCALATIONS, PolicyLoadTrigger, Store, on_pool, ts};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

/// The newest sweep written whole (`sweep_results`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LastSweep {
    /// When it finished (RFC 3339 UTC).
    pub finished_at: String,
    /// Its first error.
    pub error: Option<String>,
    /// How many errors it had.
    pub errors: i64,
    /// Its recorded result, if one was (rows before results were recorded have none).
    pub result: Option<String>,
}

/// The columns of [`PolicyLoad`] (`policy_loads`).
const POLICY_LOAD_COLUMNS: &str = "hash, at";

/// The columns of [`LastSweep`] (`sweep_results r`).
const LAST_SWEEP_COLUMNS: &str = "r.finished_at, r.error, r.errors, r.result";

/// A policy put in force.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyLoad {
    /// SHA-256 of the policy file, hex.
    pub hash: String,
    /// When (RFC 3339 UTC).
    pub at: String,
}

impl Store {
    /// Records the policy the daemon put in force, at a `start` or a `reload` (a
    /// [`PolicyLoadTrigger`] name: any other is refused before anything is written).
    pub async fn record_policy_load(
        &self,
        at: DateTime<Utc>,
        path: &str,
        hash: &str,
        trigger: &str,
    ) -> Result<()> {
        let trigger: PolicyLoadTrigger = trigger.parse()?;
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO policy_loads (at, pid, path, hash, trigger) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ts(at))
        .bind(i64::from(std::process::id()))
        .bind(path)
        .bind(hash)
        .bind(trigger)
        .execute(pool)
        .await
        .map(drop))
        .context("cannot record the policy in force")?;
        Ok(())
    }

    /// The policy put in force last.
    pub async fn last_policy_load(&self) -> Result<Option<PolicyLoad>> {
        let sql =
            format!("SELECT {POLICY_LOAD_COLUMNS} FROM policy_loads ORDER BY id DESC LIMIT 1");
        on_pool!(self, |pool| sqlx::query_as(&sql).fetch_optional(pool).await)
            .context("cannot read the policy log")
    }

    /// Finish stops with an escalation deadline, not yet escalated.
    pub async fn pending_escalations(&self) -> Result<usize> {
        let sql = format!("SELECT COUNT(*) {OPEN_ESCALATIONS}");
        let n: i64 = on_pool!(self, |pool| sqlx::query_scalar(&sql).fetch_one(pool).await)
            .context("cannot read escalation deadlines")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The newest sweep written whole.
    pub async fn last_sweep(&self) -> Result<Option<LastSweep>> {
        let sql = format!(
            "SELECT {LAST_SWEEP_COLUMNS} FROM sweep_results r \
             ORDER BY r.finished_at DESC, r.sweep_id DESC LIMIT 1"
        );
        on_pool!(self, |pool| sqlx::query_as(&sql).fetch_optional(pool).await)
            .context("cannot read the sweep log")
    }

    /// When the last sweep of a run of quiet sweeps finished (closed runs and the open one).
    pub async fn last_quiet_sweep(&self) -> Result<Option<String>> {
        const SQL: &str = "SELECT MAX(t) FROM (SELECT MAX(last_finished_at) AS t FROM sweep_runs \
             UNION ALL SELECT MAX(last_finished_at) FROM sweep_run_open) AS q";
        on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await)
            .context("cannot read the sweep log")
    }
}
