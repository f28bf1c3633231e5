//! `change_calendar` with `[[account]]`s, through the binary, against the emulator's two
//! accounts (one world per account and region): a calendar named by its name is asked in each
//! account and region its rule selects, through that account's role (the emulator serves a
//! request in the world of the signing session's account), and each place decides by its own
//! answer; a rule's `regions` limit where it is asked; a document ARN is asked once, in its own
//! account and region, and holds wherever the rule applies; an ARN of an account not configured
//! is a configuration error with its line.

use stopd_emulator::Emulator;

use crate::accounts::{status_of, two_accounts, write};
use crate::common::{assert_ok, text};

const ACCOUNTS: [&str; 2] = ["100000000001", "100000000002"];
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// Sets a calendar `name` in one account and region: CLOSED from an hour ago for two hours,
/// or OPEN (CLOSED only later) when `closed` is false.
fn calendar(emulator: &Emulator, account: &str, region: &str, name: &str, closed: bool) {
    let world = emulator.world_of(account, region);
    let mut w = world.lock();
    let now = w.clock.now();
    let span = if closed {
        (now - 3_600_000, now + 7_200_000)
    } else {
        (now + 3_600_000, now + 7_200_000)
    };
    w.calendars.insert(name.to_string(), vec![span]);
}

/// GetCalendarState calls served by one account and region's world.
fn asked(emulator: &Emulator, account: &str, region: &str) -> usize {
    emulator
        .world_of(account, region)
        .calls()
        .iter()
        .filter(|c| c.operation == "GetCalendarState")
        .count()
}

/// GetCalendarState calls the root world (the ambient credentials) served.
fn asked_ambient(emulator: &Emulator) -> usize {
    emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "GetCalendarState")
        .count()
}

#[tokio::test]
async fn a_calendar_name_is_asked_in_each_account_and_region_through_its_role() {
    let (env, roles) = two_accounts(None).await;
    // `prod-changes` exists everywhere; it is CLOSED in payments-prod's eu-west-1 alone.
    for account in ACCOUNTS {
        for region in REGIONS {
            let closed = account == ACCOUNTS[0] && region == "eu-west-1";
            calendar(&env.emulator, account, region, "prod-changes", closed);
        }
    }
    write(
        &env,
        &roles,
        "",
        "[[freeze]]\nname = \"change-calendar\"\nchange_calendar = \"prod-changes\"\npipelines = [\"web\"]\n",
    );
    let out = env.stopd(&["windows"]).await;
    assert_ok(&out);
    let said = text(&out.stderr);
    assert!(
        said.contains(
            "change calendar prod-changes (rule change-calendar, account payments-prod in eu-west-1): CLOSED"
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "change calendar prod-changes (rule change-calendar, account search-prod in us-east-1): OPEN"
        ),
        "{said}"
    );
    let out = env.stopd(&["run", "--once"]).await;
    assert_ok(&out);
    for account in ACCOUNTS {
        for region in REGIONS {
            let closed = account == ACCOUNTS[0] && region == "eu-west-1";
            let want = if closed { "Stopping" } else { "InProgress" };
            assert_eq!(
                status_of(&env.emulator, account, region),
                want,
                "{account} {region}: {}",
                text(&out.stderr)
            );
            // Asked there, with that account's credentials (the world of the session's account).
            assert!(
                asked(&env.emulator, account, region) >= 2,
                "{account} {region}: windows and the sweep each ask"
            );
        }
    }
    assert_eq!(
        asked_ambient(&env.emulator),
        0,
        "never with the ambient credentials"
    );
    let report = env.report(&[]).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0]["rule"], "change-calendar");
    assert_eq!(report[0]["account"], "payments-prod");
    assert_eq!(report[0]["region"], "eu-west-1");
}

