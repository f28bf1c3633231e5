//! The audit log's vocabulary: every closed set of names a column holds, defined once. Each
//! enum reads and writes the same snake_case text the schema's CHECK constraint allows
//! (`sqlx::Type` as TEXT), parses it (`FromStr`: an unknown name is an error naming it and the
//! valid ones, never a default), prints it (`Display`, `as_str`) and serializes it (serde) as
//! that text, and lists its names in `ALL`; a test holds each `ALL` to its migration's CHECK.
//!
//! `stopd-rules` defines [`stopd_rules::Mode`] and [`stopd_rules::RuleKind`] for the policy.
//! The audit crate cannot give a foreign type sqlx's traits (the orphan rule), and the policy
//! has no business knowing a column's spelling, so the audit log has its own [`Mode`] and
//! [`RuleKind`] with `From` conversions both ways: the policy's value crosses into the audit's
//! at the store's boundary, and the match in each `From` breaks the build when a side grows.
//!
//! The `sqlx` impls are written for `Sqlite` and `Postgres` (TEXT on both) in the macro below.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Postgres, Sqlite};

/// A name a vocabulary does not know (read from a row, or given by a caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {valid})")]
pub struct UnknownName {
    /// What the name was to be (`stop outcome`, `mode`...).
    pub what: &'static str,
    /// The name given.
    pub value: String,
    /// The names known, comma-separated.
    pub valid: String,
}

/// Defines a vocabulary enum: its variants and their names, and every trait above.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order the schema lists them.
            pub const ALL: &'static [$name] = &[$( $name::$variant, )+];

            /// The name the audit log stores (and prints, and serializes).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`: `{:<8}` lays it out as it did the string.
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        valid: names($name::ALL.iter().map(|v| v.as_str())),
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl sqlx::Type<Sqlite> for $name {
            fn type_info() -> SqliteTypeInfo {
                <str as sqlx::Type<Sqlite>>::type_info()
            }

            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <str as sqlx::Type<Sqlite>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut Vec<SqliteArgumentValue<'q>>,
            ) -> Result<IsNull, BoxDynError> {
                <&str as sqlx::Encode<'q, Sqlite>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, Sqlite> for $name {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as sqlx::Decode<'r, Sqlite>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }

        impl sqlx::Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <str as sqlx::Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <str as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as sqlx::Encode<'q, Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as sqlx::Decode<'r, Postgres>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    all.collect::<Vec<_>>().join(", ")
}

/// Names as an SQL list, `('a', 'b')`, for `IN`: the names are this module's own literals
/// (snake_case, no quotes), never a caller's text.
pub(crate) fn sql_in<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("'{n}'")).collect();
    format!("({})", quoted.join(", "))
}

vocabulary! {
    /// How a stop ended (`stop_outcomes.outcome`).
    Outcome, "stop outcome" {
        /// The API accepted the stop.
        Stopped = "stopped",
        /// A stop was already under way (done, not an error).
        AlreadyStopping = "already_stopping",
        /// It finished first (done, not an error).
        NotStoppable = "not_stoppable",
        /// The pipeline does not exist (any more).
        PipelineNotFound = "pipeline_not_found",
        /// The API refused it for good (validation, permissions).
        Rejected = "rejected",
        /// Retries, the deadline or a shutdown ran out first.
        Failed = "failed",
        /// Decided and recorded; never sent.
        DryRun = "dry_run",
    }
}

impl Outcome {
    /// The execution is stopped or on its way out, by this stop or before it: `stopped`,
    /// `already_stopping`, `not_stoppable` (a dry run made no call; every other outcome did not
    /// stop it).
    pub fn stopped_it(self) -> bool {
        matches!(
            self,
            Outcome::Stopped | Outcome::AlreadyStopping | Outcome::NotStoppable
        )
    }

    /// The API refused the stop for good: the one outcome that makes a sweep not good however
    /// final it is.
    pub fn is_rejection(self) -> bool {
        self == Outcome::Rejected
    }
}

