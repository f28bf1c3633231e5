use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use stopd_rules::{ExecutionFacts, Policy, PolicySpec};

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// Parses the rule tables of a policy file written in TOML, as the daemon does.
pub fn policy(toml_text: &str) -> Policy {
    let spec: PolicySpec = toml::from_str(toml_text).expect("policy parses");
    Policy::compile(&spec).unwrap_or_else(|e| panic!("policy compiles: {e:?}"))
}

pub fn facts<'a>(
    pipeline: &'a str,
    id: &'a str,
    start: &str,
    tags: &'a BTreeMap<String, String>,
) -> ExecutionFacts<'a> {
    ExecutionFacts {
        pipeline,
        execution_id: id,
        start: Some(utc(start)),
        rollback: false,
        tags,
    }
}
