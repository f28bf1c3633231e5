//! The one-shot commands: check, plan, windows, stop, report, exempt.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use serde::Serialize;
use stopd_rules::select::Selector;
use stopd_rules::{Mode, Rule, Trigger, Verdict, rfc3339};
use tokio_util::sync::CancellationToken;

use crate::cli::UsageError;
use crate::cli::output::{self, Columns, Format, OutputArgs};
use crate::cli::time::{human, parse_instant, parse_span};
use crate::config::Config;
use crate::runtime::sweep::{self, Planned};
use stopd_audit::{AuditRecord, Lift, ReportFilter, Revocation, Store};

/// Who runs this command, for the audit log: the process's uid and its login name from the
/// password database, plus the user `SUDO_USER` names, recorded as a claim (any process can
/// set that variable; `USER` is not read at all).
fn user() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    actor(uid, &passwd, std::env::var("SUDO_USER").ok().as_deref())
}

/// [`user`] from its inputs.
fn actor(uid: Option<u32>, passwd: &str, sudo_user: Option<&str>) -> String {
    let Some(uid) = uid else {
        return "an unknown user".into();
    };
    let name = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then_some(name)
    });
    let mut who = match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    };
    if let Some(s) = sudo_user.filter(|s| !s.is_empty()) {
        who.push_str(&format!(", SUDO_USER={}", output::escape(s)));
    }
    who
}

