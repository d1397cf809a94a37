//! File attributes and their persistence as OSS user metadata.
//!
//! OSS has no inodes, so ownership, permissions and mtime live in user metadata, using
//! the same names and formats as ossfs/s3fs so a bucket can move between the tools:
//!
//! | header              | format                                   | written by      |
//! |---------------------|------------------------------------------|-----------------|
//! | `x-oss-meta-mode`   | decimal `st_mode` *including* type bits  | create, chmod   |
//! | `x-oss-meta-uid`    | decimal                                  | chown           |
//! | `x-oss-meta-gid`    | decimal                                  | chown           |
//! | `x-oss-meta-mtime`  | decimal seconds since the epoch          | every write, utimens |
//! | `x-oss-meta-mtime-nsec` | decimal nanoseconds 0..999999999 of the mtime (ossmount) | with `mtime` |
//! | `x-oss-meta-rdev`   | decimal device number (`st_rdev`) of a character or block device | mknod |
//!
//! `mtime` stays whole seconds, as ossfs writes and parses it; the fraction goes in its
//! own field so nanosecond mtimes (`cp -a`, `tar x`, `touch -d`) survive a remount. It is
//! used only when `mtime` itself has no fraction (s3fs/rclone style) and is valid; a tool
//! that rewrites `mtime` but keeps foreign fields can leave a stale fraction (an error
//! below one second). ctime is not stored: it is the object's `Last-Modified` (which every
//! data or metadata write moves), and moves in memory on every attribute change.
//!
//! Reading is lenient: `mtime` may carry a fraction (`1648047444.796073379`, as s3fs and
//! rclone write it); unparsable values are ignored (the defaults from the mount options
//! are used) rather than failing the lookup — metadata is external input.
//!
//! Pitfalls:
//! - A listing (ListObjectsV2) has no user metadata: attributes built from it use the
//!   mount's default mode/uid/gid and `LastModified` as mtime. Once a HEAD has been done
//!   for an object, its metadata wins ([`Attr::merge_listing`] keeps it).
//! - ossfs stores symlinks as regular objects whose mode has `S_IFLNK` and whose content
//!   is the target; [`kind_from_meta`] recognises them so such links stay links here.
//! - FIFOs, sockets and device nodes are empty objects whose mode carries their type
//!   (`S_IFIFO`, `S_IFSOCK`, `S_IFCHR`, `S_IFBLK`), as s3fs and ossfs 1.x store them; a
//!   device's number is `rdev` (the name rclone and other S3 tools use for `st_rdev`).
//!   A listing cannot tell them from empty files (see `special`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{ObjectMeta, ObjectType};

pub type Ino = u64;

pub const META_MODE: &str = "mode";
pub const META_UID: &str = "uid";
pub const META_GID: &str = "gid";
pub const META_MTIME: &str = "mtime";
pub const META_MTIME_NSEC: &str = "mtime-nsec";
pub const META_RDEV: &str = "rdev";

/// Block size reported by statfs (`blocks` of stat are 512-byte units regardless).
pub const BLKSIZE: u32 = 4096;
/// Preferred I/O size reported by stat (`st_blksize`): `cp`, `cat` and stdio size their
/// buffers by it, and every write(2) is one FUSE request, so 4 KiB would mean 4 KiB
/// requests from `fwrite` and 128 KiB ones from `cp`; 1 MiB matches `max_write`.
pub const IO_BLKSIZE: u32 = 1 << 20;

/// The kinds of files this filesystem can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device node: an empty object whose mode says which.
    Special(SpecialKind),
}

/// The file types that exist only as a name and attributes: the kernel handles their
/// opens (pipes, sockets, device drivers), the filesystem never sees their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl SpecialKind {
    /// The special kind whose `S_IFMT` bits `mode` has, if any.
    pub fn from_mode(mode: u32) -> Option<SpecialKind> {
        match mode & libc::S_IFMT {
            libc::S_IFIFO => Some(SpecialKind::Fifo),
            libc::S_IFSOCK => Some(SpecialKind::Socket),
            libc::S_IFCHR => Some(SpecialKind::CharDevice),
            libc::S_IFBLK => Some(SpecialKind::BlockDevice),
            _ => None,
        }
    }

    /// Whether this kind has a device number (`st_rdev`).
    pub fn is_device(self) -> bool {
        matches!(self, SpecialKind::CharDevice | SpecialKind::BlockDevice)
    }
}

