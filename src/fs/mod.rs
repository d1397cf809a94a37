//! The filesystem core: POSIX-ish semantics over an [`ObjectStore`], without the kernel.
//!
//! [`Filesystem`] has one async method per FUSE operation, on inode numbers; the FUSE
//! adapter ([`crate::fuse`]) only converts arguments and replies. Everything here is
//! testable against [`crate::store::mock::MockStore`].
//!
//! # Semantics
//! The user-visible semantics (what each operation does, and the OSS requests it costs)
//! are the table in `docs/SEMANTICS.md`, one row per behaviour; `tests/semantics.rs`
//! checks every row against this core over the mock store.
//!
//! # Known limits
//! - A new file being streamed keeps a full local copy in `--cache-dir` until its last
//!   writer closes (see `local_copy`): writing a file needs that much local disk.
//! - Overwriting part of an existing file downloads it whole into the staging directory
//!   on the first write (not lazily by range); only pure appends avoid the download.
//! - A file renamed or deleted by another client while open for reading fails further
//!   uncached reads (`ENOENT`/`ESTALE`); the mount's own renames keep open writers right.
//! - Keys that are hidden (see above) still make their directory non-empty for rmdir.
//! - A file and a directory of the same name split across listing pages may show the
//!   file in one readdir; lookup says directory.
//! - Directory mode/owner/mtime come from the `dir/` marker's metadata (read by lookup);
//!   directories without a marker show the mount's `dir_mode` and the mount time.
//!
//! # Memory model
//! | what | kept | freed |
//! |---|---|---|
//! | per inode (`inode`) | a packed node (136 bytes: attributes, MD5 ETag, a name of up to 22 bytes inline, counters; other tools' user metadata, uncommon ETags and content types, link target and open handles in an optional box) and one `(parent, name)` binding | when the kernel forgets it and no handle, writer, local file or child node holds it; nodes a listing registered that the kernel never looked up: when their attributes expire, and beyond 16,384 of them |
//! | per directory | completeness (a number and an instant, plus the names of a small re-listed directory), the sibling order of small files for the last 32 listed directories (`small_file_readahead`), a lookup's first page for up to 1 s (≤ 64 pages, `lookup_page`) | with their TTL or the bound |
//! | per directory handle (`dir`) | the entries of about one LIST page not yet consumed, the continuation token | as the kernel reads on; at releasedir |
//! | per file handle (`handle`) | reader state | at release |
//! | per inode being written (`local_copy`) | its write state; streamed part buffers (charged to `--cache-size`); unflushed bytes in a local file | at the last writer's release |
//! | a tree walk (`walk`) | up to 50,000 queued directories (number and key) and 64 pages fetched ahead | when the walk stops (no listing used a fetched page for 2 s), or after 1 s for an unused page |
//! | listed entries for attribute batches (`attr_fanout`) | 16 bytes per listed file (and per directory whose attributes are guesses), in listing order, at most 1,000,000 | when a batch takes them, when the directory is listed again, and, once a forgotten walk leaves them pointing mostly at freed nodes, at a forget |
//! | negative cache | up to 100,000 names | cleared beyond that; entries expire with the TTL |
//! | kept listings (`listing_cache`) | per directory listed to the end: name, ETag and 40 bytes per entry, at most 1,000,000 entries over all directories | with the TTL (only the last second's with the default TTL), oldest first beyond the bound, expired ones on every forget and, after the kernel forgot a walk, by a task at their expiry |
//!
//! Freed memory goes back to the system (`malloc_trim`) when a forget frees many nodes,
//! when the sweep drops listings, and twice more after such a forget: once the rest of
//! the walk's state is gone (5 s) and once its idle connections closed (105 s). Between
//! those, what a walk freed can stay resident in malloc's heap.
//!
//! # Module map
//! [`error`] (FsError → errno), [`names`] (which keys are names), [`attr`] (stat ↔ user
//! metadata), [`inode`] (the inode table), `attr_fanout` (stored attributes of listed
//! entries, many HEADs at once), `listing_cache` (listings reused for a TTL), `owner`
//! (ownership of new entries, directory times), `new_entry` (what every creation shares:
//! key, owner, mode, times, inode insertion), `lookup` (lookup/getattr), `dir` (readdir,
//! mkdir, rmdir), `namespace` (unlink, rename, symlinks), `special` (mknod: FIFOs, sockets, devices), `setattr`, `copy` (large
//! copies), `append` (server-side appends), `small_file_readahead` (sibling read-ahead of small files; large files are prefetched by `read::prefetch`), `lookup_page` (a directory lookup's LIST page kept for the readdir that follows), `limits` (LIST page size and small-file limits shared by lookup, readdir and read-ahead), `walk` (listings ahead of tree walks), `process` (whose close commits), `handle` (the open-file table and the FUSE operations on it), `local_copy` (the local store of unflushed data, one write side per inode shared by its handles), `write_state` (the write state machine of a file being written), `commit` (upload at flush/fsync/release), `staging_file` (local
//! staging files).

