//! Secret files: `[audit] signing_key`, `[[notify]] url_file`, `[daemon] database_password_file`.
//!
//! **systemd credentials first.** The unit runs with `DynamicUser=yes`: a user that cannot read
//! a root-owned 0600 file. systemd hands such files over as credentials (`LoadCredential=ID:PATH`
//! copies PATH, readable by the service alone, to `$CREDENTIALS_DIRECTORY/ID`). The rule: a
//! secret's credential is named after the file name of the path in the policy, so with
//! `signing_key = "/etc/stopd/digest-key.pem"` and `LoadCredential=digest-key.pem:/etc/stopd/digest-key.pem`
//! stopd reads `$CREDENTIALS_DIRECTORY/digest-key.pem`; when `$CREDENTIALS_DIRECTORY` is unset
//! or holds no such file, it reads the path itself (a shell, `sudo stopd check`).
//!
//! [`check`] reads every secret `run` needs (the key parsed, each webhook URL read and
//! validated, the password file read): `check` and `run` refuse a policy whose secrets cannot
//! be read (exit 78), naming the key, its line, the path tried and, where it helps, the
//! `LoadCredential=` line that would pass it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::notify::check_url;
use crate::config::{Config, ConfigError, Target, UrlSource};

/// The environment variable systemd sets to the directory of the unit's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where the secret of `path` is read from: its credential if `$CREDENTIALS_DIRECTORY` holds
/// one named after the path's file name, else the path.
pub fn source(path: &Path) -> PathBuf {
    credential(path)
        .filter(|c| c.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// `$CREDENTIALS_DIRECTORY/<file name of path>`, when the variable is set.
fn credential(path: &Path) -> Option<PathBuf> {
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty())?;
    Some(Path::new(&dir).join(path.file_name()?))
}

/// The text of the secret file `path` (see [`source`]). The error names the path tried, the
/// credential looked for, and how to pass the file to a unit that cannot read it; never the
/// content.
pub fn read(path: &Path) -> Result<String, String> {
    let from = source(path);
    std::fs::read_to_string(&from).map_err(|e| {
        let mut message = format!("cannot read {}: {e}", from.display());
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match std::env::var_os(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty()) {
            Some(dir) if from == path => message.push_str(&format!(
                " (and ${CREDENTIALS_DIRECTORY} {} holds no credential {name:?})",
                Path::new(&dir).display()
            )),
            _ => {}
        }
        let under_systemd = std::env::var_os(CREDENTIALS_DIRECTORY).is_some()
            || std::env::var_os("INVOCATION_ID").is_some();
        if under_systemd || e.kind() == std::io::ErrorKind::PermissionDenied {
            message.push_str(&format!(
                "; under systemd (DynamicUser=yes cannot read root's files) pass it as a credential: `LoadCredential={name}:{}` in the unit (README.md, \"Running under systemd\")",
                path.display()
            ));
        }
        message
    })
}

/// The audit database to open: `[daemon] database`, with the password of
/// `database_password_file` (its first line, read through systemd credentials first) when the
/// database is PostgreSQL. Without that file, sqlx reads `PGPASSWORD` (or `~/.pgpass`) as libpq
/// does. Every command that opens the store opens what this returns.
pub fn database(cfg: &Config) -> anyhow::Result<stopd_audit::Location> {
    let location = cfg.daemon.database.clone();
    match &cfg.daemon.database_password_file {
        Some(file) if location.is_postgres() => {
            let text =
                read(file).map_err(|e| anyhow::anyhow!("[daemon] database_password_file: {e}"))?;
            let password = text.lines().next().unwrap_or("");
            anyhow::ensure!(
                !password.is_empty(),
                "[daemon] database_password_file: {}: the first line is empty",
                source(file).display()
            );
            Ok(location.with_password(password))
        }
        _ => Ok(location),
    }
}

/// Secret files that users other than their owner may read (a signing key readable by others
/// lets them sign digests of a rebuilt log): one warning each, naming the key, path and mode.
pub fn warnings(cfg: &Config) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<(String, &Path)> = Vec::new();
    if let Some(key) = &cfg.audit.signing_key {
        files.push(("[audit] signing_key".into(), key));
    }
    for (index, target) in cfg.notify.iter().enumerate() {
        if let UrlSource::File(p) = &target.url {
            files.push((format!("[[notify]] {index} url_file"), p));
        }
    }
    if let Some(p) = &cfg.daemon.database_password_file {
        files.push(("[daemon] database_password_file".into(), p));
    }
    files
        .into_iter()
        .filter_map(|(key, path)| {
            let from = source(path);
            let mode = std::fs::metadata(&from).ok()?.mode();
            (mode & 0o044 != 0).then(|| {
                format!(
                    "{key} {} is readable by others (mode {:o}): chmod 600 it",
                    from.display(),
                    mode & 0o777
                )
            })
        })
        .collect()
}

