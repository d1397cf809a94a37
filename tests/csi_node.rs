//! The CSI node plugin, driven the way kubelet drives it: a gRPC client on the plugin's
//! Unix socket (tonic, generated from the same csi.proto), the real `ossmount csi` process,
//! real FUSE mounts against the in-process emulator.
//!
//! One scenario, in order, because each step builds on the mounts of the one before:
//! identity → publish (write through the mount, read back from the emulator) → publish
//! again (idempotent, one mount) → conflicting publish → readonly publish → bad requests →
//! wrong credentials → stale target recovery → plugin restart with volumes published →
//! unpublish twice. Every mount is lazily unmounted on drop, even when an assertion fails.
//! Needs root (FUSE mounts by a daemon); skipped otherwise.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::emulator::Emu;
use ossmount::csi::proto::identity_client::IdentityClient;
use ossmount::csi::proto::node_client::NodeClient;
use ossmount::csi::proto::volume_capability::access_mode::Mode;
use ossmount::csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use ossmount::csi::proto::*;
use ossmount::store::ObjectStore;
use ossmount_emulator::RunningEmulator;
use tonic::Code;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_ossmount");
const BUCKET: &str = "csi-bucket";
const GOOD_SECRET: &str = "emulator-secret";
const BAD_SECRET: &str = "not-the-emulator-secret-42";

/// The plugin process; killed on drop. Its stderr is collected for the log checks.
struct Plugin {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Plugin {
    /// Starts `ossmount csi` and returns once it logs that it listens.
    fn start(socket: &Path, data_dir: &Path) -> Plugin {
        let mut child = Command::new(BIN)
            .arg("csi")
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--node-id")
            .arg("test-node")
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("OSS_ACCESS_KEY_ID")
            .env_remove("OSS_ACCESS_KEY_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        loop {
            let line = lines
                .next()
                .expect("plugin exited before listening")
                .unwrap();
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
            if line.contains("CSI plugin listening") {
                break;
            }
        }
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Plugin { child, log }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lazily unmounts every target on drop.
struct Targets(Vec<PathBuf>);

impl Drop for Targets {
    fn drop(&mut self) {
        for t in &self.0 {
            if mount_count(t) > 0 {
                let _ = Command::new("umount").arg("-l").arg(t).status();
            }
        }
    }
}

fn mount_count(path: &Path) -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    ossmount::mount_check::parse_mountinfo(&text)
        .iter()
        .filter(|e| e.mount_point == path)
        .count()
}

async fn connect(socket: &Path) -> (IdentityClient<Channel>, NodeClient<Channel>) {
    let path = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    (
        IdentityClient::new(channel.clone()),
        NodeClient::new(channel),
    )
}

fn capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume::default())),
    }
}