impl FileKind {
    /// `S_IFMT` bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Special(SpecialKind::Fifo) => libc::S_IFIFO,
            FileKind::Special(SpecialKind::Socket) => libc::S_IFSOCK,
            FileKind::Special(SpecialKind::CharDevice) => libc::S_IFCHR,
            FileKind::Special(SpecialKind::BlockDevice) => libc::S_IFBLK,
        }
    }

    /// Whether a device number belongs to this kind.
    pub fn has_rdev(self) -> bool {
        matches!(self, FileKind::Special(s) if s.is_device())
    }
}

/// What `stat` shows for one inode.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Last change of data or attributes (see the module docs).
    pub ctime: SystemTime,
    /// Link count: 1 for files and links, 2 + known subdirectories for directories.
    pub nlink: u32,
    /// Permission bits only (`0o7777` mask).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// Device number of a character or block device (`st_rdev`, the kernel's 32-bit
    /// encoding), 0 for every other kind.
    pub rdev: u32,
    /// Whether mode/uid/gid/mtime came from the object's own metadata (HEAD or our own
    /// write) rather than from defaults/listing.
    pub from_meta: bool,
}

impl Attr {
    pub fn nlink(&self) -> u32 {
        self.nlink
    }

    /// 512-byte blocks.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }

    /// Full `st_mode`.
    pub fn mode(&self) -> u32 {
        self.kind.type_bits() | u32::from(self.perm)
    }

    /// Updates size/mtime from a listing entry, keeping metadata-derived values.
    pub fn merge_listing(&mut self, size: u64, last_modified: Option<SystemTime>) {
        if self.kind != FileKind::Symlink {
            self.size = size;
        }
        if !self.from_meta
            && let Some(t) = last_modified
        {
            self.mtime = t;
        }
    }
}

/// Defaults from the mount options, used when an object carries no metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrDefaults {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits for files (e.g. `0o644`).
    pub file_perm: u16,
    /// Permission bits for directories (e.g. `0o755`).
    pub dir_perm: u16,
}

impl AttrDefaults {
    pub fn new_attr(&self, ino: Ino, kind: FileKind, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind,
            size,
            mtime,
            ctime: mtime,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            perm: match kind {
                FileKind::Dir => self.dir_perm,
                FileKind::File | FileKind::Special(_) => self.file_perm,
                FileKind::Symlink => 0o777,
            },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            from_meta: false,
        }
    }

    /// Attributes from a HEAD answer (or GET headers).
    pub fn from_object_meta(&self, ino: Ino, kind: FileKind, meta: &ObjectMeta) -> Attr {
        let mut a = self.new_attr(
            ino,
            kind,
            meta.size,
            meta.last_modified.unwrap_or(UNIX_EPOCH),
        );
        apply_user_meta(&mut a, &meta.user_meta);
        // Last-Modified moves with every write and metadata copy: the object's ctime.
        a.ctime = meta.last_modified.unwrap_or(a.mtime);
        a.from_meta = true;
        a
    }
}

/// Overrides defaults with whatever valid values the user metadata holds.
pub fn apply_user_meta(a: &mut Attr, meta: &BTreeMap<String, String>) {
    if let Some(mode) = meta
        .get(META_MODE)
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        let perm = (mode & 0o7777) as u16;
        // Directory markers written by other tools sometimes carry mode 0; ignore that.
        if mode & 0o777 != 0 || matches!(a.kind, FileKind::File | FileKind::Special(_)) {
            a.perm = perm;
        }
    }
    if a.kind.has_rdev()
        && let Some(rdev) = meta
            .get(META_RDEV)
            .and_then(|v| v.trim().parse::<u32>().ok())
    {
        a.rdev = rdev;
    }
    if let Some(uid) = meta
        .get(META_UID)
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        a.uid = uid;
    }
    if let Some(gid) = meta
        .get(META_GID)
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        a.gid = gid;
    }
    if let Some(t) = meta.get(META_MTIME).and_then(|v| parse_mtime(v)) {
        a.mtime = t;
        let whole = !meta[META_MTIME].contains('.');
        if let Some(ns) = meta
            .get(META_MTIME_NSEC)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|ns| whole && *ns < 1_000_000_000)
        {
            a.mtime = t + Duration::from_nanos(u64::from(ns));
        }
    }
}

/// Parses `x-oss-meta-mtime`: decimal seconds, optionally with a fraction.
pub fn parse_mtime(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs: u64 = secs.parse().ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        digits.parse::<u32>().ok()?
    };
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Formats mtime as ossfs does (whole seconds).
pub fn format_mtime(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string()
}

