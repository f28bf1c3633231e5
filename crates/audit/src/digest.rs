//! Signed digests of the audit chain (DESIGN.md, "Verifiable audit"), as CloudTrail's digest
//! files: every hour and at shutdown the daemon writes `stopd-digest-<time>.json` into
//! `[audit] digest_dir` with the chain's head (sequence number and hash), the SHA-256 of the
//! previous digest file, the time, and an Ed25519 signature over those fields (their JSON, in
//! this order). Shipped off the host, digests show a log cut short (a digest names a record
//! the log no longer has) or rebuilt (a record's hash differs from the one signed).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
pub use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Store, ts};

/// How often the daemon writes a digest.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// What is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Format version.
    version: u32,
    /// When it was written (RFC 3339 UTC).
    at: String,
    /// The chain's last sequence number.
    head_seq: i64,
    /// Its hash, hex.
    head_hash: String,
    /// SHA-256 of the previous digest file's bytes, hex (`None`: the first).
    previous_digest_hash: Option<String>,
}

/// A digest file: the body's fields and the signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    at: String,
    head_seq: i64,
    head_hash: String,
    previous_digest_hash: Option<String>,
    /// Ed25519 over the JSON of the [`Body`], hex.
    signature: String,
}

impl File {
    fn body(&self) -> Body {
        Body {
            version: self.version,
            at: self.at.clone(),
            head_seq: self.head_seq,
            head_hash: self.head_hash.clone(),
            previous_digest_hash: self.previous_digest_hash.clone(),
        }
    }
}

/// Writes digests into a directory with a key.
#[derive(Debug, Clone)]
pub struct Digester {
    /// `[audit] digest_dir`.
    dir: PathBuf,
    /// `[audit] signing_key`, loaded.
    key: SigningKey,
    /// One digest written at a time (the hourly one and the one at shutdown), so that two
    /// never name the same previous digest.
    writing: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Digest files in `dir`, oldest first (their names sort by time).
fn listed(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the digest directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("stopd-digest-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Parses an Ed25519 PKCS#8 PEM private key; `source` names where it came from in the error.
pub fn parse_key(pem: &str, source: &Path) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| {
        format!(
            "{} is not an Ed25519 PKCS#8 PEM private key ({e}); make one with `openssl genpkey -algorithm ed25519`",
            source.display()
        )
    })
}

impl Digester {
    /// Writes digests into `dir`, signed with `key`.
    pub fn new(dir: PathBuf, key: SigningKey) -> Digester {
        Digester {
            dir,
            key,
            writing: std::sync::Arc::default(),
        }
    }

    /// Writes a digest of the chain's head now; returns its path.
    pub async fn write(&self, store: &Store, now: DateTime<Utc>) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let _one = self.writing.lock().await;
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("cannot create {}", self.dir.display()))?;
        }
        let (head_seq, head_hash) = store.chain_head().await?;
        let previous = match listed(&self.dir)?.last() {
            Some(p) => Some(hex::encode(Sha256::digest(std::fs::read(p)?))),
            None => None,
        };
        let body = Body {
            version: 1,
            at: ts(now),
            head_seq,
            head_hash: hex::encode(head_hash),
            previous_digest_hash: previous,
        };
        let signature = self.key.sign(&serde_json::to_vec(&body)?);
        let file = File {
            version: body.version,
            at: body.at,
            head_seq: body.head_seq,
            head_hash: body.head_hash,
            previous_digest_hash: body.previous_digest_hash,
            signature: hex::encode(signature.to_bytes()),
        };
        let name = format!("stopd-digest-{}.json", now.format("%Y%m%dT%H%M%S%.3fZ"));
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        write_private(&tmp, &serde_json::to_vec_pretty(&file)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Writes a digest now, logging (not returning) a failure: the daemon goes on.
    pub async fn write_logged(&self, store: &Store, now: DateTime<Utc>) {
        match self.write(store, now).await {
            Ok(p) => tracing::info!(digest = %p.display(), "audit digest written"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot write the audit digest"),
        }
    }

    /// A digest now and then every [`EVERY`], until `stop` is cancelled; `now` tells each
    /// one's time (the daemon's clock).
    pub fn spawn_hourly(
        self,
        store: Store,
        stop: tokio_util::sync::CancellationToken,
        now: impl Fn() -> DateTime<Utc> + Send + 'static,
    ) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => self.write_logged(&store, now()).await,
                    () = stop.cancelled() => break,
                }
            }
        });
    }
}

