//! `[audit]`: signed digests of the audit log's hash chain.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[audit]`: signed digests of the audit log's hash chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// Where the daemon writes a digest file every hour and at shutdown (none: no digests).
    #[serde(default)]
    pub digest_dir: Option<PathBuf>,
    /// The Ed25519 private key (PKCS#8 PEM) that signs them; needed with `digest_dir`.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
}

impl AuditSpec {
    /// Digests are signed: a directory needs a key and a key a directory. `(key, why)`.
    pub(super) fn check(&self) -> Option<(&'static str, String)> {
        match (&self.digest_dir, &self.signing_key) {
            (Some(_), None) => Some((
                "digest_dir",
                "digests are signed: set [audit] signing_key too (an Ed25519 PKCS#8 PEM file)"
                    .into(),
            )),
            (None, Some(_)) => Some((
                "signing_key",
                "a signing key without [audit] digest_dir signs nothing".into(),
            )),
            _ => None,
        }
    }
}
