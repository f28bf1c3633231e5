//! `stopd copy --from DB --to DB`: a whole audit log into an empty database, chain intact
//! (`stopd_audit::copy`). Needs no policy file: both databases are named on the command line.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use stopd_audit::Location;

pub(super) const COPY_EXAMPLES: &str = "\
Examples:
  # Move a single host's log to PostgreSQL (password from PGPASSWORD or the URL)
  stopd copy --from /var/lib/stopd/audit.db --to postgres://stopd@db.internal:5432/stopd
  # And back, into a new SQLite file (for an auditor's laptop)
  stopd copy --from postgres://stopd@db.internal:5432/stopd --to ./audit-copy.db

The target must be empty (a new path, or a database without audit rows). The copy is one
transaction: it commits only when its chain verifies with the source's head, which it prints;
`stopd verify` on the copy prints the same.";

#[derive(Debug, Args)]
pub(super) struct CopyArgs {
    /// The audit log to copy: a SQLite path or a postgres:// URL (read in one snapshot; a
    /// daemon may keep writing to it).
    #[arg(long, value_name = "DB")]
    from: String,
    /// Where to copy it: a SQLite path (created) or a postgres:// URL, empty of audit rows.
    #[arg(long, value_name = "DB")]
    to: String,
}

/// `stopd copy`: the rows copied per table, then the chain's head.
pub(super) async fn run(args: &CopyArgs) -> Result<ExitCode> {
    let (from, to) = (Location::parse(&args.from), Location::parse(&args.to));
    let copied = stopd_audit::copy(&from, &to).await?;
    let width = copied
        .tables
        .iter()
        .map(|(t, _)| t.len())
        .max()
        .unwrap_or(0);
    let total: u64 = copied.tables.iter().map(|(_, n)| n).sum();
    println!("copied the audit log from {from} to {to}: {total} rows");
    for (table, n) in &copied.tables {
        println!("  {table:<width$}  {n}");
    }
    println!(
        "head {} {} (the source's; `stopd verify` on the copy prints the same)",
        copied.head_seq, copied.head_hash
    );
    Ok(ExitCode::SUCCESS)
}
