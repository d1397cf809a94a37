//! Bucket-name and object-key validation (docs/PROTOCOL.md §4 "Naming rules"), so a
//! typo is reported before any request with a message saying how to fix it.

use super::EndpointError;

/// Checks an OSS bucket name: 3–63 characters of `a-z 0-9 -`, not starting or ending
/// with `-`.
pub fn validate_bucket_name(name: &str) -> Result<(), EndpointError> {
    let bad = |reason: String| EndpointError::InvalidBucket {
        name: name.to_string(),
        reason,
    };
    let len = name.chars().count();
    if !(3..=63).contains(&len) {
        return Err(bad(format!(
            "it is {len} characters long; it must be 3 to 63"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let hint = if c.is_ascii_uppercase() {
            format!(" (did you mean {:?}?)", name.to_ascii_lowercase())
        } else if c == '.' || c == '/' {
            " (give the bucket name alone, not a URL or a path)".to_string()
        } else {
            String::new()
        };
        return Err(bad(format!(
            "{c:?} is not allowed: use only lower-case letters, digits and '-'{hint}"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(bad("it must not start or end with '-'".to_string()));
    }
    Ok(())
}

/// Longest object key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1023;

/// Checks an object key: 1–1023 bytes of UTF-8, not starting with `/` or `\`.
pub fn validate_object_key(key: &str) -> Result<(), EndpointError> {
    let bad = |reason: String| EndpointError::InvalidKey {
        key: key.chars().take(80).collect(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("object keys must not be empty".to_string()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad(format!(
            "it is {} bytes of UTF-8; OSS allows at most {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(bad("it must not start with '/' or '\\'".to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket-01", "a1b", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("ab", "3 to 63"),
            ("MyBucket", "did you mean \"mybucket\""),
            ("my_bucket", "'_'"),
            ("bucket.oss-cn-hangzhou.aliyuncs.com", "not a URL"),
            ("-abc", "start or end"),
            ("abc-", "start or end"),
            ("桶桶桶", "lower-case letters"),
        ];
        for (name, needle) in cases {
            let msg = validate_bucket_name(name).expect_err(name).to_string();
            assert!(msg.contains(needle), "{name}: {msg}");
            assert!(msg.contains(name) || name.len() > 40, "{name}: {msg}");
        }
        assert!(validate_bucket_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn object_keys() {
        assert!(validate_object_key("a").is_ok());
        assert!(validate_object_key("dir/中文 😀.txt").is_ok());
        assert!(validate_object_key(&"é".repeat(511)).is_ok()); // 1022 bytes
        assert!(validate_object_key(&"é".repeat(512)).is_err()); // 1024 bytes
        assert!(validate_object_key("").is_err());
        assert!(validate_object_key("/abs").is_err());
        assert!(validate_object_key("\\win").is_err());
    }
}
