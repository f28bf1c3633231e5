//! What a wide action is about to do, shown before it is recorded (as `terraform apply` shows
//! its plan): `freeze add` lists the pipelines it freezes, the running executions it will stop
//! and, with `--gate`, the stage transitions it will close; `exempt add` the pipelines it
//! exempts and the running executions it lets through. Read live, through the same discovery
//! as `plan`. Beyond [`WIDE_PIPELINES`] pipelines or [`WIDE_STOPS`] stops the action needs
//! `--yes`; so does a preview that could not be read whole (AWS unreachable, a pipeline
//! unreadable): a wide action never proceeds unseen.

use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};
use stopd_core::{ActiveStatus, Core, Discovered};
use stopd_rules::{Exemption, Policy};
use tokio_util::sync::CancellationToken;

use crate::cli::output::escape;
use crate::config::Config;
use crate::runtime::sweep;

/// More pipelines matched than this needs `--yes`.
pub const WIDE_PIPELINES: usize = 5;
/// More running executions to stop than this needs `--yes` (a freeze of one or two pipelines
/// in an incident stays one command; a glob that catches a fleet does not).
pub const WIDE_STOPS: usize = 5;
/// How long the preview may read: an unreachable CodePipeline is reported after this, not
/// after every retry of every call.
pub const PREVIEW_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Items of each list printed; the rest are counted.
const SHOWN: usize = 10;

/// A preview.
#[derive(Debug, Default)]
pub struct Preview {
    /// Pipelines matched (`account/region: name` with several places).
    pub pipelines: Vec<String>,
    /// Running executions it stops (freeze) or lets through (exemption): `pipeline id`.
    pub executions: Vec<String>,
    /// Transitions `--gate` closes: `pipeline stage`.
    pub transitions: Vec<String>,
    /// What could not be read: the preview is incomplete.
    pub unread: Vec<String>,
}

impl Preview {
    /// Why the action needs `--yes`, if it does.
    pub fn needs_yes(&self, counts_executions: bool) -> Option<String> {
        if !self.unread.is_empty() {
            Some("what it would do cannot be shown in full (see above)".into())
        } else if self.pipelines.len() > WIDE_PIPELINES {
            Some(format!(
                "it matches {} pipelines, more than {WIDE_PIPELINES}",
                self.pipelines.len()
            ))
        } else if counts_executions && self.executions.len() > WIDE_STOPS {
            Some(format!(
                "it stops {} running executions, more than {WIDE_STOPS}",
                self.executions.len()
            ))
        } else {
            None
        }
    }

    /// Prints the preview: a heading per list, each with its count and the first items.
    pub fn print(&self, out: &mut impl Write, headings: [&str; 3]) -> Result<()> {
        writeln!(out, "Preview (read live from CodePipeline now):")?;
        for (heading, items, always) in [
            (headings[0], &self.pipelines, true),
            (headings[1], &self.executions, true),
            (headings[2], &self.transitions, !headings[2].is_empty()),
        ] {
            if !always {
                continue;
            }
            writeln!(out, "  {} {heading}", items.len())?;
            for item in items.iter().take(SHOWN) {
                writeln!(out, "    {item}")?;
            }
            if items.len() > SHOWN {
                writeln!(out, "    ... and {} more", items.len() - SHOWN)?;
            }
        }
        if !self.unread.is_empty() {
            writeln!(out, "  The preview is incomplete:")?;
            for u in &self.unread {
                writeln!(out, "    {u}")?;
            }
        }
        Ok(())
    }
}

/// Discovery in every place `place_ok` keeps, at once, of the pipelines `name_ok` keeps; a
/// place not read within [`PREVIEW_LIMIT`] is reported as such.
async fn discover(
    cfg: &Config,
    place_ok: impl Fn(&str, &str) -> bool,
    name_ok: impl Fn(&str) -> bool + Clone + Send + Sync + 'static,
    tags: bool,
) -> (Vec<Core>, Vec<(usize, Option<Discovered>)>) {
    let cores = crate::runtime::targets::build(cfg, CancellationToken::new()).await;
    let mut set = tokio::task::JoinSet::new();
    for (i, core) in cores.iter().enumerate() {
        if !place_ok(core.account(), core.region()) {
            continue;
        }
        let (core, name_ok) = (core.clone(), name_ok.clone());
        set.spawn(async move {
            let read = tokio::time::timeout(PREVIEW_LIMIT, core.discover(&name_ok, tags)).await;
            (i, read.ok())
        });
    }
    let mut found = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(f) = joined {
            found.push(f);
        }
    }
    found.sort_by_key(|(i, _)| *i);
    (cores, found)
}

/// The place prefix of a line (none with one account and region).
fn prefix(cores: &[Core], core: &Core) -> String {
    if cores.len() > 1 {
        format!("{}: ", core.place())
    } else {
        String::new()
    }
}

/// Records what could not be read; false when nothing of this place was.
fn note_unread(out: &mut Preview, place: &str, found: &Option<Discovered>) -> bool {
    let Some(found) = found else {
        out.unread.push(format!(
            "{place}cannot list pipelines: not read within {} s",
            PREVIEW_LIMIT.as_secs()
        ));
        return false;
    };
    if let Some(e) = &found.listing_failed {
        out.unread.push(format!(
            "{place}cannot list pipelines: {}",
            escape(&e.explain())
        ));
        return false;
    }
    for f in &found.failures {
        out.unread.push(format!(
            "{place}could not read {}: {}",
            escape(&f.pipeline),
            escape(&f.error.to_string())
        ));
    }
    true
}

