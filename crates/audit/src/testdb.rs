//! The databases the store's tests run on: SQLite always, and PostgreSQL when
//! `STOPD_TEST_POSTGRES` names a server (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, a role
//! that may create databases). Each test gets a database of its own (a fresh SQLite file; a
//! PostgreSQL database with a random name, dropped when the [`TestDb`] is), so tests run in
//! parallel. In CI (`CI` set) the variable must be set and the server must answer: a test that
//! needs PostgreSQL fails, never skips. Elsewhere, without the variable, the PostgreSQL variants
//! are skipped with a note on stderr. The daemon's integration tests use it too (the
//! `testdb` feature).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::Location;

/// The variable naming the test server.
pub const ENV: &str = "STOPD_TEST_POSTGRES";

/// A database for one test, removed with it.
#[derive(Debug)]
pub struct TestDb {
    /// Where it is: open it with `Store::open(db.location())`.
    location: Location,
    /// The SQLite file's directory.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL server's URL and the database to drop.
    drop: Option<(String, String)>,
}

impl TestDb {
    /// Where the database is.
    pub fn location(&self) -> Location {
        self.location.clone()
    }

    /// Which backend, for messages: `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self.location {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }
}

/// A fresh SQLite database (not yet created: `Store::open` creates it).
pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary directory");
    TestDb {
        location: Location::Sqlite(dir.path().join("audit.db")),
        _dir: Some(dir),
        drop: None,
    }
}

/// The test server's URL: `None` (with a note) outside CI when unset; a panic in CI.
fn server() -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{ENV} is not set: in CI the PostgreSQL tests must run (see .ci/run)")
        }
        _ => {
            eprintln!("note: {ENV} is not set; skipping the PostgreSQL variant of this test");
            None
        }
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// A fresh PostgreSQL database, or `None` when the server is not configured (outside CI). A
/// server that is configured but does not answer fails the test.
pub async fn postgres() -> Option<TestDb> {
    static N: AtomicU64 = AtomicU64::new(0);
    let url = server()?;
    // A salt per process (the standard library's random hasher keys), so that names stay apart
    // across runs without reading the clock.
    let salt = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 1_000_000_000;
    let name = format!(
        "stopd_test_{}_{}_{salt}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{ENV}: cannot reach the PostgreSQL test server: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{ENV}: cannot create a test database: {e}"));
    let _ = admin.close().await;
    Some(TestDb {
        location: Location::Postgres(with_database(&url, &name)),
        _dir: None,
        drop: Some((url, name)),
    })
}

/// Every backend a store test runs on: SQLite, then PostgreSQL when configured.
pub async fn backends() -> Vec<TestDb> {
    let mut all = vec![sqlite()];
    all.extend(postgres().await);
    all
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((url, name)) = self.drop.take() else {
            return;
        };
        // Drop may run inside a runtime: a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("note: could not drop a test database: {e}");
        }
    }
}

#[test]
fn a_url_gets_another_database() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres", "t1"),
        "postgres://u:p@h:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
        "postgres://u:p@h:5432/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
}

/// Test time, never the clock's: a fixed instant (2026-12-04T00:00:00Z) that moves one
/// millisecond at each reading, so records made one after another are ordered as the wall
/// clock would order them, and every name made from a time (a digest file's) stays unique.
pub fn tick() -> DateTime<Utc> {
    static MS: AtomicI64 = AtomicI64::new(1_796_342_400_000);
    DateTime::from_timestamp_millis(MS.fetch_add(1, Ordering::Relaxed)).unwrap_or_default()
}
