//! The gate log: every action on a stage's inbound transition, recorded before it is made
//! (`gates`), and how it ended (`gate_outcomes`).

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::writer::{GateOutcomeRow, GateRow, Write};
use crate::{GateAction, GateOutcome, Place, Store, on_pool, ts};

/// A gate action about to be made.
#[derive(Debug, Clone, Copy)]
pub struct NewGate<'a> {
    /// Account name.
    pub account: &'a str,
    /// Region.
    pub region: &'a str,
    /// Pipeline.
    pub pipeline: &'a str,
    /// The stage whose inbound transition it is.
    pub stage: &'a str,
    /// The gating freeze.
    pub rule: &'a str,
    /// Disable (close), or enable (open).
    pub action: GateAction,
    /// The reason sent (disable) or found (enable).
    pub reason: &'a str,
}

/// The columns of [`LastGate`] (`gates g`, `gate_outcomes o`).
pub(crate) const LAST_GATE_COLUMNS: &str = "g.id, g.rule, g.action, o.outcome, g.reason";

/// The last recorded action on one transition.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LastGate {
    /// Row id.
    pub id: i64,
    /// The gating freeze.
    pub rule: String,
    /// Disable or enable.
    pub action: GateAction,
    /// Its outcome; `None` while none is recorded (pending: in flight, or interrupted by a
    /// crash).
    pub outcome: Option<GateOutcome>,
    /// The reason sent (disable) or found (enable).
    pub reason: String,
}

impl LastGate {
    /// Whether stopd holds this transition closed (its last action closed it).
    pub fn ours(&self) -> bool {
        self.action == GateAction::Disable && self.outcome == Some(GateOutcome::Done)
    }

    /// Whether its outcome is unknown: recorded before it was made, and nothing after.
    pub fn pending(&self) -> bool {
        self.outcome.is_none()
    }
}

/// The last action of one transition, where it is (`last_gates_everywhere`).
#[derive(sqlx::FromRow)]
struct PlacedGate {
    account: String,
    region: String,
    pipeline: String,
    stage: String,
    #[sqlx(flatten)]
    last: LastGate,
}

/// The columns of [`GateRecord`] (`gates g`, `gate_outcomes o`).
pub(crate) const GATE_RECORD_COLUMNS: &str = "g.id, g.at, g.pipeline, g.stage, g.rule, g.action, \
     COALESCE(o.outcome, CASE WHEN g.dry_run = TRUE THEN 'dry_run' ELSE 'pending' END) AS outcome, \
     o.error, g.reason, g.account, g.region";

/// One gate action, as `report --gates` prints it (text: the report's names, the outcome
/// a [`GateOutcome`] name or `pending`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct GateRecord {
    /// Row id.
    pub id: i64,
    /// When it was decided (RFC 3339 UTC).
    pub at: String,
    /// Pipeline.
    pub pipeline: String,
    /// The stage whose inbound transition it is.
    pub stage: String,
    /// The gating freeze.
    pub rule: String,
    /// `disable` or `enable`.
    pub action: String,
    /// `done`, `already_disabled`, `left_alone`, `failed`, `dry_run`, `pipeline_not_found`
    /// (`pending` if the process died before it was known).
    pub outcome: String,
    /// Error or note.
    pub error: Option<String>,
    /// The reason sent or found.
    pub reason: String,
    /// Account name (absent on rows recorded before accounts were: the ambient account).
    pub account: Option<String>,
    /// Region (absent on rows recorded before regions were).
    pub region: Option<String>,
}

