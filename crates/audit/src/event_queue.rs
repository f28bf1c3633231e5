//! The event consumer's view of its queue (`event_queue`), for `stopd status`: bookkeeping,
//! one row per queue URL, replaced in place. What the events led to is in the chained stops.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::{Store, on_pool, ts, write_tx};

/// The columns of [`EventQueueState`].
const COLUMNS: &str = "queue_url, at, last_received_at, depth, error";

/// The consumer's view of its queue, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct EventQueueState {
    /// The queue's URL.
    pub queue_url: String,
    /// When this was written (RFC 3339 UTC).
    pub at: String,
    /// When a message was last received, if ever.
    pub last_received_at: Option<String>,
    /// `ApproximateNumberOfMessages` when last asked.
    pub depth: Option<i64>,
    /// Why the queue cannot be read; `None` while it can.
    pub error: Option<String>,
}

impl Store {
    /// Replaces the row of `queue_url` (a received time or depth not given keeps the one
    /// recorded).
    pub async fn record_event_queue(
        &self,
        queue_url: &str,
        at: DateTime<Utc>,
        last_received_at: Option<DateTime<Utc>>,
        depth: Option<u64>,
        error: Option<&str>,
    ) -> Result<()> {
        let depth = depth.map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO event_queue (queue_url, at, last_received_at, depth, error) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (queue_url) DO UPDATE SET at = excluded.at, \
                 last_received_at = COALESCE(excluded.last_received_at, event_queue.last_received_at), \
                 depth = COALESCE(excluded.depth, event_queue.depth), error = excluded.error",
            )
            .bind(queue_url)
            .bind(ts(at))
            .bind(last_received_at.map(ts))
            .bind(depth)
            .bind(error)
            .execute(&mut *tx)
            .await
            .context("cannot record the event queue's state")?;
            tx.commit()
                .await
                .context("cannot record the event queue's state")?;
        });
        Ok(())
    }

    /// Every queue's row, by URL.
    pub async fn event_queues(&self) -> Result<Vec<EventQueueState>> {
        let sql = format!("SELECT {COLUMNS} FROM event_queue ORDER BY queue_url");
        on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
            .context("cannot read the event queue's state")
    }
}

#[cfg(test)]
mod tests {
    use crate::testdb;

    #[tokio::test]
    async fn the_queue_state_is_replaced_and_keeps_what_a_write_does_not_say() {
        for db in testdb::backends().await {
            let store = crate::Store::open(db.location()).await.unwrap();
            let t0: chrono::DateTime<chrono::Utc> = "2026-12-05T10:00:00Z".parse().unwrap();
            let later = t0 + chrono::TimeDelta::minutes(1);
            store
                .record_event_queue("q", t0, Some(t0), Some(3), None)
                .await
                .unwrap();
            store
                .record_event_queue("q", later, None, None, Some("AccessDenied"))
                .await
                .unwrap();
            let rows = store.event_queues().await.unwrap();
            assert_eq!(rows.len(), 1, "{}", db.kind());
            let r = &rows[0];
            assert_eq!(r.at, crate::ts(later));
            assert_eq!(r.last_received_at.as_deref(), Some(crate::ts(t0).as_str()));
            assert_eq!(r.depth, Some(3));
            assert_eq!(r.error.as_deref(), Some("AccessDenied"));
            store.close().await;
        }
    }
}
