//! The policy file's tests: errors located at their key, defaults, the example file, the
//! schedule's interval.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use stopd_rules::{AllowSpec, DefaultsSpec, ExemptSpec, FreezeSpec, TimeoutSpec};

use crate::config::daemon::DaemonSpec;
use crate::config::load::daemon_section;
use crate::config::{
    AccountSpec, AuditSpec, AwsSpec, ConfigError, DEFAULT_DATABASE, DEFAULT_SCHEDULE, MetricsSpec,
    NotifySpec, load, parse, policy_hash,
};

fn err(text: &str) -> ConfigError {
    parse(Path::new("/etc/stopd/stopd.toml"), text).unwrap_err()
}

/// A file that is not TOML: its `[daemon]` table is read alone only when unambiguous.
#[test]
fn daemon_table_of_a_file_that_is_not_toml_is_read_only_when_unambiguous() {
    let db = |t: &str, line| daemon_section(t, Some(line)).map(|d| d.database);
    // No [daemon] anywhere: the defaults, whatever the error.
    assert_eq!(db("[[freeze]]\nname = \"x\n", 2), Ok(None));
    // The error is elsewhere: the table, alone.
    let text = "[daemon]\ndatabase = \"/srv/a.db\"\n\n[[freeze]]\nname = \"x\n";
    assert_eq!(db(text, 5), Ok(Some("/srv/a.db".to_owned())));
    // The error is in it, or the table cannot be told apart: refused.
    let text = "[daemon]\ndatabase = \"/srv/a.db\n[[freeze]]\n";
    assert!(db(text, 2).unwrap_err().contains("in the [daemon] table"));
    let text = "daemon.database = \"/srv/a.db\"\n[[freeze]]\nname = \"x\n";
    assert!(db(text, 3).unwrap_err().contains("cannot be told apart"));
    let text = "[daemon]\n[daemon]\n[x\n";
    assert!(db(text, 3).is_err());
}

#[test]
fn unknown_key_names_line_and_column() {
    let e = err("[daemon]\nschedule = \"* * * * *\"\nshedule = \"x\"\n");
    assert_eq!(e.problems[0].line, Some(3));
    assert_eq!(e.problems[0].column, Some(1));
    assert!(e.problems[0].message.contains("shedule"), "{e}");
    assert!(
        e.to_string().starts_with("/etc/stopd/stopd.toml:3:1: "),
        "{e}"
    );
}

#[test]
fn policy_errors_point_at_the_key_of_the_right_entry() {
    let text = "\
[[freeze]]
name = \"ok\"
cron = \"0 18 * * FRI\"
duration = \"62h\"

[[timeout]]
name = \"t\"
max_duration = \"2h\"

[[freeze]]
name = \"bad\"
cron = \"0 25 * * *\"
duration = \"1h\"
  timezone = \"Mars/Olympus\"
";
    let e = err(text);
    let fields: Vec<_> = e
        .problems
        .iter()
        .map(|p| (p.field.clone().unwrap(), p.line, p.column))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("freeze[1].cron".to_string(), Some(12), Some(1)),
            ("freeze[1].timezone".to_string(), Some(14), Some(3)),
        ],
        "{e}"
    );
}

/// `[[allow]]` entries are located like freezes: a name used by a freeze, a missing window, an
/// unknown key; and they take their place in the file's order among the rules.
#[test]
fn allow_rules_are_located_and_ordered_in_the_file() {
    let text = "\
[[freeze]]
name = \"x\"
start = \"2026-12-19T00:00:00\"
end = \"2027-01-04T09:00:00\"

[[allow]]
name = \"x\"
cron = \"0 9 * * MON-FRI\"

[[allow]]
name = \"no-window\"
";
    let e = err(text);
    let fields: Vec<_> = e
        .problems
        .iter()
        .map(|p| {
            (
                p.field.clone().unwrap(),
                p.line,
                p.column,
                p.message.clone(),
            )
        })
        .collect();
    assert_eq!(fields.len(), 3, "{e}");
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.0 == name)
            .unwrap_or_else(|| panic!("{e}"))
    };
    let name = field("allow[0].name");
    assert_eq!((name.1, name.2), (Some(7), Some(1)));
    assert!(name.3.contains("already used by freeze[0]"), "{e}");
    // cron without duration or end_cron: at the entry, in an allow rule's words.
    let shape = field("allow[0].duration");
    assert_eq!(shape.1, Some(6));
    assert!(
        shape.3.starts_with("an allow rule is either recurring"),
        "{e}"
    );
    assert_eq!(field("allow[1]").1, Some(10));
    let e = err("[[allow]]\nname = \"a\"\nmax_duration = \"2h\"\n");
    assert_eq!(
        (e.problems[0].line, e.problems[0].column),
        (Some(3), Some(1))
    );

    // File order: the allow rule between the two freezes wins a tie over the second.
    let text = "\
[[freeze]]
name = \"first\"
start = \"2026-12-19T00:00:00\"
end = \"2027-01-04T09:00:00\"
pipelines = [\"other\"]

[[allow]]
name = \"office-hours\"
cron = \"0 9 * * MON-FRI\"
duration = \"8h\"

[[freeze]]
name = \"second\"
cron = \"0 0 * * *\"
duration = \"24h\"
";
    let c = parse(Path::new("x.toml"), text).unwrap();
    let names: Vec<&str> = c.policy.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["first", "office-hours", "second"]);
}

