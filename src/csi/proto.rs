//! The CSI v1 messages and services, generated at build time from `proto/csi/csi.proto`
//! (see `build.rs`). Only a hand-written `Debug` lives here: the one for
//! [`NodePublishVolumeRequest`], whose `secrets` map must never reach a log.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("csi.v1");

impl std::fmt::Debug for NodePublishVolumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret_keys: Vec<&String> = self.secrets.keys().collect();
        f.debug_struct("NodePublishVolumeRequest")
            .field("volume_id", &self.volume_id)
            .field("publish_context", &self.publish_context)
            .field("staging_target_path", &self.staging_target_path)
            .field("target_path", &self.target_path)
            .field("volume_capability", &self.volume_capability)
            .field("readonly", &self.readonly)
            .field(
                "secrets",
                &format_args!("<{} redacted: {secret_keys:?}>", secret_keys.len()),
            )
            .field("volume_context", &self.volume_context)
            .finish()
    }
}