vocabulary! {
    /// What `stopd report --outcome` can ask for: a recorded [`Outcome`], or `pending` (a stop
    /// recorded whose outcome is not: in flight, or interrupted by a crash). Not a column: the
    /// report's word for a stop without a `stop_outcomes` row.
    ReportOutcome, "report outcome" {
        /// `stopped`.
        Stopped = "stopped",
        /// `already_stopping`.
        AlreadyStopping = "already_stopping",
        /// `not_stoppable`.
        NotStoppable = "not_stoppable",
        /// `pipeline_not_found`.
        PipelineNotFound = "pipeline_not_found",
        /// `rejected`.
        Rejected = "rejected",
        /// `failed`.
        Failed = "failed",
        /// `dry_run`.
        DryRun = "dry_run",
        /// Recorded, outcome not yet known.
        Pending = "pending",
    }
}

impl ReportOutcome {
    /// What it means, in the words `stopd report --help` gives each `--outcome` value (for a
    /// CLI that lists [`ReportOutcome::ALL`] as its possible values).
    pub fn help(self) -> &'static str {
        match self {
            ReportOutcome::Stopped => "The API accepted the stop",
            ReportOutcome::AlreadyStopping => "A stop was already under way (done, not an error)",
            ReportOutcome::NotStoppable => "It finished first (done, not an error)",
            ReportOutcome::PipelineNotFound => "The pipeline does not exist",
            ReportOutcome::Rejected => "The API refused it for good (validation, permissions)",
            ReportOutcome::Failed => "Retries or the deadline ran out",
            ReportOutcome::DryRun => "Decided and recorded; never sent",
            ReportOutcome::Pending => {
                "Recorded, outcome not yet known (a stop in flight, or one a crash interrupted)"
            }
        }
    }

    /// The recorded outcome it names (`None`: `pending`).
    pub fn recorded(self) -> Option<Outcome> {
        match self {
            ReportOutcome::Stopped => Some(Outcome::Stopped),
            ReportOutcome::AlreadyStopping => Some(Outcome::AlreadyStopping),
            ReportOutcome::NotStoppable => Some(Outcome::NotStoppable),
            ReportOutcome::PipelineNotFound => Some(Outcome::PipelineNotFound),
            ReportOutcome::Rejected => Some(Outcome::Rejected),
            ReportOutcome::Failed => Some(Outcome::Failed),
            ReportOutcome::DryRun => Some(Outcome::DryRun),
            ReportOutcome::Pending => None,
        }
    }
}

impl From<Outcome> for ReportOutcome {
    fn from(o: Outcome) -> ReportOutcome {
        match o {
            Outcome::Stopped => ReportOutcome::Stopped,
            Outcome::AlreadyStopping => ReportOutcome::AlreadyStopping,
            Outcome::NotStoppable => ReportOutcome::NotStoppable,
            Outcome::PipelineNotFound => ReportOutcome::PipelineNotFound,
            Outcome::Rejected => ReportOutcome::Rejected,
            Outcome::Failed => ReportOutcome::Failed,
            Outcome::DryRun => ReportOutcome::DryRun,
        }
    }
}

vocabulary! {
    /// What kind of rule decided a stop (`stops.rule_kind`).
    RuleKind, "rule kind" {
        /// A `[[freeze]]` (or an ad-hoc freeze).
        Freeze = "freeze",
        /// A `[[timeout]]`.
        Timeout = "timeout",
        /// `stopd stop`.
        Manual = "manual",
    }
}

impl From<stopd_rules::RuleKind> for RuleKind {
    fn from(k: stopd_rules::RuleKind) -> RuleKind {
        match k {
            stopd_rules::RuleKind::Freeze => RuleKind::Freeze,
            stopd_rules::RuleKind::Timeout => RuleKind::Timeout,
            stopd_rules::RuleKind::Manual => RuleKind::Manual,
        }
    }
}

impl From<RuleKind> for stopd_rules::RuleKind {
    fn from(k: RuleKind) -> stopd_rules::RuleKind {
        match k {
            RuleKind::Freeze => stopd_rules::RuleKind::Freeze,
            RuleKind::Timeout => stopd_rules::RuleKind::Timeout,
            RuleKind::Manual => stopd_rules::RuleKind::Manual,
        }
    }
}

