//! Ad-hoc freezes ("stop the line") as recorded: `freezes` and `freeze_lifts`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use stopd_rules::FreezeSpec;

use crate::chain::Chained;
use crate::{Mode, Store, on_pool, parse_ts, ts, write_tx};

/// What [`Store::lift_freeze`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lift {
    /// Recorded now.
    Lifted,
    /// No freeze has that id.
    NoSuchFreeze,
    /// Lifted before: when and by whom.
    AlreadyLifted { at: String, by: String },
    /// Its window ended (exclusive end, RFC 3339).
    Ended { until: String },
}

/// The name of ad-hoc freeze `id` as a rule: in the audit log, `plan`, `windows`.
pub fn rule_name(id: i64) -> String {
    format!("adhoc-{id}")
}

/// A freeze to record.
#[derive(Debug, Clone)]
pub struct NewFreeze<'a> {
    /// From (now).
    pub at: DateTime<Utc>,
    /// Until (exclusive).
    pub until: DateTime<Utc>,
    /// Pipeline glob.
    pub pipeline: &'a str,
    /// Glob of pipelines spared.
    pub exclude: Option<&'a str>,
    /// Tags every frozen pipeline carries.
    pub tags: &'a BTreeMap<String, String>,
    /// Stop mode (the policy's: it crosses into the audit's [`Mode`] when written).
    pub mode: stopd_rules::Mode,
    /// Also hold new work at stage transitions.
    pub gate: bool,
    /// Only accounts (`[[account]] name`) matching this glob; `None`: every one.
    pub account: Option<&'a str>,
    /// Only regions matching this glob; `None`: every one.
    pub region: Option<&'a str>,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub by: &'a str,
}

/// One ad-hoc freeze, as recorded (and as `freeze list --format json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct FreezeRecord {
    /// Id; the rule is `adhoc-<id>`.
    pub id: i64,
    /// The rule's name.
    pub rule: String,
    /// Window start.
    pub created_at: String,
    /// Window end (exclusive), unless lifted earlier.
    pub until: String,
    /// Pipeline glob.
    pub pipeline: String,
    /// Glob of pipelines spared.
    pub exclude: Option<String>,
    /// Tags every frozen pipeline carries.
    pub tags: BTreeMap<String, String>,
    /// Finish or abandon (a row with any other mode is an error when read, never a default).
    pub mode: Mode,
    /// Holds new work at stage transitions too.
    pub gate: bool,
    /// Only accounts matching this glob (`None`: every one).
    pub account: Option<String>,
    /// Only regions matching this glob (`None`: every one).
    pub region: Option<String>,
    /// Why.
    pub reason: String,
    /// Who froze.
    pub created_by: String,
    /// When it was lifted early, if it was.
    pub lifted_at: Option<String>,
    /// Who lifted it.
    pub lifted_by: Option<String>,
    /// Why it was lifted.
    pub lift_reason: Option<String>,
}

impl FreezeRecord {
    /// `active`, `lifted` or `expired` at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.lifted_at.is_some() {
            "lifted"
        } else if self.until <= ts(now) {
            "expired"
        } else {
            "active"
        }
    }

    /// The freeze as a one-off `[[freeze]]` of the policy: `[created_at, until)`, grace none,
    /// rollbacks spared, the reason saying who froze and why.
    pub fn spec(&self) -> FreezeSpec {
        // The reason is a template: the operator's braces are literal.
        let said = self.reason.replace('{', "{{").replace('}', "}}");
        let by = self.created_by.replace('{', "{{").replace('}', "}}");
        FreezeSpec {
            name: self.rule.clone(),
            start: Some(self.created_at.clone()),
            // Lifted early: the window ended then.
            end: Some(self.lifted_at.clone().unwrap_or_else(|| self.until.clone())),
            timezone: Some("UTC".into()),
            pipelines: Some(vec![self.pipeline.clone()]),
            exclude: self.exclude.clone().map(|e| vec![e]),
            tags: (!self.tags.is_empty()).then(|| self.tags.clone()),
            mode: Some(self.mode.into()),
            reason: Some(format!("stop the line by {by}: {said} (until {{until}})")),
            rollbacks: Some(false),
            gate: self.gate.then_some(true),
            accounts: self.account.clone().map(|a| vec![a]),
            regions: self.region.clone().map(|r| vec![r]),
            ..FreezeSpec::default()
        }
    }
}

