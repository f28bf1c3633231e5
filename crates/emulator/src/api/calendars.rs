//! SSM `GetCalendarState` (awsJson1_1, `X-Amz-Target: AmazonSSM.GetCalendarState`), served at
//! the same endpoint as CodePipeline: each calendar of the world is OPEN but for its CLOSED
//! intervals, on the emulator's clock. An unknown calendar is answered as SSM answers a
//! document that does not exist (`InvalidDocument`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::request::ApiResult;
use crate::error::ApiError;
use crate::world::World;

/// RFC 3339 (SSM's ISO 8601 strings) of epoch milliseconds.
fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `GetCalendarState` of the calendars named (all of them must be known): CLOSED if one is
/// closed at the instant asked (now by default), with the next instant any of them changes.
pub fn get_calendar_state(world: &World, input: &Value) -> ApiResult {
    let names: Vec<&str> = input
        .get("CalendarNames")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "ValidationException",
            "CalendarNames must name at least one calendar",
        ));
    }
    let at = match input.get("AtTime").and_then(Value::as_str) {
        None => world.clock.now(),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|_| ApiError::bad_request("InvalidDocument", format!("bad AtTime {s}")))?
            .timestamp_millis(),
    };
    let mut closed = false;
    let mut next: Option<i64> = None;
    for name in names {
        // A document ARN names the calendar by its last segment.
        let key = name.rsplit('/').next().unwrap_or(name);
        let Some(intervals) = world.calendars.get(key) else {
            return Err(ApiError::bad_request(
                "InvalidDocument",
                format!("Document {name} does not exist."),
            ));
        };
        for &(start, end) in intervals {
            if start <= at && at < end {
                closed = true;
            }
            for edge in [start, end] {
                if edge > at && next.is_none_or(|n| edge < n) {
                    next = Some(edge);
                }
            }
        }
    }
    let mut out = json!({
        "State": if closed { "CLOSED" } else { "OPEN" },
        "AtTime": iso(at),
    });
    if let Some(n) = next {
        out["NextTransitionTime"] = json!(iso(n));
    }
    Ok(out)
}
