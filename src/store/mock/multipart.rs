//! Multipart uploads of the mock: parts are kept per upload id and become an object
//! only at completion, which checks part order, part ETags and the 100 KiB minimum of
//! every part but the last (`EntityTooSmall`), as OSS does.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::SystemTime;

use bytes::BytesMut;

use super::{MIN_PART_SIZE, MockStore, Upload, check_key, crc64_of, lock, md5_etag};
use crate::store::{
    MultipartUploadInfo, ObjectType, PartInfo, PutBody, PutOptions, PutResult, StoreError,
    StoreResult,
};

impl MockStore {
    pub(super) async fn mpu_initiate(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.begin("InitiateMultipartUpload").await?;
        check_key(key)?;
        let mut st = lock(&self.state);
        let id = format!("upload-{:016X}", st.next_id());
        st.uploads.insert(
            id.clone(),
            Upload {
                key: key.to_string(),
                opts: opts.clone(),
                initiated: SystemTime::now(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    pub(super) async fn mpu_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PutBody,
    ) -> StoreResult<PartInfo> {
        self.begin("UploadPart").await?;
        if !(1..=10_000).contains(&part_number) {
            return Err(StoreError::from_service(
                400,
                "InvalidArgument",
                "Part number must be 1..10000",
            ));
        }
        let data = body.to_bytes().await?;
        let etag = md5_etag(&data);
        let mut st = lock(&self.state);
        let up = st
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(Self::no_such_upload)?;
        let info = PartInfo {
            part_number,
            etag: etag.clone(),
            size: data.len() as u64,
            crc64: Some(crc64_of(&data)),
        };
        up.parts.insert(part_number, (data, etag));
        Ok(info)
    }

    pub(super) async fn mpu_complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> StoreResult<PutResult> {
        self.begin("CompleteMultipartUpload").await?;
        let mut st = lock(&self.state);
        let up = st
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(Self::no_such_upload)?;
        if parts.is_empty() {
            return Err(StoreError::from_service(400, "MalformedXML", "no parts"));
        }
        let mut data = BytesMut::new();
        let mut last = 0u32;
        for (i, p) in parts.iter().enumerate() {
            if p.part_number <= last {
                return Err(StoreError::from_service(
                    400,
                    "InvalidPartOrder",
                    "The list of parts was not in ascending order",
                ));
            }
            last = p.part_number;
            let Some((bytes, etag)) = up.parts.get(&p.part_number) else {
                return Err(StoreError::from_service(
                    400,
                    "InvalidPart",
                    "part not uploaded",
                ));
            };
            if *etag != p.etag {
                return Err(StoreError::from_service(
                    400,
                    "InvalidPart",
                    "part ETag mismatch",
                ));
            }
            if i + 1 < parts.len() && (bytes.len() as u64) < MIN_PART_SIZE {
                return Err(StoreError::from_service(
                    400,
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size",
                ));
            }
            data.extend_from_slice(bytes);
        }
        let data = data.freeze();
        let etag = format!("\"{}-{}\"", md5_etag(&data).trim_matches('"'), parts.len());
        let opts = up.opts.clone();
        let res = Self::store_object(&mut st, key, data, etag, ObjectType::Multipart, &opts)?;
        st.uploads.remove(upload_id);
        Ok(res)
    }

    pub(super) async fn mpu_abort(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.begin("AbortMultipartUpload").await?;
        let mut st = lock(&self.state);
        match st.uploads.get(upload_id) {
            Some(u) if u.key == key => {
                st.uploads.remove(upload_id);
                Ok(())
            }
            _ => Err(Self::no_such_upload()),
        }
    }

    pub(super) async fn mpu_list(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        self.begin("ListMultipartUploads").await?;
        let st = lock(&self.state);
        let mut out: Vec<MultipartUploadInfo> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| MultipartUploadInfo {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        out.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(out)
    }

    pub(super) async fn mpu_upload_part_copy(
        &self,
        src_key: &str,
        dst_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> StoreResult<PartInfo> {
        self.begin("UploadPartCopy").await?;
        let mut st = lock(&self.state);
        let (src, _) = Self::resolve(&st, src_key)?;
        let r = Self::clamp_range(src.data.len() as u64, range)?;
        let data = src.data.slice(r.start as usize..r.end as usize);
        let etag = md5_etag(&data);
        let up = st
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.key == dst_key)
            .ok_or_else(Self::no_such_upload)?;
        let info = PartInfo {
            part_number,
            etag: etag.clone(),
            size: data.len() as u64,
            crc64: Some(crc64_of(&data)),
        };
        up.parts.insert(part_number, (data, etag));
        Ok(info)
    }
}
