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
        Ran::Once(summary) => {
            let (lines, code) = once(&summary);
            for line in lines {
                eprintln!("{line}");
            }
            Ok(code)
        }
    }
}

/// What `run --once` says on stderr, a line each, and its exit code: 0 when the sweep was good
/// ([`SweepSummary::ok`]: every in-scope pipeline read, every write recorded, every decided stop
/// done). The lines name each stop not final or refused, and what kept the sweep from being
/// good, naming the operation and IAM action of a permission failure.
fn once(summary: &SweepSummary) -> (Vec<String>, ExitCode) {
    let mut lines = Vec::new();
    for d in &summary.done {
        let why = d.denied.as_deref().or(d.error.as_deref()).unwrap_or("");
        let (pipeline, execution) = (&d.planned.pipeline, &d.planned.execution_id);
        if !d.is_final {
            lines.push(format!(
                "stopd: not final: {pipeline} {execution} ({}): {why}",
                d.outcome
            ));
        } else if d.outcome.is_rejection() {
            lines.push(format!(
                "stopd: refused: {pipeline} {execution} (rejected): {why}"
            ));
        }
    }
    if summary.ok() {
        return (lines, ExitCode::SUCCESS);
    }
    if summary.interrupted() {
        // Not a failure, but not the whole sweep `--once` promises either.
        lines.push("stopd: the sweep was interrupted: a shutdown began before it ended".into());
    } else {
        lines.push(format!(
            "stopd: the sweep did not succeed: {}",
            summary.problem().unwrap_or_default()
        ));
    }
    (lines, ExitCode::from(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sweep::{Done, Planned};

    fn done(pipeline: &str, outcome: &str, is_final: bool, error: &str) -> Done {
        Done {
            stop_id: Some(1),
            planned: Planned {
                pipeline: pipeline.into(),
                execution_id: format!("{pipeline}-1"),
                rule: "weekend".into(),
                rule_kind: stopd_audit::RuleKind::Freeze,
                mode: stopd_rules::Mode::Finish,
                reason: "frozen".into(),
                explanation: "frozen".into(),
                escalate_after: None,
                escalation_of: None,
            },
            outcome: outcome.parse().unwrap(),
            is_final,
            attempts: 1,
            error: Some(error.into()),
            denied: None,
            calls: Default::default(),
            audit_error: None,
            account: "default".into(),
            region: "eu-west-1".into(),
        }
    }

    /// The `run --once` lines moved out of the runtime: a good sweep says nothing and exits 0;
    /// a stop not final, and one refused, are named, then why the sweep was not good (exit 1);
    /// a sweep a shutdown cut short says so.
    #[test]
    fn once_names_stops_not_final_and_refused_and_why_the_sweep_was_not_good() {
        let good = SweepSummary {
            done: vec![done("prod-a", "stopped", true, "")],
            ..SweepSummary::default()
        };
        assert_eq!(once(&good), (vec![], ExitCode::SUCCESS));

        let bad = SweepSummary {
            done: vec![
                done("prod-a", "stopped", true, ""),
                done("prod-b", "failed", false, "throttled"),
                done("prod-c", "rejected", true, "no such execution"),
            ],
            ..SweepSummary::default()
        };
        let (lines, code) = once(&bad);
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(
            lines,
            [
                "stopd: not final: prod-b prod-b-1 (failed): throttled",
                "stopd: refused: prod-c prod-c-1 (rejected): no such execution",
                "stopd: the sweep did not succeed: stop of prod-b prod-b-1 ended failed: throttled",
            ]
        );

        let cut = SweepSummary {
            cut_short: true,
            ..SweepSummary::default()
        };
        assert_eq!(
            once(&cut),
            (
                vec!["stopd: the sweep was interrupted: a shutdown began before it ended".into()],
                ExitCode::from(1)
            )
        );
    }
}
