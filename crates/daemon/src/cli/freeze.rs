//! `stopd freeze add | list | lift`: stop the line. Ad-hoc freezes from now, stored and audited
//! in the database; a running daemon enforces them within seconds.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Duration;
use clap::{Args, Subcommand};
use stopd_audit::{Lift, Store};
use stopd_rules::{Mode, rfc3339};

use crate::cli::UsageError;
use crate::cli::common::{TzArg, confirm, in_force, place_words, say, user, write_rows};
use crate::cli::output::{Columns, OutputArgs};
use crate::cli::time::{human, parse_instant, parse_span};
use crate::clock::Clock;
use crate::config::Config;

pub(super) const FREEZE_EXAMPLES: &str = "\
Examples:
  # Stop the line: every prod pipeline, for two hours, stopping what runs now
  stopd freeze add --pipeline 'prod-*' --for 2h --reason \"INC-4711 database failover\"
  # What is frozen, by whom, and what was lifted
  stopd freeze list
  # Lift it early (the reason is required and kept)
  stopd freeze lift 7 --reason \"INC-4711 resolved\"";

const FREEZE_ADD_EXAMPLES: &str = "\
Examples:
  # Stop every prod pipeline now, for two hours; hotfix lanes stay open
  stopd freeze add --pipeline 'prod-*' --exclude 'prod-hotfix-*' --for 2h \\
    --reason \"INC-4711 database failover\"
  # Abandon running actions, pipelines tagged team=payments, until a local time
  stopd freeze add --pipeline '*' --tag team=payments --mode abandon \\
    --until 2026-12-24T18:00 --yes --reason \"CHG-88\"
  # Every pipeline, more than 5 (or 5 stops), or longer than a day, needs --yes
  stopd freeze add --pipeline '*' --for 30m --yes --reason \"region outage\"";

/// `--mode`'s values: the audit vocabulary's [`stopd_audit::Mode`] names, in its order, parsed by
/// its `FromStr` into the policy's [`Mode`] (one list of names, one parse).
fn mode_values() -> impl clap::builder::TypedValueParser<Value = Mode> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(stopd_audit::Mode::ALL.iter().map(|m| m.as_str()))
        .try_map(|name| name.parse::<stopd_audit::Mode>().map(Mode::from))
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Subcommand)]
pub(super) enum FreezeCommand {
    /// Freeze pipelines from now until a time: what runs is stopped, nothing new may run.
    ///
    /// A one-off freeze named adhoc-ID, as a [[freeze]] from now would be: no grace, rollbacks
    /// spared, exemptions still win. The stop reason says who froze and why.
    ///
    /// First shows what it does, read live from CodePipeline as `plan` reads it: the pipelines
    /// frozen, the running executions it stops and, with --gate, the transitions it closes. More
    /// than 5 pipelines or 5 stops, or a preview that cannot be read, needs --yes (else exit 2,
    /// nothing recorded).
    #[command(after_help = FREEZE_ADD_EXAMPLES)]
    Add(FreezeAddArgs),
    /// List ad-hoc freezes, newest first: who froze, until when, who lifted them.
    #[command(after_help = FREEZE_EXAMPLES)]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        tz: TzArg,
    },
    /// Lift an ad-hoc freeze before its end; the reason is kept.
    #[command(after_help = FREEZE_EXAMPLES)]
    Lift {
        /// The id shown by `freeze add` and `freeze list`.
        id: i64,
        /// Why it is lifted early.
        #[arg(long)]
        reason: String,
    },
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["for_", "until"])))]
pub(super) struct FreezeAddArgs {
    /// Pipeline glob; `*` (every pipeline) needs --yes.
    #[arg(long, value_name = "GLOB")]
    pipeline: String,
    /// Pipelines not frozen (glob), e.g. a hotfix lane.
    #[arg(long, value_name = "GLOB")]
    exclude: Option<String>,
    /// Only pipelines with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// How long (e.g. 2h); more than a day needs --yes.
    #[arg(long = "for", id = "for_", value_name = "SPAN")]
    for_: Option<String>,
    /// Until when (RFC 3339, or a local date-time in [defaults] timezone).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Why; sent with every stop it makes and kept in the database.
    #[arg(long)]
    reason: String,
    /// finish (stop and wait) or abandon; default: [defaults] mode.
    #[arg(long, value_parser = mode_values())]
    mode: Option<Mode>,
    /// Also hold new work at stage transitions while the freeze lasts.
    #[arg(long)]
    gate: bool,
    /// Only in these `[[account]]`s (a name glob; `default` without `[[account]]`).
    #[arg(long, value_name = "GLOB")]
    account: Option<String>,
    /// Only in these regions (a glob).
    #[arg(long, value_name = "GLOB")]
    region: Option<String>,
    /// Confirm a freeze of every pipeline, of more than a day, of more than 5 pipelines or 5
    /// running executions, or one whose preview cannot be read (CodePipeline unreachable).
    #[arg(long)]
    yes: bool,
}