#[tokio::test]
async fn a_rules_regions_limit_where_its_calendar_is_asked_and_an_unreadable_place_is_named() {
    let (env, roles) = two_accounts(None).await;
    // CLOSED in both accounts' eu-west-1, where the rule does not apply; in us-east-1 it
    // exists in payments-prod only, so search-prod's us-east-1 cannot read it.
    for account in ACCOUNTS {
        calendar(&env.emulator, account, "eu-west-1", "prod-changes", true);
    }
    calendar(
        &env.emulator,
        ACCOUNTS[0],
        "us-east-1",
        "prod-changes",
        true,
    );
    write(
        &env,
        &roles,
        "",
        "[[freeze]]\nname = \"us-calendar\"\nchange_calendar = \"prod-changes\"\nregions = [\"us-east-1\"]\npipelines = [\"web\"]\n",
    );
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "rule us-calendar: change calendar prod-changes (account search-prod in us-east-1) cannot be read"
        ),
        "{err}"
    );
    for account in ACCOUNTS {
        assert_eq!(
            asked(&env.emulator, account, "eu-west-1"),
            0,
            "{account}: not asked outside the rule's regions"
        );
        assert_eq!(status_of(&env.emulator, account, "eu-west-1"), "InProgress");
        assert_eq!(asked(&env.emulator, account, "us-east-1"), 1, "{account}");
    }
    // payments-prod's us-east-1 read its CLOSED calendar and stopped; search-prod's could not
    // read it and stopped nothing.
    assert_eq!(
        status_of(&env.emulator, ACCOUNTS[0], "us-east-1"),
        "Stopping"
    );
    assert_eq!(
        status_of(&env.emulator, ACCOUNTS[1], "us-east-1"),
        "InProgress"
    );
}

#[tokio::test]
async fn a_document_arn_is_asked_once_in_its_account_and_region_and_holds_everywhere() {
    let (env, roles) = two_accounts(None).await;
    // The release calendar lives in search-prod's eu-west-1 and is CLOSED. A calendar of the
    // same name elsewhere is OPEN: the ARN's, not the place's, decides.
    calendar(&env.emulator, ACCOUNTS[1], "eu-west-1", "release", true);
    calendar(&env.emulator, ACCOUNTS[0], "us-east-1", "release", false);
    write(
        &env,
        &roles,
        "",
        &format!(
            "[[freeze]]\nname = \"release\"\nchange_calendar = \"arn:aws:ssm:eu-west-1:{}:document/release\"\npipelines = [\"web\"]\n",
            ACCOUNTS[1]
        ),
    );
    assert_ok(&env.stopd(&["check"]).await);
    let out = env.stopd(&["run", "--once"]).await;
    assert_ok(&out);
    for account in ACCOUNTS {
        for region in REGIONS {
            assert_eq!(
                status_of(&env.emulator, account, region),
                "Stopping",
                "{account} {region}"
            );
            let want = usize::from(account == ACCOUNTS[1] && region == "eu-west-1");
            assert_eq!(
                asked(&env.emulator, account, region),
                want,
                "{account} {region}"
            );
        }
    }
}

#[tokio::test]
async fn a_document_arn_of_an_account_not_configured_is_a_configuration_error() {
    let (env, roles) = two_accounts(None).await;
    write(
        &env,
        &roles,
        "",
        "[[freeze]]\nname = \"release\"\nchange_calendar = \"arn:aws:ssm:eu-west-1:999988887777:document/release\"\n",
    );
    let out = env.stopd(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // The line of the `change_calendar` key.
    let line = std::fs::read_to_string(env.config_path())
        .unwrap()
        .lines()
        .position(|l| l.starts_with("change_calendar"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(":{line}:"))
            && err.contains("freeze[0].change_calendar")
            && err.contains("the calendar's account 999988887777 is not an [[account]] here"),
        "{err}"
    );
    // A shape that is no document ARN at all is refused too, with or without accounts.
    write(
        &env,
        &roles,
        "",
        "[[freeze]]\nname = \"release\"\nchange_calendar = \"arn:aws:ssm:eu-west-1:1:parameter/x\"\n",
    );
    let out = env.stopd(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is not a Change Calendar document ARN"),
        "{}",
        text(&out.stderr)
    );
}
