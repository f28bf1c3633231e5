//! Test harness: an emulator on a real-time clock, a temporary directory with a policy file and
//! an audit database, and the `stopd` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use stopd_emulator::{Clock, Emulator, EmulatorConfig, Fixture, ServerHandle};

pub struct Env {
    pub emulator: Emulator,
    pub server: ServerHandle,
    pub dir: tempfile::TempDir,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_stopd");

impl Env {
    /// An emulator seeded with `fixture` (JSON) on a clock that follows real time.
    pub async fn new(fixture: &str) -> Env {
        Env::with_emulator(
            fixture,
            EmulatorConfig {
                clock: Clock::scaled(1.0),
                ..EmulatorConfig::default()
            },
        )
        .await
    }

    /// Like [`Env::new`] with an emulator configured as given.
    pub async fn with_emulator(fixture: &str, config: EmulatorConfig) -> Env {
        let emulator = Emulator::new(config);
        emulator
            .seed(&Fixture::from_json(fixture).expect("fixture parses"))
            .expect("fixture seeds");
        let server = emulator
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .expect("emulator listens");
        Env {
            emulator,
            server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("stopd.toml")
    }

    /// Writes the policy file: `[aws]` and `[daemon]` pointing here, then `rules`.
    pub fn write_config(&self, daemon_extra: &str, rules: &str) {
        let text = format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[daemon]\ndatabase = \"{}\"\n{daemon_extra}\n\n{rules}\n",
            self.server.endpoint_url(),
            self.db().display()
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("STOPD_CONFIG", self.config_path())
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env_remove("AWS_PROFILE")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            // Tables fit 100 columns unless a test sets COLUMNS.
            .env_remove("COLUMNS")
            .env("STOPD_LOG", "info");
        c
    }

    /// Runs `stopd args...` to completion off the async runtime.
    pub async fn stopd(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        tokio::task::spawn_blocking(move || c.output().expect("stopd runs"))
            .await
            .unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stopd starts")
    }

    /// `stopd report --format json`, parsed.
    pub async fn report(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["report", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.stopd(&args).await;
        assert_ok(&out);
        serde_json::from_slice::<Value>(&out.stdout)
            .expect("report is JSON")
            .as_array()
            .expect("report is an array")
            .clone()
    }

    /// Waits (up to 10 s) until a sweep has listed the pipelines.
    pub async fn wait_for_first_listing(&self) -> bool {
        wait_for(Duration::from_secs(10), || {
            self.emulator
                .calls()
                .iter()
                .any(|c| c.operation == "ListPipelines")
        })
        .await
    }

    /// ListPipelines calls so far (a sweep's, and a `freeze add` or `exempt add` preview's).
    pub fn listings(&self) -> usize {
        self.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "ListPipelines")
            .count()
    }

    /// Waits (up to 10 s) until more than `before` listings were made: a sweep after a CLI
    /// command's preview.
    pub async fn wait_for_listing_after(&self, before: usize) -> bool {
        wait_for(Duration::from_secs(10), || self.listings() > before).await
    }

    pub fn stop_calls(&self) -> usize {
        self.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "StopPipelineExecution")
            .count()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// RFC 3339 UTC to the second.
pub fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Polls `f` every 20 ms until it is true or `limit` passes.
pub async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Sends `sig` to a child.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// Waits for a child off the runtime, with a limit.
pub async fn wait_exit(child: Child, limit: Duration) -> Output {
    let waited = tokio::time::timeout(
        limit,
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await;
    waited
        .expect("stopd did not exit in time")
        .expect("wait task")
}

/// A fleet: pipelines with one long InProgress execution each, tagged env=prod|dev.
pub fn fleet(names: &[(&str, &str)]) -> String {
    let pipelines: Vec<String> = names
        .iter()
        .map(|(name, env)| {
            format!(
                r#"{{"name": "{name}", "tags": {{"env": "{env}"}},
                    "stages": [{{"name": "A", "actions": [{{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}}],
                    "executions": [{{"status": "Succeeded", "started_ago": "30h", "duration": "24h"}}, {{"status": "InProgress", "started_ago": "5m"}}]}}"#
            )
        })
        .collect();
    format!(r#"{{"pipelines": [{}]}}"#, pipelines.join(","))
}

/// The one active execution of a pipeline.
pub fn active(env: &Env, pipeline: &str) -> String {
    env.emulator
        .executions(pipeline)
        .into_iter()
        .find(|e| e.status == "InProgress")
        .expect("an InProgress execution")
        .id
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
