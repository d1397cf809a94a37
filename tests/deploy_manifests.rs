//! deploy/: the Kubernetes manifests parse as YAML and carry what a FUSE CSI plugin needs
//! (privileged container, /dev/fuse, the kubelet pods directory with Bidirectional mount
//! propagation, the registrar sidecar on the plugin's socket), the DaemonSet runs the
//! image the Dockerfile builds, the example PV names this driver; the Grafana dashboard
//! parses and charts exactly the metrics src/metrics.rs declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

/// Every document of every YAML file in deploy/kubernetes.
fn documents() -> Vec<Yaml> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
        for doc in parsed {
            assert!(
                doc["apiVersion"].as_str().is_some() && doc["kind"].as_str().is_some(),
                "{}: a document without apiVersion/kind",
                file.display()
            );
            docs.push(doc);
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// `name:version` from the Dockerfile's OCI labels.
fn dockerfile_image() -> String {
    let text = std::fs::read_to_string(deploy("kubernetes/Dockerfile")).unwrap();
    let label = |key: &str| {
        let start = text
            .find(&format!("{key}=\""))
            .unwrap_or_else(|| panic!("Dockerfile has no {key} label"))
            + key.len()
            + 2;
        text[start..].split('"').next().unwrap().to_string()
    };
    assert!(
        text.contains("ca-certificates"),
        "the image has a CA bundle"
    );
    format!(
        "{}:{}",
        label("org.opencontainers.image.ref.name"),
        label("org.opencontainers.image.version")
    )
}

#[test]
fn kubernetes_manifests_fit_a_fuse_csi_plugin() {
    let docs = documents();
    let driver = ossmount::csi::PLUGIN_NAME;

    let drivers = of_kind(&docs, "CSIDriver");
    assert_eq!(drivers.len(), 1);
    assert_eq!(drivers[0]["metadata"]["name"].as_str(), Some(driver));
    assert_eq!(drivers[0]["spec"]["attachRequired"].as_bool(), Some(false));

    let daemonsets = of_kind(&docs, "DaemonSet");
    assert_eq!(daemonsets.len(), 1);
    let pod = &daemonsets[0]["spec"]["template"]["spec"];
    let volumes = list(&pod["volumes"]);
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("volume {name} is not a hostPath"))
            .to_string()
    };
    let containers = list(&pod["containers"]);
    let plugin = containers
        .iter()
        .find(|c| list(&c["args"]).first().and_then(Yaml::as_str) == Some("csi"))
        .expect("a container running `ossmount csi`");

    // The image is the one the Dockerfile builds, at this version.
    let image = dockerfile_image();
    assert_eq!(plugin["image"].as_str(), Some(image.as_str()));
    assert!(
        image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "{image}"
    );

    // Privileged, /dev/fuse, kubelet pods dir with Bidirectional propagation.
    assert_eq!(
        plugin["securityContext"]["privileged"].as_bool(),
        Some(true)
    );
    let mounts = list(&plugin["volumeMounts"]);
    let mount_at = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let fuse = mount_at("/dev/fuse");
    assert_eq!(host_path(fuse["name"].as_str().unwrap()), "/dev/fuse");
    let pods = mount_at("/var/lib/kubelet/pods");
    assert_eq!(pods["mountPropagation"].as_str(), Some("Bidirectional"));
    assert_eq!(
        host_path(pods["name"].as_str().unwrap()),
        "/var/lib/kubelet/pods"
    );
    let state = mount_at("/var/lib/ossmount-csi");
    assert!(host_path(state["name"].as_str().unwrap()).starts_with('/'));

    // The registrar sidecar serves the plugin's socket to kubelet under this driver's name.
    let args: Vec<&str> = list(&plugin["args"])
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let endpoint = args
        .iter()
        .find_map(|a| a.strip_prefix("--endpoint="))
        .expect("--endpoint");
    let socket = ossmount::csi::socket_path(endpoint).unwrap();
    let socket_dir = socket.parent().unwrap().to_str().unwrap();
    let plugin_dir = mount_at(socket_dir)["name"].as_str().unwrap();
    let registrar = containers
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.contains("csi-node-driver-registrar"))
        })
        .expect("node-driver-registrar sidecar");
    let reg_args: Vec<&str> = list(&registrar["args"])
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(reg_args.contains(&format!("--csi-address={}", socket.display()).as_str()));
    let registration = format!(
        "--kubelet-registration-path={}/{}",
        host_path(plugin_dir),
        socket.file_name().unwrap().to_str().unwrap()
    );
    assert!(reg_args.contains(&registration.as_str()), "{reg_args:?}");
    assert!(host_path(plugin_dir).contains(driver));
    assert!(
        list(&registrar["volumeMounts"])
            .iter()
            .any(|m| m["name"].as_str() == Some(plugin_dir))
    );

    // RBAC: the DaemonSet's service account exists and is bound.
    let account = pod["serviceAccountName"].as_str().unwrap();
    assert!(
        of_kind(&docs, "ServiceAccount")
            .iter()
            .any(|s| s["metadata"]["name"].as_str() == Some(account))
    );
    assert!(of_kind(&docs, "ClusterRoleBinding").iter().any(|b| {
        list(&b["subjects"])
            .iter()
            .any(|s| s["name"].as_str() == Some(account))
    }));

    // Example: a static PV for this driver with the Alibaba Cloud attribute names, its
    // secret, a PVC bound to it and a pod using the PVC.
    let pv = of_kind(&docs, "PersistentVolume")[0];
    let csi = &pv["spec"]["csi"];
    assert_eq!(csi["driver"].as_str(), Some(driver));
    assert!(csi["volumeAttributes"]["bucket"].as_str().is_some());
    assert!(csi["volumeAttributes"]["otherOpts"].as_str().is_some());
    let secret_name = csi["nodePublishSecretRef"]["name"].as_str().unwrap();
    let secret = of_kind(&docs, "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(secret_name))
        .expect("the PV's secret");
    assert!(secret["stringData"]["akId"].as_str().is_some());
    assert!(secret["stringData"]["akSecret"].as_str().is_some());
    let pvc = of_kind(&docs, "PersistentVolumeClaim")[0];
    assert_eq!(pvc["spec"]["storageClassName"].as_str(), Some(""));
    let claim = pvc["metadata"]["name"].as_str().unwrap();
    let user = of_kind(&docs, "Pod")[0];
    assert!(
        list(&user["spec"]["volumes"])
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"].as_str() == Some(claim))
    );
}

