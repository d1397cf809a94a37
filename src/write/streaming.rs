//! [`StreamingUpload`]: a new file written sequentially, uploaded while it is written.
//!
//! The buffer is sent as a part only when it is full *and* more bytes arrive, so a file of
//! exactly one part is still a single PutObject. Part uploads run as tokio tasks in a
//! `JoinSet` of at most `max_concurrency`; when it is full, `write()` waits for one to
//! finish (back-pressure), so a fast writer cannot queue unbounded memory.
//!
//! Part buffers can be charged to the read path's memory budget
//! ([`StreamingUpload::with_memory`]): reserving a part evicts cached blocks, so cache,
//! prefetch and uploads together stay within `--cache-size` instead of adding
//! `(max_concurrency + 1) × part_size` on top of it.
//!
//! A part is held as pieces of [`PIECE`] bytes (1 MiB, the read cache's block size), not
//! one allocation of the part size: part buffers are charged to the cache budget, which
//! frees cache blocks to make room, and same-sized pieces reuse exactly that freed
//! memory. One 8 MiB allocation cannot reuse eight freed 1 MiB blocks, so with whole-part
//! buffers the process grew by the upload window on top of the cache (peak RSS 430 MiB
//! for a 256 MiB cache while writing after a large read).
//!
//! A writer may seek back early in a new file (rewriting a header): while everything
//! written fits in the retained prefix ([`StreamingUpload::retain_prefix`]), the parts
//! already sent stay referenced (the same `Bytes` the part tasks upload, no copy), so the
//! caller can take the whole file back ([`StreamingUpload::into_prefix`]) and stage it.
//! With the default 8 MiB parts and prefix the first part is still the unsent buffer, so
//! this costs no memory at all.
//!
//! The first failed part poisons the upload: the failing `write()` (or `finish()`) returns
//! the error, later calls return [`WriteError::Failed`], and the multipart upload is
//! aborted so no partial object ever appears.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::part_size::{MAX_PARTS, streaming_capacity, streaming_part_size};
use super::{QueueDepthGuard, UploadConfig, WriteError, sort_parts};
use crate::read::budget::BudgetPermit;
use crate::read::cache::BlockCache;
use crate::store::{ObjectStore, PartInfo, PutBody, PutOptions, PutResult, StoreError};

/// Size of the buffers a part is made of (see the module docs).
pub const PIECE: usize = 1 << 20;
/// Written buffers at least this large become pieces as they are instead of being
/// copied into one (FUSE delivers writes as owned buffers of up to 1 MiB). Smaller ones
/// are copied, so pieces stay near the cache's block size (see the module docs).
const ADOPT_MIN: usize = 512 << 10;

/// Sequential writer for a new object (see the module docs).
pub struct StreamingUpload {
    store: Arc<dyn ObjectStore>,
    cfg: Arc<UploadConfig>,
    key: String,
    opts: PutOptions,
    /// Full pieces of the part being filled.
    pieces: Vec<Bytes>,
    /// The piece being filled.
    buf: BytesMut,
    /// Bytes in the part being filled (`pieces` and `buf`).
    part_len: u64,
    /// The budget share of the part being filled (when charged to a memory budget).
    buf_permit: Option<BudgetPermit>,
    memory: Option<Arc<BlockCache>>,
    written: u64,
    /// Number the next part will get (1-based).
    next_part: u32,
    upload_id: Option<String>,
    tasks: JoinSet<Result<PartInfo, StoreError>>,
    parts: Vec<PartInfo>,
    /// Parts sent while `written <= retain_limit` (dropped once it is exceeded).
    retained: Vec<Bytes>,
    retain_limit: u64,
    /// Set once an error has been returned; the upload can only be aborted now.
    failed: Option<String>,
    /// `finish`/`abort` ran (nothing for `Drop` to clean up).
    done: bool,
}

