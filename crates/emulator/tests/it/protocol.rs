//! The wire protocol: every response validates against the service model's output shapes, and
//! bad input gets the service's error names, never a panic, an HTML page or a hang.

use serde_json::{Value, json};
use stopd_emulator::model::Model;
use stopd_emulator::{Fault, FaultRule, FleetSpec};

use crate::common::{FIXTURE, raw_call, start, target};

async fn ok_call(addr: std::net::SocketAddr, op: &str, body: Value) -> Value {
    let (status, err, v) = raw_call(addr, Some(&target(op)), &body.to_string()).await;
    assert_eq!(status, 200, "{op}: {err:?} {v}");
    let has_output = Model::get()
        .operation(op)
        .is_some_and(|o| o.output.is_some());
    if !has_output {
        // DisableStageTransition and EnableStageTransition model no output: an empty object.
        assert_eq!(v, json!({}), "{op}");
        return v;
    }
    let violations = Model::get().check_output(op, &v);
    assert!(
        violations.is_empty(),
        "{op} response breaks the model: {violations:?}\n{v}"
    );
    v
}

#[tokio::test]
async fn every_operation_response_matches_the_model_output_shape() {
    let env = start(FIXTURE).await;
    let addr = env.server.addr();
    let arn = "arn:aws:codepipeline:us-east-1:123456789012:prod-web";
    // Stop one execution so that stopTrigger appears, start a rollback-free one in QUEUED.
    let id = env.emulator.executions("prod-web")[1].id.clone();
    ok_call(addr, "StartPipelineExecution", json!({"name": "prod-api"})).await;
    ok_call(
        addr,
        "StartPipelineExecution",
        json!({"name": "prod-api", "clientRequestToken": "abc-1"}),
    )
    .await;
    ok_call(
        addr,
        "StopPipelineExecution",
        json!({"pipelineName": "prod-web", "pipelineExecutionId": id, "reason": "freeze"}),
    )
    .await;
    ok_call(addr, "ListPipelines", json!({"maxResults": 2})).await;
    ok_call(addr, "GetPipeline", json!({"name": "prod-web"})).await;
    let state = ok_call(addr, "GetPipelineState", json!({"name": "prod-web"})).await;
    assert_eq!(state["stageStates"].as_array().unwrap().len(), 3);
    let list = ok_call(
        addr,
        "ListPipelineExecutions",
        json!({"pipelineName": "prod-web"}),
    )
    .await;
    assert_eq!(
        list["pipelineExecutionSummaries"][0]["stopTrigger"]["reason"],
        "freeze"
    );
    ok_call(
        addr,
        "ListPipelineExecutions",
        json!({"pipelineName": "prod-api", "maxResults": 1}),
    )
    .await;
    ok_call(
        addr,
        "GetPipelineExecution",
        json!({"pipelineName": "prod-web", "pipelineExecutionId": id}),
    )
    .await;
    let tags = ok_call(
        addr,
        "ListTagsForResource",
        json!({"resourceArn": arn, "maxResults": 1}),
    )
    .await;
    assert!(tags["nextToken"].is_string());
    ok_call(
        addr,
        "DisableStageTransition",
        json!({"pipelineName": "prod-web", "stageName": "Deploy", "transitionType": "Inbound",
               "reason": "Change freeze (until Monday)!"}),
    )
    .await;
    let state = ok_call(addr, "GetPipelineState", json!({"name": "prod-web"})).await;
    let deploy = &state["stageStates"][2]["inboundTransitionState"];
    assert_eq!(deploy["enabled"], false);
    assert_eq!(deploy["disabledReason"], "Change freeze (until Monday)!");
    assert!(deploy["lastChangedAt"].is_number());
    assert_eq!(
        deploy["lastChangedBy"],
        "arn:aws:iam::123456789012:user/stopd"
    );
    ok_call(
        addr,
        "EnableStageTransition",
        json!({"pipelineName": "prod-web", "stageName": "Deploy", "transitionType": "Inbound"}),
    )
    .await;
    // Every operation was served with 200.
    let served: std::collections::BTreeSet<String> = env
        .emulator
        .calls()
        .into_iter()
        .map(|c| c.operation)
        .collect();
    assert_eq!(
        served.len(),
        stopd_emulator::api::OPERATIONS.len(),
        "{served:?}"
    );
}

