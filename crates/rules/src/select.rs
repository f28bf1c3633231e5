//! Selectors: which pipelines a rule or exemption applies to.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Name globs, excluded globs, and required tags.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Globs as written, for display.
    include_src: Vec<String>,
    /// Matches an included name.
    include: GlobSet,
    /// Matches an excluded name.
    exclude: GlobSet,
    /// Every key must be present with this value.
    tags: BTreeMap<String, String>,
}

/// A glob that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("glob {glob:?}: {message}")]
pub struct GlobError {
    /// The glob as written.
    pub glob: String,
    /// What is wrong.
    pub message: String,
}

fn build(globs: &[String]) -> Result<GlobSet, GlobError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| GlobError {
            glob: g.clone(),
            message: e.kind().to_string(),
        })?;
        b.add(glob);
    }
    b.build().map_err(|e| GlobError {
        glob: globs.join(", "),
        message: e.to_string(),
    })
}

impl Selector {
    /// A selector; `include` empty means none, so callers pass `["*"]` for "all".
    pub fn new(
        include: &[String],
        exclude: &[String],
        tags: BTreeMap<String, String>,
    ) -> Result<Selector, GlobError> {
        Ok(Selector {
            include_src: include.to_vec(),
            include: build(include)?,
            exclude: build(exclude)?,
            tags,
        })
    }

    /// Whether the name alone can match (tags not considered): lets discovery skip pipelines
    /// before any per-pipeline call.
    pub fn name_matches(&self, pipeline: &str) -> bool {
        self.include.is_match(pipeline) && !self.exclude.is_match(pipeline)
    }

    /// Whether the pipeline matches, name and tags.
    pub fn matches(&self, pipeline: &str, tags: &BTreeMap<String, String>) -> bool {
        self.name_matches(pipeline) && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }

    /// Whether this selector needs tags to decide.
    pub fn uses_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The include globs as written.
    pub fn include_globs(&self) -> &[String] {
        &self.include_src
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn include_exclude_and_tags() {
        let tags: BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
        let sel = Selector::new(&s(&["prod-*"]), &s(&["prod-hotfix-*"]), tags.clone()).unwrap();
        assert!(sel.matches("prod-web", &tags));
        assert!(!sel.matches("prod-hotfix-1", &tags));
        assert!(!sel.matches("staging-web", &tags));
        assert!(!sel.matches("prod-web", &BTreeMap::new()));
        assert!(sel.name_matches("prod-web"));
    }

    #[test]
    fn bad_glob_is_an_error() {
        let e = Selector::new(&s(&["prod-[a"]), &[], BTreeMap::new()).unwrap_err();
        assert_eq!(e.glob, "prod-[a");
    }
}
