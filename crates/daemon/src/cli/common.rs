//! What the commands share: who runs them (for the audit log), writing to stdout, `--tz`, the
//! refusal of an unknown `--rule`, and the preview-and-confirm step of `exempt add` and
//! `freeze add`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use stopd_audit::Store;
use stopd_rules::rfc3339;

use crate::cli::UsageError;
use crate::cli::output::{self, Columns, Format, OutputArgs};
use crate::config::Config;

/// `--tz`, for the commands that show audit times.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct TzArg {
    /// Tables and CSV show times in this zone (Europe/Berlin), with its offset; JSON stays UTC.
    #[arg(long, value_name = "ZONE", value_parser = parse_tz)]
    pub(crate) tz: Option<chrono_tz::Tz>,
}

/// An IANA zone for `--tz`; a name that is not one gets the policy's message (`Berlin`: did you
/// mean "Europe/Berlin"?).
fn parse_tz(name: &str) -> Result<chrono_tz::Tz, String> {
    stopd_rules::parse_zone(name)
        .ok_or_else(|| stopd_rules::PolicyErrorKind::UnknownZone(name.to_string()).to_string())
}

/// Who runs this command, for the audit log: the process's uid and its login name from the
/// password database, plus the user `SUDO_USER` names, recorded as a claim (any process can
/// set that variable; `USER` is not read at all).
pub(crate) fn user() -> String {
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
pub(crate) fn print(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A line on stdout; an error (a closed pipe) instead of `println!`'s panic.
pub(crate) fn say(line: std::fmt::Arguments<'_>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Rows as `opts` says, as [`output::write`] does; but a table of no rows says `no records`
/// (an empty screen reads as a hang or a crash). JSON stays `[]`, CSV its header.
pub(crate) fn write_rows<T: Serialize>(
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
pub(crate) fn unknown_rule(rule: &str, known: &[&str], of: &str) -> UsageError {
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
pub(crate) fn shown(t: chrono::DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> String {
    match tz {
        Some(tz) => t
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        None => rfc3339(t),
    }
}

/// The break-glass exemptions and the policy (with its ad-hoc freezes) in force at `now`: none
/// and the file's without a database yet.
pub(crate) async fn in_force(
    cfg: &Config,
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<stopd_rules::Exemption>, Arc<stopd_rules::Policy>)> {
    if !cfg.daemon.database.exists() {
        return Ok((Vec::new(), Arc::clone(&cfg.policy)));
    }
    let why = "cannot read break-glass exemptions and ad-hoc freezes for the preview";
    let store = Store::open_read_only(crate::runtime::secrets::database(cfg)?)
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
pub(crate) fn confirm(
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
}
