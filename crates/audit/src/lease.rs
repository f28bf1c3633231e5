//! Leadership by lease, on PostgreSQL (DESIGN.md, "High availability (PostgreSQL)").
//!
//! One row (`leader_lease`): the node that leads, its epoch, and when its lease ends, by the
//! database's clock (`now()`), so nodes with skewed clocks agree on who leads. A standby takes it
//! over only once it has expired, with epoch + 1 ([`Store::acquire_lease`]); the leader renews
//! it ([`Store::renew_lease`]) and gives it up when it stops cleanly ([`Store::release_lease`]).
//! The row lock PostgreSQL takes for the UPDATE serializes a renewal against a takeover.
//!
//! **Fencing.** A store told it leads ([`Store::set_fence`] with [`Fence::Leader`]) writes every
//! stop intent, stop outcome and gate action in a transaction that first reads the lease row
//! `FOR KEY SHARE` and checks holder and epoch (`writer::group_commit_pg`): a takeover locks
//! the expired row `FOR UPDATE` first, which waits for that transaction, and once it has
//! committed, the old leader's next write fails. The renewal, an UPDATE of non-key columns
//! (`FOR NO KEY UPDATE`), does not conflict with `FOR KEY SHARE`: a busy writer, which holds the
//! row back to back (it begins its next batch at each COMMIT), never holds it up.
//!
//! **Terms.** The work of one term (the sweeps, gates and event consumer of epoch N) writes and
//! calls through a handle of its epoch ([`Store::for_term`]): once the fence is another epoch's,
//! even a later one of this same node after a quick lose-and-retake, its writes are refused and
//! [`Store::may_call`] says no.
//! The intent precedes the call, so a leader that was paused or cut off while another took over
//! cannot record an intent, and never calls AWS. [`Fence::Standby`] refuses those writes without
//! asking the database. No session-level advisory lock is involved: a pooled connection that is
//! recycled takes nothing with it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::{Backend, Store};

/// Who may write fenced records (stop intents and outcomes, gate actions) through a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fence {
    /// Anyone: SQLite (one host, one process), and the commands (`stopd stop`, a person's act).
    #[default]
    Off,
    /// The leader of `epoch`: each fenced transaction checks that the lease row still says so.
    Leader {
        /// This node.
        node: String,
        /// Its epoch.
        epoch: i64,
    },
    /// Nobody: a node that does not lead (or has just stepped down).
    Standby,
}

/// The fence a store and its writer share.
pub(crate) type FenceCell = Arc<RwLock<Fence>>;

/// The lease row as read, with the database's clock at the read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    /// The node that holds (or last held) it.
    pub holder: String,
    /// Its epoch: 1 for the first leader, one more at each takeover.
    pub epoch: i64,
    /// The holder's process id (on its own host).
    pub pid: i64,
    /// When the holder took it (ms since the epoch, the database's clock).
    pub acquired_ms: i64,
    /// When it ends unless renewed (ms since the epoch, the database's clock).
    pub expires_ms: i64,
    /// The database's clock when this was read (ms since the epoch).
    pub now_ms: i64,
}

impl Lease {
    /// Whether a leader holds it now (by the database's clock).
    pub fn held(&self) -> bool {
        self.expires_ms > self.now_ms
    }

    /// When it ends unless renewed.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.expires_ms).unwrap_or_default()
    }

    /// When the holder took it.
    pub fn acquired_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.acquired_ms).unwrap_or_default()
    }
}

/// The lease row's columns as [`Lease`] reads them.
const LEASE_COLUMNS: &str = "holder, epoch, pid, \
    (extract(epoch FROM acquired_at) * 1000)::bigint AS acquired_ms, \
    (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms, \
    (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms";

/// Whether a write of `table` is fenced (DESIGN.md: every intent, gate action and outcome).
pub(crate) fn fenced(table: &str) -> bool {
    matches!(table, "stops" | "stop_outcomes" | "gates" | "gate_outcomes")
}