mod append;
pub mod attr;
mod attr_fanout;
mod commit;
mod copy;
mod dir;
pub mod error;
mod handle;
pub mod inode;
mod limits;
mod listing_cache;
mod local_copy;
mod lookup;
mod lookup_page;
pub mod names;
mod namespace;
mod new_entry;
mod owner;
mod process;
mod setattr;
mod small_file_readahead;
mod special;
mod staging_file;
mod symlink;
mod walk;
mod write_back;
mod write_state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;

pub use attr::{Attr, AttrDefaults, FileKind, Ino, SpecialKind};
pub use error::FsError;
pub use inode::ROOT_INO;

use crate::read::{BlockCache, ReadConfig};
use crate::store::ObjectStore;
use crate::write::UploadConfig;
use dir::DirHandle;
use handle::OpenFile;
use inode::InodeTable;

pub type FsResult<T> = Result<T, FsError>;

/// Configuration of one mount's filesystem.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Key prefix shown as the root: "" for the whole bucket, or `dir/` (a trailing `/` is
    /// added when missing).
    pub prefix: String,
    /// Owner and permissions of objects without metadata.
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub read_only: bool,
    /// How long lookups (positive and negative) and attributes are cached.
    pub metadata_ttl: Duration,
    /// Where staging files for random writes live.
    pub cache_dir: PathBuf,
    pub read: ReadConfig,
    pub upload: UploadConfig,
    /// Other users may access the mount (every mount has default_permissions, see `crate::fuse`).
    pub allow_other: bool,
    /// Attributes of listed entries come from the listing and the defaults, with no HEAD
    /// per entry (the kernel gets them through readdirplus). Off: see `attr_fanout`.
    pub readdir_optimize: bool,
    /// With `readdir_optimize`: listed regular objects of 0 to this many bytes are
    /// HEADed while listing, since one may be an ossfs-style link (see `symlink`) or,
    /// empty, a FIFO, socket or device (see `special`); 0 lists them as files with no
    /// HEAD. Default 4095, every size a link text can have.
    pub readdir_check_size: u64,
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsConfig {
            prefix: String::new(),
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            read_only: false,
            metadata_ttl: Duration::from_secs(1),
            cache_dir: std::env::temp_dir(),
            read: ReadConfig::default(),
            upload: UploadConfig::default(),
            allow_other: false,
            readdir_optimize: false,
            readdir_check_size: symlink::MAX_LINK_TEXT as u64,
        }
    }
}

/// Who asks (from the FUSE request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// One directory entry returned by [`Filesystem::readdir`].
#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry {
    pub ino: Ino,
    /// Cookie of the *next* entry (what the kernel passes back to continue).
    pub offset: u64,
    pub kind: FileKind,
    pub name: String,
    /// Attributes (for readdirplus); `.` and `..` have them too.
    pub attr: Attr,
}

/// Time argument of setattr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

/// What setattr should change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// The handle when called as ftruncate/futimens.
    pub fh: Option<u64>,
}

/// statfs answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// The filesystem of one mount.
pub struct Filesystem {
    store: Arc<dyn ObjectStore>,
    cfg: FsConfig,
    rt: Handle,
    inodes: InodeTable,
    cache: Arc<BlockCache>,
    read_cfg: Arc<ReadConfig>,
    upload_cfg: Arc<UploadConfig>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// What inodes being written hold that OSS does not have yet (`local_copy`).
    local_copies: local_copy::LocalCopies,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirHandle>>>>,
    ahead: small_file_readahead::SiblingAhead,
    /// Directory lookups' LIST pages, for the readdir that follows.
    probed: lookup_page::ProbedPages,
    /// Listed entries whose stored attributes are still to be fetched (`attr_fanout`).
    fanout: attr_fanout::AttrFanout,
    /// Whole listings, reused by the readdirs of one TTL (`listing_cache`).
    listings: Arc<listing_cache::ListingCache>,
    /// Listings fetched ahead of a tree walk.
    walk: walk::WalkAhead,
    next_fh: AtomicU64,
    /// Files whose attributes were changed (chmod, chown, utimens) while an upload was
    /// pending: the commit makes sure the stored object carries them (see `setattr`).
    meta_pending: Mutex<std::collections::HashSet<Ino>>,
    /// mtime of directories without a marker object.
    mounted_at: SystemTime,
    /// A task will hand freed memory back once a forgotten walk's state is gone
    /// ([`Filesystem::trim_when_settled`]).
    settle_trim_scheduled: Arc<AtomicBool>,
    /// The durable write-back queue, with `--write-back` (see `write_back`).
    write_back: Option<Arc<crate::write_back::Queue>>,
}

