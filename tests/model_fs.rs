//! Model test: the mount behaves like a local directory.
//!
//! A seeded random sequence of file operations (create, write at offsets, read, truncate,
//! rename, unlink, mkdir, rmdir, chmod, readdir, plus objects written or deleted behind
//! the mount's back through the OSS API) runs against the real `ossmount` binary and
//! against a local temp directory (the model). After every step both must agree: same
//! success or same errno, same bytes read, same directory listing; and the whole trees
//! (names, kinds, sizes, contents, file permission bits) must be equal.
//!
//! Only operations the fs module documents as supported are used. Behind-the-back
//! changes only touch files in directories that exist as directories in the model (an
//! implicit directory would vanish with its last key, which a local directory does not),
//! and the mount runs with `--metadata-ttl 0` so they are visible at once.
//!
//! CI runs a short sequence; `scripts/reliability-model.sh` runs long ones over many
//! seeds (RELIABILITY_MODEL_SEED, RELIABILITY_MODEL_STEPS).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::emulator::Emu;
use common::mount::BinMount;
use common::{close_checked, pattern};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIRS: &[&str] = &["d1", "d2", "d1/d3", "d2/d4"];
const FILE_NAMES: &[&str] = &["f1", "f2", "f3"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        path: String,
        len: usize,
        seed: u64,
    },
    WriteAt {
        path: String,
        off: u64,
        len: usize,
        seed: u64,
    },
    Read {
        path: String,
    },
    Truncate {
        path: String,
        len: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Readdir {
        path: String,
    },
    Append {
        path: String,
        len: usize,
        seed: u64,
    },
    Symlink {
        target: String,
        path: String,
    },
    BehindPut {
        path: String,
        len: usize,
        seed: u64,
    },
    BehindDelete {
        path: String,
    },
}

/// Picks names mostly where something exists in the model, so most operations do
/// something rather than fail with ENOENT (failures are still compared).
struct Picker<'a> {
    rng: &'a mut StdRng,
    model: &'a Path,
}

impl Picker<'_> {
    fn any_file(&mut self) -> String {
        let existing: Vec<&str> = DIRS
            .iter()
            .copied()
            .filter(|d| self.model.join(d).is_dir())
            .collect();
        let name = FILE_NAMES[self.rng.random_range(0..FILE_NAMES.len())];
        let dir = if self.rng.random_bool(0.85) {
            // Root or an existing directory.
            let i = self.rng.random_range(0..=existing.len());
            existing.get(i).copied()
        } else {
            let i = self.rng.random_range(0..=DIRS.len());
            DIRS.get(i).copied()
        };
        match dir {
            Some(d) => format!("{d}/{name}"),
            None => name.to_string(),
        }
    }

    fn any_dir(&mut self) -> String {
        DIRS[self.rng.random_range(0..DIRS.len())].to_string()
    }

    /// An existing empty directory half of the time (so rmdir also succeeds), else any.
    fn rmdir_candidate(&mut self) -> String {
        let empty: Vec<&str> = DIRS
            .iter()
            .copied()
            .filter(|d| {
                std::fs::read_dir(self.model.join(d)).is_ok_and(|mut it| it.next().is_none())
            })
            .collect();
        if !empty.is_empty() && self.rng.random_bool(0.5) {
            empty[self.rng.random_range(0..empty.len())].to_string()
        } else {
            self.any_dir()
        }
    }

    fn any_path(&mut self) -> String {
        if self.rng.random_bool(0.7) {
            self.any_file()
        } else {
            self.any_dir()
        }
    }
}

fn random_op(rng: &mut StdRng, model: &Path) -> Op {
    let seed = rng.random();
    let choice = rng.random_range(0..100);
    let len = small_len(rng);
    let mut pk = Picker { rng, model };
    match choice {
        0..=14 => Op::Create {
            path: pk.any_file(),
            len,
            seed,
        },
        15..=29 => Op::WriteAt {
            path: pk.any_file(),
            off: pk.rng.random_range(0..200_000),
            len: pk.rng.random_range(1..70_000),
            seed,
        },
        30..=39 => Op::Read {
            path: pk.any_file(),
        },
        40..=46 => Op::Truncate {
            path: pk.any_file(),
            len: pk.rng.random_range(0..150_000),
        },
        47..=54 => Op::Rename {
            from: pk.any_path(),
            to: pk.any_path(),
        },
        55..=61 => Op::Unlink {
            path: pk.any_file(),
        },
        62..=71 => Op::Mkdir { path: pk.any_dir() },
        72..=76 => Op::Rmdir {
            path: pk.rmdir_candidate(),
        },
        77..=82 => Op::Chmod {
            path: pk.any_file(),
            mode: [0o600, 0o644, 0o640, 0o755, 0o400][pk.rng.random_range(0..5)],
        },
        83..=85 => Op::Append {
            path: pk.any_file(),
            len: pk.rng.random_range(0..50_000),
            seed,
        },
        86..=87 => Op::Symlink {
            target: pk.any_path(),
            path: pk.any_file(),
        },
        88..=89 => Op::Readdir {
            path: if pk.rng.random_bool(0.3) {
                String::new()
            } else {
                pk.any_dir()
            },
        },
        90..=95 => Op::BehindPut {
            path: pk.any_file(),
            len,
            seed,
        },
        _ => Op::BehindDelete {
            path: pk.any_file(),
        },
    }
}

