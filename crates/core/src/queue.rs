//! The event queue: an SQS queue that an EventBridge rule fills with CodePipeline's execution
//! state changes, read by long polling. Knows nothing of what the messages say (the daemon
//! reads them); it receives, deletes and counts.
//!
//! One layer retries: the SDK's retries are off (as for every client of this crate) and a
//! failed receive is not retried here: the daemon's consumer polls again after its backoff.

use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

use crate::error::ApiError;

/// What SQS allows at most in one receive (and one delete batch).
pub const MAX_BATCH: usize = 10;

/// The longest long poll SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// `MessageId`.
    pub id: String,
    /// `ReceiptHandle`: what deleting it takes.
    pub handle: String,
    /// `Body`.
    pub body: String,
    /// `ApproximateReceiveCount` (1 the first time).
    pub receive_count: u32,
}

/// An SQS queue and the client that reads it.
#[derive(Debug, Clone)]
pub struct EventQueue {
    /// The SQS client (ambient credentials).
    client: aws_sdk_sqs::Client,
    /// The queue's URL.
    url: String,
}

impl EventQueue {
    /// The queue at `url`, read with `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> EventQueue {
        EventQueue {
            client,
            url: url.to_string(),
        }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Up to `max` messages (at most [`MAX_BATCH`]), waiting up to `wait` for the first one
    /// (a long poll); each stays invisible to other receives for `visibility`.
    pub async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, ApiError> {
        let wait = wait.min(MAX_WAIT);
        // The client's attempt timeout (10 s) is shorter than a long poll: this one call gets
        // the poll's length and a margin.
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(wait + Duration::from_secs(10))
            .build();
        let got = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("ReceiveMessage", e))?;
        Ok(got
            .messages()
            .iter()
            .filter_map(|m| {
                Some(QueueMessage {
                    id: m.message_id().unwrap_or_default().to_string(),
                    handle: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| {
                            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                        })
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    /// Deletes received messages by receipt handle (at most [`MAX_BATCH`]); returns the handles
    /// SQS refused (each is received again after its visibility timeout).
    pub async fn delete(&self, handles: &[String]) -> Result<Vec<String>, ApiError> {
        if handles.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = handles
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .ok()
            })
            .collect();
        let got = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("DeleteMessageBatch", e))?;
        Ok(got
            .failed()
            .iter()
            .filter_map(|f| f.id().parse::<usize>().ok())
            .filter_map(|i| handles.get(i).cloned())
            .collect())
    }

    /// `ApproximateNumberOfMessages`: messages waiting to be received.
    pub async fn depth(&self) -> Result<u64, ApiError> {
        let got = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("GetQueueAttributes", e))?;
        Ok(got
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}
