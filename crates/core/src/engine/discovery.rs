//! Discovery: every InProgress and Stopping execution of the pipelines in scope
//! ([`Core::discover`], [`Core::discover_streaming`]), read incrementally between full rescans.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_codepipeline::types::{
    ExecutionType, PipelineExecutionStatus, PipelineExecutionSummary,
};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::execution::MAX_SINGLE_CHECKS;
use super::handle::{Core, Memory, lock};
use super::pages::{ExecutionPages, Pages};
use crate::error::{ApiError, ErrorKind};
use crate::types::{
    ActiveExecution, ActiveStatus, CallCounts, Discovered, PipelineFailure, PipelineRead,
};

/// `None` for a missing (or unrepresentable) time: never 1970, which a timeout would read as
/// "running for 56 years".
fn to_utc(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

impl Core {
    /// Finds every InProgress and Stopping execution of the pipelines `in_scope` keeps.
    ///
    /// Pipelines are listed (paginated) and filtered by name before any per-pipeline call.
    /// Then, for each pipeline, with bounded concurrency: its tags if `with_tags` (GetPipeline
    /// for the ARN once, ListTagsForResource, cached for `tag_ttl`), and its executions.
    ///
    /// The first time a pipeline is seen, and every `full_rescan_every`, its whole history is
    /// read, so an active execution behind any number of finished ones is found. In between,
    /// while the pages come newest first (AWS does, without documenting it; start times say
    /// so), pages are read only until the newest execution of the previous sweep (by start
    /// time); executions active then and not on those pages are checked one by one with
    /// GetPipelineExecution (if there are only a few; otherwise paging goes on until they are
    /// all seen). Listed in any other order, the whole history is read. Nothing active is
    /// missed, except an execution that a stage retry brings back from a final status: that one
    /// is found by the next full rescan.
    pub async fn discover(
        &self,
        in_scope: &(dyn Fn(&str) -> bool + Sync),
        with_tags: bool,
    ) -> Discovered {
        self.discover_streaming(in_scope, with_tags, None).await
    }

    /// [`Core::discover`], also sending each pipeline to `sink` as soon as it has been read
    /// (with its active executions), so the caller can stop and gate while the rest is still
    /// being listed (listing, stopping and gating then overlap instead of adding up). Every
    /// pipeline in scope is sent once, read or not (a read that panicked is a failure). The
    /// sender is dropped when discovery ends.
    pub async fn discover_streaming(
        &self,
        in_scope: &(dyn Fn(&str) -> bool + Sync),
        with_tags: bool,
        sink: Option<tokio::sync::mpsc::UnboundedSender<PipelineRead>>,
    ) -> Discovered {
        let mut out = Discovered::default();
        let names = match self.list_pipelines(&mut out.calls).await {
            Ok(n) => n,
            Err(e) => {
                out.listing_failed = Some(e);
                return out;
            }
        };
        out.pipelines_seen = names.len();
        let names: Vec<String> = names.into_iter().filter(|n| in_scope(n)).collect();
        out.pipelines_in_scope = names.len();
        out.pipelines.clone_from(&names);
        // A window of at most `concurrency` tasks: a pipeline's task is spawned only when a
        // slot is free. (Spawning one task per pipeline up front, each waiting on a semaphore,
        // held ~5 KiB per pipeline until its turn: 50 MiB at 10,000 pipelines.)
        let limit = self.inner.config.concurrency.max(1);
        let mut names = names.into_iter();
        let mut tasks = JoinSet::new();
        // Whose task is whose, so that one that panicked is still reported (and sent).
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            while tasks.len() < limit {
                let Some(name) = names.next() else { break };
                let core = self.clone();
                let task = name.clone();
                let handle = tasks.spawn(async move {
                    let mut calls = CallCounts::default();
                    let r = core.read_pipeline(&task, with_tags, &mut calls).await;
                    (r, calls)
                });
                running.insert(handle.id(), name);
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (name, result, calls) = match joined {
                Ok((id, (result, calls))) => {
                    (running.remove(&id).unwrap_or_default(), result, calls)
                }
                Err(e) => {
                    let error = ApiError {
                        operation: "ListPipelineExecutions",
                        kind: ErrorKind::Client,
                        code: Some("Panicked".into()),
                        message: format!("reading the pipeline failed inside stopd: {e}"),
                    };
                    (
                        running.remove(&e.id()).unwrap_or_default(),
                        Err(error),
                        CallCounts::default(),
                    )
                }
            };
            out.calls.merge(&calls);
            // A closed receiver only means the caller stopped listening.
            match result {
                Ok((mut execs, cut)) => {
                    if let Some(sink) = &sink {
                        let _ = sink.send(PipelineRead {
                            pipeline: name.clone(),
                            executions: execs.clone(),
                        });
                    }
                    out.executions.append(&mut execs);
                    // A listing cut short is a failure of the pipeline's read (loud: the sweep
                    // is not a good one), but what it did return is real and is decided.
                    if let Some(error) = cut {
                        out.failures.push(PipelineFailure {
                            pipeline: name,
                            error,
                        });
                    }
                }
                Err(error) => {
                    if let Some(sink) = &sink {
                        let _ = sink.send(PipelineRead {
                            pipeline: name.clone(),
                            executions: Vec::new(),
                        });
                    }
                    out.failures.push(PipelineFailure {
                        pipeline: name,
                        error,
                    });
                }
            }
        }
        out.executions
            .sort_by(|a, b| (&a.pipeline, a.start_time).cmp(&(&b.pipeline, b.start_time)));
        out.failures.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        out
    }

    async fn list_pipelines(&self, calls: &mut CallCounts) -> Result<Vec<String>, ApiError> {
        let policy = self.inner.config.discovery_retry;
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = Pages::default();
        loop {
            let client = &self.inner.client;
            let t = token.clone();
            let page = self
                .call("ListPipelines", &policy, calls, || {
                    let req = client
                        .list_pipelines()
                        .max_results(1000)
                        .set_next_token(t.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("ListPipelines", e))
                    }
                })
                .await
                .result?;
            names.extend(
                page.pipelines()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
            token = pages.next("ListPipelines", page.next_token())?;
            if token.is_none() {
                // A name listed twice is one pipeline.
                let mut seen = HashSet::new();
                names.retain(|n| seen.insert(n.clone()));
                return Ok(names);
            }
        }
    }

    /// The active executions of one pipeline. `Ok` with an error beside them when the listing
    /// was cut short (a service that repeats a `nextToken`, or more than
    /// [`MAX_PAGES`](super::pages::MAX_PAGES) pages): the executions of the pages read are
    /// real, and a sweep still decides them.
    async fn read_pipeline(
        &self,
        name: &str,
        with_tags: bool,
        calls: &mut CallCounts,
    ) -> Result<(Vec<ActiveExecution>, Option<ApiError>), ApiError> {
        let tags = if with_tags {
            self.tags(name, calls).await?
        } else {
            Arc::new(BTreeMap::new())
        };
        let memory = lock(&self.inner.memory).get(name).cloned();
        let full = memory
            .as_ref()
            .is_none_or(|m| m.full_scan_at.elapsed() >= self.inner.config.full_rescan_every);
        let mut active = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        // The newest execution seen, by start time (not by place: AWS does not document the
        // listing's order).
        let mut newest: Option<(Option<DateTime<Utc>>, String)> = None;
        let mut reached_marker = false;
        // Whether every page so far was listed newest first: only then can paging stop at the
        // previous sweep's newest, since everything after it is older.
        let mut newest_first = true;
        let mut previous_start: Option<DateTime<Utc>> = None;
        let mut listing = ExecutionPages::new(self, name);
        while let Some(page) = listing.next(calls).await? {
            for s in &page {
                let Some(id) = s.pipeline_execution_id() else {
                    continue;
                };
                let start = to_utc(s.start_time());
                match (previous_start, start) {
                    (Some(p), Some(t)) if t > p => newest_first = false,
                    (_, None) => newest_first = false,
                    _ => {}
                }
                previous_start = start.or(previous_start);
                if newest.as_ref().is_none_or(|(t, _)| start > *t) {
                    newest = Some((start, id.to_string()));
                }
                if memory.as_ref().and_then(|m| m.newest_seen.as_deref()) == Some(id) {
                    reached_marker = true;
                }
                // An execution listed twice (on one page or across pages) is one execution:
                // one stop per execution per sweep.
                if !seen.insert(id.to_string()) {
                    continue;
                }
                if let Some(a) = active_from_summary(name, s, &tags) {
                    active.push(a);
                }
            }
            if listing.ended() {
                break;
            }
            // Past the previous sweep's newest: stop paging once the executions active then and
            // not yet seen are few enough to check one by one.
            let unseen = memory.as_ref().map_or(0, |m| {
                m.active
                    .iter()
                    .filter(|p| !seen.contains(&p.execution_id))
                    .count()
            });
            if !full && newest_first && reached_marker && unseen <= MAX_SINGLE_CHECKS {
                break;
            }
        }
        let history_exhausted = listing.ended();
        if let Some(cut) = listing.into_cut() {
            // Nothing is remembered from a listing cut short: the next sweep reads it whole.
            return Ok((active, Some(cut)));
        }
        if !full
            && !history_exhausted
            && let Some(m) = &memory
        {
            for prev in m.active.iter().filter(|p| !seen.contains(&p.execution_id)) {
                if let Some(status) = self
                    .execution_status(name, &prev.execution_id, calls)
                    .await?
                {
                    active.push(ActiveExecution {
                        status,
                        tags: Arc::clone(&tags),
                        ..prev.clone()
                    });
                }
            }
        }
        let full_scan_at = match (&memory, full) {
            (Some(m), false) => m.full_scan_at,
            _ => Instant::now(),
        };
        // The listing is the truth: what events said of this pipeline is superseded.
        self.listed(name);
        lock(&self.inner.memory).insert(
            name.to_string(),
            Memory {
                newest_seen: newest
                    .map(|(_, id)| id)
                    .or_else(|| memory.and_then(|m| m.newest_seen)),
                active: active.clone(),
                full_scan_at,
            },
        );
        Ok((active, None))
    }

    /// The status of one execution: `Some` if it is still InProgress or Stopping, `None` if it
    /// has ended or no longer exists.
    async fn execution_status(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<Option<ActiveStatus>, ApiError> {
        match self.get_execution_status(pipeline, id, calls).await {
            Ok(status) => Ok(active_status(Some(&status))),
            Err(e) if e.kind == ErrorKind::ExecutionNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn active_status(status: Option<&PipelineExecutionStatus>) -> Option<ActiveStatus> {
    match status? {
        PipelineExecutionStatus::InProgress => Some(ActiveStatus::InProgress),
        PipelineExecutionStatus::Stopping => Some(ActiveStatus::Stopping),
        _ => None,
    }
}

fn active_from_summary(
    pipeline: &str,
    s: &PipelineExecutionSummary,
    tags: &Arc<BTreeMap<String, String>>,
) -> Option<ActiveExecution> {
    Some(ActiveExecution {
        pipeline: pipeline.to_string(),
        execution_id: s.pipeline_execution_id()?.to_string(),
        status: active_status(s.status())?,
        start_time: to_utc(s.start_time()),
        rollback: s.execution_type() == Some(&ExecutionType::Rollback),
        trigger: s
            .trigger()
            .and_then(|t| t.trigger_type())
            .map(|t| t.as_str().to_string()),
        stop_reason: s
            .stop_trigger()
            .and_then(|t| t.reason())
            .map(str::to_string),
        tags: Arc::clone(tags),
    })
}
