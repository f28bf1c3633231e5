//! `stopd exempt add | list | revoke`: break-glass exemptions, stored and audited in the
//! database.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Duration;
use clap::{Args, Subcommand};
use stopd_audit::{Revocation, Store};
use stopd_rules::rfc3339;

use crate::cli::UsageError;
use crate::cli::common::{TzArg, confirm, in_force, say, unknown_rule, user, write_rows};
use crate::cli::output::{Columns, OutputArgs};
use crate::cli::time::{human, parse_instant, parse_span};
use crate::clock::Clock;
use crate::config::Config;

pub(super) const EXEMPT_EXAMPLES: &str = "\
Examples:
  # Let one pipeline through every rule for two hours
  stopd exempt add --pipeline prod-payments --for 2h --reason \"INC-4711\"
  # Who exempted what, and who revoked it
  stopd exempt list
  # End an exemption early, saying why (kept, shown by `exempt list`)
  stopd exempt revoke 3 --reason \"INC-4711 resolved\"";

const EXEMPT_ADD_EXAMPLES: &str = "\
Examples:
  # Let one pipeline through every rule for two hours
  stopd exempt add --pipeline prod-payments --for 2h --reason \"INC-4711\"
  # Hotfix pipelines, from the weekend freeze only, until a local time
  stopd exempt add --pipeline 'prod-hotfix-*' --rule weekend --until 2026-12-24T18:00 \\
    --reason \"CHG-88\"
  # Every pipeline, more than 5, or longer than a week, needs --yes
  stopd exempt add --pipeline '*' --for 30m --yes --reason \"freeze called off\"";

#[derive(Debug, Subcommand)]
pub(super) enum ExemptCommand {
    /// Exempt pipelines from every rule, or from one (--rule), for a while.
    #[command(after_help = EXEMPT_ADD_EXAMPLES)]
    Add(ExemptAddArgs),
    /// List exemptions, newest first: who added them, who revoked them and when.
    ///
    /// RULE is empty for an exemption from every rule.
    #[command(after_help = EXEMPT_EXAMPLES)]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        tz: TzArg,
    },
    /// Revoke an exemption by id; the reason, if given, is kept.
    #[command(after_help = EXEMPT_EXAMPLES)]
    Revoke {
        /// The id shown by `exempt add` and `exempt list`.
        id: i64,
        /// Why it is revoked early (shown by `exempt list`).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)] // help text: `[defaults]` is a TOML table
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["for_", "until"])))]
pub(super) struct ExemptAddArgs {
    /// Pipeline glob; `*` (every pipeline) needs --yes.
    #[arg(long, value_name = "GLOB")]
    pipeline: String,
    /// How long (e.g. 2h, 1d); more than 7 days needs --yes.
    #[arg(long = "for", id = "for_", value_name = "SPAN")]
    for_: Option<String>,
    /// Until when (RFC 3339, or a local date-time in [defaults] timezone).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Why; shown by `plan` and kept in the database.
    #[arg(long)]
    reason: String,
    /// Exempt from this rule only (a name in the policy); another rule that applies still stops.
    #[arg(long, value_name = "NAME")]
    rule: Option<String>,
    /// Confirm an exemption of every pipeline, of more than 7 days, or of more than 5 pipelines
    /// or unseen (the preview, read live first, could not be)
    #[arg(long)]
    yes: bool,
}

