//! What a message on the event queue says, read once into typed values: a CodePipeline
//! execution state change (EventBridge's envelope), something else (foreign), or text that is
//! not such an event at all (malformed). Pure: no I/O, no clock.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The `detail-type` of the events stopd consumes.
pub const DETAIL_TYPE: &str = "CodePipeline Pipeline Execution State Change";

/// The `source` of CodePipeline's events.
pub const SOURCE: &str = "aws.codepipeline";

/// An execution's state as an event names it (`detail.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `STARTED`: a new execution.
    Started,
    /// `RESUMED`: a failed or stopped stage retried.
    Resumed,
    /// `STOPPING`.
    Stopping,
    /// `STOPPED`, `SUCCEEDED`, `FAILED`, `SUPERSEDED`, `CANCELED`: it ended.
    Ended,
}

impl State {
    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "STARTED" => State::Started,
            "RESUMED" => State::Resumed,
            "STOPPING" => State::Stopping,
            "STOPPED" | "SUCCEEDED" | "FAILED" | "SUPERSEDED" | "CANCELED" | "CANCELLED" => {
                State::Ended
            }
            _ => return None,
        })
    }

    /// Whether the execution may be running (and so may have to be stopped).
    pub fn may_run(self) -> bool {
        matches!(self, State::Started | State::Resumed)
    }
}

/// A CodePipeline execution state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionEvent {
    /// The event's id (a duplicate delivery carries the same one).
    pub id: String,
    /// The 12-digit account the pipeline is in.
    pub account: String,
    /// Its region.
    pub region: String,
    /// When the change happened (`time`).
    pub time: DateTime<Utc>,
    /// `detail.pipeline`.
    pub pipeline: String,
    /// `detail.execution-id`.
    pub execution_id: String,
    /// `detail.state`.
    pub state: State,
    /// `detail.start-time`, when the event carries it (GetPipelineExecution's answer has no
    /// start time: a timeout needs this one).
    pub start_time: Option<DateTime<Utc>>,
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An execution state change of CodePipeline.
    Execution(ExecutionEvent),
    /// A well-formed event of another source or type (the rule sends more than it should, or
    /// the queue is shared): nothing to do.
    Foreign,
    /// Not an event at all, or one that lacks what it must carry: the reason.
    Malformed(String),
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Reads a message body.
pub fn parse(body: &str) -> Message {
    let v: Value = match serde_json::from_str(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Message::Malformed("not a JSON object".into()),
        Err(e) => return Message::Malformed(format!("not JSON: {e}")),
    };
    let text = |key: &str| v.get(key).and_then(Value::as_str);
    match (text("source"), text("detail-type")) {
        (Some(SOURCE), Some(DETAIL_TYPE)) => {}
        (Some(_), Some(_)) => return Message::Foreign,
        _ => {
            return Message::Malformed(
                "no source and detail-type: not an EventBridge event".into(),
            );
        }
    }
    let detail = v.get("detail").unwrap_or(&Value::Null);
    let field = |key: &str| detail.get(key).and_then(Value::as_str);
    let missing = |what: &str| Message::Malformed(format!("the event has no {what}"));
    let (Some(account), Some(region)) = (text("account"), text("region")) else {
        return missing("account or region");
    };
    let Some(at) = v.get("time").and_then(time) else {
        return missing("time");
    };
    let (Some(pipeline), Some(execution_id)) = (field("pipeline"), field("execution-id")) else {
        return missing("detail.pipeline or detail.execution-id");
    };
    let Some(state) = field("state") else {
        return missing("detail.state");
    };
    let Some(state) = State::parse(state) else {
        return Message::Malformed(format!("unknown detail.state {state:?}"));
    };
    Message::Execution(ExecutionEvent {
        id: text("id").unwrap_or_default().to_string(),
        account: account.to_string(),
        region: region.to_string(),
        time: at,
        pipeline: pipeline.to_string(),
        execution_id: execution_id.to_string(),
        state,
        start_time: detail.get("start-time").and_then(time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTED: &str = r#"{"version":"0","id":"01234567-0123-0123-0123-012345678901",
      "detail-type":"CodePipeline Pipeline Execution State Change","source":"aws.codepipeline",
      "account":"123456789012","time":"2026-12-04T10:00:00Z","region":"eu-west-1",
      "resources":["arn:aws:codepipeline:eu-west-1:123456789012:prod-api"],
      "detail":{"pipeline":"prod-api","execution-id":"0d8a3b4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f",
        "start-time":"2026-12-04T09:59:59.500Z","state":"STARTED","version":1.0,
        "execution-trigger":{"trigger-type":"StartPipelineExecution"}}}"#;

    #[test]
    fn a_started_event_is_read_whole() {
        let Message::Execution(e) = parse(STARTED) else {
            panic!("{:?}", parse(STARTED));
        };
        assert_eq!(e.state, State::Started);
        assert_eq!(e.account, "123456789012");
        assert_eq!(e.region, "eu-west-1");
        assert_eq!(e.pipeline, "prod-api");
        assert_eq!(e.time.to_rfc3339(), "2026-12-04T10:00:00+00:00");
        assert_eq!(e.start_time.map(|t| t.timestamp_millis() % 1000), Some(500));
    }

    #[test]
    fn junk_and_other_events_are_told_apart() {
        assert!(matches!(parse("not json"), Message::Malformed(_)));
        assert!(matches!(parse("[1,2]"), Message::Malformed(_)));
        assert!(matches!(parse("{}"), Message::Malformed(_)));
        let other = STARTED.replace("aws.codepipeline", "aws.ec2");
        assert_eq!(parse(&other), Message::Foreign);
        let stage = STARTED.replace(
            "CodePipeline Pipeline Execution State Change",
            "CodePipeline Stage Execution State Change",
        );
        assert_eq!(parse(&stage), Message::Foreign);
        let no_id = STARTED.replace("\"execution-id\"", "\"x\"");
        assert!(matches!(parse(&no_id), Message::Malformed(_)));
        let odd = STARTED.replace("\"STARTED\"", "\"DANCING\"");
        assert!(matches!(parse(&odd), Message::Malformed(_)));
        let ended = STARTED.replace("\"STARTED\"", "\"SUPERSEDED\"");
        assert!(matches!(parse(&ended), Message::Execution(e) if e.state == State::Ended));
    }
}
