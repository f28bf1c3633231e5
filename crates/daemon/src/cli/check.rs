//! `stopd check`: validate the policy file, print each rule, its scope and the next window
//! transitions.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use stopd_audit::Store;
use stopd_rules::select::Selector;
use stopd_rules::{Rule, Schedule, Trigger, rfc3339};

use crate::cli::common::user;
use crate::cli::output::{self, OutputArgs};
use crate::cli::time::human;
use crate::clock::Clock;
use crate::config::Config;
use crate::runtime::secrets;

pub(super) const CHECK_EXAMPLES: &str = "\
Examples:
  # Validate the installed policy (systemd's ExecStartPre does this)
  stopd check
  # Validate a policy before installing it
  stopd --config ./stopd.toml check";

/// When a schedule's windows are, in words: "every "0 18 * * FRI" (Europe/Berlin) for 2 d 14 h".
fn schedule_words(schedule: &Schedule, tz: chrono_tz::Tz, now: DateTime<Utc>) -> String {
    match schedule {
        Schedule::Recurring {
            cron,
            end_cron: Some(end),
            ..
        } => format!(
            "every \"{}\" until \"{}\" ({tz})",
            cron.source(),
            end.cron().source(),
        ),
        Schedule::Recurring { cron, duration, .. } => format!(
            "every \"{}\" ({tz}) for {}",
            cron.source(),
            human(*duration)
        ),
        Schedule::OneOff(w) => format!(
            "from {} to {} ({})",
            rfc3339(w.start),
            rfc3339(w.end),
            human(w.end - w.start)
        ),
        // An allow rule: frozen outside its windows.
        Schedule::Outside(inner) => {
            format!(
                "allowed {}; frozen otherwise",
                schedule_words(inner, tz, now)
            )
        }
        // A calendar: how many events, and its next window after `now`.
        Schedule::Calendar(c) => {
            let events = match c.events {
                1 => "1 event".to_string(),
                n => format!("{n} events"),
            };
            let next = match c.windows_from(now).next() {
                Some(w) if w.start <= now => format!("in force until {}", rfc3339(w.end)),
                Some(w) => format!(
                    "next window from {} to {} ({})",
                    rfc3339(w.start),
                    rfc3339(w.end),
                    human(w.end - w.start)
                ),
                None => "no window after now".to_string(),
            };
            format!("ics {}: {events}, {next} ({tz})", c.path)
        }
        // A Change Calendar: `check` makes no AWS call; the sweep asks it.
        Schedule::ChangeCalendar(c) => format!(
            "while the SSM Change Calendar {} is CLOSED (GetCalendarState, asked at each sweep; not asked by check)",
            c.name()
        ),
    }
}