impl Store {
    /// The last recorded action of every transition stopd ever touched in the engine's account
    /// and region (rows from before accounts were recorded: the ambient account's).
    pub async fn last_gates(
        &self,
        account: &str,
        region: &str,
    ) -> Result<HashMap<(String, String), LastGate>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            pipeline: String,
            stage: String,
            #[sqlx(flatten)]
            last: LastGate,
        }
        let sql = format!(
            "SELECT g.pipeline, g.stage, {LAST_GATE_COLUMNS} \
             FROM gates g LEFT JOIN gate_outcomes o ON o.gate_id = g.id \
             WHERE g.id IN (SELECT MAX(id) FROM gates \
                            WHERE {account} = $1 \
                              AND (region IS NULL OR region = $2) \
                            GROUP BY pipeline, stage)",
            account = Place::account_sql("account"),
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(account)
            .bind(region)
            .fetch_all(pool)
            .await)
        .context("cannot read the gate log")?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.pipeline, r.stage), r.last))
            .collect())
    }

    /// The last recorded action of every transition stopd ever touched, in every account and
    /// region: (account, region, pipeline, stage, last action). Rows from before accounts were
    /// recorded count as the `default` account's, region "".
    pub async fn last_gates_everywhere(
        &self,
    ) -> Result<Vec<(String, String, String, String, LastGate)>> {
        let sql = format!(
            "SELECT {account} AS account, COALESCE(g.region, '') AS region, g.pipeline, \
                    g.stage, {LAST_GATE_COLUMNS} \
             FROM gates g LEFT JOIN gate_outcomes o ON o.gate_id = g.id \
             WHERE g.id IN (SELECT MAX(id) FROM gates \
                            GROUP BY {grouped}, COALESCE(region, ''), pipeline, stage) \
             ORDER BY 1, 2, 3, 4",
            account = Place::account_sql("g.account"),
            grouped = Place::account_sql("account"),
        );
        let rows: Vec<PlacedGate> =
            on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
                .context("cannot read the gate log")?;
        Ok(rows
            .into_iter()
            .map(|r| (r.account, r.region, r.pipeline, r.stage, r.last))
            .collect())
    }

    /// Records a gate action before it is made; returns its id. Through the group-commit
    /// writer: at a window edge thousands of transitions close at once, and each of them
    /// committed alone (two fsyncs an action) was most of the edge's time.
    pub async fn gate_intent(
        &self,
        at: DateTime<Utc>,
        sweep_id: Option<i64>,
        a: &NewGate<'_>,
        dry_run: bool,
    ) -> Result<i64> {
        // The sweep that decided it is on record first (a quiet sweep's row is held back).
        if let Some(sweep) = sweep_id {
            self.write_held(sweep).await?;
        }
        let row = GateRow {
            at: ts(at),
            sweep_id,
            pipeline: a.pipeline.to_owned(),
            stage: a.stage.to_owned(),
            rule: a.rule.to_owned(),
            action: a.action,
            reason: a.reason.to_owned(),
            dry_run,
            account: a.account.to_owned(),
            region: a.region.to_owned(),
        };
        self.write(|tx| Write::GateIntent(Box::new(row), tx))
            .await
            .context("cannot record a gate action before making it")
    }

    /// Records how a gate action ended, `at`.
    pub async fn gate_outcome(
        &self,
        id: i64,
        at: DateTime<Utc>,
        outcome: GateOutcome,
        error: Option<&str>,
    ) -> Result<()> {
        let row = GateOutcomeRow {
            gate_id: id,
            at,
            outcome,
            error: error.map(str::to_owned),
        };
        self.write(|tx| Write::GateOutcome(row, tx))
            .await
            .context("cannot record a gate action's outcome")
    }

    /// Gate actions, oldest first, in `[since, until)`.
    pub async fn gate_records(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        pipeline: Option<&str>,
        rule: Option<&str>,
        place: (Option<&str>, Option<&str>),
    ) -> Result<Vec<GateRecord>> {
        let sql = format!(
            "SELECT {GATE_RECORD_COLUMNS} \
             FROM gates g LEFT JOIN gate_outcomes o ON o.gate_id = g.id \
             WHERE ($1 IS NULL OR g.at >= $1) AND ($2 IS NULL OR g.at < $2) \
               AND ($3 IS NULL OR glob($3, g.pipeline)) AND ($4 IS NULL OR g.rule = $4) \
               AND ($5 IS NULL OR glob($5, {account})) \
               AND ($6 IS NULL OR glob($6, COALESCE(g.region, ''))) \
             ORDER BY g.at, g.pipeline, g.stage, g.id",
            account = Place::account_sql("g.account"),
        );
        on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(since.map(ts))
            .bind(until.map(ts))
            .bind(pipeline)
            .bind(rule)
            .bind(place.0)
            .bind(place.1)
            .fetch_all(pool)
            .await)
        .context("cannot read the gate log")
    }
}