/// Reads every secret `run` needs, as `run` will: `Err` lists each one that cannot be read or
/// is not what it should be, located at its key.
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    if let (Some(_), Some(key)) = (&cfg.audit.digest_dir, &cfg.audit.signing_key)
        && let Err(e) = signing_key(key)
    {
        problems.push(cfg.problem_at("audit.signing_key", e));
    }
    for (index, target) in cfg.notify.iter().enumerate() {
        if let Err(e) = webhook_url(target) {
            let key = match target.url {
                UrlSource::Inline(_) => "url",
                UrlSource::File(_) => "url_file",
                UrlSource::Env(_) => "url_env",
            };
            problems.push(cfg.problem_at(&format!("notify[{index}].{key}"), format!("{e:#}")));
        }
    }
    if let Some(file) = &cfg.daemon.database_password_file {
        match read(file) {
            Ok(text) if text.lines().next().unwrap_or("").is_empty() => {
                problems.push(cfg.problem_at(
                    "daemon.database_password_file",
                    format!("{}: the first line is empty", source(file).display()),
                ));
            }
            Ok(_) => {}
            Err(e) => problems.push(cfg.problem_at("daemon.database_password_file", e)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError {
            path: cfg.path.clone(),
            problems,
        })
    }
}

/// Reads and parses `[audit] signing_key` (its systemd credential first).
pub fn signing_key(path: &Path) -> Result<stopd_audit::digest::SigningKey, String> {
    let pem = read(path)?;
    stopd_audit::digest::parse_key(&pem, &source(path))
}

/// The digest writer `[audit]` asks for (its key read first); `None` when it asks for none.
pub fn digester(
    audit: &crate::config::AuditSpec,
) -> anyhow::Result<Option<stopd_audit::digest::Digester>> {
    let (Some(dir), Some(key)) = (&audit.digest_dir, &audit.signing_key) else {
        return Ok(None);
    };
    let key = signing_key(key).map_err(|e| anyhow::anyhow!("[audit] signing_key: {e}"))?;
    Ok(Some(stopd_audit::digest::Digester::new(dir.clone(), key)))
}

/// The webhook URL of a `[[notify]]` target, read now (a `url_file` through its systemd
/// credential first). Errors name the source, never the URL.
pub fn webhook_url(target: &Target) -> anyhow::Result<hyper::Uri> {
    let name = &target.name;
    let text = match &target.url {
        UrlSource::Inline(u) => u.clone(),
        UrlSource::File(p) => read(p)
            .map_err(|e| anyhow::anyhow!("[[notify]] {name}: url_file: {e}"))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        UrlSource::Env(v) => std::env::var(v)
            .with_context(|| format!("[[notify]] {name}: environment variable {v} is not set"))?,
    };
    // A URL read from a file: say which file (never what it holds).
    let what = match &target.url {
        UrlSource::File(p) => format!("the URL in {}", source(p).display()),
        _ => "the URL".to_string(),
    };
    check_url(&text).map_err(|e| anyhow::anyhow!("[[notify]] {name}: {what} {e}"))?;
    text.parse()
        .map_err(|_| anyhow::anyhow!("[[notify]] {name}: the URL is not a valid URI"))
}
