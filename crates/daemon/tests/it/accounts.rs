//! Many accounts and regions: `[[account]]` roles assumed through the emulator's STS, rules
//! that select accounts and regions, isolation of an account whose role is refused, and
//! sessions renewed as they expire.

use std::time::Duration;

use chrono::Utc;
use stopd_emulator::{Emulator, Fixture};

use crate::common::{Env, assert_ok, fleet, rfc, text, wait_for};

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// Two accounts (`payments-prod`, `search-prod`) in two regions, each world running one
/// pipeline named `web` (the same name everywhere: names are per account and region).
pub(crate) async fn two_accounts(session: Option<Duration>) -> (Env, Vec<String>) {
    let env = Env::new(r#"{"pipelines": []}"#).await;
    let regions: Vec<String> = REGIONS.iter().map(ToString::to_string).collect();
    let roles = env
        .emulator
        .add_accounts(2, &regions, None, Some("stopd-ext"), session);
    for account in ["100000000001", "100000000002"] {
        for region in REGIONS {
            env.emulator
                .world_of(account, region)
                .seed(&Fixture::from_json(&fleet(&[("web", "prod")])).unwrap())
                .unwrap();
        }
    }
    (env, roles)
}

/// The policy file: both accounts in both regions, then `rules`.
pub(crate) fn write(env: &Env, roles: &[String], daemon_extra: &str, rules: &str) {
    let url = env.server.endpoint_url();
    let text = format!(
        r#"[aws]
region = "us-east-1"
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[daemon]
database = "{db}"
{daemon_extra}

[[account]]
name = "payments-prod"
role_arn = "{a}"
external_id = "stopd-ext"
regions = ["eu-west-1", "us-east-1"]

[[account]]
name = "search-prod"
role_arn = "{b}"
external_id = "stopd-ext"
regions = ["eu-west-1", "us-east-1"]

{rules}
"#,
        db = env.db().display(),
        a = roles[0],
        b = roles[1],
    );
    std::fs::write(env.config_path(), text).unwrap();
}

/// A one-off freeze open now.
fn freeze(name: &str, selectors: &str) -> String {
    let now = Utc::now();
    format!(
        "[[freeze]]\nname = \"{name}\"\nstart = \"{}\"\nend = \"{}\"\n{selectors}\n",
        rfc(now - chrono::Duration::hours(1)),
        rfc(now + chrono::Duration::hours(1))
    )
}

pub(crate) fn status_of(emulator: &Emulator, account: &str, region: &str) -> String {
    let w = emulator.world_of(account, region);
    w.executions("web").last().unwrap().status.to_string()
}

#[tokio::test]
async fn a_rule_selecting_one_account_and_region_stops_there_only_and_the_audit_says_where() {
    let (env, roles) = two_accounts(None).await;
    let hook = crate::notify::Receiver::start(false).await;
    let rules = format!(
        "{}\n{}",
        freeze(
            "payments-eu",
            "accounts = [\"payments-*\"]\nregions = [\"eu-*\"]",
        ),
        hook.table(&["stopped"])
    );
    write(&env, &roles, "", &rules);
    // `check` says where the policy is enforced, and where each rule applies.
    let check = env.stopd(&["check"]).await;
    assert_ok(&check);
    let said = text(&check.stdout);
    assert!(
        said.contains("2 account(s), 4 account-region pair(s)"),
        "{said}"
    );
    assert!(
        said.contains("payments-prod in eu-west-1, us-east-1"),
        "{said}"
    );
    assert!(
        said.contains("; in accounts payments-*; in regions eu-*"),
        "{said}"
    );
    let out = env.stopd(&["run", "--once"]).await;
    assert_ok(&out);
    // The notification says where.
    let sent = hook.events("stopped");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["account"], "payments-prod");
    assert_eq!(sent[0]["region"], "eu-west-1");
    let message = sent[0]["message"].as_str().unwrap();
    assert!(message.contains("account payments-prod"), "{message}");
    assert_eq!(
        status_of(&env.emulator, "100000000001", "eu-west-1"),
        "Stopping"
    );
    for (account, region) in [
        ("100000000001", "us-east-1"),
        ("100000000002", "eu-west-1"),
        ("100000000002", "us-east-1"),
    ] {
        assert_eq!(
            status_of(&env.emulator, account, region),
            "InProgress",
            "{account} {region} is not selected"
        );
        // Every account and region was read.
        let calls = env.emulator.world_of(account, region).call_counts();
        assert!(
            calls.get("ListPipelines").copied().unwrap_or(0) >= 1,
            "{account} {region}: {calls:?}"
        );
    }
    // One session per account, shared by its regions.
    let assumed = env.emulator.accounts().assume_role_calls;
    assert!(
        (2..4).contains(&assumed),
        "{assumed} AssumeRole calls for 2 accounts"
    );
    // The ambient identity's own world was never swept: only [[account]]s are.
    assert_eq!(env.emulator.call_counts().get("ListPipelines"), None);

    let rows = env.report(&[]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["account"], "payments-prod");
    assert_eq!(rows[0]["region"], "eu-west-1");
    assert_eq!(rows[0]["outcome"], "stopped");
    assert!(env.report(&["--account", "search-*"]).await.is_empty());
    assert_eq!(env.report(&["--region", "eu-*"]).await.len(), 1);
    // The wide table shows where.
    let table = text(&env.stopd(&["report", "--wide"]).await.stdout);
    assert!(
        table.contains("payments-prod") && table.contains("eu-west-1"),
        "{table}"
    );
    // `plan` reads every account and region and says where each stop would be.
    let plan = env.stopd(&["plan", "--format", "json"]).await;
    assert_ok(&plan);
    let planned: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned = planned.as_array().unwrap();
    assert!(
        planned
            .iter()
            .all(|p| p["account"] == "payments-prod" && p["region"] == "eu-west-1"),
        "{planned:?}"
    );
}

