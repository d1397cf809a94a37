//! Which object keys can be file names, and which names can become keys.
//!
//! OSS keys are arbitrary UTF-8 up to 1023 bytes; POSIX names are not. A key component
//! that is empty (`a//b`), `.` or `..`, longer than 255 bytes or containing NUL cannot be
//! shown as a directory entry, so such keys are hidden from listings and lookups. Each
//! hidden key is logged once at `warn` (a bounded set remembers what was already logged,
//! so a huge bucket cannot grow it without limit).
//!
//! In the other direction, a name coming from the kernel must be UTF-8 (keys are UTF-8;
//! anything else is `EINVAL`), at most 255 bytes (`ENAMETOOLONG`), and the resulting key
//! at most 1023 bytes (`ENAMETOOLONG`).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::{Mutex, OnceLock};

use super::error::FsError;

/// Longest file name component (bytes), as on most Linux filesystems.
pub const NAME_MAX: usize = 255;
/// Longest OSS key (bytes).
pub const KEY_MAX: usize = 1023;
/// How many distinct hidden keys are remembered for "log once".
const WARNED_CAP: usize = 10_000;

/// Whether `name` (one path component from a listing) can be shown as a file name.
pub fn is_valid_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= NAME_MAX
        && !name.contains('/')
        && !name.contains('\0')
}

/// Logs (once per key) that `key` is hidden because `name` cannot be a file name.
pub fn warn_hidden(key: &str, name: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let set = WARNED.get_or_init(|| Mutex::new(HashSet::new()));
    let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
    if set.len() >= WARNED_CAP || !set.insert(key.to_string()) {
        return;
    }
    let reason = if name.is_empty() {
        "empty path component"
    } else if name == "." || name == ".." {
        "`.` or `..` component"
    } else if name.len() > NAME_MAX {
        "component longer than 255 bytes"
    } else {
        "character not allowed in file names"
    };
    tracing::warn!(
        key,
        reason,
        "object key cannot be shown as a file; hiding it"
    );
}

/// Validates a name given by the kernel (lookup, create, rename…) and returns it as UTF-8.
pub fn name_from_kernel(name: &OsStr) -> Result<&str, FsError> {
    let s = name
        .to_str()
        .ok_or_else(|| FsError::InvalidName(format!("{name:?} is not UTF-8")))?;
    if s.len() > NAME_MAX {
        return Err(FsError::NameTooLong(s.to_string()));
    }
    if !is_valid_component(s) {
        return Err(FsError::InvalidName(s.to_string()));
    }
    Ok(s)
}

/// Checks a full key built from a name.
pub fn check_key_len(key: &str) -> Result<(), FsError> {
    if key.len() > KEY_MAX {
        return Err(FsError::NameTooLong(key.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(is_valid_component("a.txt"));
        assert!(is_valid_component("..."));
        assert!(is_valid_component("名前 with space"));
        assert!(!is_valid_component(""));
        assert!(!is_valid_component("."));
        assert!(!is_valid_component(".."));
        assert!(!is_valid_component(&"x".repeat(256)));
        assert!(is_valid_component(&"x".repeat(255)));
    }

    #[test]
    fn kernel_names() {
        assert_eq!(name_from_kernel(OsStr::new("ok")).ok(), Some("ok"));
        let long = "y".repeat(300);
        assert!(matches!(
            name_from_kernel(OsStr::new(&long)),
            Err(FsError::NameTooLong(_))
        ));
        use std::os::unix::ffi::OsStrExt;
        assert!(matches!(
            name_from_kernel(OsStr::from_bytes(b"\xff\xfe")),
            Err(FsError::InvalidName(_))
        ));
        assert!(check_key_len(&"k".repeat(1024)).is_err());
    }
}