/// Digests are signed: a directory without a key (or a key without a directory) is an
/// error at the key's line, not a daemon that writes nothing.
#[test]
fn audit_digests_need_both_keys() {
    let e = err("[audit]\ndigest_dir = \"/var/lib/stopd/digests\"\n");
    assert_eq!(e.problems[0].field.as_deref(), Some("audit.digest_dir"));
    assert_eq!(e.problems[0].line, Some(2));
    let e = err("[audit]\n\nsigning_key = \"/etc/stopd/k.pem\"\n");
    assert_eq!(e.problems[0].field.as_deref(), Some("audit.signing_key"));
    assert_eq!(e.problems[0].line, Some(3));
    let e = err("[audit]\ndigests = \"x\"\n");
    assert_eq!(e.problems[0].line, Some(2));
}

#[test]
fn daemon_schedule_is_checked() {
    let e = err("[daemon]\nschedule = \"every minute\"\n");
    assert_eq!(e.problems[0].field.as_deref(), Some("daemon.schedule"));
    assert_eq!(e.problems[0].line, Some(2));
}

#[test]
fn zero_bounds_and_a_bad_endpoint_are_located_in_file_order() {
    let e = err("[aws]\nendpoint_url = \"localhost:4599\"\n\n[daemon]\nstop_concurrency = 0\n");
    let got: Vec<_> = e
        .problems
        .iter()
        .map(|p| (p.field.clone().unwrap(), p.line, p.message.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "aws.endpoint_url".to_string(),
                Some(2),
                "\"localhost:4599\" is not an http:// or https:// URL".to_string()
            ),
            (
                "daemon.stop_concurrency".to_string(),
                Some(5),
                "must be between 1 and 4096".to_string()
            ),
        ],
        "{e}"
    );
}

#[test]
fn file_order_follows_the_text_not_the_table() {
    let text = "\
[[timeout]]
name = \"t\"
max_duration = \"2h\"
[[freeze]]
name = \"f\"
start = \"2026-12-19T00:00:00\"
end = \"2027-01-04T09:00:00\"
";
    let c = parse(Path::new("x.toml"), text).unwrap();
    let names: Vec<&str> = c.policy.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["t", "f"]);
}

#[test]
fn empty_file_is_a_valid_policy_with_defaults() {
    let c = parse(Path::new("x.toml"), "").unwrap();
    assert_eq!(
        c.daemon.database,
        stopd_audit::Location::Sqlite(PathBuf::from(DEFAULT_DATABASE))
    );
    assert!(!c.daemon.dry_run);
    assert_eq!(c.daemon.schedule.source(), DEFAULT_SCHEDULE);
}

/// `config/stopd.example.toml` is valid and shows every key of every table.
#[test]
fn the_example_config_is_valid_and_complete() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/stopd.example.toml"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    parse(path, &text).unwrap();
    fn keys<T: Serialize + Default>() -> Vec<String> {
        let v = serde_json::to_value(T::default()).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    }
    let tables = [
        ("aws", keys::<AwsSpec>()),
        ("daemon", keys::<DaemonSpec>()),
        ("audit", keys::<AuditSpec>()),
        ("defaults", keys::<DefaultsSpec>()),
        ("freeze", keys::<FreezeSpec>()),
        ("allow", keys::<AllowSpec>()),
        ("timeout", keys::<TimeoutSpec>()),
        ("exempt", keys::<ExemptSpec>()),
        ("metrics", keys::<MetricsSpec>()),
        ("notify", keys::<NotifySpec>()),
        ("account", keys::<AccountSpec>()),
    ];
    for (table, keys) in tables {
        assert!(
            text.contains(&format!("[{table}]")),
            "[{table}] is not in config/stopd.example.toml"
        );
        for key in keys {
            let shown = text.lines().any(|l| {
                let l = l.trim_start().trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
            });
            assert!(shown, "[{table}] {key} is not in config/stopd.example.toml");
        }
    }
}