vocabulary! {
    /// How a stop is made (`stops.mode`, `freezes.mode`).
    Mode, "mode" {
        /// Stop and wait: running actions finish, nothing new starts.
        Finish = "finish",
        /// Stop and abandon running actions.
        Abandon = "abandon",
    }
}

impl From<stopd_rules::Mode> for Mode {
    fn from(m: stopd_rules::Mode) -> Mode {
        match m {
            stopd_rules::Mode::Finish => Mode::Finish,
            stopd_rules::Mode::Abandon => Mode::Abandon,
        }
    }
}

impl From<Mode> for stopd_rules::Mode {
    fn from(m: Mode) -> stopd_rules::Mode {
        match m {
            Mode::Finish => stopd_rules::Mode::Finish,
            Mode::Abandon => stopd_rules::Mode::Abandon,
        }
    }
}

vocabulary! {
    /// An action on a stage's inbound transition (`gates.action`).
    GateAction, "gate action" {
        /// Close it.
        Disable = "disable",
        /// Open it.
        Enable = "enable",
    }
}

impl GateAction {
    /// `Disable` when `disable`, else `Enable`.
    pub fn of(disable: bool) -> GateAction {
        if disable {
            GateAction::Disable
        } else {
            GateAction::Enable
        }
    }
}

vocabulary! {
    /// How a gate action ended (`gate_outcomes.outcome`).
    GateOutcome, "gate outcome" {
        /// Made.
        Done = "done",
        /// Someone else had closed it already (left to them).
        AlreadyDisabled = "already_disabled",
        /// Not ours to open (someone changed it since).
        LeftAlone = "left_alone",
        /// The call failed.
        Failed = "failed",
        /// Decided and recorded; never sent.
        DryRun = "dry_run",
        /// The pipeline does not exist (any more).
        PipelineNotFound = "pipeline_not_found",
    }
}

vocabulary! {
    /// What woke the scheduler for a sweep (`sweeps.trigger`; the schema has no CHECK here, so
    /// this list is the only one).
    SweepTrigger, "sweep trigger" {
        /// The cron schedule.
        Schedule = "schedule",
        /// A window opened or closed.
        Edge = "edge",
        /// The daemon started.
        Startup = "startup",
        /// `stopd run --once`.
        Once = "once",
        /// A scheduled sweep more than two seconds late (the machine slept, a sweep overran).
        CatchUp = "catch-up",
        /// The policy was reloaded.
        Reload = "reload",
        /// Another process changed the database (`stopd exempt`, `stopd freeze`).
        DatabaseChanged = "database-changed",
        /// A failed sweep, tried again after a backoff.
        Retry = "retry",
        /// `stopd demo`.
        Demo = "demo",
        /// This node became the leader (PostgreSQL, `[ha]`): its first sweep, at once.
        Takeover = "takeover",
    }
}

vocabulary! {
    /// What `sweep_results.result` stores: how a sweep ended when its counts do not say it.
    /// NULL, in every row but these, means the sweep ran to its end (see [`SweepVerdict`]).
    SweepEnd, "sweep result" {
        /// A clean shutdown cut it short: neither good nor failed.
        Interrupted = "interrupted",
    }
}

vocabulary! {
    /// How a sweep went, as `report --sweeps` and `status` say it: from its counts, its error
    /// and its [`SweepEnd`].
    SweepVerdict, "sweep verdict" {
        /// Everything read, decided and recorded.
        Ok = "ok",
        /// An error, or a pipeline that could not be read.
        Failed = "failed",
        /// A clean shutdown cut it short.
        Interrupted = "interrupted",
    }
}

vocabulary! {
    /// A daemon lifecycle event (`lifecycle_events.event`).
    LifecycleEvent, "lifecycle event" {
        /// `stopd run` started.
        Start = "start",
        /// It reloaded its policy (or refused to).
        Reload = "reload",
        /// It stopped cleanly.
        Stop = "stop",
        /// A start found the run before it never recorded a stop.
        UncleanStop = "unclean_stop",
        /// This node took the lease: it is the leader, at the lease's epoch (PostgreSQL, `[ha]`).
        LeaderAcquired = "leader_acquired",
        /// This node gave the lease up or lost it (`detail` says why).
        LeaderLost = "leader_lost",
        /// The event queue (`[events]`) could not be read, after it could (or first): `detail`
        /// names the queue and the error. Recorded once per outage, whichever node saw it.
        EventsFailed = "events_failed",
        /// The event queue can be read again after an `events_failed`.
        EventsResumed = "events_resumed",
    }
}

