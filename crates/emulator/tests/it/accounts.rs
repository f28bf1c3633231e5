//! Several accounts: the SDK's own `AssumeRoleProvider` assumes a role through the emulator's
//! STS, and the session's calls reach that account's world in the signed region.

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::config::{Credentials, Region};
use aws_sdk_codepipeline::error::ProvideErrorMetadata;
use stopd_emulator::{Emulator, EmulatorConfig, FleetSpec};

/// A CodePipeline client in `region` whose credentials come from assuming `role`.
async fn assumed(endpoint: &str, role: &str, region: &str, external_id: Option<&str>) -> Client {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "AKIDAMBIENT",
            "secret",
            None,
            None,
            "tests",
        ))
        .load()
        .await;
    let mut b = AssumeRoleProvider::builder(role).session_name("stopd");
    if let Some(id) = external_id {
        b = b.external_id(id);
    }
    let provider = b.configure(&base).build().await;
    let conf = aws_sdk_codepipeline::config::Builder::from(&base)
        .credentials_provider(provider)
        .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

async fn names(client: &Client) -> Result<Vec<String>, String> {
    let out = client
        .list_pipelines()
        .send()
        .await
        .map_err(|e| e.into_service_error().code().unwrap_or("?").to_string())?;
    Ok(out
        .pipelines()
        .iter()
        .filter_map(|p| p.name.clone())
        .collect())
}

#[tokio::test]
async fn each_role_reaches_its_own_account_and_region() {
    let emulator = Emulator::new(EmulatorConfig::default());
    emulator.seed_fleet(FleetSpec {
        pipelines: 3,
        seed: 1,
        history: 1,
    });
    let regions = ["eu-west-1".to_string(), "us-east-1".to_string()];
    let roles = emulator.add_accounts(
        2,
        &regions,
        Some(FleetSpec {
            pipelines: 4,
            seed: 2,
            history: 1,
        }),
        Some("stopd-ext"),
        None,
    );
    assert_eq!(roles[0], "arn:aws:iam::100000000001:role/stopd");
    // Two accounts' pipelines differ; a region of the same account is its own world.
    emulator
        .world_of("100000000002", "us-east-1")
        .seed_fleet(FleetSpec {
            pipelines: 7,
            seed: 3,
            history: 1,
        });
    let server = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.endpoint_url();

    let a_eu = assumed(&url, &roles[0], "eu-west-1", Some("stopd-ext")).await;
    let b_us = assumed(&url, &roles[1], "us-east-1", Some("stopd-ext")).await;
    assert_eq!(names(&a_eu).await.unwrap().len(), 4);
    assert_eq!(names(&b_us).await.unwrap().len(), 7);
    let arn = a_eu
        .get_pipeline()
        .name(names(&a_eu).await.unwrap()[0].clone())
        .send()
        .await
        .unwrap()
        .metadata
        .unwrap()
        .pipeline_arn
        .unwrap();
    assert!(
        arn.starts_with("arn:aws:codepipeline:eu-west-1:100000000001:"),
        "{arn}"
    );
    // The ambient identity still sees the root world.
    let ambient = crate::common::client(&url);
    assert_eq!(names(&ambient).await.unwrap().len(), 3);
    // Calls are logged by the world that served them.
    assert!(emulator.world_of("100000000001", "eu-west-1").call_counts()["ListPipelines"] >= 2);
    assert!(emulator.accounts().assume_role_calls >= 2);

    // A wrong external id, and a denied role, are AccessDenied: no credentials, no call.
    let wrong = assumed(&url, &roles[0], "eu-west-1", Some("nope")).await;
    assert!(names(&wrong).await.is_err());
    assert!(emulator.set_role_denied(&roles[1], true));
    let denied = assumed(&url, &roles[1], "us-east-1", Some("stopd-ext")).await;
    assert!(names(&denied).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn expired_sessions_are_refused_and_short_ones_are_renewed() {
    let emulator = Emulator::new(EmulatorConfig::default());
    // Credentials shorter than the SDK's 10 s refresh buffer: renewed before every call.
    let roles = emulator.add_accounts(
        1,
        &["eu-west-1".to_string()],
        Some(FleetSpec {
            pipelines: 2,
            seed: 2,
            history: 1,
        }),
        None,
        Some(std::time::Duration::from_secs(5)),
    );
    let server = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = assumed(&server.endpoint_url(), &roles[0], "eu-west-1", None).await;
    for _ in 0..3 {
        assert_eq!(names(&client).await.unwrap().len(), 2);
    }
    let issued = emulator.accounts().assume_role_calls;
    assert!(
        issued >= 3,
        "short-lived sessions are renewed: {issued} AssumeRole calls"
    );

    // A session that ends while cached is refused with AWS's code.
    let long = Emulator::new(EmulatorConfig::default());
    let roles = long.add_accounts(1, &["eu-west-1".to_string()], None, None, None);
    let server2 = long.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = assumed(&server2.endpoint_url(), &roles[0], "eu-west-1", None).await;
    assert!(names(&client).await.unwrap().is_empty());
    long.expire_sessions();
    assert_eq!(names(&client).await.unwrap_err(), "ExpiredTokenException");
    server.shutdown().await;
    server2.shutdown().await;
}
