//! The auditor's commands: `stopd verify` (the hash chain), and the audit reports that are
//! not stop records.

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;
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