/// Why a standby's store writes no fenced record.
pub(crate) fn standby_refuses() -> anyhow::Error {
    anyhow::anyhow!(
        "fenced: this node does not lead, so it records no stop or gate action (the leader does)"
    )
}

/// Why a write (or a call) of the term of epoch `term` may not be made under `fence`: the term
/// is over once the fence is not that epoch's leader (a standby, or a later term of this same
/// node after a quick lose-and-retake). `None`: it may (or the handle belongs to no term).
pub(crate) fn term_refuses(term: Option<i64>, fence: &Fence) -> Option<anyhow::Error> {
    let term = term?;
    match fence {
        Fence::Leader { epoch, .. } if *epoch == term => None,
        Fence::Leader { epoch, .. } => Some(anyhow::anyhow!(
            "fenced: the term of epoch {term} is over (this node leads epoch {epoch} now): its work records no stop or gate action"
        )),
        Fence::Standby | Fence::Off => Some(anyhow::anyhow!(
            "fenced: the term of epoch {term} is over (this node does not lead): its work records no stop or gate action"
        )),
    }
}

/// The node and epoch a fenced write transaction must find in the lease row: `None` when the
/// fence is off (or the transaction writes nothing fenced); `Err` for a standby, which writes
/// no fenced record and asks the database nothing.
pub(crate) fn leader(fence: &Fence) -> Result<Option<(&str, i64)>> {
    match fence {
        Fence::Off => Ok(None),
        Fence::Standby => Err(standby_refuses()),
        Fence::Leader { node, epoch } => Ok(Some((node.as_str(), *epoch))),
    }
}

/// The statement that reads, inside a write transaction that holds the chain's lock, the
/// chain's head (`seq`, `hash`) and, for a fenced transaction, the lease row `FOR KEY SHARE`
/// (`leads`: its epoch if it still names this node and epoch, else NULL): a takeover, which
/// locks the row `FOR UPDATE` first ([`Store::acquire_lease`]), then waits for the
/// transaction, while the leader's renewal, an UPDATE of non-key columns (`FOR NO KEY UPDATE`,
/// which `FOR KEY SHARE` does not conflict with), never does: a busy writer that holds the row
/// back to back cannot starve it. Its values are spelled out (the node in hex),
/// so that it can share a simple query, and a round trip, with BEGIN and the lock.
pub(crate) fn head_and_fence_sql(leader: Option<(&str, i64)>) -> String {
    let lease = match leader {
        None => "(SELECT NULL::int8 AS epoch) AS l".to_owned(),
        Some((node, epoch)) => format!(
            "(SELECT epoch FROM leader_lease WHERE id = 1 \
               AND holder = convert_from(decode('{}', 'hex'), 'UTF8') AND epoch = {epoch} \
               AND expires_at > clock_timestamp() FOR KEY SHARE) AS l",
            hex::encode(node)
        ),
    };
    format!(
        "SELECT h.seq, h.hash, l.epoch AS leads FROM (SELECT 1) AS one \
         LEFT JOIN (SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1) AS h ON true \
         LEFT JOIN {lease} ON true"
    )
}

/// The chain's head from the row [`head_and_fence_sql`] read, if the fence lets the
/// transaction write: `Err` ("fenced") when the lease no longer names this node and epoch.
pub(crate) fn head_if_leading(
    row: &sqlx::postgres::PgRow,
    leader: Option<(&str, i64)>,
) -> Result<(i64, crate::chain::Hash)> {
    use sqlx::Row as _;
    if let Some((node, epoch)) = leader
        && row.try_get::<Option<i64>, _>("leads")?.is_none()
    {
        bail!(
            "fenced: node {node:?} no longer holds the lease of epoch {epoch} (another node took over)"
        );
    }
    Ok(crate::chain::head_of(
        row.try_get("seq")?,
        row.try_get("hash")?,
    )?)
}

