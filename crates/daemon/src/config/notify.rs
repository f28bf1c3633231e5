//! `[[notify]]`: the webhooks notifications go to, and the vocabulary their specs name (event
//! kinds, payload formats). The URL is a secret: it is never printed, and where it comes from
//! (`url`, `url_file`, `url_env`) is kept apart from the URL itself, read by the runtime.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Event names, as in `events = [...]` and the payload's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A stop went through (`stopped`, `already_stopping`, `not_stoppable`).
    Stopped,
    /// A stop did not (`failed`, `rejected`, `pipeline_not_found`).
    Failed,
    /// A stage transition was closed or opened for a gating freeze.
    Gate,
    /// A break-glass exemption was added or revoked.
    Exemption,
    /// A sweep failed after a good one.
    SweepFailed,
    /// A freeze window started while the daemon was not running, found at the next start.
    Unwatched,
    /// Another node took the lead (PostgreSQL, `[ha]`).
    LeaderChanged,
    /// The event queue (`[events]`) cannot be read, after it could (once per outage).
    EventsFailed,
}

impl EventKind {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Stopped => "stopped",
            EventKind::Failed => "failed",
            EventKind::Gate => "gate",
            EventKind::Exemption => "exemption",
            EventKind::SweepFailed => "sweep_failed",
            EventKind::Unwatched => "unwatched",
            EventKind::LeaderChanged => "leader_changed",
            EventKind::EventsFailed => "events_failed",
        }
    }
}

/// Payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per event.
    #[default]
    Json,
    /// Slack's incoming-webhook payload: text and a section block.
    Slack,
}

/// `[[notify]]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Unique name (in logs and the delivery log).
    #[serde(default)]
    pub name: String,
    /// The webhook URL (a secret: prefer `url_file` or `url_env`).
    #[serde(default)]
    pub url: Option<String>,
    /// A file whose first line is the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// An environment variable that holds the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Which events; default all.
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
}

/// Where a target's URL comes from.
#[derive(Clone, PartialEq)]
pub enum UrlSource {
    /// Written in the policy.
    Inline(String),
    /// Read from a file at start.
    File(PathBuf),
    /// Read from the environment at start.
    Env(String),
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            UrlSource::File(p) => write!(f, "File({})", p.display()),
            UrlSource::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// A validated `[[notify]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Name.
    pub name: String,
    /// The URL's source (never printed).
    pub url: UrlSource,
    /// Payload format.
    pub format: Format,
    /// Events sent.
    pub events: Vec<EventKind>,
}

/// Checks a webhook URL without echoing it (it is a secret).
pub fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|_| "is not a URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("is not an http:// or https:// URL".into());
    }
    if url.host().is_none() {
        return Err("names no host".into());
    }
    Ok(())
}

/// Validates the `[[notify]]` entries: `(index, key, message)` for each problem.
pub fn check_specs(specs: &[NotifySpec]) -> (Vec<Target>, Vec<(usize, &'static str, String)>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        if s.name.trim().is_empty() {
            problems.push((i, "name", "a [[notify]] needs a name".to_string()));
        } else if specs[..i].iter().any(|o| o.name == s.name) {
            problems.push((
                i,
                "name",
                format!("{:?} is already the name of another [[notify]]", s.name),
            ));
        }
        let url = match (&s.url, &s.url_file, &s.url_env) {
            (Some(u), None, None) => match check_url(u) {
                Ok(()) => Some(UrlSource::Inline(u.clone())),
                Err(e) => {
                    problems.push((i, "url", format!("the URL {e}")));
                    None
                }
            },
            (None, Some(f), None) => Some(UrlSource::File(f.clone())),
            (None, None, Some(v)) if !v.is_empty() => Some(UrlSource::Env(v.clone())),
            _ => {
                problems.push((
                    i,
                    "url",
                    "give exactly one of url, url_file or url_env".to_string(),
                ));
                None
            }
        };
        let events = s.events.clone().unwrap_or_else(|| {
            vec![
                EventKind::Stopped,
                EventKind::Failed,
                EventKind::Gate,
                EventKind::Exemption,
                EventKind::SweepFailed,
                EventKind::Unwatched,
                EventKind::LeaderChanged,
                EventKind::EventsFailed,
            ]
        });
        if let Some(url) = url {
            targets.push(Target {
                name: s.name.clone(),
                url,
                format: s.format.unwrap_or_default(),
                events,
            });
        }
    }
    (targets, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_need_one_url_source_and_never_echo_the_url() {
        let spec = |url: Option<&str>, env: Option<&str>| NotifySpec {
            name: "chat".into(),
            url: url.map(Into::into),
            url_env: env.map(Into::into),
            ..NotifySpec::default()
        };
        let (_, p) = check_specs(&[spec(None, None)]);
        assert_eq!(p[0].1, "url");
        let (_, p) = check_specs(&[spec(Some("https://x.invalid/a"), Some("HOOK"))]);
        assert!(p[0].2.contains("exactly one"), "{p:?}");
        let (_, p) = check_specs(&[spec(Some("ftp://hunter2.invalid/T0/secret"), None)]);
        assert!(!p[0].2.contains("hunter2"), "{p:?}");
        let (t, p) = check_specs(&[spec(Some("https://hooks.invalid/T0/secret"), None)]);
        assert!(p.is_empty());
        assert!(!format!("{t:?}").contains("secret"), "{t:?}");
        assert_eq!(t[0].events.len(), 8);
    }
}
