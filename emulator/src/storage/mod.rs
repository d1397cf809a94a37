//! On-disk object storage with an in-memory sorted key index.
//!
//! Layout under `--data-dir`:
//! ```text
//! <bucket>/objects/<sha256(key)>.json          sidecar: ObjectRecord (key, etag, crc64, …)
//! <bucket>/objects/<sha256(key)>-<uniq>.data   content, immutable once committed
//! <bucket>/objects/<sha256(key)>-<uniq>-pN.data the part files of a completed upload
//! <bucket>/uploads/<upload id>/upload.json     multipart upload (key, content type, meta)
//! <bucket>/uploads/<upload id>/part-NNNNN.json part record, names its -<uniq>.data file
//! <bucket>/tmp/                                data not yet committed (uncommitted_data.rs)
//! ```
//! Keys never become paths (they may contain `..`, `//`, 1023 bytes, anything UTF-8):
//! each key maps to the hex SHA-256 of its bytes, and the sidecar holds the real key.
//! The sorted index (`BTreeMap`) is rebuilt from the sidecars at start, so restarts
//! keep data.
//!
//! Atomic replacement: a body is streamed into `tmp/`, renamed to a *new* data file name,
//! and only then is the sidecar replaced (rename over, the commit point) and the index
//! updated. The old data file is unlinked afterwards; readers that opened it keep reading
//! the old, consistent bytes. A crash between the two renames leaves an orphan data file,
//! deleted at the next start. Appends write past the recorded size of the current data
//! file and then commit a larger size, so readers bounded by the old record still see
//! consistent bytes. All commits of a bucket are serialised by one mutex (short: renames
//! and a small JSON write; an append also copies its staged body).
//!
//! A completed multipart upload keeps its part files (renamed into `objects/`) and lists
//! them in its sidecar, so Complete moves no data ([`content`]).
//!
//! No fsync: this is a test emulator; durability across clean restarts is what matters.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::OssError;
use super::xml::now_millis;
use ossmount::crc64::Crc64Hasher;

mod content;
mod uncommitted_data;
mod uploads;

pub use content::{Content, SegmentFile, Span};
pub use uncommitted_data::{StagedFile, Stager};
pub use uploads::{PartRecord, UploadMeta};

/// Every part but the last must be at least this large (OSS: 100 KiB).
pub const MIN_PART_SIZE: u64 = 100 * 1024;
/// Part numbers are 1..=10000.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Largest single PUT / part (5 GiB).
pub const MAX_PUT_SIZE: u64 = 5 << 30;

/// `x-oss-object-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    Normal,
    Multipart,
    Appendable,
    Symlink,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Normal => "Normal",
            ObjectKind::Multipart => "Multipart",
            ObjectKind::Appendable => "Appendable",
            ObjectKind::Symlink => "Symlink",
        }
    }
}

/// The sidecar of one object: everything HEAD and LIST report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectRecord {
    pub key: String,
    /// File name of the content inside `objects/`; empty for symlinks.
    #[serde(default)]
    pub data_file: String,
    /// A completed multipart upload: its part files in order (`data_file` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentFile>,
    pub size: u64,
    /// Quoted, upper-case hex like OSS.
    pub etag: String,
    pub crc64: u64,
    pub kind: ObjectKind,
    pub content_type: String,
    #[serde(default)]
    pub user_meta: BTreeMap<String, String>,
    pub last_modified_ms: u64,
    #[serde(default)]
    pub symlink_target: Option<String>,
    /// Base64 MD5, only for simple PUTs (sent back as `Content-MD5`).
    #[serde(default)]
    pub content_md5: Option<String>,
}

impl ObjectRecord {
    /// Every file name under `objects/` holding this version's bytes.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.data_file.as_str())
            .filter(|f| !f.is_empty())
            .chain(self.segments.iter().map(|s| s.file.as_str()))
    }
}

