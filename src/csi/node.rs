//! The Identity and Node services.
//!
//! NodePublishVolume, for a request already turned into a [`MountPlan`]:
//! 1. under a per-target lock (kubelet may retry while a mount is still starting);
//! 2. if the target is mounted and alive: the same volume with the same fingerprint is
//!    already published → OK (one mount, idempotent); anything else → ALREADY_EXISTS;
//!    if it is a dead FUSE mount (ENOTCONN: its process crashed) → lazily unmount it and
//!    go on (stale mount recovery);
//! 3. create the target directory, run `ossmount BUCKET[:PREFIX] TARGET -o … --log-file …`
//!    in its background mode: it forks, calls `setsid` (its own session, so neither a
//!    crash of another volume nor the plugin's exit takes it down) and exits 0 only once
//!    the mount serves; otherwise it exits 1 with the reason on stderr, which becomes the
//!    gRPC error (PERMISSION_DENIED for rejected credentials). Secrets travel in the
//!    child's environment, never its argv;
//! 4. ask the new mount's control socket for its pid and record the volume in the state
//!    directory ([`super::state`]).
//!
//! NodeUnpublishVolume: unmount if mounted (EBUSY → lazy unmount, the process ends when
//! the last user lets go), wait for the ossmount process to finish its uploads and exit,
//! remove the target directory and the state file. A target that is not mounted and has
//! no state is already unpublished → OK.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::proto::identity_server::Identity;
use super::proto::node_server::Node;
use super::proto::*;
use super::state::{StateDir, VolumeState};
use super::volume::{MountPlan, describe_context, plan, required_path};
use crate::mount_check::{find_mount, lazy_unmount};

/// Name reported by GetPluginInfo; the CSIDriver object and PVs use it as `driver`.
pub const PLUGIN_NAME: &str = "ossmount.csi.alibabacloud.com";

/// How long unpublish waits for the ossmount process to finish uploads and exit.
pub const EXIT_WAIT: Duration = Duration::from_secs(60);

pub struct IdentityService;

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: PLUGIN_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        // Node-only plugin for static volumes: no controller service, no topology.
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

