//! The auditor's commands: `stopd verify` (the hash chain), and the audit reports that are
//! not stop records.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::output::{self, Columns, OutputArgs};
use crate::store::Store;

/// `stopd verify`: exit 0 printing the record count and the head hash when the chain is
/// intact; exit 1 naming the first record altered, removed or inserted (and every table that
/// lost its append-only triggers).
pub async fn verify(cfg: &Config) -> Result<ExitCode> {
    let store = Store::open_read_only(&cfg.daemon.database).await?;
    let v = store.verify().await;
    store.close().await;
    let v = v?;
    if v.intact() {
        println!(
            "audit log intact: {} records, head {} {}",
            v.records, v.head_seq, v.head_hash
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &v.problems {
        println!("TAMPERED: {p}");
    }
    println!(
        "{} records read; the chain is intact up to record {} ({})",
        v.records, v.head_seq, v.head_hash
    );
    Ok(ExitCode::from(1))
}

/// `report --events`: the daemon's lifecycle, oldest first.
pub async fn events(
    store: &Store,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    opts: OutputArgs,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let rows = store.events(since, until).await?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    output::write(
        out,
        opts,
        &rows,
        Columns {
            names: &[
                "id",
                "at",
                "event",
                "pid",
                "version",
                "policy_hash",
                "result",
                "detail",
            ],
            wide_only: &["id", "version"],
            whole: &["at"],
            to_the_minute: &[],
        },
        |r| {
            vec![
                r.id.to_string(),
                r.at.clone(),
                r.event.clone(),
                r.pid.to_string(),
                opt(&r.version),
                opt(&r.policy_hash),
                opt(&r.result),
                opt(&r.detail),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