#[tokio::test]
async fn an_account_whose_role_is_refused_is_reported_and_the_others_are_enforced() {
    let (env, roles) = two_accounts(None).await;
    write(&env, &roles, "", &freeze("everywhere", ""));
    assert!(env.emulator.set_role_denied(&roles[1], true));
    let out = env.stopd(&["run", "--once"]).await;
    // Not a good sweep: one account was not enforced (exit 1), and it says which.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("search-prod"), "{stderr}");
    for region in REGIONS {
        assert_eq!(status_of(&env.emulator, "100000000001", region), "Stopping");
        assert_eq!(
            status_of(&env.emulator, "100000000002", region),
            "InProgress"
        );
    }
    let rows = env.report(&[]).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["account"] == "payments-prod" && r["outcome"] == "stopped")
    );
    // The sweep record names the account that could not be swept.
    let sweeps = env.report(&["--sweeps"]).await;
    let error = sweeps.last().unwrap()["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.contains("search-prod"), "{error}");
    assert!(
        error.contains("sts:AssumeRole"),
        "names the permission: {error}"
    );
    // And `status` shows it.
    let status = env.stopd(&["status", "--format", "json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let last = status["last_sweep_error"].as_str().unwrap_or("");
    assert!(last.contains("search-prod"), "{status}");

    // Allowed again: the next run enforces it too.
    env.emulator.set_role_denied(&roles[1], false);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    for region in REGIONS {
        assert_eq!(status_of(&env.emulator, "100000000002", region), "Stopping");
    }
}

#[tokio::test]
async fn sessions_that_expire_are_renewed_by_a_running_daemon() {
    // Credentials that last 2 s, shorter than the SDK's 10 s refresh margin: every call needs
    // a renewed session, and a daemon sweeping every second never sends an expired one.
    let (env, roles) = two_accounts(Some(Duration::from_secs(2))).await;
    write(
        &env,
        &roles,
        "schedule = \"* * * * * *\"",
        "[[timeout]]\nname = \"day\"\nmax_duration = \"24h\"\n",
    );
    let mut child = env.spawn(&["run"]);
    let swept = wait_for(Duration::from_secs(20), || {
        env.emulator
            .world_of("100000000002", "us-east-1")
            .call_counts()
            .get("ListPipelines")
            .copied()
            .unwrap_or(0)
            >= 3
    })
    .await;
    crate::common::signal(&child, "TERM");
    let _ = child.wait();
    assert!(swept, "three sweeps of every account");
    for account in ["100000000001", "100000000002"] {
        for region in REGIONS {
            let calls = env.emulator.world_of(account, region).calls();
            assert!(
                calls.iter().all(|c| c.status == 200),
                "{account} {region}: {calls:?}"
            );
        }
    }
    assert!(
        env.emulator.accounts().assume_role_calls > 4,
        "sessions were renewed, not assumed once per account and region"
    );
}

/// `freeze add --account --region` freezes there only (the previews reads and counts only
/// there), is kept in the database and listed with its place; a glob matching no configured
/// account is refused with exit 2, naming what is configured.
#[tokio::test]
async fn an_adhoc_freeze_of_one_account_and_region_stops_there_only() {
    let (env, roles) = two_accounts(None).await;
    write(&env, &roles, "", "");
    let out = env
        .stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "web",
            "--account",
            "payment-prod",
            "--for",
            "1h",
            "--reason",
            "INC-5",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--account payment-prod")
            && err.contains("configured: payments-prod/eu-west-1"),
        "{err}"
    );
    let out = env
        .stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "web",
            "--account",
            "search-*",
            "--region",
            "us-east-1",
            "--for",
            "1h",
            "--reason",
            "INC-5",
        ])
        .await;
    assert_ok(&out);
    let said = text(&out.stdout);
    assert!(
        said.contains("1 pipelines frozen\n    account search-prod in us-east-1: web\n")
            && said.contains("1 running executions stopped")
            && said.contains("in account search-* in region us-east-1"),
        "{said}"
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(
        status_of(&env.emulator, "100000000002", "us-east-1"),
        "Stopping"
    );
    for (account, region) in [
        ("100000000001", "eu-west-1"),
        ("100000000001", "us-east-1"),
        ("100000000002", "eu-west-1"),
    ] {
        assert_eq!(
            status_of(&env.emulator, account, region),
            "InProgress",
            "{account} {region} is not frozen"
        );
    }
    let out = env.stopd(&["freeze", "list", "--format", "json"]).await;
    assert_ok(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["account"], "search-*", "{list}");
    assert_eq!(list[0]["region"], "us-east-1", "{list}");
    // `status` says where it applies too: it does not read as a freeze of every account.
    let status = text(&env.stopd(&["status"]).await.stdout);
    assert!(
        status.contains("in account search-* in region us-east-1"),
        "{status}"
    );
    assert_ok(&env.stopd(&["verify"]).await);
}

