//! Who owns what this mount creates, and how directories record their entries' changes.
//!
//! POSIX ownership, for several users on an `--allow-other` mount:
//! - A new file, directory or symlink belongs to the uid/gid of the process that made it
//!   (from the FUSE request), with its mode after the umask (the kernel applies the umask
//!   before sending the request unless the filesystem asks otherwise; we apply it again,
//!   which is idempotent). In a directory with the set-group-ID bit the group is the
//!   directory's instead, and a new subdirectory inherits the bit (BSD/System V rule that
//!   Linux follows).
//! - chown/chmod permission rules (only root changes the owner; the owner may change the
//!   group to one of its groups; chmod by the owner; set-group-ID cleared for non-members;
//!   set-user-ID and set-group-ID cleared on chown and on a write by a non-root process)
//!   are enforced by the kernel: every mount uses `default_permissions`, under which
//!   FUSE setattr goes through `setattr_prepare` and the kill-suid logic before it reaches
//!   us. We store what arrives.
//! - A directory's mtime and ctime move when an entry is created, removed or renamed in
//!   it; directory nlink is 2 + its subdirectories as far as this mount knows them. Both
//!   live in memory for the mount's life (OSS has nothing to keep them in cheaply).

use std::time::SystemTime;

use super::attr::{Attr, FileKind, Ino};
use super::{Ctx, Filesystem};

impl Filesystem {
    /// Attributes of a new `kind` made by `ctx` in `parent`, permission bits `perm`.
    pub(crate) fn new_owned_attr(
        &self,
        ctx: &Ctx,
        parent: Ino,
        kind: FileKind,
        size: u64,
        perm: u16,
    ) -> Attr {
        let now = SystemTime::now();
        let mut attr = self.inodes.defaults().new_attr(0, kind, size, now);
        attr.perm = perm;
        attr.uid = ctx.uid;
        attr.gid = ctx.gid;
        if let Some(p) = self.inodes.get(parent)
            && u32::from(p.attr.perm) & libc::S_ISGID != 0
        {
            attr.gid = p.attr.gid;
            if kind == FileKind::Dir {
                attr.perm |= libc::S_ISGID as u16;
            }
        }
        attr
    }

    /// An entry of `dir` was created, removed or renamed: its mtime and ctime move, and
    /// its link count follows subdirectories (`subdirs` is +1, -1 or 0).
    pub(crate) fn dir_entries_changed(&self, dir: Ino, subdirs: i32) {
        let now = SystemTime::now();
        self.inodes.update(dir, |n| {
            n.attr.mtime = now;
            n.attr.ctime = now;
            n.attr.nlink = n.attr.nlink.saturating_add_signed(subdirs).max(2);
        });
    }

    /// A write by `uid` to `ino`: a process without privilege clears set-user-ID (and
    /// set-group-ID with group execute) as POSIX asks. The kernel does this through a
    /// setattr only in some write paths, so it is done here too; the change travels
    /// with the pending upload.
    pub(crate) fn write_drops_privileges(&self, ino: Ino, uid: u32) {
        if uid == 0 {
            return;
        }
        let Some(node) = self.inodes.get(ino) else {
            return;
        };
        let perm = u32::from(node.attr.perm);
        let mut kill = perm & libc::S_ISUID;
        if perm & (libc::S_ISGID | libc::S_IXGRP) == (libc::S_ISGID | libc::S_IXGRP) {
            kill |= libc::S_ISGID;
        }
        if kill == 0 {
            return;
        }
        self.inodes.update(ino, |n| {
            n.attr.perm &= !(kill as u16);
            n.attr.ctime = SystemTime::now();
        });
        super::lock(&self.meta_pending).insert(ino);
    }
}
