//! The database calls `stopd run` makes at start, after it connected (the policy's load, the
//! notification targets, the `start` record and its unclean stop and unwatched windows, sweep
//! compaction), and what a failure of one does.
//!
//! On a single host (SQLite), or for `run --once`, the first failure ends the start (exit 1;
//! systemd restarts the unit). A node of a PostgreSQL cluster (`[ha]`) whose database blips
//! right after it connected (a managed database's failover, a restart) stands by instead: the
//! call is tried again with backoff ([`FIRST_WAIT`] doubling up to [`MAX_WAIT`]), loudly (an
//! ERROR each try, the `STATUS=` line), while the other nodes lead, until it succeeds or a
//! shutdown signal comes. Only a blip is tried again ([`stopd_audit::is_transient`]: the
//! connection lost, the server shutting down or starting, a lock or serialization conflict,
//! a timeout): any other failure (the role lacks a privilege, a constraint refuses a row) would
//! fail the same way for ever, so it ends the start as on a single host (exit 1, with the
//! error), even after a blip was retried, and systemd's `Restart=on-failure` sees it. Nothing is swept, and no lease is asked for, before the start is on
//! record. Signals other than a shutdown that come meanwhile (a reload) are kept and handed to
//! the scheduler once running.

use std::time::Duration;

use anyhow::Result;
use sd_notify::NotifyState;
use tokio::sync::mpsc;

use crate::runtime::scheduler::{Event, notify};

/// The first wait before a failed start call is tried again.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The start's database calls, and the signals that come while they are retried.
#[derive(Debug)]
pub struct Starting<'a> {
    /// Whether a failure is tried again (a daemon with `[ha]`), or ends the start.
    retry: bool,
    /// The daemon's events: a shutdown ends the retries.
    events: &'a mut mpsc::UnboundedReceiver<Event>,
    /// Events that came meanwhile, for the scheduler.
    kept: Vec<Event>,
    /// Whether systemd was told the service is up (it is, as a standby, once a call failed).
    ready: bool,
}

impl<'a> Starting<'a> {
    /// The start of a daemon with `[ha]` (`retry`), or of anything else (the first failure
    /// ends it).
    pub fn new(retry: bool, events: &'a mut mpsc::UnboundedReceiver<Event>) -> Starting<'a> {
        Starting {
            retry,
            events,
            kept: Vec::new(),
            ready: false,
        }
    }

    /// Runs `call` (`what` it does, for the log) until it succeeds: `Some` with its value, or
    /// `None` when a shutdown signal came while it was being retried. Without retries, its
    /// first error; with them, its first error that is not transient.
    pub async fn call<T, F, Fut>(&mut self, what: &str, mut call: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut wait = FIRST_WAIT;
        let mut tries = 0u32;
        loop {
            let e = match call().await {
                Ok(v) => {
                    if tries > 0 {
                        tracing::info!(
                            tries,
                            "the audit database answers again: {what} done; starting"
                        );
                    }
                    return Ok(Some(v));
                }
                Err(e) if !self.retry => return Err(e),
                Err(e) if !stopd_audit::is_transient(&e) => {
                    if tries > 0 {
                        tracing::error!(
                            tries,
                            "cannot {what} while starting, and trying again cannot help: \
                             the start fails"
                        );
                    }
                    return Err(e);
                }
                Err(e) => e,
            };
            tries = tries.saturating_add(1);
            let text = format!("{e:#}");
            let again = humantime::format_duration(wait);
            tracing::error!(error = %text, tries, retry_in = %again, "cannot {what} while starting (the audit database): this node stands by and tries again in {again}");
            if !self.ready {
                // Up, as a standby: systemd waits no longer for a start the database holds up.
                notify(&[NotifyState::Ready]);
                self.ready = true;
            }
            notify(&[
                NotifyState::Watchdog,
                NotifyState::Status(&format!(
                    "standby, starting: cannot {what} ({tries} tries, next in {again}): {text}"
                )),
            ]);
            if let Some(signal) = self.wait(wait).await {
                tracing::info!(
                    signal,
                    "shutting down before the start was recorded: nothing to drain"
                );
                return Ok(None);
            }
            wait = wait.saturating_mul(2).min(MAX_WAIT);
        }
    }

    /// Waits `wait`, or until a shutdown signal (named); other events are kept.
    async fn wait(&mut self, wait: Duration) -> Option<&'static str> {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                event = self.events.recv() => match event {
                    Some(Event::Shutdown(signal)) => return Some(signal),
                    Some(other) => self.kept.push(other),
                    // No more events (no signal can come): just wait.
                    None => {
                        (&mut sleep).await;
                        return None;
                    }
                },
            }
        }
    }

    /// Hands the events that came meanwhile to `tx` (the scheduler reads them first).
    pub fn hand_over(self, tx: &mpsc::UnboundedSender<Event>) {
        for event in self.kept {
            let _ = tx.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blip of the database (the pool timed out), as `?` hands it on.
    fn blip() -> anyhow::Error {
        anyhow::Error::from(sqlx::Error::PoolTimedOut).context("the database blipped")
    }

    /// A daemon with `[ha]` tries a failing start call again, with backoff (1, 2, 4 s ...),
    /// until it succeeds; a reload that comes meanwhile is kept for the scheduler.
    #[tokio::test(start_paused = true)]
    async fn a_failing_start_call_is_tried_again_with_backoff() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = tokio::time::Instant::now();
        let mut tried = Vec::new();
        tx.send(Event::Reload).unwrap();
        let mut s = Starting::new(true, &mut rx);
        let got = s
            .call("record the start", || {
                tried.push(started.elapsed().as_secs());
                let n = tried.len();
                async move {
                    if n < 4 {
                        return Err(blip());
                    }
                    Ok(n)
                }
            })
            .await
            .unwrap();
        assert_eq!(got, Some(4));
        assert_eq!(tried, [0, 1, 3, 7]);
        s.hand_over(&tx);
        assert_eq!(rx.try_recv(), Ok(Event::Reload));
    }

    /// A shutdown signal ends the retries (`None`); without retries (SQLite, `--once`) the
    /// first error is the start's.
    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_the_retries_and_without_them_the_first_error_stands() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let failing = || async { Err(blip()) as Result<()> };
        let mut s = Starting::new(true, &mut rx);
        tx.send(Event::Shutdown("SIGTERM")).unwrap();
        assert!(s.call("record the start", failing).await.unwrap().is_none());
        let mut s = Starting::new(false, &mut rx);
        let e = s.call("record the start", failing).await.unwrap_err();
        assert!(format!("{e:#}").contains("blipped"), "{e:#}");
    }

    /// With retries, an error that is not a blip (a permission denied, a constraint violated:
    /// trying again would fail the same way) ends the start at once, and after blips too.
    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_ends_the_start_even_with_retries() {
        let (_tx, mut rx) = mpsc::unbounded_channel();
        let mut tries = 0;
        let mut s = Starting::new(true, &mut rx);
        let e = s
            .call("record the start", || {
                tries += 1;
                let n = tries;
                async move {
                    if n < 3 {
                        return Err(blip());
                    }
                    anyhow::bail!("permission denied for table lifecycle_events") as Result<()>
                }
            })
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("permission denied"), "{e:#}");
        assert_eq!(tries, 3);
    }
}
