//! Multipart uploads on disk: `uploads/<id>/upload.json` plus one JSON record and one
//! data file per part. A re-uploaded part gets a new data file; its record is replaced
//! atomically and the old file removed, so a concurrent Complete never mixes them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Bucket, StagedFile, lock, quoted_md5_etag, unique_suffix, write_json_atomic};
use crate::error::OssError;
use crate::xml::now_millis;

/// A multipart upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadMeta {
    pub upload_id: String,
    pub key: String,
    pub initiated_ms: u64,
    pub content_type: String,
    #[serde(default)]
    pub user_meta: BTreeMap<String, String>,
}

/// One uploaded part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartRecord {
    pub part_number: u32,
    pub data_file: String,
    pub size: u64,
    pub etag: String,
    pub crc64: u64,
    pub last_modified_ms: u64,
}

impl Bucket {
    /// Starts a multipart upload. Blocking.
    pub fn create_upload(
        &self,
        key: &str,
        content_type: String,
        user_meta: BTreeMap<String, String>,
    ) -> io::Result<Arc<UploadMeta>> {
        let upload_id = {
            let mut bytes = [0u8; 16];
            rand::fill(&mut bytes);
            hex::encode_upper(bytes)
        };
        let meta = Arc::new(UploadMeta {
            upload_id: upload_id.clone(),
            key: key.to_string(),
            initiated_ms: now_millis(),
            content_type,
            user_meta,
        });
        let dir = self.uploads_dir.join(&upload_id);
        fs::create_dir_all(&dir)?;
        write_json_atomic(&self.tmp_dir, &dir.join("upload.json"), &*meta)?;
        lock(&self.uploads).insert(upload_id, meta.clone());
        Ok(meta)
    }

    pub fn upload(&self, upload_id: &str) -> Option<Arc<UploadMeta>> {
        lock(&self.uploads).get(upload_id).cloned()
    }

    /// All uploads, ordered by key then initiation time.
    pub fn uploads(&self) -> Vec<Arc<UploadMeta>> {
        let mut v: Vec<_> = lock(&self.uploads).values().cloned().collect();
        v.sort_by(|a, b| {
            (a.key.as_str(), a.initiated_ms, a.upload_id.as_str()).cmp(&(
                b.key.as_str(),
                b.initiated_ms,
                b.upload_id.as_str(),
            ))
        });
        v
    }

    /// Stores (or replaces) part `n` of an upload. Blocking.
    pub fn put_part(
        &self,
        upload_id: &str,
        part_number: u32,
        mut staged: StagedFile,
    ) -> Result<PartRecord, OssError> {
        let dir = self.uploads_dir.join(upload_id);
        if self.upload(upload_id).is_none() {
            return Err(OssError::no_such_upload(upload_id));
        }
        let data_file = format!("part-{part_number:05}-{}.data", unique_suffix());
        let from = staged.disarm();
        fs::rename(&from, dir.join(&data_file)).inspect_err(|_| {
            let _ = fs::remove_file(&from);
        })?;
        let rec = PartRecord {
            part_number,
            data_file,
            size: staged.size,
            etag: quoted_md5_etag(&staged.md5),
            crc64: staged.crc64,
            last_modified_ms: now_millis(),
        };
        let json = dir.join(format!("part-{part_number:05}.json"));
        let old = fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<PartRecord>(&b).ok());
        write_json_atomic(&self.tmp_dir, &json, &rec)?;
        if let Some(old) = old {
            let _ = fs::remove_file(dir.join(old.data_file));
        }
        Ok(rec)
    }

    /// The uploaded parts, by part number. Blocking.
    pub fn parts(&self, upload_id: &str) -> io::Result<Vec<PartRecord>> {
        let dir = self.uploads_dir.join(upload_id);
        let mut parts = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("part-")
                && name.ends_with(".json")
                && let Some(p) = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<PartRecord>(&b).ok())
            {
                parts.push(p);
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Forgets an upload and deletes its parts. Returns whether it existed. Blocking.
    pub fn remove_upload(&self, upload_id: &str) -> io::Result<bool> {
        let existed = lock(&self.uploads).remove(upload_id).is_some();
        if existed {
            let dir = self.uploads_dir.join(upload_id);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(existed)
    }
}
