//! TEMPORARY stand-in for h1's store API (replaced when h1's branch is merged).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMeta {
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Absent,
    ETag(String),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRecord {
    Put {
        key: String,
        data_id: u64,
        size: u64,
        meta: PendingMeta,
        expect: Expect,
    },
    Unlink {
        key: String,
    },
    Rename {
        from: String,
        to: String,
    },
    SetMeta {
        key: String,
        meta: PendingMeta,
    },
    Settled {
        seq: u64,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("write-back store full")]
pub struct NoSpace;

#[derive(Debug)]
pub struct SpaceReservation {
    bytes: u64,
}

impl SpaceReservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn merge(&mut self, mut other: SpaceReservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
    pub fn release(self) {}
}

#[derive(Debug)]
pub struct DataPin {
    data_id: u64,
}

impl DataPin {
    pub fn data_id(&self) -> u64 {
        self.data_id
    }
}

pub type StoreOpenError = std::io::Error;

#[derive(Debug)]
pub struct WriteBackStore {
    dir: PathBuf,
    max: u64,
    next_id: AtomicU64,
    seq: AtomicU64,
    settled: Mutex<Vec<u64>>,
}

impl WriteBackStore {
    pub fn default_dir(endpoint: &str, bucket: &str, prefix: &str) -> PathBuf {
        PathBuf::from("/var/cache/ossmount").join(format!(
            "{bucket}-{}-{}",
            prefix.replace('/', "_"),
            endpoint.replace(['/', ':'], "_")
        ))
    }
    pub fn open(dir: &Path, max_size: u64) -> std::io::Result<(WriteBackStore, Vec<(u64, JournalRecord)>)> {
        std::fs::create_dir_all(dir.join("data"))?;
        Ok((
            WriteBackStore {
                dir: dir.to_path_buf(),
                max: max_size,
                next_id: AtomicU64::new(1),
                seq: AtomicU64::new(1),
                settled: Mutex::new(Vec::new()),
            },
            Vec::new(),
        ))
    }
    pub fn pin_data(&self, data_id: u64) -> DataPin {
        DataPin { data_id }
    }
    pub fn discard_data_file(&self, _data_id: u64) {}
    pub async fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn on_tmpfs(&self) -> bool {
        false
    }
    pub fn create_data_file(&self) -> std::io::Result<(u64, File)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let f = File::options().create(true).truncate(true).read(true).write(true).open(self.data_path(id))?;
        Ok((id, f))
    }
    pub fn data_path(&self, id: u64) -> PathBuf {
        self.dir.join("data").join(id.to_string())
    }
    pub async fn append(&self, _r: JournalRecord) -> std::io::Result<u64> {
        let mut live = self.settled.lock().unwrap();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        live.push(seq);
        Ok(seq)
    }
    pub async fn settle(&self, seq: u64) -> std::io::Result<()> {
        self.settled.lock().unwrap().retain(|s| *s != seq);
        Ok(())
    }
    pub async fn reserve(&self, bytes: u64) -> Result<SpaceReservation, NoSpace> {
        if bytes > self.max {
            return Err(NoSpace);
        }
        Ok(SpaceReservation { bytes })
    }
    pub fn used_bytes(&self) -> u64 {
        0
    }
    pub fn max_size(&self) -> u64 {
        self.max
    }
    pub fn is_full(&self) -> bool {
        false
    }
    pub fn keep_conflict(&self, data_id: u64, key: &str) -> std::io::Result<PathBuf> {
        let to = self.dir.join("conflicts").join(key.replace('/', "_"));
        std::fs::create_dir_all(self.dir.join("conflicts"))?;
        std::fs::rename(self.data_path(data_id), &to)?;
        Ok(to)
    }
    pub fn conflicts_count(&self) -> u64 {
        0
    }
    pub fn enqueued_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
    pub fn settled_seq(&self) -> u64 {
        let live = self.settled.lock().unwrap();
        live.iter().min().copied().unwrap_or(self.seq.load(Ordering::Relaxed))
    }
}

pub fn default_max_size(_dir: &Path) -> u64 {
    10 << 30
}
