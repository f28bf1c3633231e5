//! The auditor's commands through the binary: `verify`, and later `report --events` and
//! `report --coverage`.

use sqlx::Connection;

use crate::common::*;

/// Runs `sql` on the audit database as an intruder with the sqlite3 shell would.
pub async fn tamper(env: &Env, sql: &str) {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(env.db())
        .foreign_keys(false);
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn verify_prints_the_head_of_an_intact_log_and_names_a_deleted_stop() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config("", "");
    let a = active(&env, "prod-a");
    assert_ok(
        &env.stopd(&[
            "stop",
            "--pipeline",
            "prod-a",
            "--execution",
            &a,
            "--reason",
            "INC-1",
        ])
        .await,
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);
    let said = text(&out.stdout);
    assert!(
        said.starts_with("audit log intact: 4 records, head 4 "),
        "{said}"
    );

    // The issue's own attack: drop the trigger, delete the stop.
    tamper(
        &env,
        "DROP TRIGGER stops_append_only_d; DELETE FROM stops WHERE id = 1",
    )
    .await;
    let out = env.stopd(&["verify"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("TAMPERED: record 1 (stops id 1) was removed"),
        "{said}"
    );
    assert!(
        said.contains("table stops has lost its append-only trigger (BEFORE DELETE)"),
        "{said}"
    );
}

const FREEZE_NOW: &str = r#"
[[freeze]]
name = "freeze-now"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
pipelines = ["prod-*"]
"#;

/// Starts `stopd run` and waits until its first sweep has finished (a row in sweep_results
/// written by it: its pid).
async fn started(env: &Env) -> std::process::Child {
    let sweeps = || {
        let out = env
            .command(&["report", "--sweeps", "--format", "json"])
            .output()
            .unwrap();
        // No database yet: no sweep.
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
    };
    let before = sweeps().len();
    let child = env.spawn(&["run"]);
    let swept = wait_for(std::time::Duration::from_secs(20), || {
        let rows = sweeps();
        rows.len() > before && rows.last().is_some_and(|r| !r["finished_at"].is_null())
    })
    .await;
    assert!(swept, "the daemon did not sweep");
    child
}

/// A daemon killed (SIGKILL) is found at the next start and recorded as an unclean stop at its
/// last sign of life; a SIGTERM is a clean stop; each start names the policy's hash.
#[tokio::test]
async fn a_killed_daemon_is_an_unclean_stop_and_a_terminated_one_a_clean_stop() {
    let env = Env::new(&fleet(&[("dev-a", "dev")])).await;
    env.write_config("", FREEZE_NOW);
    let mut first = started(&env).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let second = started(&env).await;
    // A refused reload, then a good one.
    // Read with a copy of the good file: the daemon's own file is broken for a while.
    let reader = env.dir.path().join("reader.toml");
    std::fs::copy(env.config_path(), &reader).unwrap();
    let events_now = || {
        let out = env
            .command(&[
                "--config",
                path_str(&reader),
                "report",
                "--events",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(env.config_path(), format!("{good}\n[[freeze]]\nname = 3\n")).unwrap();
    signal(&second, "HUP");
    let limit = std::time::Duration::from_secs(20);
    assert!(
        wait_for(limit, || events_now().len() == 4).await,
        "no refused reload"
    );
    env.write_config("", &format!("{FREEZE_NOW}\n# edited\n"));
    signal(&second, "HUP");
    assert!(
        wait_for(limit, || events_now().len() == 5).await,
        "no reload"
    );
    signal(&second, "TERM");
    assert_ok(&wait_exit(second, std::time::Duration::from_secs(20)).await);

    let events = env.report(&["--events"]).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["start", "unclean_stop", "start", "reload", "reload", "stop"],
        "{events:#?}"
    );
    assert_eq!(events[3]["result"], "refused");
    assert!(events[3]["policy_hash"].is_null());
    assert_eq!(events[4]["result"], "ok");
    let edited = sha256_hex(&std::fs::read(env.config_path()).unwrap());
    assert_eq!(events[4]["policy_hash"], edited.as_str());
    assert_eq!(
        events[0]["policy_hash"],
        sha256_hex(good.as_bytes()).as_str()
    );
    assert_eq!(events[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(events[1]["pid"], events[0]["pid"]);
    assert_ne!(events[2]["pid"], events[0]["pid"]);
    // The unclean stop is dated at the first run's last sign of life, before the restart.
    assert!(events[1]["at"].as_str() < events[2]["at"].as_str());
    assert_ok(&env.stopd(&["verify"]).await);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The issue's case: a daemon killed during a freeze and started again shows a `not_running`
/// gap from its last sign of life to the restart, and `--fail-on-gap` exits 1.
#[tokio::test]
async fn a_killed_and_restarted_daemon_shows_a_not_running_gap_during_a_freeze() {
    let env = Env::new(&fleet(&[("dev-a", "dev")])).await;
    env.write_config("", FREEZE_NOW);
    let since = rfc(chrono::Utc::now() - chrono::Duration::seconds(1));
    let mut first = started(&env).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let second = started(&env).await;

    let events = env.report(&["--events"]).await;
    let (died, back) = (&events[1], &events[2]);
    assert_eq!(died["event"], "unclean_stop");
    let coverage = env.report(&["--coverage", "--since", &since]).await;
    assert_eq!(coverage.len(), 1, "{coverage:#?}");
    let w = &coverage[0];
    assert_eq!(w["rule"], "freeze-now");
    assert_eq!(w["window_start"].as_str().unwrap()[..19], since[..19]);
    assert!(w["watched_seconds"].as_f64().unwrap() > 0.0, "{w:#?}");
    let gaps = w["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{w:#?}");
    assert_eq!(gaps[0]["cause"], "not_running");
    assert_eq!(gaps[0]["from"], died["at"]);
    assert_eq!(gaps[0]["to"], back["at"]);

    let out = env
        .stopd(&["report", "--coverage", "--since", &since, "--fail-on-gap"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("not_running"),
        "{}",
        text(&out.stdout)
    );
    signal(&second, "TERM");
    assert_ok(&wait_exit(second, std::time::Duration::from_secs(20)).await);
}

/// With `[audit]`, the daemon signs digests (at start and at shutdown); `verify --digests`
/// accepts them, and finds the log cut short once the last records are gone.
#[tokio::test]
async fn the_daemon_signs_digests_and_verify_finds_a_log_cut_short() {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let env = Env::new(&fleet(&[("dev-a", "dev")])).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let private = env.dir.path().join("digest-key.pem");
    let public = env.dir.path().join("digest-key.pub.pem");
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let digests = env.dir.path().join("digests");
    env.write_config(
        "",
        &format!(
            "[audit]\ndigest_dir = \"{}\"\nsigning_key = \"{}\"\n{FREEZE_NOW}",
            digests.display(),
            private.display()
        ),
    );
    let daemon = started(&env).await;
    signal(&daemon, "TERM");
    assert_ok(&wait_exit(daemon, std::time::Duration::from_secs(20)).await);
    let files = std::fs::read_dir(&digests).unwrap().count();
    assert!(files >= 2, "{files} digest files");
    let verify = [
        "verify",
        "--digests",
        path_str(&digests),
        "--public-key",
        path_str(&public),
    ];
    let out = env.stopd(&verify).await;
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("signed and consistent"),
        "{}",
        text(&out.stdout)
    );

    // Someone removes the clean stop, and its chain record: the chain still holds.
    tamper(
        &env,
        "DROP TRIGGER lifecycle_events_append_only_d; DROP TRIGGER audit_chain_append_only_d; \
         DELETE FROM audit_chain WHERE seq = (SELECT MAX(seq) FROM audit_chain); \
         DELETE FROM lifecycle_events WHERE event = 'stop'",
    )
    .await;
    let out = env.stopd(&verify).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("the log was cut short"),
        "{}",
        text(&out.stdout)
    );
}

/// CSV carries every field of the JSON records, for every audit listing; --tz shows table and
/// CSV times in a zone; bare dates are read in [defaults] timezone.
#[tokio::test]
async fn csv_carries_every_json_field_and_times_read_and_show_in_a_zone() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    let zone = "[defaults]\ntimezone = \"Pacific/Kiritimati\"\n";
    env.write_config("", &format!("{zone}{FREEZE_NOW}"));
    let a = active(&env, "prod-a");
    let stop = [
        "stop",
        "--pipeline",
        "prod-a",
        "--execution",
        &a,
        "--reason",
        "INC-1",
    ];
    assert_ok(&env.stopd(&stop).await);
    let daemon = started(&env).await;
    signal(&daemon, "TERM");
    assert_ok(&wait_exit(daemon, std::time::Duration::from_secs(20)).await);
    let add = [
        "exempt",
        "add",
        "--pipeline",
        "prod-a",
        "--for",
        "1h",
        "--reason",
        "x",
    ];
    assert_ok(&env.stopd(&add).await);

    for listing in [
        &["report"][..],
        &["report", "--sweeps"],
        &["report", "--events"],
        &["report", "--coverage", "--since", "1h"],
        &["exempt", "list"],
    ] {
        let json = env.stopd(&[listing, &["--format", "json"]].concat()).await;
        assert_ok(&json);
        let records: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
        let fields: Vec<&String> = records[0].as_object().unwrap().keys().collect();
        let csv = env.stopd(&[listing, &["--format", "csv"]].concat()).await;
        let csv = text(&csv.stdout);
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let missing: Vec<_> = fields
            .iter()
            .filter(|f| !header.contains(&f.as_str()))
            .collect();
        assert!(missing.is_empty(), "{listing:?}: CSV lacks {missing:?}");
    }

    // A bare date is midnight in Kiritimati (UTC+14): 10:00 UTC the day before.
    let today = (chrono::Utc::now() + chrono::Duration::hours(14)).date_naive();
    let day = |n: i64| (today - chrono::Duration::days(n)).to_string();
    let coverage = env
        .report(&["--coverage", "--since", &day(2), "--until", &day(1)])
        .await;
    assert_eq!(coverage.len(), 1, "{coverage:?}");
    let start = format!("{}T10:00:00.000Z", day(3));
    assert_eq!(coverage[0]["window_start"], start.as_str());
    // --tz: the same instant, shown in the zone (JSON stays in UTC).
    let csv = env
        .stopd(&[
            "report",
            "--coverage",
            "--since",
            &day(2),
            "--until",
            &day(1),
            "--format",
            "csv",
            "--tz",
            "Pacific/Kiritimati",
        ])
        .await;
    let local = format!("{}T00:00:00.000+14:00", day(2));
    assert!(text(&csv.stdout).contains(&local), "{}", text(&csv.stdout));
}

/// The x of an instant on the HTML timeline (as `html::x_of`: 180 px of labels, 1000 px wide).
fn x_of(t: &str, since: &str, until: &str) -> f64 {
    let p = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis() as f64
    };
    180.0 + ((p(t) - p(since)) / (p(until) - p(since))).clamp(0.0, 1.0) * (1000.0 - 180.0 - 10.0)
}

/// The value of attribute `name` in an HTML tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let from = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    &tag[from..from + tag[from..].find('"').unwrap()]
}

/// `report --format html`: one page with nothing to fetch; each stop's mark and each gap are
/// where the data says; in headless Chromium (where installed) the page renders, not blank.
#[tokio::test]
async fn the_html_report_is_self_contained_and_its_marks_are_where_the_data_says() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("dev-a", "dev")])).await;
    env.write_config("", FREEZE_NOW);
    let since = rfc(chrono::Utc::now() - chrono::Duration::minutes(10));
    let mut first = started(&env).await; // stops prod-a under the freeze
    first.kill().unwrap();
    first.wait().unwrap();
    let second = started(&env).await;
    signal(&second, "TERM");
    assert_ok(&wait_exit(second, std::time::Duration::from_secs(20)).await);
    let dev = active(&env, "dev-a");
    let stop = [
        "stop",
        "--pipeline",
        "dev-a",
        "--execution",
        &dev,
        "--reason",
        "<b>INC</b>",
    ];
    assert_ok(&env.stopd(&stop).await);

    let out = env
        .stopd(&["report", "--format", "html", "--since", &since])
        .await;
    assert_ok(&out);
    let html = text(&out.stdout);
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Nothing fetched: no script, no stylesheet or image by address.
    for banned in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(banned), "{banned} in the page");
    }
    assert!(!html.contains("<b>INC</b>") && html.contains("&lt;b&gt;INC&lt;/b&gt;"));
    let svg = &html[html.find("<svg").unwrap()..];
    let (from, to) = (attr(svg, "data-since"), attr(svg, "data-until"));
    let stops = env.report(&["--since", &since]).await;
    assert_eq!(stops.len(), 2, "{stops:#?}");
    let marks: Vec<&str> = svg.split("<circle class=\"stop\"").skip(1).collect();
    assert_eq!(marks.len(), stops.len());
    for s in &stops {
        let at = s["at"].as_str().unwrap();
        let mark = marks
            .iter()
            .find(|m| attr(m, "data-at") == at)
            .expect("a mark per stop");
        let cx: f64 = attr(mark, "cx").parse().unwrap();
        assert!((cx - x_of(at, from, to)).abs() < 0.1, "{at}: {cx}");
        assert_eq!(attr(mark, "data-outcome"), s["outcome"].as_str().unwrap());
    }
    let gap = svg
        .split("<rect class=\"gap\"")
        .skip(1)
        .find(|g| attr(g, "data-cause") == "not_running")
        .expect("the kill's gap");
    let gx: f64 = attr(gap, "x").parse().unwrap();
    assert!((gx - x_of(attr(gap, "data-from"), from, to)).abs() < 0.1);

    // A listing that is not the audit report has no page to give: a usage error.
    let out = env.stopd(&["windows", "--format", "html"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // In a browser: rendered, and not a blank page.
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        })
    else {
        eprintln!("skipped the browser check: no chromium");
        return;
    };
    let page = env.dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let shot = env.dir.path().join("report.png");
    let ran = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,700",
            &format!("--screenshot={}", shot.display()),
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(shot.exists(), "no screenshot: {}", text(&ran.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let colour = |r: u8, g: u8, b: u8| {
        pixels
            .chunks(px)
            .filter(|p| p[0].abs_diff(r) < 40 && p[1].abs_diff(g) < 40 && p[2].abs_diff(b) < 40)
            .count()
    };
    // The window band (#bbdefb) and the gap (#e53935) are painted.
    assert!(
        colour(0xbb, 0xde, 0xfb) > 1000,
        "no window band on the screenshot"
    );
    assert!(
        colour(0xe5, 0x39, 0x35) > 20,
        "no red gap on the screenshot"
    );
}

/// Under umask 000 the audit directory was created 0777 and `audit.db.lock` and the digest
/// files 0666: anyone could replace the log or add a break-glass exemption. Whatever the umask,
/// directories are 0700 and files 0600.
#[tokio::test]
async fn files_are_private_whatever_the_umask() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(&fleet(&[("dev-a", "dev")])).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let private = env.dir.path().join("digest-key.pem");
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = env.dir.path().join("state");
    let db = state.join("audit.db");
    let digests = state.join("digests");
    std::fs::write(
        env.config_path(),
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[daemon]\ndatabase = \"{}\"\n\n\
             [audit]\ndigest_dir = \"{}\"\nsigning_key = \"{}\"\n",
            env.server.endpoint_url(),
            db.display(),
            digests.display(),
            private.display()
        ),
    )
    .unwrap();
    // `sh -c 'umask 000; exec stopd run'`, with the harness's environment (exec: the pid that
    // gets the signal is stopd's).
    let template = env.command(&["run"]);
    let mut c = std::process::Command::new("sh");
    c.args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN, "run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let daemon = c.spawn().unwrap();
    // A digest is written at start.
    let digested = wait_for(std::time::Duration::from_secs(20), || {
        std::fs::read_dir(&digests).is_ok_and(|mut d| d.next().is_some())
    })
    .await;
    signal(&daemon, "TERM");
    let out = wait_exit(daemon, std::time::Duration::from_secs(20)).await;
    assert!(digested, "no digest written: {}", text(&out.stderr));
    assert_ok(&out);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "audit directory");
    assert_eq!(mode(&db), 0o600, "audit.db");
    assert_eq!(mode(&state.join("audit.db.lock")), 0o600, "audit.db.lock");
    assert_eq!(mode(&digests), 0o700, "digest directory");
    let files: Vec<_> = std::fs::read_dir(&digests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "no digest written");
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// Issue 25, item 3: on a log whose first start is today, the freeze windows of the weeks
/// before are `before_first_start` (no gap, nothing watched), `--fail-on-gap` passes over
/// them, and the HTML timeline draws them grey, not as gaps; a real gap after the first start
/// (the daemon stopped during a window) still fails.
#[tokio::test]
async fn time_before_the_first_start_is_not_a_gap_but_a_gap_after_it_still_fails() {
    let env = Env::new(&fleet(&[("dev-a", "dev")])).await;
    let now = chrono::Utc::now();
    let window = |name: &str, from: chrono::Duration, to: chrono::Duration| {
        format!(
            "[[freeze]]\nname = \"{name}\"\nstart = \"{}\"\nend = \"{}\"\npipelines = [\"prod-*\"]\n",
            rfc(now - from),
            rfc(now - to)
        )
    };
    let (d, h) = (chrono::Duration::days, chrono::Duration::hours);
    env.write_config(
        "",
        &[
            window("weekend-2", d(14), d(12)),
            window("weekend-1", d(7), d(5)),
            window("today", h(1), -h(1)),
        ]
        .concat(),
    );
    let daemon = started(&env).await;
    signal(&daemon, "TERM");
    assert_ok(&wait_exit(daemon, std::time::Duration::from_secs(20)).await);
    let events = env.report(&["--events"]).await;
    let (first_start, stop) = (&events[0], &events[1]);
    assert_eq!(first_start["event"], "start");
    assert_eq!(stop["event"], "stop");

    // Up to the first start: no gap, and --fail-on-gap passes.
    let until = first_start["at"].as_str().unwrap();
    let out = env
        .stopd(&["report", "--coverage", "--until", until, "--fail-on-gap"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("before_first_start, not a gap"),
        "{}",
        text(&out.stdout)
    );
    let wide = env
        .stopd(&["report", "--coverage", "--until", until, "--wide"])
        .await;
    assert!(
        text(&wide.stdout).contains("BEFORE_FIRST_START"),
        "{}",
        text(&wide.stdout)
    );

    let coverage = env.report(&["--coverage"]).await;
    assert_eq!(coverage.len(), 3, "{coverage:#?}");
    for w in &coverage[..2] {
        assert_eq!(w["gaps"], serde_json::json!([]), "{w:#?}");
        assert_eq!(w["watched_seconds"], 0.0, "{w:#?}");
        assert_eq!(w["before_first_start"]["from"], w["window_start"], "{w:#?}");
        assert_eq!(w["before_first_start"]["to"], w["window_end"], "{w:#?}");
    }
    // Today's window: before the first start, then watched, then not running since the stop.
    let today = &coverage[2];
    assert_eq!(today["rule"], "today");
    assert_eq!(today["before_first_start"]["from"], today["window_start"]);
    assert_eq!(today["before_first_start"]["to"], first_start["at"]);
    assert!(
        today["watched_seconds"].as_f64().unwrap() > 0.0,
        "{today:#?}"
    );
    let gaps = today["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{today:#?}");
    assert_eq!(gaps[0]["cause"], "not_running");
    assert_eq!(gaps[0]["from"], stop["at"]);
    let out = env.stopd(&["report", "--coverage", "--fail-on-gap"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // HTML: the weeks before are grey bands, the only gap drawn is the one after the stop.
    let out = env.stopd(&["report", "--format", "html"]).await;
    assert_ok(&out);
    let html = text(&out.stdout);
    let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
    let grey: Vec<&str> = svg
        .split("<rect class=\"before-first-start\"")
        .skip(1)
        .collect();
    assert_eq!(grey.len(), 3, "{svg}");
    assert!(grey.iter().all(|g| attr(g, "fill") == "#e0e0e0"));
    let red: Vec<&str> = svg.split("<rect class=\"gap\"").skip(1).collect();
    assert_eq!(red.len(), 1, "{svg}");
    assert_eq!(attr(red[0], "data-from"), stop["at"].as_str().unwrap());
}
