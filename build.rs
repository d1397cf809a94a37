//! Generates the CSI gRPC code (messages with prost, Identity/Node services with tonic)
//! from `proto/csi/csi.proto`, the Container Storage Interface specification's protobuf
//! kept in this repository. protoc and the well-known-type .proto files come from the
//! `protoc-bin-vendored` crate, so no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; PROTOC is read by prost-build below.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/csi/csi.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        // Carries `secrets`: src/csi/proto.rs writes a Debug that redacts them.
        .skip_debug(["csi.v1.NodePublishVolumeRequest"])
        .compile_protos(
            &[std::path::PathBuf::from("proto/csi/csi.proto")],
            &[std::path::PathBuf::from("proto/csi"), well_known],
        )?;
    Ok(())
}
