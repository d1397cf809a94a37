//! Service- and bucket-level operations: DescribeRegions, ListBuckets, GetBucketInfo,
//! GetBucketLocation, DeleteMultipleObjects.

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use md5::{Digest as _, Md5};
use serde::Deserialize;

use super::blocking;
use super::object::content_md5_header;
use crate::body::xml_response;
use crate::body::{RespBody, read_small_body};
use crate::error::OssError;
use crate::request::Ctx;
use crate::state::State;
use crate::storage::Bucket;
use crate::xml::{XmlWriter, iso8601_millis, url_encode};
use ossmount::endpoint::regions::{
    ACCELERATE_ENDPOINT, ACCELERATE_OVERSEAS_ENDPOINT, find_region, internal_endpoint,
    public_endpoint,
};

fn accelerate_endpoint(region: &str) -> &'static str {
    match find_region(region) {
        Some(r) if !r.mainland_china => ACCELERATE_OVERSEAS_ENDPOINT,
        _ => ACCELERATE_ENDPOINT,
    }
}

pub fn describe_regions(state: &State, ctx: &Ctx) -> Result<Response<RespBody>, OssError> {
    let mut regions: Vec<&str> = ossmount::endpoint::regions::REGIONS
        .iter()
        .map(|r| r.id)
        .collect();
    if !regions.contains(&state.region.as_str()) {
        regions.push(&state.region);
    }
    let wanted = ctx.query.get("regions").filter(|s| !s.is_empty());
    if let Some(w) = wanted {
        let id = w.strip_prefix("oss-").unwrap_or(w);
        regions.retain(|r| *r == id);
        if regions.is_empty() {
            return Err(OssError::new(
                404,
                "NoSuchRegion",
                format!("The region {w} does not exist."),
            ));
        }
    }
    let mut x = XmlWriter::new("RegionInfoList");
    for r in regions {
        x.open("RegionInfo")
            .elem("Region", format!("oss-{r}"))
            .elem("InternetEndpoint", public_endpoint(r))
            .elem("InternalEndpoint", internal_endpoint(r))
            .elem("AccelerateEndpoint", accelerate_endpoint(r))
            .close("RegionInfo");
    }
    xml_response(200, x.finish("RegionInfoList"))
}

pub fn list_buckets(state: &State) -> Result<Response<RespBody>, OssError> {
    let mut x = XmlWriter::new("ListAllMyBucketsResult");
    x.open("Owner")
        .elem("ID", "1000000000000000")
        .elem("DisplayName", "1000000000000000")
        .close("Owner")
        .open("Buckets");
    for b in state.storage.buckets() {
        x.open("Bucket")
            .elem("CreationDate", iso8601_millis(b.created_ms))
            .elem(
                "ExtranetEndpoint",
                format!("oss-{}.aliyuncs.com", state.region),
            )
            .elem(
                "IntranetEndpoint",
                format!("oss-{}-internal.aliyuncs.com", state.region),
            )
            .elem("Location", format!("oss-{}", state.region))
            .elem("Name", &b.name)
            .elem("Region", &state.region)
            .elem("StorageClass", "Standard")
            .close("Bucket");
    }
    x.close("Buckets");
    xml_response(200, x.finish("ListAllMyBucketsResult"))
}

pub fn bucket_info(state: &State, bucket: &Bucket) -> Result<Response<RespBody>, OssError> {
    let r = &state.region;
    let mut x = XmlWriter::new("BucketInfo");
    x.open("Bucket")
        .elem("AccessMonitor", "Disabled")
        .elem("CreationDate", iso8601_millis(bucket.created_ms))
        .elem("ExtranetEndpoint", format!("oss-{r}.aliyuncs.com"))
        .elem("IntranetEndpoint", format!("oss-{r}-internal.aliyuncs.com"))
        .elem("Location", format!("oss-{r}"))
        .elem("StorageClass", "Standard")
        .elem("TransferAcceleration", "Disabled")
        .elem("CrossRegionReplication", "Disabled")
        .elem("Name", &bucket.name)
        .elem("ResourceGroupId", "rg-emulator")
        .open("Owner")
        .elem("DisplayName", "1000000000000000")
        .elem("ID", "1000000000000000")
        .close("Owner")
        .open("AccessControlList")
        .elem("Grant", "private")
        .close("AccessControlList")
        .elem("Comment", "")
        .open("BucketPolicy")
        .elem("LogBucket", "")
        .elem("LogPrefix", "")
        .close("BucketPolicy")
        .close("Bucket");
    xml_response(200, x.finish("BucketInfo"))
}

pub fn bucket_location(state: &State) -> Result<Response<RespBody>, OssError> {
    let mut x = XmlWriter::new("LocationConstraint");
    // The root element carries the text; XmlWriter always opens the root, so write raw.
    x.elem_text(&format!("oss-{}", state.region));
    xml_response(200, x.finish("LocationConstraint"))
}

#[derive(Deserialize)]
struct DeleteBody {
    #[serde(rename = "Quiet", default)]
    quiet: Option<String>,
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteObject>,
}

#[derive(Deserialize)]
struct DeleteObject {
    #[serde(rename = "Key")]
    key: String,
}

pub async fn delete_multiple(
    state: &Arc<State>,
    ctx: &Ctx,
    bucket: &Arc<Bucket>,
    body: Incoming,
) -> Result<Response<RespBody>, OssError> {
    let want = content_md5_header(ctx)?.ok_or_else(|| {
        OssError::new(
            400,
            "MissingArgument",
            "Missing Some Required Arguments: Content-MD5.",
        )
    })?;
    let xml = read_small_body(body, &state.stats, 4 << 20).await?;
    if Md5::digest(&xml).as_slice() != want {
        return Err(OssError::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    let text =
        std::str::from_utf8(&xml).map_err(|_| OssError::malformed_xml("body is not UTF-8"))?;
    let parsed: DeleteBody = quick_xml::de::from_str(text).map_err(|e| {
        OssError::malformed_xml(format!("The XML you provided was not well-formed: {e}"))
    })?;
    if parsed.objects.is_empty() || parsed.objects.len() > 1000 {
        return Err(OssError::malformed_xml(
            "Delete must name between 1 and 1000 objects.",
        ));
    }
    let quiet = parsed
        .quiet
        .as_deref()
        .is_some_and(|q| q.trim().eq_ignore_ascii_case("true"));
    let keys: Vec<String> = parsed.objects.into_iter().map(|o| o.key).collect();
    let b = bucket.clone();
    let deleted = blocking(move || {
        for k in &keys {
            b.delete(k)?;
        }
        Ok(keys)
    })
    .await?;
    let url = ctx.query.get("encoding-type") == Some("url");
    let mut x = XmlWriter::new("DeleteResult");
    if url {
        x.elem("EncodingType", "url");
    }
    if !quiet {
        for k in &deleted {
            x.open("Deleted")
                .elem("Key", if url { url_encode(k) } else { k.clone() })
                .close("Deleted");
        }
    }
    xml_response(200, x.finish("DeleteResult"))
}