/// `stopd freeze ...`.
pub(super) async fn run(
    cfg: &Config,
    command: FreezeCommand,
    clock: &dyn Clock,
) -> Result<ExitCode> {
    match command {
        FreezeCommand::Add(a) => add(cfg, &a, clock).await,
        FreezeCommand::List { output, tz } => {
            list(
                cfg,
                OutputArgs {
                    tz: tz.tz,
                    ..output
                },
                clock,
            )
            .await
        }
        FreezeCommand::Lift { id, reason } => lift(cfg, id, &reason, clock).await,
    }
}

/// The longest ad-hoc freeze (hours) made without `--yes`.
const FREEZE_WITHOUT_YES: i64 = 24;

/// `stopd freeze add`: stop the line.
async fn add(cfg: &Config, a: &FreezeAddArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let now = clock.now();
    let (glob, exclude, reason) = (&*a.pipeline, a.exclude.as_deref(), &*a.reason);
    let (account, region) = (a.account.as_deref(), a.region.as_deref());
    let until = match (a.for_.as_deref(), a.until.as_deref()) {
        (Some(span), _) => now + parse_span("--for", span)?.delta(),
        (None, Some(t)) => parse_instant("--until", t, cfg.policy.default_timezone(), now, false)?,
        (None, None) => unreachable!("clap requires one"),
    };
    if until <= now {
        return Err(UsageError(format!("--until {} is not in the future", rfc3339(until))).into());
    }
    if until - now > parse_span("--until", "36525days")?.delta() {
        return Err(UsageError(format!(
            "--until {} is more than 100 years away",
            rfc3339(until)
        ))
        .into());
    }
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    let mut tags = BTreeMap::new();
    for t in &a.tags {
        let Some((k, v)) = t.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(UsageError(format!("--tag {t:?} is not KEY=VALUE")).into());
        };
        tags.insert(k.to_string(), v.to_string());
    }
    let mode = a.mode.unwrap_or_else(|| cfg.policy.default_mode());
    if !a.yes {
        if !glob.is_empty()
            && glob.chars().all(|c| c == '*')
            && exclude.is_none()
            && tags.is_empty()
        {
            return Err(UsageError(format!(
                "--pipeline {:?} freezes every pipeline until {}: every running execution is \
                 stopped. Add --yes if that is what you mean",
                glob,
                rfc3339(until)
            ))
            .into());
        }
        if until - now > Duration::hours(FREEZE_WITHOUT_YES) {
            return Err(UsageError(format!(
                "the freeze would last {}, more than a day (until {}). Add --yes if that is \
                 what you mean",
                human(until - now),
                rfc3339(until)
            ))
            .into());
        }
    }
    let by = user();
    let new = stopd_audit::NewFreeze {
        at: now,
        until,
        pipeline: glob,
        exclude,
        tags: &tags,
        mode,
        gate: a.gate,
        account,
        region,
        reason,
        by: &by,
    };
    // Checked as the daemon will read it, before it is recorded: a glob that does not compile
    // is a usage error, not a freeze every sweep refuses.
    let probe = stopd_audit::FreezeRecord {
        id: 0,
        rule: stopd_audit::rule_name(0),
        created_at: stopd_audit::ts(now),
        until: stopd_audit::ts(until),
        pipeline: glob.to_string(),
        exclude: exclude.map(str::to_string),
        tags: tags.clone(),
        mode: mode.into(),
        gate: a.gate,
        account: account.map(str::to_string),
        region: region.map(str::to_string),
        reason: reason.to_string(),
        created_by: by.clone(),
        lifted_at: None,
        lifted_by: None,
        lift_reason: None,
    };
    if let Err(errors) = cfg.policy.with_adhoc(&[probe.spec()]) {
        let text: Vec<String> = errors.iter().map(|e| e.kind.to_string()).collect();
        return Err(UsageError(format!(
            "the freeze cannot be enforced: {}",
            text.join("; ")
        ))
        .into());
    }
    // A typo in --account or --region would freeze nothing: refused, naming what there is.
    if account.is_some() || region.is_some() {
        let place = stopd_rules::select::Place::new(
            account.map(|a| vec![a.to_string()]).as_deref(),
            region.map(|g| vec![g.to_string()]).as_deref(),
        )
        .map_err(|e| UsageError(format!("--account/--region: {e}")))?;
        // A region the SDK's chain picks is not known here: only the account is checked.
        let account_only =
            stopd_rules::select::Place::new(account.map(|a| vec![a.to_string()]).as_deref(), None)
                .map_err(|e| UsageError(format!("--account: {e}")))?;
        let known = configured_places(cfg);
        if !known.iter().any(|(a, g)| {
            if g == "*" {
                account_only.matches(a, g)
            } else {
                place.matches(a, g)
            }
        }) {
            return Err(UsageError(format!(
                "--account {} --region {} matches no configured account and region (configured: {})",
                account.unwrap_or("*"),
                region.unwrap_or("*"),
                known
                    .iter()
                    .map(|(a, g)| format!("{a}/{g}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
    }
    let (extra, policy) = in_force(cfg, now).await?;
    let with_it = policy
        .with_adhoc(&[probe.spec()])
        .map_err(|e| anyhow::anyhow!("the freeze cannot be previewed: {e:?}"))?;
    let preview = crate::cli::preview::freeze(cfg, &with_it, &probe.rule, &extra, now).await;
    confirm(
        &preview,
        [
            "pipelines frozen",
            "running executions stopped",
            if a.gate {
                "stage transitions closed (--gate)"
            } else {
                ""
            },
        ],
        true,
        a.yes,
        "freeze",
    )?;
    let store = Store::open(crate::runtime::secrets::database(cfg)?).await?;
    let id = store.add_freeze(&new).await?;
    store.close().await;
    say(format_args!(
        "freeze #{id} ({}): pipelines {:?}{}{} are frozen until {} ({}), mode {}{}; a running \
         daemon stops their executions within seconds",
        stopd_audit::rule_name(id),
        glob,
        exclude
            .map(|e| format!(" except {e:?}"))
            .unwrap_or_default(),
        place_words(account, region),
        rfc3339(until),
        human(until - now),
        mode.as_str(),
        if a.gate { ", gated" } else { "" }
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The (account, region) pairs the policy file names: each `[[account]]` in each of its regions;
/// without, `default` in `[aws] region` (`*` when the SDK's chain picks it).
fn configured_places(cfg: &Config) -> Vec<(String, String)> {
    if cfg.accounts.is_empty() {
        let region = cfg.aws.region.clone().unwrap_or_else(|| "*".into());
        return vec![(stopd_audit::Place::DEFAULT_ACCOUNT.to_string(), region)];
    }
    cfg.accounts
        .iter()
        .flat_map(|a| {
            a.regions
                .iter()
                .flatten()
                .map(|r| (a.name.clone(), r.clone()))
        })
        .collect()
}

/// `stopd freeze list`.
async fn list(cfg: &Config, opts: OutputArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?).await?;
    let rows = store.freezes().await?;
    store.close().await;
    let now = clock.now();
    let mut out = std::io::stdout().lock();
    write_rows(
        &mut out,
        opts,
        &rows,
        Columns {
            names: &[
                "id",
                "rule",
                "pipeline",
                "until",
                "state",
                "mode",
                "reason",
                "created_by",
                "created_at",
                "lifted_by",
                "lifted_at",
            ],
            // The state says "lifted"; when, with --wide.
            wide_only: &["rule", "created_at", "lifted_at"],
            whole: &["id", "state", "until", "lifted_at"],
            to_the_minute: &["until", "lifted_at"],
        },
        |r| {
            let mut scope = r.pipeline.clone();
            if let Some(e) = &r.exclude {
                scope.push_str(&format!(" except {e}"));
            }
            for (k, v) in &r.tags {
                scope.push_str(&format!(" {k}={v}"));
            }
            scope.push_str(&place_words(r.account.as_deref(), r.region.as_deref()));
            vec![
                r.id.to_string(),
                r.rule.clone(),
                scope,
                r.until.clone(),
                r.state(now).into(),
                format!("{}{}", r.mode, if r.gate { ", gate" } else { "" }),
                r.reason.clone(),
                r.created_by.clone(),
                r.created_at.clone(),
                r.lifted_by.clone().unwrap_or_default(),
                r.lifted_at.clone().unwrap_or_default(),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `stopd freeze lift`.
async fn lift(cfg: &Config, id: i64, reason: &str, clock: &dyn Clock) -> Result<ExitCode> {
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why the freeze is lifted early".into()).into());
    }
    let store = Store::open(crate::runtime::secrets::database(cfg)?).await?;
    match store.lift_freeze(id, clock.now(), reason, &user()).await? {
        Lift::Lifted => {}
        // Refusals (exit 2), as `exempt revoke`'s: nothing is recorded.
        Lift::NoSuchFreeze => {
            return Err(UsageError(format!(
                "no freeze with id {id} (see `{}`)",
                crate::cli::hint("freeze list")
            ))
            .into());
        }
        Lift::AlreadyLifted { at, by } => {
            return Err(
                UsageError(format!("freeze {id} was already lifted at {at} by {by}")).into(),
            );
        }
        Lift::Ended { until } => {
            return Err(UsageError(format!("freeze {id} already ended at {until}")).into());
        }
    }
    store.close().await;
    say(format_args!(
        "freeze #{id} lifted; a running daemon stops enforcing it within seconds"
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Add {
        #[command(flatten)]
        args: FreezeAddArgs,
    }

    /// `--mode` takes the vocabulary's names, and only them; its help and a bad value's error
    /// list them as before (`finish`, `abandon`).
    #[test]
    fn mode_takes_the_vocabularys_names_and_lists_them() {
        let required = ["add", "--pipeline", "*", "--for", "1h", "--reason", "r"];
        let add = |mode: &str| {
            Add::try_parse_from(required.into_iter().chain(["--mode", mode])).map(|a| a.args.mode)
        };
        for &m in stopd_audit::Mode::ALL {
            assert_eq!(add(m.as_str()).unwrap(), Some(m.into()));
        }
        assert_eq!(add("abandon").unwrap(), Some(Mode::Abandon));
        assert_eq!(add("finish").unwrap(), Some(Mode::Finish));
        let e = add("Abandon").unwrap_err().to_string();
        assert!(
            e.contains("invalid value 'Abandon' for '--mode <MODE>'")
                && e.contains("[possible values: finish, abandon]"),
            "{e}"
        );
        // Wrapped to the terminal: compared word by word.
        let help = Add::command().render_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("[possible values: finish, abandon]"),
            "{help}"
        );
        assert_eq!(Add::try_parse_from(required).unwrap().args.mode, None);
    }
}
