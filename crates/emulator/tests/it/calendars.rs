//! SSM `GetCalendarState`: calendars and their transitions from the fixture (and the admin
//! API), per account; unknown documents and ARNs of another account are `InvalidDocument`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use stopd_emulator::{Clock, EmulatorConfig, Fixture, FixtureError};

use crate::common::{raw_call_with, start_with};

/// 2027-03-26T12:00:00Z: the manual clock's start.
const NOW_MS: i64 = 1_806_494_400_000;

/// A signature scoped to SSM in `region` (the emulator checks its shape, not its value).
fn ssm_auth(key: &str, region: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={key}/20270326/{region}/ssm/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}\r\nX-Amz-Date: 20270326T120000Z\r\n",
        "0".repeat(64)
    )
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn state(
    addr: std::net::SocketAddr,
    region: &str,
    names: &[&str],
) -> (u16, Option<String>, Value) {
    raw_call_with(
        addr,
        Some("AmazonSSM.GetCalendarState"),
        &ssm_auth("AKIDEXAMPLE", region),
        &json!({ "CalendarNames": names }).to_string(),
    )
    .await
}

/// An admin request; its JSON answer.
async fn admin(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "{method} /_emulator/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

const FIXTURE: &str = r#"{
  "pipelines": [ { "name": "prod-web" } ],
  "calendars": {
    "prod-changes": [ { "starts_in": "2d", "duration": "1d" }, { "started_ago": "1h", "duration": "3h" } ],
    "later": [ { "starts_in": "30m", "duration": "1h" } ]
  }
}"#;

#[tokio::test]
async fn fixture_calendars_answer_closed_and_open_with_their_next_transitions() {
    let env = start_with(
        EmulatorConfig {
            clock: Clock::manual(NOW_MS),
            ..EmulatorConfig::default()
        },
        FIXTURE,
    )
    .await;
    let addr = env.server.addr();
    let hour = 3_600_000;
    let (status, err, v) = state(addr, "us-east-1", &["prod-changes"]).await;
    assert_eq!(status, 200, "{err:?} {v}");
    assert_eq!(v["State"], "CLOSED");
    assert_eq!(v["AtTime"], iso(NOW_MS));
    assert_eq!(v["NextTransitionTime"], iso(NOW_MS + 2 * hour), "{v}");
    let (_, _, v) = state(addr, "us-east-1", &["later"]).await;
    assert_eq!(v["State"], "OPEN");
    assert_eq!(v["NextTransitionTime"], iso(NOW_MS + hour / 2));
    // Several names: CLOSED if any is, the earliest transition of all.
    let (_, _, v) = state(addr, "us-east-1", &["later", "prod-changes"]).await;
    assert_eq!(v["State"], "CLOSED");
    assert_eq!(v["NextTransitionTime"], iso(NOW_MS + hour / 2));
    // The transitions happen on the emulator's clock: after the first interval ends, the
    // calendar is OPEN until the second begins.
    env.emulator
        .lock()
        .clock
        .advance(std::time::Duration::from_secs(3 * 3600));
    let (_, _, v) = state(addr, "us-east-1", &["prod-changes"]).await;
    assert_eq!(v["State"], "OPEN");
    assert_eq!(v["NextTransitionTime"], iso(NOW_MS + 48 * hour));
    // A document ARN of this account and region names the same calendar.
    let arn = "arn:aws:ssm:us-east-1:123456789012:document/prod-changes";
    let (status, _, v) = state(addr, "us-east-1", &[arn]).await;
    assert_eq!((status, v["State"].as_str()), (200, Some("OPEN")));
}

#[tokio::test]
async fn an_unknown_calendar_or_an_arn_elsewhere_is_invalid_document() {
    let env = start_with(
        EmulatorConfig {
            clock: Clock::manual(NOW_MS),
            ..EmulatorConfig::default()
        },
        FIXTURE,
    )
    .await;
    let addr = env.server.addr();
    for (region, name) in [
        ("us-east-1", "missing"),
        // Another account's document: sharing across accounts is not modelled.
        (
            "us-east-1",
            "arn:aws:ssm:us-east-1:999988887777:document/prod-changes",
        ),
        // This account's, but in a region the request was not signed for.
        (
            "us-east-1",
            "arn:aws:ssm:eu-west-1:123456789012:document/prod-changes",
        ),
    ] {
        let (status, err, v) = state(addr, region, &[name]).await;
        assert_eq!(status, 400, "{name}: {v}");
        assert_eq!(err.as_deref(), Some("InvalidDocument"), "{name}: {v}");
    }
}

#[tokio::test]
async fn each_account_has_its_own_calendars_from_the_fixture_or_the_admin_api() {
    let env = start_with(
        EmulatorConfig {
            clock: Clock::manual(NOW_MS),
            ..EmulatorConfig::default()
        },
        r#"{"pipelines": []}"#,
    )
    .await;
    env.emulator
        .add_accounts(1, &["eu-west-1".to_string()], None, None, None);
    let account = env.emulator.world_of("100000000001", "eu-west-1");
    account.seed(&Fixture::from_json(FIXTURE).unwrap()).unwrap();
    assert!(account.lock().calendars.contains_key("prod-changes"));
    assert!(
        env.emulator.lock().calendars.is_empty(),
        "the root world has none"
    );
    let addr = env.server.addr();
    let (status, err, _) = state(addr, "us-east-1", &["prod-changes"]).await;
    assert_eq!(
        (status, err.as_deref()),
        (400, Some("InvalidDocument")),
        "ambient credentials read the root world's calendars"
    );
    // The admin API sets one account's calendars; a fixture without `calendars` keeps them.
    let body = json!({ "freeze": [[NOW_MS - 1000, NOW_MS + 1000]] }).to_string();
    let answer = admin(
        addr,
        "PUT",
        "calendars?account=100000000001&region=eu-west-1",
        &body,
    )
    .await;
    assert_eq!(answer["calendars"], 1, "{answer}");
    assert_eq!(
        account.lock().calendars.keys().collect::<Vec<_>>(),
        ["freeze"]
    );
    account
        .seed(&Fixture::from_json(r#"{"pipelines": []}"#).unwrap())
        .unwrap();
    assert_eq!(
        account.lock().calendars.keys().collect::<Vec<_>>(),
        ["freeze"]
    );
}

#[test]
fn a_fixture_calendar_the_service_could_not_have_is_refused() {
    for (calendar, why) in [
        (
            r#""prod": [{"started_ago": "1h", "starts_in": "1h", "duration": "1h"}]"#,
            "exactly one of started_ago and starts_in",
        ),
        (
            r#""prod": [{"duration": "1h"}]"#,
            "exactly one of started_ago and starts_in",
        ),
        (
            r#""prod": [{"starts_in": "1h", "duration": "0s"}]"#,
            "duration must be positive",
        ),
        (
            r#""a b": [{"starts_in": "1h", "duration": "1h"}]"#,
            "SSM's document names",
        ),
    ] {
        let fixture = Fixture::from_json(&format!(
            r#"{{"pipelines": [], "calendars": {{{calendar}}}}}"#
        ))
        .unwrap();
        let err = fixture.build_calendars(NOW_MS).unwrap_err();
        assert!(
            matches!(err, FixtureError::Calendar { .. }) && err.to_string().contains(why),
            "{calendar}: {err}"
        );
    }
}
