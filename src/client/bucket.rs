//! Bucket- and service-level requests: GetBucketInfo, DescribeRegions.
//!
//! DescribeRegions is a service-level request: it goes to the bare endpoint (no bucket in
//! the host or path) and is signed with canonical URI `/`. Its `<Region>` values carry the
//! `oss-` prefix, which we strip. [`OssClient::list_regions_or_builtin`] falls back to the
//! built-in table of [`crate::endpoint`] when the live call fails (no credentials, no
//! network, an emulator without the API), and says which source was used.

use std::time::SystemTime;

use reqwest::Method;

use super::OssClient;
use super::request::{OssRequest, Target};
use super::xml::{BucketInfoResult, RegionInfoList};
use crate::endpoint::RegionRow;
use crate::store::StoreResult;

/// What GetBucketInfo says about the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    /// Bare region id (`cn-hangzhou`), from `<Region>` or `<Location>` without `oss-`.
    pub region: String,
    /// `<Location>` as sent (`oss-cn-hangzhou`).
    pub location: String,
    pub creation_date: Option<SystemTime>,
    pub storage_class: Option<String>,
    pub extranet_endpoint: Option<String>,
    pub intranet_endpoint: Option<String>,
}

/// Where a region listing came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSource {
    /// A live DescribeRegions answer.
    Live,
    /// The built-in table; `reason` says why the live call was not used.
    Builtin { reason: String },
}

impl OssClient {
    /// GetBucketInfo (`GET /?bucketInfo`).
    pub async fn get_bucket_info(&self) -> StoreResult<BucketInfo> {
        let req = OssRequest::new("GetBucketInfo", Method::GET, Target::Bucket).bare("bucketInfo");
        let (_, r) = self.execute_xml::<BucketInfoResult>(&req).await?;
        let b = r.bucket;
        let region = b
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| b.location.clone());
        Ok(BucketInfo {
            name: b.name,
            region: region.strip_prefix("oss-").unwrap_or(&region).to_string(),
            location: b.location,
            creation_date: b
                .creation_date
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
                .map(Into::into),
            storage_class: b.storage_class,
            extranet_endpoint: b.extranet_endpoint,
            intranet_endpoint: b.intranet_endpoint,
        })
    }

    /// DescribeRegions (`GET /?regions` on the bare endpoint); `region` = Some asks about
    /// one region (`cn-hangzhou` or `oss-cn-hangzhou`).
    pub async fn describe_regions(&self, region: Option<&str>) -> StoreResult<Vec<RegionRow>> {
        let mut req = OssRequest::new("DescribeRegions", Method::GET, Target::Service);
        req = match region {
            Some(r) => {
                let bare = r.strip_prefix("oss-").unwrap_or(r);
                req.param("regions", format!("oss-{bare}"))
            }
            None => req.bare("regions"),
        };
        let (_, list) = self.execute_xml::<RegionInfoList>(&req).await?;
        Ok(list
            .region_info
            .into_iter()
            .filter(|r| !r.region.is_empty())
            .map(|r| {
                let id = r
                    .region
                    .strip_prefix("oss-")
                    .unwrap_or(&r.region)
                    .to_string();
                let mut row = RegionRow::for_region(&id);
                let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
                row.public = dash(r.internet_endpoint);
                row.internal = dash(r.internal_endpoint);
                row.accelerate = dash(r.accelerate_endpoint);
                row
            })
            .collect())
    }

    /// Live DescribeRegions, or the built-in table when that fails or is empty.
    pub async fn list_regions_or_builtin(&self) -> (Vec<RegionRow>, RegionSource) {
        match self.describe_regions(None).await {
            Ok(rows) if !rows.is_empty() => (rows, RegionSource::Live),
            Ok(_) => (
                crate::endpoint::region_listing(),
                RegionSource::Builtin {
                    reason: "DescribeRegions returned no regions".into(),
                },
            ),
            Err(e) => (
                crate::endpoint::region_listing(),
                RegionSource::Builtin {
                    reason: e.to_string(),
                },
            ),
        }
    }
}
