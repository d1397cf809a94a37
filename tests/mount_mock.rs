//! Real mounts through the kernel against MockStore: std::fs and shell tools.
//!
//! Every test mounts on its own temporary directory; `Mounted` unmounts on drop (also
//! when the test panics), falling back to `umount -l` so no stale mount survives.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ossmount::fs::{Filesystem, FsConfig};
use ossmount::fuse::{MountHandle, MountOptions, mount};
use ossmount::store::mock::MockStore;
use ossmount::write::UploadConfig;

struct Mounted {
    handle: Option<MountHandle>,
    dir: tempfile::TempDir,
    store: Arc<MockStore>,
    rt: Option<tokio::runtime::Runtime>,
    _staging: tempfile::TempDir,
}

impl Mounted {
    fn new() -> Mounted {
        Self::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut FsConfig)) -> Mounted {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store = Arc::new(MockStore::new("mnt-bucket"));
        let staging = tempfile::tempdir().expect("staging dir");
        let dir = tempfile::tempdir().expect("mountpoint");
        let mut cfg = FsConfig {
            uid: 0,
            gid: 0,
            metadata_ttl: Duration::from_secs(1),
            cache_dir: staging.path().to_path_buf(),
            upload: UploadConfig {
                part_size: 1 << 20,
                max_concurrency: 4,
                single_put_threshold: 1 << 20,
            },
            ..FsConfig::default()
        };
        f(&mut cfg);
        let mut opts = MountOptions::for_bucket("mnt-bucket");
        opts.read_only = cfg.read_only;
        let fs = Arc::new(Filesystem::new(store.clone(), cfg, rt.handle().clone()));
        let handle = mount(fs, dir.path(), &opts).expect("mount");
        Mounted {
            handle: Some(handle),
            dir,
            store,
            rt: Some(rt),
            _staging: staging,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn sh(&self, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take()
            && h.unmount().is_err()
        {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.contains(&p.display().to_string()))
        .unwrap_or(false)
}

#[test]
fn std_fs_operations() {
    let m = Mounted::new();
    m.store.put("existing/a.txt", "alpha");
    assert_eq!(
        std::fs::read_to_string(m.path("existing/a.txt")).expect("read"),
        "alpha"
    );
    std::fs::write(m.path("hello.txt"), b"hello world").expect("write");
    assert_eq!(
        m.store.get("hello.txt").as_deref(),
        Some(&b"hello world"[..])
    );
    let md = std::fs::metadata(m.path("hello.txt")).expect("stat");
    assert_eq!(md.len(), 11);
    assert!(md.is_file());

    std::fs::create_dir(m.path("d")).expect("mkdir");
    assert!(m.store.contains("d/"));
    std::fs::write(m.path("d/x"), b"x").expect("write");
    assert_eq!(
        std::fs::remove_dir(m.path("d"))
            .expect_err("not empty")
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    std::fs::rename(m.path("d/x"), m.path("d/y")).expect("rename");
    assert!(m.store.contains("d/y") && !m.store.contains("d/x"));
    std::fs::remove_file(m.path("d/y")).expect("unlink");
    std::fs::remove_dir(m.path("d")).expect("rmdir");
    assert!(!m.store.contains("d/"));

    let mut names: Vec<String> = std::fs::read_dir(m.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["existing", "hello.txt"]);

    std::fs::set_permissions(m.path("hello.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    assert_eq!(
        m.store.object("hello.txt").expect("obj").user_meta["mode"],
        (libc::S_IFREG | 0o600).to_string()
    );
    assert_eq!(
        std::fs::metadata(m.path("hello.txt")).expect("stat").mode() & 0o7777,
        0o600
    );
    let err = std::fs::hard_link(m.path("hello.txt"), m.path("hard")).expect_err("link");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert_eq!(
        std::fs::metadata(m.path("nope"))
            .expect_err("enoent")
            .raw_os_error(),
        Some(libc::ENOENT)
    );
}

#[test]
fn shell_tools() {
    let m = Mounted::new();
    m.sh("mkdir -p src/sub && printf 'one\\n' > src/one.txt && printf 'two' > src/sub/two.txt");
    m.sh("cp -r src copy && mv copy moved && cat moved/one.txt moved/sub/two.txt > cat.out");
    assert_eq!(m.store.get("cat.out").as_deref(), Some(&b"one\ntwo"[..]));
    assert!(m.store.contains("moved/sub/two.txt"));
    assert!(!m.store.contains("copy/one.txt"));

    m.sh("dd if=/dev/zero of=zeros bs=64k count=40 status=none");
    assert_eq!(m.store.get("zeros").map(|b| b.len()), Some(40 * 65536));
    m.sh(
        "truncate -s 100 zeros && echo appended >> src/one.txt && touch -d @1500000000 src/one.txt",
    );
    assert_eq!(m.store.get("zeros").map(|b| b.len()), Some(100));
    assert_eq!(
        m.store.get("src/one.txt").as_deref(),
        Some(&b"one\nappended\n"[..])
    );
    assert_eq!(
        m.store.object("src/one.txt").expect("obj").user_meta["mtime"],
        "1500000000"
    );
    m.sh(
        "ln -s src/one.txt link && test \"$(readlink link)\" = src/one.txt && cat link > via_link",
    );
    assert_eq!(
        m.store.get("via_link").as_deref(),
        Some(&b"one\nappended\n"[..])
    );

    let ls = m.sh("ls -l src");
    assert!(ls.contains("one.txt") && ls.contains("sub"), "{ls}");
    m.sh("rm -r moved && rm zeros");
    assert!(!m.store.keys().iter().any(|k| k.starts_with("moved")));
}

#[test]
fn tar_extract_and_reread() {
    let m = Mounted::new();
    let work = tempfile::tempdir().expect("tmp");
    let src = work.path().join("tree");
    std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
    for i in 0..20 {
        std::fs::write(
            src.join(format!("a/f{i}")),
            vec![b'a' + (i % 26) as u8; 1000 * i],
        )
        .expect("w");
    }
    std::fs::write(src.join("a/b/big"), vec![7u8; 2_500_000]).expect("w");
    let tarball = work.path().join("t.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(work.path())
        .arg("tree")
        .status()
        .expect("tar c");
    assert!(st.success());
    m.sh(&format!("tar -xf {}", tarball.display()));
    assert_eq!(
        m.store.get("tree/a/b/big").map(|b| b.len()),
        Some(2_500_000)
    );
    // Re-read through the mount and compare with the original tree.
    let st = Command::new("diff")
        .arg("-r")
        .arg(&src)
        .arg(m.path("tree"))
        .status()
        .expect("diff");
    assert!(st.success(), "tree differs after extract");
}

#[test]
fn ls_l_with_readdir_optimize_costs_lists_not_heads() {
    // A long TTL: on a loaded machine 1 s can pass between `stat` and `ls`.
    let m = Mounted::with(|c| {
        c.metadata_ttl = Duration::from_secs(60);
        c.readdir_optimize = true;
    });
    for i in 0..300 {
        m.store.put(&format!("many/f{i:04}"), vec![1u8; i]);
    }
    m.sh("stat many > /dev/null");
    m.store.reset_counts();
    let out = m.sh("ls -l many | wc -l");
    assert_eq!(out.trim(), "301"); // "total" line + 300 entries
    assert_eq!(m.store.count("HeadObject"), 0, "{:?}", m.store.counts());
    assert!(
        m.store.count("ListObjectsV2") <= 3,
        "{:?}",
        m.store.counts()
    );
}

#[test]
fn read_only_mount() {
    let m = Mounted::with(|c| c.read_only = true);
    m.store.put("r.txt", "ro");
    assert_eq!(
        std::fs::read_to_string(m.path("r.txt")).expect("read"),
        "ro"
    );
    let err = std::fs::write(m.path("w.txt"), b"x").expect_err("rofs");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn unmount_on_drop() {
    let m = Mounted::new();
    let p = m.dir.path().to_path_buf();
    assert!(is_mounted(&p));
    drop(m);
    assert!(!is_mounted(&p));
}

#[test]
fn a_slow_read_does_not_stall_the_mount() {
    let m = Mounted::new();
    m.store.put("slow.bin", vec![3u8; 100_000]);
    m.store.put("other.txt", "quick");
    // Warm the metadata so only the data request is slow.
    m.sh("stat slow.bin other.txt > /dev/null");
    m.store
        .set_op_latency("GetObject", Duration::from_millis(1500));
    let slow_path = m.path("slow.bin");
    let reader = std::thread::spawn(move || std::fs::read(slow_path).map(|d| d.len()));
    std::thread::sleep(Duration::from_millis(200));
    let start = std::time::Instant::now();
    let names: Vec<_> = std::fs::read_dir(m.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    std::fs::metadata(m.path("other.txt")).expect("stat");
    std::fs::write(m.path("new.txt"), b"n").expect("write");
    let elapsed = start.elapsed();
    assert_eq!(names.len(), 2);
    assert!(
        elapsed < Duration::from_millis(1000),
        "other requests waited for the slow read: {elapsed:?}"
    );
    assert_eq!(
        reader.join().expect("reader thread").expect("read"),
        100_000
    );
}

#[test]
fn run_foreground_returns_after_umount() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MockStore::new("fg"));
    store.put("x", "1");
    let dir = tempfile::tempdir().expect("mountpoint");
    let fs = Arc::new(Filesystem::new(
        store,
        FsConfig::default(),
        rt.handle().clone(),
    ));
    let mnt = dir.path().to_path_buf();
    let server = std::thread::spawn(move || {
        ossmount::fuse::run_foreground(fs, &mnt, &MountOptions::for_bucket("fg"))
    });
    // Wait for the mount to appear (bounded), then use and unmount it.
    let mut mounted = false;
    for _ in 0..100 {
        if is_mounted(dir.path()) {
            mounted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let read = std::fs::read_to_string(dir.path().join("x"));
    let st = Command::new("umount").arg(dir.path()).status();
    if !matches!(st, Ok(s) if s.success()) {
        let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
    }
    assert!(mounted, "mount did not appear");
    assert_eq!(read.expect("read through foreground mount"), "1");
    let result = server.join().expect("server thread");
    assert!(result.is_ok(), "{result:?}");
    assert!(!is_mounted(dir.path()));
}

#[test]
fn parallel_writers_and_readers() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("par")).expect("mkdir");
    let root = m.path("par");
    let workers: Vec<_> = (0..8u8)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                for i in 0..5u8 {
                    let p = root.join(format!("t{t}-{i}"));
                    let data = vec![t.wrapping_mul(31).wrapping_add(i); 300_000 + usize::from(i)];
                    std::fs::write(&p, &data).expect("write");
                    assert!(std::fs::read(&p).expect("read back") == data);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(std::fs::read_dir(&root).expect("readdir").count(), 40);
    assert_eq!(
        m.store
            .keys()
            .iter()
            .filter(|k| k.starts_with("par/t"))
            .count(),
        40
    );
}

/// The kernel offers FUSE only its 128 KiB default readahead at INIT; the mount raises it
/// through sysfs afterwards (as root), so sequential reads arrive as 1 MiB requests.
#[test]
fn kernel_readahead_is_raised_after_init() {
    let m = Mounted::new();
    let meta = std::fs::metadata(m.dir.path()).expect("stat mount");
    // Preferred I/O size: cp/cat/stdio size their buffers (= FUSE requests) by it.
    assert_eq!(meta.blksize(), 1 << 20);
    let dev = meta.dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: readahead cannot be raised, skipping");
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let kib = std::fs::read_to_string(&knob).expect("read knob");
        if kib.trim() == "1024" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{knob} is {kib} after 5 s, expected 1024"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Large files are opened read-only with FOPEN_DIRECT_IO (no page cache); reads of any
/// size and alignment, and mmap (FUSE_DIRECT_IO_ALLOW_MMAP), still see the right bytes.
#[test]
fn direct_io_reads_and_mmap_of_a_large_file() {
    use std::io::{Read, Seek, SeekFrom};
    let m = Mounted::new();
    let data: Vec<u8> = (0..(9u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    m.store.put("big.bin", data.clone());
    let path = m.path("big.bin");
    assert_eq!(std::fs::read(&path).expect("read"), data);
    let mut f = std::fs::File::open(&path).expect("open");
    for (off, len) in [
        (0u64, 1usize),
        (4095, 3),
        (8 << 20, 70_000),
        (9 << 20, 20_000),
    ] {
        let mut buf = vec![0u8; len];
        f.seek(SeekFrom::Start(off)).expect("seek");
        let n = f.read(&mut buf).expect("read");
        let end = (off as usize + n).min(data.len());
        assert!(n > 0);
        assert_eq!(&buf[..n], &data[off as usize..end], "at {off}");
    }
    // SAFETY: a private read-only mapping of an open file, unmapped below; the slice is
    // only used while mapped.
    unsafe {
        use std::os::fd::AsRawFd;
        let len = data.len();
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let mapped = std::slice::from_raw_parts(p as *const u8, len);
        assert!(mapped == &data[..], "mmap content differs");
        libc::munmap(p, len);
    }
}

/// Write-only opens use FOPEN_DIRECT_IO (no page-cache copy): writes of any size and
/// alignment, one larger than the kernel's 1 MiB request limit, appends through a
/// write-only `O_APPEND` descriptor, and a read-write open (page cache) all land exactly.
#[test]
fn direct_io_writes_of_any_size() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let m = Mounted::new();
    let data: Vec<u8> = (0..(3u32 << 20) + 4099)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 13) as u8)
        .collect();
    let path = m.path("w.bin");
    let mut f = std::fs::File::create(&path).expect("create");
    let mut off = 0;
    for len in [1usize, 4095, 3, (1 << 20) + 3, 2 << 20] {
        let end = (off + len).min(data.len());
        f.write_all(&data[off..end]).expect("write");
        off = end;
    }
    f.write_all(&data[off..]).expect("write tail");
    drop(f);
    assert!(m.store.get("w.bin").expect("uploaded") == data[..]);

    let mut a = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open append");
    a.write_all(b"tail one, ").expect("append");
    a.write_all(b"tail two").expect("append");
    drop(a);
    let mut expected = data.clone();
    expected.extend_from_slice(b"tail one, tail two");
    assert!(m.store.get("w.bin").expect("appended") == expected[..]);

    let mut rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open rw");
    rw.seek(SeekFrom::Start(5)).expect("seek");
    rw.write_all(b"XYZ").expect("write rw");
    rw.seek(SeekFrom::Start(0)).expect("seek");
    let mut head = [0u8; 10];
    rw.read_exact(&mut head).expect("read rw");
    drop(rw);
    expected[5..8].copy_from_slice(b"XYZ");
    assert_eq!(&head[..], &expected[..10]);
    assert!(m.store.get("w.bin").expect("rewritten") == expected[..]);
}

/// `cat dir/*` over small files: the sibling read-ahead fetches the next files while cat
/// reads, every byte is right, and each file still costs one GET (plus, in the default
/// mode, one HEAD for its stored attributes, sent in one parallel batch by the first
/// open).
#[test]
fn cat_of_many_small_files_is_one_get_per_file() {
    let m = Mounted::with(|c| c.metadata_ttl = Duration::from_secs(60));
    let mut expected = Vec::new();
    for i in 0..200 {
        let data: Vec<u8> = (0..1000 + i * 37).map(|j| (i * 31 + j) as u8).collect();
        expected.extend_from_slice(&data);
        m.store.put(&format!("small/f{i:04}"), data);
    }
    m.sh("ls small > /dev/null");
    m.store.reset_counts();
    let out = m.sh("LC_ALL=C; cat small/* | sha256sum | cut -c1-64");
    use sha2::Digest;
    let want = format!("{:x}", sha2::Sha256::digest(&expected));
    assert_eq!(out.trim(), want);
    assert_eq!(m.store.count("GetObject"), 200, "{:?}", m.store.counts());
    assert_eq!(m.store.count("HeadObject"), 200, "{:?}", m.store.counts());
}

/// A terminal ioctl on a file answers ENOTTY, as on any regular file (Python's `open`
/// asks TCGETS of every file; ENOSYS would also log a warning per open).
#[test]
fn terminal_ioctl_on_a_file_is_enotty() {
    use std::os::fd::AsRawFd;
    let m = Mounted::new();
    m.store.put("plain.txt", "x");
    let f = std::fs::File::open(m.path("plain.txt")).expect("open");
    let mut termios = std::mem::MaybeUninit::<libc::termios>::zeroed();
    // SAFETY: TCGETS writes at most one termios into the buffer we own.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::TCGETS, termios.as_mut_ptr()) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOTTY)
    );
}
