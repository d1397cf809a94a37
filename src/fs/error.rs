//! `FsError`: the one error type of the filesystem layer, and its single mapping to errno.
//!
//! Every filesystem operation returns `Result<_, FsError>`; the FUSE adapter replies with
//! [`FsError::errno`]. Keeping the mapping in one exhaustive `match` means a new variant
//! cannot be added without deciding its errno, and the same store failure always gives the
//! same errno whatever operation hit it.
//!
//! Store errors are classified by [`StoreError`] status/code:
//! - 404 / `NoSuchKey` → `ENOENT`; 412 / `PreconditionFailed` → `ESTALE` (the object
//!   changed under an open handle);
//! - 403 (`AccessDenied`, bad keys, expired tokens) and missing credentials → `EACCES`;
//! - 409 `FileAlreadyExists` → `EEXIST`; `EntityTooLarge` → `EFBIG`;
//!   `InvalidObjectName` → `EINVAL`;
//! - network failures, timeouts, 5xx, CRC mismatches, unparsable replies → `EIO` (the
//!   client already retried; the log line carries the OSS request id).

use crate::store::StoreError;

/// Errors of filesystem operations.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("{key} changed on OSS while it was open")]
    Stale { key: String },
    #[error("read-only mount")]
    ReadOnly,
    #[error("name too long: {0}")]
    NameTooLong(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("bad file handle")]
    BadHandle,
    #[error("file too large: {0}")]
    TooLarge(String),
    /// A store request failed; `op` is what the filesystem was doing.
    #[error("{op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("local I/O ({what}): {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An upload or download failed for a reason that maps to plain EIO.
    #[error("{0}")]
    DataPath(String),
}

impl FsError {
    pub fn store(op: &'static str, key: &str, source: StoreError) -> FsError {
        FsError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }

    pub fn io(what: &'static str, source: std::io::Error) -> FsError {
        FsError::Io { what, source }
    }

    /// The errno reported to the kernel. The one place where errors become numbers.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Stale { .. } => libc::ESTALE,
            FsError::ReadOnly => libc::EROFS,
            FsError::NameTooLong(_) => libc::ENAMETOOLONG,
            FsError::InvalidName(_) => libc::EINVAL,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::NotSupported(_) => libc::ENOTSUP,
            FsError::InvalidArgument(_) => libc::EINVAL,
            FsError::BadHandle => libc::EBADF,
            FsError::TooLarge(_) => libc::EFBIG,
            FsError::Store { source, .. } => store_errno(source),
            FsError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::DataPath(_) => libc::EIO,
        }
    }

    /// Whether this is an expected outcome (not worth a warning in the log).
    pub fn is_expected(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::Exists
                | FsError::NotEmpty
                | FsError::NotDir
                | FsError::IsDir
                | FsError::ReadOnly
                | FsError::NameTooLong(_)
        )
    }
}

/// errno for a store failure (see the module docs for the table).
pub fn store_errno(e: &StoreError) -> i32 {
    match e {
        StoreError::Service(s) => {
            if e.is_not_found() || s.status == 404 {
                return libc::ENOENT;
            }
            if e.is_precondition_failed() {
                return libc::ESTALE;
            }
            match s.code.as_str() {
                "FileAlreadyExists" => libc::EEXIST,
                "EntityTooLarge" => libc::EFBIG,
                "InvalidObjectName" | "KeyTooLong" => libc::EINVAL,
                _ => match s.status {
                    401 | 403 => libc::EACCES,
                    _ => libc::EIO,
                },
            }
        }
        StoreError::Credentials(_) => libc::EACCES,
        StoreError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
        StoreError::InvalidArgument(_) => libc::EINVAL,
        StoreError::Network { .. }
        | StoreError::Timeout { .. }
        | StoreError::CrcMismatch { .. }
        | StoreError::InvalidResponse { .. } => libc::EIO,
    }
}

/// Converts a store error that means "not there" into `FsError::NotFound`.
pub fn not_found_or(op: &'static str, key: &str, e: StoreError) -> FsError {
    if e.is_not_found() {
        FsError::NotFound
    } else {
        FsError::store(op, key, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_expected_errno() {
        let cases = [
            (StoreError::from_service(404, "NoSuchKey", ""), libc::ENOENT),
            (
                StoreError::from_service(403, "AccessDenied", ""),
                libc::EACCES,
            ),
            (
                StoreError::from_service(403, "SecurityTokenExpired", ""),
                libc::EACCES,
            ),
            (
                StoreError::from_service(412, "PreconditionFailed", ""),
                libc::ESTALE,
            ),
            (
                StoreError::from_service(409, "FileAlreadyExists", ""),
                libc::EEXIST,
            ),
            (
                StoreError::from_service(503, "ServiceUnavailable", ""),
                libc::EIO,
            ),
            (
                StoreError::Network {
                    endpoint: "e".into(),
                    message: "reset".into(),
                },
                libc::EIO,
            ),
            (
                StoreError::Timeout {
                    what: "GET".into(),
                    secs: 1,
                },
                libc::EIO,
            ),
            (StoreError::Credentials("none".into()), libc::EACCES),
        ];
        for (e, errno) in cases {
            let msg = e.to_string();
            assert_eq!(FsError::store("op", "k", e).errno(), errno, "{msg}");
        }
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
        assert_eq!(FsError::NameTooLong("x".into()).errno(), libc::ENAMETOOLONG);
        assert_eq!(FsError::NotEmpty.errno(), libc::ENOTEMPTY);
        assert_eq!(FsError::Stale { key: "k".into() }.errno(), libc::ESTALE);
    }
}
