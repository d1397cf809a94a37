//! Symlinks: how a link's text is stored so that `readlink` gives it back byte for byte,
//! and other OSS clients follow the links they can.
//!
//! A program may write any text as a link target (absolute, `..`, `.`, dangling, up to
//! 4095 bytes, not UTF-8). OSS's own Symlink object holds a *bucket key*, resolved from
//! the bucket root. So a link is stored in one of two forms:
//! - **native**: a relative text that resolves, against the link's directory, to a key
//!   under the mount prefix, and whose last component is not `.` or `..` (nor empty: a
//!   trailing `/` names a directory, which no object key is) becomes a PutSymlink whose
//!   `x-oss-symlink-target` is that key (existing or not), so the SDKs, the console, a
//!   CDN and ossfs 2 resolve it. The text itself is kept beside it in the user metadata
//!   [`META_LINK_TEXT`] (percent-encoded), since `a/./b`, `x//y` or `d/../f` resolve to
//!   the same key as other texts.
//! - **ossfs 1.x**: every other text (absolute, `.`/`..`-ending, escaping the prefix,
//!   not UTF-8, or too long for the 8 KB metadata limit once encoded) is a regular
//!   object whose body is the text and whose `x-oss-meta-mode` has `S_IFLNK`: the
//!   format ossfs 1.x writes, which ossmount reads for buckets ossfs wrote.
//!
//! Reading: an ossfs-style object gives its body. A native link gives the kept text when
//! it still resolves to the link's target key, else — a link made by another client, or
//! re-pointed by one — the relative path from the link's directory to its target key.
//!
//! A link's own owner, mode and mtime are in its user metadata; for a native link HEAD
//! answers with the *target's*, so they are read with GetSymlink
//! ([`crate::store::ObjectStore::get_symlink_info`]).
//!
//! Pitfalls:
//! - The form depends on where the link is: renaming a link, or a directory holding
//!   relative links, re-plans each moved native link from its text (a relative text now
//!   resolves to another key, or escapes the prefix and turns into the ossfs form).
//! - A listing cannot tell an ossfs-style link from a small file (no metadata); see
//!   [`may_be_link_object`] for what readdir does about it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use bytes::Bytes;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use std::collections::HashMap;

use futures::StreamExt;

use crate::store::{ListEntry, ObjectType, PutOptions, SymlinkInfo};

use super::attr_fanout::ATTR_FANOUT_WIDTH;
use super::inode::Observed;

use super::attr::{FileKind, META_MODE};
use super::error::FsError;
use super::names::KEY_MAX;
use super::{Filesystem, FsResult};

/// User metadata holding a native link's text, percent-encoded (`x-oss-meta-symlink-text`).
pub(crate) const META_LINK_TEXT: &str = "symlink-text";
/// Longest link text (PATH_MAX without its NUL).
pub(crate) const MAX_LINK_TEXT: usize = 4095;
/// OSS limit on the user metadata of one object, names and values.
const USER_META_LIMIT: usize = 8 * 1024;

/// Whether a listed object might be an ossfs-style link: a regular object whose size a
/// link text can have. Only its metadata (a HEAD) can tell.
pub(crate) fn may_be_link_object(object_type: ObjectType, size: u64) -> bool {
    object_type != ObjectType::Symlink && (1..=MAX_LINK_TEXT as u64).contains(&size)
}

/// The key a native link at `link_key` with this text points to, when the text can be a
/// native link (see the module docs); None → the ossfs form.
pub(crate) fn native_target(prefix: &str, link_key: &str, text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() || text.starts_with('/') || text.ends_with('/') {
        return None;
    }
    let last = text.rsplit('/').next().unwrap_or(text);
    if last == "." || last == ".." {
        return None;
    }
    let rel = link_key.strip_prefix(prefix)?;
    let dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?; // above the mount root
            }
            c => parts.push(c),
        }
    }
    let key = format!("{prefix}{}", parts.join("/"));
    let valid = !key.is_empty() && key.len() <= KEY_MAX && !key.starts_with('\\');
    valid.then_some(key)
}

