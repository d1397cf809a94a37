//! How the inode table stores a node: [`Packed`], about half the size of a [`Node`].
//!
//! A bucket walk registers one node per object, so what one node costs is what the
//! mount costs per object. [`Node`] is the convenient form the rest of the filesystem
//! reads and changes (owned strings, `SystemTime`s, `Option`s); the table keeps each
//! node packed and converts at its boundary ([`Packed::pack`], [`Packed::unpack`]):
//! - the name inline when it is short ([`Name`]: up to 22 bytes, no allocation);
//! - an OSS ETag (`"` + 32 hex digits + `"`, an MD5) as its 16 bytes;
//! - times as seconds and nanoseconds, the expiry as nanoseconds after the table's
//!   start, the CRC-64 without an `Option`, flags in one byte;
//! - the content type as an index into the table's few distinct values ([`Interner`]);
//! - everything rarely set (user metadata of other tools, an uncommon content type or
//!   ETag, a link's text, open handles and writers) in one optional boxed [`Extra`],
//!   absent for a plain listed or HEADed object. A new rarely-set field goes there.
//!
//! User metadata keeps only what [`Node::user_meta`] is for: other tools' keys. The
//! attribute keys (`mode`, `uid`, `gid`, `mtime`, `mtime-nsec`) are dropped, since every
//! writer rebuilds them from the attributes ([`super::super::attr::to_user_meta`]).
//!
//! Pitfall: the conversion must be lossless for everything a [`Node`] can hold (the
//! tests below round-trip every field); a change to [`Node`] needs a change here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Node;
use crate::fs::attr::{
    Attr, FileKind, Ino, META_GID, META_MODE, META_MTIME, META_MTIME_NSEC, META_UID,
};
use crate::store::ObjectType;

/// A name, inline up to [`Name::INLINE`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Name {
    Inline(u8, [u8; Name::INLINE]),
    Heap(Box<str>),
}

impl Name {
    /// The longest name stored without an allocation (the enum stays 24 bytes).
    pub(super) const INLINE: usize = 22;

