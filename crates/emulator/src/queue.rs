//! SQS queues as state: messages with their visibility on the emulator's clock, receipt handles
//! and receive counts. The SQS protocol that serves them sits on top; nothing here
//! knows of it.
//!
//! The semantics are those of a standard queue that the consumer can observe: a received
//! message is invisible for the visibility timeout and then received again (with a new receipt
//! handle and a higher receive count); deleting with the latest handle removes it, deleting with
//! an older handle succeeds and removes nothing (as SQS documents); a message sent with a delay,
//! or published late by the event feed, is invisible until then.

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::clock::Millis;

/// A queue's default visibility timeout (SQS's default: 30 s).
pub const DEFAULT_VISIBILITY_MS: Millis = 30_000;

/// The largest visibility timeout SQS accepts (12 hours).
pub const MAX_VISIBILITY_MS: Millis = 12 * 3_600 * 1_000;

/// One message.
#[derive(Debug, Clone)]
pub struct Message {
    /// `MessageId`.
    pub id: String,
    /// `Body`.
    pub body: String,
    /// When it was sent (epoch ms, emulator time).
    pub sent_at: Millis,
    /// When it may next be received.
    pub visible_at: Millis,
    /// Times received.
    pub receive_count: u32,
    /// When it was first received.
    pub first_received_at: Option<Millis>,
    /// Order of arrival, for FIFO-like delivery when the feed does not reorder.
    pub seq: u64,
}

impl Message {
    /// The receipt handle of its latest receive.
    pub fn handle(&self) -> String {
        format!("{}:{}", self.id, self.receive_count)
    }
}

/// A message as one receive hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `MessageId`.
    pub id: String,
    /// `ReceiptHandle`.
    pub handle: String,
    /// `Body`.
    pub body: String,
    /// `SentTimestamp`.
    pub sent_at: Millis,
    /// `ApproximateReceiveCount`.
    pub receive_count: u32,
    /// `ApproximateFirstReceiveTimestamp`.
    pub first_received_at: Millis,
}

/// What deleting by a receipt handle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The message is gone.
    Removed,
    /// An older handle of a message received since, or of one already deleted: SQS answers
    /// success and keeps the message (if any).
    Stale,
    /// Not a handle this queue issued: `ReceiptHandleIsInvalid`.
    Invalid,
}

/// One queue.
#[derive(Debug, Clone)]
pub struct Queue {
    /// Messages not yet deleted.
    pub messages: Vec<Message>,
    /// Next arrival number.
    next_seq: u64,
    /// The queue's visibility timeout.
    pub visibility_ms: Millis,
    /// Counters, for the admin API and benchmarks.
    pub stats: QueueStats,
}

/// What a queue has seen.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueueStats {
    /// Messages sent (or published) to it.
    pub sent: u64,
    /// Messages handed out by receives (a message received twice counts twice).
    pub received: u64,
    /// Messages deleted.
    pub deleted: u64,
}

/// Approximate counts, as GetQueueAttributes answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// `ApproximateNumberOfMessages`: visible now.
    pub visible: usize,
    /// `ApproximateNumberOfMessagesNotVisible`: received, in their visibility timeout.
    pub in_flight: usize,
    /// `ApproximateNumberOfMessagesDelayed`: never received, not visible yet.
    pub delayed: usize,
}

impl Default for Queue {
    /// An empty queue with SQS's default visibility timeout.
    fn default() -> Queue {
        Queue {
            messages: Vec::new(),
            next_seq: 0,
            visibility_ms: DEFAULT_VISIBILITY_MS,
            stats: QueueStats::default(),
        }
    }
}

