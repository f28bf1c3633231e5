//! Paging: every listing follows `nextToken`s through [`Pages`], which ends it at a token seen
//! before or after [`MAX_PAGES`] pages; a pipeline's executions are listed through
//! [`ExecutionPages`].

use std::collections::HashSet;

use aws_sdk_codepipeline::types::PipelineExecutionSummary;

use super::handle::Core;
use crate::error::{ApiError, ErrorKind};
use crate::types::CallCounts;

/// Pages of one listing a sweep reads at most. CodePipeline keeps 12 months of history; at 100
/// executions a page this is a million executions, far past any real pipeline, and a bound on
/// a service that never stops answering with a next page.
pub const MAX_PAGES: usize = 10_000;

/// Follows `nextToken`s, refusing a token seen before (a service that loops would make a
/// sweep that never ends) and more than [`MAX_PAGES`] pages.
#[derive(Debug, Default)]
pub(super) struct Pages {
    /// Tokens already followed.
    seen: HashSet<String>,
}

impl Pages {
    /// The token of the next page, `None` at the end, or an error for a loop.
    pub(super) fn next(
        &mut self,
        operation: &'static str,
        token: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let Some(token) = token else { return Ok(None) };
        let problem = if self.seen.len() >= MAX_PAGES {
            format!("more than {MAX_PAGES} pages: stopped paging")
        } else if !self.seen.insert(token.to_string()) {
            format!(
                "the service answered with a nextToken it had already given ({} pages in): stopped paging",
                self.seen.len()
            )
        } else {
            return Ok(Some(token.to_string()));
        };
        Err(ApiError {
            operation,
            kind: ErrorKind::BadResponse,
            code: Some("PaginationLoop".into()),
            message: problem,
        })
    }
}

/// The operation [`ExecutionPages`] calls.
const LIST_EXECUTIONS: &str = "ListPipelineExecutions";

/// One pipeline's ListPipelineExecutions, a page (100 executions) at a time, under the
/// discovery retry policy, every `nextToken` checked by [`Pages`]: the one place that pages
/// through a pipeline's executions (discovery reads its history; a stop whose answer was lost
/// looks for its execution).
#[derive(Debug)]
pub(super) struct ExecutionPages<'a> {
    /// Whose client, limiter and retry policy.
    core: &'a Core,
    /// The pipeline listed.
    pipeline: &'a str,
    /// The token of the next page (`Some(None)`: the first page); `None` once the listing has
    /// ended.
    next: Option<Option<String>>,
    /// Tokens followed so far.
    pages: Pages,
    /// Why the listing ended before its last page, if it did.
    cut: Option<ApiError>,
}

impl<'a> ExecutionPages<'a> {
    /// The listing of `pipeline`'s executions, before its first page.
    pub(super) fn new(core: &'a Core, pipeline: &'a str) -> Self {
        ExecutionPages {
            core,
            pipeline,
            next: Some(None),
            pages: Pages::default(),
            cut: None,
        }
    }

    /// The summaries of the next page, `Ok(None)` once the listing has ended. A page that
    /// answers with a `nextToken` [`Pages`] refuses is still returned (what it lists is real);
    /// the listing ends after it, cut short ([`ExecutionPages::into_cut`]).
    pub(super) async fn next(
        &mut self,
        calls: &mut CallCounts,
    ) -> Result<Option<Vec<PipelineExecutionSummary>>, ApiError> {
        let Some(token) = &self.next else {
            return Ok(None);
        };
        let client = &self.core.inner.client;
        let policy = self.core.inner.config.discovery_retry;
        let pipeline = self.pipeline;
        let page = self
            .core
            .call("ListPipelineExecutions", &policy, calls, || {
                let req = client
                    .list_pipeline_executions()
                    .pipeline_name(pipeline)
                    .max_results(100)
                    .set_next_token(token.clone());
                async move {
                    req.send()
                        .await
                        .map_err(|e| ApiError::from_sdk(LIST_EXECUTIONS, e))
                }
            })
            .await
            .result?;
        self.next = match self.pages.next(LIST_EXECUTIONS, page.next_token()) {
            Ok(next) => next.map(Some),
            Err(e) => {
                self.cut = Some(e);
                None
            }
        };
        Ok(Some(page.pipeline_execution_summaries.unwrap_or_default()))
    }

    /// Whether the listing has ended: its last page read, or cut short.
    pub(super) fn ended(&self) -> bool {
        self.next.is_none()
    }

    /// Why the listing was cut short (a repeated `nextToken`, more than [`MAX_PAGES`] pages),
    /// if it was.
    pub(super) fn into_cut(self) -> Option<ApiError> {
        self.cut
    }
}