#[tokio::test]
async fn generated_fleet_responses_match_the_model() {
    let env = start(r#"{"pipelines": []}"#).await;
    env.emulator.seed_fleet(FleetSpec {
        pipelines: 60,
        seed: 3,
        history: 4,
    });
    let addr = env.server.addr();
    let pipelines = ok_call(addr, "ListPipelines", json!({})).await;
    for p in pipelines["pipelines"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        ok_call(
            addr,
            "ListPipelineExecutions",
            json!({"pipelineName": name}),
        )
        .await;
        ok_call(addr, "GetPipelineState", json!({"name": name})).await;
    }
}

#[tokio::test]
async fn bad_input_gets_the_service_error_names() {
    let env = start(FIXTURE).await;
    let addr = env.server.addr();
    let disable = |stage: &str, reason: &str| {
        json!({"pipelineName": "prod-web", "stageName": stage, "transitionType": "Inbound", "reason": reason})
            .to_string()
    };
    let cases: Vec<(Option<String>, String, u16, &str, &str)> = vec![
        // DisableStageTransition: the model's DisabledReason (1..300 characters of
        // [a-zA-Z0-9!@ ()\.\*\?\-]) and StageNotFoundException.
        (
            Some(target("DisableStageTransition")),
            disable("Deploy", &"x".repeat(301)),
            400,
            "ValidationException",
            "at 'reason' failed to satisfy constraint: Member must have length less than or equal to 300",
        ),
        (
            Some(target("DisableStageTransition")),
            disable("Deploy", "freeze: no deploys"),
            400,
            "ValidationException",
            "at 'reason' failed to satisfy constraint: Member must satisfy regular expression pattern",
        ),
        (
            Some(target("DisableStageTransition")),
            disable("NoSuchStage", "freeze"),
            400,
            "StageNotFoundException",
            "NoSuchStage",
        ),
        (
            Some(target("EnableStageTransition")),
            json!({"pipelineName": "prod-web", "stageName": "Deploy", "transitionType": "Sideways"}).to_string(),
            400,
            "ValidationException",
            "at 'transitionType'",
        ),
        (Some(target("ListPipelines")), "{not json".into(), 400, "SerializationException", ""),
        (Some(target("ListPipelines")), "[1,2]".into(), 400, "SerializationException", ""),
        (Some(target("DeletePipeline")), "{}".into(), 400, "UnknownOperationException", ""),
        (None, "{}".into(), 400, "UnknownOperationException", ""),
        (Some(target("GetPipeline")), "{}".into(), 400, "ValidationException", "at 'name'"),
        (Some(target("GetPipeline")), r#"{"name": 7}"#.into(), 400, "ValidationException", "at 'name'"),
        (
            Some(target("StopPipelineExecution")),
            json!({"pipelineName": "prod-web", "pipelineExecutionId": "ABC"}).to_string(),
            400,
            "ValidationException",
            "at 'pipelineExecutionId'",
        ),
        (
            Some(target("StopPipelineExecution")),
            json!({"pipelineName": "prod-web", "pipelineExecutionId": "00000000-0000-4000-8000-000000000000", "reason": "r".repeat(201)}).to_string(),
            400,
            "ValidationException",
            "at 'reason' failed to satisfy constraint: Member must have length less than or equal to 200",
        ),
        (
            Some(target("ListPipelines")),
            json!({"maxResults": 1001}).to_string(),
            400,
            "ValidationException",
            "at 'maxResults'",
        ),
        (
            Some(target("ListPipelines")),
            json!({"nextToken": "zz-not-a-token"}).to_string(),
            400,
            "InvalidNextTokenException",
            "",
        ),
        (
            Some(target("ListPipelineExecutions")),
            json!({"pipelineName": "prod-web", "nextToken": "706970656c696e65733a61"}).to_string(),
            400,
            "InvalidNextTokenException",
            "",
        ),
        (
            Some(target("GetPipeline")),
            json!({"name": "nope"}).to_string(),
            400,
            "PipelineNotFoundException",
            "nope",
        ),
    ];
    for (t, body, status, code, needle) in cases {
        let (got_status, header, v) = raw_call(addr, t.as_deref(), &body).await;
        assert_eq!(
            (got_status, header.as_deref()),
            (status, Some(code)),
            "{t:?} {body}: {v}"
        );
        assert_eq!(v["__type"], code);
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
}

#[tokio::test]
async fn injected_faults_use_the_wire_format_of_the_service() {
    let env = start(FIXTURE).await;
    let addr = env.server.addr();
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Conflict).times(1));
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Throttling).times(1));
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Http503).times(1));
    let body = "{}";
    let t = target("ListPipelines");
    assert_eq!(raw_call(addr, Some(&t), body).await.0, 409);
    let (status, header, v) = raw_call(addr, Some(&t), body).await;
    assert_eq!(
        (status, header.as_deref()),
        (400, Some("ThrottlingException"))
    );
    assert_eq!(v["message"], "Rate exceeded");
    assert_eq!(raw_call(addr, Some(&t), body).await.0, 503);
    assert_eq!(raw_call(addr, Some(&t), body).await.0, 200);
}

