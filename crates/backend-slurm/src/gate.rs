//! One writer per SLURM cluster.
//!
//! slurmdbd does not survive concurrent sacctmgr writes well: parallel `remove account` calls
//! each exit 0 while the database rolls some of them back ("Deadlock found"), and a burst of them
//! can take slurmdbd down. So every modifying command of every [`crate::SlurmBackend`] of this
//! process that targets the same cluster goes through one [`ClusterGate`]: writes run one at a
//! time, reads stay concurrent. Compound operations (a batch of creates, a batch of removals)
//! also hold the gate's `sequence` lock for their whole read → check → write → read-back
//! sequence, so one batch never acts on what another batch is changing.
//!
//! Agents of other processes (one systemd unit per mode) are kept out by an advisory `flock` on
//! one lock file per machine ([`LOCK_FILE_NAME`] in `write_lock_dir`), taken around each write
//! and inherited by the write's `sacctmgr`, so that a command outliving a killed agent still
//! holds it. Anything else that writes to SLURM accounting on the machine should take it too
//! (`flock /run/lock/waldur-site-agent-slurm.lock sacctmgr …`, or [`hold_write_lock`]): a
//! `remove account` running beside an agent's `load` once deleted the load's new associations
//! (slurmdbd renumbers its tree in two transactions that do not see each other) and left a
//! tree whose association queries never return.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};

/// The lock file in `write_lock_dir`: one per machine, whichever cluster a write names (an
/// agent without `cluster_name` and one naming the default cluster write to the same tree).
pub const LOCK_FILE_NAME: &str = "waldur-site-agent-slurm.lock";

/// The serialisation point of one cluster.
pub struct ClusterGate {
    key: String,
    writes: AsyncMutex<()>,
    sequence: AsyncMutex<()>,
    lock_file: Option<PathBuf>,
}

/// Held while one modifying command runs.
pub struct WriteGuard<'a> {
    _local: AsyncMutexGuard<'a, ()>,
    _file: Option<FileLock>,
}

impl ClusterGate {
    /// The gate shared by every backend of this process for `cluster` (as the commands name it)
    /// reached through `bin_path`. `lock_dir` (None: no cross-process lock) holds the lock file.
    pub fn shared(bin_path: &str, cluster: Option<&str>, lock_dir: Option<PathBuf>) -> Arc<Self> {
        static GATES: OnceLock<Mutex<BTreeMap<String, Arc<ClusterGate>>>> = OnceLock::new();
        let key = format!("{}|{}", bin_path, cluster.unwrap_or("").to_lowercase());
        let mut gates = GATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        gates
            .entry(key.clone())
            .or_insert_with(|| {
                let lock_file = lock_dir.map(|dir| dir.join(LOCK_FILE_NAME));
                Arc::new(ClusterGate {
                    key,
                    writes: AsyncMutex::new(()),
                    sequence: AsyncMutex::new(()),
                    lock_file,
                })
            })
            .clone()
    }

    /// Wait for the right to run one modifying command.
    pub async fn write(&self) -> WriteGuard<'_> {
        let local = self.writes.lock().await;
        let file = match &self.lock_file {
            Some(path) => FileLock::acquire(path.clone()).await,
            None => None,
        };
        WriteGuard {
            _local: local,
            _file: file,
        }
    }

    /// Hold the cluster for a whole read → write → read-back sequence (a batch).
    pub async fn sequence(&self) -> AsyncMutexGuard<'_, ()> {
        self.sequence.lock().await
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// An exclusive `flock` on a file, released on drop. Failing to take it (no such directory,
/// read-only file system) is logged and the write goes on: the in-process lock still holds.
struct FileLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

/// The machine's SLURM write lock held by synchronous code (tests, tools); released on drop.
pub struct HeldWriteLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

/// Wait for and hold the machine's SLURM write lock in `lock_dir` (the agents' `write_lock_dir`).
pub fn hold_write_lock(lock_dir: &Path) -> Result<HeldWriteLock, String> {
    lock_file(&lock_dir.join(LOCK_FILE_NAME), false).map(|file| HeldWriteLock { _file: file })
}

/// Open (creating) and exclusively `flock` `path`, blocking until it is free.
fn lock_file(path: &Path, inheritable: bool) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("{}: {e}", path.display()))?;
    if inheritable {
        nix::fcntl::fcntl(
            &*locked,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(locked)
}

impl FileLock {
    async fn acquire(path: PathBuf) -> Option<Self> {
        // The sacctmgr started under this lock inherits it: if the agent dies (kill -9, OOM)
        // the command goes on, and so must the lock, or the next agent would write alongside
        // it. The lock is released when both have closed it.
        let result = tokio::task::spawn_blocking(move || lock_file(&path, true)).await;
        match result {
            Ok(Ok(file)) => Some(FileLock { _file: file }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot take the SLURM write lock file; serialising within this process only");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "SLURM write lock task failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn writes_to_one_cluster_never_overlap_and_clusters_are_independent() {
        let dir = std::env::temp_dir().join(format!("gate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let a1 = ClusterGate::shared("/x", Some("Alpha"), Some(dir.clone()));
        let a2 = ClusterGate::shared("/x", Some("alpha"), Some(dir.clone()));
        let b = ClusterGate::shared("/x", Some("beta"), Some(dir.clone()));
        assert!(Arc::ptr_eq(&a1, &a2), "one gate per cluster, case-folded");
        assert!(!Arc::ptr_eq(&a1, &b));

        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let gate = if i % 2 == 0 { a1.clone() } else { a2.clone() };
            let (inside, most) = (inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _w = gate.write().await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "two writes ran at once");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_script_holding_the_machine_lock_keeps_every_cluster_waiting() {
        let dir = std::env::temp_dir().join(format!("gate-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let held = hold_write_lock(&dir).expect("lock");
        let mut writers = Vec::new();
        for cluster in ["gamma", "delta"] {
            let gate = ClusterGate::shared("/lock-test", Some(cluster), Some(dir.clone()));
            writers.push(tokio::spawn(async move {
                let _w = gate.write().await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            writers.iter().all(|w| !w.is_finished()),
            "an agent wrote while a script held {LOCK_FILE_NAME}"
        );
        drop(held);
        for w in writers {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("writes go on once the lock is free")
                .expect("task");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
