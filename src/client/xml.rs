//! XML bodies of OSS requests and replies.
//!
//! Replies are parsed with quick-xml's serde support into the structs below; unknown
//! elements are ignored and missing optional ones default, so new server fields do not
//! break us. Malformed XML, an HTML error page or a truncated body is a parse error that
//! callers turn into [`crate::store::StoreError::InvalidResponse`]; nothing here panics on
//! server input.
//!
//! Request bodies are written by hand with [`quick_xml::escape::escape`]: they are tiny
//! and their exact form matters for Content-MD5.
//!
//! With `encoding-type=url` OSS percent-encodes keys and prefixes in listings; we decode
//! them like the Go SDK does, form-style (`%XX` and `+` → space), see [`form_decode`].

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Parses an XML reply body.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|_| "reply body is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("empty reply body".into());
    }
    quick_xml::de::from_str(text).map_err(|e| format!("malformed XML reply: {e}"))
}

/// Decodes a form-encoded value (`+` → space, `%XX` → byte) into UTF-8.
pub(crate) fn form_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// Decodes when `encoding_type` is `url`, else returns the value unchanged.
pub(crate) fn maybe_decode(value: String, encoding_type: Option<&str>) -> Result<String, String> {
    if encoding_type.is_some_and(|e| e.eq_ignore_ascii_case("url")) {
        form_decode(&value)
    } else {
        Ok(value)
    }
}

fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ErrorXml {
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub host_id: String,
    #[serde(rename = "EC")]
    pub ec: String,
    /// Sent with RequestTimeTooSkewed (ISO 8601).
    pub server_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InitiateMultipartUploadResult {
    pub upload_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CompleteMultipartUploadResult {
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CopyResult {
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ListBucketResult {
    pub encoding_type: Option<String>,
    pub is_truncated: bool,
    pub next_continuation_token: Option<String>,
    pub contents: Vec<ContentsXml>,
    pub common_prefixes: Vec<CommonPrefixXml>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ContentsXml {
    pub key: String,
    pub last_modified: Option<String>,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(rename = "Type")]
    pub object_type: Option<String>,
    pub size: u64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CommonPrefixXml {
    pub prefix: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ListMultipartUploadsResult {
    pub encoding_type: Option<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub upload: Vec<UploadXml>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UploadXml {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct DeleteResult {
    pub encoding_type: Option<String>,
    pub deleted: Vec<DeletedXml>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct DeletedXml {
    pub key: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct BucketInfoResult {
    pub bucket: BucketXml,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct BucketXml {
    pub name: String,
    pub location: String,
    pub region: Option<String>,
    pub creation_date: Option<String>,
    pub storage_class: Option<String>,
    pub extranet_endpoint: Option<String>,
    pub intranet_endpoint: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RegionInfoList {
    pub region_info: Vec<RegionInfoXml>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RegionInfoXml {
    pub region: String,
    pub internet_endpoint: String,
    pub internal_endpoint: String,
    pub accelerate_endpoint: String,
}

/// `<CompleteMultipartUpload>` body; `parts` must be sorted by part number.
pub(crate) fn complete_multipart_body(parts: &[(u32, &str)]) -> String {
    let mut s = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        s.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            escape(etag)
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

/// `<Delete>` body for DeleteMultipleObjects (not quiet: the reply lists what was deleted).
pub(crate) fn delete_body(keys: &[String]) -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>false</Quiet>");
    for k in keys {
        s.push_str(&format!("<Object><Key>{}</Key></Object>", escape(k)));
    }
    s.push_str("</Delete>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_reply() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The specified key does not exist.</Message>
  <RequestId>5C3D9175B6FC201293AD****</RequestId>
  <HostId>bkt.oss-cn-hangzhou.aliyuncs.com</HostId>
  <Key>a/b</Key>
  <EC>0026-00000001</EC>
  <RecommendDoc>https://api.aliyun.com/troubleshoot?q=0026-00000001</RecommendDoc>
</Error>"#;
        let e: ErrorXml = parse(body).unwrap();
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.ec, "0026-00000001");
        assert_eq!(e.request_id, "5C3D9175B6FC201293AD****");
        assert_eq!(e.host_id, "bkt.oss-cn-hangzhou.aliyuncs.com");
    }

    #[test]
    fn malformed_and_html_and_empty_are_errors() {
        assert!(parse::<ErrorXml>(b"<Error><Code>X</Cod></Error>").is_err());
        assert!(parse::<ListBucketResult>(b"<Error><Code>X").is_err());
        assert!(
            parse::<InitiateMultipartUploadResult>(b"<html><body>502 Bad Gateway</body></html>")
                .is_err()
        );
        assert!(parse::<ErrorXml>(b"").is_err());
        assert!(parse::<ErrorXml>(&[0xff, 0xfe, b'<']).is_err());
        // Wrong types do not panic either.
        assert!(
            parse::<ListBucketResult>(
                b"<ListBucketResult><Contents><Size>huge</Size></Contents></ListBucketResult>"
            )
            .is_err()
        );
    }

    #[test]
    fn huge_reply_parses_without_panic() {
        let mut body = String::from("<ListBucketResult><IsTruncated>false</IsTruncated>");
        for i in 0..5000 {
            body.push_str(&format!(
                "<Contents><Key>k{i}</Key><ETag>\"e\"</ETag><Size>{i}</Size><Type>Normal</Type></Contents>"
            ));
        }
        body.push_str("</ListBucketResult>");
        let r: ListBucketResult = parse(body.as_bytes()).unwrap();
        assert_eq!(r.contents.len(), 5000);
        assert_eq!(r.contents[4999].size, 4999);
    }

    #[test]
    fn parses_listing_with_url_encoding() {
        let body = br#"<ListBucketResult>
  <Name>b</Name><Prefix>dir%2F</Prefix><MaxKeys>2</MaxKeys><Delimiter>%2F</Delimiter>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok%2B1</NextContinuationToken><KeyCount>3</KeyCount>
  <Contents><Key>dir%2Fa+b%2Bc%E4%B8%AD</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>
    <ETag>"5B3C1A2E053D763E1B002CC607C5A0FE"</ETag><Type>Normal</Type><Size>344606</Size>
    <StorageClass>Standard</StorageClass><Owner><ID>1</ID><DisplayName>1</DisplayName></Owner></Contents>
  <Contents><Key>dir%2Fz</Key><ETag>"x"</ETag><Size>0</Size></Contents>
  <CommonPrefixes><Prefix>dir%2Fsub%2F</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let r: ListBucketResult = parse(body).unwrap();
        assert!(r.is_truncated);
        assert_eq!(r.contents.len(), 2);
        let enc = r.encoding_type.as_deref();
        assert_eq!(
            maybe_decode(r.contents[0].key.clone(), enc).unwrap(),
            "dir/a b+c中"
        );
        assert_eq!(r.contents[0].etag, "\"5B3C1A2E053D763E1B002CC607C5A0FE\"");
        assert_eq!(
            maybe_decode(r.common_prefixes[0].prefix.clone(), enc).unwrap(),
            "dir/sub/"
        );
        assert_eq!(
            maybe_decode(r.next_continuation_token.unwrap(), enc).unwrap(),
            "tok+1"
        );
    }

    #[test]
    fn form_decode_rejects_bad_escapes() {
        assert!(form_decode("a%zz").is_err());
        assert!(form_decode("a%").is_err());
        assert!(form_decode("%ff").is_err());
        assert_eq!(form_decode("a%20b+c").unwrap(), "a b c");
    }

    #[test]
    fn request_bodies_escape_keys() {
        let b = delete_body(&["a&b".to_string(), "<x>\"'".to_string()]);
        assert!(b.contains("<Key>a&amp;b</Key>"));
        assert!(b.contains("<Key>&lt;x&gt;&quot;&apos;</Key>"));
        let c = complete_multipart_body(&[(1, "\"e1\""), (2, "\"e2\"")]);
        assert_eq!(
            c,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }

    #[test]
    fn parses_bucket_info_and_regions() {
        let b: BucketInfoResult = parse(br#"<BucketInfo><Bucket><CreationDate>2013-07-31T10:56:21.000Z</CreationDate>
<ExtranetEndpoint>oss-cn-hangzhou.aliyuncs.com</ExtranetEndpoint><IntranetEndpoint>oss-cn-hangzhou-internal.aliyuncs.com</IntranetEndpoint>
<Location>oss-cn-hangzhou</Location><StorageClass>Standard</StorageClass><Name>oss-example</Name><Owner><ID>1</ID></Owner></Bucket></BucketInfo>"#).unwrap();
        assert_eq!(b.bucket.name, "oss-example");
        assert_eq!(b.bucket.location, "oss-cn-hangzhou");
        let r: RegionInfoList = parse(br#"<RegionInfoList><RegionInfo><Region>oss-cn-hangzhou</Region><InternetEndpoint>oss-cn-hangzhou.aliyuncs.com</InternetEndpoint><InternalEndpoint>oss-cn-hangzhou-internal.aliyuncs.com</InternalEndpoint><AccelerateEndpoint>oss-accelerate.aliyuncs.com</AccelerateEndpoint></RegionInfo><RegionInfo><Region>oss-us-west-1</Region></RegionInfo></RegionInfoList>"#).unwrap();
        assert_eq!(r.region_info.len(), 2);
        assert_eq!(
            r.region_info[0].internal_endpoint,
            "oss-cn-hangzhou-internal.aliyuncs.com"
        );
    }
}
