//! The seam to the filesystem below the command: a [`Config`] becomes the
//! [`crate::fs`] configuration and a FUSE mount ([`crate::fuse`]). Kept in one file so
//! that wiring them is a local change (the OSS client is built in `connect`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::Config;
use crate::fs::{Filesystem, FsConfig};
use crate::fuse::{self, MountHandle, MountOptions};
use crate::mount_check::{MountpointError, find_mount, lazy_unmount};
use crate::read::ReadConfig;
use crate::store::ObjectStore;
use crate::write::UploadConfig;
use crate::write_back::recovery::recover;
use crate::write_back::{WriteBackQueue, WriteBackStatus, WriteBackStore, default_max_size};

use super::error::CliError;
use super::serve::MountedFilesystem;

/// Mounts the filesystem at `config.mountpoint`, serving `store`.
pub async fn mount(
    config: &Config,
    store: Arc<dyn ObjectStore>,
) -> Result<Box<dyn MountedFilesystem>, CliError> {
    let fs_config = fs_config(config)?;
    let fs = if config.tuning.write_back {
        let wb = open_write_back(config, &store, &fs_config).await?;
        Filesystem::with_write_back(store, fs_config, tokio::runtime::Handle::current(), wb)
    } else {
        Arc::new(Filesystem::new(
            store,
            fs_config,
            tokio::runtime::Handle::current(),
        ))
    };
    // The mount table shows the canonical path; compare against that later.
    let mountpoint = std::fs::canonicalize(&config.mountpoint).map_err(|source| {
        CliError::Mountpoint(MountpointError::Io {
            path: config.mountpoint.clone(),
            source,
        })
    })?;
    let opts = MountOptions {
        fsname: config.fs_name(),
        read_only: config.mount.read_only,
        allow_other: config.mount.allow_other,
        allow_root: config.mount.allow_root,
        max_readahead: u32::try_from(config.tuning.read_ahead).unwrap_or(u32::MAX),
        direct_io: config.tuning.direct_io,
        ..MountOptions::for_bucket(&config.bucket)
    };
    let fsname = opts.fsname.clone();
    let (fs_for_mount, mp) = (fs.clone(), mountpoint.clone());
    let handle = tokio::task::spawn_blocking(move || fuse::mount(fs_for_mount, &mp, &opts))
        .await
        .map_err(|e| CliError::Mount(format!("mount task failed: {e}")))?
        .map_err(|e| CliError::Mount(e.to_string()))?;
    Ok(Box::new(FuseMount {
        handle: Some(handle),
        fs,
        mountpoint,
        fsname,
        unmounted_externally: false,
    }))
}

/// The directory of the write-back store: `--cache-dir`/write-back when given, else one
/// per endpoint, bucket and prefix under /var/cache/ossmount.
pub fn write_back_dir(config: &Config) -> PathBuf {
    match &config.tuning.cache_dir {
        Some(dir) => dir.join("write-back"),
        None => {
            let e = &config.endpoint;
            let endpoint = e
                .endpoint
                .clone()
                .or_else(|| e.region.clone())
                .unwrap_or_default();
            WriteBackStore::default_dir(&endpoint, &config.bucket, &config.prefix)
        }
    }
}

/// Opens (locks) the write-back store and finishes what a previous mount left in it,
/// before anything is mounted (see `crate::write_back::recovery`).
async fn open_write_back(
    config: &Config,
    store: &Arc<dyn ObjectStore>,
    fs_config: &FsConfig,
) -> Result<Arc<WriteBackStore>, CliError> {
    let dir = write_back_dir(config);
    let max = config
        .tuning
        .write_back_max_size
        .unwrap_or_else(|| default_max_size(&dir));
    let (wb, live) = WriteBackStore::open(&dir, max).map_err(|e| {
        CliError::Mount(format!(
            "cannot open the write-back store {}: {e}",
            dir.display()
        ))
    })?;
    if wb.on_tmpfs() {
        tracing::warn!(
            store = %dir.display(),
            "the write-back store is on tmpfs: pending uploads survive a crash of ossmount, not a reboot"
        );
    }
    tracing::info!(store = %dir.display(), max_size = max, "write-back on");
    recover(&wb, store.clone(), &fs_config.upload, live)
        .await
        .map_err(|e| CliError::Mount(e.to_string()))?;
    Ok(Arc::new(wb))
}

