//! Break-glass exemptions (`exemptions`) and their revocations (`exemption_revocations`).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::chain::Chained;
use crate::{Store, on_pool, parse_ts, ts, write_tx};

/// What [`Store::revoke_exemption`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Recorded now.
    Revoked,
    /// No exemption has that id.
    NoSuchExemption,
    /// It was revoked before (the first revocation stands).
    AlreadyRevoked,
}

/// The columns of [`ExemptionRecord`] (`exemptions e`, `exemption_revocations r`).
const EXEMPTION_COLUMNS: &str = "e.id, e.created_at, e.pipeline_glob AS pipeline, e.until, \
     e.reason, e.created_by, r.at AS revoked_at, r.revoked_by, e.rule, r.reason AS revoke_reason";

/// A break-glass exemption.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ExemptionRecord {
    /// Id (for `exempt revoke`).
    pub id: i64,
    /// When it was added.
    pub created_at: String,
    /// Pipeline glob.
    pub pipeline: String,
    /// Expiry (exclusive).
    pub until: String,
    /// Why.
    pub reason: String,
    /// Who added it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Who revoked it, if someone did.
    pub revoked_by: Option<String>,
    /// The one rule it exempts from; `None`: every rule.
    pub rule: Option<String>,
    /// Why it was revoked (`exempt revoke --reason`), if it was and someone said.
    pub revoke_reason: Option<String>,
}

impl Store {
    /// Adds a break-glass exemption; returns its id.
    pub async fn add_exemption(
        &self,
        at: DateTime<Utc>,
        glob: &str,
        until: DateTime<Utc>,
        reason: &str,
        by: &str,
        rule: Option<&str>,
    ) -> Result<i64> {
        let id: i64 = write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO exemptions (created_at, pipeline_glob, until, reason, created_by, rule) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(ts(at))
            .bind(glob)
            .bind(ts(until))
            .bind(reason)
            .bind(by)
            .bind(rule)
            .fetch_one(&mut *tx)
            .await
            .context("cannot record the exemption")?;
            tx.link("exemptions", id).await?;
            tx.commit().await.context("cannot record the exemption")?;
            id
        });
        Ok(id)
    }

    /// Revokes an exemption, with why if given; says so when it does not exist or is already
    /// revoked (a refusal the CLI turns into a usage error).
    pub async fn revoke_exemption(
        &self,
        id: i64,
        at: DateTime<Utc>,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Revocation> {
        let exists: bool = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM exemptions WHERE id = $1)"
        )
        .bind(id)
        .fetch_one(pool)
        .await)?;
        if !exists {
            return Ok(Revocation::NoSuchExemption);
        }
        write_tx!(self, |tx| {
            let done = sqlx::query(
                "INSERT INTO exemption_revocations (exemption_id, at, revoked_by, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (exemption_id) DO NOTHING",
            )
            .bind(id)
            .bind(ts(at))
            .bind(by)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .context("cannot record the revocation")?;
            if done.rows_affected() == 0 {
                return Ok(Revocation::AlreadyRevoked);
            }
            tx.link("exemption_revocations", id).await?;
            tx.commit().await.context("cannot record the revocation")?;
        });
        Ok(Revocation::Revoked)
    }

    /// Every exemption, newest first.
    pub async fn exemptions(&self) -> Result<Vec<ExemptionRecord>> {
        let sql = format!(
            "SELECT {EXEMPTION_COLUMNS} \
             FROM exemptions e LEFT JOIN exemption_revocations r ON r.exemption_id = e.id \
             ORDER BY e.id DESC"
        );
        on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
            .context("cannot read exemptions")
    }

    /// Exemptions not revoked and not expired at `now`, as the policy's type.
    pub async fn active_exemptions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<stopd_rules::Exemption>> {
        let mut out = Vec::new();
        for e in self.exemptions().await? {
            if e.revoked_at.is_some() {
                continue;
            }
            let until = parse_ts(&e.until)?;
            if now >= until {
                continue;
            }
            match stopd_rules::Exemption::break_glass(
                format!("break-glass #{}", e.id),
                &e.pipeline,
                until,
                e.reason.clone(),
            ) {
                Ok(x) => out.push(x.only_rule(e.rule.clone())),
                Err(err) => {
                    tracing::warn!(id = e.id, error = %err, "skipping an exemption whose glob does not compile")
                }
            }
        }
        Ok(out)
    }
}