    pub(super) fn new(s: &str) -> Self {
        if s.len() <= Self::INLINE {
            let mut b = [0u8; Self::INLINE];
            b[..s.len()].copy_from_slice(s.as_bytes());
            Name::Inline(s.len() as u8, b)
        } else {
            Name::Heap(s.into())
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Built from a `&str` cut at its own length: always valid UTF-8.
            Name::Inline(len, b) => std::str::from_utf8(&b[..usize::from(*len)]).unwrap_or(""),
            Name::Heap(s) => s,
        }
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// Distinct content types of the mount (a bucket has few), so a node stores an index.
#[derive(Debug, Default)]
pub(super) struct Interner {
    values: Vec<Box<str>>,
}

impl Interner {
    /// Most distinct values kept; others are stored in the node's [`Extra`].
    const CAP: usize = 64;

    /// `0` for none, `i + 1` for value `i`, [`NOT_INTERNED`] when it is not kept.
    fn index(&mut self, value: Option<&str>) -> u16 {
        let Some(v) = value else { return 0 };
        if let Some(i) = self.values.iter().position(|x| &**x == v) {
            return i as u16 + 1;
        }
        if self.values.len() < Self::CAP {
            self.values.push(v.into());
            return self.values.len() as u16;
        }
        NOT_INTERNED
    }

    fn get(&self, index: u16) -> Option<&str> {
        let i = usize::from(index).checked_sub(1)?;
        self.values.get(i).map(|v| &**v)
    }
}

const NOT_INTERNED: u16 = u16::MAX;

/// What the table needs to pack and unpack nodes.
#[derive(Debug)]
pub(super) struct PackContext {
    /// Expiries are stored as nanoseconds after this.
    pub(super) base: Instant,
    pub(super) content_types: Interner,
}

impl PackContext {
    pub(super) fn new() -> Self {
        PackContext {
            base: Instant::now(),
            content_types: Interner::default(),
        }
    }

    /// `valid_until` as stored: 0 for none, else nanoseconds after `base` (at least 1).
    pub(super) fn expiry(&self, t: Option<Instant>) -> u64 {
        t.map_or(0, |t| {
            u64::try_from(t.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1)
        })
    }

    fn instant(&self, stored: u64) -> Option<Instant> {
        match stored {
            0 => None,
            n => self.base.checked_add(Duration::from_nanos(n)),
        }
    }
}

/// Rarely-set parts of a node (absent for a plain listed or HEADed object).
#[derive(Debug, Default, Clone, PartialEq)]
struct Extra {
    user_meta: BTreeMap<String, String>,
    content_type: Option<String>,
    symlink_target: Option<OsString>,
    /// An ETag that is not a quoted MD5 (multipart, appendable, emulator links).
    etag: Option<Box<str>>,
    writers: u32,
    handles: u32,
    /// A character or block device's number (`Attr::rdev`), 0 for everything else.
    rdev: u32,
}

impl Extra {
    fn is_empty(&self) -> bool {
        *self == Extra::default()
    }
}

const FROM_META: u8 = 1;
const LOCAL: u8 = 1 << 1;
const UNLINKED: u8 = 1 << 2;
const HAS_CRC: u8 = 1 << 3;
/// Two bits: how the ETag is stored.
const ETAG_SHIFT: u8 = 4;
const ETAG_MASK: u8 = 3 << ETAG_SHIFT;
const ETAG_EMPTY: u8 = 0;
const ETAG_UPPER: u8 = 1 << ETAG_SHIFT;
const ETAG_LOWER: u8 = 2 << ETAG_SHIFT;
const ETAG_EXTRA: u8 = 3 << ETAG_SHIFT;

/// One node as the table stores it (see the module docs). Its number is the table's
/// key, not stored here.
#[derive(Debug)]
pub(super) struct Packed {
    pub(super) parent: Ino,
    /// Kernel lookup count.
    pub(super) lookups: u64,
    size: u64,
    /// See [`PackContext::expiry`].
    valid: u64,
    crc64: u64,
    mtime_s: i64,
    ctime_s: i64,
    etag: [u8; 16],
    pub(super) name: Name,
    extra: Option<Box<Extra>>,
    mtime_ns: u32,
    ctime_ns: u32,
    nlink: u32,
    uid: u32,
    gid: u32,
    /// Nodes whose parent this is.
    pub(super) kids: u32,
    perm: u16,
    /// See [`Interner::index`].
    content_type: u16,
    kind: FileKind,
    object_type: ObjectType,
    flags: u8,
}

impl Packed {
    pub(super) fn pack(node: &Node, cx: &mut PackContext) -> Self {
        let Node {
            parent,
            name,
            attr,
            valid_until,
            etag,
            crc64,
            object_type,
            user_meta,
            content_type,
            symlink_target,
            lookups,
            writers,
            local,
            unlinked,
            handles,
            kids,
        } = node;
        let mut extra = Extra {
            user_meta: user_meta
                .iter()
                .filter(|(k, _)| !is_attr_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            symlink_target: symlink_target.clone(),
            writers: *writers,
            handles: *handles,
            rdev: attr.rdev,
            ..Extra::default()
        };
        let mut flags = 0;
        for (set, bit) in [
            (attr.from_meta, FROM_META),
            (*local, LOCAL),
            (*unlinked, UNLINKED),
            (crc64.is_some(), HAS_CRC),
        ] {
            if set {
                flags |= bit;
            }
        }
        let (etag_form, md5) = pack_etag(etag);
        flags |= etag_form;
        if etag_form == ETAG_EXTRA {
            extra.etag = Some(etag.as_str().into());
        }
        let content_type_index = cx.content_types.index(content_type.as_deref());
        if content_type_index == NOT_INTERNED {
            extra.content_type = content_type.clone();
        }
        let (mtime_s, mtime_ns) = pack_time(attr.mtime);
        let (ctime_s, ctime_ns) = pack_time(attr.ctime);
        Packed {
            parent: *parent,
            lookups: *lookups,
            size: attr.size,
            valid: cx.expiry(*valid_until),
            crc64: crc64.unwrap_or(0),
            mtime_s,
            ctime_s,
            etag: md5,
            name: Name::new(name),
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
            mtime_ns,
            ctime_ns,
            nlink: attr.nlink,
            uid: attr.uid,
            gid: attr.gid,
            kids: *kids,
            perm: attr.perm,
            content_type: content_type_index,
            kind: attr.kind,
            object_type: *object_type,
            flags,
        }
    }

    /// The node `ino` this is.
    pub(super) fn unpack(&self, ino: Ino, cx: &PackContext) -> Node {
        let extra = self.extra.as_deref();
        let etag = match self.flags & ETAG_MASK {
            ETAG_EMPTY => String::new(),
            ETAG_UPPER => format!("\"{}\"", hex::encode_upper(self.etag)),
            ETAG_LOWER => format!("\"{}\"", hex::encode(self.etag)),
            _ => extra
                .and_then(|e| e.etag.as_deref())
                .unwrap_or_default()
                .to_string(),
        };
        let content_type = match self.content_type {
            NOT_INTERNED => extra.and_then(|e| e.content_type.clone()),
            i => cx.content_types.get(i).map(str::to_string),
        };
        Node {
            parent: self.parent,
            name: self.name.as_str().to_string(),
            attr: Attr {
                ino,
                kind: self.kind,
                size: self.size,
                mtime: unpack_time(self.mtime_s, self.mtime_ns),
                ctime: unpack_time(self.ctime_s, self.ctime_ns),
                nlink: self.nlink,
                perm: self.perm,
                uid: self.uid,
                gid: self.gid,
                from_meta: self.flag(FROM_META),
                rdev: extra.map_or(0, |e| e.rdev),
            },
            valid_until: cx.instant(self.valid),
            etag,
            crc64: self.flag(HAS_CRC).then_some(self.crc64),
            object_type: self.object_type,
            user_meta: extra.map(|e| e.user_meta.clone()).unwrap_or_default(),
            content_type,
            symlink_target: extra.and_then(|e| e.symlink_target.clone()),
            lookups: self.lookups,
            writers: self.writers(),
            local: self.local(),
            unlinked: self.unlinked(),
            handles: self.handles(),
            kids: self.kids,
        }
    }

    fn flag(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    fn set_flag(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    pub(super) fn kind(&self) -> FileKind {
        self.kind
    }

    pub(super) fn local(&self) -> bool {
        self.flag(LOCAL)
    }

    pub(super) fn set_local(&mut self, on: bool) {
        self.set_flag(LOCAL, on);
    }

    pub(super) fn unlinked(&self) -> bool {
        self.flag(UNLINKED)
    }

    pub(super) fn set_unlinked(&mut self, on: bool) {
        self.set_flag(UNLINKED, on);
    }

    pub(super) fn writers(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.writers)
    }

    pub(super) fn handles(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.handles)
    }

    /// Adds `delta` open handles (saturating at zero).
    pub(super) fn add_handles(&mut self, delta: i32) {
        let extra = self.extra.get_or_insert_with(Box::default);
        extra.handles = extra.handles.saturating_add_signed(delta);
        if extra.is_empty() {
            self.extra = None;
        }
    }

    /// Stored expiry (see [`PackContext::expiry`]).
    pub(super) fn valid(&self) -> u64 {
        self.valid
    }

    pub(super) fn set_valid(&mut self, stored: u64) {
        self.valid = stored;
    }

    pub(super) fn set_nlink(&mut self, nlink: u32) {
        self.nlink = nlink;
    }

    /// The name changes (rename); the caller keeps the name index right.
    pub(super) fn set_name(&mut self, name: &str) {
        self.name = Name::new(name);
    }

    /// Nothing holds this node any more: it may be freed.
    pub(super) fn unreferenced(&self) -> bool {
        self.lookups == 0
            && self.kids == 0
            && !self.local()
            && self.handles() == 0
            && self.writers() == 0
    }
}

/// User metadata keys that the attributes stand for (see the module docs).
fn is_attr_key(k: &str) -> bool {
    [META_MODE, META_UID, META_GID, META_MTIME, META_MTIME_NSEC].contains(&k)
}

/// How an ETag is stored: its form flag and, for a quoted MD5, its bytes.
fn pack_etag(etag: &str) -> (u8, [u8; 16]) {
    let mut md5 = [0u8; 16];
    if etag.is_empty() {
        return (ETAG_EMPTY, md5);
    }
    let hex = etag
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .filter(|h| h.len() == 32);
    let Some(hex) = hex else {
        return (ETAG_EXTRA, md5);
    };
    let upper = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    let lower = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if (upper || lower) && hex::decode_to_slice(hex, &mut md5).is_ok() {
        return (if upper { ETAG_UPPER } else { ETAG_LOWER }, md5);
    }
    (ETAG_EXTRA, [0; 16])
}

/// A time as whole seconds (negative before 1970) and nanoseconds `0..1e9`.
fn pack_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-s, 0),
                n => (-s - 1, 1_000_000_000 - n),
            }
        }
    }
}

