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
pub fn acquire(database: &Path) -> Result<RunLock> {
    let path = lock_path(database);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the audit directory {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
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
}
