//! Selectors: which pipelines a rule or exemption applies to.

use std::collections::BTreeMap;

use globset::{Glob, GlobMatcher};

/// One compiled name glob. Globs made of literals and `*` (nearly all of them) are matched by
/// plain string search; any other glob syntax (`?`, `[a-z]`, `{a,b}`) goes to globset.
#[derive(Debug, Clone)]
enum NameGlob {
    /// Literal pieces between stars; `anchored_start`/`anchored_end` when the glob does not
    /// begin/end with `*`.
    Stars {
        /// The literal pieces, in order (empty pieces removed), each with a precompiled
        /// substring searcher.
        pieces: Vec<(String, memchr::memmem::Finder<'static>)>,
        /// The first piece must be a prefix.
        anchored_start: bool,
        /// The last piece must be a suffix.
        anchored_end: bool,
    },
    /// Anything else.
    Full(GlobMatcher),
}

impl NameGlob {
    fn new(glob: &str) -> Result<NameGlob, GlobError> {
        // Validate with globset in every case, so errors read the same.
        let compiled = Glob::new(glob).map_err(|e| GlobError {
            glob: glob.to_string(),
            message: e.kind().to_string(),
        })?;
        if glob.contains(['?', '[', ']', '{', '}', '\\']) {
            return Ok(NameGlob::Full(compiled.compile_matcher()));
        }
        Ok(NameGlob::Stars {
            pieces: glob
                .split('*')
                .filter(|p| !p.is_empty())
                .map(|p| (p.to_string(), memchr::memmem::Finder::new(p).into_owned()))
                .collect(),
            anchored_start: !glob.starts_with('*'),
            anchored_end: !glob.ends_with('*'),
        })
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            NameGlob::Full(m) => m.is_match(name),
            NameGlob::Stars {
                pieces,
                anchored_start,
                anchored_end,
            } => {
                let mut rest = name;
                let last = pieces.len().wrapping_sub(1);
                for (i, (piece, finder)) in pieces.iter().enumerate() {
                    if i == 0 && *anchored_start {
                        let Some(r) = rest.strip_prefix(piece.as_str()) else {
                            return false;
                        };
                        rest = r;
                        if i == last && *anchored_end {
                            return rest.is_empty();
                        }
                    } else if i == last && *anchored_end {
                        return rest.ends_with(piece.as_str());
                    } else {
                        match finder.find(rest.as_bytes()) {
                            Some(at) => rest = &rest[at + piece.len()..],
                            None => return false,
                        }
                    }
                }
                // No pieces: "*" matches all, "" matches only "".
                !pieces.is_empty() || !*anchored_start || rest.is_empty()
            }
        }
    }
}

/// Name globs, excluded globs, and required tags.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Include globs as written.
    include_src: Vec<String>,
    /// Matches an included name.
    include: Vec<NameGlob>,
    /// Exclude globs as written.
    exclude_src: Vec<String>,
    /// Matches an excluded name.
    exclude: Vec<NameGlob>,
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

fn build(globs: &[String]) -> Result<Vec<NameGlob>, GlobError> {
    globs.iter().map(|g| NameGlob::new(g)).collect()
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
            exclude_src: exclude.to_vec(),
            exclude: build(exclude)?,
            tags,
        })
    }

    /// Whether the name alone can match (tags not considered): lets discovery skip pipelines
    /// before any per-pipeline call.
    pub fn name_matches(&self, pipeline: &str) -> bool {
        self.include.iter().any(|g| g.is_match(pipeline))
            && !self.exclude.iter().any(|g| g.is_match(pipeline))
    }

    /// Whether the pipeline matches, name and tags.
    pub fn matches(&self, pipeline: &str, tags: &BTreeMap<String, String>) -> bool {
        self.tags.iter().all(|(k, v)| tags.get(k) == Some(v)) && self.name_matches(pipeline)
    }

    /// Whether this selector needs tags to decide.
    pub fn uses_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The include globs as written.
    pub fn include_globs(&self) -> &[String] {
        &self.include_src
    }

    /// The exclude globs as written.
    pub fn exclude_globs(&self) -> &[String] {
        &self.exclude_src
    }

    /// The tags a pipeline must carry, key and value.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }
}