/// Writes `bytes` to stdout (completions, the man page).
pub fn print(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A line on stdout; an error (a closed pipe) instead of `println!`'s panic.
fn say(line: std::fmt::Arguments<'_>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Rows as `opts` says, as [`output::write`] does; but a table of no rows says `no records`
/// (an empty screen reads as a hang or a crash). JSON stays `[]`, CSV its header.
pub fn write_rows<T: Serialize>(
    out: &mut impl Write,
    opts: OutputArgs,
    rows: &[T],
    columns: Columns<'_>,
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    if rows.is_empty() && opts.format == Format::Table {
        writeln!(out, "no records")?;
        return Ok(());
    }
    output::write(out, opts, rows, columns, cells)
}

/// Edits (insertions, deletions, substitutions) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (prev + cost).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The refusal of `--rule NAME` that names none of `known` (`of`: where they come from), with
/// the name most likely meant, and every name.
fn unknown_rule(rule: &str, known: &[&str], of: &str) -> UsageError {
    let near = known
        .iter()
        .map(|k| (edit_distance(&rule.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(2))
        .min();
    let mut names: Vec<&str> = known.to_vec();
    names.sort_unstable();
    names.dedup();
    UsageError(format!(
        "--rule {rule:?} is not a rule of {of}{}: its rules are {}",
        near.map_or(String::new(), |(_, k)| format!(" (did you mean {k:?}?)")),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// A time for a table: RFC 3339 UTC, or in `tz` with its offset.
fn shown(t: chrono::DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> String {
    match tz {
        Some(tz) => t
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        None => rfc3339(t),
    }
}

/// When a rule acts, in words: "every "0 18 * * FRI" (Europe/Berlin) for 2 d 14 h".
fn describe(rule: &Rule) -> String {
    match &rule.trigger {
        Trigger::Freeze { schedule, grace } => {
            let mut s = match schedule {
                stopd_rules::Schedule::Recurring { cron, duration, .. } => format!(
                    "every \"{}\" ({}) for {}",
                    cron.source(),
                    rule.timezone,
                    human(*duration)
                ),
                stopd_rules::Schedule::OneOff(w) => format!(
                    "from {} to {} ({})",
                    rfc3339(w.start),
                    rfc3339(w.end),
                    human(w.end - w.start)
                ),
            };
            if !grace.is_zero() {
                s.push_str(&format!(", grace {}", human(*grace)));
            }
            if let Some(g) = &rule.gate {
                match &g.stages {
                    None => s.push_str("; gates every stage after the first"),
                    Some(st) => s.push_str(&format!("; gates {}", st.join(", "))),
                }
            }
            s
        }
        Trigger::Timeout { max } => format!("runs longer than {}", human(*max)),
    }
}

/// Which pipelines a selector takes, in words: "prod-*, except prod-hotfix-*, tagged env=prod".
fn scope(sel: &Selector) -> String {
    let include = sel.include_globs();
    let mut s = if include.iter().any(|g| g == "*") {
        "every pipeline".to_string()
    } else {
        include.join(", ")
    };
    if !sel.exclude_globs().is_empty() {
        s.push_str(&format!(", except {}", sel.exclude_globs().join(", ")));
    }
    if !sel.tags().is_empty() {
        let tags: Vec<String> = sel.tags().iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(", tagged {}", tags.join(" and ")));
    }
    s
}

/// Where a rule applies, in words ("; in accounts payments-*, regions eu-*"), or nothing when
/// everywhere.
fn place(p: &stopd_rules::Place) -> String {
    let mut s = String::new();
    if let Some(a) = p.accounts() {
        s.push_str(&format!("; in accounts {}", a.join(", ")));
    }
    if let Some(r) = p.regions() {
        s.push_str(&format!("; in regions {}", r.join(", ")));
    }
    s
}

/// Why the current user cannot write the audit database, if so: the file, or the directory
/// (SQLite's WAL needs to create files beside it), or the nearest directory that exists (which
/// `run` would create it in).
fn database_not_writable(db: &std::path::Path) -> Option<String> {
    if db.exists()
        && let Err(e) = std::fs::OpenOptions::new().write(true).open(db)
    {
        return Some(format!("the file cannot be opened for writing ({e})"));
    }
    let mut dir = db.parent().filter(|d| !d.as_os_str().is_empty())?;
    while !dir.exists() {
        dir = dir.parent().filter(|d| !d.as_os_str().is_empty())?;
    }
    // An anonymous file (O_TMPFILE): nothing is left behind.
    match tempfile::tempfile_in(dir) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "the directory {} is not writable ({})",
            dir.display(),
            e.kind()
        )),
    }
}

/// `stopd check`.
pub async fn check(cfg: &Config) -> Result<ExitCode> {
    // Ad-hoc freezes in force are part of what is enforced now (read before stdout is locked).
    let adhoc = if cfg.daemon.database.exists() {
        match Store::open_read_only(&cfg.daemon.database).await {
            Ok(store) => {
                let r = store.active_freezes(Utc::now()).await;
                store.close().await;
                r.map_err(|e| format!("{e:#}"))
            }
            Err(e) => Err(format!("{e:#}")),
        }
    } else {
        Ok(Vec::new())
    };
    let mut out = std::io::stdout().lock();
    // Names, globs, tags and schedules come from the policy: escaped, like every text from
    // outside, and lines wrapped to the width tables fit.
    let esc = |s: &str| output::escape(s).into_owned();
    let width = OutputArgs::TABLE.width();
    let p = &cfg.policy;
    let count = |k: stopd_rules::RuleKind| p.rules().iter().filter(|r| r.kind == k).count();
    writeln!(out, "{}: OK", cfg.path.display())?;
    for w in &cfg.warnings {
        writeln!(
            out,
            "{}",
            output::paragraph("  warning: ", &esc(w), "    ", width)
        )?;
    }
    writeln!(
        out,
        "  {} freeze rule(s), {} timeout rule(s), {} exemption(s)",
        count(stopd_rules::RuleKind::Freeze),
        count(stopd_rules::RuleKind::Timeout),
        p.exemptions().len()
    )?;
    let line = format!(
        "sweeps on \"{}\" (UTC) and at every window edge; audit log {}{}",
        cfg.daemon.schedule.source(),
        cfg.daemon.database.display(),
        if cfg.daemon.dry_run {
            "; DRY RUN: nothing will be stopped"
        } else {
            ""
        }
    );
    writeln!(
        out,
        "{}",
        output::paragraph("  ", &esc(&line), "    ", width)
    )?;
    match (&cfg.aws.endpoint_url, &cfg.aws.region) {
        (Some(url), _) => writeln!(out, "  CodePipeline at {}", esc(url))?,
        (None, Some(r)) => writeln!(out, "  CodePipeline in {r}")?,
        (None, None) => writeln!(
            out,
            "  CodePipeline in the default region of the AWS config"
        )?,
    }
    if !cfg.accounts.is_empty() {
        let pairs: usize = cfg
            .accounts
            .iter()
            .map(|a| a.regions.as_ref().map_or(0, Vec::len))
            .sum();
        let line = format!(
            "{} account(s), {pairs} account-region pair(s), through STS{}:",
            cfg.accounts.len(),
            cfg.aws
                .sts_endpoint_url
                .as_ref()
                .map_or(String::new(), |u| format!(" at {u}"))
        );
        writeln!(
            out,
            "{}",
            output::paragraph("  ", &esc(&line), "    ", width)
        )?;
        for a in &cfg.accounts {
            let line = format!(
                "{} in {}: {}{}",
                a.name,
                a.regions.as_deref().unwrap_or_default().join(", "),
                a.role_arn,
                if a.external_id.is_some() {
                    " (with an external id)"
                } else {
                    ""
                }
            );
            writeln!(
                out,
                "{}",
                output::paragraph("    ", &esc(&line), "      ", width)
            )?;
        }
    }
    writeln!(out, "\nRules (ties: abandon wins, then this order):")?;
    let name_width = p
        .rules()
        .iter()
        .map(|r| esc(&r.name).chars().count())
        .chain(p.exemptions().iter().map(|e| esc(&e.name).chars().count()))
        .max()
        .unwrap_or(0)
        .max(12);
    // Continuation lines start under the description.
    let indent = " ".repeat(2 + 8 + name_width + 2 + 9);
    for r in p.rules() {
        let head = format!(
            "  {:<7} {:<name_width$}  {:<7}  ",
            r.kind.as_str(),
            esc(&r.name),
            r.mode.as_str(),
        );
        writeln!(
            out,
            "{}",
            output::paragraph(&head, &esc(&describe(r)), &indent, width)
        )?;
        let pipelines = format!(
            "pipelines: {}{}{}",
            scope(&r.selector),
            place(&r.place),
            if r.rollbacks {
                "; ROLLBACK executions too"
            } else {
                ""
            }
        );
        writeln!(
            out,
            "{}",
            output::paragraph(&indent, &esc(&pipelines), &indent, width)
        )?;
    }
    for e in p.exemptions() {
        let until = e
            .until
            .map_or("no end".to_string(), |u| format!("until {}", rfc3339(u)));
        let head = format!(
            "  {:<7} {:<name_width$}  {:<7}  ",
            "exempt",
            esc(&e.name),
            ""
        );
        let pipelines = format!(
            "pipelines: {}{}; {until}",
            scope(&e.selector),
            place(&e.place)
        );
        writeln!(
            out,
            "{}",
            output::paragraph(&head, &esc(&pipelines), &indent, width)
        )?;
    }
    match &adhoc {
        Ok(freezes) => {
            for f in freezes {
                let head = format!(
                    "  {:<7} {:<name_width$}  {:<7}  ",
                    "adhoc",
                    esc(&f.rule),
                    ""
                );
                let pipelines = format!(
                    "pipelines: {}; until {}; {}, by {}: {}",
                    f.pipeline, f.until, f.mode, f.created_by, f.reason
                );
                writeln!(
                    out,
                    "{}",
                    output::paragraph(&head, &esc(&pipelines), &indent, width)
                )?;
            }
        }
        Err(e) => writeln!(out, "  (ad-hoc freezes not shown: {e})")?,
    }
    let now = Utc::now();
    // Ten edges need at most six windows of a rule: the cost is bounded by the number of
    // rules, however dense their windows.
    let windows = p.windows_per_rule(now, now + Duration::days(366), 6);
    let mut edges: Vec<(chrono::DateTime<Utc>, &str, &str, chrono_tz::Tz)> = Vec::new();
    for w in &windows {
        if w.window.start > now {
            edges.push((w.window.start, "opens ", &w.rule, w.timezone));
        }
        // A freeze whose windows never leave a gap has no closing edge to show.
        if !w.without_gap {
            edges.push((w.window.end, "closes", &w.rule, w.timezone));
        }
    }
    edges.sort_by_key(|e| e.0);
    writeln!(out, "\nNext window transitions:")?;
    if edges.is_empty() {
        writeln!(out, "  none in the next 366 days")?;
    }
    for (t, what, rule, tz) in edges.iter().take(10) {
        // "Sun 02:30 CET, Europe/Berlin", but "UTC" once.
        let local = t.with_timezone(tz);
        let abbreviation = local.format("%Z").to_string();
        let zone = if abbreviation == tz.name() {
            abbreviation
        } else {
            format!("{abbreviation}, {tz}")
        };
        let line = format!(
            "{what} {}  ({} {zone})",
            esc(rule),
            local.format(if local.format("%S").to_string() == "00" {
                "%a %H:%M"
            } else {
                "%a %H:%M:%S"
            }),
        );
        let head = format!("  {}  ", rfc3339(*t));
        let indent = " ".repeat(head.len());
        writeln!(out, "{}", output::paragraph(&head, &line, &indent, width))?;
    }
    for w in &windows {
        if w.window.contains(now) && w.without_gap {
            writeln!(
                out,
                "\nIn force now: {} (its windows leave no gap in the next 366 days)",
                esc(&w.rule)
            )?;
        } else if w.window.contains(now) {
            writeln!(
                out,
                "\nIn force now: {} until {}",
                esc(&w.rule),
                rfc3339(w.window.end)
            )?;
        }
    }
    drop(out);
    if let Some(why) = database_not_writable(&cfg.daemon.database) {
        eprintln!(
            "stopd: warning: the audit database {} is not writable by {}:\n  \
             {why}.\n  \
             `run`, `stop` and `exempt` will fail as this user; `report` needs read access.\n  \
             Run them as the service's user (sudo), or, for a local try, copy the policy and\n  \
             set [daemon] database = \"./stopd-audit.db\" in the copy.",
            cfg.daemon.database.display(),
            user()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `plan` record.
#[derive(Debug, Serialize)]
struct PlanRecord {
    pipeline: String,
    execution_id: String,
    rule: String,
    rule_kind: String,
    mode: String,
    reason: String,
    explanation: String,
    account: String,
    region: String,
}

/// `stopd plan`: every account and region, each by the rules that select it.
pub async fn plan(cfg: &Config, at: Option<&str>, opts: OutputArgs) -> Result<ExitCode> {
    let now = Utc::now();
    let hypothetical = at.is_some();
    let at = match at {
        Some(t) => parse_instant("--at", t, cfg.policy.default_timezone(), now, false)?,
        None => now,
    };
    // Break-glass exemptions and ad-hoc freezes live in the database: no database yet means
    // none, but a database that cannot be read is an error, never a plan that silently leaves
    // them out.
    let (extra, policy, held) = if cfg.daemon.database.exists() {
        let why = "cannot read break-glass exemptions and ad-hoc freezes, so no plan can be made";
        let store = Store::open_read_only(&cfg.daemon.database)
            .await
            .context(why)?;
        let extra = store.active_exemptions(at).await.context(why)?;
        let policy = crate::runtime::freezes::effective_policy(&store, &cfg.policy, at)
            .await
            .context(why)?;
        let held = store.last_gates_everywhere().await.context(why)?;
        store.close().await;
        (extra, policy, held)
    } else {
        (Vec::new(), Arc::clone(&cfg.policy), Vec::new())
    };
    let cores = crate::runtime::targets::build(cfg, CancellationToken::new()).await;
    let many = cores.len() > 1;
    // Each account and region read at once.
    let mut set = tokio::task::JoinSet::new();
    for (i, core) in cores.iter().enumerate() {
        let (core, policy) = (
            core.clone(),
            Arc::new(policy.for_place(core.account(), core.region())),
        );
        set.spawn(async move {
            let found = core
                .discover(&|p| policy.may_apply_to(p), policy.uses_tags())
                .await;
            (i, policy, found)
        });
    }
    let mut places = Vec::new();
    while let Some(joined) = set.join_next().await {
        places.push(joined.context("a discovery task failed")?);
    }
    places.sort_by_key(|(i, ..)| *i);

    let mut rows: Vec<PlanRecord> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut gated: Vec<String> = Vec::new();
    let (mut seen, mut in_scope, mut running, mut failures, mut blind) = (0, 0, 0, 0, 0);
    for (i, policy, found) in places {
        let core = &cores[i];
        let place = if many {
            format!("{}: ", core.place())
        } else {
            String::new()
        };
        if let Some(e) = &found.listing_failed {
            if !many {
                anyhow::bail!("cannot list pipelines: {e}");
            }
            notes.push(format!(
                "  {place}cannot list pipelines: {}",
                output::escape(&e.explain())
            ));
            blind += 1;
            continue;
        }
        seen += found.pipelines_seen;
        in_scope += found.pipelines_in_scope;
        let in_progress: Vec<_> = found
            .executions
            .into_iter()
            .filter(|e| e.status == stopd_core::ActiveStatus::InProgress)
            .collect();
        running += in_progress.len();
        let (planned, others) = sweep::plan(&policy.decider(at), at, &in_progress, &extra);
        rows.extend(planned.into_iter().map(|p: Planned| PlanRecord {
            pipeline: p.pipeline,
            execution_id: p.execution_id,
            rule: p.rule,
            rule_kind: p.rule_kind,
            mode: p.mode.as_str().into(),
            reason: p.reason,
            explanation: p.explanation,
            account: core.account().to_string(),
            region: core.region().to_string(),
        }));
        for (i, v) in others {
            let e = &in_progress[i];
            let why = match v {
                Verdict::Exempt { exemption, rule } => {
                    format!("exempt by {exemption} (rule {rule} applies)")
                }
                Verdict::Grace { rule, until } => {
                    format!("in grace of {rule} until {}", shown(until, opts.tz))
                }
                Verdict::SparedRollback { rule } => {
                    format!("a ROLLBACK, spared by {rule} (set rollbacks = true to stop it)")
                }
                Verdict::Allow | Verdict::Stop(_) => continue,
            };
            notes.push(format!(
                "  not stopped: {place}{} {}: {why}",
                output::escape(&e.pipeline),
                e.execution_id
            ));
        }
        failures += found.failures.len();
        for f in &found.failures {
            notes.push(format!(
                "  could not read {place}{}: {}",
                output::escape(&f.pipeline),
                output::escape(&f.error.to_string())
            ));
        }
        // Gates: which pipelines' transitions a gating freeze holds closed then, and which
        // transitions stopd holds that it would open.
        for p in &found.pipelines {
            let holds = policy.gates(at, p, &core.tags_of(p), &extra);
            if let Some(h) = holds.first() {
                // Which transitions, read from the pipeline (a one-stage pipeline has no
                // inbound transition to gate); only planned: nothing is closed by `plan`.
                let mut calls = stopd_core::CallCounts::default();
                let names = match core.pipeline_state(p, &mut calls).await {
                    Ok(st) => Some(st.into_iter().map(|s| s.stage).collect::<Vec<_>>()),
                    Err(_) => None,
                };
                let line = match names.as_deref().map(|n| h.gate.stages_of(n)) {
                    Some(st) if st.is_empty() => format!(
                        "no gate to close: {place}{} {} (by {})",
                        output::escape(p),
                        if h.gate.stages.is_none() {
                            "has one stage, so no inbound transition to gate"
                        } else {
                            "has none of the gated stages"
                        },
                        h.rule
                    ),
                    Some(st) => format!(
                        "gate would close: {place}{} {} (by {})",
                        output::escape(p),
                        output::escape(&st.join(", ")),
                        h.rule
                    ),
                    None => format!(
                        "gate would close: {place}{} ({}) by {}",
                        output::escape(p),
                        match &h.gate.stages {
                            None => "every stage after the first".to_string(),
                            Some(s) => output::escape(&s.join(", ")).into_owned(),
                        },
                        h.rule
                    ),
                };
                gated.push(format!("  {line}"));
            }
        }
        for (account, region, p, stage, g) in &held {
            let here = account == core.account() && (region.is_empty() || region == core.region());
            if !here {
                continue;
            }
            let covered = !policy.gates(at, p, &core.tags_of(p), &extra).is_empty();
            if g.action == "disable" && g.outcome == "done" && !covered {
                gated.push(format!(
                    "  gate would open: {place}{} {} (held for {}, which no longer covers it)",
                    output::escape(p),
                    output::escape(stage),
                    g.rule
                ));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if opts.format == Format::Table && hypothetical {
        writeln!(
            out,
            "HYPOTHETICAL: the executions running now ({}), judged as if it were {}.\n\
             By then these may have finished and others started; `plan` without --at shows now.\n",
            shown(now, opts.tz),
            shown(at, opts.tz)
        )?;
    }
    // With one account, its name and region are in JSON and CSV, and in the wide table only.
    let wide_only: &[&str] = if many {
        &["rule_kind", "reason"]
    } else {
        &["rule_kind", "reason", "account", "region"]
    };
    output::write(
        &mut out,
        opts,
        &rows,
        Columns {
            // Account and region last: columns that scripts read by position stay where they were.
            names: &[
                "pipeline",
                "execution_id",
                "rule",
                "rule_kind",
                "mode",
                "reason",
                "explanation",
                "account",
                "region",
            ],
            // The explanation says what the reason says, and why.
            wide_only,
            whole: &[],
            to_the_minute: &[],
        },
        |r| {
            vec![
                r.pipeline.clone(),
                r.execution_id.clone(),
                r.rule.clone(),
                r.rule_kind.clone(),
                r.mode.clone(),
                r.reason.clone(),
                r.explanation.clone(),
                r.account.clone(),
                r.region.clone(),
            ]
        },
    )?;
    if opts.format == Format::Table {
        let width = opts.width();
        let footer = format!(
            "{} {}: {} pipelines ({} in scope){}, {} executions in progress{}, {} would be stopped{}.",
            if hypothetical {
                "Hypothetically, at"
            } else {
                "At"
            },
            shown(at, opts.tz),
            seen,
            in_scope,
            if many {
                format!(" in {} accounts and regions", cores.len())
            } else {
                String::new()
            },
            running,
            if hypothetical { " now" } else { "" },
            rows.len(),
            if hypothetical { " then" } else { "" },
        );
        writeln!(out, "\n{}", output::paragraph("", &footer, "", width))?;
        // Notes and gates: "  " and their text, continued deeper.
        let indented = |line: &str| {
            let text = line.strip_prefix("  ").unwrap_or(line);
            output::paragraph("  ", text, "    ", width)
        };
        for line in notes {
            writeln!(out, "{}", indented(&line))?;
        }
        if !gated.is_empty() {
            writeln!(out, "Gates{}:", if hypothetical { " then" } else { "" })?;
            for line in gated {
                writeln!(out, "{}", indented(&line))?;
            }
        }
    }
    Ok(if failures == 0 && blind == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A `windows` record.
#[derive(Debug, Serialize)]
struct WindowRecord {
    rule: String,
    start: String,
    end: String,
    timezone: String,
    start_local: String,
    end_local: String,
    /// Weekdays it spans in the rule's zone: `Fri-Mon`, `Sat`.
    weekday: String,
    /// Its length in words: `2 d 14 h`.
    duration: String,
    /// The freeze also holds new work at stage transitions.
    gate: bool,
}

/// The most windows `stopd windows` lists at once.
const WINDOWS_MAX: usize = 10_000;

/// `stopd windows`.
pub async fn windows(
    cfg: &Config,
    from: Option<&str>,
    days: u32,
    opts: OutputArgs,
) -> Result<ExitCode> {
    let now = Utc::now();
    let from = match from {
        Some(t) => parse_instant("--from", t, cfg.policy.default_timezone(), now, false)?,
        None => now,
    };
    let to = from + Duration::days(i64::from(days));
    // Ad-hoc freezes (`stopd freeze add`) are one-off windows named adhoc-ID.
    let policy = if cfg.daemon.database.exists() {
        let store = Store::open_read_only(&cfg.daemon.database)
            .await
            .context("cannot read the ad-hoc freezes")?;
        let freezes = store.freezes_between(from, to).await?;
        store.close().await;
        crate::runtime::freezes::with_freezes(&cfg.policy, &freezes)?
    } else {
        Arc::clone(&cfg.policy)
    };
    let local = |t: chrono::DateTime<Utc>, tz: chrono_tz::Tz| {
        t.with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    let weekdays = |w: stopd_rules::Window, tz: chrono_tz::Tz| {
        let first = w.start.with_timezone(&tz).format("%a").to_string();
        // The end is exclusive: a window that ends at Monday 00:00 ends on Sunday.
        let last = (w.end - Duration::seconds(1))
            .with_timezone(&tz)
            .format("%a")
            .to_string();
        if first == last && w.end - w.start < Duration::days(1) {
            first
        } else {
            format!("{first}-{last}")
        }
    };
    // Only the windows shown are computed; a listing that reaches the cap says so.
    let mut windows = policy.windows_first(from, to, WINDOWS_MAX + 1);
    if windows.len() > WINDOWS_MAX {
        windows.truncate(WINDOWS_MAX);
        let last = windows.last().map(|w| rfc3339(w.window.start));
        eprintln!(
            "stopd: showing the first {WINDOWS_MAX} windows (to {}); use --from and --days to see later ones",
            last.unwrap_or_default()
        );
    }
    let rows: Vec<WindowRecord> = windows
        .into_iter()
        .map(|w| WindowRecord {
            start: rfc3339(w.window.start),
            end: rfc3339(w.window.end),
            start_local: local(w.window.start, w.timezone),
            end_local: local(w.window.end, w.timezone),
            timezone: w.timezone.name().to_string(),
            weekday: weekdays(w.window, w.timezone),
            duration: human(w.window.end - w.window.start),
            gate: policy.rule(&w.rule).is_some_and(|r| r.gate.is_some()),
            rule: w.rule,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    output::write(
        &mut out,
        opts,
        &rows,
        Columns {
            names: &[
                "rule",
                "start",
                "end",
                "timezone",
                "start_local",
                "end_local",
                "weekday",
                "duration",
                "gate",
            ],
            // The local times carry their UTC offset; the zone is the rule's (in --wide).
            wide_only: &["start", "end", "timezone", "gate"],
            whole: &["start_local", "end_local"],
            to_the_minute: &["start_local", "end_local"],
        },
        |r| {
            vec![
                r.rule.clone(),
                r.start.clone(),
                r.end.clone(),
                r.timezone.clone(),
                r.start_local.clone(),
                r.end_local.clone(),
                r.weekday.clone(),
                r.duration.clone(),
                r.gate.to_string(),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `stopd stop`.
pub async fn stop(
    cfg: &Config,
    pipeline: &str,
    execution: &str,
    abandon: bool,
    reason: &str,
    place: (Option<&str>, Option<&str>),
) -> Result<ExitCode> {
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    // What CodePipeline's model would refuse is refused here, before anything is recorded: a
    // typo is not a `rejected` stop in the audit log.
    check_stop_target(pipeline, execution)?;
    let cores = crate::runtime::targets::build(cfg, CancellationToken::new()).await;
    let core = crate::runtime::targets::pick(&cores, place.0, place.1).map_err(UsageError)?;
    let store = Store::open(&cfg.daemon.database).await?;
    let mode = if abandon { Mode::Abandon } else { Mode::Finish };
    let done = sweep::execute(
        core,
        &store,
        None,
        Planned {
            pipeline: pipeline.into(),
            execution_id: execution.into(),
            rule: "manual".into(),
            rule_kind: "manual".into(),
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
    Ok(stop_exit_code(done.stop_id.is_some(), &done.outcome))
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

/// What `stopd report` was asked.
#[derive(Debug)]
pub struct ReportQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub pipeline: Option<String>,
    pub rule: Option<String>,
    /// Account-name glob (`default`: the ambient account).
    pub account: Option<String>,
    /// Region glob.
    pub region: Option<String>,
    pub outcome: Option<OutcomeArg>,
    pub output: OutputArgs,
    pub summary: bool,
    pub sweeps: bool,
    pub gates: bool,
    pub events: bool,
    pub coverage: bool,
    pub fail_on_gap: bool,
}

/// Every outcome a stop in the audit log can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum OutcomeArg {
    /// The API accepted the stop.
    Stopped,
    /// A stop was already under way (done, not an error).
    AlreadyStopping,
    /// It finished first (done, not an error).
    NotStoppable,
    /// The pipeline does not exist.
    PipelineNotFound,
    /// The API refused it for good (validation, permissions).
    Rejected,
    /// Retries or the deadline ran out.
    Failed,
    /// Decided and recorded; never sent.
    DryRun,
    /// Recorded, outcome not yet known (a stop in flight, or one a crash interrupted).
    Pending,
}

impl OutcomeArg {
    /// The name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeArg::Stopped => "stopped",
            OutcomeArg::AlreadyStopping => "already_stopping",
            OutcomeArg::NotStoppable => "not_stoppable",
            OutcomeArg::PipelineNotFound => "pipeline_not_found",
            OutcomeArg::Rejected => "rejected",
            OutcomeArg::Failed => "failed",
            OutcomeArg::DryRun => "dry_run",
            OutcomeArg::Pending => "pending",
        }
    }
}

/// A `report --summary` record: stops sent and dry runs (decided, recorded, never sent) apart.
#[derive(Debug, Default, Serialize)]
struct SummaryRecord {
    by: &'static str,
    key: String,
    /// Every record: `stops + dry_runs`.
    count: usize,
    /// Stops sent to CodePipeline, whatever their outcome.
    stops: usize,
    /// Dry runs.
    dry_runs: usize,
}

/// `stopd report`.
pub async fn report(cfg: &Config, q: &ReportQuery) -> Result<ExitCode> {
    let now = Utc::now();
    // Bare dates and local date-times are read in [defaults] timezone (DESIGN.md).
    let tz = cfg.policy.default_timezone();
    let since = q
        .since
        .as_deref()
        .map(|t| parse_instant("--since", t, tz, now, true))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|t| parse_instant("--until", t, tz, now, true))
        .transpose()?;
    if let Some(e) = &cfg.policy_error
        && (q.coverage || q.output.format == Format::Html)
    {
        // Without the rules there are no freeze windows: coverage would find no gap to report.
        return Err(e
            .refusing("report --coverage and --format html need the freeze windows of the policy")
            .into());
    }
    let store = Store::open_read_only(&cfg.daemon.database).await?;
    if let Some(rule) = q.rule.as_deref() {
        // A rule of the policy, or one the log knows (since renamed or removed), or `manual`.
        let logged = store.rule_names().await?;
        let mut known: Vec<&str> = cfg.policy.rules().iter().map(|r| r.name.as_str()).collect();
        known.extend(logged.iter().map(String::as_str));
        known.push("manual");
        if !known.contains(&rule) {
            let of = format!("{} nor of the audit log", cfg.path.display());
            return Err(unknown_rule(rule, &known, &of).into());
        }
    }
    let mut out = std::io::stdout().lock();
    if q.output.format == Format::Html {
        let page = crate::cli::html::Page {
            since,
            until,
            rule: q.rule.as_deref(),
            tz: q.output.tz,
        };
        return crate::cli::html::report(cfg, &store, &page, &mut out).await;
    }
    if q.coverage {
        let c = crate::cli::auditor::CoverageQuery {
            since,
            until,
            rule: q.rule.as_deref(),
            fail_on_gap: q.fail_on_gap,
        };
        return crate::cli::auditor::coverage(cfg, &store, &c, now, q.output, &mut out).await;
    }
    if q.events {
        return crate::cli::auditor::events(&store, since, until, q.output, &mut out).await;
    }
    if q.gates {
        let rows = store
            .gate_records(
                since,
                until,
                q.pipeline.as_deref(),
                q.rule.as_deref(),
                (q.account.as_deref(), q.region.as_deref()),
            )
            .await?;
        write_rows(
            &mut out,
            q.output,
            &rows,
            Columns {
                names: &[
                    "at", "pipeline", "stage", "rule", "action", "outcome", "error", "reason",
                    "id", "account", "region",
                ],
                wide_only: &["reason", "id", "account", "region"],
                whole: &["at", "action", "outcome"],
                to_the_minute: &[],
            },
            |r| {
                vec![
                    r.at.clone(),
                    r.pipeline.clone(),
                    r.stage.clone(),
                    r.rule.clone(),
                    r.action.clone(),
                    r.outcome.clone(),
                    r.error.clone().unwrap_or_default(),
                    r.reason.clone(),
                    r.id.to_string(),
                    r.account.clone().unwrap_or_default(),
                    r.region.clone().unwrap_or_default(),
                ]
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if q.sweeps {
        let rows = store.sweeps(since, until).await?;
        let opt = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
        write_rows(
            &mut out,
            q.output,
            &rows,
            Columns {
                names: &[
                    "id",
                    "started_at",
                    "finished_at",
                    "trigger",
                    "sweeps",
                    "dry_run",
                    "duration_ms",
                    "pipelines_seen",
                    "executions_seen",
                    "stops_decided",
                    "api_calls",
                    "throttled",
                    "errors",
                    "error",
                    "result",
                ],
                wide_only: &[
                    "finished_at",
                    "dry_run",
                    "duration_ms",
                    "api_calls",
                    "throttled",
                    "result",
                ],
                whole: &["started_at"],
                to_the_minute: &["started_at"],
            },
            |r| {
                vec![
                    r.id.to_string(),
                    r.started_at.clone(),
                    r.finished_at
                        .clone()
                        .unwrap_or_else(|| "(unfinished)".into()),
                    r.trigger.clone(),
                    r.sweeps.to_string(),
                    r.dry_run.to_string(),
                    opt(r.duration_ms),
                    opt(r.pipelines_seen),
                    opt(r.executions_seen),
                    opt(r.stops_decided),
                    opt(r.api_calls),
                    opt(r.throttled),
                    opt(r.errors),
                    r.error.clone().unwrap_or_default(),
                    r.result.unwrap_or("").to_string(),
                ]
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let records = store
        .report(&ReportFilter {
            since,
            until,
            pipeline: q.pipeline.clone(),
            rule: q.rule.clone(),
            outcome: q.outcome.map(|o| o.as_str().to_string()),
            account: q.account.clone(),
            region: q.region.clone(),
        })
        .await?;
    if q.summary {
        // A dry run decided a stop and sent none: counted apart, never as a stop.
        let mut counts: BTreeMap<(&'static str, String), (usize, usize)> = BTreeMap::new();
        for r in &records {
            let dry = r.outcome == "dry_run";
            for key in [
                ("rule", r.rule.clone()),
                ("pipeline", r.pipeline.clone()),
                ("outcome", r.outcome.clone()),
                ("day", r.at.get(..10).unwrap_or(&r.at).to_string()),
            ] {
                let c = counts.entry(key).or_default();
                if dry {
                    c.1 += 1;
                } else {
                    c.0 += 1;
                }
            }
        }
        let order = |b: &str| {
            ["rule", "pipeline", "outcome", "day"]
                .iter()
                .position(|x| *x == b)
        };
        let mut rows: Vec<SummaryRecord> = counts
            .into_iter()
            .map(|((by, key), (stops, dry_runs))| SummaryRecord {
                by,
                key,
                count: stops + dry_runs,
                stops,
                dry_runs,
            })
            .collect();
        rows.sort_by(|a, b| order(a.by).cmp(&order(b.by)).then(a.key.cmp(&b.key)));
        write_rows(
            &mut out,
            q.output,
            &rows,
            // Stops and dry runs after count: CSV columns read by position stay where they were.
            Columns {
                wide_only: &["count"],
                ..Columns::all(&["by", "key", "count", "stops", "dry_runs"])
            },
            |r| {
                vec![
                    r.by.to_string(),
                    r.key.clone(),
                    r.count.to_string(),
                    r.stops.to_string(),
                    r.dry_runs.to_string(),
                ]
            },
        )?;
        if q.output.format == Format::Table && !records.is_empty() {
            let dry = records.iter().filter(|r| r.outcome == "dry_run").count();
            writeln!(
                out,
                "\n{} stop(s) and {dry} dry run(s) in total",
                records.len() - dry
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    write_audit(&mut out, q.output, &records)?;
    Ok(ExitCode::SUCCESS)
}

/// Audit records as `stopd report` (and the demo) print them.
pub fn write_audit(out: &mut impl Write, opts: OutputArgs, records: &[AuditRecord]) -> Result<()> {
    // Account and region are table columns once some stop was made outside the one ambient
    // account; JSON and CSV always carry them.
    let many = records.iter().any(|r| {
        r.account
            .as_deref()
            .is_some_and(|a| a != stopd_audit::Place::DEFAULT_ACCOUNT)
    });
    let mut wide_only = vec![
        "rule_kind",
        "mode",
        "attempts",
        "id",
        "completed_at",
        "throttled",
        "reconciled",
        "escalation_of",
        "sweep_id",
        "explanation",
    ];
    if !many {
        wide_only.extend(["account", "region"]);
    } else {
        // Several accounts in one region (the demo's): the region says nothing a table needs.
        let mut regions = records.iter().map(|r| r.region.as_deref());
        let first = regions.next().flatten();
        if regions.all(|r| r == first) {
            wide_only.push("region");
        }
    }
    write_rows(
        out,
        opts,
        records,
        Columns {
            // Every field of the JSON record (a test holds CSV and JSON together).
            names: &[
                "at",
                "pipeline",
                "execution_id",
                "rule",
                "rule_kind",
                "mode",
                "outcome",
                "attempts",
                "reason",
                "error",
                "id",
                "completed_at",
                "throttled",
                "reconciled",
                "escalation_of",
                "sweep_id",
                "explanation",
                "account",
                "region",
            ],
            wide_only: &wide_only,
            whole: &["at", "outcome"],
            to_the_minute: &[],
        },
        |r| {
            vec![
                r.at.clone(),
                r.pipeline.clone(),
                r.execution_id.clone(),
                r.rule.clone(),
                r.rule_kind.clone(),
                r.mode.clone(),
                r.outcome.clone(),
                r.attempts.to_string(),
                r.reason.clone(),
                r.error.clone().unwrap_or_default(),
                r.id.to_string(),
                r.completed_at.clone().unwrap_or_default(),
                r.throttled.to_string(),
                r.reconciled.to_string(),
                r.escalation_of.map_or(String::new(), |v| v.to_string()),
                r.sweep_id.map_or(String::new(), |v| v.to_string()),
                r.explanation.clone(),
                r.account.clone().unwrap_or_default(),
                r.region.clone().unwrap_or_default(),
            ]
        },
    )
}

/// The break-glass exemptions and the policy (with its ad-hoc freezes) in force at `now`: none
/// and the file's without a database yet.
async fn in_force(
    cfg: &Config,
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<stopd_rules::Exemption>, Arc<stopd_rules::Policy>)> {
    if !cfg.daemon.database.exists() {
        return Ok((Vec::new(), Arc::clone(&cfg.policy)));
    }
    let why = "cannot read break-glass exemptions and ad-hoc freezes for the preview";
    let store = Store::open_read_only(&cfg.daemon.database)
        .await
        .context(why)?;
    let extra = store.active_exemptions(now).await.context(why)?;
    let policy = crate::runtime::freezes::effective_policy(&store, &cfg.policy, now)
        .await
        .context(why)?;
    store.close().await;
    Ok((extra, policy))
}

/// Prints `preview`; refuses (exit 2, nothing recorded) when it needs `--yes` and has none.
fn confirm(
    preview: &crate::cli::preview::Preview,
    headings: [&str; 3],
    counts_executions: bool,
    yes: bool,
    what: &str,
) -> Result<()> {
    preview.print(&mut std::io::stdout().lock(), headings)?;
    if let Some(why) = preview.needs_yes(counts_executions) {
        if !yes {
            return Err(UsageError(format!(
                "{why}: nothing was recorded. Add --yes to {what} anyway"
            ))
            .into());
        }
        say(format_args!("--yes given: going ahead ({why})"))?;
    }
    Ok(())
}

/// What `stopd exempt add` was asked.
#[derive(Debug)]
pub struct ExemptRequest<'a> {
    pub glob: &'a str,
    pub for_: Option<&'a str>,
    pub until: Option<&'a str>,
    pub reason: &'a str,
    /// Only this rule; `None`: every rule.
    pub rule: Option<&'a str>,
    /// Confirms an exemption of every pipeline, of more than a week, or a wide one (see
    /// [`crate::cli::preview`]).
    pub yes: bool,
}

/// The longest exemption (days) made without `--yes`.
const EXEMPT_WITHOUT_YES: i64 = 7;

/// `stopd exempt add`.
pub async fn exempt_add(cfg: &Config, r: &ExemptRequest<'_>) -> Result<ExitCode> {
    let now = Utc::now();
    let glob = r.glob;
    let until = match (r.for_, r.until) {
        (Some(span), _) => now + parse_span("--for", span)?.delta(),
        (None, Some(t)) => parse_instant("--until", t, cfg.policy.default_timezone(), now, false)?,
        (None, None) => unreachable!("clap requires one"),
    };
    if until <= now {
        return Err(UsageError(format!("--until {} is not in the future", rfc3339(until))).into());
    }
    if r.reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    let probe = stopd_rules::Exemption::break_glass("check", glob, until, r.reason)
        .map_err(|e| UsageError(format!("--pipeline {glob:?}: {e}")))?
        .only_rule(r.rule.map(str::to_string));
    // A rule name cannot be checked against a policy that does not validate, and a misspelt
    // one would exempt nothing: refused, with the way that needs no policy.
    if let (Some(rule), Some(e)) = (r.rule, &cfg.policy_error) {
        return Err(e
            .refusing(&format!(
                "exempt add --rule {rule:?} needs the policy's rules to check the name against; \
                 leave out --rule to exempt the pipelines from every rule, or fix the file"
            ))
            .into());
    }
    if let Some(rule) = r.rule
        && !cfg.policy.rules().iter().any(|x| x.name == rule)
    {
        let names: Vec<&str> = cfg.policy.rules().iter().map(|x| x.name.as_str()).collect();
        return Err(unknown_rule(rule, &names, &cfg.path.display().to_string()).into());
    }
    let from = match r.rule {
        Some(rule) => format!("rule {rule}"),
        None => "every rule".to_string(),
    };
    if !r.yes {
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
        r.yes,
        "exempt them",
    )?;
    let store = Store::open(&cfg.daemon.database).await?;
    let id = store
        .add_exemption(now, glob, until, r.reason, &user(), r.rule)
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
pub async fn exempt_list(cfg: &Config, opts: OutputArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&cfg.daemon.database).await?;
    let rows = store.exemptions().await?;
    let now = stopd_audit::ts(Utc::now());
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
pub async fn exempt_revoke(cfg: &Config, id: i64, reason: Option<&str>) -> Result<ExitCode> {
    if reason.is_some_and(|r| r.trim().is_empty()) {
        return Err(UsageError("--reason must say why the exemption is revoked".into()).into());
    }
    let store = Store::open(&cfg.daemon.database).await?;
    let done = store
        .revoke_exemption(id, Utc::now(), &user(), reason)
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

/// `stopd freeze add`, as asked.
#[derive(Debug)]
pub struct FreezeRequest<'a> {
    pub glob: &'a str,
    pub exclude: Option<&'a str>,
    /// `KEY=VALUE` each.
    pub tags: &'a [String],
    pub for_: Option<&'a str>,
    pub until: Option<&'a str>,
    pub reason: &'a str,
    /// `finish` or `abandon`; `None`: `[defaults] mode`.
    pub mode: Option<&'a str>,
    pub gate: bool,
    /// Only accounts matching this glob (`[[account]] name`).
    pub account: Option<&'a str>,
    /// Only regions matching this glob.
    pub region: Option<&'a str>,
    /// Confirms a freeze of every pipeline, of more than a day, or a wide one (see
    /// [`crate::cli::preview`]).
    pub yes: bool,
}

/// The longest ad-hoc freeze (hours) made without `--yes`.
const FREEZE_WITHOUT_YES: i64 = 24;

/// `stopd freeze add`: stop the line.
pub async fn freeze_add(cfg: &Config, r: &FreezeRequest<'_>) -> Result<ExitCode> {
    let now = Utc::now();
    let until = match (r.for_, r.until) {
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
    if r.reason.trim().is_empty() {
        return Err(UsageError("--reason must say why".into()).into());
    }
    let mut tags = BTreeMap::new();
    for t in r.tags {
        let Some((k, v)) = t.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(UsageError(format!("--tag {t:?} is not KEY=VALUE")).into());
        };
        tags.insert(k.to_string(), v.to_string());
    }
    let mode = match r.mode {
        Some("abandon") => Mode::Abandon,
        Some(_) => Mode::Finish,
        None => cfg.policy.default_mode(),
    };
    if !r.yes {
        if !r.glob.is_empty()
            && r.glob.chars().all(|c| c == '*')
            && r.exclude.is_none()
            && tags.is_empty()
        {
            return Err(UsageError(format!(
                "--pipeline {:?} freezes every pipeline until {}: every running execution is \
                 stopped. Add --yes if that is what you mean",
                r.glob,
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
        pipeline: r.glob,
        exclude: r.exclude,
        tags: &tags,
        mode,
        gate: r.gate,
        account: r.account,
        region: r.region,
        reason: r.reason,
        by: &by,
    };
    // Checked as the daemon will read it, before it is recorded: a glob that does not compile
    // is a usage error, not a freeze every sweep refuses.
    let probe = stopd_audit::FreezeRecord {
        id: 0,
        rule: stopd_audit::rule_name(0),
        created_at: stopd_audit::ts(now),
        until: stopd_audit::ts(until),
        pipeline: r.glob.to_string(),
        exclude: r.exclude.map(str::to_string),
        tags: tags.clone(),
        mode: mode.as_str().into(),
        gate: r.gate,
        account: r.account.map(str::to_string),
        region: r.region.map(str::to_string),
        reason: r.reason.to_string(),
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
    if r.account.is_some() || r.region.is_some() {
        let place = stopd_rules::select::Place::new(
            r.account.map(|a| vec![a.to_string()]).as_deref(),
            r.region.map(|g| vec![g.to_string()]).as_deref(),
        )
        .map_err(|e| UsageError(format!("--account/--region: {e}")))?;
        // A region the SDK's chain picks is not known here: only the account is checked.
        let account_only = stopd_rules::select::Place::new(
            r.account.map(|a| vec![a.to_string()]).as_deref(),
            None,
        )
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
                r.account.unwrap_or("*"),
                r.region.unwrap_or("*"),
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
            if r.gate {
                "stage transitions closed (--gate)"
            } else {
                ""
            },
        ],
        true,
        r.yes,
        "freeze",
    )?;
    let store = Store::open(&cfg.daemon.database).await?;
    let id = store.add_freeze(&new).await?;
    store.close().await;
    say(format_args!(
        "freeze #{id} ({}): pipelines {:?}{}{} are frozen until {} ({}), mode {}{}; a running \
         daemon stops their executions within seconds",
        stopd_audit::rule_name(id),
        r.glob,
        r.exclude
            .map(|e| format!(" except {e:?}"))
            .unwrap_or_default(),
        place_words(r.account, r.region),
        rfc3339(until),
        human(until - now),
        mode.as_str(),
        if r.gate { ", gated" } else { "" }
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

/// ` in account A region R` for a freeze limited to some; empty for one everywhere.
pub(crate) fn place_words(account: Option<&str>, region: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(a) = account {
        s.push_str(&format!(" in account {a}"));
    }
    if let Some(g) = region {
        s.push_str(&format!(" in region {g}"));
    }
    s
}

/// `stopd freeze list`.
pub async fn freeze_list(cfg: &Config, opts: OutputArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&cfg.daemon.database).await?;
    let rows = store.freezes().await?;
    store.close().await;
    let now = Utc::now();
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
pub async fn freeze_lift(cfg: &Config, id: i64, reason: &str) -> Result<ExitCode> {
    if reason.trim().is_empty() {
        return Err(UsageError("--reason must say why the freeze is lifted early".into()).into());
    }
    let store = Store::open(&cfg.daemon.database).await?;
    match store.lift_freeze(id, Utc::now(), reason, &user()).await? {
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
    use super::*;

    /// `created_by` was `SUDO_USER`, else `USER`, else the pid dressed as a uid: whatever the
    /// environment claimed. Now the uid and its passwd name, and SUDO_USER as a claim.
    #[test]
    fn the_actor_is_the_real_uid_and_sudo_user_only_a_claim() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(actor(Some(1000), passwd, None), "alice (uid 1000)");
        assert_eq!(
            actor(Some(0), passwd, Some("mallory")),
            "root (uid 0), SUDO_USER=mallory"
        );
        assert_eq!(actor(Some(4242), passwd, Some("")), "uid 4242");
        assert_eq!(
            actor(Some(0), passwd, Some("x\u{1b}[31m")),
            "root (uid 0), SUDO_USER=x\\u{1b}[31m"
        );
    }

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

    #[test]
    fn every_outcome_of_the_schema_is_a_report_filter() {
        use clap::ValueEnum;
        let names: Vec<&str> = OutcomeArg::value_variants()
            .iter()
            .map(|o| o.as_str())
            .collect();
        let migration = include_str!("../../../../migrations/20261126000001_audit.sql");
        let check = migration
            .split("outcome     TEXT    NOT NULL CHECK (outcome IN (")
            .nth(1)
            .and_then(|rest| rest.split("))").next())
            .expect("the outcome CHECK of stop_outcomes");
        for o in check.split(',').map(|o| o.trim().trim_matches('\'')) {
            assert!(names.contains(&o), "{o:?} missing from report --outcome");
        }
        assert!(names.contains(&"pending"));
        for o in OutcomeArg::value_variants() {
            let v = o.to_possible_value().unwrap();
            assert_eq!(v.get_name(), o.as_str());
        }
    }

    #[test]
    fn scopes_read_as_sentences() {
        let sel = Selector::new(
            &["prod-*".into()],
            &["prod-hotfix-*".into()],
            [("env".to_string(), "prod".to_string())].into(),
        )
        .unwrap();
        assert_eq!(scope(&sel), "prod-*, except prod-hotfix-*, tagged env=prod");
        let all = Selector::new(&["*".into()], &[], Default::default()).unwrap();
        assert_eq!(scope(&all), "every pipeline");
        let p = stopd_rules::Place::new(Some(&["payments-*".to_string()]), None).unwrap();
        assert_eq!(place(&p), "; in accounts payments-*");
        assert_eq!(place(&stopd_rules::Place::default()), "");
    }
}