/// The Node service. Publish and unpublish run in their own tasks: when kubelet gives up
/// on a slow call (its gRPC deadline), the work still finishes and is recorded, so the
/// retry finds a consistent target instead of an unrecorded mount.
pub struct NodeService {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    node_id: String,
    /// The ossmount binary to run for each volume (this very executable).
    exe: PathBuf,
    states: StateDir,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl NodeService {
    pub fn new(node_id: String, exe: PathBuf, states: StateDir) -> NodeService {
        NodeService {
            inner: Arc::new(NodeInner {
                node_id,
                exe,
                states,
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Logs the volumes recorded by an earlier run and whether each is still served.
    pub fn report_recovered(&self) {
        self.inner.report_recovered();
    }
}

impl NodeInner {
    fn report_recovered(&self) {
        for state in self.states.list() {
            let health = match mount_health(&state.target) {
                Health::Alive => "mounted",
                Health::Stale => "stale (its ossmount process died; the next publish recovers it)",
                Health::NotMounted => "not mounted",
            };
            tracing::info!(
                volume = %state.volume_id,
                target = %state.target.display(),
                pid = ?state.pid,
                health,
                "volume published by an earlier run"
            );
        }
    }

    fn lock_for(&self, target: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(target.to_path_buf()).or_default().clone()
    }

    async fn publish(&self, plan: MountPlan) -> Result<(), Status> {
        let target = plan.target.clone();
        match mount_health(&target) {
            Health::Alive => {
                return match self.states.load(&target) {
                    Some(s)
                        if s.volume_id == plan.volume_id && s.fingerprint == plan.fingerprint =>
                    {
                        tracing::info!(volume = %plan.volume_id, target = %target.display(), "already published");
                        Ok(())
                    }
                    Some(s) if s.volume_id == plan.volume_id => {
                        Err(Status::already_exists(format!(
                            "volume {} is already published at {} with different options or credentials; unpublish it first",
                            plan.volume_id,
                            target.display()
                        )))
                    }
                    _ => Err(Status::already_exists(format!(
                        "{} is already a mount point of something else",
                        target.display()
                    ))),
                };
            }
            Health::Stale => {
                tracing::warn!(volume = %plan.volume_id, target = %target.display(), "recovering a stale mount (its ossmount process died)");
                lazy_unmount(&target).map_err(|e| {
                    Status::internal(format!(
                        "cannot remove the stale mount at {}: {e}",
                        target.display()
                    ))
                })?;
            }
            Health::NotMounted => {}
        }
        std::fs::create_dir_all(&target).map_err(|e| {
            Status::internal(format!("cannot create target {}: {e}", target.display()))
        })?;

        let log_file = self.states.log_file(&target);
        let (set, remove) = plan.env();
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg(&plan.source).arg(&target);
        if !plan.options.is_empty() {
            cmd.arg("-o").arg(plan.options.join(","));
        }
        cmd.arg("--log-file").arg(&log_file);
        for name in remove {
            cmd.env_remove(name);
        }
        cmd.envs(set)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tracing::info!(
            volume = %plan.volume_id,
            target = %target.display(),
            source = %plan.source,
            options = %plan.options.join(","),
            credentials = plan.auth.describe(),
            log = %log_file.display(),
            "mounting"
        );
        let output = cmd
            .output()
            .await
            .map_err(|e| Status::internal(format!("cannot run {}: {e}", self.exe.display())))?;
        if !output.status.success() {
            // ossmount leaves nothing mounted when it fails; make sure of it.
            if find_mount(&target).ok().flatten().is_some() {
                let _ = lazy_unmount(&target);
            }
            let _ = std::fs::remove_dir(&target);
            let message = String::from_utf8_lossy(&output.stderr);
            let message = message.trim().trim_start_matches("ossmount: ");
            tracing::error!(volume = %plan.volume_id, error = %message, "mount failed");
            return Err(mount_failure_status(&plan.volume_id, message));
        }
        let pid = match crate::control::query_status(&crate::control::socket_path(&target)).await {
            Ok(report) => Some(report.facts.pid),
            Err(e) => {
                tracing::warn!(error = %e, "mounted, but its control socket does not answer");
                None
            }
        };
        let state = VolumeState {
            volume_id: plan.volume_id.clone(),
            target: target.clone(),
            source: plan.source.clone(),
            fingerprint: plan.fingerprint.clone(),
            read_only: plan.read_only,
            pid,
        };
        self.states.save(&state).map_err(|e| {
            Status::internal(format!("mounted, but cannot record the volume state: {e}"))
        })?;
        tracing::info!(volume = %plan.volume_id, target = %target.display(), ?pid, "published");
        Ok(())
    }

    async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), Status> {
        let state = self.states.load(target);
        let mut lazy = false;
        if find_mount(target).ok().flatten().is_some() {
            lazy = unmount(target).map_err(|e| {
                Status::internal(format!("cannot unmount {}: {e}", target.display()))
            })?;
        }
        if let Some(pid) = state.as_ref().and_then(|s| s.pid)
            && !lazy
            && is_ossmount_for(pid, target)
            && !wait_for_exit(pid, EXIT_WAIT).await
        {
            tracing::warn!(pid, target = %target.display(), "ossmount did not exit in time after unmount (uploads still running?)");
        }
        match std::fs::remove_dir(target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(target = %target.display(), error = %e, "cannot remove the target directory")
            }
        }
        self.states
            .remove(target)
            .map_err(|e| Status::internal(format!("cannot remove the volume state: {e}")))?;
        tracing::info!(volume = %volume_id, target = %target.display(), lazy, "unpublished");
        Ok(())
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let plan = plan(&req, &|k| std::env::var(k).ok())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !plan.ignored.is_empty() {
            tracing::warn!(
                volume = %plan.volume_id,
                ignored = ?plan.ignored,
                "mount options that ossmount does not implement are ignored"
            );
        }
        tracing::debug!(volume = %plan.volume_id, attributes = ?describe_context(&req), "publish request");
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let lock = inner.lock_for(&plan.target);
            let _guard = lock.lock().await;
            inner.publish(plan).await
        })
        .await
        .map_err(|e| Status::internal(format!("publish task failed: {e}")))??;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let target = required_path(&req.target_path, "target_path")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let lock = inner.lock_for(&target);
            let _guard = lock.lock().await;
            inner.unpublish(&req.volume_id, &target).await
        })
        .await
        .map_err(|e| Status::internal(format!("unpublish task failed: {e}")))??;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        // No STAGE_UNSTAGE_VOLUME: one mount per published volume (see docs/kubernetes.md).
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.inner.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

/// The gRPC status for a failed mount: rejected credentials get PERMISSION_DENIED, a
/// missing bucket NOT_FOUND, the rest INTERNAL; the message is ossmount's own (which never
/// contains secrets).
fn mount_failure_status(volume_id: &str, message: &str) -> Status {
    let text = format!("mounting volume {volume_id} failed: {message}");
    let lower = message.to_ascii_lowercase();
    if [
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "accessdenied",
        "access denied",
        "credentials",
        "403",
    ]
    .iter()
    .any(|k| lower.contains(k))
    {
        Status::permission_denied(text)
    } else if lower.contains("nosuchbucket") {
        Status::not_found(text)
    } else {
        Status::internal(text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Alive,
    Stale,
    NotMounted,
}

fn mount_health(target: &Path) -> Health {
    if find_mount(target).ok().flatten().is_none() {
        return Health::NotMounted;
    }
    match std::fs::metadata(target) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
            ) =>
        {
            Health::Stale
        }
        _ => Health::Alive,
    }
}

/// Unmounts `target`; when it is busy, detaches it lazily. Returns whether it was lazy.
fn unmount(target: &Path) -> Result<bool, String> {
    let Err(err) = nix::mount::umount2(target, nix::mount::MntFlags::empty()) else {
        return Ok(false);
    };
    if err == nix::errno::Errno::EBUSY {
        tracing::warn!(target = %target.display(), "target is busy: unmounting lazily");
    } else {
        tracing::warn!(target = %target.display(), error = %err, "unmount failed: detaching lazily");
    }
    lazy_unmount(target).map(|()| true)
}

/// True when `pid` is an ossmount process serving `target` (guards against pid reuse after
/// a reboot or a long-dead volume).
fn is_ossmount_for(pid: u32, target: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let target = target.as_os_str().as_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == target)
}

/// Waits until `pid` has exited, at most `limit`. Uses a pidfd (readable when the process
/// ends), so the wait needs no polling; the process is not our child, so it cannot be
/// waited for with waitpid.
async fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // ESRCH: it is already gone.
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open (same descriptor) until the
    // AsyncFd is dropped.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    let Ok(async_fd) = registered else {
        return false;
    };
    tokio::time::timeout(limit, async_fd.readable())
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_csi_codes() {
        let s = mount_failure_status(
            "v",
            "bucket b does not answer at http://x: InvalidAccessKeyId (403)",
        );
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert!(s.message().contains("mounting volume v failed"));
        let s = mount_failure_status("v", "bucket b does not answer: NoSuchBucket (404)");
        assert_eq!(s.code(), tonic::Code::NotFound);
        let s = mount_failure_status("v", "mountpoint is not empty");
        assert_eq!(s.code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn waits_for_a_process_to_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let reaper = std::thread::spawn(move || child.wait());
        assert!(wait_for_exit(pid, Duration::from_secs(10)).await);
        reaper.join().unwrap().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(!wait_for_exit(child.id(), Duration::from_millis(50)).await);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_plain_directory_is_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(mount_health(dir.path()), Health::NotMounted);
    }
}