fn small_len(rng: &mut StdRng) -> usize {
    match rng.random_range(0..4) {
        0 => 0,
        1 => rng.random_range(1..100),
        2 => rng.random_range(100..20_000),
        _ => rng.random_range(20_000..300_000),
    }
}

/// What an operation observably did.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    Bytes(Vec<u8>),
    Names(Vec<String>),
    Errno(i32),
}

fn errno(e: std::io::Error) -> Outcome {
    Outcome::Errno(e.raw_os_error().unwrap_or(-1))
}

/// Applies `op` under `root` through ordinary file APIs.
fn apply(root: &Path, op: &Op) -> Outcome {
    let p = |rel: &str| root.join(rel);
    let res: std::io::Result<Outcome> = (|| match op {
        Op::Create { path, len, seed } => {
            let mut f = std::fs::File::create(p(path))?;
            f.write_all(&pattern(*len, *seed))?;
            close_checked(f)?;
            Ok(Outcome::Done)
        }
        Op::WriteAt {
            path,
            off,
            len,
            seed,
        } => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(p(path))?;
            f.seek(SeekFrom::Start(*off))?;
            f.write_all(&pattern(*len, *seed))?;
            close_checked(f)?;
            Ok(Outcome::Done)
        }
        Op::Read { path } => {
            let mut f = std::fs::File::open(p(path))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(Outcome::Bytes(buf))
        }
        Op::Truncate { path, len } => {
            let f = std::fs::OpenOptions::new().write(true).open(p(path))?;
            f.set_len(*len)?;
            close_checked(f)?;
            Ok(Outcome::Done)
        }
        Op::Rename { from, to } => std::fs::rename(p(from), p(to)).map(|_| Outcome::Done),
        Op::Unlink { path } => std::fs::remove_file(p(path)).map(|_| Outcome::Done),
        Op::Mkdir { path } => std::fs::create_dir(p(path)).map(|_| Outcome::Done),
        Op::Rmdir { path } => std::fs::remove_dir(p(path)).map(|_| Outcome::Done),
        Op::Chmod { path, mode } => {
            std::fs::set_permissions(p(path), std::fs::Permissions::from_mode(*mode))
                .map(|_| Outcome::Done)
        }
        Op::Readdir { path } => {
            let mut names: Vec<String> = std::fs::read_dir(p(path))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            Ok(Outcome::Names(names))
        }
        Op::Append { path, len, seed } => {
            let mut f = std::fs::OpenOptions::new().append(true).open(p(path))?;
            f.write_all(&pattern(*len, *seed))?;
            close_checked(f)?;
            Ok(Outcome::Done)
        }
        Op::Symlink { target, path } => {
            std::os::unix::fs::symlink(target, p(path)).map(|_| Outcome::Done)
        }
        Op::BehindPut { .. } | Op::BehindDelete { .. } => Ok(Outcome::Done),
    })();
    res.unwrap_or_else(errno)
}

/// Whether a behind-the-back change applies: its parent is a real directory in the
/// model and the path itself is not a directory.
fn behind_applicable(model: &Path, path: &str) -> bool {
    let full = model.join(path);
    let parent_ok = full.parent().is_some_and(|d| d.is_dir());
    parent_ok && !std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir())
}

#[derive(Debug, PartialEq)]
enum Node {
    Dir,
    Link(PathBuf),
    File { size: u64, hash: String, perm: u32 },
}

