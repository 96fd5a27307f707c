//! One `stack up` per data directory.
//!
//! Two stacks on one directory would share the stores' files. Worse, a
//! server that is still closing writes its last checkpoint into files of the
//! same names: after `stack up --fresh` had deleted them, the new server's
//! WiredTiger metadata was overwritten and it panicked at its first
//! checkpoint. So the stack holds a lock on `stack.lock` in the directory
//! for as long as it runs (the kernel lets go when the process ends, however
//! it ends), and a second stack is refused with a message that says why.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "stack.lock";

/// The data directory, held until this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed and holds it; with `fresh`, empties it
    /// first (once held, so no other stack's stores are in it).
    pub fn claim(path: &Path, fresh: bool) -> anyhow::Result<DataDir> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the data directory {}", path.display()))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "another `stack up` is using {} (its stores' files are in it): stop it first, or set STACK_DATA_DIR to another directory",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        if fresh {
            for entry in std::fs::read_dir(path)? {
                let entry = entry?;
                if entry.file_name() == LOCK_FILE {
                    continue;
                }
                let p = entry.path();
                if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .with_context(|| format!("cannot delete {}", p.display()))?;
            }
        }
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_stack_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack");
        let first = DataDir::claim(&path, false).unwrap();
        std::fs::write(path.join("ingest-token"), "kept").unwrap();

        // Refused, fresh or not, and nothing of the first one's is deleted.
        for fresh in [false, true] {
            let e = DataDir::claim(&path, fresh).unwrap_err().to_string();
            assert!(e.contains("another `stack up` is using"), "{e}");
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        assert!(path.join("ingest-token").exists());

        drop(first);
        let again = DataDir::claim(&path, false).unwrap();
        assert!(path.join("ingest-token").exists(), "kept without --fresh");
        drop(again);
    }

    #[test]
    fn fresh_empties_the_directory_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack");
        std::fs::create_dir_all(path.join("mongo")).unwrap();
        std::fs::write(path.join("mongo/WiredTiger.wt"), "old").unwrap();
        std::fs::write(path.join("ingest-token"), "old").unwrap();

        let held = DataDir::claim(&path, true).unwrap();
        let left: Vec<_> = std::fs::read_dir(held.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [LOCK_FILE]);
    }
}