#[test]
fn grafana_dashboard_charts_the_declared_metrics() {
    use ossmount::metrics as m;
    let declared: BTreeSet<&str> = [
        m::OSS_REQUESTS,
        m::OSS_REQUEST_SECONDS,
        m::OSS_RETRIES,
        m::OSS_BYTES_READ,
        m::OSS_BYTES_WRITTEN,
        m::CACHE_HITS,
        m::CACHE_MISSES,
        m::CACHE_BYTES,
        m::PREFETCH_IN_FLIGHT,
        m::UPLOAD_QUEUE_DEPTH,
        m::CREDENTIAL_REFRESHES,
        m::FUSE_OPS,
        m::FUSE_OP_SECONDS,
        m::FUSE_BYTES_READ,
        m::FUSE_BYTES_WRITTEN,
        m::WRITE_BACK_PENDING_FILES,
        m::WRITE_BACK_PENDING_BYTES,
        m::WRITE_BACK_OLDEST_PENDING_SECONDS,
        m::WRITE_BACK_CONFLICTS,
        m::WRITE_BACK_UPLOADED_FILES,
        m::WRITE_BACK_FAILING_FILES,
        m::WRITE_BACK_UPLOAD_ERRORS,
    ]
    .into();
    let text = std::fs::read_to_string(deploy("grafana/ossmount-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut used = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("ossmount_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                let base = name
                    .strip_suffix("_sum")
                    .or_else(|| name.strip_suffix("_count"))
                    .or_else(|| name.strip_suffix("_bucket"))
                    .unwrap_or(&name)
                    .to_string();
                assert!(
                    declared.contains(base.as_str()),
                    "panel {:?} uses {name}, which src/metrics.rs does not declare",
                    panel["title"]
                );
                used.insert(base);
            }
        }
    }
    let unused: Vec<&&str> = declared.iter().filter(|d| !used.contains(**d)).collect();
    assert!(unused.is_empty(), "metrics with no panel: {unused:?}");
    assert!(panels.iter().all(|p| p["gridPos"]["w"].as_u64().is_some()));
}