impl std::fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filesystem")
            .field("bucket", &self.store.bucket())
            .field("prefix", &self.cfg.prefix)
            .field("inodes", &self.inodes.len())
            .finish_non_exhaustive()
    }
}

impl Filesystem {
    pub fn new(store: Arc<dyn ObjectStore>, cfg: FsConfig, rt: Handle) -> Self {
        let mut cfg = cfg;
        let p = cfg.prefix.trim_start_matches('/').to_string();
        cfg.prefix = if p.is_empty() || p.ends_with('/') {
            p
        } else {
            format!("{p}/")
        };
        let defaults = AttrDefaults {
            uid: cfg.uid,
            gid: cfg.gid,
            file_perm: cfg.file_mode & 0o7777,
            dir_perm: cfg.dir_mode & 0o7777,
        };
        let read_cfg = cfg.read.normalized();
        let cache = BlockCache::new(&read_cfg);
        let walk = walk::WalkAhead::new(store.clone(), rt.clone(), cfg.metadata_ttl);
        Filesystem {
            walk,
            inodes: InodeTable::new(cfg.prefix.clone(), cfg.metadata_ttl, defaults),
            cache,
            read_cfg: Arc::new(read_cfg),
            upload_cfg: Arc::new(cfg.upload.clone()),
            store,
            cfg,
            rt,
            files: Mutex::new(HashMap::new()),
            local_copies: local_copy::LocalCopies::default(),
            dirs: Mutex::new(HashMap::new()),
            ahead: small_file_readahead::SiblingAhead::default(),
            probed: lookup_page::ProbedPages::default(),
            fanout: attr_fanout::AttrFanout::default(),
            listings: Arc::default(),
            next_fh: AtomicU64::new(1),
            meta_pending: Mutex::new(std::collections::HashSet::new()),
            mounted_at: SystemTime::now(),
            settle_trim_scheduled: Arc::default(),
            write_back: None,
        }
    }

