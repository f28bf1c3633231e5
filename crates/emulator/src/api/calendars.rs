//! SSM `GetCalendarState` (awsJson1_1, `X-Amz-Target: AmazonSSM.GetCalendarState`), served at
//! the same endpoint as CodePipeline: each calendar of the world is OPEN but for its CLOSED
//! intervals, on the emulator's clock. An unknown calendar is answered as SSM answers a
//! document that does not exist (`InvalidDocument`), and so is a document ARN of another
//! account (documents shared across accounts are not modelled: a calendar is read in its own
//! account) or of a region other than the one the request was signed for.

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
pub fn get_calendar_state(world: &World, input: &Value, signed_region: Option<&str>) -> ApiResult {
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
        // A document ARN names the calendar by its last segment, in its account and region.
        let key = name.rsplit('/').next().unwrap_or(name);
        let elsewhere = name.strip_prefix("arn:").is_some_and(|rest| {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let (region, account) = (parts.get(2).copied(), parts.get(3).copied());
            account != Some(world.account.as_str())
                || signed_region.is_some_and(|r| region != Some(r))
        });
        let known = world.calendars.get(key).filter(|_| !elsewhere);
        let Some(intervals) = known else {
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
