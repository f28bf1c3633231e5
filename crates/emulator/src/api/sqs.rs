//! SQS in the JSON protocol that aws-sdk-sqs and boto3 speak (awsJson1_0,
//! `X-Amz-Target: AmazonSQS.<Operation>`), served at the same endpoint as CodePipeline:
//! GetQueueUrl, SendMessage, ReceiveMessage (long polling is the server's: see
//! `server.rs`), DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility and
//! GetQueueAttributes, on the root world's queues and the emulator's clock.
//!
//! Errors are answered as SQS's JSON protocol does: `__type` is the modeled name
//! (`QueueDoesNotExist`, `ReceiptHandleIsInvalid`, ...); a queue is named by its URL's last
//! path segment, as SQS's URLs end with the queue's name.

use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::request::{ApiResult, str_field};
use crate::clock::Millis;
use crate::error::ApiError;
use crate::queue::{Deleted, MAX_VISIBILITY_MS, Queue, Received};
use crate::world::World;

/// The operations served, by their model names.
pub const OPERATIONS: [&str; 7] = [
    "GetQueueUrl",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
];

/// The longest long poll SQS allows, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 20;

/// The `x-amzn-query-error` header of an error answer (`CODE;Sender`): SQS's JSON protocol is
/// query-compatible, and the SDKs name errors by these legacy codes when the header is there
/// (aws-sdk-sqs's `QueueDoesNotExist` is `AWS.SimpleQueueService.NonExistentQueue`).
pub fn query_error(code: &str) -> Option<&'static str> {
    Some(match code {
        "QueueDoesNotExist" => "AWS.SimpleQueueService.NonExistentQueue;Sender",
        "ReceiptHandleIsInvalid" => "ReceiptHandleIsInvalid;Sender",
        "InvalidParameterValue" => "InvalidParameterValue;Sender",
        "MissingParameter" => "MissingParameter;Sender",
        "MessageNotInflight" => "AWS.SimpleQueueService.MessageNotInflight;Sender",
        "EmptyBatchRequest" => "AWS.SimpleQueueService.EmptyBatchRequest;Sender",
        "TooManyEntriesInBatchRequest" => {
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender"
        }
        "AccessDeniedException" => "AccessDenied;Sender",
        "RequestThrottled" => "RequestThrottled;Sender",
        "InternalError" => "InternalError;Receiver",
        "ServiceUnavailable" => "ServiceUnavailable;Receiver",
        _ => return None,
    })
}

/// A ReceiveMessage request, read and checked.
#[derive(Debug, Clone)]
pub struct ReceiveRequest {
    /// The queue's name.
    pub queue: String,
    /// `MaxNumberOfMessages` (1 to 10, default 1).
    pub max: usize,
    /// `VisibilityTimeout` in ms (the queue's when absent).
    pub visibility_ms: Option<Millis>,
    /// `WaitTimeSeconds` (0 to 20).
    pub wait_seconds: u64,
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn invalid_parameter(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("InvalidParameterValue", message)
}

/// The queue a request's `QueueUrl` names.
fn queue_name(input: &Value) -> Result<String, ApiError> {
    let url = str_field(input, "QueueUrl");
    if url.is_empty() {
        return Err(ApiError::bad_request(
            "MissingParameter",
            "The request must contain the parameter QueueUrl.",
        ));
    }
    Ok(url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(url)
        .to_string())
}

fn no_queue() -> ApiError {
    ApiError::bad_request("QueueDoesNotExist", "The specified queue does not exist.")
}

fn queue<'a>(w: &'a mut World, input: &Value) -> Result<&'a mut Queue, ApiError> {
    let name = queue_name(input)?;
    w.queues.get_mut(&name).ok_or_else(no_queue)
}

fn int(input: &Value, name: &str) -> Result<Option<i64>, ApiError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid_parameter(format!("Value for parameter {name} is invalid."))),
    }
}

/// Reads and checks a ReceiveMessage request.
pub fn receive_request(w: &World, input: &Value) -> Result<ReceiveRequest, ApiError> {
    let queue = queue_name(input)?;
    if !w.queues.contains_key(&queue) {
        return Err(no_queue());
    }
    let max = int(input, "MaxNumberOfMessages")?.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(invalid_parameter(format!(
            "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
        )));
    }
    let wait = int(input, "WaitTimeSeconds")?.unwrap_or(0);
    if !(0..=MAX_WAIT_SECONDS as i64).contains(&wait) {
        return Err(invalid_parameter(format!(
            "Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
        )));
    }
    let visibility = int(input, "VisibilityTimeout")?;
    if let Some(v) = visibility
        && !(0..=MAX_VISIBILITY_MS / 1_000).contains(&v)
    {
        return Err(invalid_parameter(format!(
            "Value {v} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
        )));
    }
    Ok(ReceiveRequest {
        queue,
        max: max as usize,
        visibility_ms: visibility.map(|s| s * 1_000),
        wait_seconds: wait as u64,
    })
}

