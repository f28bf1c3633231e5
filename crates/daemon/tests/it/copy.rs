//! `stopd copy` through the binary: a log written by the daemon and the command line copied
//! SQLite -> PostgreSQL -> SQLite (SQLite -> SQLite without a test server; in CI the server is
//! required), `verify` on the last copy printing the source's head; a target that is not
//! empty refused; no policy file needed.

use stopd_audit::Location;
use stopd_audit::testdb;

use crate::common::*;

const FREEZE_NOW: &str = r#"
[[freeze]]
name = "freeze-now"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
pipelines = ["prod-*"]
"#;

/// `head SEQ HASH` from `verify`'s or `copy`'s output.
fn head(said: &str) -> String {
    let at = said
        .find("head ")
        .unwrap_or_else(|| panic!("no head in {said:?}"));
    said[at..]
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn location(db: &testdb::TestDb) -> String {
    match db.location() {
        Location::Sqlite(p) => p.display().to_string(),
        Location::Postgres(url) => url,
    }
}

#[tokio::test]
async fn copy_moves_a_log_through_postgres_and_verify_prints_the_same_head() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("dev-a", "dev")])).await;
    env.write_config("", FREEZE_NOW);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let add = [
        "exempt",
        "add",
        "--pipeline",
        "dev-*",
        "--for",
        "1h",
        "--reason",
        "INC-7",
    ];
    assert_ok(&env.stopd(&add).await);
    let freeze = [
        "freeze",
        "add",
        "--pipeline",
        "web-*",
        "--for",
        "2h",
        "--reason",
        "INC-8",
    ];
    assert_ok(&env.stopd(&freeze).await);
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);
    let want = head(&text(&out.stdout));

    // copy reads no policy file: a broken one is no obstacle.
    std::fs::write(env.config_path(), "this is [not toml").unwrap();
    let middle = testdb::postgres().await.unwrap_or_else(testdb::sqlite);
    let last = testdb::sqlite();
    let source = env.db().display().to_string();
    for (from, to) in [
        (source.as_str(), location(&middle)),
        (&location(&middle), location(&last)),
    ] {
        let out = env.stopd(&["copy", "--from", from, "--to", &to]).await;
        assert_ok(&out);
        let said = text(&out.stdout);
        assert_eq!(head(&said), want, "{said}");
        assert!(
            said.contains("\n  stops") && said.contains("\n  audit_chain"),
            "{said}"
        );
        // The password is never printed.
        assert!(!said.contains("stopd:stopd@"), "{said}");
    }

    // verify on the last copy prints the source's head.
    let Location::Sqlite(copy) = last.location() else {
        unreachable!()
    };
    let text_config = format!("[daemon]\ndatabase = \"{}\"\n", copy.display());
    std::fs::write(env.config_path(), text_config).unwrap();
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);
    assert_eq!(head(&text(&out.stdout)), want);

    // A target with audit rows is refused, exit 1, naming the table.
    let out = env
        .stopd(&["copy", "--from", &source, "--to", &location(&middle)])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("is not empty: its table sweeps holds"),
        "{said}"
    );
}
