//! `[[account]]`: other AWS accounts, reached by assuming a role in each, and the regions
//! enforced in them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use stopd_rules::Policy;

/// One `[[account]]`: another AWS account, reached by assuming a role in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// A short name, unique: rules select it (`accounts = [...]`), the audit log, metrics and
    /// notifications carry it.
    pub name: String,
    /// The role stopd assumes in that account.
    pub role_arn: String,
    /// `sts:ExternalId`, if the role's trust policy requires one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Regions to enforce in (default: `[aws] region`).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
}

impl AccountSpec {
    /// The account's 12-digit id, from its role ARN (`arn:aws:iam::ID:role/NAME`).
    pub fn account_id(&self) -> Option<&str> {
        self.role_arn
            .split(':')
            .nth(4)
            .filter(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// The most `[[account]]` x region pairs one daemon enforces in.
pub const MAX_PAIRS: usize = 1_000;

/// Whether a name can be an account name: 1-64 of `A-Z a-z 0-9 . _ -` (it is a metric label
/// and a glob target).
fn valid_account_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a text looks like an IAM role ARN: `arn:PARTITION:iam::123456789012:role/NAME`.
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

/// Whether a text looks like a region name (`eu-west-1`, `us-gov-east-1`).
fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks the `[[account]]` entries and resolves each one's regions (`[aws] region` when it
/// names none): `(index, key, why)` for each problem, and why there are too many pairs.
pub(super) fn check(
    accounts: &mut [AccountSpec],
    region: Option<&String>,
) -> (Vec<(usize, &'static str, String)>, Option<String>) {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    let mut pairs = 0;
    for (index, a) in accounts.iter_mut().enumerate() {
        let mut bad = |key: &'static str, message: String| problems.push((index, key, message));
        if !valid_account_name(&a.name) {
            bad("name", "1 to 64 of A-Z a-z 0-9 . _ - (it names the account in rules, the audit log and metrics)".into());
        } else if !names.insert(a.name.clone()) {
            bad("name", format!("account {:?} is defined twice", a.name));
        }
        if !valid_role_arn(&a.role_arn) {
            bad(
                "role_arn",
                format!(
                    "{:?} is not a role ARN (arn:aws:iam::123456789012:role/NAME)",
                    a.role_arn
                ),
            );
        }
        if a.external_id
            .as_ref()
            .is_some_and(|e| !(2..=1224).contains(&e.len()))
        {
            bad(
                "external_id",
                "must be 2 to 1224 characters (STS's limit)".into(),
            );
        }
        match (&a.regions, region) {
            (Some(r), _) if r.is_empty() => {
                bad(
                    "regions",
                    "an empty list enforces nowhere; leave the key out for [aws] region".into(),
                );
            }
            (Some(r), _) => {
                if let Some(bad_region) = r.iter().find(|r| !valid_region(r)) {
                    bad(
                        "regions",
                        format!("{bad_region:?} is not a region name (like \"eu-west-1\")"),
                    );
                }
                let mut seen = HashSet::new();
                if let Some(twice) = r.iter().find(|r| !seen.insert(*r)) {
                    bad("regions", format!("{twice:?} is listed twice"));
                }
            }
            (None, Some(region)) => a.regions = Some(vec![region.clone()]),
            (None, None) => bad(
                "regions",
                "needed: there is no [aws] region to default to".into(),
            ),
        }
        pairs += a.regions.as_ref().map_or(0, Vec::len);
    }
    let too_many = (pairs > MAX_PAIRS)
        .then(|| format!("{pairs} account and region pairs; at most {MAX_PAIRS}"));
    (problems, too_many)
}

/// With `[[account]]`s, a Change Calendar named by its document ARN is asked in the ARN's
/// account, through that account's role: an ARN of an account no `[[account]]` is is refused,
/// `(index into freeze, why)`. A config error rather than a sweep failure: the ARN is known when
/// the file is read, no credentials of that account exist to ask it with, and it could never
/// be read, so `check` says so with its line before the daemon runs (a sweep failure would only
/// say it at run time, every sweep, with the rule stopping nothing). Without `[[account]]` the
/// ambient account's id is not known without a call: the ARN is asked with the ambient
/// credentials, as SSM allows for a calendar shared with that account.
pub(super) fn calendar_accounts(
    freeze: &[stopd_rules::FreezeSpec],
    accounts: &[AccountSpec],
) -> Vec<(usize, String)> {
    if accounts.is_empty() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (index, f) in freeze.iter().enumerate() {
        let Some(name) = &f.change_calendar else {
            continue;
        };
        let calendar = stopd_rules::ChangeCalendar::new(name);
        let Some(id) = calendar.arn_account() else {
            continue;
        };
        if !accounts.iter().any(|a| a.account_id() == Some(id)) {
            problems.push((
                index,
                format!(
                    "the calendar's account {id} is not an [[account]] here (configured: {}): stopd asks a calendar in its own account, through that account's role; add an [[account]] whose role_arn is in {id}, or name a calendar of a configured account",
                    accounts
                        .iter()
                        .map(|a| format!("{} = {}", a.name, a.account_id().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    problems
}

/// A rule limited to accounts or regions none of the configured pairs has is never enforced:
/// allowed (a policy shared by several daemons), but said. One warning per such rule.
pub(super) fn never_enforced(
    policy: &Policy,
    accounts: &[AccountSpec],
    region: Option<&String>,
) -> Vec<String> {
    let pairs: Vec<(String, Option<String>)> = if accounts.is_empty() {
        vec![(
            stopd_audit::Place::DEFAULT_ACCOUNT.to_string(),
            region.cloned(),
        )]
    } else {
        accounts
            .iter()
            .flat_map(|a| {
                a.regions
                    .iter()
                    .flatten()
                    .map(|r| (a.name.clone(), Some(r.clone())))
            })
            .collect()
    };
    let mut warnings = Vec::new();
    for rule in policy.rules() {
        if rule.place.is_everywhere() {
            continue;
        }
        let anywhere = pairs.iter().any(|(a, r)| match r {
            Some(r) => rule.place.matches(a, r),
            // The region comes from the environment: judge the account alone.
            None => {
                stopd_rules::Place::new(rule.place.accounts(), None).is_ok_and(|p| p.matches(a, ""))
            }
        });
        if !anywhere {
            warnings.push(format!(
                "rule '{}' selects accounts {:?} and regions {:?}, and no configured account and region matches: it is never enforced by this daemon",
                rule.name,
                rule.place.accounts().unwrap_or(&["*".to_string()]),
                rule.place.regions().unwrap_or(&["*".to_string()]),
            ));
        }
    }
    warnings
}