/// Why nothing can be read when the policy file does not validate: its `[aws]` and
/// `[[account]]` tables were not read, and the ambient credentials may reach another account
/// than the policy's (a preview of that would pass for a complete one). `--yes` is then needed.
fn unreadable_policy(cfg: &Config) -> Option<String> {
    cfg.policy_error.as_ref().map(|_| {
        "the policy file does not validate, so its [aws] and [[account]] tables were not read: \
         CodePipeline was not asked"
            .to_string()
    })
}

/// `freeze add`: `policy` is the policy in force with the new freeze, named `rule`, added.
pub async fn freeze(
    cfg: &Config,
    policy: &Policy,
    rule: &str,
    extra: &[Exemption],
    now: DateTime<Utc>,
) -> Preview {
    let mut out = Preview::default();
    if let Some(why) = unreadable_policy(cfg) {
        out.unread.push(why);
        return out;
    }
    let Some(new) = policy.rule(rule) else {
        out.unread.push(format!("no rule {rule} to preview"));
        return out;
    };
    let sel = new.selector.clone();
    let (cores, found) = discover(
        cfg,
        |a, r| new.place.matches(a, r),
        move |p: &str| sel.name_matches(p),
        // The executions' tags decide which other rules and exemptions apply too.
        policy.uses_tags(),
    )
    .await;
    if found.is_empty() {
        out.unread
            .push("no configured account and region is in the freeze's scope".into());
    }
    for (i, found) in found {
        let core = &cores[i];
        let place = prefix(&cores, core);
        if !note_unread(&mut out, &place, &found) {
            continue;
        }
        let Some(found) = found else { continue };
        let matched: Vec<&String> = found
            .pipelines
            .iter()
            .filter(|p| new.selector.matches(p, &core.tags_of(p)))
            .collect();
        out.pipelines
            .extend(matched.iter().map(|p| format!("{place}{}", escape(p))));
        let here = policy.for_place(core.account(), core.region());
        let running: Vec<_> = found
            .executions
            .iter()
            .filter(|e| e.status == ActiveStatus::InProgress && matched.contains(&&e.pipeline))
            .cloned()
            .collect();
        let (planned, _) = sweep::plan(&here.decider(now), now, &running, extra);
        out.executions.extend(
            planned
                .iter()
                .map(|p| format!("{place}{} {}", escape(&p.pipeline), p.execution_id)),
        );
        if new.gate.is_none() {
            continue;
        }
        let mut calls = Default::default();
        for p in matched {
            let holds = here.gates(now, p, &core.tags_of(p), extra);
            let Some(hold) = holds.iter().find(|h| h.rule == rule) else {
                continue;
            };
            match core.pipeline_state(p, &mut calls).await {
                Ok(stages) => {
                    let names: Vec<String> = stages.iter().map(|s| s.stage.clone()).collect();
                    for stage in hold.gate.stages_of(&names) {
                        if stages.iter().any(|s| s.stage == stage && s.enabled) {
                            out.transitions
                                .push(format!("{place}{} {}", escape(p), escape(stage)));
                        }
                    }
                }
                Err(e) => out.unread.push(format!(
                    "{place}could not read the stages of {}: {}",
                    escape(p),
                    escape(&e.explain())
                )),
            }
        }
    }
    out
}

/// `exempt add`: the pipelines `exemption` matches, and the running executions `policy`
/// would stop now that it lets through.
pub async fn exempt(
    cfg: &Config,
    policy: &Policy,
    exemption: &Exemption,
    extra: &[Exemption],
    now: DateTime<Utc>,
) -> Preview {
    let mut out = Preview::default();
    if let Some(why) = unreadable_policy(cfg) {
        out.unread.push(why);
        return out;
    }
    let sel = exemption.selector.clone();
    let (cores, found) = discover(
        cfg,
        |a, r| exemption.place.matches(a, r),
        move |p: &str| sel.name_matches(p),
        exemption.selector.uses_tags() || policy.uses_tags(),
    )
    .await;
    for (i, found) in found {
        let core = &cores[i];
        let place = prefix(&cores, core);
        if !note_unread(&mut out, &place, &found) {
            continue;
        }
        let Some(found) = found else { continue };
        out.pipelines.extend(
            found
                .pipelines
                .iter()
                .filter(|p| exemption.selector.matches(p, &core.tags_of(p)))
                .map(|p| format!("{place}{}", escape(p))),
        );
        let here = policy.for_place(core.account(), core.region());
        let running: Vec<_> = found
            .executions
            .iter()
            .filter(|e| e.status == ActiveStatus::InProgress)
            .cloned()
            .collect();
        let decider = here.decider(now);
        let (before, _) = sweep::plan(&decider, now, &running, extra);
        let mut with = extra.to_vec();
        with.push(exemption.clone());
        let (after, _) = sweep::plan(&decider, now, &running, &with);
        out.executions.extend(
            before
                .iter()
                .filter(|b| !after.iter().any(|a| a.execution_id == b.execution_id))
                .map(|p| format!("{place}{} {}", escape(&p.pipeline), p.execution_id)),
        );
    }
    out
}