/// Connections of the lease's own pool: one for the campaign's acquire or renew, one more for
/// a release that overlaps it at shutdown.
const LEASE_CONNECTIONS: u32 = 2;

impl Store {
    /// The PostgreSQL pool, or why leadership needs one.
    fn lease_pool(&self) -> Result<&sqlx::PgPool> {
        match self.backend() {
            Backend::Postgres(pool) => Ok(pool),
            Backend::Sqlite(_) => {
                bail!("leadership by lease needs a PostgreSQL audit database (SQLite: one host)")
            }
        }
    }

    /// The lease's own pool ([`LEASE_CONNECTIONS`] connections, the shared pool's connect
    /// options, connected at first use): a renewal never queues behind the sweeps' and
    /// commands' use of the shared pool of 8, which a writer stuck on a half-open connection
    /// could hold for up to its batch bound, longer than a lease (a review of issue 28).
    fn lease_conn(&self) -> Result<&sqlx::PgPool> {
        let shared = self.lease_pool()?;
        Ok(self.lease_conn.get_or_init(|| {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(LEASE_CONNECTIONS)
                .acquire_timeout(shared.options().get_acquire_timeout())
                .connect_lazy_with((*shared.connect_options()).clone())
        }))
    }

    /// Sets who may write fenced records through this store (and its writer).
    pub fn set_fence(&self, fence: Fence) {
        *self
            .fence
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
    }

    /// Sets the instant after which no call may start unless the lease was renewed (the
    /// campaign's deadline, by this node's monotonic clock).
    pub fn set_call_deadline(&self, at: Option<tokio::time::Instant>) {
        *self
            .call_deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// A handle of this store for the work of this node's term of `epoch` (the sweeps, gates,
    /// reconciliation and event consumer of that term): its stop intents, outcomes and gate
    /// actions are written, and its calls allowed ([`Store::may_call`]), only while the fence
    /// is the leader of that very epoch. After a quick lose-and-retake, a sweep begun under
    /// epoch N is refused under epoch N + 1 of the same node: the writer checks the write's
    /// epoch against the fence it commits under, and the transaction checks that fence against
    /// the lease row. Everything else is shared with `self` (the pool, the writer, the fence).
    #[must_use]
    pub fn for_term(&self, epoch: i64) -> Store {
        let mut s = self.clone();
        s.term = Some(epoch);
        s
    }

    /// The epoch of the term this handle works for ([`Store::for_term`]).
    pub fn term(&self) -> Option<i64> {
        self.term
    }

    /// Whether an AWS call recorded through this store may start now: always without a fence
    /// (SQLite, the commands); never on a standby; on a leader only before its deadline, and,
    /// through a handle of a term ([`Store::for_term`]), only while that term lasts. The
    /// sweep, the gates and the event consumer ask right before each call, after the intent's
    /// commit: a leader paused between the two, whose lease another node took meanwhile, wakes
    /// past its deadline and does not call (the fence alone guards the write, not the call).
    pub fn may_call(&self) -> bool {
        let fence = self.fence();
        if term_refuses(self.term, &fence).is_some() {
            return false;
        }
        match fence {
            Fence::Off => true,
            Fence::Standby => false,
            Fence::Leader { .. } => self
                .call_deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|d| tokio::time::Instant::now() < d),
        }
    }

