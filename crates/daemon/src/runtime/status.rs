//! What the daemon leaves for `stopd status` and `/metrics` to read: the policy it put in force
//! (recorded at start and at each good reload), and the gauges read back from the audit database.

use anyhow::Result;
use chrono::{DateTime, Utc};
use stopd_audit::Store;
use stopd_rules::Policy;

use crate::config::Config;

/// Records the policy the daemon put in force at `at` (`start` or `reload`).
pub async fn record_policy_load(
    store: &Store,
    cfg: &Config,
    trigger: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    store
        .record_policy_load(
            at,
            &cfg.path.display().to_string(),
            &cfg.policy_hash,
            trigger,
        )
        .await
}

/// Gauges read from the audit database (for `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct DatabaseGauges {
    /// Exemptions in force: the policy's and break-glass ones.
    pub exemptions_active: usize,
    /// Finish stops with an escalation deadline, not yet escalated.
    pub pending_escalations: usize,
    /// Freeze rules with an open window, ad-hoc ones included (when a policy was given).
    pub freezes_in_force: Option<usize>,
}

/// Reads the [`DatabaseGauges`] at `now`.
pub async fn database_gauges(
    store: &Store,
    policy: Option<&Policy>,
    now: DateTime<Utc>,
) -> Result<DatabaseGauges> {
    let mut exemptions_active = store.active_exemptions(now).await?.len();
    let mut freezes_in_force = None;
    if let Some(policy) = policy {
        exemptions_active += policy
            .exemptions()
            .iter()
            .filter(|e| e.active_at(now))
            .count();
        let adhoc = store.active_freezes(now).await?;
        freezes_in_force = Some(policy.open_freezes(now) + adhoc.len());
    }
    Ok(DatabaseGauges {
        exemptions_active,
        pending_escalations: store.pending_escalations().await?,
        freezes_in_force,
    })
}
