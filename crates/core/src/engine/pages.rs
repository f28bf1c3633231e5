//! Paging: every listing follows `nextToken`s through [`Pages`], which ends it at a token seen
//! before or after [`MAX_PAGES`] pages.

use std::collections::HashSet;

use crate::error::{ApiError, ErrorKind};

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
