//! Which failures of the audit database pass by themselves (a blip: trying again later may
//! succeed) and which do not (trying again does the same thing again). A caller that retries
//! (an `[ha]` node's start) retries only the first kind, and fails on the second: a role
//! without INSERT, a constraint that a bug violates, a database read-only for good never
//! heal, and a loop that hides them behind a healthy-looking standby keeps systemd's
//! `Restart=on-failure` from ever firing.

/// SQLSTATEs (PostgreSQL) of a database that is going away, coming back, or busy: the server
/// shutting down or starting (`57P01` admin_shutdown, `57P02` crash_shutdown, `57P03`
/// cannot_connect_now), a transaction that lost a race (`40001` serialization_failure,
/// `40P01` deadlock_detected, `55P03` lock_not_available), a statement cancelled (`57014`
/// query_canceled: our `statement_timeout`), and a writer that reached a server which is,
/// for the moment of a failover, a replica (`25006` read_only_sql_transaction).
const TRANSIENT_CODES: [&str; 8] = [
    "57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014", "25006",
];

/// SQLSTATE classes of which every code is transient: `08` connection exception, `53`
/// insufficient resources (disk full, out of memory, too many connections).
const TRANSIENT_CLASSES: [&str; 2] = ["08", "53"];

/// Whether `e` is a failure of the audit database that may pass by itself: somewhere in its
/// chain, a [`sqlx::Error`] that is an I/O or TLS failure, a pool timeout or a closed pool, or
/// a database error whose SQLSTATE is in `TRANSIENT_CLASSES` or `TRANSIENT_CODES`. Any
/// other error (another database error, a row that does not decode, an error of ours without
/// a `sqlx::Error`) is permanent.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(sqlx_transient)
}

/// [`is_transient`] of one `sqlx::Error`.
fn sqlx_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            TRANSIENT_CODES.contains(&code.as_ref())
                || TRANSIENT_CLASSES
                    .iter()
                    .any(|class| code.len() == 5 && code.starts_with(class))
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use anyhow::Context;
    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A database error with a SQLSTATE, as the server would answer.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            "error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn db(code: &'static str) -> anyhow::Error {
        anyhow::Error::from(sqlx::Error::Database(Box::new(Coded(code))))
    }

    /// Connection failures, a pool that timed out or closed, and the SQLSTATEs of a server
    /// going away or busy are transient, however deep in the chain (under `.context`); a
    /// permission denied, a CHECK violation, a plain `RAISE`, a decode error and an error
    /// without a `sqlx::Error` are not.
    #[test]
    fn transient_errors_are_the_blips_and_only_them() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        for e in [
            anyhow::Error::from(sqlx::Error::Io(io)),
            anyhow::Error::from(sqlx::Error::PoolTimedOut),
            anyhow::Error::from(sqlx::Error::PoolClosed),
            db("08006"),
            db("08P01"),
            db("53300"),
            db("53100"),
            db("57P01"),
            db("57P03"),
            db("40001"),
            db("40P01"),
            db("55P03"),
            db("57014"),
            db("25006"),
            Err::<(), _>(sqlx::Error::PoolTimedOut)
                .context("cannot begin an audit transaction")
                .context("cannot record the start")
                .unwrap_err(),
        ] {
            assert!(is_transient(&e), "{e:#}");
        }
        for e in [
            db("42501"),
            db("23514"),
            db("P0001"),
            db("25P02"),
            db("0800"),
            anyhow::Error::from(sqlx::Error::RowNotFound),
            anyhow::Error::from(sqlx::Error::Protocol("bad".into())),
            anyhow::anyhow!("the audit database was opened read-only"),
            anyhow::anyhow!("connection reset"),
        ] {
            assert!(!is_transient(&e), "{e:#}");
        }
    }
}
