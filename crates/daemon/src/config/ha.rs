//! `[ha]`: this node's name and the leader's lease, for several `stopd run` on one PostgreSQL
//! database (DESIGN.md, "High availability (PostgreSQL)").
//!
//! On PostgreSQL leadership is always by lease, `[ha]` or not: a second node started against
//! the same database by mistake stands by instead of sweeping the fleet twice. `[ha]` names the
//! node and sizes the lease; with SQLite (one host, one process by its lock file) it is a
//! configuration error.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stopd_rules::Span;

/// The lease when `[ha] lease` is not given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The shortest lease: the leader renews every lease/3, and a round trip to the database and a
/// scheduling hiccup must fit in that with room to spare.
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// The longest node name (it is written into every lifecycle event and the lease row).
const MAX_NODE: usize = 128;

/// `[ha]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HaSpec {
    /// This node's name (default: the host name).
    #[serde(default)]
    pub(super) node: Option<String>,
    /// How long a lease lasts (default 15 s, at least 2 s).
    #[serde(default)]
    pub(super) lease: Option<Span>,
}

/// Leadership settings, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSettings {
    /// This node's name, as the lease row, `status` and the lifecycle events show it.
    pub node: String,
    /// How long a lease lasts; the leader renews every third of it.
    pub lease: Duration,
}

impl HaSettings {
    /// How often the leader renews, and a standby reads the lease: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}

impl HaSpec {
    /// Checks what serde cannot: `(key, why)` for each problem.
    pub(super) fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Some(node) = &self.node
            && let Some(why) = node_problem(node)
        {
            problems.push(("node", why));
        }
        if let Some(lease) = self.lease
            && lease.get() < MIN_LEASE
        {
            problems.push((
                "lease",
                format!(
                    "must be at least {} (the leader renews every third of it)",
                    humantime::format_duration(MIN_LEASE)
                ),
            ));
        }
        problems
    }

    /// With defaults applied: the node defaults to the host name.
    pub(super) fn settings(&self) -> HaSettings {
        HaSettings {
            node: self.node.clone().unwrap_or_else(host_name),
            lease: self.lease.map_or(DEFAULT_LEASE, Span::get),
        }
    }
}

/// Why `node` cannot name a node, if it cannot.
fn node_problem(node: &str) -> Option<String> {
    if node.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if node.len() > MAX_NODE {
        return Some(format!("must be at most {MAX_NODE} bytes"));
    }
    if node.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    None
}

/// The host name (uname's node name), or `localhost` when it has none.
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "localhost".into()
    } else {
        name.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let s = HaSpec::default().settings();
        assert_eq!(s.lease, DEFAULT_LEASE);
        assert_eq!(s.renew_every(), Duration::from_secs(5));
        assert!(!s.node.is_empty());
        let short = HaSpec {
            node: Some(" ".into()),
            lease: Some(Span::parse("1s").unwrap()),
        };
        let problems: Vec<_> = short.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(problems, ["node", "lease"]);
        let ok = HaSpec {
            node: Some("host-a".into()),
            lease: Some(Span::parse("2s").unwrap()),
        };
        assert!(ok.check().is_empty());
        assert_eq!(ok.settings().node, "host-a");
    }
}
