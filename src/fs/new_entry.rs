//! How every kind of creation (create, mknod, mkdir, symlink) makes its entry.
//!
//! Making a file, directory or symlink has two steps around whatever the kind needs in
//! between (an upload, or nothing for a file created by `create` and uploaded at its
//! first flush):
//! 1. [`Filesystem::prepare_new_entry`]: the object key (a directory's ends in `/`,
//!    checked against the OSS key length limit) and the attributes: owner and group of
//!    the creating process (or the set-group-ID parent's group, see `owner`), the mode
//!    after the umask, all times now.
//! 2. [`Filesystem::insert_new_entry`]: the inode-table entry with one kernel lookup
//!    reference, and the parent's mtime/ctime (and link count for a directory).
//!
//! Pitfall: an entry whose object was stored before it is inserted gets a ctime not
//! before the upload's end, so a later HEAD (whose Last-Modified is the server's
//! time) does not move it.

use std::time::SystemTime;

use crate::store::PutOptions;

use super::attr::{FileKind, Ino, to_user_meta};
use super::inode::Node;
use super::{Attr, Ctx, Filesystem, FsResult, names};

/// A file, directory or symlink about to be made by this mount.
#[derive(Debug)]
pub(crate) struct NewEntry<'a> {
    pub parent: Ino,
    pub name: &'a str,
    /// Its object key (a directory's ends in `/`).
    pub key: String,
    pub attr: Attr,
}

impl NewEntry<'_> {
    /// Upload options carrying the entry's attributes as object metadata.
    pub(crate) fn put_options(&self) -> PutOptions {
        PutOptions {
            user_meta: to_user_meta(&self.attr, &Default::default()),
            ..Default::default()
        }
    }
}

/// Permission bits of a new entry asked for with `mode` under `umask`.
pub(crate) fn requested_perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl Filesystem {
    /// Key and attributes of a new `kind` named `name` in `parent`, made by `ctx` with
    /// permission bits `perm` (see the module docs). Inserts nothing.
    pub(crate) fn prepare_new_entry<'a>(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &'a str,
        kind: FileKind,
        size: u64,
        perm: u16,
    ) -> FsResult<NewEntry<'a>> {
        let mut key = self
            .inodes
            .child_key(parent, name)
            .ok_or(super::error::FsError::NotFound)?;
        if kind == FileKind::Dir {
            key.push('/');
        }
        names::check_key_len(&key)?;
        let attr = self.new_owned_attr(ctx, parent, kind, size, perm);
        Ok(NewEntry {
            parent,
            name,
            key,
            attr,
        })
    }

    /// Puts `entry` in the inode table with one lookup reference and records the change
    /// in its parent. `stored` is the upload that made its object (its metadata is the
    /// node's), `None` for a local file uploaded at its first flush. `init` sets what
    /// the kind adds (ETag, symlink target, writers).
    pub(crate) fn insert_new_entry(
        &self,
        entry: NewEntry<'_>,
        stored: Option<&PutOptions>,
        init: impl FnOnce(&mut Node),
    ) -> (Ino, Node) {
        let NewEntry {
            parent,
            name,
            mut attr,
            ..
        } = entry;
        if stored.is_some() {
            // Not before the object's Last-Modified (a later HEAD must not move the ctime).
            attr.ctime = attr.ctime.max(SystemTime::now());
        }
        let kind = attr.kind;
        let (ino, node) = self
            .inodes
            .insert_local(parent, name, attr, stored.is_none());
        self.inodes.update(ino, |n| {
            if let Some(opts) = stored {
                n.user_meta = opts.user_meta.clone();
            }
            init(n);
        });
        self.inodes.add_lookup(ino, 1);
        self.dir_entries_changed(parent, i32::from(kind == FileKind::Dir));
        (ino, node)
    }
}