impl Queue {
    /// An empty queue with SQS's default visibility timeout.
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Adds a message, visible from `visible_at`.
    pub fn send(&mut self, id: String, body: String, sent_at: Millis, visible_at: Millis) {
        self.messages.push(Message {
            id,
            body,
            sent_at,
            visible_at,
            receive_count: 0,
            first_received_at: None,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        self.stats.sent += 1;
    }

    /// Receives up to `max` visible messages at `now`, each then invisible for `visibility_ms`:
    /// oldest first, or in random order when `shuffle` (a standard queue promises no order).
    pub fn receive(
        &mut self,
        now: Millis,
        max: usize,
        visibility_ms: Millis,
        shuffle: Option<&mut impl Rng>,
    ) -> Vec<Received> {
        let mut visible: Vec<usize> = (0..self.messages.len())
            .filter(|&i| self.messages[i].visible_at <= now)
            .collect();
        match shuffle {
            Some(rng) => visible.shuffle(rng),
            None => visible.sort_by_key(|&i| (self.messages[i].visible_at, self.messages[i].seq)),
        }
        let mut out = Vec::new();
        for i in visible.into_iter().take(max) {
            let m = &mut self.messages[i];
            m.receive_count += 1;
            m.visible_at = now.saturating_add(visibility_ms);
            let first = *m.first_received_at.get_or_insert(now);
            out.push(Received {
                id: m.id.clone(),
                handle: m.handle(),
                body: m.body.clone(),
                sent_at: m.sent_at,
                receive_count: m.receive_count,
                first_received_at: first,
            });
        }
        self.stats.received += out.len() as u64;
        out
    }

    /// Deletes by receipt handle.
    pub fn delete(&mut self, handle: &str) -> Deleted {
        let Some((id, count)) = parse_handle(handle) else {
            return Deleted::Invalid;
        };
        match self.messages.iter().position(|m| m.id == id) {
            Some(i) if self.messages[i].receive_count == count => {
                self.messages.remove(i);
                self.stats.deleted += 1;
                Deleted::Removed
            }
            _ => Deleted::Stale,
        }
    }

    /// Sets the visibility of a received message to `now + timeout`; false if the handle is
    /// not the message's latest (`MessageNotInflight` / `ReceiptHandleIsInvalid`).
    pub fn change_visibility(&mut self, handle: &str, now: Millis, timeout_ms: Millis) -> bool {
        let Some((id, count)) = parse_handle(handle) else {
            return false;
        };
        match self
            .messages
            .iter_mut()
            .find(|m| m.id == id && m.receive_count == count)
        {
            Some(m) => {
                m.visible_at = now.saturating_add(timeout_ms);
                true
            }
            None => false,
        }
    }

    /// The approximate counts at `now`.
    pub fn depth(&self, now: Millis) -> Depth {
        let mut d = Depth::default();
        for m in &self.messages {
            if m.visible_at <= now {
                d.visible += 1;
            } else if m.receive_count > 0 {
                d.in_flight += 1;
            } else {
                d.delayed += 1;
            }
        }
        d
    }
}

/// A receipt handle's message id and receive count.
fn parse_handle(handle: &str) -> Option<(&str, u32)> {
    let (id, count) = handle.rsplit_once(':')?;
    Some((id, count.parse().ok()?))
}

/// Every queue of the emulator, by name.
pub type Queues = BTreeMap<String, Queue>;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn no_shuffle() -> Option<&'static mut rand_chacha::ChaCha8Rng> {
        None
    }

    #[test]
    fn a_received_message_comes_back_after_its_visibility_timeout_with_a_new_handle() {
        let mut q = Queue::new();
        q.send("m1".into(), "a".into(), 0, 0);
        let first = q.receive(0, 10, 1_000, no_shuffle());
        assert_eq!(first.len(), 1);
        assert!(q.receive(999, 10, 1_000, no_shuffle()).is_empty());
        let again = q.receive(1_000, 10, 1_000, no_shuffle());
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].handle, first[0].handle);
        // The older handle deletes nothing; the latest one does.
        assert_eq!(q.delete(&first[0].handle), Deleted::Stale);
        assert_eq!(q.depth(1_000).in_flight, 1);
        assert_eq!(q.delete(&again[0].handle), Deleted::Removed);
        assert_eq!(q.depth(5_000), Depth::default());
        assert_eq!(q.delete("garbage"), Deleted::Invalid);
    }

    #[test]
    fn delayed_messages_are_counted_apart_and_received_in_order_of_visibility() {
        let mut q = Queue::new();
        q.send("late".into(), "b".into(), 0, 500);
        q.send("early".into(), "a".into(), 0, 100);
        assert_eq!(
            q.depth(0),
            Depth {
                visible: 0,
                in_flight: 0,
                delayed: 2
            }
        );
        let got = q.receive(600, 10, 1_000, no_shuffle());
        assert_eq!(
            got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["early", "late"]
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert!(q.receive(600, 10, 1_000, Some(&mut rng)).is_empty());
    }

    #[test]
    fn visibility_can_be_changed_only_with_the_latest_handle() {
        let mut q = Queue::new();
        q.send("m".into(), "a".into(), 0, 0);
        let got = q.receive(0, 1, 30_000, no_shuffle());
        assert!(q.change_visibility(&got[0].handle, 10, 0));
        assert_eq!(q.depth(10).visible, 1);
        assert!(!q.change_visibility("m:7", 10, 0));
    }
}
