//! `stopd run`, the command line's side: the secret files checked, the daemon (or one sweep)
//! run by [`crate::runtime::run`], and what `--once` found printed.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::config::Config;
use crate::runtime::run::Ran;
use crate::runtime::secrets;
use crate::runtime::sweep::SweepSummary;

pub(super) const RUN_EXAMPLES: &str = "\
Examples:
  # The daemon, as systemd runs it
  stopd run
  # One sweep, then exit 0 if every decided stop reached a final outcome
  stopd --config ./stopd.toml run --once
  # Decide and record `dry_run`; call nothing that changes CodePipeline
  stopd run --once --dry-run && stopd report --outcome dry_run";

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// One sweep, then exit: 0 when every decided stop reached a final outcome, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// Decide and record `dry_run`; never call StopPipelineExecution (overrides [daemon] dry_run).
    #[arg(long)]
    dry_run: bool,
}

/// `stopd run [--once] [--dry-run]`: first reads every secret file it needs (exit 78 naming any
/// it cannot).
pub(super) async fn run(cfg: Config, args: &RunArgs) -> Result<ExitCode> {
    secrets::check(&cfg)?;
    let mut cfg = cfg;
    cfg.warnings.extend(secrets::warnings(&cfg));
    match crate::runtime::run::run(cfg, args.once, args.dry_run).await? {
        Ran::Daemon => Ok(ExitCode::SUCCESS),
        Ran::Once(summary) => Ok(once(&summary)),
    }
}

/// `run --once`'s exit code: 0 when the sweep was good ([`SweepSummary::ok`]): every in-scope
/// pipeline read, every write recorded, every decided stop done. Stderr names each stop not
/// final or refused, and what kept the sweep from being good.
fn once(summary: &SweepSummary) -> ExitCode {
    for d in &summary.done {
        let why = d.denied.as_deref().or(d.error.as_deref()).unwrap_or("");
        let (pipeline, execution) = (&d.planned.pipeline, &d.planned.execution_id);
        if !d.is_final {
            eprintln!(
                "stopd: not final: {pipeline} {execution} ({}): {why}",
                d.outcome
            );
        } else if d.outcome == "rejected" {
            eprintln!("stopd: refused: {pipeline} {execution} (rejected): {why}");
        }
    }
    if summary.ok() {
        return ExitCode::SUCCESS;
    }
    if summary.interrupted() {
        // Not a failure, but not the whole sweep `--once` promises either.
        eprintln!("stopd: the sweep was interrupted: a shutdown began before it ended");
    } else {
        eprintln!(
            "stopd: the sweep did not succeed: {}",
            summary.problem().unwrap_or_default()
        );
    }
    ExitCode::from(1)
}