/// How late a digest may be against when it is expected (at start, every [`EVERY`], at a
/// clean stop) before its absence is reported.
const SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Digest files read.
    pub read: usize,
    /// Problems found (empty: consistent).
    pub problems: Vec<String>,
    /// Records of the log after the newest digest's head: not yet covered by a signature (a
    /// record appended after the last digest cannot be caught by digests alone).
    pub uncovered: i64,
}

/// Checks the digests in `dir` with `public_key` (PEM) against the log in `store`, whose chain
/// was verified intact up to `verified_seq`. Besides each digest's signature, its link to the
/// previous one and the record it signed, the set of digests is held to the daemon's
/// lifecycle: a digest at each start, one every hour while it ran, one at each clean stop.
/// `daemon_running` says whether a daemon holds the database now (a run with no stop is then
/// not a cut).
pub async fn check(
    store: &Store,
    dir: &Path,
    public_key: &Path,
    verified_seq: i64,
    daemon_running: bool,
    now: DateTime<Utc>,
) -> Result<Checked> {
    let pem = std::fs::read_to_string(public_key)
        .with_context(|| format!("cannot read the public key {}", public_key.display()))?;
    let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an Ed25519 public key in PEM ({e})",
            public_key.display()
        )
    })?;
    let files = listed(dir)?;
    if files.is_empty() {
        bail!("no digest files (stopd-digest-*.json) in {}", dir.display());
    }
    let mut problems = Vec::new();
    let mut previous: Option<(String, String)> = None; // (name, sha256 of its bytes)
    // When each digest was written, and its name.
    let mut times: Vec<(DateTime<Utc>, String)> = Vec::new();
    // The oldest digest's name, and whether it names a previous digest.
    let mut first_link: Option<(String, bool)> = None;
    // The newest record any digest signed.
    let mut newest_seq = 0_i64;
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(path)?;
        let this_hash = hex::encode(Sha256::digest(&bytes));
        let file: File = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("digest {name} cannot be read: {e}"));
                previous = Some((name, this_hash));
                continue;
            }
        };
        let signed = serde_json::to_vec(&file.body())?;
        let good = hex::decode(&file.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .is_some_and(|b| key.verify(&signed, &Signature::from_bytes(&b)).is_ok());
        if !good {
            problems.push(format!(
                "digest {name}: the signature does not match (forged, altered, or another key)"
            ));
        }
        if let Some((prev_name, prev_hash)) = &previous
            && file.previous_digest_hash.as_deref() != Some(prev_hash.as_str())
        {
            problems.push(format!(
                "digest {name} does not follow {prev_name}: a digest between them was removed or replaced"
            ));
        }
        let b = &file;
        if b.head_seq > verified_seq {
            let (last, _) = store.chain_head().await?;
            if b.head_seq > last {
                problems.push(format!(
                    "the log was cut short: digest {name} ({}) signed record {} ({}), the log ends at record {last}",
                    b.at, b.head_seq, b.head_hash
                ));
            }
        } else if b.head_seq > 0 {
            let stored = store.chain_hash_at(b.head_seq).await?.map(hex::encode);
            if stored.as_deref() != Some(b.head_hash.as_str()) {
                problems.push(format!(
                    "the log was rebuilt: record {} differs from the one digest {name} ({}) signed",
                    b.head_seq, b.at
                ));
            }
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(&file.at) {
            times.push((at.with_timezone(&Utc), name.clone()));
        }
        if first_link.is_none() {
            first_link = Some((name.clone(), file.previous_digest_hash.is_some()));
        }
        newest_seq = newest_seq.max(file.head_seq);
        previous = Some((name, this_hash));
    }
    if let Some((name, true)) = first_link {
        problems.push(format!(
            "digest {name} follows a digest that is not in {}: the oldest digest(s) were removed",
            dir.display()
        ));
    }
    let events = store.events(None, None).await?;
    problems.extend(lifecycle_gaps(&events, &times, daemon_running, now));
    let (head, _) = store.chain_head().await?;
    Ok(Checked {
        read: files.len(),
        problems,
        uncovered: (head - newest_seq).max(0),
    })
}

