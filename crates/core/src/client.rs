//! Building the CodePipeline client from the `[aws]` table.
//!
//! Credentials come from the SDK's default chain: environment, `AWS_CONFIG_FILE` /
//! `AWS_SHARED_CREDENTIALS_FILE` profiles, web identity, ECS and EC2 instance roles. Under
//! systemd `$HOME` is unset, so `~/.aws/config` is not found: use an instance role, or point
//! `AWS_CONFIG_FILE`/`AWS_SHARED_CREDENTIALS_FILE` at files readable by the service (e.g. through
//! an `EnvironmentFile=`).
//!
//! HTTP: the SDK's default HTTPS client (hyper 1, rustls with aws-lc), built here to close idle
//! connections after [`IDLE_TIMEOUT`] instead of hyper's 90 s. Every connection of a sweep's
//! burst (up to `discovery_concurrency + stop_concurrency`) is kept while the sweep goes on,
//! so each is opened once a sweep, and closed soon after it: ~4 MiB at rest for 128
//! connections otherwise. (Keeping at most 8 idle instead, a connection given back while 8
//! were idle was closed and later calls opened new ones, on AWS a TLS handshake each: 45-47
//! connections where 32 serve in the test `a_burst_of_calls_reuses_its_connections`, and
//! 0.7 s of a gating window's edge at 1,000 pipelines; BENCHMARKS.md.)
//!
//! Other accounts: with a [`RoleSpec`], the client's credentials come from the SDK's
//! `AssumeRoleProvider` (STS AssumeRole with the ambient credentials, at `sts_endpoint_url` if
//! set), cached by the SDK and renewed before they expire.
//!
//! Retries: the SDK's retry layer is set to one attempt. stopd's own loop ([`crate::retry`]) owns
//! retries, so attempts never multiply (SDK 3 x ours 20 = 60 requests per stop).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::config::retry::RetryConfig;
use aws_sdk_codepipeline::config::timeout::TimeoutConfig;
use aws_sdk_codepipeline::config::{
    Credentials, IdentityCache, Region, SharedCredentialsProvider, SharedHttpClient,
};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// How long a connection may stay idle before it is closed: longer than any pause within a
/// sweep, shorter than the pause between two (schedules are in whole seconds).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the client needs to know.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Region; the default chain otherwise.
    pub region: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Endpoint override: a local emulator or a VPC endpoint.
    pub endpoint_url: Option<String>,
    /// Connect timeout (default 3 s).
    pub connect_timeout: Option<Duration>,
    /// Timeout of one HTTP attempt (default 10 s).
    pub attempt_timeout: Option<Duration>,
    /// Fixed credentials (access key, secret): for local emulators and tests only.
    pub static_credentials: Option<(String, String)>,
    /// Act in another account through this role.
    pub role: Option<RoleSpec>,
    /// Where AssumeRole goes (an emulator, a VPC endpoint); STS's regional endpoint otherwise.
    pub sts_endpoint_url: Option<String>,
    /// Where SSM (Change Calendars) goes; `endpoint_url` otherwise, then SSM's regional one.
    pub ssm_endpoint_url: Option<String>,
    /// Where SQS (the event queue) goes; `endpoint_url` otherwise, then SQS's regional one.
    pub sqs_endpoint_url: Option<String>,
    /// An HTTP client to share (from [`http_client`]): one connection pool and one TLS
    /// configuration for every account and region, instead of one each (40 pairs each with
    /// their own came to ~1 MiB apiece).
    pub http_client: Option<SharedHttpClient>,
}

/// The HTTPS client stopd uses: the SDK's default stack, idle connections closed after
/// [`IDLE_TIMEOUT`].
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .pool_idle_timeout(IDLE_TIMEOUT)
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https()
}

/// A role to assume for another account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSpec {
    /// `arn:aws:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// `sts:ExternalId`, if the role's trust policy requires one.
    pub external_id: Option<String>,
    /// The session name CloudTrail shows for stopd's calls in that account.
    pub session_name: String,
}

/// The SDK configuration stopd's clients are made from: `BehaviorVersion::latest()`, SDK
/// retries off, the timeouts, region, profile and credentials of `config`, calling `endpoint`.
async fn load(
    config: &ClientConfig,
    http: &SharedHttpClient,
    endpoint: Option<&String>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout.unwrap_or(Duration::from_secs(3)))
                .operation_attempt_timeout(
                    config.attempt_timeout.unwrap_or(Duration::from_secs(10)),
                )
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    if let Some((key, secret)) = &config.static_credentials {
        loader =
            loader.credentials_provider(Credentials::new(key, secret, None, None, "stopd-static"));
    }
    loader.load().await
}

/// Builds the client: default credential chain (or a role assumed with it),
/// `BehaviorVersion::latest()`, SDK retries off.
pub async fn build_client(config: &ClientConfig) -> Client {
    let http = config.http_client.clone().unwrap_or_else(http_client);
    match &config.role {
        None => Client::new(&load(config, &http, config.endpoint_url.as_ref()).await),
        Some(role) => {
            let factory = RoleClients::new(config).await;
            let region = config.region.clone().unwrap_or_default();
            factory
                .clients(role, std::slice::from_ref(&region))
                .await
                .into_iter()
                .next()
                .expect("one region, one client")
        }
    }
}

