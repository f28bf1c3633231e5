//! Opening the database: a [`Location`] is a SQLite path or a PostgreSQL URL. SQLite: create it
//! whole (mode 0600, migrated under a temporary name, then linked into place), migrate it, set
//! its pragmas, open it read-only. PostgreSQL: connect, and migrate with its own migrations
//! (`migrations-postgres/`, not a translation of SQLite's) on a connection of its own.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::mpsc;

use crate::{Backend, STATEMENT_TIMEOUT, Store, chain, writer};

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// PostgreSQL's migrations: the same tables, constraints and append-only triggers as SQLite's.
pub(crate) static PG_MIGRATOR: Migrator = sqlx::migrate!("../../migrations-postgres");

/// Where the audit log lives: a SQLite file, or a PostgreSQL database named by a
/// `postgres://` or `postgresql://` URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database's URL (it may hold a password: [`Location`]'s `Display` and
    /// `Debug` leave it out).
    Postgres(String),
}

impl Location {
    /// A URL with the scheme `postgres` or `postgresql` is PostgreSQL; anything else is a path.
    pub fn parse(s: &str) -> Location {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Location::Postgres(s.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(s))
        }
    }

    /// The SQLite file, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }

    /// Whether there may be an audit log to read: a SQLite file that exists, or any PostgreSQL
    /// URL (whether it holds a log, opening it tells).
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.exists(),
            Location::Postgres(_) => true,
        }
    }

    /// Whether it is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// Why a PostgreSQL URL cannot name a database, if it cannot (`None` for SQLite): it must
    /// parse, and name a host.
    pub fn postgres_problem(&self) -> Option<String> {
        let Location::Postgres(url) = self else {
            return None;
        };
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Some(format!("is not a PostgreSQL URL that parses ({e})")),
        };
        if parsed.host_str().is_none_or(str::is_empty) {
            return Some(
                "names no host: postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full".into(),
            );
        }
        PgConnectOptions::from_str(url)
            .err()
            .map(|e| format!("is not a PostgreSQL URL that parses ({e})"))
    }

    /// Whether a PostgreSQL URL carries a password.
    pub fn has_password(&self) -> bool {
        match self {
            Location::Postgres(url) => url::Url::parse(url).is_ok_and(|u| u.password().is_some()),
            Location::Sqlite(_) => false,
        }
    }

    /// A PostgreSQL URL with `password` put in it (percent-encoded; [`Location`]'s `Display`
    /// and `Debug` leave it out); a SQLite path, or a URL that does not parse, as it is.
    #[must_use]
    pub fn with_password(self, password: &str) -> Location {
        match self {
            Location::Postgres(url) => {
                let Ok(mut u) = url::Url::parse(&url) else {
                    return Location::Postgres(url);
                };
                if u.set_password(Some(password)).is_ok() {
                    Location::Postgres(u.into())
                } else {
                    Location::Postgres(url)
                }
            }
            sqlite @ Location::Sqlite(_) => sqlite,
        }
    }
}

impl From<&Location> for Location {
    fn from(l: &Location) -> Location {
        l.clone()
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::Sqlite(p.to_owned())
    }
}

impl From<&PathBuf> for Location {
    fn from(p: &PathBuf) -> Location {
        Location::Sqlite(p.clone())
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Sqlite(p)
    }
}

impl From<&str> for Location {
    fn from(s: &str) -> Location {
        Location::parse(s)
    }
}

impl fmt::Display for Location {
    /// A path as it is; a URL as `postgres://HOST:PORT/DATABASE`, without user or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => match PgConnectOptions::from_str(url) {
                Ok(o) => write!(
                    f,
                    "postgres://{}:{}/{}",
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or_default()
                ),
                Err(_) => f.write_str("postgres://(a URL that does not parse)"),
            },
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// How long a session of ours may sit idle inside a transaction before PostgreSQL ends it. Our
/// transactions run their statements back to back, so only a process that stopped mid-way (a
/// paused VM, a SIGSTOP, a partition) is ever idle in one: without this, a paused leader that
/// held the chain's lock, or the lease row `FOR KEY SHARE`, would block every other node's writes,
/// and the takeover itself, for as long as it stayed paused. Its transaction is rolled back, so
/// nothing it had not committed is written (and an intent not written is a call not made).
const IDLE_IN_TRANSACTION: &str = "5s";

/// The server's side of a connection whose client vanished (a partitioned or killed node, a
/// dropped NAT mapping): TCP keepalives after 10 s idle, every 5 s, 3 unanswered probes; and
/// `tcp_user_timeout`, data sent and unacknowledged for 30 s. Without them the server notices
/// only after the kernel's retransmissions (about 15 minutes on Linux), while the session holds
/// what it locked (the chain's lock, the lease row): every other node's writes, and a
/// takeover, would wait that long. sqlx opens its own sockets and sets no keepalive on the
/// client's side (nor reads libpq's `keepalives*` parameters: sqlx issue 3540); the client is
/// bounded by stopd's own timeouts instead (ARCHITECTURE.md, "Sessions").
const KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
];