/// The path from the directory holding `link_key` to `target_key` (both bucket keys):
/// what a link made by another client reads as.
pub(crate) fn relative_path(link_key: &str, target_key: &str) -> String {
    let dir: Vec<&str> = match link_key.rsplit_once('/') {
        Some((d, _)) => d.split('/').collect(),
        None => Vec::new(),
    };
    let target: Vec<&str> = target_key.split('/').collect();
    let target_dir = &target[..target.len() - 1];
    let common = dir
        .iter()
        .zip(target_dir)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out: Vec<&str> = vec![".."; dir.len() - common];
    out.extend_from_slice(&target[common..]);
    let s = out.join("/");
    if s.is_empty() { ".".into() } else { s }
}

/// The text of a native link: the kept text when it still resolves to the link's
/// target, else the relative path to the target.
pub(crate) fn native_text(prefix: &str, link_key: &str, info: &SymlinkInfo) -> OsString {
    if let Some(enc) = info.meta.user_meta.get(META_LINK_TEXT) {
        let text: Vec<u8> = percent_decode_str(enc).collect();
        if native_target(prefix, link_key, &text).as_deref() == Some(info.target.as_str()) {
            return OsString::from_vec(text);
        }
    }
    relative_path(link_key, &info.target).into()
}

/// Size OSS counts for user metadata: `x-oss-meta-` names and values.
fn meta_size(meta: &BTreeMap<String, String>) -> usize {
    meta.iter()
        .map(|(k, v)| "x-oss-meta-".len() + k.len() + v.len())
        .sum()
}

/// `meta` with a mode that says "link" (ossfs reads the type from it).
fn with_link_mode(mut meta: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let is_link = meta
        .get(META_MODE)
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m & libc::S_IFMT == libc::S_IFLNK);
    if !is_link {
        meta.insert(META_MODE.into(), (libc::S_IFLNK | 0o777).to_string());
    }
    meta
}

/// How a link was stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredLink {
    pub object_type: ObjectType,
    pub etag: String,
    pub user_meta: BTreeMap<String, String>,
}

impl Filesystem {
    /// Stores a link with `text` at `key`, in the form its place calls for, with `meta`
    /// (mode/uid/gid/mtime and other tools' metadata) as its user metadata.
    pub(crate) async fn store_link(
        &self,
        key: &str,
        text: &OsStr,
        meta: BTreeMap<String, String>,
    ) -> FsResult<StoredLink> {
        let bytes = text.as_bytes();
        let mut meta = with_link_mode(meta);
        meta.remove(META_LINK_TEXT);
        if let Some(target) = native_target(&self.cfg.prefix, key, bytes) {
            let mut native = meta.clone();
            native.insert(
                META_LINK_TEXT.into(),
                utf8_percent_encode(
                    std::str::from_utf8(bytes).unwrap_or_default(),
                    NON_ALPHANUMERIC,
                )
                .to_string(),
            );
            if meta_size(&native) <= USER_META_LIMIT {
                let opts = PutOptions {
                    user_meta: native,
                    ..Default::default()
                };
                self.store
                    .put_symlink(key, &target, &opts)
                    .await
                    .map_err(|e| FsError::store("PutSymlink", key, e))?;
                return Ok(StoredLink {
                    object_type: ObjectType::Symlink,
                    etag: String::new(),
                    user_meta: opts.user_meta,
                });
            }
        }
        let opts = PutOptions {
            user_meta: meta,
            ..Default::default()
        };
        let put = self
            .store
            .put_object(key, Bytes::copy_from_slice(bytes).into(), &opts)
            .await
            .map_err(|e| FsError::store("PutObject", key, e))?;
        Ok(StoredLink {
            object_type: ObjectType::Normal,
            etag: put.etag,
            user_meta: opts.user_meta,
        })
    }

