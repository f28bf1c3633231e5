//! The SQS queue through the official aws-sdk-sqs, and the EventBridge events the emulator
//! publishes to it. Time moves only when a test moves the emulator's (manual) clock.

use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use serde_json::Value;
use stopd_emulator::events::EventFeed;
use stopd_emulator::{Fault, FaultRule};

use crate::common::{FIXTURE, start};

const QUEUE: &str = "stopd-events";

fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "tests",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

fn feed() -> EventFeed {
    EventFeed {
        queue: QUEUE.into(),
        ..EventFeed::default()
    }
}

async fn url(client: &aws_sdk_sqs::Client) -> String {
    client
        .get_queue_url()
        .queue_name(QUEUE)
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url()
        .expect("a url")
        .to_string()
}

async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn send_receive_hide_and_delete_through_the_sdk() {
    let env = start(FIXTURE).await;
    env.emulator.create_queue(QUEUE);
    let client = sqs(&env.server.endpoint_url());
    let url = url(&client).await;
    assert!(url.ends_with("/123456789012/stopd-events"), "{url}");
    let sent = client
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .expect("SendMessage");
    assert_eq!(
        sent.md5_of_message_body(),
        Some("5d41402abc4b2a76b9719d911017c592")
    );
    assert_eq!(depth(&client, &url).await, "1");
    let got = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .send()
        .await
        .expect("ReceiveMessage");
    let m = &got.messages()[0];
    assert_eq!(m.body(), Some("hello"));
    assert_eq!(depth(&client, &url).await, "0", "received: in flight");
    // Invisible until the visibility timeout passes on the emulator's clock.
    env.emulator.advance(Duration::from_secs(29));
    let none = client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    assert!(none.messages().is_empty());
    env.emulator.advance(Duration::from_secs(1));
    let again = client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    let again = &again.messages()[0];
    assert_ne!(again.receipt_handle(), m.receipt_handle());
    // Shorten its visibility to nothing, receive it a third time, delete it in a batch.
    client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(again.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility");
    let third = client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    let handle = third.messages()[0].receipt_handle().unwrap().to_string();
    let deleted = client
        .delete_message_batch()
        .queue_url(&url)
        .entries(
            DeleteMessageBatchRequestEntry::builder()
                .id("a")
                .receipt_handle(&handle)
                .build()
                .unwrap(),
        )
        .entries(
            DeleteMessageBatchRequestEntry::builder()
                .id("b")
                .receipt_handle("not a handle")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("DeleteMessageBatch");
    assert_eq!(deleted.successful().len(), 1);
    assert_eq!(deleted.failed()[0].code(), "ReceiptHandleIsInvalid");
    assert_eq!(env.emulator.queue_depth(QUEUE).unwrap().in_flight, 0);
    // An unknown queue is QueueDoesNotExist.
    let err = client
        .receive_message()
        .queue_url("http://127.0.0.1/000000000000/nope")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.into_service_error().is_queue_does_not_exist(),
        "QueueDoesNotExist"
    );
}

#[tokio::test]
async fn a_long_poll_answers_when_a_message_arrives() {
    let env = start(FIXTURE).await;
    env.emulator.enable_events(feed());
    let client = sqs(&env.server.endpoint_url());
    let url = url(&client).await;
    let polling = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(20)
                .max_number_of_messages(10)
                .send()
                .await
        }
    });
    // Nothing is visible: the poll waits (the clock is manual and stands still).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!polling.is_finished());
    let id = env.emulator.start_execution("dev-api").expect("starts");
    let got = polling.await.unwrap().expect("ReceiveMessage");
    let body: Value = serde_json::from_str(got.messages()[0].body().unwrap()).unwrap();
    assert_eq!(body["detail"]["execution-id"], id.as_str());
    assert_eq!(body["detail"]["state"], "STARTED");
    assert_eq!(
        body["detail-type"],
        "CodePipeline Pipeline Execution State Change"
    );
    assert_eq!(body["source"], "aws.codepipeline");
    assert_eq!(body["account"], "123456789012");
}

#[tokio::test]
async fn a_long_poll_with_nothing_to_receive_ends_when_the_emulated_wait_is_over() {
    let env = start(FIXTURE).await;
    env.emulator.create_queue(QUEUE);
    let client = sqs(&env.server.endpoint_url());
    let url = url(&client).await;
    let polling = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(20)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.emulator.advance(Duration::from_secs(20));
    let got = polling.await.unwrap().expect("ReceiveMessage");
    assert!(got.messages().is_empty());
}

#[tokio::test]
async fn every_state_change_of_an_execution_is_published_in_order() {
    let env = start(FIXTURE).await;
    env.emulator.enable_events(feed());
    let client = sqs(&env.server.endpoint_url());
    let url = url(&client).await;
    let id = env.emulator.start_execution("dev-api").unwrap();
    env.emulator.advance(Duration::from_secs(5));
    // Stopped with abandon through the API (settles after 1 s of emulated time).
    let cp = crate::common::client(&env.server.endpoint_url());
    cp.stop_pipeline_execution()
        .pipeline_name("dev-api")
        .pipeline_execution_id(&id)
        .abandon(true)
        .reason("test")
        .send()
        .await
        .unwrap();
    env.emulator.advance(Duration::from_secs(2));
    let got = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let states: Vec<String> = got
        .messages()
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            v["detail"]["state"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(states, ["STARTED", "STOPPING", "STOPPED"]);
    // The in-progress execution of the fixture was history: it is announced when it ends.
    env.emulator.advance(Duration::from_secs(3_600));
    let later = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    // (The three above were not deleted: visible again, with the new one.)
    let ended: Vec<Value> = later
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .filter(|v: &Value| v["detail"]["pipeline"] == "prod-web")
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["detail"]["state"], "SUCCEEDED");
}

#[tokio::test]
async fn the_feed_loses_duplicates_and_delays_on_request() {
    let env = start(FIXTURE).await;
    env.emulator.enable_events(EventFeed {
        duplicate: 1.0,
        delay: Duration::from_secs(10),
        ..feed()
    });
    env.emulator.start_execution("dev-api").unwrap();
    env.emulator.publish_events();
    let d = env.emulator.queue_depth(QUEUE).unwrap();
    assert_eq!(
        (d.visible, d.delayed),
        (0, 2),
        "two copies, not visible yet"
    );
    env.emulator.advance(Duration::from_secs(10));
    assert_eq!(env.emulator.queue_depth(QUEUE).unwrap().visible, 2);
    env.emulator.enable_events(EventFeed {
        loss: 1.0,
        ..feed()
    });
    env.emulator.start_execution("dev-api").unwrap();
    env.emulator.publish_events();
    assert_eq!(env.emulator.queue_depth(QUEUE).unwrap().visible, 2);
    assert_eq!(env.emulator.feed().unwrap().stats.lost, 1);
}

#[tokio::test]
async fn an_injected_access_denied_is_answered_as_sqs_does() {
    let env = start(FIXTURE).await;
    env.emulator.create_queue(QUEUE);
    env.emulator
        .add_fault(FaultRule::new(Some("ReceiveMessage"), Fault::AccessDenied));
    // A rule for every operation does not reach SQS (nor CodePipeline's rate limits).
    env.emulator.add_fault(FaultRule::new(None, Fault::Http500));
    let client = sqs(&env.server.endpoint_url());
    let url = url(&client).await;
    let err = client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_sqs::error::ProvideErrorMetadata::code(&err),
        Some("AccessDenied"),
        "the query-compatible code, as SQS answers"
    );
}