vocabulary! {
    /// How a reload went (`lifecycle_events.result`).
    ReloadResult, "reload result" {
        /// The new policy is in force.
        Ok = "ok",
        /// The new policy was refused; the old one stays.
        Refused = "refused",
    }
}

vocabulary! {
    /// Why a policy was put in force (`policy_loads.trigger`).
    PolicyLoadTrigger, "policy load trigger" {
        /// At a start.
        Start = "start",
        /// At a good reload.
        Reload = "reload",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sqlx::Row;

    use super::*;
    use crate::Store;

    /// The names `CHECK (<column> IN (...))` allows in `table`'s final schema, read from SQLite
    /// itself: the CREATE TABLE plus every ALTER TABLE ADD COLUMN since.
    fn check_set(schema: &[(String, String)], table: &str, column: &str) -> BTreeSet<String> {
        let sql = &schema
            .iter()
            .find(|(name, _)| name == table)
            .unwrap_or_else(|| panic!("no table {table}"))
            .1;
        let compact: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let at = [format!("CHECK ({column} IN ("), format!("{column} IN (")]
            .iter()
            .find_map(|p| compact.find(p.as_str()).map(|i| i + p.len()))
            .unwrap_or_else(|| panic!("no CHECK on {table}.{column}: {compact}"));
        let list = &compact[at..at + compact[at..].find(')').expect("a closing parenthesis")];
        list.split(',')
            .map(|s| s.trim().trim_matches('\'').to_owned())
            .collect()
    }

    fn set<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> BTreeSet<String> {
        all.iter().map(|v| name(*v).to_owned()).collect()
    }

    /// Every column that holds a vocabulary, and the names its enum has.
    fn vocabulary_columns() -> Vec<(&'static str, &'static str, BTreeSet<String>)> {
        vec![
            (
                "stop_outcomes",
                "outcome",
                set(Outcome::ALL, Outcome::as_str),
            ),
            ("stops", "rule_kind", set(RuleKind::ALL, RuleKind::as_str)),
            ("stops", "mode", set(Mode::ALL, Mode::as_str)),
            ("freezes", "mode", set(Mode::ALL, Mode::as_str)),
            ("gates", "action", set(GateAction::ALL, GateAction::as_str)),
            (
                "gate_outcomes",
                "outcome",
                set(GateOutcome::ALL, GateOutcome::as_str),
            ),
            (
                "sweep_results",
                "result",
                set(SweepEnd::ALL, SweepEnd::as_str),
            ),
            (
                "lifecycle_events",
                "event",
                set(LifecycleEvent::ALL, LifecycleEvent::as_str),
            ),
            (
                "lifecycle_events",
                "result",
                set(ReloadResult::ALL, ReloadResult::as_str),
            ),
            (
                "policy_loads",
                "trigger",
                set(PolicyLoadTrigger::ALL, PolicyLoadTrigger::as_str),
            ),
        ]
    }

    /// Each enum is its column's CHECK: a name added on one side only fails here.
    #[tokio::test]
    async fn every_vocabulary_is_its_columns_check_constraint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let schema: Vec<(String, String)> =
            sqlx::query("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                .fetch_all(store.pool().unwrap())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("name"), r.get("sql")))
                .collect();
        let cases = vocabulary_columns();
        for (table, column, ours) in cases {
            assert_eq!(
                check_set(&schema, table, column),
                ours,
                "{table}.{column}: the CHECK constraint and the enum disagree"
            );
        }
        store.close().await;
    }

    /// Each enum is its column's CHECK on PostgreSQL too, read from `pg_constraint`; and every
    /// CHECK there that names values is one of these columns.
    #[tokio::test]
    async fn every_vocabulary_is_its_columns_check_constraint_on_postgres() {
        let Some(db) = crate::testdb::postgres().await else {
            return;
        };
        let store = Store::open(db.location()).await.unwrap();
        let crate::Backend::Postgres(pool) = store.backend() else {
            unreachable!("a PostgreSQL store")
        };
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.conrelid::regclass::text, a.attname::text, pg_get_constraintdef(c.oid) \
             FROM pg_constraint c \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
             WHERE c.contype = 'c' AND c.connamespace = current_schema()::regnamespace \
               AND cardinality(c.conkey) = 1",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let cases = vocabulary_columns();
        for (table, column, ours) in &cases {
            let defs: Vec<&String> = rows
                .iter()
                .filter(|(t, c, _)| t == table && c == column)
                .map(|(_, _, d)| d)
                .collect();
            assert_eq!(
                defs.len(),
                1,
                "{table}.{column}: CHECK constraints {defs:?}"
            );
            // `CHECK ((event = ANY (ARRAY['start'::text, ...])))`, or `= 'one'::text`.
            let theirs: BTreeSet<String> = quoted(defs[0]).into_iter().map(str::to_owned).collect();
            assert_eq!(
                &theirs, ours,
                "{table}.{column}: the CHECK constraint ({}) and the enum disagree",
                defs[0]
            );
        }
        for (table, column, def) in rows {
            let names_values = def.contains('\'');
            let known = cases.iter().any(|(t, c, _)| *t == table && *c == column);
            assert!(
                !names_values || known,
                "{table}.{column} has a CHECK naming values ({def}) that no vocabulary enum holds: add it to vocabulary_columns"
            );
        }
        store.close().await;
    }

    /// The names quoted in `sql`.
    fn quoted(sql: &str) -> Vec<&str> {
        sql.split('\'').skip(1).step_by(2).collect()
    }

    /// The names the SQL constants spell (where a constant cannot format an enum in) are the
    /// vocabulary's: a renamed value fails here, not as a query that silently matches nothing.
    #[test]
    fn the_names_spelled_in_sql_constants_are_the_vocabularys() {
        type Known = fn(&str) -> bool;
        let cases: [(&str, Known); 3] = [
            (crate::OPEN_ESCALATIONS, |n| n.parse::<Outcome>().is_ok()),
            (crate::stops::REPORT_OUTCOME, |n| {
                n.parse::<ReportOutcome>().is_ok()
            }),
            (crate::gates::GATE_RECORD_COLUMNS, |n| {
                n.parse::<GateOutcome>().is_ok() || n == ReportOutcome::Pending.as_str()
            }),
        ];
        for (sql, known) in cases {
            let names = quoted(sql);
            assert!(!names.is_empty(), "{sql}");
            for n in names {
                assert!(known(n), "{n:?} in {sql}");
            }
        }
    }

    /// `report --outcome` knows every recorded outcome, and `pending`, and nothing else.
    #[test]
    fn report_outcomes_are_the_outcomes_and_pending() {
        let mut want = set(Outcome::ALL, Outcome::as_str);
        want.insert("pending".into());
        assert_eq!(set(ReportOutcome::ALL, ReportOutcome::as_str), want);
        for o in Outcome::ALL {
            assert_eq!(ReportOutcome::from(*o).recorded(), Some(*o));
        }
    }

    #[test]
    fn a_name_round_trips_and_an_unknown_one_is_an_error_naming_the_known_ones() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(*m));
            assert_eq!(m.to_string(), m.as_str());
            assert_eq!(
                serde_json::to_string(m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        assert_eq!(format!("{:<8}|", Mode::Finish), "finish  |");
        let e = "Abandon".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown mode \"Abandon\" (expected one of: finish, abandon)"
        );
        assert_eq!(
            "catch-up".parse::<SweepTrigger>(),
            Ok(SweepTrigger::CatchUp)
        );
    }

    #[test]
    fn the_policys_mode_and_rule_kind_cross_both_ways() {
        for m in Mode::ALL {
            assert_eq!(Mode::from(stopd_rules::Mode::from(*m)), *m);
            assert_eq!(stopd_rules::Mode::from(*m).as_str(), m.as_str());
        }
        for k in RuleKind::ALL {
            assert_eq!(RuleKind::from(stopd_rules::RuleKind::from(*k)), *k);
            assert_eq!(stopd_rules::RuleKind::from(*k).as_str(), k.as_str());
        }
    }
}
