//! Data files not yet committed: everything an object or part holds lives in `tmp/` until a
//! commit renames it into `objects/` or an upload directory (see the parent module's
//! atomic-replacement rule).
//!
//! - [`Stager`] receives a request body into `tmp/`, hashing MD5 and CRC-64 on the way.
//! - [`Bucket::stage_copy`] fills one by copying a range of existing content (CopyObject,
//!   UploadPartCopy, import).
//! - [`StagedFile`] is the result: its size and digests, and the file, which deletes itself
//!   on drop unless a commit disarmed it — so a failed or abandoned request leaves nothing
//!   behind in `tmp/`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use md5::{Digest as _, Md5};

use super::{Bucket, Content, crc64_digest, unique_suffix};
use ossmount::crc64::Crc64Hasher;

/// A received body in `tmp/`, with its size and digests. Deleted on drop unless committed.
#[derive(Debug)]
pub struct StagedFile {
    path: PathBuf,
    pub size: u64,
    pub md5: [u8; 16],
    pub crc64: u64,
    armed: bool,
}

impl StagedFile {
    pub(super) fn disarm(&mut self) -> PathBuf {
        self.armed = false;
        self.path.clone()
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Streams a body into a temp file. Hashing (MD5, CRC-64) and writing run on one
/// blocking thread fed through a small channel, so receiving the next bytes overlaps with
/// hashing and writing the previous ones, and no async worker spends CPU on digests.
pub struct Stager {
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    writer: Option<tokio::task::JoinHandle<io::Result<(Md5, Crc64Hasher)>>>,
    path: PathBuf,
    size: u64,
}

/// The writer thread: hash and append every chunk until the channel closes.
fn write_chunks(
    mut file: io::BufWriter<fs::File>,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> io::Result<(Md5, Crc64Hasher)> {
    let mut md5 = Md5::new();
    let mut crc = crc64_digest();
    while let Some(chunk) = rx.blocking_recv() {
        md5.update(&chunk);
        crc.update(&chunk);
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok((md5, crc))
}

impl Stager {
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.size += data.len() as u64;
        let sent = match &self.tx {
            Some(tx) => tx.send(data).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped early: report its error.
        self.tx = None;
        match self.writer.take() {
            Some(w) => match w.await.map_err(io::Error::other)? {
                Err(e) => Err(e),
                Ok(_) => Err(io::Error::other("body writer stopped")),
            },
            None => Err(io::Error::other("stager already finished")),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn finish(mut self) -> io::Result<StagedFile> {
        self.tx = None;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("stager already finished"))?;
        let (md5, crc) = writer.await.map_err(io::Error::other)??;
        Ok(StagedFile {
            path: std::mem::take(&mut self.path),
            size: self.size,
            md5: md5.finalize().into(),
            crc64: crc.finish(),
            armed: true,
        })
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Bucket {
    /// A new temp file to stream a request body into.
    pub async fn stager(&self) -> io::Result<Stager> {
        let path = self.tmp_dir.join(format!("body-{}", unique_suffix()));
        let file = tokio::fs::File::create(&path).await?.into_std().await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let writer = tokio::task::spawn_blocking(move || {
            write_chunks(io::BufWriter::with_capacity(1 << 20, file), rx)
        });
        Ok(Stager {
            tx: Some(tx),
            writer: Some(writer),
            path,
            size: 0,
        })
    }

    /// Copies `len` bytes at `offset` of `src` into a staged file. Blocking.
    pub fn stage_copy(&self, src: &Content, offset: u64, len: u64) -> io::Result<StagedFile> {
        let path = self.tmp_dir.join(format!("copy-{}", unique_suffix()));
        let mut staged = StagedFile {
            path,
            size: 0,
            md5: [0; 16],
            crc64: 0,
            armed: true,
        };
        let mut out = io::BufWriter::with_capacity(1 << 20, fs::File::create(&staged.path)?);
        let mut md5 = Md5::new();
        let mut crc = crc64_digest();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..n], offset + done)?;
            md5.update(&buf[..n]);
            crc.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            done += n as u64;
        }
        out.flush()?;
        staged.size = done;
        staged.md5 = md5.finalize().into();
        staged.crc64 = crc.finish();
        Ok(staged)
    }
}
