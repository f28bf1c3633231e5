//! What every operation reads from its request: string fields, the page size, the opaque
//! pagination token, the execution id, and the pipeline it names (resolved to "now").

use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::Pipeline;
use crate::world::World;

/// An operation's answer: the JSON body, or an error.
pub(super) type ApiResult = Result<Value, ApiError>;

pub(super) fn str_field<'a>(input: &'a Value, name: &str) -> &'a str {
    input.get(name).and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn max_results(input: &Value, default: usize) -> usize {
    input
        .get("maxResults")
        .and_then(Value::as_u64)
        .map_or(default, |n| n as usize)
}

/// Pagination tokens are opaque to clients: hex of `kind:cursor`.
pub(super) fn encode_token(kind: &str, cursor: &str) -> String {
    format!("{kind}:{cursor}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn decode_token(input: &Value, kind: &str) -> Result<Option<String>, ApiError> {
    let Some(token) = input.get("nextToken").and_then(Value::as_str) else {
        return Ok(None);
    };
    let invalid =
        || ApiError::bad_request("InvalidNextTokenException", "The next token is not valid.");
    if token.len() % 2 != 0 {
        return Err(invalid());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = bytes
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let cursor = text
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(invalid)?;
    Ok(Some(cursor.to_string()))
}

fn not_found(name: &str) -> ApiError {
    ApiError::bad_request(
        "PipelineNotFoundException",
        format!(
            "Account '{}' does not have a pipeline with name '{name}'",
            crate::fixture::DEFAULT_ACCOUNT
        ),
    )
}

pub(super) fn pipeline_mut<'a>(
    world: &'a mut World,
    name: &str,
) -> Result<&'a mut Pipeline, ApiError> {
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let p = world
        .pipelines
        .get_mut(name)
        .ok_or_else(|| not_found(name))?;
    p.resolve(now, behaviour);
    Ok(p)
}

pub(super) fn parse_id(input: &Value) -> Uuid {
    // The model's pattern has already been checked, so this parses.
    Uuid::parse_str(str_field(input, "pipelineExecutionId")).unwrap_or_default()
}