    /// With `readdir_optimize`, whose listings hand the kernel a type and attributes at
    /// once: the listed objects of `objects` that may be ossfs-style links (1 to
    /// `readdir_check_size` bytes) or special files (empty, see `special`), observed
    /// through a HEAD each, many in flight. Name → what its HEAD showed, for the links
    /// and special files among them; the others (and an object whose HEAD fails) keep
    /// the listing's guess.
    pub(crate) async fn check_listed_kinds(
        &self,
        dir_key: &str,
        objects: &[ListEntry],
    ) -> HashMap<String, Observed> {
        if !self.cfg.readdir_optimize {
            return HashMap::new();
        }
        let max = self.cfg.readdir_check_size;
        let keys: Vec<String> = objects
            .iter()
            .filter(|o| {
                max > 0
                    && o.size <= max
                    && (may_be_link_object(o.object_type, o.size)
                        || (o.object_type == ObjectType::Normal && o.size == 0))
            })
            .filter(|o| o.key.len() > dir_key.len() && o.key.starts_with(dir_key))
            .map(|o| o.key.clone())
            .collect();
        // Owned keys: borrowing the entries in the futures trips the higher-ranked
        // lifetime limits of `Send` futures.
        let seen: Vec<Option<(String, Observed)>> = futures::stream::iter(keys)
            .map(|key| async move {
                let meta = self.store.head_object(&key).await.ok()?;
                let obs = self.observed_from_head(&key, &meta).await.ok()?;
                // Files keep the listing's attributes: that is readdir_optimize's trade,
                // and with --allow-other what the user configured is what is enforced.
                (obs.kind != FileKind::File).then_some((key, obs))
            })
            .buffer_unordered(ATTR_FANOUT_WIDTH)
            .collect()
            .await;
        seen.into_iter()
            .flatten()
            .map(|(key, obs)| (key[dir_key.len()..].to_string(), obs))
            .collect()
    }

    /// Re-stores the native link `info` read at `from` as `to` (a directory rename):
    /// its text and metadata move; its target key follows the text.
    pub(crate) async fn move_native_link(
        &self,
        from: &str,
        to: &str,
        info: SymlinkInfo,
    ) -> FsResult<()> {
        let text = native_text(&self.cfg.prefix, from, &info);
        self.store_link(to, &text, info.meta.user_meta).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_texts_under_the_prefix_are_native() {
        let t = |link: &str, text: &str| native_target("p/", link, text.as_bytes());
        assert_eq!(t("p/a/l", "u.txt").as_deref(), Some("p/a/u.txt"));
        assert_eq!(t("p/a/l", "../b/c").as_deref(), Some("p/b/c"));
        assert_eq!(t("p/a/l", "./x//y").as_deref(), Some("p/a/x/y"));
        assert_eq!(t("p/l", "d/../f").as_deref(), Some("p/f"));
        assert_eq!(t("p/a/b/l", "../../c/d/e").as_deref(), Some("p/c/d/e"));
    }

    #[test]
    fn other_texts_go_the_ossfs_way() {
        let t = |link: &str, text: &[u8]| native_target("p/", link, text);
        assert_eq!(t("p/a/l", b"/etc/hostname"), None);
        assert_eq!(t("p/a/l", b".."), None);
        assert_eq!(t("p/a/l", b"."), None);
        assert_eq!(t("p/a/l", b"x/.."), None);
        assert_eq!(t("p/a/l", b"sub/"), None);
        assert_eq!(t("p/a/l", b"../../x"), None, "escapes the prefix");
        assert_eq!(t("p/a/l", b"caf\xe9"), None, "not UTF-8");
        assert_eq!(t("p/a/l", b""), None);
        let long = "x/".repeat(600) + "y";
        assert_eq!(t("p/a/l", long.as_bytes()), None, "key over 1023 bytes");
    }

    #[test]
    fn links_of_other_clients_read_as_relative_paths() {
        assert_eq!(relative_path("a/b/l", "a/b/t"), "t");
        assert_eq!(relative_path("a/b/l", "a/c/t"), "../c/t");
        assert_eq!(relative_path("l", "x/y"), "x/y");
        assert_eq!(relative_path("a/b/l", "t"), "../../t");
        assert_eq!(relative_path("a/l", "a/d/"), "d/");
    }

    #[test]
    fn kept_text_is_used_only_while_it_matches_the_target() {
        let info = |target: &str, text: &str| SymlinkInfo {
            target: target.into(),
            meta: crate::store::ObjectMeta {
                user_meta: [(
                    META_LINK_TEXT.to_string(),
                    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string(),
                )]
                .into(),
                ..Default::default()
            },
        };
        assert_eq!(native_text("", "a/l", &info("a/x/y", "./x//y")), "./x//y");
        // Re-pointed by another client: the text no longer says where it goes.
        assert_eq!(native_text("", "a/l", &info("b/z", "./x//y")), "../b/z");
    }
}
