//! The fuser `Filesystem` implementation: one handler per FUSE operation, each converting
//! its arguments, spawning the core operation on the runtime and replying from the task.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use tracing::Instrument;

use super::{DirectIo, MAX_IO, MountOptions};
use crate::fs::{
    Attr, Ctx, FileKind, Filesystem, FsError, FsResult, SetAttr, SpecialKind, TimeSet,
};

/// The fuser `Filesystem` implementation.
pub(super) struct FuseAdapter {
    fs: Arc<Filesystem>,
    max_readahead: u32,
    direct_io: DirectIo,
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Special(SpecialKind::Fifo) => FileType::NamedPipe,
        FileKind::Special(SpecialKind::Socket) => FileType::Socket,
        FileKind::Special(SpecialKind::CharDevice) => FileType::CharDevice,
        FileKind::Special(SpecialKind::BlockDevice) => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks(),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink(),
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: crate::fs::attr::IO_BLKSIZE,
        flags: 0,
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EROFS => "EROFS",
        libc::ESTALE => "ESTALE",
        libc::EIO => "EIO",
        libc::EINVAL => "EINVAL",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EBADF => "EBADF",
        libc::EFBIG => "EFBIG",
        _ => "other",
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
    }
}

impl FuseAdapter {
    pub(super) fn new(fs: Arc<Filesystem>, opts: &MountOptions) -> Self {
        FuseAdapter {
            fs,
            max_readahead: opts.max_readahead.max(4096),
            direct_io: opts.direct_io,
        }
    }

    fn ttl(&self) -> Duration {
        self.fs.ttl()
    }

    /// Runs `op` on the runtime; `reply` receives its result exactly once.
    fn spawn<T, Fut>(
        &self,
        op: &'static str,
        ino: u64,
        make: impl FnOnce(Arc<Filesystem>) -> Fut,
        reply: impl FnOnce(FsResult<T>) + Send + 'static,
    ) where
        T: Send + 'static,
        Fut: Future<Output = FsResult<T>> + Send + 'static,
    {
        let fut = make(self.fs.clone());
        let span = tracing::debug_span!("fuse", op, ino);
        let mut task = Box::pin(
            async move {
                let start = Instant::now();
                let result = fut.await;
                let label = match &result {
                    Ok(_) => "ok",
                    Err(e) => {
                        if e.is_expected() {
                            tracing::debug!(error = %e, "failed");
                        } else {
                            tracing::warn!(error = %e, errno = e.errno(), "failed");
                        }
                        errno_name(e.errno())
                    }
                };
                ::metrics::counter!(crate::metrics::FUSE_OPS, "op" => op, "result" => label)
                    .increment(1);
                ::metrics::histogram!(crate::metrics::FUSE_OP_SECONDS, "op" => op)
                    .record(start.elapsed().as_secs_f64());
                reply(result);
            }
            .instrument(span),
        );
        // Most requests finish without waiting (a flush or release of a reader, a read
        // the prefetcher already holds, a cached getattr): run the task once right here
        // and spare them two thread hand-offs, which were most of the mount's CPU for
        // small files (`perf`: a quarter in context switches). A task that has to wait
        // continues on the runtime; its first real poll there replaces the no-op waker.
        let rt = self.fs.runtime();
        let _entered = rt.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if task.as_mut().poll(&mut cx).is_pending() {
            rt.spawn(task);
        }
    }
}

