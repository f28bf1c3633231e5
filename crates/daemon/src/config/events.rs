//! `[events]`: the SQS queue an EventBridge rule fills with CodePipeline's execution state
//! changes, which the daemon long-polls (`runtime/events/`).

use serde::{Deserialize, Serialize};

/// `[events]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSpec {
    /// The queue's URL: `https://sqs.eu-west-1.amazonaws.com/111122223333/stopd-events`.
    #[serde(default)]
    pub queue_url: Option<String>,
}

/// `[events]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSettings {
    /// The queue's URL.
    pub queue_url: String,
    /// The account id the URL names (the queue's owner): without `[[account]]`, the ambient
    /// credentials' account is taken to be this one.
    pub account_id: Option<String>,
    /// The region the URL names (SQS's hosts do); `[aws] region` otherwise.
    pub region: Option<String>,
}

/// Checks `[events]`: the settings, or `(key, why)`.
pub fn check_spec(spec: &EventsSpec) -> Result<EventsSettings, (&'static str, String)> {
    let Some(text) = &spec.queue_url else {
        return Err((
            "queue_url",
            "[events] needs queue_url, the SQS queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)".into(),
        ));
    };
    let url =
        url::Url::parse(text).map_err(|e| ("queue_url", format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err((
            "queue_url",
            format!("{text:?} is not an http:// or https:// URL with a host"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "queue_url",
            "must not carry a user name or password (user:password@host)".into(),
        ));
    }
    let name = url
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .unwrap_or_default();
    if name.is_empty() {
        return Err((
            "queue_url",
            format!("{text:?} names no queue (its path ends with the queue's name)"),
        ));
    }
    let (account_id, region) = queue_url_parts(text);
    Ok(EventsSettings {
        queue_url: text.clone(),
        account_id,
        region,
    })
}

/// The account id and region an SQS queue URL names
/// (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or the legacy
/// `https://REGION.queue.amazonaws.com/ACCOUNT/NAME`); `None` where the URL does not say.
pub fn queue_url_parts(url: &str) -> (Option<String>, Option<String>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or(host);
    let segments: Vec<&str> = parts.filter(|s| !s.is_empty()).collect();
    let account = segments
        .len()
        .checked_sub(2)
        .map(|i| segments[i])
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string);
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs", region, ..] if region.contains('-') => Some((*region).to_string()),
        [region, "queue", "amazonaws", ..] => Some((*region).to_string()),
        _ => None,
    };
    (account, region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_names_its_account_and_region() {
        assert_eq!(
            queue_url_parts("https://sqs.eu-west-1.amazonaws.com/111122223333/stopd-events"),
            (Some("111122223333".into()), Some("eu-west-1".into()))
        );
        assert_eq!(
            queue_url_parts("https://us-east-2.queue.amazonaws.com/111122223333/q"),
            (Some("111122223333".into()), Some("us-east-2".into()))
        );
        assert_eq!(
            queue_url_parts("http://127.0.0.1:4599/000000000000/stopd-events"),
            (Some("000000000000".into()), None)
        );
        assert_eq!(queue_url_parts("http://127.0.0.1:4599/q"), (None, None));
    }

    #[test]
    fn a_queue_url_is_required_and_must_name_a_queue() {
        let check = |u: Option<&str>| {
            check_spec(&EventsSpec {
                queue_url: u.map(str::to_string),
            })
        };
        assert_eq!(check(None).unwrap_err().0, "queue_url");
        assert!(check(Some("sqs/stopd")).is_err());
        assert!(check(Some("https://sqs.eu-west-1.amazonaws.com/")).is_err());
        assert!(check(Some("ftp://x/1/q")).is_err());
        let ok = check(Some("https://sqs.eu-west-1.amazonaws.com/111122223333/q")).unwrap();
        assert_eq!(ok.region.as_deref(), Some("eu-west-1"));
    }
}
