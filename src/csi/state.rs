//! What the plugin remembers about the volumes it published, under its data directory, so
//! a restarted plugin still answers publish (idempotently) and unpublish for them.
//!
//! One JSON file per target path in `DATA_DIR/volumes/`, named by a hash of the path,
//! written atomically (temporary file + rename) with mode 0600. It holds the request's
//! fingerprint (a hash: secrets never reach the disk here) and the pid of the ossmount
//! process serving the mount. The mount table stays the truth about *whether* something
//! is mounted; this file says *what* we mounted there.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    pub volume_id: String,
    pub target: PathBuf,
    pub source: String,
    pub fingerprint: String,
    pub read_only: bool,
    /// The ossmount process serving the mount, when known.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    logs: PathBuf,
}

impl StateDir {
    /// Opens (creating) `data_dir/volumes` and `data_dir/logs`.
    pub fn open(data_dir: &Path) -> std::io::Result<StateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let root = data_dir.join("volumes");
        let logs = data_dir.join("logs");
        for dir in [&root, &logs] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Ok(StateDir { root, logs })
    }

    fn key(target: &Path) -> String {
        use std::os::unix::ffi::OsStrExt;
        hex::encode(&Sha256::digest(target.as_os_str().as_bytes())[..16])
    }

    fn file(&self, target: &Path) -> PathBuf {
        self.root.join(format!("{}.json", Self::key(target)))
    }

    /// The log file of the ossmount process for `target`.
    pub fn log_file(&self, target: &Path) -> PathBuf {
        self.logs.join(format!("{}.log", Self::key(target)))
    }

    pub fn load(&self, target: &Path) -> Option<VolumeState> {
        let text = std::fs::read_to_string(self.file(target)).ok()?;
        match serde_json::from_str::<VolumeState>(&text) {
            Ok(state) if state.target == target => Some(state),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(target = %target.display(), error = %e, "unreadable volume state; ignoring it");
                None
            }
        }
    }

    pub fn save(&self, state: &VolumeState) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.file(&state.target);
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }

    pub fn remove(&self, target: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(self.file(target)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every recorded volume (unreadable files are skipped).
    pub fn list(&self) -> Vec<VolumeState> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_lists_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::open(dir.path()).unwrap();
        let target = PathBuf::from("/var/lib/kubelet/pods/p/volumes/v/mount");
        assert_eq!(states.load(&target), None);
        let state = VolumeState {
            volume_id: "v".into(),
            target: target.clone(),
            source: "b:p/".into(),
            fingerprint: "f".into(),
            read_only: false,
            pid: Some(7),
        };
        states.save(&state).unwrap();
        assert_eq!(states.load(&target), Some(state.clone()));
        assert_eq!(states.list(), vec![state]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(states.file(&target))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        states.remove(&target).unwrap();
        states.remove(&target).unwrap();
        assert_eq!(states.load(&target), None);
        assert!(states.list().is_empty());
    }
}