/// The columns of a [`FreezeRow`] (`freezes f`, `freeze_lifts l`).
const FREEZE_COLUMNS: &str = "f.id, f.created_at, f.until, f.pipeline_glob, f.exclude_glob, \
     f.tags, f.mode, f.gate, f.reason, f.created_by, l.at AS lifted_at, l.lifted_by, \
     l.reason AS lift_reason, f.account_glob, f.region_glob";

/// Every freeze with its lift, if any; a query adds its WHERE and ORDER BY.
const SELECT: &str = "FROM freezes f LEFT JOIN freeze_lifts l ON l.freeze_id = f.id";

/// A freeze as stored, by column name.
#[derive(sqlx::FromRow)]
struct FreezeRow {
    id: i64,
    created_at: String,
    until: String,
    pipeline_glob: String,
    exclude_glob: Option<String>,
    tags: Option<String>,
    mode: Mode,
    gate: bool,
    reason: String,
    created_by: String,
    lifted_at: Option<String>,
    lifted_by: Option<String>,
    lift_reason: Option<String>,
    account_glob: Option<String>,
    region_glob: Option<String>,
}

impl TryFrom<FreezeRow> for FreezeRecord {
    type Error = anyhow::Error;

    fn try_from(r: FreezeRow) -> Result<FreezeRecord> {
        let id = r.id;
        Ok(FreezeRecord {
            id,
            rule: rule_name(id),
            created_at: r.created_at,
            until: r.until,
            pipeline: r.pipeline_glob,
            exclude: r.exclude_glob,
            tags: match r.tags {
                Some(t) => serde_json::from_str(&t)
                    .with_context(|| format!("ad-hoc freeze #{id} has unreadable tags"))?,
                None => BTreeMap::new(),
            },
            mode: r.mode,
            gate: r.gate,
            reason: r.reason,
            created_by: r.created_by,
            lifted_at: r.lifted_at,
            lifted_by: r.lifted_by,
            lift_reason: r.lift_reason,
            account: r.account_glob,
            region: r.region_glob,
        })
    }
}

