//! Where the policy is enforced: one [`Core`] per (account, region) pair.
//!
//! Without `[[account]]`, one pair: the ambient credentials' account, named [`stopd_audit::Place::DEFAULT_ACCOUNT`],
//! in `[aws] region` (or the SDK's default chain's). With `[[account]]` tables, one pair per
//! account and region: each assumes its account's role (the SDK's `AssumeRoleProvider`, sessions
//! renewed before they expire), keeps its own rate limiter (CodePipeline throttles per account
//! and region) and discovery memory; all of them share one bound on requests in flight. When a
//! rule names a Change Calendar, each pair also gets an SSM client with the same credentials
//! (the ambient ones, or its account's role) and knows its account's id (from the role ARN), by
//! which a calendar's document ARN is asked in its own account.

use std::sync::Arc;

use stopd_core::{
    ClientConfig, Core, CoreConfig, LimiterConfig, RateLimiter, RetryPolicy, RoleSpec,
};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The session name stopd's calls carry in CloudTrail in every assumed account.
pub const SESSION_NAME: &str = "stopd";

/// What one account and region may use of a bound shared by `pairs` of them (pipelines read
/// at once, `discovery_concurrency`; stops under way at once, `stop_concurrency`): twice its
/// share, at least 4 (and at most all of it). Reads beyond the shared bound on requests in
/// flight would only wait, each holding a task and a request in memory: at 40 pairs x 64, 2,560
/// of them came to ~45 MiB. Four at once already outrun one account and region's rate limit at
/// AWS's latencies. Stops are bounded per pair for another reason: a stop holds its slot while
/// it waits for its pair's pace and backs off from throttles, so under one bound for every pair
/// the slowest pair's stops held most slots and the others waited (issue 29: a window edge over
/// 40 pairs took 3.7x the floor).
pub fn per_pair(total: usize, pairs: usize) -> usize {
    (2 * total)
        .div_ceil(pairs.max(1))
        .clamp(4.min(total), total)
}

/// The engine's tuning from `[daemon]`, for one of `pairs` accounts and regions.
fn core_config(
    cfg: &Config,
    pairs: usize,
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
) -> CoreConfig {
    CoreConfig {
        concurrency: per_pair(cfg.daemon.discovery_concurrency, pairs),
        stop_retry: RetryPolicy {
            deadline: cfg.daemon.stop_deadline,
            ..RetryPolicy::default()
        },
        in_flight,
        ..CoreConfig::default()
    }
}

/// Requests in flight at once across every account and region: what one pair may use at most
/// (`discovery_concurrency` + `stop_concurrency`), so that many pairs never open thousands of
/// connections at once.
pub fn global_in_flight(cfg: &Config) -> usize {
    cfg.daemon.discovery_concurrency + cfg.daemon.stop_concurrency
}

/// One engine per (account, region), in `[[account]]` order, then region order.
pub async fn build(cfg: &Config, cancel: CancellationToken) -> Vec<Core> {
    let base = ClientConfig {
        region: cfg.aws.region.clone(),
        profile: cfg.aws.profile.clone(),
        endpoint_url: cfg.aws.endpoint_url.clone(),
        static_credentials: cfg.static_credentials.clone(),
        sts_endpoint_url: cfg.aws.sts_endpoint_url.clone(),
        ssm_endpoint_url: cfg.aws.ssm_endpoint_url.clone(),
        ..ClientConfig::default()
    };
    let calendars = !cfg.policy.change_calendars().is_empty();
    if cfg.accounts.is_empty() {
        let client = stopd_core::build_client(&base).await;
        let core = Core::new(
            client,
            RateLimiter::new(LimiterConfig::default()),
            core_config(cfg, 1, None),
            cancel,
            stopd_audit::Place::DEFAULT_ACCOUNT,
        );
        // Change Calendars are asked with the ambient credentials (built only if a rule has one).
        if calendars {
            core.set_ssm(stopd_core::build_ssm_client(&base).await);
        }
        return vec![core];
    }
    let in_flight = Arc::new(tokio::sync::Semaphore::new(global_in_flight(cfg)));
    // One connection pool and TLS configuration for all of them, the SDK configuration loaded
    // once, and each account's role assumed once for all of its regions.
    let factory = stopd_core::RoleClients::new(&ClientConfig {
        http_client: Some(stopd_core::http_client()),
        ..base
    })
    .await;
    let pairs: usize = cfg
        .accounts
        .iter()
        .map(|a| a.regions.as_ref().map_or(0, Vec::len))
        .sum();
    let mut cores = Vec::new();
    for a in &cfg.accounts {
        let regions = a.regions.clone().unwrap_or_default();
        let role = RoleSpec {
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
            session_name: SESSION_NAME.into(),
        };
        // Change Calendars are asked in each account and region through its own role, the same
        // credentials as its CodePipeline calls (SSM clients only if a rule names a calendar).
        let clients = factory.clients_with_ssm(&role, &regions, calendars).await;
        for (client, region) in clients.into_iter().zip(&regions) {
            let core = Core::new_at(
                client.codepipeline,
                RateLimiter::new(LimiterConfig::default()),
                core_config(cfg, pairs, Some(Arc::clone(&in_flight))),
                cancel.clone(),
                &a.name,
                region,
            );
            if let Some(ssm) = client.ssm {
                core.set_ssm(ssm);
            }
            if let Some(id) = a.account_id() {
                core.set_account_id(id);
            }
            cores.push(core);
        }
    }
    cores
}

/// Whether a record made in `account` and `region` belongs to `core` (`None`: recorded before
/// accounts and regions were, in the ambient account).
pub fn owns(core: &Core, account: Option<&str>, region: Option<&str>) -> bool {
    stopd_audit::Place::account_or_default(account) == core.account()
        && region.is_none_or(|r| r == core.region())
}

/// The engine of `account` (name) in `region`; with one pair, that one when neither is given.
pub fn pick<'a>(
    cores: &'a [Core],
    account: Option<&str>,
    region: Option<&str>,
) -> Result<&'a Core, String> {
    let matching: Vec<&Core> = cores
        .iter()
        .filter(|c| account.is_none_or(|a| a == c.account()))
        .filter(|c| region.is_none_or(|r| r == c.region()))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no configured account and region matches (configured: {})",
            cores.iter().map(Core::place).collect::<Vec<_>>().join(", ")
        )),
        many => Err(format!(
            "{} accounts and regions match: name one with --account and --region ({})",
            many.len(),
            many.iter()
                .map(|c| c.place())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_concurrency_is_shared_by_the_pairs() {
        assert_eq!(per_pair(64, 1), 64);
        assert_eq!(per_pair(64, 2), 64);
        assert_eq!(per_pair(64, 10), 13);
        assert_eq!(per_pair(64, 40), 4);
        assert_eq!(per_pair(64, 1_000), 4);
        assert_eq!(per_pair(2, 40), 2, "never more than configured");
        assert_eq!(per_pair(1, 3), 1);
    }
}