    /// The fence in force.
    pub fn fence(&self) -> Fence {
        self.fence
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes the lease for `node` for `lease`, if nobody holds it (never held, or expired by the
    /// database's clock): `Some(epoch)`, the new epoch. `None`: another node holds it.
    ///
    /// Also returns when the statement was sent (after a connection was had): the leader counts
    /// its lease from then, by its own monotonic clock, never from before a wait for a
    /// connection (which once had a node that waited 2.7 s take the lease already expired by
    /// its own count).
    pub async fn acquire_lease(
        &self,
        node: &str,
        pid: u32,
        lease: Duration,
    ) -> Result<(Option<i64>, tokio::time::Instant)> {
        let mut conn = self
            .lease_conn()?
            .acquire()
            .await
            .context("cannot take the leader's lease")?;
        let mut tx = bounded(&mut conn, lease)
            .await
            .context("cannot take the leader's lease")?;
        let sent = tokio::time::Instant::now();
        // An expired lease is locked FOR UPDATE before it is taken over: that waits for a
        // fenced write transaction of the old epoch (which holds the row FOR KEY SHARE), so
        // once the takeover commits, none of it can. Only an expired one: a standby's look at
        // a held lease waits for nothing. (The UPDATE alone changes no key column, and would
        // take only FOR NO KEY UPDATE, which FOR KEY SHARE does not hold up.)
        let expired: Option<i16> = sqlx::query_scalar(
            "SELECT id FROM leader_lease WHERE id = 1 AND expires_at <= clock_timestamp() \
             FOR UPDATE",
        )
        .fetch_optional(&mut *tx)
        .await
        .context("cannot take the leader's lease")?;
        let sql = if expired.is_some() {
            // Ours to take: locked, and expired by the latest version of the row.
            "UPDATE leader_lease SET holder = $1, epoch = epoch + 1, pid = $2, \
                 acquired_at = clock_timestamp(), renewed_at = clock_timestamp(), \
                 expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond' \
             WHERE id = 1 AND expires_at <= clock_timestamp() \
             RETURNING epoch"
        } else {
            // Never held (the first leader), or held: a held row is left as it is.
            "INSERT INTO leader_lease (id, holder, epoch, pid, acquired_at, renewed_at, expires_at) \
             VALUES (1, $1, 1, $2, clock_timestamp(), clock_timestamp(), \
                     clock_timestamp() + $3::float8 * interval '1 millisecond') \
             ON CONFLICT (id) DO NOTHING \
             RETURNING epoch"
        };
        let epoch = sqlx::query_scalar(sql)
            .bind(node)
            .bind(i64::from(pid))
            .bind(millis(lease))
            .fetch_optional(&mut *tx)
            .await
            .context("cannot take the leader's lease")?;
        tx.commit()
            .await
            .context("cannot take the leader's lease")?;
        Ok((epoch, sent))
    }

    /// Renews the lease of `node` at `epoch` for `lease` from now (the database's clock):
    /// `true` when renewed, `false` when the lease is no longer this node's at this epoch.
    /// Also returns when the statement was sent (see [`Store::acquire_lease`]).
    pub async fn renew_lease(
        &self,
        node: &str,
        epoch: i64,
        lease: Duration,
    ) -> Result<(bool, tokio::time::Instant)> {
        let mut conn = self
            .lease_conn()?
            .acquire()
            .await
            .context("cannot renew the leader's lease")?;
        let mut tx = bounded(&mut conn, lease)
            .await
            .context("cannot renew the leader's lease")?;
        let sent = tokio::time::Instant::now();
        let renewed = sqlx::query(
            "UPDATE leader_lease SET renewed_at = clock_timestamp(), \
                 expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond' \
             WHERE id = 1 AND holder = $1 AND epoch = $2",
        )
        .bind(node)
        .bind(epoch)
        .bind(millis(lease))
        .execute(&mut *tx)
        .await
        .context("cannot renew the leader's lease")?;
        tx.commit()
            .await
            .context("cannot renew the leader's lease")?;
        Ok((renewed.rows_affected() == 1, sent))
    }

    /// Gives up the lease of `node` at `epoch` (a clean stop): it expires now, and a standby
    /// takes over at its next look instead of after the lease.
    pub async fn release_lease(&self, node: &str, epoch: i64) -> Result<()> {
        let pool = self.lease_conn()?;
        sqlx::query(
            "UPDATE leader_lease SET expires_at = clock_timestamp() \
             WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()",
        )
        .bind(node)
        .bind(epoch)
        .execute(pool)
        .await
        .context("cannot give up the leader's lease")?;
        Ok(())
    }

    /// The lease row (`None`: nobody ever led, or the database is SQLite).
    pub async fn lease(&self) -> Result<Option<Lease>> {
        let Backend::Postgres(pool) = self.backend() else {
            return Ok(None);
        };
        sqlx::query_as(&format!(
            "SELECT {LEASE_COLUMNS} FROM leader_lease WHERE id = 1"
        ))
        .fetch_optional(pool)
        .await
        .context("cannot read the leader's lease")
    }
}

/// A transaction whose statements wait at most lease/6 (at least 100 ms) for a row lock. A
/// takeover or renewal queued behind a paused node's lock (held until PostgreSQL ends that idle
/// transaction) is then given up by the server too, before the caller's own timeout (lease/3)
/// gives up on it: it never commits after this node stopped waiting for it, which would leave
/// a lease held by a node that believes it stands by.
async fn bounded(
    conn: &mut sqlx::PgConnection,
    lease: Duration,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await?;
    let wait = millis(lease / 6).max(100);
    sqlx::query(&format!("SET LOCAL lock_timeout = {wait}"))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// A duration in whole milliseconds, as the SQL above multiplies an interval by.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::{self, tick};
    use crate::tests_backends::intent;

    /// The lease on a real PostgreSQL server: one holder at a time, epoch + 1 at each takeover,
    /// a takeover only after expiry, and a fenced old leader that can no longer record an
    /// intent (while the new one can, and a standby cannot).
    #[tokio::test]
    async fn one_leader_at_a_time_and_the_old_one_fenced_out() {
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let a = Store::open(db.location()).await.unwrap();
        let b = Store::open(db.location()).await.unwrap();
        assert_eq!(a.lease().await.unwrap(), None);

        // A takes it; B cannot while it lasts.
        let long = Duration::from_secs(60);
        assert_eq!(a.acquire_lease("a", 1, long).await.unwrap().0, Some(1));
        assert_eq!(b.acquire_lease("b", 2, long).await.unwrap().0, None);
        let lease = b.lease().await.unwrap().unwrap();
        assert_eq!((lease.holder.as_str(), lease.epoch, lease.pid), ("a", 1, 1));
        assert!(lease.held());
        a.set_fence(Fence::Leader {
            node: "a".into(),
            epoch: 1,
        });
        a.record_intent(&intent("p", "e1", tick())).await.unwrap();

        // A's lease runs out (renewed for a millisecond); B takes over with epoch 2.
        assert!(
            a.renew_lease("a", 1, Duration::from_millis(1))
                .await
                .unwrap()
                .0
        );
        let mut epoch = None;
        for _ in 0..100 {
            epoch = b.acquire_lease("b", 2, long).await.unwrap().0;
            if epoch.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(epoch, Some(2));
        b.set_fence(Fence::Leader {
            node: "b".into(),
            epoch: 2,
        });

        // A wakes: it can neither renew nor record an intent (so it never calls AWS).
        assert!(!a.renew_lease("a", 1, long).await.unwrap().0);
        let refused = a.record_intent(&intent("p", "e2", tick())).await;
        let e = format!("{:#}", refused.unwrap_err());
        assert!(e.contains("fenced"), "{e}");
        b.record_intent(&intent("p", "e2", tick())).await.unwrap();
        // A standby's store refuses without asking.
        a.set_fence(Fence::Standby);
        assert!(a.record_intent(&intent("p", "e3", tick())).await.is_err());
        // The intent A could not write is not in the log; the chain is intact.
        let report = b.report(&crate::ReportFilter::default()).await.unwrap();
        let ids: Vec<&str> = report.iter().map(|r| r.execution_id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(!ids.contains(&"e3"));
        assert!(b.verify().await.unwrap().problems.is_empty());

        // A clean stop gives the lease up: the next standby takes it at once.
        b.release_lease("b", 2).await.unwrap();
        assert_eq!(a.acquire_lease("a", 1, long).await.unwrap().0, Some(3));
    }

    /// A handle of a term ([`Store::for_term`]) writes and calls only under its own epoch: after
    /// a quick lose-and-retake by the same node (epoch 1, then 2), the work of epoch 1 can no
    /// longer record an intent or call, even though the fence (and the lease row) now name this
    /// very node; the work of epoch 2 can. The writer checks the write's epoch against the
    /// fence it commits under, so a write queued under epoch 1 and committed after the retake
    /// is refused too.
    #[tokio::test]
    async fn a_terms_work_ends_with_its_epoch() {
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let a = Store::open(db.location()).await.unwrap();
        let long = Duration::from_secs(60);
        assert_eq!(a.acquire_lease("a", 1, long).await.unwrap().0, Some(1));
        let leads = |epoch| Fence::Leader {
            node: "a".into(),
            epoch,
        };
        a.set_fence(leads(1));
        a.set_call_deadline(Some(tokio::time::Instant::now() + long));
        let first = a.for_term(1);
        assert_eq!(first.term(), Some(1));
        first
            .record_intent(&intent("p", "e1", tick()))
            .await
            .unwrap();
        assert!(first.may_call());

        // A write of epoch 1 is queued; before the writer takes it, the node loses the lease
        // and takes it again (epoch 2).
        let e2 = intent("p", "e2", tick());
        let mut queued = std::pin::pin!(first.record_intent(&e2));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(queued.as_mut().poll(&mut cx).is_pending(), "queued");
        a.set_fence(Fence::Standby);
        assert!(
            a.renew_lease("a", 1, Duration::from_millis(1))
                .await
                .unwrap()
                .0
        );
        let mut epoch = None;
        for _ in 0..100 {
            epoch = a.acquire_lease("a", 1, long).await.unwrap().0;
            if epoch.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(epoch, Some(2));
        a.set_fence(leads(2));
        let e = format!("{:#}", queued.await.unwrap_err());
        assert!(e.contains("the term of epoch 1 is over"), "{e}");

        // Epoch 1's work can neither write nor call; epoch 2's can.
        let e = format!(
            "{:#}",
            first
                .record_intent(&intent("p", "e3", tick()))
                .await
                .unwrap_err()
        );
        assert!(e.contains("the term of epoch 1 is over"), "{e}");
        assert!(!first.may_call(), "epoch 1's work calls under epoch 2");
        let second = a.for_term(2);
        second
            .record_intent(&intent("p", "e4", tick()))
            .await
            .unwrap();
        assert!(second.may_call());
        let report = a.report(&crate::ReportFilter::default()).await.unwrap();
        let ids: Vec<&str> = report.iter().map(|r| r.execution_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e4"]);
        assert!(a.verify().await.unwrap().problems.is_empty());
    }

    /// The lease has connections of its own: with every connection of the shared pool taken
    /// (sweeps, commands, a writer stuck on a half-open connection), the leader still renews,
    /// and a standby still takes an expired lease, at once (through the shared pool they
    /// would wait for its acquire timeout, 30 s, twice a 15 s lease).
    #[tokio::test]
    async fn the_lease_never_waits_for_the_shared_pool() {
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let a = Store::open(db.location()).await.unwrap();
        let lease = Duration::from_secs(15);
        assert_eq!(a.acquire_lease("a", 1, lease).await.unwrap().0, Some(1));
        let pool = a.lease_pool().unwrap();
        let mut held = Vec::new();
        while held.len() < pool.options().get_max_connections() as usize {
            held.push(pool.acquire().await.unwrap());
        }
        let bound = Duration::from_secs(5);
        let renewed = tokio::time::timeout(bound, a.renew_lease("a", 1, lease))
            .await
            .expect("the renewal waited for the shared pool")
            .unwrap();
        assert!(renewed.0);
        tokio::time::timeout(bound, a.release_lease("a", 1))
            .await
            .expect("the release waited for the shared pool")
            .unwrap();
        let taken = tokio::time::timeout(bound, a.acquire_lease("a", 1, lease))
            .await
            .expect("the takeover waited for the shared pool")
            .unwrap();
        assert_eq!(taken.0, Some(2));
        drop(held);
    }

    /// A writer holding the fence (a busy writer begins its next batch at each COMMIT, so it
    /// may hold the lease row back to back) never holds up the leader's renewal, while a
    /// takeover still waits for the fenced transaction: once the takeover commits, nothing of
    /// the old epoch can.
    #[tokio::test]
    async fn renewal_never_waits_on_the_fence_but_a_takeover_does() {
        use sqlx::{Acquire as _, Executor as _};
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let a = Store::open(db.location()).await.unwrap();
        let b = Store::open(db.location()).await.unwrap();
        let long = Duration::from_secs(60);
        assert_eq!(a.acquire_lease("a", 1, long).await.unwrap().0, Some(1));

        // A's writer begins a fenced transaction, as `group_commit_pg` does, and holds it (the
        // server would end it after 5 s idle: not here).
        let mut writer = a.lease_pool().unwrap().acquire().await.unwrap();
        let sql = format!(
            "{}; SET LOCAL idle_in_transaction_session_timeout = 0; {}",
            crate::writer::BEGIN_PG,
            head_and_fence_sql(Some(("a", 1)))
        );
        let rows = writer.fetch_all(sql.as_str()).await.unwrap();
        head_if_leading(&rows[0], Some(("a", 1))).unwrap();

        // The renewal goes through at once (else it waits lease/6, 10 s here, and fails).
        let (renewed, _) = a.renew_lease("a", 1, long).await.unwrap();
        assert!(renewed);
        // The lease runs out; B's takeover waits for the fenced transaction.
        assert!(
            a.renew_lease("a", 1, Duration::from_millis(1))
                .await
                .unwrap()
                .0
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let takeover = tokio::spawn({
            let b = b.clone();
            async move { b.acquire_lease("b", 2, long).await }
        });
        let mut waits = a.lease_pool().unwrap().acquire().await.unwrap();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(waits.acquire().await.unwrap())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                !takeover.is_finished(),
                "the takeover did not wait for the fence: {:?}",
                takeover.await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!takeover.is_finished());
        // The fenced transaction commits (its write stands); then the takeover does.
        writer.execute("COMMIT").await.unwrap();
        assert_eq!(takeover.await.unwrap().unwrap().0, Some(2));
        let lease = a.lease().await.unwrap().unwrap();
        assert_eq!((lease.holder.as_str(), lease.epoch), ("b", 2));
    }

    /// A call may start through a store without a fence (SQLite, the commands); never on a
    /// standby; on a leader only before its deadline (a paused leader wakes past it).
    #[tokio::test]
    async fn calls_stop_at_the_leaders_deadline() {
        let db = testdb::sqlite();
        let s = Store::open(db.location()).await.unwrap();
        // The clock stands still from here (opened first: the pool's waits are timed).
        tokio::time::pause();
        assert!(s.may_call());
        s.set_fence(Fence::Leader {
            node: "a".into(),
            epoch: 1,
        });
        assert!(!s.may_call(), "a leader without a deadline");
        s.set_call_deadline(Some(tokio::time::Instant::now() + Duration::from_secs(10)));
        assert!(s.may_call());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!s.may_call(), "past its deadline");
        s.set_call_deadline(Some(tokio::time::Instant::now() + Duration::from_secs(10)));
        s.set_fence(Fence::Standby);
        assert!(!s.may_call(), "a standby");
    }

    /// SQLite has no lease: leadership is refused with a clear error, and reading it is `None`.
    #[tokio::test]
    async fn sqlite_has_no_lease() {
        let db = testdb::sqlite();
        let s = Store::open(db.location()).await.unwrap();
        assert_eq!(s.lease().await.unwrap(), None);
        let e = s
            .acquire_lease("a", 1, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("needs a PostgreSQL"), "{e:#}");
    }
}
