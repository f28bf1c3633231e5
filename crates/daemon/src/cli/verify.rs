//! `stopd verify`: recompute the audit log's hash chain (and check its signed digests).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::clock::Clock;
use crate::config::Config;

pub(super) const VERIFY_EXAMPLES: &str = "\
Examples:
  # Has the audit log been altered? (exit 0: intact; note the head it prints)
  stopd verify
  # The daemon's database (run as its user, or with sudo)
  stopd --config /etc/stopd/stopd.toml verify
  # And that nothing was cut from its end (digests shipped off the host)
  stopd verify --digests /mnt/audit/digests --public-key digest-key.pub.pem";

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// A directory of signed digests (`[audit] digest_dir`, as shipped off the host): finds a
    /// log cut short or rebuilt, which the chain alone cannot.
    #[arg(long, value_name = "DIR", requires = "public_key")]
    digests: Option<PathBuf>,
    /// The Ed25519 public key (PEM) the digests are checked with.
    #[arg(long, value_name = "FILE", requires = "digests")]
    public_key: Option<PathBuf>,
}

/// `stopd verify`.
pub(super) async fn run(cfg: &Config, args: &VerifyArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let digests = args.digests.as_deref().zip(args.public_key.as_deref());
    crate::cli::auditor::verify(cfg, digests, clock.now()).await
}