/// With `[[account]]`s, `status` shows each account and region's last sweep and its error, so
/// the one whose role is refused is named there, not only in the sweep log.
#[tokio::test]
async fn status_shows_each_accounts_last_sweep_and_its_error() {
    let (env, roles) = two_accounts(None).await;
    write(&env, &roles, "", &freeze("everywhere", ""));
    assert!(env.emulator.set_role_denied(&roles[1], true));
    assert_eq!(env.stopd(&["run", "--once"]).await.status.code(), Some(1));
    let out = env.stopd(&["status"]).await;
    let table = text(&out.stdout);
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("ACCOUNT"))
        .collect();
    assert_eq!(rows.len(), 5, "{table}");
    for region in REGIONS {
        let ok = rows
            .iter()
            .find(|l| l.starts_with("payments-prod") && l.contains(region))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(ok.ends_with("  ok"), "{ok}");
        let failed = rows
            .iter()
            .find(|l| l.starts_with("search-prod") && l.contains(region))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(
            failed.contains("FAILED: ") && failed.contains("sts:AssumeRole"),
            "{failed}"
        );
        assert!(failed.contains("(never ok)"), "{failed}");
    }
    // Allowed again: ok, in JSON too.
    env.emulator.set_role_denied(&roles[1], false);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let out = env.stopd(&["status", "--format", "json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accounts = status["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 4, "{status}");
    assert!(
        accounts
            .iter()
            .all(|a| a["ok"] == true && a["last_ok_at"].is_string()),
        "{status}"
    );
    // `--tz`: every time of the per-account table in that zone, the last good one too.
    assert!(env.emulator.set_role_denied(&roles[1], true));
    assert_eq!(env.stopd(&["run", "--once"]).await.status.code(), Some(1));
    let out = env.stopd(&["status", "--tz", "Asia/Kolkata"]).await;
    let table = text(&out.stdout);
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("ACCOUNT"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for row in &rows {
        assert!(row.contains("+05:30 ("), "{row}");
        assert!(!row.contains("Z ("), "{row}");
    }
    let failed = rows
        .iter()
        .find(|l| l.starts_with("search-prod"))
        .unwrap_or_else(|| panic!("{table}"));
    let last_ok = failed.split("(last ok ").nth(1).unwrap_or("");
    assert!(last_ok.ends_with("+05:30)"), "{failed}");
}