/// These passed `check` and then panicked the daemon (rc 101) in window arithmetic, at a
/// semaphore or on SIGTERM; `database = ""` recorded into a vanishing temporary database.
#[test]
fn values_that_crashed_the_daemon_are_located_errors() {
    for (text, line, field, want) in [
        (
            "[daemon]\nstop_concurrency = 9223372036854775807\n",
            2,
            "daemon.stop_concurrency",
            "between 1 and 4096",
        ),
        (
            "[daemon]\n\nshutdown_timeout = \"18446744073709551615s\"\n",
            3,
            "daemon.shutdown_timeout",
            "longer than the longest span",
        ),
        (
            "[daemon]\nstop_deadline = \"0s\"\n",
            2,
            "daemon.stop_deadline",
            "must be longer than zero",
        ),
        (
            "[daemon]\ndatabase = \"\"\n",
            2,
            "daemon.database",
            "must name a file",
        ),
        // These passed `check`, and `run` could not open them.
        (
            "[daemon]\ndatabase = \"\\u0000\"\n",
            2,
            "daemon.database",
            "NUL character",
        ),
        (
            "[daemon]\ndatabase = \"/\"\n",
            2,
            "daemon.database",
            "not a directory",
        ),
        (
            "[daemon]\ndatabase = \"/var/lib/stopd/\"\n",
            2,
            "daemon.database",
            "not a directory",
        ),
        (
            "[daemon]\ndatabase = \"/tmp\"\n",
            2,
            "daemon.database",
            "is a directory",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 18 * * FRI\"\nduration = \"99999999999h\"\n",
            4,
            "freeze[0].duration",
            "longer than the longest span",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"2h\"\nescalate_after = \"99999999999h\"\n",
            4,
            "timeout[0].escalate_after",
            "longer than the longest span",
        ),
    ] {
        let e = err(text);
        let p = &e.problems[0];
        assert_eq!(
            (p.line, p.field.as_deref()),
            (Some(line), Some(field)),
            "{text}: {e}"
        );
        assert!(p.message.contains(want), "{text}: {e}");
    }
}

#[test]
fn endpoints_are_urls_without_secrets_and_plain_http_leaves_only_loopback_quietly() {
    for (url, want) in [
        ("http://", "is not a URL"),
        ("http://[::1", "is not a URL"),
        ("ftp://example.com", "is not an http:// or https:// URL"),
        (
            "https://user:hunter2@vpce.example.com",
            "must not carry a user name or password",
        ),
    ] {
        let e = err(&format!("[aws]\nendpoint_url = \"{url}\"\n"));
        assert!(e.problems[0].message.contains(want), "{url}: {e}");
        assert!(
            !e.to_string().contains("hunter2"),
            "the password is echoed: {e}"
        );
    }
    let ok = |url: &str| {
        parse(
            Path::new("x.toml"),
            &format!("[aws]\nendpoint_url = \"{url}\"\n"),
        )
        .unwrap()
        .warnings
    };
    assert!(ok("http://127.0.0.1:4599").is_empty());
    assert!(ok("http://[::1]:4599").is_empty());
    assert!(ok("http://localhost:4599").is_empty());
    assert!(ok("https://codepipeline.eu-west-1.amazonaws.com").is_empty());
    assert!(ok("http://10.1.2.3:4599")[0].contains("plain HTTP to another host"));
}

#[test]
fn a_policy_file_others_may_write_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stopd.toml");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load(&path).unwrap().warnings.is_empty());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let w = load(&path).unwrap().warnings;
    assert!(
        w[0].contains("others may write this policy file (mode 666)"),
        "{w:?}"
    );
}

#[test]
fn bad_duration_value_is_located() {
    let e = err("[[timeout]]\nname = \"t\"\nmax_duration = \"2 fortnights\"\n");
    assert_eq!(e.problems[0].line, Some(3), "{e}");
}

#[test]
fn policy_hash_is_sha256_in_lowercase_hex() {
    assert_eq!(
        policy_hash(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn at(t: &str) -> DateTime<Utc> {
    t.parse().unwrap()
}

#[test]
fn stale_is_three_schedule_intervals() {
    let cfg = parse(
        Path::new("x.toml"),
        "[daemon]\nschedule = \"*/10 * * * * *\"\n",
    )
    .unwrap();
    let now = at("2026-12-19T18:00:03Z");
    assert_eq!(cfg.daemon.interval(now), chrono::TimeDelta::seconds(10));
    assert_eq!(
        cfg.daemon.stale_after(now),
        std::time::Duration::from_secs(30)
    );
}

/// Coverage, staleness and sweep compaction judge by one interval: the longest of the next few
/// (a schedule that skips the night is not stale, nor uncovered, at its first morning tick).
#[test]
fn the_interval_is_the_longest_of_the_next_few() {
    let cfg = parse(
        Path::new("x.toml"),
        "[daemon]\nschedule = \"0 0,10,50 * * * *\"\n",
    )
    .unwrap();
    let now = at("2026-12-19T18:20:00Z");
    // Ticks at 18:50, 19:00, 19:10, 19:50: the first gap is 10 minutes, the longest 40.
    assert_eq!(cfg.daemon.interval(now), chrono::TimeDelta::minutes(40));
    // The scheduler's backoff is capped by the next gap alone.
    assert_eq!(
        cfg.daemon.next_interval(now),
        chrono::TimeDelta::minutes(10)
    );
    let later = at("2026-12-19T19:05:00Z");
    assert_eq!(
        cfg.daemon.next_interval(later),
        chrono::TimeDelta::minutes(40)
    );
    assert_eq!(cfg.daemon.interval(later), chrono::TimeDelta::minutes(40));
    assert_eq!(
        cfg.daemon.stale_after(now),
        std::time::Duration::from_secs(3 * 40 * 60)
    );
}
