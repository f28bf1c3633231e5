//! SSM Change Calendars: `GetCalendarState` of one calendar, through the engine's call path
//! (its retries, rate limiter and counts), with the account's SSM client.

use aws_sdk_ssm::config::Region;
use aws_sdk_ssm::types::CalendarState;
use chrono::{DateTime, Utc};

use super::handle::Core;
use crate::error::{ApiError, ErrorKind};
use crate::types::CallCounts;

/// What `GetCalendarState` answered for one calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarAnswer {
    /// CLOSED (`true`) or OPEN.
    pub closed: bool,
    /// The instant the state is for (`AtTime`).
    pub at: Option<DateTime<Utc>>,
    /// `NextTransitionTime`, if the calendar has one.
    pub next_transition: Option<DateTime<Utc>>,
}

/// An ISO 8601 time of SSM's answers.
fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Core {
    /// The state of the calendar `name` (a name or a document ARN) now, asked in `region` (the
    /// client's when `None`). An account without an SSM client answers an error.
    pub async fn calendar_state(
        &self,
        name: &str,
        region: Option<&str>,
        calls: &mut CallCounts,
    ) -> Result<CalendarAnswer, ApiError> {
        let Some(client) = self.inner.ssm.get() else {
            return Err(ApiError {
                operation: "GetCalendarState",
                kind: ErrorKind::Client,
                code: None,
                message: format!("no SSM client for {}", self.place()),
            });
        };
        let policy = self.inner.config.discovery_retry;
        let got = self
            .call("GetCalendarState", &policy, calls, || {
                let mut req = client.get_calendar_state().calendar_names(name).customize();
                if let Some(r) = region {
                    req = req.config_override(
                        aws_sdk_ssm::config::Builder::default().region(Region::new(r.to_string())),
                    );
                }
                async move {
                    req.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("GetCalendarState", e))
                }
            })
            .await
            .result?;
        let closed = match got.state() {
            Some(CalendarState::Closed) => true,
            Some(CalendarState::Open) => false,
            other => {
                return Err(ApiError {
                    operation: "GetCalendarState",
                    kind: ErrorKind::BadResponse,
                    code: None,
                    message: format!("the answer has no known State: {other:?}"),
                });
            }
        };
        Ok(CalendarAnswer {
            closed,
            at: parse_time(got.at_time()),
            next_transition: parse_time(got.next_transition_time()),
        })
    }

    /// Gives this account its SSM client (for Change Calendars); the first one given stays.
    pub fn set_ssm(&self, client: aws_sdk_ssm::Client) {
        let _ = self.inner.ssm.set(client);
    }

    /// Whether this account and region has an SSM client.
    pub fn has_ssm(&self) -> bool {
        self.inner.ssm.get().is_some()
    }

    /// Says which AWS account (12-digit id) this engine acts in; the first one given stays.
    pub fn set_account_id(&self, id: &str) {
        let _ = self.inner.account_id.set(id.to_string());
    }

    /// The AWS account id this engine acts in, when known (an `[[account]]`'s role's).
    pub fn account_id(&self) -> Option<&str> {
        self.inner.account_id.get().map(String::as_str)
    }
}