fn publish_request(
    emulator: &RunningEmulator,
    volume_id: &str,
    target: &Path,
    secret: &str,
) -> NodePublishVolumeRequest {
    let context: HashMap<String, String> = [
        ("bucket", BUCKET.to_string()),
        ("path", "/data".to_string()),
        ("url", format!("http://{}", emulator.addr())),
        ("sigVersion", "v4".to_string()),
        (
            "otherOpts",
            "-o region=cn-hangzhou -o max_stat_cache_size=0 -o allow_other".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let secrets: HashMap<String, String> = [
        ("akId".to_string(), "emulator-ak".to_string()),
        ("akSecret".to_string(), secret.to_string()),
    ]
    .into();
    NodePublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
        volume_capability: Some(capability(Mode::MultiNodeMultiWriter)),
        readonly: false,
        secrets,
        volume_context: context,
        ..Default::default()
    }
}

fn unpublish_request(volume_id: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mount_pid(rt: &tokio::runtime::Runtime, target: &Path) -> u32 {
    let socket = ossmount::control::socket_path(target);
    rt.block_on(ossmount::control::query_status(&socket))
        .unwrap()
        .facts
        .pid
}

/// Gone, or a zombie waiting for its (re)parent to reap it.
fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Reads `key` with the official Python SDK (alibabacloud-oss-v2 in `.venv`, installed by
/// scripts/setup.sh); None when the venv is missing.
fn sdk_get(emulator: &RunningEmulator, key: &str) -> Option<Vec<u8>> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !python.exists() {
        eprintln!("no .venv (scripts/setup.sh): skipping the Python SDK read-back");
        return None;
    }
    let script = r#"
import sys, alibabacloud_oss_v2 as oss
cfg = oss.config.load_default()
cfg.credentials_provider = oss.credentials.StaticCredentialsProvider("emulator-ak", "emulator-secret")
cfg.region = "cn-hangzhou"
cfg.endpoint = sys.argv[1]
cfg.use_path_style = True
res = oss.Client(cfg).get_object(oss.GetObjectRequest(bucket=sys.argv[2], key=sys.argv[3]))
sys.stdout.buffer.write(res.body.read())
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(emulator.endpoint())
        .arg(BUCKET)
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Python SDK GetObject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

#[test]
fn csi_node_plugin_serves_kubelet() {
    if !common::require_root("csi_node_plugin_serves_kubelet") {
        return;
    }
    let emu = Emu::start(BUCKET, |c| c);
    let (rt, emulator) = (emu.runtime(), emu.emu());
    let dir = tempfile::Builder::new()
        .prefix("i17-csi-")
        .tempdir()
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let socket = root.join("csi/csi.sock");
    let data_dir = root.join("plugin-state");
    let pods = root.join("pods");
    std::fs::create_dir(&pods).unwrap();
    let (ta, tb, tc, td) = (
        pods.join("a-mount"),
        pods.join("b-mount"),
        pods.join("c-mount"),
        pods.join("d-mount"),
    );
    let _targets = Targets(vec![ta.clone(), tb.clone(), tc.clone(), td.clone()]);
    let mut plugin = Plugin::start(&socket, &data_dir);
    let (mut identity, mut node) = rt.block_on(connect(&socket));

    // Identity and node information.
    let info = rt
        .block_on(identity.get_plugin_info(GetPluginInfoRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "ossmount.csi.alibabacloud.com");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let probe = rt
        .block_on(identity.probe(ProbeRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    let caps = rt
        .block_on(identity.get_plugin_capabilities(GetPluginCapabilitiesRequest {}))
        .unwrap()
        .into_inner();
    assert!(caps.capabilities.is_empty(), "node-only plugin");
    let node_info = rt
        .block_on(node.node_get_info(NodeGetInfoRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(node_info.node_id, "test-node");
    let node_caps = rt
        .block_on(node.node_get_capabilities(NodeGetCapabilitiesRequest {}))
        .unwrap()
        .into_inner();
    assert!(node_caps.capabilities.is_empty(), "no NodeStage");

    // Publish, write through the mount, read the object back from the emulator.
    let req_a = publish_request(emulator, "vol-a", &ta, GOOD_SECRET);
    rt.block_on(node.node_publish_volume(req_a.clone()))
        .unwrap();
    assert_eq!(mount_count(&ta), 1);
    std::fs::write(ta.join("hello.txt"), b"hello from a pod").unwrap();
    let client = common::emulator::client_for(emulator, BUCKET);
    let data = rt
        .block_on(client.get_range("data/hello.txt", 0..16, None))
        .unwrap()
        .data;
    assert_eq!(&data[..], b"hello from a pod");
    if let Some(body) = sdk_get(emulator, "data/hello.txt") {
        assert_eq!(body, b"hello from a pod");
    }

    // Publish again: OK, still one mount, same process.
    let pid_a = mount_pid(rt, &ta);
    rt.block_on(node.node_publish_volume(req_a.clone()))
        .unwrap();
    assert_eq!(mount_count(&ta), 1);
    assert_eq!(mount_pid(rt, &ta), pid_a);

    // Same target, different options: ALREADY_EXISTS, the mount is untouched.
    let mut conflicting = req_a.clone();
    conflicting
        .volume_context
        .insert("path".into(), "/other".into());
    let err = rt
        .block_on(node.node_publish_volume(conflicting))
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(mount_count(&ta), 1);

    // Readonly publish of the same volume at a second target.
    let mut req_b = publish_request(emulator, "vol-a", &tb, GOOD_SECRET);
    req_b.readonly = true;
    rt.block_on(node.node_publish_volume(req_b)).unwrap();
    assert_eq!(
        std::fs::read(tb.join("hello.txt")).unwrap(),
        b"hello from a pod"
    );
    let err = std::fs::write(tb.join("nope.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // Bad requests: INVALID_ARGUMENT, nothing mounted.
    let mut bad = publish_request(emulator, "vol-x", &td, GOOD_SECRET);
    bad.volume_capability = None;
    let mut no_id = publish_request(emulator, "", &td, GOOD_SECRET);
    no_id.volume_id.clear();
    let mut no_target = publish_request(emulator, "vol-x", &td, GOOD_SECRET);
    no_target.target_path.clear();
    let mut no_bucket = publish_request(emulator, "vol-x", &td, GOOD_SECRET);
    no_bucket.volume_context.remove("bucket");
    for (what, req) in [
        ("capability", bad),
        ("volume_id", no_id),
        ("target_path", no_target),
        ("bucket", no_bucket),
    ] {
        let err = rt.block_on(node.node_publish_volume(req)).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(what), "{what}: {}", err.message());
    }
    for req in [
        unpublish_request("", &td),
        unpublish_request("vol-x", Path::new("")),
    ] {
        let err = rt.block_on(node.node_unpublish_volume(req)).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    assert_eq!(mount_count(&td), 0);

    // Wrong credentials: a clear error, no secret in it, nothing left mounted.
    let err = rt
        .block_on(node.node_publish_volume(publish_request(emulator, "vol-d", &td, BAD_SECRET)))
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("vol-d"), "{}", err.message());
    assert!(!err.message().contains(BAD_SECRET));
    assert_eq!(mount_count(&td), 0);
    assert!(!td.exists(), "the target of a failed publish is removed");

    // Stale target: the volume's process dies; the next publish recovers the target.
    let req_c = publish_request(emulator, "vol-c", &tc, GOOD_SECRET);
    rt.block_on(node.node_publish_volume(req_c.clone()))
        .unwrap();
    let pid_c = mount_pid(rt, &tc);
    // SAFETY: plain kill(2) of the volume's ossmount process.
    let killed = unsafe { libc::kill(pid_c as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0);
    wait_until("the killed mount to go stale", || {
        std::fs::metadata(&tc).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN)
    });
    rt.block_on(node.node_publish_volume(req_c)).unwrap();
    assert_eq!(
        std::fs::read(tc.join("hello.txt")).unwrap(),
        b"hello from a pod"
    );
    assert_eq!(mount_count(&tc), 1, "the stale mount was removed");

    // Plugin restart: volumes stay mounted, the new plugin knows them.
    plugin.kill();
    assert_eq!(
        std::fs::read(ta.join("hello.txt")).unwrap(),
        b"hello from a pod"
    );
    let first_log = plugin.log.lock().unwrap().clone();
    let plugin = Plugin::start(&socket, &data_dir);
    let (_, mut node) = rt.block_on(connect(&socket));
    rt.block_on(node.node_publish_volume(req_a)).unwrap();
    assert_eq!(mount_count(&ta), 1);
    assert_eq!(mount_pid(rt, &ta), pid_a);

    // Unpublish twice: the mount and its process end, the target is removed.
    rt.block_on(node.node_unpublish_volume(unpublish_request("vol-a", &ta)))
        .unwrap();
    assert_eq!(mount_count(&ta), 0);
    assert!(process_ended(pid_a), "the volume's ossmount process ended");
    assert!(!ta.exists());
    rt.block_on(node.node_unpublish_volume(unpublish_request("vol-a", &ta)))
        .unwrap();
    // A busy target is detached lazily: the open file keeps working, the mount is gone
    // from the table, and the volume's process ends once the file is closed.
    let pid_b = mount_pid(rt, &tb);
    let mut busy = std::fs::File::open(tb.join("hello.txt")).unwrap();
    rt.block_on(node.node_unpublish_volume(unpublish_request("vol-a", &tb)))
        .unwrap();
    assert_eq!(mount_count(&tb), 0);
    let mut text = String::new();
    use std::io::Read;
    busy.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello from a pod");
    drop(busy);
    wait_until("the lazily unmounted volume's process to end", || {
        process_ended(pid_b)
    });
    for (id, t) in [("vol-a", &tb), ("vol-c", &tc)] {
        rt.block_on(node.node_unpublish_volume(unpublish_request(id, t)))
            .unwrap();
        assert_eq!(mount_count(t), 0);
    }
    // The object written through the first mount is still there.
    let data = rt
        .block_on(client.get_range("data/hello.txt", 0..16, None))
        .unwrap()
        .data;
    assert_eq!(&data[..], b"hello from a pod");

    // Logs: the ossfs-only option is reported as ignored; no secret anywhere.
    let log = format!("{first_log}{}", plugin.log.lock().unwrap());
    assert!(log.contains("max_stat_cache_size"), "{log}");
    assert!(log.contains("volume published by an earlier run"), "{log}");
    let mut all_logs = log.clone();
    for entry in std::fs::read_dir(data_dir.join("logs")).unwrap() {
        all_logs.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for state in std::fs::read_dir(data_dir.join("volumes")).unwrap() {
        all_logs.push_str(&std::fs::read_to_string(state.unwrap().path()).unwrap());
    }
    assert!(!all_logs.contains(GOOD_SECRET), "a secret reached a log");
    assert!(!all_logs.contains(BAD_SECRET), "a secret reached a log");
}