fn unpack_time(s: i64, ns: u32) -> SystemTime {
    let t = if s >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(s.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(s.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(ns))))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            parent: 7,
            name: "n01440764_10026.JPEG".into(),
            attr: Attr {
                ino: 42,
                kind: FileKind::File,
                size: 123_456,
                mtime: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
                ctime: UNIX_EPOCH + Duration::new(1_700_000_001, 5),
                nlink: 1,
                perm: 0o640,
                uid: 1000,
                gid: 100,
                from_meta: true,
                rdev: 0,
            },
            valid_until: Some(Instant::now() + Duration::from_secs(60)),
            etag: "\"5B3C1A2E053D763E1B002CC607C5A0FE\"".into(),
            crc64: Some(0),
            object_type: ObjectType::Normal,
            user_meta: BTreeMap::new(),
            content_type: Some("image/jpeg".into()),
            symlink_target: None,
            lookups: 3,
            writers: 0,
            local: false,
            unlinked: false,
            handles: 0,
            kids: 0,
        }
    }

    fn round_trip(n: &Node, cx: &mut PackContext) -> (Packed, Node) {
        let p = Packed::pack(n, cx);
        let back = p.unpack(n.attr.ino, cx);
        (p, back)
    }

    fn same(a: &Node, b: &Node) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn a_plain_object_packs_small_and_without_extra() {
        // The per-object cost of a walk: keep it from creeping up (a Node is ~270 bytes).
        assert!(
            std::mem::size_of::<Packed>() <= 136,
            "{}",
            std::mem::size_of::<Packed>()
        );
        assert_eq!(std::mem::size_of::<Name>(), 24);
        let mut cx = PackContext::new();
        let n = node();
        let (p, back) = round_trip(&n, &mut cx);
        assert!(p.extra.is_none());
        assert!(matches!(p.name, Name::Inline(..)));
        same(&n, &back);
    }

    #[test]
    fn every_field_round_trips() {
        let mut cx = PackContext::new();
        let mut n = node();
        n.name = "a-name-longer-than-twenty-two-bytes-ü".into();
        n.attr.mtime = UNIX_EPOCH - Duration::new(86_400, 250);
        n.attr.ctime = UNIX_EPOCH - Duration::from_secs(3);
        n.attr.kind = FileKind::Symlink;
        n.attr.from_meta = false;
        n.valid_until = None;
        n.crc64 = None;
        n.object_type = ObjectType::Appendable;
        n.user_meta = [("color".to_string(), "blue".to_string())].into();
        n.symlink_target = Some("../t".into());
        n.writers = 2;
        n.handles = 5;
        n.local = true;
        n.unlinked = true;
        n.kids = 9;
        n.lookups = u64::MAX;
        n.attr.rdev = 0x0801;
        for etag in [
            "",
            "\"5b3c1a2e053d763e1b002cc607c5a0fe\"",
            "\"5B3C1A2E053D763E1B002CC607C5A0FE-3\"",
            "\"5b3C1A2E053D763E1B002CC607C5A0FE\"",
            "\"LINK0000000000000001\"",
            "\"01234567890123456789012345678901\"",
        ] {
            n.etag = etag.into();
            let (p, back) = round_trip(&n, &mut cx);
            assert!(matches!(p.name, Name::Heap(_)));
            same(&n, &back);
        }
        // Attribute keys are not kept: writers rebuild them from the attributes.
        n.user_meta.insert(META_MODE.into(), "33188".into());
        let (_, back) = round_trip(&n, &mut cx);
        assert_eq!(back.user_meta.len(), 1);
    }

    #[test]
    fn content_types_beyond_the_interner_are_kept_in_extra() {
        let mut cx = PackContext::new();
        let mut n = node();
        for i in 0..Interner::CAP + 3 {
            n.content_type = Some(format!("type/{i}"));
            let (p, back) = round_trip(&n, &mut cx);
            assert_eq!(p.extra.is_some(), i >= Interner::CAP);
            same(&n, &back);
        }
    }

    #[test]
    fn handles_live_in_extra_and_leave_it() {
        let mut cx = PackContext::new();
        let mut n = node();
        n.lookups = 0;
        let mut p = Packed::pack(&n, &mut cx);
        assert!(p.unreferenced());
        p.add_handles(1);
        assert!(!p.unreferenced() && p.extra.is_some());
        p.add_handles(-1);
        assert!(p.unreferenced() && p.extra.is_none());
    }
}
