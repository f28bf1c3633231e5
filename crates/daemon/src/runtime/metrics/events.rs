//! The event consumer's metrics: `stopd_events_total{result}`, `stopd_event_lag_seconds`, the
//! last event received and the queue's depth, and whether the queue can be read (`/healthz`).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every value of `stopd_events_total{result}`.
pub const EVENT_RESULTS: [&str; 4] = ["acted", "ignored", "malformed", "unknown_account"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventResult {
    result: &'static str,
}

/// The consumer's series (registered only with `[events]`).
#[derive(Debug, Default)]
pub struct EventMetrics {
    /// `stopd_events_total{result}`.
    total: Family<EventResult, Counter>,
    /// `stopd_event_lag_seconds`: the event's time to its decision.
    lag: Option<Histogram>,
    /// `stopd_events_last_received_timestamp_seconds`.
    last_received: Gauge<f64, AtomicU64>,
    /// `stopd_events_queue_depth`: messages waiting (ApproximateNumberOfMessages).
    depth: Gauge,
    /// Why the queue cannot be read now (a health problem), if it cannot.
    error: Mutex<Option<String>>,
}

impl EventMetrics {
    /// Registers the series (each result at 0).
    pub fn register(registry: &mut Registry) -> EventMetrics {
        let m = EventMetrics {
            lag: Some(Histogram::new(exponential_buckets(0.125, 2.0, 12))),
            ..EventMetrics::default()
        };
        registry.register(
            "stopd_events",
            "Execution events taken off the queue, by what became of them",
            m.total.clone(),
        );
        if let Some(lag) = &m.lag {
            registry.register(
                "stopd_event_lag_seconds",
                "From an execution event's time to stopd's decision on it",
                lag.clone(),
            );
        }
        registry.register(
            "stopd_events_last_received_timestamp_seconds",
            "When the last message was received from the event queue",
            m.last_received.clone(),
        );
        registry.register(
            "stopd_events_queue_depth",
            "Messages waiting on the event queue (ApproximateNumberOfMessages)",
            m.depth.clone(),
        );
        for result in EVENT_RESULTS {
            let _ = m.total.get_or_create(&EventResult { result });
        }
        m
    }

    /// Counts an event by what became of it (one of [`EVENT_RESULTS`]).
    pub fn count(&self, result: &'static str) {
        self.total.get_or_create(&EventResult { result }).inc();
    }

    /// An event decided `seconds` after its time.
    pub fn lag(&self, seconds: f64) {
        if let Some(h) = &self.lag {
            h.observe(seconds.max(0.0));
        }
    }

    /// Messages were received at `at`.
    pub fn received(&self, at: DateTime<Utc>) {
        self.last_received.set(at.timestamp_millis() as f64 / 1e3);
    }

    /// The queue's depth.
    pub fn depth(&self, n: u64) {
        self.depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The queue could (`None`) or could not be read.
    pub fn queue_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.error.lock() {
            *e = error;
        }
    }

    /// Why the queue cannot be read, if it cannot.
    pub fn problem(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}