    /// A filesystem with durable write-back into `wb` (see `write_back`): its uploader
    /// runs on `rt` until the filesystem is dropped. The store's recovered records must
    /// have been finished first (`crate::write_back::recovery`).
    pub fn with_write_back(
        store: Arc<dyn ObjectStore>,
        cfg: FsConfig,
        rt: Handle,
        wb: Arc<crate::write_back::WriteBackStore>,
    ) -> Arc<Self> {
        let mut fs = Filesystem::new(store, cfg, rt.clone());
        let queue = crate::write_back::Queue::new(wb);
        fs.write_back = Some(queue.clone());
        let fs = Arc::new(fs);
        rt.spawn(crate::write_back::uploader::run(
            queue,
            Arc::downgrade(&fs),
            crate::write_back::uploader::DEFAULT_PARALLEL,
        ));
        fs
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    pub fn runtime(&self) -> &Handle {
        &self.rt
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The size last seen for `ino` (no request).
    pub fn cached_size(&self, ino: Ino) -> Option<u64> {
        self.inodes.get(ino).map(|n| n.attr.size)
    }

    /// How long the kernel may cache entries and attributes.
    pub fn ttl(&self) -> Duration {
        self.cfg.metadata_ttl
    }

    /// The shared block cache (for stats).
    pub fn block_cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// Number of open file handles.
    pub fn open_handles(&self) -> usize {
        lock(&self.files).len()
    }

    fn alloc_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    pub async fn statfs(&self) -> FsResult<StatFs> {
        // OSS has no capacity limit; report something huge but far from overflowing
        // 64-bit arithmetic in df and friends.
        const BLOCKS: u64 = 1 << 50;
        Ok(StatFs {
            blocks: BLOCKS,
            bfree: BLOCKS,
            bavail: BLOCKS,
            files: 1 << 40,
            ffree: 1 << 40,
            bsize: attr::BLKSIZE,
            namelen: names::NAME_MAX as u32,
            frsize: attr::BLKSIZE,
        })
    }

    /// Kernel `forget`: the node is freed once nothing holds it (see `inode`).
    pub fn forget(&self, ino: Ino, nlookup: u64) {
        self.forget_many(&[(ino, nlookup)]);
    }

    /// Kernel `batch_forget`: `(ino, nlookup)` pairs.
    pub fn forget_many(&self, list: &[(Ino, u64)]) {
        if self.inodes.forget_many(list) {
            // Many nodes were freed: hand their memory back to the system, with that of
            // the listings kept for the walk that ended.
            self.listings.drop_expired();
            // Hints about freed nodes, once they are most of the pending list (so a
            // walk forgotten in many batches costs about two passes over it).
            if self.fanout.pending() > 2 * self.inodes.len().max(512) {
                self.inodes.with_presence(|alive| self.fanout.prune(alive));
            }
            self.fanout.shrink();
            crate::read::cache::release_free_memory();
            self.trim_when_settled();
        } else {
            // Without this, whether a walk's listings were freed depended on whether its
            // last forget batch came before or after their TTL ran out.
            self.listings.drop_oldest_expired();
        }
        self.sweep_listings_at_expiry();
    }

    /// The trim at a forget comes before the rest of a walk's state goes: its walk-ahead
    /// pages and lookup pages (≤ 2 s), the listings kept for the TTL, the idle keep-alive
    /// connections of its parallel requests (the pool closes them after 50 s idle, checked
    /// every 50 s). What they free lies between live allocations, so malloc keeps it
    /// resident until asked again (measured: a 100,000-object walk left the heap 9-13 MB
    /// resident with ~3 MB live). One task asks twice: once that state is gone, and once
    /// the connections closed.
    fn trim_when_settled(&self) {
        const AFTER_WALK_STATE: Duration = Duration::from_secs(5);
        const AFTER_IDLE_CONNECTIONS: Duration = Duration::from_secs(105);
        if self.settle_trim_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let scheduled = self.settle_trim_scheduled.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(AFTER_WALK_STATE).await;
            // A forget from now on schedules its own round.
            scheduled.store(false, Ordering::Release);
            crate::read::cache::release_free_memory();
            tokio::time::sleep(AFTER_IDLE_CONNECTIONS - AFTER_WALK_STATE).await;
            crate::read::cache::release_free_memory();
        });
    }

    /// After a walk was forgotten, the listings it kept for the TTL are still live (they
    /// were fresh at the forget) and no later forget may come to drop them: a task drops
    /// them as they expire and hands the memory back, then ends when none is kept. Not
    /// for long TTLs, where keeping listings is the point (`--metadata-ttl indefinite`).
    fn sweep_listings_at_expiry(&self) {
        const LONGEST_WAIT: Duration = Duration::from_secs(600);
        if self.listings.sweep_scheduled() {
            return;
        }
        let until_newest = |listings: &listing_cache::ListingCache| {
            let wait = listings
                .newest_expiry()?
                .saturating_duration_since(std::time::Instant::now());
            (wait <= LONGEST_WAIT).then_some(wait)
        };
        let Some(mut wait) = until_newest(&self.listings) else {
            return;
        };
        if !self.listings.claim_sweep() {
            return;
        }
        let listings = Arc::downgrade(&self.listings);
        self.rt.spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                let Some(listings) = listings.upgrade() else {
                    return;
                };
                if listings.drop_expired() > 0 {
                    crate::read::cache::release_free_memory();
                }
                // Listings kept since (a walk still going) get the next round.
                match until_newest(&listings) {
                    Some(next) => wait = next.max(Duration::from_millis(10)),
                    None => {
                        listings.sweep_done();
                        return;
                    }
                }
            }
        });
    }

    /// Number of inodes in the table (what the `ossmount_inodes` gauge shows).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// Counts a kernel reference taken by readdirplus for an entry it accepted.
    pub fn note_lookup(&self, ino: Ino) {
        self.inodes.add_lookup(ino, 1);
    }

    /// Hard links cannot be represented in OSS.
    pub async fn link(
        &self,
        _ino: Ino,
        _new_parent: Ino,
        _new_name: &std::ffi::OsStr,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        Err(FsError::NotPermitted("hard links are not supported by OSS"))
    }
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        // Lets the uploader notice the filesystem is gone (see `write_back`).
        if let Some(q) = &self.write_back {
            q.wake();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