/// What a commit sets besides the content (which comes from the staged file).
#[derive(Debug, Clone)]
pub struct NewObject {
    pub kind: ObjectKind,
    pub etag: String,
    pub content_type: String,
    pub user_meta: BTreeMap<String, String>,
    pub symlink_target: Option<String>,
    pub content_md5: Option<String>,
}

/// CRC-64/XZ as OSS uses it (`x-oss-hash-crc64ecma`).
pub fn crc64_digest() -> Crc64Hasher {
    Crc64Hasher::new()
}

/// CRC of `a ‖ b` from the CRCs of `a` and `b` and the length of `b`.
pub fn crc64_combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    ossmount::crc64::combine(crc_a, crc_b, len_b)
}

/// `"HEX"`, the OSS ETag form of an MD5.
pub fn quoted_md5_etag(md5: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(md5))
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}{:04x}{:x}",
        now_millis(),
        std::process::id() & 0xffff,
        n
    )
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `value` as JSON to `path` atomically (temp file + rename).
fn write_json_atomic<T: Serialize>(tmp_dir: &Path, path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let tmp = tmp_dir.join(format!("json-{}", unique_suffix()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// New bytes placed under `objects/` by a commit, before its sidecar is written.
#[derive(Default)]
struct Placed {
    data_file: String,
    segments: Vec<SegmentFile>,
    size: u64,
    crc64: u64,
    /// Renames to reverse if the commit fails (moved part files go back to their upload).
    undo: Vec<(PathBuf, PathBuf)>,
}

impl Placed {
    fn roll_back(&self) {
        for (now, was) in self.undo.iter().rev() {
            let _ = fs::rename(now, was);
        }
    }
}

/// Parameters of one LIST page.
pub struct ListParams<'a> {
    pub prefix: &'a str,
    /// Empty = no delimiter.
    pub delimiter: &'a str,
    /// Exclusive lower bound (start-after / marker / continuation token).
    pub after: Option<&'a str>,
    pub max_keys: usize,
}

/// One LIST page: objects and common prefixes in key order.
#[derive(Debug, Default)]
pub struct ListOutput {
    pub objects: Vec<Arc<ObjectRecord>>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix returned, when truncated.
    pub next_marker: Option<String>,
}

/// One bucket: directories plus the in-memory index.
pub struct Bucket {
    pub name: String,
    pub created_ms: u64,
    objects_dir: PathBuf,
    tmp_dir: PathBuf,
    uploads_dir: PathBuf,
    index: RwLock<BTreeMap<String, Arc<ObjectRecord>>>,
    commit_lock: Mutex<()>,
    uploads: Mutex<BTreeMap<String, Arc<UploadMeta>>>,
    open_files: content::OpenFiles,
}

impl Bucket {
    /// Opens (creating if needed) a bucket directory and rebuilds the index. Blocking.
    pub fn open(root: &Path, name: &str) -> io::Result<Bucket> {
        let dir = root.join(name);
        let objects_dir = dir.join("objects");
        let tmp_dir = dir.join("tmp");
        let uploads_dir = dir.join("uploads");
        for d in [&objects_dir, &tmp_dir, &uploads_dir] {
            fs::create_dir_all(d)?;
        }
        // Bodies half-received before a restart are garbage.
        for entry in fs::read_dir(&tmp_dir)? {
            let _ = fs::remove_file(entry?.path());
        }
        let created_ms = fs::metadata(&dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or_else(now_millis);

        let mut index = BTreeMap::new();
        let mut data_files = Vec::new();
        for entry in fs::read_dir(&objects_dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => match fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ObjectRecord>(&b).ok())
                {
                    Some(rec) => {
                        index.insert(rec.key.clone(), Arc::new(rec));
                    }
                    None => tracing::warn!(path = %path.display(), "unreadable sidecar skipped"),
                },
                Some("data") => data_files.push(path),
                _ => {}
            }
        }
        let referenced: std::collections::HashSet<&str> =
            index.values().flat_map(|r| r.files()).collect();
        for path in data_files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !referenced.contains(name) {
                let _ = fs::remove_file(&path);
            }
        }

        let mut uploads = BTreeMap::new();
        for entry in fs::read_dir(&uploads_dir)? {
            let path = entry?.path().join("upload.json");
            if let Some(meta) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<UploadMeta>(&b).ok())
            {
                uploads.insert(meta.upload_id.clone(), Arc::new(meta));
            }
        }
        tracing::info!(
            bucket = name,
            objects = index.len(),
            uploads = uploads.len(),
            "bucket opened"
        );
        Ok(Bucket {
            name: name.to_string(),
            created_ms,
            objects_dir,
            tmp_dir,
            uploads_dir,
            index: RwLock::new(index),
            commit_lock: Mutex::new(()),
            uploads: Mutex::new(uploads),
            open_files: content::OpenFiles::default(),
        })
    }

    pub fn get(&self, key: &str) -> Option<Arc<ObjectRecord>> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn object_count(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Looks a key up and opens its content. Retries when a concurrent overwrite unlinked
    /// the data file between the lookup and the open. Blocking.
    pub fn open_object(&self, key: &str) -> io::Result<Option<(Arc<ObjectRecord>, Content)>> {
        'retry: for _ in 0..5 {
            let Some(rec) = self.get(key) else {
                return Ok(None);
            };
            let files: Vec<(&str, u64)> = if rec.segments.is_empty() {
                if rec.data_file.is_empty() {
                    return Err(io::Error::other("object has no content file"));
                }
                vec![(rec.data_file.as_str(), rec.size)]
            } else {
                rec.segments
                    .iter()
                    .map(|s| (s.file.as_str(), s.size))
                    .collect()
            };
            let mut opened = Vec::with_capacity(files.len());
            for (name, len) in files {
                match self.open_files.open(&self.objects_dir, name) {
                    Ok(f) => opened.push((f, len)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'retry,
                    Err(e) => return Err(e),
                }
            }
            let content = Content::new(opened);
            return Ok(Some((rec, content)));
        }
        Err(io::Error::other("object kept changing while being opened"))
    }

    /// Replaces (or creates) `key`. `check` sees the current record under the commit lock
    /// (forbid-overwrite, conditions). `staged` is None for symlinks. Blocking.
    pub fn commit(
        &self,
        key: &str,
        staged: Option<StagedFile>,
        new: NewObject,
        check: impl FnOnce(Option<&ObjectRecord>) -> Result<(), OssError>,
    ) -> Result<Arc<ObjectRecord>, OssError> {
        self.commit_placed(key, new, check, |hash| match staged {
            Some(mut staged) => {
                let name = format!("{hash}-{}.data", unique_suffix());
                let from = staged.disarm();
                fs::rename(&from, self.objects_dir.join(&name)).inspect_err(|_| {
                    let _ = fs::remove_file(&from);
                })?;
                Ok(Placed {
                    data_file: name,
                    segments: Vec::new(),
                    size: staged.size,
                    crc64: staged.crc64,
                    undo: Vec::new(),
                })
            }
            None => Ok(Placed::default()),
        })
    }

    /// CompleteMultipartUpload's commit: the part files of `upload_id` move into
    /// `objects/` as the new version's segments (no byte is copied). `crc64` is the
    /// combined CRC of the parts. Blocking.
    pub fn commit_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartRecord],
        crc64: u64,
        new: NewObject,
        check: impl FnOnce(Option<&ObjectRecord>) -> Result<(), OssError>,
    ) -> Result<Arc<ObjectRecord>, OssError> {
        let upload_dir = self.uploads_dir.join(upload_id);
        self.commit_placed(key, new, check, |hash| {
            let base = format!("{hash}-{}", unique_suffix());
            let mut placed = Placed {
                crc64,
                ..Placed::default()
            };
            for p in parts {
                let name = format!("{base}-p{}.data", p.part_number);
                let (from, to) = (upload_dir.join(&p.data_file), self.objects_dir.join(&name));
                if let Err(e) = fs::rename(&from, &to) {
                    placed.roll_back();
                    return Err(e);
                }
                placed.undo.push((to, from));
                placed.segments.push(SegmentFile {
                    file: name,
                    size: p.size,
                });
                placed.size += p.size;
            }
            Ok(placed)
        })
    }

    /// The shared commit: `place` puts the new bytes under `objects/` (given the key's
    /// hash), then the sidecar is replaced (the commit point), the index updated and the
    /// old version's files unlinked.
    fn commit_placed(
        &self,
        key: &str,
        new: NewObject,
        check: impl FnOnce(Option<&ObjectRecord>) -> Result<(), OssError>,
        place: impl FnOnce(&str) -> io::Result<Placed>,
    ) -> Result<Arc<ObjectRecord>, OssError> {
        let _guard = lock(&self.commit_lock);
        let old = self.get(key);
        check(old.as_deref())?;
        let hash = key_hash(key);
        let placed = place(&hash)?;
        let rec = Arc::new(ObjectRecord {
            key: key.to_string(),
            data_file: placed.data_file.clone(),
            segments: placed.segments.clone(),
            size: placed.size,
            etag: new.etag,
            crc64: placed.crc64,
            kind: new.kind,
            content_type: new.content_type,
            user_meta: new.user_meta,
            last_modified_ms: now_millis(),
            symlink_target: new.symlink_target,
            content_md5: new.content_md5,
        });
        let sidecar = self.objects_dir.join(format!("{hash}.json"));
        if let Err(e) = write_json_atomic(&self.tmp_dir, &sidecar, &*rec) {
            placed.roll_back();
            if !placed.data_file.is_empty() {
                let _ = fs::remove_file(self.objects_dir.join(&placed.data_file));
            }
            return Err(e.into());
        }
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), rec.clone());
        if let Some(old) = old {
            let keep: Vec<&str> = rec.files().collect();
            for f in old.files().filter(|f| !keep.contains(f)) {
                self.open_files.remove(&self.objects_dir, f);
            }
        }
        Ok(rec)
    }

    /// AppendObject: appends `staged` at `position`, creating an Appendable object when
    /// the key is absent and position is 0. Blocking.
    pub fn append(
        &self,
        key: &str,
        position: u64,
        staged: StagedFile,
        create: NewObject,
    ) -> Result<Arc<ObjectRecord>, OssError> {
        let guard = lock(&self.commit_lock);
        let Some(old) = self.get(key) else {
            drop(guard);
            if position != 0 {
                return Err(position_mismatch(0));
            }
            let mut create = create;
            create.etag = appendable_etag(staged.crc64, staged.size);
            let crc = staged.crc64;
            let size = staged.size;
            return self
                .commit(key, Some(staged), create, |cur| match cur {
                    // Lost a race with another creator: report like OSS would.
                    Some(c) if c.kind != ObjectKind::Appendable => Err(not_appendable()),
                    Some(c) => Err(position_mismatch(c.size)),
                    None => Ok(()),
                })
                .inspect(|_| tracing::debug!(key, size, crc, "appendable object created"));
        };
        if old.kind != ObjectKind::Appendable {
            return Err(not_appendable());
        }
        if old.size != position {
            return Err(position_mismatch(old.size));
        }
        let data_path = self.objects_dir.join(&old.data_file);
        let result = (|| -> io::Result<()> {
            let mut dst = fs::OpenOptions::new().write(true).open(&data_path)?;
            dst.seek(SeekFrom::Start(position))?;
            let mut src = fs::File::open(staged.path())?;
            io::copy(&mut src, &mut dst)?;
            Ok(())
        })();
        if let Err(e) = result {
            if let Ok(f) = fs::OpenOptions::new().write(true).open(&data_path) {
                let _ = f.set_len(position);
            }
            return Err(e.into());
        }
        let size = old.size + staged.size;
        let crc64 = crc64_combine(old.crc64, staged.crc64, staged.size);
        let rec = Arc::new(ObjectRecord {
            size,
            crc64,
            etag: appendable_etag(crc64, size),
            last_modified_ms: now_millis(),
            ..(*old).clone()
        });
        let sidecar = self.objects_dir.join(format!("{}.json", key_hash(key)));
        write_json_atomic(&self.tmp_dir, &sidecar, &*rec)?;
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), rec.clone());
        Ok(rec)
    }

    /// Deletes `key`; returns whether it existed. Blocking.
    pub fn delete(&self, key: &str) -> io::Result<bool> {
        let _guard = lock(&self.commit_lock);
        let Some(old) = self.get(key) else {
            return Ok(false);
        };
        let sidecar = self.objects_dir.join(format!("{}.json", key_hash(key)));
        match fs::remove_file(&sidecar) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        for f in old.files() {
            self.open_files.remove(&self.objects_dir, f);
        }
        Ok(true)
    }

    /// One page of keys/prefixes in byte order.
    pub fn list(&self, p: &ListParams<'_>) -> ListOutput {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut out = ListOutput::default();
        let mut start: Bound<String> = match p.after {
            Some(m) if m >= p.prefix => Bound::Excluded(m.to_string()),
            _ => Bound::Included(p.prefix.to_string()),
        };
        let mut last_prefix: Option<String> = None;
        let mut count = 0usize;
        'outer: loop {
            let mut restart = None;
            for (key, rec) in index.range((start.clone(), Bound::Unbounded)) {
                if !key.starts_with(p.prefix) {
                    break 'outer;
                }
                if let Some(lp) = &last_prefix
                    && key.starts_with(lp.as_str())
                {
                    continue;
                }
                if !p.delimiter.is_empty()
                    && let Some(pos) = key[p.prefix.len()..].find(p.delimiter)
                {
                    let cp = &key[..p.prefix.len() + pos + p.delimiter.len()];
                    if p.after == Some(cp) {
                        // Resuming after this common prefix: skip its members.
                        last_prefix = Some(cp.to_string());
                        restart = Some(Bound::Excluded(format!("{cp}\u{10FFFF}")));
                        break;
                    }
                    if count == p.max_keys {
                        out.truncated = true;
                        break 'outer;
                    }
                    out.prefixes.push(cp.to_string());
                    out.next_marker = Some(cp.to_string());
                    count += 1;
                    last_prefix = Some(cp.to_string());
                    restart = Some(Bound::Excluded(format!("{cp}\u{10FFFF}")));
                    break;
                }
                if count == p.max_keys {
                    out.truncated = true;
                    break 'outer;
                }
                out.objects.push(rec.clone());
                out.next_marker = Some(key.clone());
                count += 1;
            }
            match restart {
                Some(b) => start = b,
                None => break,
            }
        }
        if !out.truncated {
            out.next_marker = None;
        }
        out
    }

    /// Imports every regular file under `dir` (key = relative path with `/`), skipping keys
    /// that already exist with the same size. Blocking.
    pub fn import_dir(&self, dir: &Path) -> io::Result<usize> {
        let mut stack = vec![dir.to_path_buf()];
        let mut imported = 0;
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d)? {
                let entry = entry?;
                let path = entry.path();
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !ft.is_file() {
                    continue;
                }
                let Some(key) = path
                    .strip_prefix(dir)
                    .ok()
                    .and_then(|r| r.to_str())
                    .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
                else {
                    continue;
                };
                let src = fs::File::open(&path)?;
                let len = src.metadata()?.len();
                let src = Content::single(src, len);
                if self.get(&key).is_some_and(|r| r.size == len) {
                    continue;
                }
                let staged = self.stage_copy(&src, 0, len)?;
                let new = NewObject {
                    kind: ObjectKind::Normal,
                    etag: quoted_md5_etag(&staged.md5),
                    content_type: guess_content_type(&key).to_string(),
                    user_meta: BTreeMap::new(),
                    symlink_target: None,
                    content_md5: Some(base64_md5(&staged.md5)),
                };
                self.commit(&key, Some(staged), new, |_| Ok(()))
                    .map_err(|e| io::Error::other(e.to_string()))?;
                imported += 1;
            }
        }
        Ok(imported)
    }
}

