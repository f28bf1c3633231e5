//! Shared helpers: start an emulator on 127.0.0.1:0, build an SDK client, make raw calls.

use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;
use stopd_emulator::{Emulator, EmulatorConfig, Fixture, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fixture with one pipeline of each mode and a known layout (Source 10s, Build 60s+60s,
/// Deploy 300s).
pub const FIXTURE: &str = r#"{
  "pipelines": [
    { "name": "prod-web", "execution_mode": "PARALLEL", "tags": {"env": "prod", "team": "web"},
      "stages": [
        { "name": "Source", "actions": [ { "name": "Src", "category": "Source", "provider": "CodeStarSourceConnection", "duration": "10s" } ] },
        { "name": "Build", "actions": [ { "name": "Compile", "duration": "60s" }, { "name": "Test", "category": "Test", "duration": "60s" } ] },
        { "name": "Deploy", "actions": [ { "name": "Deploy", "category": "Deploy", "provider": "CodeDeploy", "duration": "300s" } ] }
      ],
      "executions": [
        { "status": "Succeeded", "started_ago": "3h", "duration": "430s" },
        { "status": "InProgress", "started_ago": "20s" }
      ] },
    { "name": "prod-api", "execution_mode": "QUEUED", "tags": {"env": "prod"} },
    { "name": "dev-api", "tags": {"env": "dev"} }
  ]
}"#;

pub struct Env {
    pub emulator: Emulator,
    pub server: ServerHandle,
    pub client: Client,
}

pub async fn start(fixture: &str) -> Env {
    start_with(EmulatorConfig::default(), fixture).await
}

pub async fn start_with(config: EmulatorConfig, fixture: &str) -> Env {
    let emulator = Emulator::new(config);
    emulator
        .seed(&Fixture::from_json(fixture).expect("fixture parses"))
        .expect("fixture loads");
    let server = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("binds");
    let client = client(&server.endpoint_url());
    Env {
        emulator,
        server,
        client,
    }
}

/// The official SDK pointed at the emulator, with the SDK's own retries off so each test sees
/// exactly what the emulator answered.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_codepipeline::Config::builder()
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
        .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// A raw awsJson1_1 call with a well-formed (unverified) SigV4 Authorization header:
/// (status, x-amzn-ErrorType header, parsed body).
pub async fn raw_call(
    addr: std::net::SocketAddr,
    target: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let auth = format!(
        "Authorization: {}\r\nX-Amz-Date: 20261128T090000Z\r\n",
        stopd_emulator::auth::example_authorization("20261128")
    );
    raw_call_with(addr, target, &auth, body).await
}

/// A raw awsJson1_1 call with these extra header lines (each ending in CRLF).
pub async fn raw_call_with(
    addr: std::net::SocketAddr,
    target: Option<&str>,
    headers: &str,
    body: &str,
) -> (u16, Option<String>, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let target_header = target
        .map(|t| format!("X-Amz-Target: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n{target_header}{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let error_type = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-amzn-errortype")
            .then(|| value.trim().to_string())
    });
    (
        status,
        error_type,
        serde_json::from_str(body).expect("JSON body"),
    )
}

pub fn target(op: &str) -> String {
    format!("CodePipeline_20150709.{op}")
}