/// The kind an object represents, from its type and metadata.
pub fn kind_from_meta(object_type: ObjectType, meta: &BTreeMap<String, String>) -> FileKind {
    if object_type == ObjectType::Symlink {
        return FileKind::Symlink;
    }
    let mode = meta
        .get(META_MODE)
        .and_then(|v| v.trim().parse::<u32>().ok());
    match mode {
        Some(m) if m & libc::S_IFMT == libc::S_IFLNK => FileKind::Symlink,
        Some(m) => SpecialKind::from_mode(m).map_or(FileKind::File, FileKind::Special),
        None => FileKind::File,
    }
}

/// User metadata describing `attr`, merged into `base` (other tools' keys are kept).
pub fn to_user_meta(attr: &Attr, base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut m = base.clone();
    m.insert(META_MODE.into(), attr.mode().to_string());
    m.insert(META_MTIME.into(), format_mtime(attr.mtime));
    let nanos = attr
        .mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    m.insert(META_MTIME_NSEC.into(), nanos.to_string());
    m.insert(META_UID.into(), attr.uid.to_string());
    m.insert(META_GID.into(), attr.gid.to_string());
    if attr.kind.has_rdev() {
        m.insert(META_RDEV.into(), attr.rdev.to_string());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AttrDefaults {
        AttrDefaults {
            uid: 1000,
            gid: 1000,
            file_perm: 0o644,
            dir_perm: 0o755,
        }
    }

    #[test]
    fn mtime_formats() {
        assert_eq!(
            parse_mtime("1648047444.796073379"),
            UNIX_EPOCH.checked_add(Duration::new(1648047444, 796073379))
        );
        assert_eq!(
            parse_mtime("1400000000.5"),
            UNIX_EPOCH.checked_add(Duration::new(1400000000, 500_000_000))
        );
        assert_eq!(
            parse_mtime("12"),
            UNIX_EPOCH.checked_add(Duration::from_secs(12))
        );
        assert_eq!(parse_mtime("abc"), None);
        assert_eq!(parse_mtime("1.x"), None);
        assert_eq!(parse_mtime("-5"), None);
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_mtime(t), "1700000000");
    }

    #[test]
    fn meta_round_trip_in_ossfs_format() {
        let mut a = defaults().new_attr(5, FileKind::File, 3, UNIX_EPOCH);
        a.perm = 0o750;
        a.uid = 7;
        a.gid = 8;
        a.mtime = UNIX_EPOCH + Duration::new(99, 123_456_789);
        let mut base = BTreeMap::new();
        base.insert("other".to_string(), "kept".to_string());
        let m = to_user_meta(&a, &base);
        assert_eq!(m["mode"], (0o100750).to_string()); // S_IFREG | 0750 = 33256
        assert_eq!(m["mode"], "33256");
        assert_eq!(m["other"], "kept");
        assert_eq!(
            (m["mtime"].as_str(), m["mtime-nsec"].as_str()),
            ("99", "123456789")
        );
        let meta = ObjectMeta {
            size: 3,
            user_meta: m,
            ..Default::default()
        };
        let b = defaults().from_object_meta(5, FileKind::File, &meta);
        assert_eq!((b.perm, b.uid, b.gid, b.mtime), (0o750, 7, 8, a.mtime));
        assert!(b.from_meta);
    }

    #[test]
    fn garbage_meta_falls_back_to_defaults() {
        let mut m = BTreeMap::new();
        m.insert("mode".to_string(), "rwx".to_string());
        m.insert("uid".to_string(), "-1".to_string());
        let meta = ObjectMeta {
            user_meta: m,
            ..Default::default()
        };
        let b = defaults().from_object_meta(2, FileKind::File, &meta);
        assert_eq!((b.perm, b.uid), (0o644, 1000));
    }

    #[test]
    fn ossfs_symlinks_are_links() {
        let mut m = BTreeMap::new();
        m.insert("mode".to_string(), (libc::S_IFLNK | 0o777).to_string());
        assert_eq!(kind_from_meta(ObjectType::Normal, &m), FileKind::Symlink);
        assert_eq!(
            kind_from_meta(ObjectType::Symlink, &BTreeMap::new()),
            FileKind::Symlink
        );
        assert_eq!(
            kind_from_meta(ObjectType::Normal, &BTreeMap::new()),
            FileKind::File
        );
    }
}