pub fn base64_md5(md5: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(md5)
}

/// Appendable objects have no content MD5; OSS sends an opaque ETag.
fn appendable_etag(crc64: u64, size: u64) -> String {
    format!("\"{crc64:016X}{size:016X}\"")
}

pub fn position_mismatch(expected: u64) -> OssError {
    OssError::new(
        409,
        "PositionNotEqualToLength",
        "Position is not equal to file length.",
    )
    .with_extra("NextAppendPosition", expected.to_string())
    .with_header("x-oss-next-append-position", expected.to_string())
}

pub fn not_appendable() -> OssError {
    OssError::new(409, "ObjectNotAppendable", "The object is not appendable.")
}

/// Content type from the file extension (import only; PUT keeps what the client sends).
pub fn guess_content_type(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "log" | "md") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// All buckets of the emulator.
pub struct Storage {
    buckets: BTreeMap<String, Arc<Bucket>>,
}

impl Storage {
    /// Opens every configured bucket under `root`. Blocking.
    pub fn open(root: &Path, names: &[String]) -> io::Result<Storage> {
        fs::create_dir_all(root)?;
        let mut buckets = BTreeMap::new();
        for name in names {
            buckets.insert(name.clone(), Arc::new(Bucket::open(root, name)?));
        }
        Ok(Storage { buckets })
    }