fn snapshot(root: &Path) -> Result<BTreeMap<String, Node>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path: PathBuf = entry.path();
            let rel = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{rel}: stat: {e}"))?;
            if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| format!("{rel}: readlink: {e}"))?;
                out.insert(rel, Node::Link(target));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &path, out)?;
            } else {
                let data = std::fs::read(&path).map_err(|e| format!("{rel}: read: {e}"))?;
                out.insert(
                    rel,
                    Node::File {
                        size: meta.len(),
                        hash: common::sha256(&data),
                        perm: meta.permissions().mode() & 0o777,
                    },
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn run_model(seed: u64, steps: usize) -> usize {
    // Optional server faults (RELIABILITY_MODEL_FAIL_RATE, e.g. 0.05): retries must
    // hide them completely, so the model still applies unchanged.
    let fail_rate: f64 = std::env::var("RELIABILITY_MODEL_FAIL_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let emu = Emu::start("model-bucket", |mut c| {
        c.seed = seed;
        c
    });
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let mnt = BinMount::start(
        &emu,
        &dir.path().join("mnt"),
        &[
            "--metadata-ttl",
            "0",
            "--part-size",
            "100KiB",
            "--retries",
            "8",
        ],
    )
    .expect("mount");
    let faults = ossmount_emulator::FaultUpdate {
        fail_rate: Some(fail_rate),
        reset_rate: Some(fail_rate / 4.0),
        truncate_rate: Some(fail_rate / 4.0),
        latency_ms: None,
        ..Default::default()
    };
    emu.emu().set_faults(faults);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history: Vec<String> = Vec::new();
    let mut applied = 0;
    let mut stats: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for step in 0..steps {
        let op = random_op(&mut rng, &model);
        let (want, got) = match &op {
            Op::BehindPut { path, len, seed } => {
                if !behind_applicable(&model, path) {
                    continue;
                }
                let data = pattern(*len, *seed);
                // The new object replaces whatever the key was (a symlink too).
                let _ = std::fs::remove_file(model.join(path));
                std::fs::write(model.join(path), &data).unwrap();
                // A new local file gets 0644 under the usual umask; match the mount's
                // default for objects without metadata.
                std::fs::set_permissions(model.join(path), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
                emu.put(path, data);
                (Outcome::Done, Outcome::Done)
            }
            Op::BehindDelete { path } => {
                if !behind_applicable(&model, path)
                    || std::fs::symlink_metadata(model.join(path)).is_err()
                {
                    continue;
                }
                std::fs::remove_file(model.join(path)).unwrap();
                emu.block_on(ossmount::store::ObjectStore::delete_object(
                    emu.client.as_ref(),
                    path,
                ))
                .expect("delete behind the back");
                (Outcome::Done, Outcome::Done)
            }
            _ => (apply(&model, &op), apply(&mnt.mnt, &op)),
        };
        applied += 1;
        let kind = format!("{op:?}");
        let kind = kind.split([' ', '{']).next().unwrap_or("?").to_string();
        let e = stats.entry(kind).or_default();
        if matches!(want, Outcome::Errno(_)) {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
        history.push(format!("{step}: {op:?} -> {want:?}", want = short(&want)));
        assert!(
            want == got,
            "seed {seed} step {step}: {op:?}\n model: {}\n mount: {}\nhistory:\n{}\nlog:\n{}",
            short(&want),
            short(&got),
            history.join("\n"),
            tail(&mnt.log_text())
        );
        let a = snapshot(&model).expect("model tree");
        let b = snapshot(&mnt.mnt).unwrap_or_else(|e| {
            panic!(
                "seed {seed} step {step}: walking the mount failed: {e}\nhistory:\n{}",
                history.join("\n")
            )
        });
        if a != b {
            panic!(
                "seed {seed} step {step}: trees differ after {op:?}\n model: {a:?}\n mount: {b:?}\nhistory:\n{}",
                history.join("\n")
            );
        }
    }
    drop(mnt);
    eprintln!(
        "model seed {seed}: (ok, errno) per operation: {stats:?}; faults injected {:?}",
        emu.emu().stats().faults_injected
    );
    applied
}

fn short(o: &Outcome) -> String {
    match o {
        Outcome::Bytes(b) => format!("Bytes(len {}, sha {})", b.len(), &common::sha256(b)[..12]),
        other => format!("{other:?}"),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn random_file_operations_match_a_local_directory() {
    let steps = std::env::var("RELIABILITY_MODEL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let seeds: Vec<u64> = match std::env::var("RELIABILITY_MODEL_SEED") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1, 2],
    };
    let mut total = 0;
    for &seed in &seeds {
        total += run_model(seed, steps);
    }
    eprintln!(
        "model: {} seeds x {steps} steps, {total} operations applied to mount and model, trees equal after every step",
        seeds.len()
    );
}