impl std::fmt::Debug for StreamingUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingUpload")
            .field("key", &self.key)
            .field("written", &self.written)
            .field("next_part", &self.next_part)
            .field("upload_id", &self.upload_id)
            .field("in_flight", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl StreamingUpload {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cfg: Arc<UploadConfig>,
        key: String,
        opts: PutOptions,
    ) -> Self {
        StreamingUpload {
            store,
            cfg,
            key,
            opts,
            pieces: Vec::new(),
            buf: BytesMut::new(),
            part_len: 0,
            buf_permit: None,
            memory: None,
            written: 0,
            next_part: 1,
            upload_id: None,
            tasks: JoinSet::new(),
            parts: Vec::new(),
            retained: Vec::new(),
            retain_limit: 0,
            failed: None,
            done: false,
        }
    }

    /// Charges part buffers to `cache`'s memory budget (evicting cached blocks).
    pub fn with_memory(mut self, cache: Arc<BlockCache>) -> Self {
        self.memory = Some(cache);
        self
    }

    /// Keeps the first `limit` bytes readable (see the module docs).
    pub fn retain_prefix(mut self, limit: u64) -> Self {
        self.retain_limit = limit;
        self
    }

    /// The options (metadata, content type) the object is, or will be, created with.
    pub fn options(&self) -> &PutOptions {
        &self.opts
    }

    /// Replaces the options the object will be created with, if nothing carrying them
    /// has been sent yet (no multipart upload initiated). Returns whether it took: once a
    /// multipart upload exists, its metadata is fixed and a later change needs a
    /// metadata copy after completion.
    pub fn set_options(&mut self, opts: PutOptions) -> bool {
        if self.upload_id.is_some() {
            return false;
        }
        self.opts = opts;
        true
    }

    /// Whether everything written so far is still held ([`Self::retain_prefix`]).
    pub fn has_prefix(&self) -> bool {
        self.written <= self.retain_limit
    }

    /// Bytes `offset..offset + len` of what was written (clamped to it), while
    /// [`Self::has_prefix`].
    pub fn read_prefix(&self, offset: u64, len: usize) -> Option<Bytes> {
        if !self.has_prefix() {
            return None;
        }
        let start = offset.min(self.written) as usize;
        let end = (start + len).min(self.written as usize);
        let mut out = Vec::with_capacity(end - start);
        let mut at = 0usize;
        for piece in self.held() {
            let (lo, hi) = (at, at + piece.len());
            if hi > start && lo < end {
                out.extend_from_slice(&piece[start.max(lo) - lo..end.min(hi) - lo]);
            }
            at = hi;
        }
        Some(Bytes::from(out))
    }

    /// Aborts the upload and returns everything written, while [`Self::has_prefix`]
    /// (`None` otherwise; the upload is aborted either way).
    pub async fn into_prefix(mut self) -> Option<Vec<u8>> {
        let prefix = self.has_prefix().then(|| {
            let mut all = Vec::with_capacity(self.written as usize);
            for piece in self.held() {
                all.extend_from_slice(piece);
            }
            all
        });
        self.abort_inner().await;
        prefix
    }

    /// What is held in memory, in file order: retained sent parts, then the part being
    /// filled.
    fn held(&self) -> impl Iterator<Item = &[u8]> {
        self.retained
            .iter()
            .chain(&self.pieces)
            .map(|b| &b[..])
            .chain([&self.buf[..]])
    }

    /// Bytes accepted so far (the offset the next `write` appends at).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn current_part_size(&self) -> u64 {
        streaming_part_size(self.cfg.part_size, self.next_part)
    }

    fn check_failed(&self) -> Result<(), WriteError> {
        match &self.failed {
            Some(reason) => Err(WriteError::Failed {
                key: self.key.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, err: WriteError) -> WriteError {
        tracing::warn!(key = %self.key, error = %err, "streaming upload failed");
        self.failed = Some(err.to_string());
        self.tasks.abort_all();
        err
    }

    /// Appends `data` at [`Self::bytes_written`]. May wait while earlier parts upload.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.append(data, None).await
    }

    /// Like [`Self::write`], but a large `data` that starts a piece becomes part of the
    /// part as it is, without a copy (FUSE writes arrive as owned buffers of 1 MiB).
    pub async fn write_bytes(&mut self, data: Bytes) -> Result<(), WriteError> {
        self.append(&data, Some(&data)).await
    }

    /// Appends `data`; `owned` (the same bytes, shareable) lets large runs be adopted as
    /// pieces instead of copied.
    async fn append(&mut self, mut data: &[u8], owned: Option<&Bytes>) -> Result<(), WriteError> {
        self.check_failed()?;
        let max = streaming_capacity(self.cfg.part_size);
        let new_total = self.written.saturating_add(data.len() as u64);
        if new_total > max {
            return Err(WriteError::TooLarge {
                size: new_total,
                max,
            });
        }
        let total = data.len();
        while !data.is_empty() {
            let part_size = self.current_part_size();
            if self.part_len >= part_size {
                if let Err(e) = self.send_part().await {
                    return Err(self.poison(e));
                }
                continue;
            }
            if self.part_len == 0
                && self.buf_permit.is_none()
                && let Some(memory) = &self.memory
            {
                self.buf_permit = Some(memory.reserve_for_upload(part_size).await);
            }
            let room = (part_size - self.part_len) as usize;
            let take = match owned {
                Some(owned) if self.buf.is_empty() && data.len() >= ADOPT_MIN => {
                    let (at, take) = (total - data.len(), room.min(data.len()));
                    self.pieces.push(owned.slice(at..at + take));
                    take
                }
                _ => {
                    if self.buf.len() == self.buf.capacity() {
                        if !self.buf.is_empty() {
                            self.pieces.push(std::mem::take(&mut self.buf).freeze());
                        }
                        // `freeze` later hands the piece to the part task without a copy.
                        let size = (part_size - self.part_len).min(PIECE as u64) as usize;
                        self.buf = BytesMut::with_capacity(size);
                    }
                    let take = (self.buf.capacity() - self.buf.len())
                        .min(room)
                        .min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    take
                }
            };
            self.part_len += take as u64;
            self.written += take as u64;
            data = &data[take..];
        }
        if !self.has_prefix() && !self.retained.is_empty() {
            self.retained = Vec::new();
        }
        Ok(())
    }

    async fn ensure_upload_id(&mut self) -> Result<String, WriteError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let id = self
            .store
            .initiate_multipart_upload(&self.key, &self.opts)
            .await?;
        tracing::debug!(key = %self.key, upload_id = %id, "multipart upload started");
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Waits for one part task; records its part or returns its error.
    async fn reap_one(&mut self) -> Result<(), WriteError> {
        match self.tasks.join_next().await {
            Some(Ok(Ok(part))) => {
                self.parts.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(join)) => Err(WriteError::Io(std::io::Error::other(format!(
                "part upload task failed: {join}"
            )))),
            None => Ok(()),
        }
    }

    /// Hands the buffer to an upload task, waiting for a free slot first.
    async fn send_part(&mut self) -> Result<(), WriteError> {
        if self.next_part > MAX_PARTS {
            return Err(WriteError::TooLarge {
                size: self.written,
                max: streaming_capacity(self.cfg.part_size),
            });
        }
        let upload_id = self.ensure_upload_id().await?;
        // Reap finished tasks eagerly so errors surface on the next write.
        while let Some(res) = self.tasks.try_join_next() {
            match res {
                Ok(Ok(part)) => self.parts.push(part),
                Ok(Err(e)) => return Err(e.into()),
                Err(join) => {
                    return Err(WriteError::Io(std::io::Error::other(format!(
                        "part upload task failed: {join}"
                    ))));
                }
            }
        }
        while self.tasks.len() >= self.cfg.max_concurrency.max(1) {
            self.reap_one().await?;
        }
        let body = self.take_part();
        if self.has_prefix() {
            self.retained.extend(body.iter().cloned());
        }
        let permit = self.buf_permit.take();
        let part_number = self.next_part;
        self.next_part += 1;
        let store = self.store.clone();
        let key = self.key.clone();
        let guard = QueueDepthGuard::new();
        self.tasks.spawn(async move {
            let _guard = guard;
            let _permit = permit;
            store
                .upload_part(&key, &upload_id, part_number, PutBody::Pieces(body))
                .await
        });
        Ok(())
    }

    /// The part being filled, as pieces; the next write starts a new part.
    fn take_part(&mut self) -> Vec<Bytes> {
        let mut pieces = std::mem::take(&mut self.pieces);
        if !self.buf.is_empty() {
            pieces.push(std::mem::take(&mut self.buf).freeze());
        }
        self.buf = BytesMut::new();
        self.part_len = 0;
        pieces
    }

    async fn complete(&mut self) -> Result<PutResult, WriteError> {
        if self.upload_id.is_none() && self.part_len <= self.cfg.single_put_threshold {
            let body = PutBody::Pieces(self.take_part());
            return Ok(self.store.put_object(&self.key, body, &self.opts).await?);
        }
        if self.part_len > 0 {
            self.send_part().await?;
        }
        while !self.tasks.is_empty() {
            self.reap_one().await?;
        }
        let upload_id = self.ensure_upload_id().await?;
        sort_parts(&mut self.parts);
        Ok(self
            .store
            .complete_multipart_upload(&self.key, &upload_id, &self.parts)
            .await?)
    }

    /// Uploads what is buffered, waits for every part and completes the object. On any
    /// error the multipart upload is aborted and the error returned.
    pub async fn finish(mut self) -> Result<PutResult, WriteError> {
        if let Err(e) = self.check_failed() {
            self.abort_inner().await;
            return Err(e);
        }
        let result = self.complete().await;
        match result {
            Ok(r) => {
                self.done = true;
                tracing::debug!(key = %self.key, size = self.written, parts = self.parts.len(), "upload complete");
                Ok(r)
            }
            Err(e) => {
                let e = self.poison(e);
                self.abort_inner().await;
                Err(e)
            }
        }
    }

    /// Cancels part uploads and aborts the multipart upload (best effort).
    pub async fn abort(mut self) {
        self.abort_inner().await;
    }

    async fn abort_inner(&mut self) {
        self.done = true;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(id) = self.upload_id.take() {
            crate::store::abort_upload_persistently(&*self.store, &self.key, &id).await;
        }
    }
}

impl Drop for StreamingUpload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropping the JoinSet aborts the part tasks; the upload itself must be aborted
        // too or its parts linger (and are billed) on the server.
        if let (Some(id), Ok(rt)) = (self.upload_id.take(), tokio::runtime::Handle::try_current()) {
            let store = self.store.clone();
            let key = std::mem::take(&mut self.key);
            rt.spawn(async move {
                crate::store::abort_upload_persistently(&*store, &key, &id).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mock::MockStore;

    /// Parts are assembled from PIECE-sized buffers (what freed cache blocks can be
    /// reused for), and the uploaded object is still exactly what was written.
    #[tokio::test]
    async fn parts_are_made_of_piece_sized_buffers() {
        let store = Arc::new(MockStore::new("bkt"));
        let cfg = Arc::new(UploadConfig {
            part_size: 3 * PIECE as u64 + 100,
            max_concurrency: 2,
            single_put_threshold: 1,
        });
        let data: Vec<u8> = (0..7 * PIECE + 11).map(|i| (i % 251) as u8).collect();
        let mut up = StreamingUpload::new(store.clone(), cfg, "k".into(), PutOptions::default());
        // Writes smaller than ADOPT_MIN are copied into pieces.
        for chunk in data[..2 * PIECE + 5].chunks(100_000) {
            up.write(chunk).await.unwrap();
        }
        assert_eq!(up.pieces.len(), 2);
        assert!(up.pieces.iter().all(|p| p.len() == PIECE));
        assert_eq!(up.buf.len(), 5);
        assert_eq!(up.buf.capacity(), PIECE);
        // The part's last piece is only as large as the part needs.
        for chunk in data[2 * PIECE + 5..3 * PIECE + 100].chunks(100_000) {
            up.write(chunk).await.unwrap();
        }
        assert_eq!(up.part_len, 3 * PIECE as u64 + 100);
        assert_eq!(up.buf.capacity(), 100);
        up.write(&data[3 * PIECE + 100..]).await.unwrap();
        up.finish().await.unwrap();
        assert_eq!(store.get("k").as_deref(), Some(&data[..]));
        assert_eq!(store.count("UploadPart"), 3);
    }

    /// A large written buffer becomes a piece as it is (no copy), split at part ends.
    #[tokio::test]
    async fn large_writes_are_adopted_without_a_copy() {
        let store = Arc::new(MockStore::new("bkt"));
        let cfg = Arc::new(UploadConfig {
            part_size: 2 * PIECE as u64,
            max_concurrency: 2,
            single_put_threshold: 1,
        });
        let data: Vec<u8> = (0..3 * PIECE).map(|i| (i % 253) as u8).collect();
        let mut up = StreamingUpload::new(store.clone(), cfg, "k".into(), PutOptions::default());
        let first = Bytes::copy_from_slice(&data[..PIECE + 3]);
        up.write_bytes(first.clone()).await.unwrap();
        assert_eq!(up.pieces.len(), 1);
        assert_eq!(up.pieces[0].as_ptr(), first.as_ptr(), "adopted, not copied");
        up.write(&data[PIECE + 3..PIECE + 10]).await.unwrap(); // copied: not owned
        let rest = Bytes::copy_from_slice(&data[PIECE + 10..]);
        up.write_bytes(rest).await.unwrap();
        up.finish().await.unwrap();
        assert_eq!(store.get("k").as_deref(), Some(&data[..]));
        assert_eq!(store.count("UploadPart"), 2);
    }
}