impl Store {
    /// Records an ad-hoc freeze; returns its id.
    pub async fn add_freeze(&self, f: &NewFreeze<'_>) -> Result<i64> {
        let tags = (!f.tags.is_empty())
            .then(|| serde_json::to_string(f.tags))
            .transpose()?;
        let id: i64 = write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO freezes (created_at, until, pipeline_glob, exclude_glob, tags, mode, \
                 gate, reason, created_by, account_glob, region_glob) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(ts(f.at))
            .bind(ts(f.until))
            .bind(f.pipeline)
            .bind(f.exclude)
            .bind(&tags)
            .bind(Mode::from(f.mode))
            .bind(f.gate)
            .bind(f.reason)
            .bind(f.by)
            .bind(f.account)
            .bind(f.region)
            .fetch_one(&mut *tx)
            .await
            .context("cannot record the freeze")?;
            tx.link("freezes", id).await?;
            tx.commit().await.context("cannot record the freeze")?;
            id
        });
        Ok(id)
    }

    /// Lifts an ad-hoc freeze early; says so when it does not exist, was lifted, or has ended.
    pub async fn lift_freeze(
        &self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
        by: &str,
    ) -> Result<Lift> {
        let Some(f) = self.freezes().await?.into_iter().find(|f| f.id == id) else {
            return Ok(Lift::NoSuchFreeze);
        };
        // Refusals, as `exempt revoke`'s: nothing is recorded.
        match f.state(at) {
            "lifted" => {
                return Ok(Lift::AlreadyLifted {
                    at: f.lifted_at.unwrap_or_default(),
                    by: f.lifted_by.unwrap_or_default(),
                });
            }
            "expired" => return Ok(Lift::Ended { until: f.until }),
            _ => {}
        }
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO freeze_lifts (freeze_id, at, reason, lifted_by) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(ts(at))
            .bind(reason)
            .bind(by)
            .execute(&mut *tx)
            .await
            .context("cannot record the lift")?;
            tx.link("freeze_lifts", id).await?;
            tx.commit().await.context("cannot record the lift")?;
        });
        Ok(Lift::Lifted)
    }

    /// Every ad-hoc freeze, newest first.
    pub async fn freezes(&self) -> Result<Vec<FreezeRecord>> {
        let sql = format!("SELECT {FREEZE_COLUMNS} {SELECT} ORDER BY f.id DESC");
        let rows: Vec<FreezeRow> =
            on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
                .context("cannot read the ad-hoc freezes")?;
        rows.into_iter().map(FreezeRecord::try_from).collect()
    }

    /// Every ad-hoc freeze whose window (to its end or its lift) overlaps `[from, to)`, oldest
    /// first: for `windows`.
    pub async fn freezes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FreezeRecord>> {
        let (from, to) = (ts(from), ts(to));
        let mut out: Vec<FreezeRecord> = self
            .freezes()
            .await?
            .into_iter()
            .filter(|f| {
                let end = f.lifted_at.as_deref().unwrap_or(&f.until);
                f.created_at.as_str() < to.as_str()
                    && from.as_str() < end
                    && f.created_at.as_str() < end
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// The ad-hoc freezes in force at `now` (started, not ended, not lifted), oldest first.
    pub async fn active_freezes(&self, now: DateTime<Utc>) -> Result<Vec<FreezeRecord>> {
        let sql = format!(
            "SELECT {FREEZE_COLUMNS} {SELECT} \
             WHERE l.freeze_id IS NULL AND f.created_at <= $1 AND f.until > $1 ORDER BY f.id"
        );
        let now = ts(now);
        let rows: Vec<FreezeRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(&now)
            .fetch_all(pool)
            .await)
        .context("cannot read the ad-hoc freezes")?;
        let out: Vec<FreezeRecord> = rows
            .into_iter()
            .map(FreezeRecord::try_from)
            .collect::<Result<_>>()?;
        // Text order is time order only for well-formed rows: check them.
        for f in &out {
            parse_ts(&f.until)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze<'a>(tags: &'a BTreeMap<String, String>, at: DateTime<Utc>) -> NewFreeze<'a> {
        NewFreeze {
            at,
            until: at + chrono::Duration::hours(1),
            pipeline: "prod-*",
            exclude: None,
            tags,
            mode: stopd_rules::Mode::Abandon,
            gate: false,
            account: None,
            region: None,
            reason: "incident",
            by: "alice",
        }
    }

    /// A mode is read as written, and a row whose mode is none the audit log knows is an error
    /// naming it, not a freeze that stops with `finish` (seen before: any unknown mode became
    /// `finish`). The CHECK constraint keeps such a row out; a database written around it (an
    /// edited file, another tool) is read the same way.
    #[tokio::test]
    async fn a_mode_is_read_as_written_and_an_unknown_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let at: DateTime<Utc> = "2026-12-20T10:00:00Z".parse().unwrap();
        let tags = BTreeMap::new();
        store.add_freeze(&freeze(&tags, at)).await.unwrap();
        let read = store.freezes().await.unwrap();
        assert_eq!(read[0].mode, Mode::Abandon);
        assert_eq!(read[0].spec().mode, Some(stopd_rules::Mode::Abandon));
        assert_eq!(
            serde_json::to_value(&read[0]).unwrap()["mode"],
            serde_json::json!("abandon")
        );

        let mut conn = store.pool().unwrap().acquire().await.unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO freezes (created_at, until, pipeline_glob, mode, gate, reason, created_by) \
             VALUES (?, ?, 'p', 'stop-and-wait', 0, 'r', 'b')",
        )
        .bind(ts(at))
        .bind(ts(at + chrono::Duration::hours(1)))
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        for e in [
            format!("{:#}", store.freezes().await.unwrap_err()),
            format!("{:#}", store.active_freezes(at).await.unwrap_err()),
        ] {
            assert!(e.contains("unknown mode \"stop-and-wait\""), "{e}");
            assert!(e.contains("finish, abandon"), "{e}");
        }
    }
}