/// `stopd exempt ...`.
pub(super) async fn run(
    cfg: &Config,
    command: ExemptCommand,
    clock: &dyn Clock,
) -> Result<ExitCode> {
    match command {
        ExemptCommand::Add(a) => add(cfg, &a, clock).await,
        ExemptCommand::List { output, tz } => {
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
        ExemptCommand::Revoke { id, reason } => revoke(cfg, id, reason.as_deref(), clock).await,
    }
}

/// The longest exemption (days) made without `--yes`.
const EXEMPT_WITHOUT_YES: i64 = 7;

/// `stopd exempt add`.
async fn add(cfg: &Config, a: &ExemptAddArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let now = clock.now();
    let (glob, reason, rule) = (&*a.pipeline, &*a.reason, a.rule.as_deref());
    let until = match (a.for_.as_deref(), a.until.as_deref()) {
        (Some(span), _) => now + parse_span("--for", span)?.delta(),
        (None, Some(t)) => parse_instant("--until", t, cfg.policy.default_timezone(), now, false)?,
        (None, None) => unreachable!("clap requires one"),
    };
    if until <= now {
        return Err(UsageError(format!("--until {} is not in the future", rfc3339(until))).into());
    }
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    let probe = stopd_rules::Exemption::break_glass("check", glob, until, reason)
        .map_err(|e| UsageError(format!("--pipeline {glob:?}: {e}")))?
        .only_rule(rule.map(str::to_string));
    // A rule name cannot be checked against a policy that does not validate, and a misspelt
    // one would exempt nothing: refused, with the way that needs no policy.
    if let (Some(rule), Some(e)) = (rule, &cfg.policy_error) {
        return Err(e
            .refusing(&format!(
                "exempt add --rule {rule:?} needs the policy's rules to check the name against; \
                 leave out --rule to exempt the pipelines from every rule, or fix the file"
            ))
            .into());
    }
    if let Some(rule) = rule
        && !cfg.policy.rules().iter().any(|x| x.name == rule)
    {
        let names: Vec<&str> = cfg.policy.rules().iter().map(|x| x.name.as_str()).collect();
        return Err(unknown_rule(rule, &names, &cfg.path.display().to_string()).into());
    }
    let from = match rule {
        Some(rule) => format!("rule {rule}"),
        None => "every rule".to_string(),
    };
    if !a.yes {
        if !glob.is_empty() && glob.chars().all(|c| c == '*') {
            return Err(UsageError(format!(
                "--pipeline {glob:?} exempts every pipeline from every rule: the whole policy is \
                 off until {}. Add --yes if that is what you mean",
                rfc3339(until)
            ))
            .into());
        }
        if until - now > Duration::days(EXEMPT_WITHOUT_YES) {
            return Err(UsageError(format!(
                "the exemption would last {}, more than {EXEMPT_WITHOUT_YES} days (until {}). \
                 Add --yes if that is what you mean",
                human(until - now),
                rfc3339(until)
            ))
            .into());
        }
    }
    let (extra, policy) = in_force(cfg, now).await?;
    let preview = crate::cli::preview::exempt(cfg, &policy, &probe, &extra, now).await;
    confirm(
        &preview,
        [
            "pipelines exempted",
            "running executions it lets through (stopped otherwise)",
            "",
        ],
        false,
        a.yes,
        "exempt them",
    )?;
    let store = Store::open(crate::runtime::secrets::database(cfg)?).await?;
    let id = store
        .add_exemption(now, glob, until, reason, &user(), rule)
        .await?;
    store.close().await;
    say(format_args!(
        "exemption #{id}: pipelines {glob:?} are exempt from {from} until {} ({}); \
         revoke with `{}`",
        rfc3339(until),
        human(until - now),
        crate::cli::hint(&format!("exempt revoke {id}"))
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `stopd exempt list`.
async fn list(cfg: &Config, opts: OutputArgs, clock: &dyn Clock) -> Result<ExitCode> {
    let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?).await?;
    let rows = store.exemptions().await?;
    let now = stopd_audit::ts(clock.now());
    let mut out = std::io::stdout().lock();
    write_rows(
        &mut out,
        opts,
        &rows,
        Columns {
            names: &[
                "id",
                "pipeline",
                "rule",
                "until",
                "state",
                "reason",
                "created_by",
                "created_at",
                "revoked_by",
                "revoked_at",
                "revoke_reason",
            ],
            wide_only: &["created_at"],
            whole: &["id", "state", "until", "revoked_at"],
            to_the_minute: &["until", "revoked_at"],
        },
        |r| {
            let state = if r.revoked_at.is_some() {
                "revoked"
            } else if r.until <= now {
                "expired"
            } else {
                "active"
            };
            vec![
                r.id.to_string(),
                r.pipeline.clone(),
                // Empty: every rule (a fitted table leaves the column out when all are).
                r.rule.clone().unwrap_or_default(),
                r.until.clone(),
                state.into(),
                r.reason.clone(),
                r.created_by.clone(),
                r.created_at.clone(),
                r.revoked_by.clone().unwrap_or_default(),
                r.revoked_at.clone().unwrap_or_default(),
                r.revoke_reason.clone().unwrap_or_default(),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `stopd exempt revoke`.
async fn revoke(
    cfg: &Config,
    id: i64,
    reason: Option<&str>,
    clock: &dyn Clock,
) -> Result<ExitCode> {
    if reason.is_some_and(|r| r.trim().is_empty()) {
        return Err(UsageError("--reason must say why the exemption is revoked".into()).into());
    }
    let store = Store::open(crate::runtime::secrets::database(cfg)?).await?;
    let done = store
        .revoke_exemption(id, clock.now(), &user(), reason)
        .await?;
    store.close().await;
    match done {
        Revocation::Revoked => {}
        Revocation::NoSuchExemption => {
            return Err(UsageError(format!(
                "no exemption with id {id} (see `{}`)",
                crate::cli::hint("exempt list")
            ))
            .into());
        }
        Revocation::AlreadyRevoked => {
            return Err(UsageError(format!("exemption {id} is already revoked")).into());
        }
    }
    say(format_args!("exemption #{id} revoked"))?;
    Ok(ExitCode::SUCCESS)
}
