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
