//! `stopd stop`: one execution stopped by hand, through the same engine and audit log as the
//! daemon.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use stopd_audit::Store;
use stopd_rules::Mode;
use tokio_util::sync::CancellationToken;

use crate::cli::UsageError;
use crate::cli::common::{say, user};
use crate::cli::output;
use crate::config::Config;
use crate::runtime::sweep::{self, Planned};

pub(super) const STOP_EXAMPLES: &str = "\
Examples:
  # Stop and let running actions finish
  stopd stop --pipeline prod-web --execution 1b2c3d4e-... --reason \"bad deploy\"
  # Stop at once, abandoning running actions
  stopd stop --pipeline prod-web --execution 1b2c3d4e-... --abandon --reason \"INC-4711\"

Exit codes: 0 when the outcome is stopped, already_stopping, not_stoppable or dry_run;
1 for pipeline_not_found, rejected or failed.";

#[derive(Debug, Args)]
pub(super) struct StopArgs {
    /// Pipeline name.
    #[arg(long)]
    pipeline: String,
    /// Execution id.
    #[arg(long)]
    execution: String,
    /// Abandon in-progress actions instead of letting them finish.
    #[arg(long)]
    abandon: bool,
    /// Why; recorded in the audit log and sent to CodePipeline (cut to 200 characters).
    #[arg(long)]
    reason: String,
    /// The `[[account]]` the pipeline is in (needed when there are several).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// The region the pipeline is in (needed when an account has several).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

/// `stopd stop`.
pub(super) async fn run(
    cfg: &Config,
    args: &StopArgs,
    clock: &dyn crate::clock::Clock,
) -> Result<ExitCode> {
    let (pipeline, execution, abandon, reason) = (
        &*args.pipeline,
        &*args.execution,
        args.abandon,
        &*args.reason,
    );
    let place = (args.account.as_deref(), args.region.as_deref());
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    // What CodePipeline's model would refuse is refused here, before anything is recorded: a
    // typo is not a `rejected` stop in the audit log.
    check_stop_target(pipeline, execution)?;
    let cores = crate::runtime::targets::build(cfg, CancellationToken::new()).await;
    let core = crate::runtime::targets::pick(&cores, place.0, place.1).map_err(UsageError)?;
    let store = Store::open(crate::runtime::secrets::database(cfg)?).await?;
    let mode = if abandon { Mode::Abandon } else { Mode::Finish };
    let done = sweep::execute(
        core,
        &store,
        clock,
        None,
        Planned {
            pipeline: pipeline.into(),
            execution_id: execution.into(),
            rule: "manual".into(),
            rule_kind: stopd_audit::RuleKind::Manual,
            mode,
            reason: reason.into(),
            explanation: format!("manual stop by {}", user()),
            escalate_after: None,
            escalation_of: None,
        },
        cfg.daemon.dry_run,
    )
    .await;
    store.close().await;
    let id = done.stop_id.map_or("-".into(), |i| i.to_string());
    say(format_args!(
        "{} {} {}: {} (audit #{id}, {} attempt(s)){}",
        mode.as_str(),
        output::escape(pipeline),
        output::escape(execution),
        done.outcome,
        done.attempts,
        done.error
            .map(|e| format!(": {}", output::escape(&e)))
            .unwrap_or_default()
    ))?;
    Ok(stop_exit_code(
        done.stop_id.is_some(),
        done.outcome.as_str(),
    ))
}

/// A pipeline name and an execution id as CodePipeline's model has them (`PipelineName`:
/// 1 to 100 of `[A-Za-z0-9.@\-_]`; `PipelineExecutionId`: a lower-case UUID), else a usage
/// error naming the expected form.
fn check_stop_target(pipeline: &str, execution: &str) -> Result<(), UsageError> {
    let name_ok = (1..=100).contains(&pipeline.chars().count())
        && pipeline
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@-_".contains(c));
    if !name_ok {
        return Err(UsageError(format!(
            "--pipeline {pipeline:?} is not a pipeline name: CodePipeline's are 1 to 100 \
             letters, digits and . @ - _"
        )));
    }
    let b = execution.as_bytes();
    let execution_ok = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        });
    if !execution_ok {
        return Err(UsageError(format!(
            "--execution {execution:?} is not an execution id: CodePipeline's are lower-case \
             UUIDs (8-4-4-4-12 hex digits, e.g. 1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d), as `{}` \
             shows them",
            crate::cli::hint("plan")
        )));
    }
    Ok(())
}

/// `stop`'s exit code (DESIGN.md): 0 when the execution is stopped or stopping, or finished
/// first, or the stop was a dry run; 1 otherwise (not found, rejected, failed, not recorded).
fn stop_exit_code(recorded: bool, outcome: &str) -> ExitCode {
    match outcome {
        "stopped" | "already_stopping" | "not_stoppable" | "dry_run" if recorded => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_exits_0_only_for_outcomes_that_leave_the_execution_stopped_or_finished() {
        for ok in ["stopped", "already_stopping", "not_stoppable", "dry_run"] {
            assert_eq!(stop_exit_code(true, ok), ExitCode::SUCCESS, "{ok}");
        }
        for bad in ["pipeline_not_found", "rejected", "failed", "pending"] {
            assert_eq!(stop_exit_code(true, bad), ExitCode::from(1), "{bad}");
        }
        assert_eq!(stop_exit_code(false, "stopped"), ExitCode::from(1));
    }
}
