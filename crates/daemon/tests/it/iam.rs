//! `config/iam-policy.json` grants exactly the operations stopd calls: no more, no fewer
//! (CodePipeline's, SSM's GetCalendarState, and SQS's for the `[events]` queue).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

fn granted() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("config/iam-policy.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let mut out = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        for action in statement["Action"].as_array().unwrap() {
            let a = action.as_str().unwrap();
            // CodePipeline's operations, SSM's GetCalendarState for Change Calendars, and
            // SQS's for the event queue.
            let op = a
                .strip_prefix("codepipeline:")
                .or_else(|| {
                    a.strip_prefix("ssm:")
                        .filter(|op| *op == "GetCalendarState")
                })
                .or_else(|| a.strip_prefix("sqs:"))
                .expect("only codepipeline, sqs and ssm:GetCalendarState actions");
            assert!(!op.contains('*'), "no wildcards: {a}");
            out.insert(a.to_string());
        }
    }
    out
}

/// Every operation name passed to the engine's one call path, `.call("Operation", ...)`.
fn called_in_code() -> BTreeSet<String> {
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(&repo().join("crates/core/src"), &mut files);
    assert!(files.len() > 5, "crates/core/src was read: {files:?}");
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if file.ends_with("queue.rs") {
            // The event queue's SQS calls go out directly (no CodePipeline pacing), each
            // classified by `ApiError::from_sdk("Operation", ..)`.
            for piece in text.split("from_sdk(\"").skip(1) {
                out.insert(stopd_core::iam_action(piece.split('"').next().unwrap()));
            }
            assert_eq!(
                text.matches(".send()").count(),
                text.matches("from_sdk(\"").count(),
                "every SQS request is classified by `from_sdk(\"Operation\", ..)`"
            );
            continue;
        }
        for piece in text.split(".call(\"").skip(1) {
            out.insert(stopd_core::iam_action(piece.split('"').next().unwrap()));
        }
        // A request sent outside `.call` would escape this test: one send per call.
        assert_eq!(
            text.matches(".send()").count(),
            text.matches(".call(\"").count(),
            "every request goes through `.call(\"Operation\", ...)`"
        );
    }
    out
}

#[test]
fn the_policy_grants_what_the_code_calls() {
    let code = called_in_code();
    assert!(
        code.contains("codepipeline:StopPipelineExecution")
            && code.contains("sqs:ReceiveMessage")
            && code.len() >= 5,
        "{code:?}"
    );
    assert_eq!(granted(), code);
}

#[tokio::test]
async fn what_a_tagged_sweep_and_a_stop_call_is_granted() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", "[[freeze]]\nname = \"f\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\ntags = { env = \"prod\" }\n");
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let observed: BTreeSet<String> = env
        .emulator
        .calls()
        .into_iter()
        .map(|c| stopd_core::iam_action(&c.operation))
        .collect();
    let granted = granted();
    assert!(
        observed.is_subset(&granted),
        "called {observed:?}, granted {granted:?}"
    );
    assert!(
        observed.contains("codepipeline:ListTagsForResource")
            && observed.contains("codepipeline:StopPipelineExecution")
    );
}

/// Many accounts: stopd's own identity may assume the role (`config/iam-assume-role.json`),
/// each account's role trusts stopd's identity with an external id
/// (`config/iam-trust-policy.json`) and carries `config/iam-policy.json`.
#[test]
fn the_cross_account_policies_grant_assume_role_and_nothing_else() {
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(repo().join("config").join(name)).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let own = read("iam-assume-role.json");
    let statements = own["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Action"], "sts:AssumeRole");
    let resource = statements[0]["Resource"].as_str().unwrap();
    assert!(
        resource.starts_with("arn:aws:iam::") && resource.contains(":role/"),
        "{resource}"
    );

    let trust = read("iam-trust-policy.json");
    let t = &trust["Statement"].as_array().unwrap()[0];
    assert_eq!(t["Action"], "sts:AssumeRole");
    assert!(
        t["Principal"]["AWS"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );
    // The external id the example config's [[account]] uses.
    let external_id = t["Condition"]["StringEquals"]["sts:ExternalId"]
        .as_str()
        .unwrap();
    let example = std::fs::read_to_string(repo().join("config/stopd.example.toml")).unwrap();
    assert!(
        example.contains(&format!("external_id = \"{external_id}\"")),
        "the example [[account]] uses the trust policy's external id"
    );
    // stopd's code assumes roles through the SDK's AssumeRoleProvider only, and the only STS
    // call it makes is AssumeRole.
    let client = std::fs::read_to_string(repo().join("crates/core/src/client.rs")).unwrap();
    assert!(client.contains("AssumeRoleProvider::builder"));
    assert!(!client.contains("aws_sdk_sts"), "no other STS call");
}
