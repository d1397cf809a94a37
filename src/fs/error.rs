//! `FsError`: the one error type of the filesystem layer, and its single mapping to errno.
//!
//! Every filesystem operation returns `Result<_, FsError>`; the FUSE adapter replies with
//! [`FsError::errno`]. Keeping the mapping in one exhaustive `match` means a new variant
//! cannot be added without deciding its errno, and the same store failure always gives the
//! same errno whatever operation hit it.
//!
//! Errors keep their source (`#[source]`) up to the FUSE reply, so the log line of a
//! failed operation shows the whole chain, and the errno is decided from the source
//! itself (a store error inside a failed upload maps like any store error).
//!
//! Store errors are classified by [`StoreError`] status and [`ServiceCode`]:
//! - 404 / `NoSuchKey` → `ENOENT`; 412 / `PreconditionFailed` → `ESTALE` (the object
//!   changed under an open handle);
//! - 403 (`AccessDenied`, bad keys, expired tokens) and missing credentials → `EACCES`;
//! - 409 `FileAlreadyExists` → `EEXIST`; `EntityTooLarge` → `EFBIG`;
//!   `InvalidObjectName` → `EINVAL`;
//! - network failures, timeouts, 5xx, CRC mismatches, unparsable replies → `EIO` (the
//!   client already retried; the log line carries the OSS request id).

use std::sync::Arc;

use crate::read::ReadError;
use crate::store::{ServiceCode, StoreError};
use crate::write::WriteError;

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
    /// Reading an object failed in the data path (e.g. its bytes do not match its CRC).
    #[error("read {key}: {source}")]
    Read {
        key: String,
        #[source]
        source: ReadError,
    },
    /// An upload failed in the data path (too large, or an earlier part failed).
    #[error("upload {key}: {source}")]
    Write {
        key: String,
        #[source]
        source: WriteError,
    },
    /// An error an open file also keeps (its write state is failed): reported as itself,
    /// with its own errno, the first time.
    #[error(transparent)]
    Shared(Arc<FsError>),
    /// An open file's earlier write or upload failed, so what it holds is not what the
    /// application wrote: every later operation on it reports the first failure again,
    /// with its errno (`EACCES`, `ENOSPC`, `EDQUOT`... — never turned into `EIO`), and it
    /// as the source.
    #[error("an earlier write or upload of this file failed: {0}")]
    EarlierFailure(#[source] Arc<FsError>),
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
            FsError::Store { source, .. } => store_errno(source),
            FsError::Io { source, .. } => io_errno(source),
            FsError::Read { source, .. } => match source {
                ReadError::Stale { .. } => libc::ESTALE,
                ReadError::Store(e) => store_errno(e),
                ReadError::CrcMismatch { .. } => libc::EIO,
            },
            FsError::Write { source, .. } => match source {
                WriteError::Store(e) => store_errno(e),
                WriteError::Io(e) => io_errno(e),
                WriteError::TooLarge { .. } => libc::EFBIG,
                WriteError::Failed { .. } => libc::EIO,
            },
            FsError::Shared(e) => e.errno(),
            FsError::EarlierFailure(e) => e.errno(),
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

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
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
            match s.code {
                ServiceCode::FileAlreadyExists => libc::EEXIST,
                ServiceCode::EntityTooLarge => libc::EFBIG,
                ServiceCode::InvalidObjectName | ServiceCode::KeyTooLong => libc::EINVAL,
                _ => match s.status {
                    401 | 403 => libc::EACCES,
                    _ => libc::EIO,
                },
            }
        }
        StoreError::Credentials(_) => libc::EACCES,
        StoreError::Io(io) => io_errno(io),
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

    #[test]
    fn data_path_errors_keep_source_and_errno() {
        use std::error::Error as _;
        let too_large = FsError::Write {
            key: "k".into(),
            source: WriteError::TooLarge { size: 2, max: 1 },
        };
        assert_eq!(too_large.errno(), libc::EFBIG);
        let denied = FsError::Write {
            key: "k".into(),
            source: WriteError::Store(StoreError::from_service(403, "AccessDenied", "")),
        };
        assert_eq!(denied.errno(), libc::EACCES);
        let crc = FsError::Read {
            key: "k".into(),
            source: ReadError::CrcMismatch {
                key: "k".into(),
                computed: 1,
                expected: 2,
            },
        };
        assert_eq!(crc.errno(), libc::EIO);
        assert!(crc.source().unwrap().to_string().contains("CRC64"));
        // A failed handle: the first report and every later one keep the errno; later
        // ones carry the first error as their source.
        let first = Arc::new(denied);
        assert_eq!(FsError::Shared(first.clone()).errno(), libc::EACCES);
        let again = FsError::EarlierFailure(first);
        assert_eq!(again.errno(), libc::EACCES);
        let cause = again.source().unwrap().to_string();
        assert!(cause.starts_with("upload k: OSS error"), "{cause}");
    }
}