#[tokio::test]
async fn admin_api_moves_the_clock_and_lists_calls() {
    let env = start(FIXTURE).await;
    let addr = env.server.addr();
    let before = env.emulator.now();
    let admin = |method: &str, path: &str, body: &str| {
        let req = format!(
            "{method} /_emulator/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            let (_, body) = buf.split_once("\r\n\r\n").unwrap();
            serde_json::from_str::<Value>(body).unwrap()
        }
    };
    let clock = admin("POST", "clock", r#"{"advance": "90s"}"#).await;
    assert_eq!(clock["now_ms"].as_i64().unwrap(), before + 90_000);
    // A time past year 9999 is refused (it once panicked the server), and the clock stays.
    for far in [
        r#"{"set_ms": 8210266876799000}"#,
        r#"{"set_ms": -1}"#,
        r#"{"advance": "100000years"}"#,
    ] {
        let refused = admin("POST", "clock", far).await;
        let msg = refused["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("outside the emulator's clock range"),
            "{far}: {refused}"
        );
    }
    assert_eq!(
        admin("GET", "clock", "").await["now_ms"].as_i64().unwrap(),
        before + 90_000
    );
    ok_call(addr, "ListPipelines", json!({})).await;
    let calls = admin("GET", "calls", "").await;
    assert_eq!(calls["counts"]["ListPipelines"], 1);
    // ?since=N: the calls from sequence number N on; the counts are of every call.
    ok_call(addr, "ListPipelines", json!({})).await;
    let later = admin("GET", "calls?since=1", "").await;
    assert_eq!(later["calls"].as_array().unwrap().len(), 1);
    assert_eq!(later["calls"][0]["seq"], 1);
    assert_eq!(later["counts"]["ListPipelines"], 2);
    // Each call above came on a connection of its own; the admin requests are not counted.
    assert_eq!(later["connections"], 2);
    let state = admin("GET", "state?pipeline=prod-web", "").await;
    assert_eq!(state["pipelines"].as_array().unwrap().len(), 1);
    let bad = admin("PUT", "faults", r#"{"nonsense": 1}"#).await;
    assert!(bad["error"].as_str().unwrap().contains("nonsense"));
    // POST reset keeps the fault plan; ?faults=true clears it too.
    admin(
        "PUT",
        "faults",
        r#"{"rules": [{"operation": "GetPipeline", "fault": "access_denied"}]}"#,
    )
    .await;
    admin("POST", "reset", "").await;
    let plan = admin("GET", "faults", "").await;
    assert_eq!(plan["rules"][0]["fault"], "access_denied");
    admin("POST", "reset?faults=true", "").await;
    let plan = admin("GET", "faults", "").await;
    assert!(plan["rules"].as_array().unwrap().is_empty());
}
