//! `[aws]`: where the CodePipeline (and STS, SSM, SQS) APIs are reached.

use serde::{Deserialize, Serialize};

/// `[aws]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSpec {
    /// Region; the default provider chain otherwise.
    #[serde(default)]
    pub region: Option<String>,
    /// Named profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Endpoint override (a local emulator, a VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Where STS AssumeRole goes for `[[account]]` roles (an emulator, a VPC endpoint).
    #[serde(default)]
    pub sts_endpoint_url: Option<String>,
    /// Where SSM goes (Change Calendars' GetCalendarState); `endpoint_url` otherwise.
    #[serde(default)]
    pub ssm_endpoint_url: Option<String>,
    /// Where SQS goes (the `[events]` queue); `endpoint_url` otherwise.
    #[serde(default)]
    pub sqs_endpoint_url: Option<String>,
}

impl AwsSpec {
    /// Checks the endpoints: `(key, why)` for each that cannot be used; the warnings (plain HTTP
    /// to another host) go to `warnings`.
    pub(super) fn check(&self, warnings: &mut Vec<String>) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (key, url) in [
            ("endpoint_url", &self.endpoint_url),
            ("sts_endpoint_url", &self.sts_endpoint_url),
            ("ssm_endpoint_url", &self.ssm_endpoint_url),
            ("sqs_endpoint_url", &self.sqs_endpoint_url),
        ] {
            if let Some(url) = url {
                match check_endpoint(url) {
                    Ok(w) => warnings.extend(w),
                    Err(e) => problems.push((key, e)),
                }
            }
        }
        problems
    }
}

/// Checks an endpoint URL; `Err` says why it cannot be used, `Ok(Some)` warns.
fn check_endpoint(text: &str) -> Result<Option<String>, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    let Some(host) = url.host() else {
        return Err(format!("{text:?} names no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo what was written: it may be a secret.
        return Err("must not carry a user name or password (user:password@host): CodePipeline endpoints take none, and the policy file is no place for secrets".into());
    }
    let loopback = match host {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    };
    Ok((url.scheme() == "http" && !loopback).then(|| {
        format!(
            "[aws] endpoint_url {text} is plain HTTP to another host: requests and their signatures travel unencrypted"
        )
    }))
}
