//! A pipeline's tags for discovery: the ARN from GetPipeline (cached for good: it never changes
//! for a name), then ListTagsForResource, trusted for `CoreConfig::tag_ttl`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::handle::{Core, lock};
use super::pages::Pages;
use crate::error::{ApiError, ErrorKind};
use crate::types::CallCounts;

impl Core {
    /// The tags of pipeline `name`, from the cache while they are fresh.
    pub(super) async fn tags(
        &self,
        name: &str,
        calls: &mut CallCounts,
    ) -> Result<Arc<BTreeMap<String, String>>, ApiError> {
        if let Some((at, tags)) = lock(&self.inner.tags).get(name)
            && at.elapsed() < self.inner.config.tag_ttl
        {
            return Ok(Arc::clone(tags));
        }
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let cached_arn = lock(&self.inner.arns).get(name).cloned();
        let arn = match cached_arn {
            Some(arn) => arn,
            None => {
                let got = self
                    .call("GetPipeline", &policy, calls, || {
                        let req = client.get_pipeline().name(name);
                        async move {
                            req.send()
                                .await
                                .map_err(|e| ApiError::from_sdk("GetPipeline", e))
                        }
                    })
                    .await
                    .result?;
                let arn = got
                    .metadata()
                    .and_then(|m| m.pipeline_arn())
                    .ok_or_else(|| ApiError {
                        operation: "GetPipeline",
                        kind: ErrorKind::BadResponse,
                        code: None,
                        message: "the answer has no pipelineArn".into(),
                    })?
                    .to_string();
                lock(&self.inner.arns).insert(name.to_string(), arn.clone());
                arn
            }
        };
        let mut tags = BTreeMap::new();
        let mut token: Option<String> = None;
        let mut pages = Pages::default();
        loop {
            let t = token.clone();
            let page = self
                .call("ListTagsForResource", &policy, calls, || {
                    let req = client
                        .list_tags_for_resource()
                        .resource_arn(&arn)
                        .set_next_token(t.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("ListTagsForResource", e))
                    }
                })
                .await
                .result?;
            for tag in page.tags() {
                tags.insert(tag.key().to_string(), tag.value().to_string());
            }
            token = pages.next("ListTagsForResource", page.next_token())?;
            if token.is_none() {
                break;
            }
        }
        let tags = Arc::new(tags);
        lock(&self.inner.tags).insert(name.to_string(), (Instant::now(), Arc::clone(&tags)));
        Ok(tags)
    }
}
