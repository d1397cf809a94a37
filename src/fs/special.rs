//! Special files: FIFOs, sockets and character/block devices, made by `mknod` (and
//! `mkfifo`, and `bind` of a Unix socket).
//!
//! Such a file is only a name and attributes: the kernel handles its opens (a pipe, a
//! socket, a device driver) and never sends FUSE a read or write for it. So it is stored
//! as an **empty object** whose `x-oss-meta-mode` carries its type bits (`S_IFIFO`,
//! `S_IFSOCK`, `S_IFCHR`, `S_IFBLK`) with the permission bits, the convention s3fs and
//! ossfs 1.x use, so buckets move between the tools; a device's number is
//! `x-oss-meta-rdev` (decimal `st_rdev`, see [`super::attr`]). Owner, group, mode (after
//! the umask) and times are a new file's (see `new_entry`); chmod, chown, utimens and
//! rename treat the object like a file's (CopyObject), unlink deletes it.
//!
//! Who may make what is the kernel's business, as on any Linux filesystem: `mknod` of a
//! character or block device needs `CAP_MKNOD` (`EPERM` otherwise) and `S_IFDIR` is
//! refused before FUSE is asked. The mount has `nodev`, so a device node stored here
//! never gives access to a device of this machine (its open fails with `EACCES`).
//!
//! Pitfalls:
//! - A listing cannot tell a special file from an empty file (ListObjectsV2 has no user
//!   metadata). By default a listed entry's type is the listing's guess, "regular file",
//!   until its stored attributes are fetched (its first `stat`, see `attr_fanout`); so a
//!   plain readdir of a directory listed for the first time (after a remount) reports
//!   them as regular files (`ls -l`, `stat` and `find -type p` after a stat see the true
//!   type). With `readdir_optimize`, whose readdirplus hands the kernel the type at once,
//!   empty objects are HEADed while listing, like the objects that may be ossfs links.
//! - A name known from a HEAD as a special file (or an ossfs-style link) keeps its kind
//!   when a later listing shows the same object (same ETag), instead of turning back into
//!   the listing's guess and getting a new inode number.

use std::ffi::OsStr;

use bytes::Bytes;

use crate::store::{ListEntry, ObjectType};

use super::attr::{FileKind, Ino, SpecialKind};
use super::error::FsError;
use super::inode::Observed;
use super::new_entry::requested_perm;
use super::{Attr, Ctx, Filesystem, FsResult, names};

/// The kind `mknod` is asked to make with `mode`.
fn mknod_kind(mode: u32) -> FsResult<FileKind> {
    match mode & libc::S_IFMT {
        0 | libc::S_IFREG => Ok(FileKind::File),
        libc::S_IFDIR => Err(FsError::NotPermitted("mknod cannot make a directory")),
        fmt => SpecialKind::from_mode(fmt)
            .map(FileKind::Special)
            .ok_or_else(|| FsError::InvalidArgument(format!("mknod: file type {fmt:#o}"))),
    }
}

impl Filesystem {
    /// FUSE mknod: a regular file, FIFO, socket or device node, stored as an empty object
    /// (see the module docs). `rdev` is the device number of a device node.
    pub async fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let kind = mknod_kind(mode)?;
        let name = names::name_from_kernel(name)?;
        match self.lookup_name(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let mut entry =
            self.prepare_new_entry(ctx, parent, name, kind, 0, requested_perm(mode, umask))?;
        if kind.has_rdev() {
            entry.attr.rdev = rdev;
        }
        let opts = entry.put_options();
        let put = self
            .store
            .put_object(&entry.key, Bytes::new().into(), &opts)
            .await
            .map_err(|e| FsError::store("PutObject", &entry.key, e))?;
        let (_, node) = self.insert_new_entry(entry, Some(&opts), |n| {
            n.etag = put.etag.clone();
            n.crc64 = put.crc64;
        });
        Ok(node.attr)
    }

    /// What a listing entry `obj` of `dir` says when the name is known, from its stored
    /// attributes, as a kind no listing can tell (a special file, an ossfs-style link) and
    /// the object is the same one (same ETag): that kind and those attributes. None
    /// otherwise (the listing's guess applies).
    pub(crate) fn listed_keeps_kind(
        &self,
        dir: Ino,
        name: &str,
        obj: &ListEntry,
    ) -> Option<Observed> {
        let ino = self.inodes.child(dir, name)?;
        let node = self.inodes.get(ino)?;
        let hidden_kind = matches!(node.attr.kind, FileKind::Special(_) | FileKind::Symlink);
        let same_object = obj.object_type == ObjectType::Normal
            && node.object_type == ObjectType::Normal
            && !obj.etag.is_empty()
            && node.etag == obj.etag;
        if !(hidden_kind && same_object && node.attr.from_meta) {
            return None;
        }
        Some(Observed {
            kind: node.attr.kind,
            attr_template: node.attr,
            etag: node.etag,
            crc64: node.crc64,
            object_type: node.object_type,
            user_meta: None,
            content_type: None,
            symlink_target: node.symlink_target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mknod_modes() {
        assert_eq!(mknod_kind(0o644).unwrap(), FileKind::File);
        assert_eq!(mknod_kind(libc::S_IFREG | 0o644).unwrap(), FileKind::File);
        assert_eq!(
            mknod_kind(libc::S_IFIFO | 0o600).unwrap(),
            FileKind::Special(SpecialKind::Fifo)
        );
        assert_eq!(
            mknod_kind(libc::S_IFSOCK).unwrap(),
            FileKind::Special(SpecialKind::Socket)
        );
        assert_eq!(
            mknod_kind(libc::S_IFCHR).unwrap(),
            FileKind::Special(SpecialKind::CharDevice)
        );
        assert_eq!(
            mknod_kind(libc::S_IFBLK).unwrap(),
            FileKind::Special(SpecialKind::BlockDevice)
        );
        assert_eq!(mknod_kind(libc::S_IFDIR).unwrap_err().errno(), libc::EPERM);
        assert_eq!(mknod_kind(libc::S_IFLNK).unwrap_err().errno(), libc::EINVAL);
    }
}