/// Every PostgreSQL session's settings: [`IDLE_IN_TRANSACTION`], [`STATEMENT_TIMEOUT`] (unless
/// `migrating`), [`KEEPALIVES`], and a name in `pg_stat_activity`. A setting the URL already
/// gives (`?options=-c%20statement_timeout%3D60s`) is left to it.
fn session_options(options: PgConnectOptions, migrating: bool) -> PgConnectOptions {
    let statement_timeout = format!("{}s", STATEMENT_TIMEOUT.as_secs());
    let mut settings = vec![("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)];
    if !migrating {
        settings.push(("statement_timeout", statement_timeout.as_str()));
    }
    settings.extend(KEEPALIVES);
    let given = options.get_options().unwrap_or_default().to_owned();
    let ours: Vec<_> = settings
        .into_iter()
        .filter(|(key, _)| !given.contains(key))
        .collect();
    options.options(ours).application_name("stopd")
}

/// A reader's PostgreSQL store: connected, not migrated, refused without audit tables.
async fn open_postgres_read_only(url: &str) -> Result<Store> {
    let shown = Location::Postgres(url.to_owned());
    let options = session_options(
        PgConnectOptions::from_str(url)
            .with_context(|| format!("{shown} is not a PostgreSQL URL that parses"))?,
        false,
    );
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .with_context(|| unreachable(&options))?;
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'stops'")
            .fetch_one(&pool)
            .await
            .with_context(|| format!("cannot read the audit database {shown}"))?;
    if tables == 0 {
        pool.close().await;
        bail!("{shown} is not a stopd audit database (it has no audit tables)");
    }
    Ok(Store::with_backend(
        Backend::Postgres(pool),
        None,
        Arc::default(),
    ))
}

/// How long taking a pooled connection may last, its test included: the pool pings an idle
/// connection before lending it, so one that died while idle (half-open) is found out within
/// this bound and closed (that call fails; the next opens a fresh connection) rather than
/// handed over to wait on it. sqlx's default, said here.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The error of a PostgreSQL server that does not answer at `options`' host and port.
pub(crate) fn unreachable(options: &PgConnectOptions) -> String {
    format!(
        "cannot reach the audit database at {}:{}",
        options.get_host(),
        options.get_port()
    )
}

/// Connects to PostgreSQL and migrates. The migrator takes PostgreSQL's advisory lock, so two
/// nodes starting at once migrate one after the other (the second finds nothing to do); it runs
/// on a connection of its own, closed afterwards, so a lock a failed migration left behind goes
/// with its session instead of back into the pool.
async fn open_postgres(url: &str) -> Result<PgPool> {
    let shown = Location::Postgres(url.to_owned());
    let given = PgConnectOptions::from_str(url)
        .with_context(|| format!("{shown} is not a PostgreSQL URL that parses"))?;
    let options = session_options(given.clone(), false);
    let unreachable = || unreachable(&options);
    let mut conn = PgConnection::connect_with(&session_options(given, true))
        .await
        .with_context(unreachable)?;
    let migrated = PG_MIGRATOR.run_direct(&mut conn).await;
    let _ = conn.close().await;
    migrated.with_context(|| format!("cannot migrate the audit database {shown}"))?;
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .with_context(unreachable)
}

/// Whether a connection going back to the pool is out of every transaction, by SQLite's own
/// account and by sqlx's; if not, the pool closes it (closing rolls back whatever it held) and
/// opens a fresh one for the next user.
///
/// Why both: after a COMMIT that failed for a full disk, SQLite has already rolled the
/// transaction back, but sqlx still counts it open; the ROLLBACK that dropping the transaction
/// queues then fails ("no transaction is active"), and every later BEGIN on that connection
/// failed with "attempted to call begin_with at non-zero transaction depth", for as long as the
/// process ran. The reverse (SQLite still in a transaction that sqlx counts closed) would
/// turn every later commit into a no-op.
async fn out_of_transaction(conn: &mut SqliteConnection) -> bool {
    // The ping runs on the connection's worker after anything queued before it (the rollback a
    // dropped transaction queued), so the count read next is settled.
    let clean = conn.ping().await.is_ok()
        && !conn.is_in_transaction()
        // sqlx counts none open, and SQLite must agree: its BEGIN fails inside a transaction (a
        // deferred BEGIN and its ROLLBACK take no lock).
        && match conn.begin().await {
            Ok(tx) => tx.rollback().await.is_ok(),
            Err(_) => false,
        }
        && !conn.is_in_transaction();
    if !clean {
        tracing::warn!(
            "closing an audit database connection left inside a failed transaction; the next write opens a fresh one"
        );
    }
    clean
}

/// Creates a migrated database at `path`: under a temporary name first, then linked into
/// place (if another process made one meanwhile, that one is kept).
async fn create(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the audit directory {}", dir.display()))?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "audit.db".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.creating-{}", std::process::id()));
    let cleanup = |tmp: &Path| {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = tmp.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    };
    cleanup(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create the audit database in {}", dir.display()))?;
    // The mode asked for above is cut by the umask; say it once more, exactly.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    let made = async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(Store::write_options(&tmp)?)
            .await?;
        MIGRATOR.run(&pool).await?;
        // Without the free pages a migration that rebuilds a table leaves (a full disk is then
        // found at the first write that needs a page, as before). (SQLite: VACUUM.)
        sqlx::query("VACUUM").execute(&pool).await?;
        // Back to a single file before it is linked into place. (SQLite: wal_checkpoint.)
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await?;
        pool.close().await;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = made {
        cleanup(&tmp);
        return Err(e.context(format!(
            "cannot create the audit database {}",
            path.display()
        )));
    }
    let linked = std::fs::hard_link(&tmp, path);
    cleanup(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot create the audit database {}", path.display()))
        }
    }
}

