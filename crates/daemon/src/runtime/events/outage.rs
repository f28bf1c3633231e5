//! When a queue that cannot be read is an outage (recorded as `events_failed`, notified, and a
//! `/healthz` problem) rather than a blip. The SDK does not retry SQS calls (the consumer's
//! next poll is the retry), so one throttle, 5xx, timeout or reset fails one poll: that alone
//! pages no one. A failure that trying again cannot mend (access denied, a queue that does not
//! exist, credentials refused: what `stopd_core`'s classification calls not retryable) is an
//! outage at once; any other, once the queue has failed [`OUTAGE_POLLS`] polls in a row or for
//! [`OUTAGE_AFTER`]. Pure: the consumer hands it each poll's result and the time.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Polls failed in a row (transient failures) after which the queue is an outage.
pub const OUTAGE_POLLS: u32 = 3;

/// How long the queue has failed (transient failures, polls in a row) before it is an outage.
pub const OUTAGE_AFTER: Duration = Duration::from_secs(60);

/// One poll's result as the consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The queue was read.
    Read,
    /// It could not be, and trying again may help (a throttle, a 5xx, a timeout, a reset).
    Transient,
    /// It could not be, and trying again cannot help (access denied, no such queue).
    Permanent,
}

/// What the queue's state is, after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// It can be read.
    Readable,
    /// It cannot be, and that is an outage: recorded, notified, a health problem.
    Outage,
    /// It failed, but not yet long enough to be an outage: logged only.
    Blip,
}

/// The run of failed polls under way, if any.
#[derive(Debug, Default)]
pub struct Streak {
    /// Its first failure, its failed polls, and whether it was judged an outage (it stays one
    /// until a poll succeeds).
    failing: Option<(DateTime<Utc>, u32, bool)>,
}

impl Streak {
    /// Takes in one poll (`poll`, ended at `now`) and judges the queue's state.
    pub fn judge(&mut self, now: DateTime<Utc>, poll: Poll) -> Judged {
        if poll == Poll::Read {
            self.failing = None;
            return Judged::Readable;
        }
        let (since, polls, outage) = self.failing.get_or_insert((now, 0, false));
        *polls = polls.saturating_add(1);
        let failed_for = (now - *since).to_std().unwrap_or_default();
        *outage |= poll == Poll::Permanent || *polls >= OUTAGE_POLLS || failed_for >= OUTAGE_AFTER;
        if *outage {
            Judged::Outage
        } else {
            Judged::Blip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    /// One or two failed polls in a row are blips; the third is an outage, and so is a
    /// second one a minute after the first; a success ends the streak and the count starts
    /// again.
    #[test]
    fn transient_failures_are_an_outage_after_three_polls_or_a_minute() {
        let mut s = Streak::default();
        assert_eq!(s.judge(at(0), Poll::Transient), Judged::Blip);
        assert_eq!(s.judge(at(1), Poll::Read), Judged::Readable);
        assert_eq!(s.judge(at(2), Poll::Transient), Judged::Blip);
        assert_eq!(s.judge(at(3), Poll::Transient), Judged::Blip);
        assert_eq!(s.judge(at(5), Poll::Transient), Judged::Outage);
        assert_eq!(s.judge(at(9), Poll::Transient), Judged::Outage);
        assert_eq!(s.judge(at(10), Poll::Read), Judged::Readable);

        // Two slow failures (timeouts of a long poll) a minute apart.
        let mut s = Streak::default();
        assert_eq!(s.judge(at(0), Poll::Transient), Judged::Blip);
        assert_eq!(s.judge(at(59), Poll::Transient), Judged::Blip);
        let mut s = Streak::default();
        assert_eq!(s.judge(at(0), Poll::Transient), Judged::Blip);
        assert_eq!(s.judge(at(60), Poll::Transient), Judged::Outage);
    }

    /// A failure that retrying cannot mend is an outage at once, and the streak stays one
    /// while it fails (a transient failure after it does not make it a blip again).
    #[test]
    fn a_permanent_failure_is_an_outage_at_once() {
        let mut s = Streak::default();
        assert_eq!(s.judge(at(0), Poll::Permanent), Judged::Outage);
        assert_eq!(s.judge(at(1), Poll::Transient), Judged::Outage);
        assert_eq!(s.judge(at(2), Poll::Read), Judged::Readable);
        assert_eq!(s.judge(at(3), Poll::Transient), Judged::Blip);
        assert_eq!(s.judge(at(4), Poll::Permanent), Judged::Outage);
    }
}