/// One run of the daemon, from its lifecycle events.
#[derive(Debug)]
struct Run {
    /// Its start.
    from: DateTime<Utc>,
    /// Its clean stop; `Err(last sign of life)` for an unclean stop; `None` while open.
    to: Option<Result<DateTime<Utc>, DateTime<Utc>>>,
    /// Its pid.
    pid: i64,
    /// Its node (pids repeat across hosts).
    node: Option<String>,
}

/// The digests missing from what the daemon's runs promise: one within [`SLACK`] of each start,
/// one every [`EVERY`] (plus slack) while it ran, one at each clean stop. Runs that started
/// before the oldest digest are not held to it (digests may have been turned on later; a removed
/// oldest digest is found by its successor's link). A run with no stop while no daemon is
/// running is the end of the log cut short, or a daemon killed and not restarted: either way it
/// is reported.
fn lifecycle_gaps(
    events: &[crate::events::EventRecord],
    digests: &[(DateTime<Utc>, String)],
    daemon_running: bool,
    now: DateTime<Utc>,
) -> Vec<String> {
    let Some(oldest) = digests.iter().map(|(t, _)| *t).min() else {
        return Vec::new();
    };
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let mut runs: Vec<Run> = Vec::new();
    for e in events {
        let Some(at) = parse(&e.at) else { continue };
        match e.event.as_str() {
            "start" => runs.push(Run {
                from: at,
                to: None,
                pid: e.pid,
                node: e.node.clone(),
            }),
            "stop" | "unclean_stop" => {
                if let Some(run) = runs
                    .iter_mut()
                    .rev()
                    .find(|r| r.pid == e.pid && r.node == e.node && r.to.is_none())
                {
                    run.to = Some(if e.event == "stop" { Ok(at) } else { Err(at) });
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    let n = runs.len();
    for (i, run) in runs.iter().enumerate() {
        if run.from + SLACK < oldest {
            continue;
        }
        let end = match run.to {
            Some(Ok(t) | Err(t)) => t,
            None if daemon_running && i + 1 == n => now,
            None => {
                problems.push(format!(
                    "the log ends inside a run: the daemon (pid {}) started at {} has no stop \
                     recorded and none is running now: it was killed and not restarted, or the \
                     end of the log (and its newest digests) was removed",
                    run.pid,
                    ts(run.from)
                ));
                continue;
            }
        };
        let inside: Vec<DateTime<Utc>> = digests
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t >= run.from - SLACK && *t <= end + SLACK)
            .collect();
        let mut expected_by = run.from + SLACK;
        for t in &inside {
            if *t > expected_by {
                problems.push(format!(
                    "no digest from {} to {} while the daemon (pid {}) ran: digest(s) removed",
                    ts(expected_by - SLACK),
                    ts(*t),
                    run.pid
                ));
            }
            expected_by = *t + chrono::TimeDelta::from_std(EVERY).unwrap_or_default() + SLACK;
        }
        let last = inside.last().copied();
        let covered_to = last.unwrap_or(run.from);
        let clean = matches!(run.to, Some(Ok(_)));
        let missing_at_end = if clean {
            last.is_none_or(|t| t + SLACK < end)
        } else {
            end > expected_by
        };
        if missing_at_end {
            problems.push(format!(
                "no digest from {} to {} while the daemon (pid {}) ran{}: digest(s) removed",
                ts(covered_to),
                ts(end),
                run.pid,
                if clean {
                    " (one is written at each clean stop)"
                } else {
                    ""
                }
            ));
        }
    }
    problems
}

/// Writes a new file readable by its owner alone, whatever the umask (under umask 000 digest
/// files were made 0666).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
