//! One sweeper per audit database. `stopd run` (the daemon and `--once`) holds an exclusive
//! `flock` on `<database>.lock` for as long as it runs, so a second one started against the same
//! database (a cron job beside the service, a unit started twice) refuses to start instead of
//! sweeping the same fleet and recording every stop twice. The kernel drops the lock when the
//! process ends, however it ends: a stale lock file never blocks a restart. `stopd stop`,
//! `report` and the other commands take no lock; they may run beside the daemon.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Held while the process sweeps; released when dropped or when the process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// The lock file of an audit database: the same path with `.lock` appended.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the lock of `database`, or says which process holds it.
///
/// The audit directory is created 0700 whatever the umask, and refused when users other than
/// its owner may write it (they could replace the database, or plant the lock file). The lock
/// file is opened without following a symbolic link and must be a regular file of ours: a
/// symlink planted as `audit.db.lock` once made a root daemon overwrite its target with a pid.
pub fn acquire(database: &Path) -> Result<RunLock> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let path = lock_path(database);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the audit directory {}", dir.display()))?;
        }
        check_directory(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot open the lock file {} (a symbolic link is refused)",
                path.display()
            )
        })?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    {
        use std::os::unix::fs::MetadataExt;
        if !meta.file_type().is_file() {
            bail!(
                "the lock file {} is not a regular file: remove it",
                path.display()
            );
        }
        if let Some(me) = effective_uid()
            && meta.uid() != me
        {
            bail!(
                "the lock file {} belongs to uid {}, not to the user running stopd (uid {me}): \
                 someone else made it; remove it",
                path.display(),
                meta.uid(),
            );
        }
        if meta.mode() & 0o077 != 0 {
            // Made by an older stopd under a loose umask: ours, so tighten it.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot chmod {}", path.display()))?;
        }
    }
    match file.try_lock() {
        Ok(()) => {
            // The holder's pid, for the message a second process prints. Informational only:
            // the lock is the flock, not this text.
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .with_context(|| format!("cannot write the lock file {}", path.display()))?;
            Ok(RunLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            bail!(
                "another `stopd run`{holder} is already sweeping with the audit database {}: \
                 one daemon per database (it holds {})",
                database.display(),
                path.display()
            )
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The user stopd runs as: the owner of its own `/proc/self` (no `unsafe` for `geteuid`).
/// `None` where `/proc` is not mounted: the ownership checks are then skipped.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Refuses an audit directory that others may write (unless the sticky bit keeps them from
/// replacing files they do not own, which is warned about) or that belongs to another user.
fn check_directory(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the audit directory {}", dir.display()))?;
    let mode = meta.mode();
    let owner = meta.uid();
    if owner != 0 && effective_uid().is_some_and(|me| owner != me) {
        bail!(
            "the audit directory {} belongs to uid {}, neither root nor the user running stopd: \
             whoever owns it can replace the audit log",
            dir.display(),
            owner
        );
    }
    if mode & 0o022 != 0 {
        if mode & 0o1000 == 0 {
            bail!(
                "others may write the audit directory {} (mode {:o}): they could replace the \
                 audit log or add exemptions; chmod go-w it (stopd creates it 0700)",
                dir.display(),
                mode & 0o777
            );
        }
        tracing::warn!(
            directory = %dir.display(),
            "the audit directory is shared (sticky, mode {:o}): give stopd a directory of its own",
            mode & 0o7777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state").join("audit.db");
        let first = acquire(&db).unwrap();
        assert!(lock_path(&db).ends_with("state/audit.db.lock"));
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        let e = format!("{:#}", acquire(&db).unwrap_err());
        assert!(e.contains(&format!("(pid {})", std::process::id())), "{e}");
        assert!(e.contains("audit.db"), "{e}");
        drop(first);
        let again = acquire(&db);
        assert!(again.is_ok(), "{again:?}");
    }

    /// A symlink planted as the lock file made the daemon overwrite its target with its pid.
    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let db = dir.path().join("audit.db");
        std::os::unix::fs::symlink(&target, lock_path(&db)).unwrap();
        let e = format!("{:#}", acquire(&db).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = format!("{:#}", acquire(&open.join("audit.db")).unwrap_err());
        assert!(e.contains("others may write the audit directory"), "{e}");
        // With the sticky bit (as /tmp), others cannot replace our files: allowed, with a warning.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(acquire(&open.join("audit.db")).is_ok());
    }
}