/// A reader's failure to open the database, in words an operator can act on.
fn read_error(path: &Path, e: sqlx::Error) -> anyhow::Error {
    let text = e.to_string();
    if text.contains("readonly database") || text.contains("unable to open") {
        anyhow::anyhow!(
            "cannot read the audit database {}: this user may not read it, or may not write its directory (a reader of a WAL database needs its -shm file); run as the daemon's user, or with sudo ({text})",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot open the audit database {}", path.display()))
    }
}

impl Store {
    /// Opens (creating it and its directory if missing) and migrates the database for writing.
    ///
    /// A new database is made whole before it appears: created (mode 0600, in a directory
    /// created 0700) and migrated under a temporary name, then linked into place, so a reader
    /// never sees half a schema and the audit log is never readable by the whole machine,
    /// whatever the process umask.
    ///
    /// On PostgreSQL (a `postgres://` URL), connects and migrates (safe when several nodes
    /// start at once).
    pub async fn open(location: impl Into<Location>) -> Result<Store> {
        let path = match location.into() {
            Location::Sqlite(path) => path,
            Location::Postgres(url) => {
                let pool = open_postgres(&url).await?;
                let (sender, rx) = mpsc::unbounded_channel();
                let commits = Arc::new(AtomicU64::new(0));
                let mut store = Store::with_backend(
                    Backend::Postgres(pool.clone()),
                    Some(sender),
                    commits.clone(),
                );
                let fence = crate::lease::FenceCell::default();
                store.fence = Arc::clone(&fence);
                tokio::spawn(writer::group_commit_pg(pool, rx, commits, fence));
                return Ok(store);
            }
        };
        let path = path.as_path();
        if !path.exists() {
            create(path).await?;
        }
        let options = Self::write_options(path)?;
        // One connection: one writer, and statements from concurrent stops queue on it. A
        // connection goes back to the pool only out of every transaction, else it is closed
        // and the next user gets a fresh one ([`out_of_transaction`]): every write path, the
        // group-commit writer's and [`Store::begin_write`]'s alike, recovers from a failed
        // BEGIN or COMMIT (a full disk) by itself.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(async move { Ok(out_of_transaction(conn).await) }))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the audit database {}", path.display()))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("cannot migrate the audit database {}", path.display()))?;
        let chained = chain::backfill(&mut *pool.acquire().await?)
            .await
            .context("cannot chain the audit records written before the chain")?;
        if chained > 0 {
            tracing::info!(
                records = chained,
                "chained the audit records written before the hash chain"
            );
        }
        let (sender, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer::group_commit(pool.clone(), rx, commits.clone()));
        Ok(Store::with_backend(
            Backend::Sqlite(pool),
            Some(sender),
            commits,
        ))
    }

    /// SQLite: WAL, `synchronous = FULL`, foreign keys, a 10 s busy wait.
    pub(crate) fn write_options(path: &Path) -> Result<SqliteConnectOptions> {
        Ok(SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10)))
    }

    /// Opens an existing database for reading; works while the daemon writes.
    ///
    /// On PostgreSQL, connects without migrating (a reader never changes the schema) and
    /// refuses a database without audit tables.
    pub async fn open_read_only(location: impl Into<Location>) -> Result<Store> {
        let path = match location.into() {
            Location::Sqlite(path) => path,
            Location::Postgres(url) => return open_postgres_read_only(&url).await,
        };
        let path = path.as_path();
        if !path.exists() {
            bail!(
                "no audit database at {} (it is created when the daemon first runs; see [daemon] database)",
                path.display()
            );
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| read_error(path, e))?;
        let tables: Result<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'stops'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| read_error(path, e));
        let tables = match tables {
            Ok(n) => n,
            Err(e) => {
                pool.close().await;
                return Err(e);
            }
        };
        if tables == 0 {
            pool.close().await;
            bail!(
                "{} is not a stopd audit database (it has no audit tables: an empty or foreign file)",
                path.display()
            );
        }
        Ok(Store::with_backend(
            Backend::Sqlite(pool),
            None,
            Arc::default(),
        ))
    }
}
