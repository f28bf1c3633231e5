//! `[metrics]` of the running daemon, scraped as Prometheus scrapes it.

use std::time::{Duration, Instant};

use crate::common::*;

/// A schedule that never fires during a test.
const RARE: &str = "schedule = \"0 0 1 1 *\"";

/// `GET path` on 127.0.0.1:`port`: the body, or `None` if nothing answers yet.
async fn get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Scrapes until `done` holds for the text (up to 15 s); the last text.
async fn scrape_until(port: u16, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = get(port, "/metrics").await.unwrap_or_default();
        if done(&text) || started.elapsed() > Duration::from_secs(15) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Issue 25 item 6: before any stop failed, `stopd_stops_total{outcome="failed"}` (and every
/// other series of a closed vocabulary) is exported at 0, so that
/// `increase(...[15m]) > 0` sees the first failure; a reload's new rule's series too.
#[tokio::test]
async fn every_closed_label_set_is_scraped_at_zero_before_the_first_failure() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let port = free_port();
    let daemon = format!("{RARE}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"");
    // A freeze that is not in force, and a timeout the execution (5 minutes old) is within.
    let rules = "[[freeze]]\nname = \"weekend\"\nstart = \"2099-01-01T00:00:00Z\"\nend = \"2099-01-02T00:00:00Z\"\n\n\
                 [[timeout]]\nname = \"two-hours\"\nmax_duration = \"2h\"\n";
    env.write_config(&daemon, rules);
    let child = env.spawn(&["run"]);
    let ok_sweep = "stopd_sweeps_total{result=\"ok\"} 1";
    let text = scrape_until(port, |t| t.contains(ok_sweep)).await;
    assert!(text.contains(ok_sweep), "the start-up sweep: {text}");
    let mut want: Vec<String> = Vec::new();
    for rule in ["weekend", "two-hours"] {
        for outcome in [
            "stopped",
            "already_stopping",
            "not_stoppable",
            "pipeline_not_found",
            "rejected",
            "failed",
            "dry_run",
        ] {
            want.push(format!(
                "stopd_stops_total{{rule=\"{rule}\",outcome=\"{outcome}\"}} 0"
            ));
        }
    }
    want.push("stopd_sweeps_total{result=\"failed\"} 0".into());
    want.push("stopd_policy_reloads_total{result=\"ok\"} 0".into());
    want.push("stopd_policy_reloads_total{result=\"refused\"} 0".into());
    want.push(
        "stopd_account_sweeps_total{account=\"default\",region=\"us-east-1\",result=\"failed\"} 0"
            .into(),
    );
    want.push(
        "stopd_account_stops_total{account=\"default\",region=\"us-east-1\",outcome=\"failed\"} 0"
            .into(),
    );
    for op in [
        "StopPipelineExecution",
        "ListPipelines",
        "ListPipelineExecutions",
        "GetPipelineState",
        "DisableStageTransition",
        "EnableStageTransition",
    ] {
        want.push(format!("stopd_throttles_total{{operation=\"{op}\"}} 0"));
        want.push(format!(
            "stopd_api_calls_total{{operation=\"{op}\",result=\"throttled\"}} 0"
        ));
    }
    want.push(
        "stopd_api_calls_total{operation=\"StopPipelineExecution\",result=\"answered\"} 0".into(),
    );
    for w in &want {
        assert!(text.lines().any(|l| l == w), "no {w} in\n{text}");
    }

    // A reload that adds a rule: its series start at 0 too.
    env.write_config(
        &daemon,
        &format!("{rules}\n[[timeout]]\nname = \"one-day\"\nmax_duration = \"1d\"\n"),
    );
    signal(&child, "HUP");
    let reloaded = "stopd_policy_reloads_total{result=\"ok\"} 1";
    let text = scrape_until(port, |t| t.contains(reloaded)).await;
    assert!(text.contains(reloaded), "{text}");
    let new_rule = "stopd_stops_total{rule=\"one-day\",outcome=\"failed\"} 0";
    assert!(
        text.lines().any(|l| l == new_rule),
        "no {new_rule} in\n{text}"
    );
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
}

/// Accounts and regions that a reload adds (`[[account]]`) are exported at 0 too, as those of
/// the start are: `increase()` sees their first failure.
#[tokio::test]
async fn accounts_a_reload_adds_are_scraped_at_zero() {
    let (env, roles) = crate::accounts::two_accounts(None).await;
    let port = free_port();
    let url = env.server.endpoint_url();
    let account = |name: &str, role: &str| {
        format!(
            "[[account]]\nname = \"{name}\"\nrole_arn = \"{role}\"\nexternal_id = \"stopd-ext\"\nregions = [\"eu-west-1\", \"us-east-1\"]\n"
        )
    };
    let write = |accounts: &str| {
        std::fs::write(
            env.config_path(),
            format!(
                "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n\n\
                 [daemon]\ndatabase = \"{}\"\n{RARE}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{accounts}",
                env.db().display()
            ),
        )
        .unwrap();
    };
    write(&account("payments-prod", &roles[0]));
    let child = env.spawn(&["run"]);
    let ok_sweep = "stopd_sweeps_total{result=\"ok\"} 1";
    let text = scrape_until(port, |t| t.contains(ok_sweep)).await;
    assert!(text.contains(ok_sweep), "the start-up sweep: {text}");
    let added = |region: &str| {
        format!(
            "stopd_account_sweeps_total{{account=\"search-prod\",region=\"{region}\",result=\"failed\"}} 0"
        )
    };
    assert!(!text.contains("search-prod"), "{text}");

    write(&format!(
        "{}\n{}",
        account("payments-prod", &roles[0]),
        account("search-prod", &roles[1])
    ));
    signal(&child, "HUP");
    let reloaded = "stopd_policy_reloads_total{result=\"ok\"} 1";
    let text = scrape_until(port, |t| t.contains(reloaded)).await;
    assert!(text.contains(reloaded), "{text}");
    for region in ["eu-west-1", "us-east-1"] {
        let want = added(region);
        assert!(text.lines().any(|l| l == want), "no {want} in\n{text}");
        let stops = format!(
            "stopd_account_stops_total{{account=\"search-prod\",region=\"{region}\",outcome=\"failed\"}} 0"
        );
        assert!(text.lines().any(|l| l == stops), "no {stops} in\n{text}");
    }
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
}
