//! The calendar files of `ics` rules: read when the policy is loaded (the rules crate does no
//! I/O: it gets their text), and watched for changes by the daemon. A file that cannot be read
//! or is invalid is refused by `check` and set aside by `run` ([`BadCalendars`]).

use std::path::{Path, PathBuf};

use stopd_rules::FreezeSpec;

/// What loading a policy does with a calendar file that is missing or invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCalendars {
    /// The policy is refused, the calendar's line named (`check`, and every command but `run`).
    Refuse,
    /// The policy loads without that rule, listed in `Policy::unreadable` (`run`: the rule stops
    /// nothing and gates nothing, every sweep fails naming it, the other rules are enforced).
    SetAside,
}

/// Where an `ics` path points: a relative path is relative to the policy file's directory.
pub fn resolve(policy: &Path, ics: &str) -> PathBuf {
    let p = Path::new(ics);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    policy.parent().unwrap_or(Path::new(".")).join(p)
}

/// Reads the `ics` file of every rule that has one into its `ics_text` (or why it could not be
/// read); returns the files, resolved, in rule order.
pub(super) fn read(policy: &Path, rules: &mut [FreezeSpec]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for r in rules {
        if let Some(ics) = &r.ics {
            let file = resolve(policy, ics);
            r.ics_text = Some(std::fs::read_to_string(&file).map_err(|e| e.to_string()));
            files.push(file);
        }
    }
    files
}

/// What the calendar files hold now: each file's SHA-256, or why it cannot be read. Two
/// fingerprints differ when any file changed, appeared or went away.
pub fn fingerprint(files: &[PathBuf]) -> Vec<Result<String, String>> {
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| super::policy_hash(&b))
                .map_err(|e| e.kind().to_string())
        })
        .collect()
}
