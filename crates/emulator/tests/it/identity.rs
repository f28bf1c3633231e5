//! Identity: requests must be SigV4-signed, and the fault plan can answer as IAM and STS do.
//! Source of names and statuses: the AWS API Reference, "Common Errors" (MissingAuthenticationToken
//! HTTP 403, IncompleteSignature HTTP 400, AccessDeniedException HTTP 400, ExpiredTokenException
//! and UnrecognizedClientException HTTP 403).

use aws_sdk_codepipeline::error::ProvideErrorMetadata;
use stopd_emulator::auth::example_authorization;
use stopd_emulator::{Fault, FaultRule};

use crate::common::{FIXTURE, raw_call, raw_call_with, start, target};

#[tokio::test]
async fn unsigned_request_is_refused_with_missing_authentication_token() {
    let env = start(FIXTURE).await;
    let (status, header, v) =
        raw_call_with(env.server.addr(), Some(&target("ListPipelines")), "", "{}").await;
    assert_eq!(
        (status, header.as_deref()),
        (403, Some("MissingAuthenticationTokenException"))
    );
    assert_eq!(v["message"], "Missing Authentication Token");
    // Refused before anything else: not even the pipeline list was read, and it is logged.
    let calls = env.emulator.calls();
    assert_eq!(
        calls[0].error.as_deref(),
        Some("MissingAuthenticationTokenException")
    );
}

#[tokio::test]
async fn malformed_signature_is_an_incomplete_signature() {
    let env = start(FIXTURE).await;
    let good = example_authorization("20261128");
    let cases = [
        // Another service's scope.
        (
            format!(
                "Authorization: {}\r\nX-Amz-Date: 20261128T090000Z\r\n",
                good.replace("/codepipeline/", "/s3/")
            ),
            "correct service: 'codepipeline'",
        ),
        // No X-Amz-Date nor Date.
        (format!("Authorization: {good}\r\n"), "'X-Amz-Date'"),
        // No Signature.
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/codepipeline/aws4_request, SignedHeaders=host\r\nX-Amz-Date: 20261128T090000Z\r\n".to_string(),
            "requires 'Signature' parameter",
        ),
    ];
    for (headers, needle) in cases {
        let (status, header, v) = raw_call_with(
            env.server.addr(),
            Some(&target("ListPipelines")),
            &headers,
            "{}",
        )
        .await;
        assert_eq!(
            (status, header.as_deref()),
            (400, Some("IncompleteSignatureException")),
            "{headers}"
        );
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    // The same request, well signed, is served.
    assert_eq!(
        raw_call(env.server.addr(), Some(&target("ListPipelines")), "{}")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn the_sdk_signs_and_is_served() {
    let env = start(FIXTURE).await;
    env.client.list_pipelines().send().await.unwrap();
}

#[tokio::test]
async fn injected_access_denied_names_the_user_operation_and_resource() {
    let env = start(FIXTURE).await;
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::AccessDenied,
    ));
    let id = env.emulator.executions("prod-web")[1].id.clone();
    let e = env
        .client
        .stop_pipeline_execution()
        .pipeline_name("prod-web")
        .pipeline_execution_id(&id)
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert_eq!(e.code(), Some("AccessDeniedException"));
    assert_eq!(
        e.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/stopd is not authorized to perform: \
             codepipeline:StopPipelineExecution on resource: \
             arn:aws:codepipeline:us-east-1:123456789012:prod-web because no identity-based \
             policy allows the codepipeline:StopPipelineExecution action"
        )
    );
    // Only that operation: reading still works, and the execution was not stopped.
    assert_eq!(env.emulator.executions("prod-web")[1].status, "InProgress");
    env.client.list_pipelines().send().await.unwrap();
}

#[tokio::test]
async fn injected_expired_and_unrecognized_tokens_answer_403() {
    let env = start(FIXTURE).await;
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::ExpiredToken).times(1));
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::UnrecognizedClient).times(1));
    let t = target("ListPipelines");
    let (status, header, v) = raw_call(env.server.addr(), Some(&t), "{}").await;
    assert_eq!(
        (status, header.as_deref()),
        (403, Some("ExpiredTokenException"))
    );
    assert_eq!(
        v["message"],
        "The security token included in the request is expired"
    );
    let e = env.client.list_pipelines().send().await.unwrap_err();
    assert_eq!(
        e.into_service_error().code(),
        Some("UnrecognizedClientException")
    );
    env.client.list_pipelines().send().await.unwrap();
}