    pub fn bucket(&self, name: &str) -> Option<Arc<Bucket>> {
        self.buckets.get(name).cloned()
    }

    pub fn buckets(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        self.buckets.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged_from(bucket: &Bucket, data: &[u8]) -> StagedFile {
        let path = bucket.tmp_dir.join(format!("t-{}", unique_suffix()));
        fs::write(&path, data).unwrap();
        let src = Content::single(fs::File::open(&path).unwrap(), data.len() as u64);
        let s = bucket.stage_copy(&src, 0, data.len() as u64).unwrap();
        fs::remove_file(&path).unwrap();
        s
    }

    fn plain(etag: &str) -> NewObject {
        NewObject {
            kind: ObjectKind::Normal,
            etag: etag.into(),
            content_type: "application/octet-stream".into(),
            user_meta: BTreeMap::new(),
            symlink_target: None,
            content_md5: None,
        }
    }

    #[test]
    fn crc_matches_oss_check_values_and_combines() {
        let mut d = crc64_digest();
        d.update(b"123456789");
        assert_eq!(d.finish(), 0x995DC9BBDF1939FA);
        let a = ossmount::crc64::crc64(b"123456789");
        let text = b"This is a test of the emergency broadcast system.";
        let b = ossmount::crc64::crc64(text);
        assert_eq!(b, 0x27DB187FC15BBC72);
        assert_eq!(crc64_combine(a, b, text.len() as u64), 0x6A7AA19FCBF48688);
    }

    #[test]
    fn odd_keys_persist_across_reopen_and_old_readers_stay_consistent() {
        let root = tempfile::tempdir().unwrap();
        let keys = ["a//b", "../x", "%2E/./..", "日本/語", &"k".repeat(1023)];
        {
            let b = Bucket::open(root.path(), "bkt").unwrap();
            for k in keys {
                let s = staged_from(&b, k.as_bytes());
                b.commit(k, Some(s), plain("\"E\""), |_| Ok(())).unwrap();
            }
            // Overwrite while a reader holds the old file open.
            let (_, old_file) = b.open_object("a//b").unwrap().unwrap();
            let s = staged_from(&b, b"new contents");
            b.commit("a//b", Some(s), plain("\"F\""), |_| Ok(()))
                .unwrap();
            let mut buf = vec![0; 4];
            old_file.read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(&buf, b"a//b");
        }
        let b = Bucket::open(root.path(), "bkt").unwrap();
        assert_eq!(b.object_count(), keys.len());
        let (rec, f) = b.open_object("a//b").unwrap().unwrap();
        assert_eq!(rec.size, 12);
        assert_eq!(rec.etag, "\"F\"");
        let mut buf = vec![0; 12];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"new contents");
        // One data file per object: the overwritten one was removed.
        assert_eq!(data_file_count(root.path()), keys.len());
    }