/// The filesystem settings for `config`.
pub fn fs_config(config: &Config) -> Result<FsConfig, CliError> {
    let defaults = FsConfig::default();
    let t = &config.tuning;
    let cache_dir = t.cache_dir.clone().unwrap_or(defaults.cache_dir);
    // Staging files and the disk read cache hold bucket data: a directory made here is
    // private to the mount's user (an existing one, such as /tmp, is left as it is; the
    // files themselves are 0600 either way).
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cache_dir)
    }
    .map_err(|source| {
        CliError::Mount(format!(
            "cannot create cache directory {}: {source}",
            cache_dir.display()
        ))
    })?;
    let to_mode = |m: u32| u16::try_from(m & 0o7777).unwrap_or(0o644);
    Ok(FsConfig {
        prefix: config.prefix.clone(),
        uid: config.mount.uid.unwrap_or(defaults.uid),
        gid: config.mount.gid.unwrap_or(defaults.gid),
        file_mode: to_mode(config.mount.file_mode),
        dir_mode: to_mode(config.mount.dir_mode),
        read_only: config.mount.read_only,
        metadata_ttl: t.metadata_ttl,
        read: ReadConfig {
            cache_size: t.cache_size,
            disk_cache_dir: (t.disk_cache_size > 0).then(|| cache_dir.join("read-cache")),
            disk_cache_size: t.disk_cache_size,
            ..ReadConfig::default()
        },
        upload: UploadConfig {
            part_size: t.part_size,
            max_concurrency: t.max_concurrency,
            ..UploadConfig::default()
        },
        cache_dir,
        allow_other: config.mount.allow_other,
        readdir_optimize: config.mount.readdir_optimize,
        readdir_check_size: config
            .mount
            .readdir_check_size
            .unwrap_or(FsConfig::default().readdir_check_size),
    })
}

/// A live FUSE mount ([`fuse::MountHandle`]) plus what the shutdown loop needs.
struct FuseMount {
    handle: Option<MountHandle>,
    fs: Arc<Filesystem>,
    mountpoint: PathBuf,
    fsname: String,
    /// Set once the mount table no longer shows our mount (`umount` from outside).
    unmounted_externally: bool,
}

/// The write-back queue together with the filesystem its uploader works for. The
/// uploader holds the filesystem weakly, so that dropping a mount stops it; the drain
/// after `umount` needs it to go on, so whoever watches the queue keeps the filesystem
/// alive (the FUSE session has dropped its reference by then).
struct DrainHandle {
    queue: Arc<dyn WriteBackQueue>,
    _fs: Arc<Filesystem>,
}

impl WriteBackQueue for DrainHandle {
    fn status(&self) -> WriteBackStatus {
        self.queue.status()
    }
    fn watch(&self) -> tokio::sync::watch::Receiver<WriteBackStatus> {
        self.queue.watch()
    }
}

/// How often the mount table is checked for an external `umount`.
const UNMOUNT_POLL: Duration = Duration::from_millis(500);

impl MountedFilesystem for FuseMount {
    fn unmounted(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                tokio::time::sleep(UNMOUNT_POLL).await;
                let ours = find_mount(&self.mountpoint)
                    .map(|entry| entry.is_some_and(|e| e.source == self.fsname))
                    // Cannot read the table: keep serving rather than guess.
                    .unwrap_or(true);
                if !ours {
                    self.unmounted_externally = true;
                    return;
                }
            }
        })
    }

    fn flush(&mut self, timeout: Duration) -> BoxFuture<'_, usize> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut logged = false;
            let mut ended_polls = 0;
            loop {
                let open = self.fs.open_handles();
                if open == 0 || tokio::time::Instant::now() >= deadline {
                    return open;
                }
                // After a lazy unmount the kernel drops the connection when the last user
                // lets go, and the releases of files still open then never arrive. A few
                // polls of grace let releases the session already dispatched run first.
                if self.handle.as_ref().is_some_and(MountHandle::session_ended) {
                    ended_polls += 1;
                    if ended_polls > 3 {
                        tracing::warn!(
                            open,
                            "the kernel ended the FUSE session with files still open"
                        );
                        return open;
                    }
                }
                if !logged {
                    tracing::info!(open, "waiting for open files to be closed and uploaded");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn write_back(&self) -> Option<Arc<dyn WriteBackQueue>> {
        let queue = self.fs.write_back_queue()?;
        Some(Arc::new(DrainHandle {
            queue,
            _fs: self.fs.clone(),
        }))
    }

    fn unmount(mut self: Box<Self>) -> Result<(), String> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        match handle.unmount() {
            Ok(()) => Ok(()),
            // The kernel already ended the session; a second umount can only fail.
            Err(e) if self.unmounted_externally => {
                tracing::debug!(error = %e, "session already unmounted");
                Ok(())
            }
            Err(e) => {
                // Busy (a process still has files open): detach lazily so the mountpoint
                // is free; the remaining users get errors once we exit.
                tracing::warn!(error = %e, "unmount failed; detaching lazily");
                lazy_unmount(&self.mountpoint)
            }
        }
    }
}
