//! Secret files under systemd (issue 25, item 4): the unit's dynamic user cannot read root's
//! 0600 files, so `[audit] signing_key` and `[[notify]] url_file` come from
//! `$CREDENTIALS_DIRECTORY/<file name>` first; `check` reads every one `run` needs, and both
//! refuse (78) a policy whose secrets cannot be read, naming the key, its line and the path.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use crate::notify::Receiver;

/// Paths in the policy that do not exist: what the dynamic user meets (it cannot read them).
const KEY: &str = "/nonexistent/stopd/digest-key.pem";
const HOOK: &str = "/nonexistent/stopd/hook-url";
const PASSWORD: &str = "/nonexistent/stopd/db-password";
/// `[daemon]`: the PostgreSQL backend's password file (read and checked, unused with SQLite).
const DAEMON: &str = "database_password_file = \"/nonexistent/stopd/db-password\"";

const FREEZE_NOW: &str = "[[freeze]]\nname = \"freeze-now\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\n";

/// `[audit]` signing with KEY into `digests`, and a `[[notify]]` reading HOOK.
fn policy(digests: &Path) -> String {
    format!(
        "[audit]\ndigest_dir = \"{}\"\nsigning_key = \"{KEY}\"\n\n{FREEZE_NOW}\n\
         [[notify]]\nname = \"hook\"\nurl_file = \"{HOOK}\"\nevents = [\"stopped\"]\n",
        digests.display()
    )
}

/// A credentials directory as systemd makes it: the key and the URL file under their names.
fn credentials(env: &Env, url: &str) -> std::path::PathBuf {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    let dir = env.dir.path().join("credentials");
    std::fs::create_dir(&dir).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    std::fs::write(
        dir.join("digest-key.pem"),
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(dir.join("hook-url"), format!("{url}\n")).unwrap();
    std::fs::write(dir.join("db-password"), "s3cret\n").unwrap();
    dir
}

async fn with_credentials(env: &Env, dir: &Path, args: &[&str]) -> Output {
    let mut c = env.command(args);
    c.env("CREDENTIALS_DIRECTORY", dir);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

async fn without_credentials(env: &Env, args: &[&str]) -> Output {
    let mut c = env.command(args);
    // As under systemd, where the hint to use LoadCredential= applies.
    c.env_remove("CREDENTIALS_DIRECTORY")
        .env("INVOCATION_ID", "0123456789abcdef");
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// The key and the webhook URL come from `$CREDENTIALS_DIRECTORY` while the policy's paths
/// cannot be read: `check` passes, `run --once` stops and notifies through the credential's
/// URL, and `run` signs its digests with the credential's key.
#[tokio::test]
async fn secrets_are_read_from_the_credentials_directory_first() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let hook = Receiver::start(false).await;
    let creds = credentials(&env, hook.url());
    let digests = env.dir.path().join("digests");
    env.write_config(DAEMON, &policy(&digests));

    let out = with_credentials(&env, &creds, &["check"]).await;
    assert_ok(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(
        stdout.contains("database_password_file is unused: the audit database is a SQLite file"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "a secret printed: {stdout}");
    // Written under the default umask, the key is readable by others: `check` says so (issue
    // 26 item 8), and no longer once it is 0600.
    assert!(
        stdout.contains("[audit] signing_key") && stdout.contains("is readable by others"),
        "{stdout}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["digest-key.pem", "hook-url", "db-password"] {
            std::fs::set_permissions(creds.join(f), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
    }
    let out = with_credentials(&env, &creds, &["check"]).await;
    assert_ok(&out);
    assert!(
        !text(&out.stdout).contains("readable by others"),
        "{}",
        text(&out.stdout)
    );

    let out = with_credentials(&env, &creds, &["run", "--once"]).await;
    assert_ok(&out);
    assert_eq!(env.stop_calls(), 1);
    let stopped = hook.events("stopped");
    assert_eq!(stopped.len(), 1, "delivered to the credential's URL");
    assert_eq!(stopped[0]["pipeline"], "prod-web");

    let mut daemon = env.command(&["run"]);
    daemon
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let daemon = daemon.spawn().unwrap();
    let signed = wait_for(Duration::from_secs(20), || {
        std::fs::read_dir(&digests).is_ok_and(|d| d.count() >= 1)
    })
    .await;
    signal(&daemon, "TERM");
    let out = wait_exit(daemon, Duration::from_secs(20)).await;
    assert!(signed, "no digest written: {}", text(&out.stderr));
    assert_ok(&out);
    // Signed with the credential's key: its public half verifies them.
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    let public = env.dir.path().join("digest-key.pub.pem");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let out = env
        .stopd(&[
            "verify",
            "--digests",
            path_str(&digests),
            "--public-key",
            path_str(&public),
        ])
        .await;
    assert_ok(&out);
}

/// Without the credentials, `check` (the unit's ExecStartPre) no longer says OK for secrets
/// `run` cannot read: it exits 78 naming each key, its line, the path tried and the
/// `LoadCredential=` line that passes it; `run --once` refuses the same way, before any stop.
#[tokio::test]
async fn check_and_run_refuse_secrets_they_cannot_read_naming_key_and_path() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let digests = env.dir.path().join("digests");
    env.write_config(DAEMON, &policy(&digests));
    let config = env.config_path();
    let config = path_str(&config);
    let line = |key: &str| {
        let text = std::fs::read_to_string(env.config_path()).unwrap();
        text.lines()
            .position(|l| l.starts_with(key))
            .expect("key in the policy")
            + 1
    };

    for args in [&["check"][..], &["run", "--once"][..]] {
        let out = without_credentials(&env, args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "{config}:{}:1: audit.signing_key: cannot read {KEY}",
                line("signing_key")
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!(
                "{config}:{}:1: notify[0].url_file: [[notify]] hook: url_file: cannot read {HOOK}",
                line("url_file")
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!(
                "{config}:{}:1: daemon.database_password_file: cannot read {PASSWORD}",
                line("database_password_file")
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!("LoadCredential=digest-key.pem:{KEY}")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!("LoadCredential=hook-url:{HOOK}")),
            "{args:?}: {err}"
        );
        assert!(!text(&out.stdout).contains("OK"), "{}", text(&out.stdout));
    }
    assert_eq!(env.stop_calls(), 0);
    assert!(!env.db().exists(), "nothing was recorded");
}

/// Issue 25: a `url_file` that cannot be read (here a directory) let `run --once` exit 0 with
/// its notifications silently lost. It is refused (78), naming the target and the file.
#[tokio::test]
async fn run_once_with_an_unreadable_url_file_exits_non_zero() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let unreadable = env.dir.path().join("hook-url");
    std::fs::create_dir(&unreadable).unwrap();
    env.write_config(
        "",
        &format!(
            "{FREEZE_NOW}\n[[notify]]\nname = \"hook\"\nurl_file = \"{}\"\n",
            unreadable.display()
        ),
    );
    let out = env.stopd(&["run", "--once"]).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "notify[0].url_file: [[notify]] hook: url_file: cannot read {}",
            unreadable.display()
        )),
        "{err}"
    );
}
