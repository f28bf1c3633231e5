//! Ad-hoc freezes ("stop the line"): `stopd freeze add` writes a one-off freeze from now into the
//! audit database; every sweep reads those in force and adds them to the policy as rules named
//! `adhoc-<id>` (after the file's rules), so they are decided, audited, exempted and reported
//! exactly as a `[[freeze]]` with `start = now` and `grace` none would be. A running daemon
//! sees one added or lifted within about a second (`PRAGMA data_version`, see `run.rs`).
//! The records and their SQL live in `stopd_audit::freezes`.

use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use stopd_audit::{FreezeRecord, Store};
use stopd_rules::{FreezeSpec, Policy};

/// `policy` with the ad-hoc freezes in force at `now` (the same policy when there are none, or
/// no database yet).
pub async fn effective_policy(
    store: &Store,
    policy: &Arc<Policy>,
    now: DateTime<Utc>,
) -> Result<Arc<Policy>> {
    let freezes = store.active_freezes(now).await?;
    with_freezes(policy, &freezes)
}

/// `policy` with these ad-hoc freezes.
pub fn with_freezes(policy: &Arc<Policy>, freezes: &[FreezeRecord]) -> Result<Arc<Policy>> {
    if freezes.is_empty() {
        return Ok(Arc::clone(policy));
    }
    let specs: Vec<FreezeSpec> = freezes.iter().map(FreezeRecord::spec).collect();
    let p = policy.with_adhoc(&specs).map_err(|errors| {
        let text: Vec<String> = errors
            .iter()
            .map(|e| {
                let id = freezes.get(e.at.rule.index).map_or(0, |f| f.id);
                format!("ad-hoc freeze #{id}: {}", e.kind)
            })
            .collect();
        anyhow::anyhow!(text.join("; "))
    })?;
    Ok(Arc::new(p))
}