/// ReceiveMessage's answer.
pub fn messages_json(got: &[Received]) -> Value {
    if got.is_empty() {
        return json!({});
    }
    let messages: Vec<Value> = got
        .iter()
        .map(|m| {
            json!({
                "MessageId": m.id,
                "ReceiptHandle": m.handle,
                "MD5OfBody": md5_hex(&m.body),
                "Body": m.body,
                "Attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at.to_string(),
                    "ApproximateFirstReceiveTimestamp": m.first_received_at.to_string(),
                },
            })
        })
        .collect();
    json!({ "Messages": messages })
}

/// Every operation but ReceiveMessage's waiting (the caller receives through
/// [`receive_request`] and `World::receive`).
pub fn serve(w: &mut World, operation: &str, input: &Value, id: String) -> ApiResult {
    let now = w.clock.now();
    match operation {
        "GetQueueUrl" => {
            let name = str_field(input, "QueueName");
            if !w.queues.contains_key(name) {
                return Err(no_queue());
            }
            let account = match str_field(input, "QueueOwnerAWSAccountId") {
                "" => w.account.clone(),
                a => a.to_string(),
            };
            Ok(json!({"QueueUrl": format!("{}/{account}/{name}", w.endpoint)}))
        }
        "SendMessage" => {
            let body = str_field(input, "MessageBody").to_string();
            if body.is_empty() {
                return Err(ApiError::bad_request(
                    "MissingParameter",
                    "The request must contain the parameter MessageBody.",
                ));
            }
            let delay = int(input, "DelaySeconds")?.unwrap_or(0);
            if !(0..=900).contains(&delay) {
                return Err(invalid_parameter(format!(
                    "Value {delay} for parameter DelaySeconds is invalid. Reason: Must be >= 0 and <= 900."
                )));
            }
            let md5 = md5_hex(&body);
            queue(w, input)?.send(id.clone(), body, now, now + delay * 1_000);
            Ok(json!({"MessageId": id, "MD5OfMessageBody": md5}))
        }
        "DeleteMessage" => {
            let handle = str_field(input, "ReceiptHandle").to_string();
            match queue(w, input)?.delete(&handle) {
                Deleted::Removed | Deleted::Stale => Ok(json!({})),
                Deleted::Invalid => Err(ApiError::bad_request(
                    "ReceiptHandleIsInvalid",
                    format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
                )),
            }
        }
        "DeleteMessageBatch" => {
            let entries: Vec<(String, String)> = input
                .get("Entries")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                str_field(e, "Id").to_string(),
                                str_field(e, "ReceiptHandle").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if entries.is_empty() {
                return Err(ApiError::bad_request(
                    "EmptyBatchRequest",
                    "There should be at least one DeleteMessageBatchRequestEntry in the request.",
                ));
            }
            if entries.len() > 10 {
                return Err(ApiError::bad_request(
                    "TooManyEntriesInBatchRequest",
                    format!(
                        "Maximum number of entries per request are 10. You have sent {}.",
                        entries.len()
                    ),
                ));
            }
            let q = queue(w, input)?;
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for (id, handle) in entries {
                match q.delete(&handle) {
                    Deleted::Removed | Deleted::Stale => ok.push(json!({"Id": id})),
                    Deleted::Invalid => failed.push(json!({
                        "Id": id, "SenderFault": true, "Code": "ReceiptHandleIsInvalid",
                        "Message": "The input receipt handle is invalid.",
                    })),
                }
            }
            Ok(json!({"Successful": ok, "Failed": failed}))
        }
        "ChangeMessageVisibility" => {
            let handle = str_field(input, "ReceiptHandle").to_string();
            let timeout = int(input, "VisibilityTimeout")?.unwrap_or(-1);
            if !(0..=MAX_VISIBILITY_MS / 1_000).contains(&timeout) {
                return Err(invalid_parameter(
                    "Value for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.",
                ));
            }
            if queue(w, input)?.change_visibility(&handle, now, timeout * 1_000) {
                Ok(json!({}))
            } else {
                Err(ApiError::bad_request(
                    "MessageNotInflight",
                    "The message referred to is not in flight.",
                ))
            }
        }
        "GetQueueAttributes" => {
            let (account, region) = (w.account.clone(), w.region.clone());
            let name = queue_name(input)?;
            let q = queue(w, input)?;
            let d = q.depth(now);
            Ok(json!({"Attributes": {
                "ApproximateNumberOfMessages": d.visible.to_string(),
                "ApproximateNumberOfMessagesNotVisible": d.in_flight.to_string(),
                "ApproximateNumberOfMessagesDelayed": d.delayed.to_string(),
                "VisibilityTimeout": (q.visibility_ms / 1_000).to_string(),
                "QueueArn": format!("arn:aws:sqs:{region}:{account}:{name}"),
            }}))
        }
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Operation {other} is not supported by this emulator"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_the_body_is_what_sqs_answers() {
        // RFC 1321's test suite.
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
