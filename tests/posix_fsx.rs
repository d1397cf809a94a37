//! fsx, the file system exerciser from xfstests, inside a real mount on the emulator.
//!
//! fsx does random reads, writes, truncates, mapped reads/writes (and whatever else the
//! file system supports: fallocate modes it probes and skips when refused) on one file,
//! checking every read against an in-memory model. The source is
//! `../shared/thirdparty/fsx` (see its README); it is compiled here into the target
//! directory, never copied into the project.
//!
//! Modes: mmap on (the default), mmap off (`-R -W`), close/reopen (`-c`), flush and
//! invalidate after I/O (`-f`, which msyncs mapped writes), and O_DIRECT (`-Z`, with
//! page-aligned reads and writes), each with its own seeds. `-N` is chosen so the whole
//! binary stays near a minute on a loaded 2-core CI machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{emulator::Emu, mount::BinMount};

const FSX_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/thirdparty/fsx");
/// (name, fsx flags, operations per run, seeds). Runs that stay in the local staging
/// file take about a second per 1500 operations; every close of `-c` uploads the file
/// (about 0.2 s each on CI-like machines), so that mode runs fewer operations.
const MODES: &[(&str, &[&str], &str, &[&str])] = &[
    ("mmap", &[], "3000", &["1", "7", "1013"]),
    ("no-mmap", &["-R", "-W"], "3000", &["2", "4242"]),
    ("close-reopen", &["-c", "10"], "500", &["3", "99"]),
    ("flush-invalidate", &["-f"], "3000", &["5", "31337"]),
    (
        "o-direct",
        &["-Z", "-R", "-W", "-r", "4096", "-w", "4096"],
        "3000",
        &["6", "2024"],
    ),
];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Compiles fsx into the target directory (once; again when the source is newer).
fn build_fsx() -> PathBuf {
    let src = Path::new(FSX_DIR);
    assert!(
        src.join("ltp/fsx.c").exists(),
        "{} is missing (CI keeps ../shared beside the project)",
        src.display()
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/thirdparty/fsx");
    let fresh = |p: &Path| {
        let built = std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let source = std::fs::metadata(src.join("ltp/fsx.c"))
            .and_then(|m| m.modified())
            .ok();
        built.is_some() && built >= source
    };
    if !fresh(&out) {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let status = Command::new("gcc")
            .args(["-O2", "-D_GNU_SOURCE", "-include"])
            .arg(src.join("config.h"))
            .args(["-include", "getopt.h", "-I"])
            .arg(src.join("include"))
            .arg("-I")
            .arg(src.join("src"))
            .arg("-I")
            .arg(src)
            .arg(src.join("ltp/fsx.c"))
            .arg("-o")
            .arg(&tmp)
            .status()
            .expect("gcc must be installed");
        assert!(status.success(), "building fsx failed");
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

#[test]
fn fsx_runs_clean_in_every_mode() {
    if !is_root() {
        eprintln!("skipping: mounts need root");
        return;
    }
    let fsx = build_fsx();
    let emu = Emu::start("fsx", |c| c);
    let top = tempfile::Builder::new()
        .prefix("h4-fsx-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let m = BinMount::start(&emu, &top.path().join("m"), &[]).expect("mount");
    let logs = top.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut failures = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for (mode, flags, ops, seeds) in MODES {
        for seed in *seeds {
            let file = m.path(&format!("fsx-{mode}-{seed}"));
            let started = Instant::now();
            let out = Command::new(&fsx)
                .args(["-N", ops, "-S", seed, "-P"])
                .arg(&logs)
                .args(*flags)
                .arg(&file)
                .output()
                .expect("run fsx");
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!(
                "fsx {mode} seed {seed}: {} in {:.1?}",
                out.status,
                started.elapsed()
            );
            // What fsx probed and left out (fallocate modes, clone/dedupe ranges...).
            let stderr = String::from_utf8_lossy(&out.stderr);
            for l in stderr.lines().filter(|l| l.contains("disabling")) {
                if !skipped.iter().any(|s| s == l) {
                    skipped.push(l.to_string());
                }
            }
            if !out.status.success() || !stdout.contains("operations completed A-OK") {
                failures.push(format!(
                    "fsx {mode} (flags {flags:?}) seed {seed}: {}\n{}{}",
                    out.status, stdout, stderr
                ));
            }
        }
    }
    drop(m);
    eprintln!(
        "fsx left out what the mount refuses:\n  {}",
        skipped.join("\n  ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