/// Where a rule applies: account names and regions (`accounts`, `regions` globs; each absent
/// means all). With no `[[account]]` the daemon's one account is named `default`.
#[derive(Debug, Clone, Default)]
pub struct Place {
    /// Account-name globs as written, and compiled.
    accounts: Option<(Vec<String>, Vec<NameGlob>)>,
    /// Region globs as written, and compiled.
    regions: Option<(Vec<String>, Vec<NameGlob>)>,
}

impl Place {
    /// A place; `None` for a list means everywhere.
    pub fn new(
        accounts: Option<&[String]>,
        regions: Option<&[String]>,
    ) -> Result<Place, GlobError> {
        let compile = |globs: Option<&[String]>| -> Result<_, GlobError> {
            globs.map(|g| Ok((g.to_vec(), build(g)?))).transpose()
        };
        Ok(Place {
            accounts: compile(accounts)?,
            regions: compile(regions)?,
        })
    }

    /// Whether it covers this account (by name) and region.
    pub fn matches(&self, account: &str, region: &str) -> bool {
        let any = |list: &Option<(Vec<String>, Vec<NameGlob>)>, name: &str| {
            list.as_ref()
                .is_none_or(|(_, globs)| globs.iter().any(|g| g.is_match(name)))
        };
        any(&self.accounts, account) && any(&self.regions, region)
    }

    /// Whether it covers every account and region.
    pub fn is_everywhere(&self) -> bool {
        self.accounts.is_none() && self.regions.is_none()
    }

    /// The account globs as written (`None`: all).
    pub fn accounts(&self) -> Option<&[String]> {
        self.accounts.as_ref().map(|(s, _)| s.as_slice())
    }

    /// The region globs as written (`None`: all).
    pub fn regions(&self) -> Option<&[String]> {
        self.regions.as_ref().map(|(s, _)| s.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn places_match_account_names_and_regions() {
        let all = Place::default();
        assert!(all.matches("anything", "eu-west-1") && all.is_everywhere());
        let p = Place::new(Some(&s(&["payments-*"])), Some(&s(&["eu-*"]))).unwrap();
        assert!(p.matches("payments-prod", "eu-west-1"));
        assert!(!p.matches("payments-prod", "us-east-1"));
        assert!(!p.matches("search-prod", "eu-west-1"));
        let none = Place::new(Some(&[]), None).unwrap();
        assert!(!none.matches("a", "b"));
        assert!(Place::new(Some(&s(&["[a"])), None).is_err());
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
    fn star_globs_agree_with_globset() {
        let globs = [
            "*",
            "prod-*",
            "*-api",
            "*-api-*",
            "prod-*-web",
            "a*b*c",
            "exact",
            "**",
            "p*",
            "*p",
            "",
        ];
        let names = [
            "",
            "prod-web",
            "prod-api",
            "dev-api",
            "dev-api-1",
            "prod-x-web",
            "abc",
            "aXbYc",
            "ac",
            "exact",
            "p",
        ];
        for g in globs {
            let ours = NameGlob::new(g).unwrap();
            let theirs = Glob::new(g).unwrap().compile_matcher();
            for n in names {
                assert_eq!(
                    ours.is_match(n),
                    theirs.is_match(n),
                    "glob {g:?} name {n:?}"
                );
            }
        }
    }

    #[test]
    fn bad_glob_is_an_error() {
        let e = Selector::new(&s(&["prod-[a"]), &[], BTreeMap::new()).unwrap_err();
        assert_eq!(e.glob, "prod-[a");
    }
}