    #[test]
    fn list_with_delimiter_and_markers() {
        let root = tempfile::tempdir().unwrap();
        let b = Bucket::open(root.path(), "bkt").unwrap();
        for k in ["a", "d/1", "d/2", "d/x/1", "e", "f/1"] {
            let s = staged_from(&b, b"x");
            b.commit(k, Some(s), plain("\"E\""), |_| Ok(())).unwrap();
        }
        let page = |after: Option<&str>, max: usize| {
            b.list(&ListParams {
                prefix: "",
                delimiter: "/",
                after,
                max_keys: max,
            })
        };
        let p1 = page(None, 2);
        assert_eq!(p1.objects.len(), 1);
        assert_eq!(p1.prefixes, vec!["d/"]);
        assert!(p1.truncated);
        assert_eq!(p1.next_marker.as_deref(), Some("d/"));
        let p2 = page(p1.next_marker.as_deref(), 2);
        assert_eq!(p2.objects[0].key, "e");
        assert_eq!(p2.prefixes, vec!["f/"]);
        assert!(!p2.truncated);
        let inner = b.list(&ListParams {
            prefix: "d/",
            delimiter: "/",
            after: None,
            max_keys: 100,
        });
        let keys: Vec<_> = inner.objects.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["d/1", "d/2"]);
        assert_eq!(inner.prefixes, vec!["d/x/"]);
    }

    fn data_file_count(root: &Path) -> usize {
        fs::read_dir(root.join("bkt/objects"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "data")
            })
            .count()
    }

    /// Complete moves the part files into `objects/` (no copy): the object reads back as
    /// the parts in order, survives a restart, and its files go when it is replaced or
    /// deleted.
    #[test]
    fn completed_upload_keeps_its_parts_as_segments() {
        let root = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 3] = [b"first part, ", b"second, ", b"last"];
        let whole = parts.concat();
        {
            let b = Bucket::open(root.path(), "bkt").unwrap();
            let up = b
                .create_upload("big", "text/plain".into(), BTreeMap::new())
                .unwrap();
            // Uploaded out of order, one part twice (the later one wins).
            let mut records = Vec::new();
            b.put_part(&up.upload_id, 2, staged_from(&b, b"stale"))
                .unwrap();
            for (i, data) in parts.iter().enumerate().rev() {
                records.push(
                    b.put_part(&up.upload_id, i as u32 + 1, staged_from(&b, data))
                        .unwrap(),
                );
            }
            let mut listed = b.parts(&up.upload_id).unwrap();
            listed.sort_by_key(|p| p.part_number);
            let crc = listed
                .iter()
                .fold(0, |acc, p| crc64_combine(acc, p.crc64, p.size));
            let rec = b
                .commit_parts("big", &up.upload_id, &listed, crc, plain("\"M-3\""), |_| {
                    Ok(())
                })
                .unwrap();
            b.remove_upload(&up.upload_id).unwrap();
            assert_eq!(rec.size, whole.len() as u64);
            assert_eq!(rec.segments.len(), 3);
            assert_eq!(rec.crc64, ossmount::crc64::crc64(&whole));
            assert_eq!(data_file_count(root.path()), 3);
        }
        let b = Bucket::open(root.path(), "bkt").unwrap();
        let (rec, content) = b.open_object("big").unwrap().unwrap();
        assert_eq!(content.len(), rec.size);
        let mut buf = vec![0; whole.len()];
        content.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, whole);
        // A copy reads across the part files.
        let copy = b.stage_copy(&content, 5, 12).unwrap();
        assert_eq!(fs::read(copy.path()).unwrap(), &whole[5..17]);
        drop(copy);
        // Replacing the object removes every part file; deleting removes the rest.
        b.commit(
            "big",
            Some(staged_from(&b, b"small")),
            plain("\"S\""),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(data_file_count(root.path()), 1);
        assert!(b.delete("big").unwrap());
        assert_eq!(data_file_count(root.path()), 0);
    }
}