/// When a rule acts, in words: "every "0 18 * * FRI" (Europe/Berlin) for 2 d 14 h"; an `ics`
/// rule with its next window after `now`.
fn describe(rule: &Rule, now: DateTime<Utc>) -> String {
    match &rule.trigger {
        Trigger::Freeze { schedule, grace } => {
            let mut s = schedule_words(schedule, rule.timezone, now);
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

/// `stopd check`: first reads every secret file `run` needs (exit 78 naming any it cannot).
pub(super) async fn run(cfg: Config, clock: &dyn Clock) -> Result<ExitCode> {
    secrets::check(&cfg)?;
    let mut cfg = cfg;
    cfg.warnings.extend(secrets::warnings(&cfg));
    let cfg = &cfg;
    // Ad-hoc freezes in force are part of what is enforced now (read before stdout is locked).
    let adhoc = if cfg.daemon.database.exists() {
        match Store::open_read_only(secrets::database(cfg)?).await {
            Ok(store) => {
                let r = store.active_freezes(clock.now()).await;
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
    let count = |k: stopd_rules::RuleKind| {
        let rules = p.rules().iter().filter(|r| r.kind == k && !r.is_allow());
        rules.count()
    };
    let allow_rules = p.rules().iter().filter(|r| r.is_allow()).count();
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
        "  {} freeze rule(s), {}{} timeout rule(s), {} exemption(s)",
        count(stopd_rules::RuleKind::Freeze),
        match allow_rules {
            0 => String::new(),
            n => format!("{n} allow rule(s), "),
        },
        count(stopd_rules::RuleKind::Timeout),
        p.exemptions().len()
    )?;
    let line = format!(
        "sweeps on \"{}\" (UTC) and at every window edge; audit log {}{}",
        cfg.daemon.schedule.source(),
        cfg.daemon.database,
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
            if r.is_allow() {
                "allow"
            } else {
                r.kind.as_str()
            },
            esc(&r.name),
            r.mode.as_str(),
        );
        writeln!(
            out,
            "{}",
            output::paragraph(&head, &esc(&describe(r, clock.now())), &indent, width)
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
    let now = clock.now();
    // Ten edges need at most six windows of a rule: the cost is bounded by the number of
    // rules, however dense their windows.
    let windows = p.windows_per_rule(now, now + Duration::days(366), 6);
    let mut edges: Vec<(DateTime<Utc>, &str, &str, chrono_tz::Tz)> = Vec::new();
    let allow = |rule: &str| p.rule(rule).is_some_and(Rule::is_allow);
    for w in &windows {
        // An allow rule's freeze starts when its window closes, and ends when one opens.
        let (opens, closes) = match allow(&w.rule) {
            true => ("closes", "opens "),
            false => ("opens ", "closes"),
        };
        if w.window.start > now {
            edges.push((w.window.start, opens, &w.rule, w.timezone));
        }
        // A freeze whose windows never leave a gap has no closing edge to show.
        if !w.without_gap {
            edges.push((w.window.end, closes, &w.rule, w.timezone));
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
        // An allow rule is in force while its windows are closed.
        let rule = match allow(&w.rule) {
            true => format!("outside {}", esc(&w.rule)),
            false => esc(&w.rule),
        };
        if w.window.contains(now) && w.without_gap {
            writeln!(
                out,
                "\nIn force now: {rule} (its windows leave no gap in the next 366 days)",
            )?;
        } else if w.window.contains(now) {
            writeln!(
                out,
                "\nIn force now: {rule} until {}",
                rfc3339(w.window.end)
            )?;
        }
    }
    drop(out);
    if let Some(why) = cfg.daemon.database.path().and_then(database_not_writable) {
        eprintln!(
            "stopd: warning: the audit database {} is not writable by {}:\n  \
             {why}.\n  \
             `run`, `stop` and `exempt` will fail as this user; `report` needs read access.\n  \
             Run them as the service's user (sudo), or, for a local try, copy the policy and\n  \
             set [daemon] database = \"./stopd-audit.db\" in the copy.",
            cfg.daemon.database,
            user()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// An allow rule reads as the windows it allows, frozen otherwise.
    #[test]
    fn an_allow_rule_says_when_it_allows() {
        let spec: stopd_rules::PolicySpec = toml::from_str(
            "[[allow]]\nname = \"office-hours\"\ncron = \"0 9 * * MON-FRI\"\n\
             duration = \"8h\"\ntimezone = \"Europe/Berlin\"\ngate = true\n",
        )
        .unwrap();
        let policy = stopd_rules::Policy::compile(&spec).unwrap();
        assert_eq!(
            describe(&policy.rules()[0], DateTime::UNIX_EPOCH),
            "allowed every \"0 9 * * MON-FRI\" (Europe/Berlin) for 8 h; frozen otherwise; \
             gates every stage after the first"
        );
    }

    /// A freeze that ends on a wall-clock `end_cron` reads as such, not as the length of its
    /// first window.
    #[test]
    fn a_freeze_with_a_wall_clock_end_says_until_when() {
        let spec: stopd_rules::PolicySpec = toml::from_str(
            "[[freeze]]\nname = \"weekend\"\ncron = \"0 18 * * FRI\"\n\
             end_cron = \"0 6 * * MON\"\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        let policy = stopd_rules::Policy::compile(&spec).unwrap();
        assert_eq!(
            describe(&policy.rules()[0], DateTime::UNIX_EPOCH),
            "every \"0 18 * * FRI\" until \"0 6 * * MON\" (Europe/Berlin)"
        );
    }
}
