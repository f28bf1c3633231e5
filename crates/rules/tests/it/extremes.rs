//! Extreme but valid policies never panic: spans at the 100-year bound, cron steps far past a
//! field's range, one-off windows at the ends of the calendar, instants from year 1 to 9999.
//! (Before the bounded span type, `duration = "99999999999h"` passed validation and panicked in
//! window arithmetic; `1/4294967295` overflowed in cron parsing.)

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use stopd_rules::{ExecutionFacts, Policy, PolicySpec};

fn span() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1s".to_string()),
        Just("36525days".to_string()),
        Just("36524days 23h 59m 59s".to_string()),
        (1u64..3_155_760_000).prop_map(|s| format!("{s}s")),
        (1u64..876_600).prop_map(|h| format!("{h}h")),
    ]
}

fn cron() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1/4294967295 * * * *".to_string()),
        Just("0 0 29 2 *".to_string()),
        Just("*/59 */23 */31 */12 */7".to_string()),
        Just("0 2 * * SUN".to_string()),
        (0u32..60, 1u32..u32::MAX).prop_map(|(m, s)| format!("{m}/{s} * * * *")),
    ]
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        // Around now, across the year.
        (0i64..366 * 86_400).prop_map(|s| DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap()),
        // The ends of what RFC 3339 (and so `plan --at`) can name.
        Just("0001-01-01T00:00:00Z".parse().unwrap()),
        Just("9999-12-31T23:59:59Z".parse().unwrap()),
        (0i64..253_402_300_799).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
    ]
}

fn zone() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("UTC"),
        Just("Pacific/Kiritimati"),
        Just("Pacific/Pago_Pago"),
        Just("Australia/Lord_Howe"),
        Just("America/New_York"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn extreme_policies_decide_and_list_windows_without_panicking(
        cron in cron(),
        duration in span(),
        grace in span(),
        escalate in span(),
        max in span(),
        zone in zone(),
        one_off_start in prop_oneof![Just("0001-01-01T00:00:00"), Just("2026-12-19T00:00:00"), Just("9999-12-30T00:00:00")],
        t in instant(),
        start in prop_oneof![Just(None), instant().prop_map(Some)],
    ) {
        let text = format!(
            "[[freeze]]\nname = \"r\"\ncron = \"{cron}\"\nduration = \"{duration}\"\ngrace = \"{grace}\"\n\
             escalate_after = \"{escalate}\"\ntimezone = \"{zone}\"\n\n\
             [[freeze]]\nname = \"o\"\nstart = \"{one_off_start}\"\nend = \"9999-12-31T23:59:59\"\ntimezone = \"{zone}\"\n\n\
             [[timeout]]\nname = \"t\"\nmax_duration = \"{max}\"\nreason = \"{{elapsed}} {{max_duration}} {{until}}\"\n"
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let policy = match Policy::compile(&spec) {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(e.iter().all(|e| e.to_string().contains("never fires")), "{e:?}");
                return Ok(());
            }
        };
        let tags = BTreeMap::new();
        let ex = [ExecutionFacts { pipeline: "p", execution_id: "e", start, rollback: false, tags: &tags }];
        // Across a year from t, as `windows --days 366` and a year of sweeps would.
        let year_end = t.checked_add_signed(Duration::days(366)).unwrap_or(t);
        let _ = policy.windows(t, year_end);
        let decider = policy.decider(t);
        for step in [0, 1, 3_600, 86_400 * 30, 86_400 * 365] {
            let Some(at) = t.checked_add_signed(Duration::seconds(step)) else { continue };
            let _ = policy.decide(at, &ex, &[]);
            let _ = decider.decide(at, &ex, &[]);
            let _ = policy.next_transition(at, &ex);
        }
    }
}
