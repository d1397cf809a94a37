//! OSS service errors as the emulator sends them.
//!
//! Every failed request is answered with an [`OssError`]: HTTP status, OSS error code, a
//! human message and the detailed error id (`EC`, also sent as `x-oss-ec`). The server
//! renders it as `<Error><Code/><Message/><RequestId/><HostId/><EC/>…</Error>`; for HEAD
//! the body is dropped and the XML travels base64-encoded in `x-oss-err`, as OSS does.
//! Extra elements (e.g. `StringToSign` for SignatureDoesNotMatch) ride along in `extra`.
//!
//! Messages must never contain secrets: the signature check echoes the string to sign
//! (public data) but never the key or the expected signature.

use std::fmt;

/// One OSS error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OssError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub ec: &'static str,
    /// Additional `<Name>value</Name>` elements inside `<Error>`.
    pub extra: Vec<(&'static str, String)>,
    /// Additional response headers (e.g. `x-oss-next-append-position`).
    pub headers: Vec<(&'static str, String)>,
}

impl fmt::Display for OssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for OssError {}

impl OssError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        OssError {
            status,
            code,
            message: message.into(),
            ec: default_ec(code),
            extra: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_extra(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_ec(mut self, ec: &'static str) -> Self {
        self.ec = ec;
        self
    }

    pub fn no_such_key(key: &str) -> Self {
        Self::new(404, "NoSuchKey", "The specified key does not exist.").with_extra("Key", key)
    }
    pub fn no_such_bucket(bucket: &str) -> Self {
        Self::new(404, "NoSuchBucket", "The specified bucket does not exist.")
            .with_extra("BucketName", bucket)
    }
    pub fn no_such_upload(upload_id: &str) -> Self {
        Self::new(
            404,
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
        .with_extra("UploadId", upload_id)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidArgument", message)
    }
    pub fn malformed_xml(message: impl Into<String>) -> Self {
        Self::new(400, "MalformedXML", message)
    }
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "AccessDenied", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }
    pub fn precondition_failed() -> Self {
        Self::new(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
        )
    }
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            501,
            "NotImplemented",
            format!("{what} is not implemented by the emulator."),
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )
    }
}

impl From<std::io::Error> for OssError {
    fn from(e: std::io::Error) -> Self {
        tracing::error!(error = %e, "emulator storage I/O error");
        OssError::internal(format!("storage I/O error: {e}"))
    }
}

/// Detailed error ids (EC) for the codes the emulator sends. Clients only need them to be
/// present and stable; SecurityTokenExpired's id is the documented one.
fn default_ec(code: &str) -> &'static str {
    match code {
        "SecurityTokenExpired" => "0002-00000007",
        "SignatureDoesNotMatch" => "0002-00000040",
        "InvalidAccessKeyId" => "0002-00000005",
        "InvalidSecurityToken" => "0002-00000008",
        "RequestTimeTooSkewed" => "0002-00000017",
        "AccessDenied" => "0003-00000001",
        "NoSuchKey" => "0026-00000001",
        "NoSuchBucket" => "0015-00000101",
        "NoSuchUpload" => "0042-00000002",
        "SymlinkTargetNotExist" => "0026-00000012",
        "InvalidRange" => "0003-00000009",
        "PreconditionFailed" => "0026-00000009",
        "FileAlreadyExists" => "0026-00000002",
        "PositionNotEqualToLength" => "0026-00000016",
        "ObjectNotAppendable" => "0026-00000017",
        "InvalidDigest" => "0016-00000901",
        "EntityTooSmall" => "0042-00000010",
        "EntityTooLarge" => "0016-00000904",
        "InvalidPart" => "0042-00000003",
        "InvalidPartOrder" => "0042-00000004",
        "InvalidObjectName" => "0016-00000002",
        "MalformedXML" => "0016-00000601",
        "InvalidArgument" => "0017-00000101",
        "ServiceUnavailable" => "0003-00000503",
        "MethodNotAllowed" => "0016-00000405",
        "NotImplemented" => "0016-00000501",
        _ => "0003-00000500",
    }
}
