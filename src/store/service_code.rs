//! [`ServiceCode`]: the `<Code>` of an OSS error reply, parsed once by the client.
//!
//! The codes the filesystem and the CLI act on are variants; any other code is kept as
//! [`ServiceCode::Other`] with its text, so logs and messages show exactly what OSS
//! sent. Decisions compare variants, never strings (a typo in a string comparison
//! silently never matches). A code is added by extending the enum and both tables
//! below.

use std::fmt;

/// An OSS error code (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum ServiceCode {
    NoSuchKey,
    NoSuchBucket,
    NoSuchUpload,
    AccessDenied,
    InvalidAccessKeyId,
    SignatureDoesNotMatch,
    SecurityTokenExpired,
    InvalidSecurityToken,
    RequestTimeTooSkewed,
    /// Retried like a server error (docs/PROTOCOL.md §5, as the SDKs do).
    BadRequest,
    InvalidBucketName,
    SymlinkTargetNotExist,
    PreconditionFailed,
    FileAlreadyExists,
    EntityTooLarge,
    EntityTooSmall,
    InvalidObjectName,
    KeyTooLong,
    InvalidRange,
    PositionNotEqualToLength,
    ObjectNotAppendable,
    /// Any other code, as sent; empty when the reply had none.
    Other(String),
    /// No code (the default of an empty [`super::ServiceError`]).
    #[default]
    None,
}

impl ServiceCode {
    /// The code as OSS spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ServiceCode::NoSuchKey => "NoSuchKey",
            ServiceCode::NoSuchBucket => "NoSuchBucket",
            ServiceCode::NoSuchUpload => "NoSuchUpload",
            ServiceCode::AccessDenied => "AccessDenied",
            ServiceCode::InvalidAccessKeyId => "InvalidAccessKeyId",
            ServiceCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            ServiceCode::SecurityTokenExpired => "SecurityTokenExpired",
            ServiceCode::InvalidSecurityToken => "InvalidSecurityToken",
            ServiceCode::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            ServiceCode::BadRequest => "BadRequest",
            ServiceCode::InvalidBucketName => "InvalidBucketName",
            ServiceCode::SymlinkTargetNotExist => "SymlinkTargetNotExist",
            ServiceCode::PreconditionFailed => "PreconditionFailed",
            ServiceCode::FileAlreadyExists => "FileAlreadyExists",
            ServiceCode::EntityTooLarge => "EntityTooLarge",
            ServiceCode::EntityTooSmall => "EntityTooSmall",
            ServiceCode::InvalidObjectName => "InvalidObjectName",
            ServiceCode::KeyTooLong => "KeyTooLong",
            ServiceCode::InvalidRange => "InvalidRange",
            ServiceCode::PositionNotEqualToLength => "PositionNotEqualToLength",
            ServiceCode::ObjectNotAppendable => "ObjectNotAppendable",
            ServiceCode::Other(s) => s,
            ServiceCode::None => "",
        }
    }

    /// Parses a code as sent by OSS (unknown codes become [`ServiceCode::Other`]).
    pub fn parse(code: &str) -> ServiceCode {
        match code {
            "NoSuchKey" => ServiceCode::NoSuchKey,
            "NoSuchBucket" => ServiceCode::NoSuchBucket,
            "NoSuchUpload" => ServiceCode::NoSuchUpload,
            "AccessDenied" => ServiceCode::AccessDenied,
            "InvalidAccessKeyId" => ServiceCode::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => ServiceCode::SignatureDoesNotMatch,
            "SecurityTokenExpired" => ServiceCode::SecurityTokenExpired,
            "InvalidSecurityToken" => ServiceCode::InvalidSecurityToken,
            "RequestTimeTooSkewed" => ServiceCode::RequestTimeTooSkewed,
            "BadRequest" => ServiceCode::BadRequest,
            "InvalidBucketName" => ServiceCode::InvalidBucketName,
            "SymlinkTargetNotExist" => ServiceCode::SymlinkTargetNotExist,
            "PreconditionFailed" => ServiceCode::PreconditionFailed,
            "FileAlreadyExists" => ServiceCode::FileAlreadyExists,
            "EntityTooLarge" => ServiceCode::EntityTooLarge,
            "EntityTooSmall" => ServiceCode::EntityTooSmall,
            "InvalidObjectName" => ServiceCode::InvalidObjectName,
            "KeyTooLong" => ServiceCode::KeyTooLong,
            "InvalidRange" => ServiceCode::InvalidRange,
            "PositionNotEqualToLength" => ServiceCode::PositionNotEqualToLength,
            "ObjectNotAppendable" => ServiceCode::ObjectNotAppendable,
            "" => ServiceCode::None,
            other => ServiceCode::Other(other.to_string()),
        }
    }

    /// Whether the reply carried no code at all.
    pub fn is_none(&self) -> bool {
        *self == ServiceCode::None
    }
}

impl From<&str> for ServiceCode {
    fn from(code: &str) -> Self {
        ServiceCode::parse(code)
    }
}

impl From<String> for ServiceCode {
    fn from(code: String) -> Self {
        ServiceCode::parse(&code)
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_round_trip_and_unknown_ones_are_kept() {
        for code in [
            "NoSuchKey",
            "NoSuchBucket",
            "NoSuchUpload",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "SecurityTokenExpired",
            "InvalidSecurityToken",
            "RequestTimeTooSkewed",
            "BadRequest",
            "InvalidBucketName",
            "SymlinkTargetNotExist",
            "PreconditionFailed",
            "FileAlreadyExists",
            "EntityTooLarge",
            "EntityTooSmall",
            "InvalidObjectName",
            "KeyTooLong",
            "InvalidRange",
            "PositionNotEqualToLength",
            "ObjectNotAppendable",
        ] {
            let parsed = ServiceCode::parse(code);
            assert!(!matches!(parsed, ServiceCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
        let other = ServiceCode::parse("QuotaExceeded");
        assert_eq!(other, ServiceCode::Other("QuotaExceeded".into()));
        assert_eq!(other.to_string(), "QuotaExceeded");
        assert!(ServiceCode::parse("").is_none());
    }
}