fn err(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        if let Err(max) = config.set_max_readahead(self.max_readahead) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let mut flags = vec![
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // mmap of a file opened with FOPEN_DIRECT_IO (kernel 6.6+).
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ];
        // READDIRPLUS hands the kernel every entry's attributes, which a listing only
        // guesses (no x-oss-meta-*). fuser 0.18 writes the entry's inode number into both
        // the direntplus nodeid and the dirent's d_ino, so an entry "without attributes"
        // (nodeid 0) would also reach programs with d_ino 0. So only readdir_optimize,
        // which accepts listing attributes, negotiates it; otherwise plain READDIR gives
        // names and types, and stat goes through LOOKUP (see `fs::attr_fanout`).
        if self.fs.config().readdir_optimize {
            flags.push(InitFlags::FUSE_DO_READDIRPLUS);
            flags.push(InitFlags::FUSE_READDIRPLUS_AUTO);
        }
        for flag in flags {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "kernel does not support FUSE capability");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_os_string();
        let ttl = self.ttl();
        self.spawn(
            "lookup",
            parent.0,
            |fs| async move { fs.lookup(parent.0, &name).await },
            move |r| match r {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    // batch_forget: fuser's default calls `forget` for each node (its ForgetOne type is
    // private in 0.18).

    fn getattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: Option<fuser::FileHandle>,
        reply: ReplyAttr,
    ) {
        let ttl = self.ttl();
        self.spawn(
            "getattr",
            ino.0,
            |fs| async move { fs.getattr(ino.0).await },
            move |r| match r {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<fuser::FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            fh: fh.map(|f| f.0),
        };
        let ttl = self.ttl();
        self.spawn(
            "setattr",
            ino.0,
            |fs| async move { fs.setattr(ino.0, set).await },
            move |r| match r {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(
            "readlink",
            ino.0,
            |fs| async move { fs.readlink(ino.0).await },
            move |r| match r {
                Ok(t) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str())),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, c, ttl) = (name.to_os_string(), ctx(req), self.ttl());
        self.spawn(
            "mknod",
            parent.0,
            |fs| async move { fs.mknod(&c, parent.0, &name, mode, umask, rdev).await },
            move |r| match r {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, c, ttl) = (name.to_os_string(), ctx(req), self.ttl());
        self.spawn(
            "mkdir",
            parent.0,
            |fs| async move { fs.mkdir(&c, parent.0, &name, mode, umask).await },
            move |r| match r {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_os_string();
        self.spawn(
            "unlink",
            parent.0,
            |fs| async move { fs.unlink(parent.0, &name).await },
            reply_empty(reply),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_os_string();
        self.spawn(
            "rmdir",
            parent.0,
            |fs| async move { fs.rmdir(parent.0, &name).await },
            reply_empty(reply),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target, c, ttl) = (
            link_name.to_os_string(),
            target.to_path_buf(),
            ctx(req),
            self.ttl(),
        );
        self.spawn(
            "symlink",
            parent.0,
            |fs| async move { fs.symlink(&c, parent.0, &name, &target).await },
            move |r| match r {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname): (OsString, OsString) = (name.to_os_string(), newname.to_os_string());
        let flags = flags.bits();
        self.spawn(
            "rename",
            parent.0,
            |fs| async move {
                fs.rename(parent.0, &name, newparent.0, &newname, flags)
                    .await
            },
            reply_empty(reply),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.to_os_string();
        let ttl = self.ttl();
        self.spawn(
            "link",
            ino.0,
            |fs| async move { fs.link(ino.0, newparent.0, &newname).await },
            move |r| match r {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        let (policy, fs, pid) = (self.direct_io, self.fs.clone(), req.pid());
        self.spawn(
            "open",
            ino.0,
            |fs| async move { fs.open_as(pid, ino.0, flags.0).await },
            move |r| match r {
                // No KEEP_CACHE: data is ETag-pinned per handle, the page cache per open.
                Ok(fh) => {
                    let size = fs.cached_size(ino.0).unwrap_or(0);
                    reply.opened(fuser::FileHandle(fh), open_flags(policy, flags.0, size));
                    // A directory's small files read in order: fetch the next ones.
                    if let Some((dir, names)) = fs.read_ahead_plan(ino.0, flags.0) {
                        let rt = fs.runtime().clone();
                        rt.spawn(async move { fs.read_ahead(dir, names).await });
                    }
                }
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(
            "read",
            ino.0,
            |fs| async move { fs.read(fh.0, offset, size).await },
            move |r| match r {
                Ok(b) => reply.data(&b),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let (data, pid, uid) = (bytes::Bytes::copy_from_slice(data), req.pid(), req.uid());
        self.spawn(
            "write",
            ino.0,
            |fs| async move { fs.write_by(pid, uid, fh.0, offset, data).await },
            move |r| match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        let pid = req.pid();
        self.spawn(
            "flush",
            ino.0,
            |fs| async move { fs.flush_as(pid, fh.0).await },
            reply_empty(reply),
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            "release",
            ino.0,
            |fs| async move { fs.release(fh.0).await },
            reply_empty(reply),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            "fsync",
            ino.0,
            |fs| async move { fs.fsync(fh.0).await },
            reply_empty(reply),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: fuser::OpenFlags, reply: ReplyOpen) {
        self.spawn(
            "opendir",
            ino.0,
            |fs| async move { fs.opendir(ino.0).await },
            move |r| match r {
                Ok(fh) => reply.opened(fuser::FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(
            "readdir",
            ino.0,
            |fs| async move { fs.readdir(ino.0, fh.0, offset).await },
            move |r| match r {
                Ok(entries) => {
                    for e in entries {
                        if reply.add(INodeNo(e.ino), e.offset, file_type(e.kind), &e.name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.ttl();
        let fs2 = self.fs.clone();
        self.spawn(
            "readdirplus",
            ino.0,
            |fs| async move { fs.readdir(ino.0, fh.0, offset).await },
            move |r| match r {
                Ok(entries) => {
                    for e in entries {
                        if reply.add(
                            INodeNo(e.ino),
                            e.offset,
                            &e.name,
                            &ttl,
                            &file_attr(&e.attr),
                            Generation(0),
                        ) {
                            break;
                        }
                        // The kernel takes a reference on every entry but . and ..
                        if e.name != "." && e.name != ".." {
                            fs2.note_lookup(e.ino);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            "releasedir",
            ino.0,
            |fs| async move { fs.releasedir(fh.0).await },
            reply_empty(reply),
        );
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: fuser::FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are synchronous requests to OSS: nothing to flush.
        reply.ok();
    }

    /// No ioctl is supported. ENOTTY is what a regular file answers to terminal ioctls
    /// (Python's `open` asks TCGETS of every file it opens); fuser's default would answer
    /// ENOSYS and log a warning for each.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: fuser::FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.spawn(
            "statfs",
            ino.0,
            |fs| async move { fs.statfs().await },
            move |r| match r {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
                ),
                Err(e) => reply.error(err(&e)),
            },
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, c, ttl) = (name.to_os_string(), ctx(req), self.ttl());
        let fopen = open_flags(self.direct_io, flags, 0);
        self.spawn(
            "create",
            parent.0,
            |fs| async move { fs.create(&c, parent.0, &name, mode, umask, flags).await },
            move |r| match r {
                Ok((a, fh)) => reply.created(
                    &ttl,
                    &file_attr(&a),
                    Generation(0),
                    fuser::FileHandle(fh),
                    fopen,
                ),
                Err(e) => reply.error(err(&e)),
            },
        );
    }
}

/// `FOPEN_DIRECT_IO` for read-only opens the policy covers and for write-only opens
/// (unless `never`): FUSE sends every write(2) as its own request with or without the
/// page cache (there is no write-back cache here), so bypassing it only saves the copy
/// into freshly allocated cache pages. Read-write opens keep the page cache.
fn open_flags(policy: DirectIo, flags: i32, size: u64) -> FopenFlags {
    let direct = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => policy.applies(size),
        libc::O_WRONLY => policy != DirectIo::Never,
        _ => false,
    };
    if direct {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

/// The reply of every operation whose success carries no data.
fn reply_empty(reply: ReplyEmpty) -> impl FnOnce(FsResult<()>) + Send + 'static {
    move |r| match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(&e)),
    }
}
