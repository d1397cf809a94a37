//! End to end: kernel → FUSE adapter → Filesystem → OssClient (HTTP, signed) → the
//! in-process emulator. Checks what the emulator then holds and what it was asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::common::mount::InProcessMount;
use ossmount::client::{ClientConfig, OssClient};
use ossmount::credentials::StaticProvider;
use ossmount::fs::{Filesystem, FsConfig};
use ossmount::fuse::MountOptions;
use ossmount::store::{ObjectStore, ObjectType, PutOptions};
use ossmount::write::UploadConfig;
use ossmount_emulator::{EmulatorConfig, RunningEmulator, start};

const BUCKET: &str = "mount-test";

struct Env {
    mnt: InProcessMount,
    client: Arc<OssClient>,
    emu: Option<RunningEmulator>,
    rt: Option<tokio::runtime::Runtime>,
    _data: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let data = tempfile::tempdir().expect("data dir");
        let emu = rt
            .block_on(start(EmulatorConfig::new(data.path().join("emu"), BUCKET)))
            .expect("emulator");
        let provider = Arc::new(StaticProvider {
            creds: emu.credentials(),
            source: "test".into(),
        });
        let mut ccfg = ClientConfig::new(emu.endpoint(), BUCKET, emu.region(), provider);
        ccfg.retry_base_delay = Duration::from_millis(5);
        let client = Arc::new(OssClient::new(ccfg).expect("client"));
        let cfg = FsConfig {
            uid: 0,
            gid: 0,
            // Long enough that a loaded machine cannot expire entries mid-test.
            metadata_ttl: Duration::from_secs(60),
            cache_dir: data.path().join("staging"),
            upload: UploadConfig {
                part_size: 1 << 20,
                max_concurrency: 4,
                single_put_threshold: 1 << 20,
            },
            ..FsConfig::default()
        };
        let store: Arc<dyn ObjectStore> = client.clone();
        let fs = Arc::new(Filesystem::new(store, cfg, rt.handle().clone()));
        let mnt = InProcessMount::new(fs, &MountOptions::for_bucket(BUCKET));
        Env {
            mnt,
            client,
            emu: Some(emu),
            rt: Some(rt),
            _data: data,
        }
    }

    fn emu(&self) -> &RunningEmulator {
        self.emu.as_ref().expect("emulator running")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.path(rel)
    }

    fn sh(&self, script: &str) -> String {
        self.mnt.sh(script)
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.block_on(async {
            let meta = self.client.head_object(key).await.ok()?;
            if meta.size == 0 {
                return Some(Vec::new());
            }
            let out = self.client.get_range(key, 0..meta.size, None).await.ok()?;
            Some(out.data.to_vec())
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.mnt.unmount();
        drop(self.emu.take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

#[test]
fn files_directories_and_metadata_reach_the_emulator() {
    let env = Env::new();
    env.sh("mkdir -p docs/deep && printf 'hello' > docs/a.txt && cp docs/a.txt docs/deep/b.txt");
    env.sh("dd if=/dev/urandom of=blob bs=256k count=10 status=none && cp blob blob.copy && cmp blob blob.copy");
    env.sh("chmod 640 docs/a.txt && touch -d @1400000000 docs/a.txt && ln -s docs/a.txt lnk");
    env.sh("mv docs/deep moved && echo more >> docs/a.txt && truncate -s 3 blob.copy");

    assert_eq!(env.get("docs/a.txt").as_deref(), Some(&b"hellomore\n"[..]));
    assert_eq!(env.get("moved/b.txt").as_deref(), Some(&b"hello"[..]));
    assert!(env.get("docs/deep/b.txt").is_none());
    assert_eq!(env.get("blob").map(|b| b.len()), Some(2_621_440));
    assert_eq!(env.get("blob.copy").map(|b| b.len()), Some(3));
    assert_eq!(env.get("docs/").as_deref(), Some(&b""[..]), "mkdir marker");

    let meta = env
        .block_on(env.client.head_object("docs/a.txt"))
        .expect("head");
    assert_eq!(meta.user_meta["mode"], (libc::S_IFREG | 0o640).to_string());
    assert!(meta.user_meta.contains_key("mtime"));
    let link = env
        .block_on(env.client.head_object("lnk"))
        .expect("head link");
    assert_eq!(link.object_type, ObjectType::Symlink);
    assert_eq!(
        env.block_on(env.client.get_symlink("lnk")).expect("target"),
        "docs/a.txt"
    );
    assert_eq!(
        std::fs::read_link(env.path("lnk")).expect("readlink"),
        PathBuf::from("docs/a.txt")
    );
}

#[test]
fn ls_l_and_reread_request_costs() {
    let env = Env::new();
    env.block_on(async {
        for i in 0..150 {
            env.client
                .put_object(
                    &format!("dir/f{i:03}"),
                    vec![b'x'; i].into(),
                    &PutOptions::default(),
                )
                .await
                .expect("put");
        }
    });
    env.emu().reset_stats();
    let out = env.sh("ls -l dir | wc -l");
    assert_eq!(out.trim(), "151");
    // The lookup of `dir` (HEAD `dir`, LIST `dir/`; its LIST page is the listing), then
    // the stored attributes of the 150 entries: one HEAD each, sent as one parallel
    // batch by the first stat (a listing has no x-oss-meta-*).
    let stats = env.emu().stats();
    assert_eq!(stats.requests_for("HeadObject"), 1 + 150, "{stats:?}");
    assert_eq!(stats.requests_for("ListObjectsV2"), 1, "{stats:?}");
    // Again within the TTL (60 s here): the listing and the attributes are cached.
    env.emu().reset_stats();
    assert_eq!(env.sh("ls -l dir | wc -l").trim(), "151");
    let stats = env.emu().stats();
    assert_eq!(stats.requests_for("HeadObject"), 0, "{stats:?}");
    assert_eq!(stats.requests_for("ListObjectsV2"), 0, "{stats:?}");

    env.sh("cat dir/f149 > /dev/null");
    env.emu().reset_stats();
    env.sh("cat dir/f149 > /dev/null");
    let stats = env.emu().stats();
    assert_eq!(
        stats.requests_for("GetObject"),
        0,
        "cached re-read: {stats:?}"
    );
}

#[test]
fn shell_append_to_a_large_object_uploads_only_the_new_bytes() {
    let env = Env::new();
    let base: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 199) as u8).collect();
    env.block_on(
        env.client
            .put_object("log.bin", base.clone().into(), &PutOptions::default()),
    )
    .expect("put");
    env.sh("stat log.bin > /dev/null");
    env.emu().reset_stats();
    env.sh("echo appended >> log.bin");
    let stats = env.emu().stats();
    assert_eq!(stats.requests_for("GetObject"), 0, "{stats:?}");
    assert!(stats.requests_for("UploadPartCopy") >= 1, "{stats:?}");
    let mut want = base;
    want.extend_from_slice(b"appended\n");
    assert!(env.get("log.bin").as_deref() == Some(&want[..]));
}