/// The SSM client of the ambient credentials (Change Calendars' `GetCalendarState`): the same
/// configuration as CodePipeline's, at `ssm_endpoint_url` or else `endpoint_url`.
pub async fn build_ssm_client(config: &ClientConfig) -> aws_sdk_ssm::Client {
    let http = config.http_client.clone().unwrap_or_else(http_client);
    let endpoint = config
        .ssm_endpoint_url
        .as_ref()
        .or(config.endpoint_url.as_ref());
    aws_sdk_ssm::Client::new(&load(config, &http, endpoint).await)
}

/// The SQS client of the ambient credentials (the event queue): the same configuration as
/// CodePipeline's, at `sqs_endpoint_url` or else `endpoint_url`, in `region` (the queue's, from
/// its URL) when given.
pub async fn build_sqs_client(config: &ClientConfig, region: Option<&str>) -> aws_sdk_sqs::Client {
    let http = config.http_client.clone().unwrap_or_else(http_client);
    let endpoint = config
        .sqs_endpoint_url
        .as_ref()
        .or(config.endpoint_url.as_ref());
    let base = load(config, &http, endpoint).await;
    let mut conf = aws_sdk_sqs::config::Builder::from(&base);
    if let Some(r) = region {
        conf = conf.region(Region::new(r.to_string()));
    }
    aws_sdk_sqs::Client::from_conf(conf.build())
}

/// Makes the clients of accounts reached through roles. The SDK configuration (and with it the
/// ambient credentials chain) is loaded twice in all (CodePipeline's and STS's), not twice per
/// account and region; each account's role is assumed once for all of its regions and both
/// services (one provider, one identity cache), and every client shares one HTTP client.
#[derive(Debug, Clone)]
pub struct RoleClients {
    /// CodePipeline's configuration.
    base: SdkConfig,
    /// STS's: AssumeRole is signed with the ambient credentials and sent to STS (or its
    /// override).
    sts: SdkConfig,
    /// Where SSM goes when not where CodePipeline does (`ssm_endpoint_url`).
    ssm_endpoint_url: Option<String>,
}

/// One account and region's clients: CodePipeline's, and SSM's when asked for.
#[derive(Debug, Clone)]
pub struct RoleClient {
    /// CodePipeline.
    pub codepipeline: Client,
    /// SSM (Change Calendars), with the same credentials.
    pub ssm: Option<aws_sdk_ssm::Client>,
}

impl RoleClients {
    /// Loads the configurations once.
    pub async fn new(config: &ClientConfig) -> RoleClients {
        let http = config.http_client.clone().unwrap_or_else(http_client);
        RoleClients {
            base: load(config, &http, config.endpoint_url.as_ref()).await,
            sts: load(config, &http, config.sts_endpoint_url.as_ref()).await,
            ssm_endpoint_url: config.ssm_endpoint_url.clone(),
        }
    }

    /// One client per region, all acting in the role's account.
    pub async fn clients(&self, role: &RoleSpec, regions: &[String]) -> Vec<Client> {
        self.clients_with_ssm(role, regions, false)
            .await
            .into_iter()
            .map(|c| c.codepipeline)
            .collect()
    }

    /// One CodePipeline client per region, and with `ssm` an SSM client beside each, all acting
    /// in the role's account through one credentials provider and identity cache (the role is
    /// assumed once for every region and both services).
    pub async fn clients_with_ssm(
        &self,
        role: &RoleSpec,
        regions: &[String],
        ssm: bool,
    ) -> Vec<RoleClient> {
        let mut provider = AssumeRoleProvider::builder(&role.role_arn)
            .session_name(&role.session_name)
            .configure(&self.sts);
        if let Some(id) = &role.external_id {
            provider = provider.external_id(id);
        }
        // Only an STS client is made here; no call until credentials are needed.
        let provider = SharedCredentialsProvider::new(provider.build().await);
        let cache = IdentityCache::lazy().build();
        regions
            .iter()
            .map(|region| {
                let mut conf = aws_sdk_codepipeline::config::Builder::from(&self.base)
                    .region(Region::new(region.clone()))
                    .identity_cache(cache.clone());
                // `set_`, not `credentials_provider(..)`, which would wrap it in a new provider
                // with a cache partition of its own: the regions would each assume the role.
                conf.set_credentials_provider(Some(provider.clone()));
                let ssm = ssm.then(|| {
                    let mut conf = aws_sdk_ssm::config::Builder::from(&self.base)
                        .region(Region::new(region.clone()))
                        .identity_cache(cache.clone());
                    if let Some(url) = &self.ssm_endpoint_url {
                        conf = conf.endpoint_url(url);
                    }
                    conf.set_credentials_provider(Some(provider.clone()));
                    aws_sdk_ssm::Client::from_conf(conf.build())
                });
                RoleClient {
                    codepipeline: Client::from_conf(conf.build()),
                    ssm,
                }
            })
            .collect()
    }
}
