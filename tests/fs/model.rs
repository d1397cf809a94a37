//! Reference-model test of the filesystem core over the mock store, with proptest:
//! random sequences of create / write at an offset / truncate / read / rename / unlink /
//! mkdir / rmdir / write-flush-write (a commit in the middle of a handle) / remount run
//! against the core and against an in-memory model of a POSIX directory tree. After every
//! step both must agree (the same success or errno, the same bytes read), and the whole
//! tree (names, kinds, contents) must be equal. A failing sequence is shrunk to a minimal
//! one, which proptest prints (and records under `proptest-regressions/`).
//!
//! The harness plays the kernel's part: it resolves paths by lookups and does the VFS's
//! own checks (write to a directory → EISDIR, rename of a directory into itself → EINVAL,
//! rename between a file and a directory → EISDIR/ENOTDIR) before calling the core, as
//! the kernel does before sending a FUSE request. `Remount` starts a new core over the
//! same store: everything committed must be read back from the bucket alone.
//!
//! Cost: `PROPTEST_CASES` (default 128 here) sequences of up to 32 steps: about a second.
//! `tests/model_fs.rs` is the long-running counterpart through the real binary and kernel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ossmount::fs::{FileKind, Filesystem, FsConfig, ROOT_INO, SetAttr};
use ossmount::store::mock::MockStore;
use ossmount::write::UploadConfig;
use proptest::prelude::*;

use crate::common::core::{CTX, n, read_all, readdir_all};

/// The namespace the operations draw from: a few names at three depths, so renames
/// cross directories and directories become non-empty. File operations mostly pick the
/// first five (file names), directory operations the last three; sometimes either picks
/// any, to reach the type errors.
const PATHS: &[&str] = &["a", "b", "d/a", "d/b", "d/e/a", "d", "d/e", "e"];
const FILES: usize = 5;

/// Every sequence starts from this tree, so most operations find what they act on.
fn start() -> Vec<Op> {
    vec![
        Op::Mkdir(5),
        Op::Mkdir(6),
        Op::Create(0, b"alpha".to_vec()),
        Op::Create(2, b"in d".to_vec()),
    ]
}

fn file_path() -> impl Strategy<Value = usize> {
    prop_oneof![9 => 0..FILES, 1 => 0..PATHS.len()]
}

fn dir_path() -> impl Strategy<Value = usize> {
    prop_oneof![9 => FILES..PATHS.len(), 1 => 0..PATHS.len()]
}

#[derive(Debug, Clone)]
enum Op {
    Create(usize, Vec<u8>),
    Write(usize, u64, Vec<u8>),
    Truncate(usize, u64),
    Read(usize),
    Rename(usize, usize),
    Unlink(usize),
    Mkdir(usize),
    Rmdir(usize),
    /// Open, write, flush (commit), write more, close: the second write must land too.
    WriteFlushWrite(usize, Vec<u8>, Vec<u8>),
    Remount,
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn op() -> impl Strategy<Value = Op> {
    let any_path = 0..PATHS.len();
    prop_oneof![
        3 => (file_path(), data()).prop_map(|(p, d)| Op::Create(p, d)),
        4 => (file_path(), 0..80u64, data()).prop_map(|(p, o, d)| Op::Write(p, o, d)),
        2 => (file_path(), 0..80u64).prop_map(|(p, s)| Op::Truncate(p, s)),
        3 => file_path().prop_map(Op::Read),
        3 => (any_path.clone(), any_path).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => file_path().prop_map(Op::Unlink),
        2 => dir_path().prop_map(Op::Mkdir),
        2 => dir_path().prop_map(Op::Rmdir),
        2 => (file_path(), data(), data()).prop_map(|(p, a, b)| Op::WriteFlushWrite(p, a, b)),
        1 => Just(Op::Remount),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    File(Vec<u8>),
    Dir,
}

/// The reference: a POSIX tree keyed by path ("" is the root, always a directory).
#[derive(Debug, Default, Clone)]
struct Model(BTreeMap<String, Node>);

type Res<T> = Result<T, i32>;

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

impl Model {
    fn get(&self, p: &str) -> Option<&Node> {
        if p.is_empty() {
            return Some(&Node::Dir);
        }
        self.0.get(p)
    }

    /// The path resolution the kernel does: every ancestor must be a directory.
    fn resolve_parent(&self, p: &str) -> Res<()> {
        let mut cur = String::new();
        for comp in parent_of(p).split('/').filter(|c| !c.is_empty()) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(comp);
            match self.get(&cur) {
                None => return Err(libc::ENOENT),
                Some(Node::File(_)) => return Err(libc::ENOTDIR),
                Some(Node::Dir) => {}
            }
        }
        Ok(())
    }

    fn children(&self, p: &str) -> Vec<String> {
        let prefix = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        self.0
            .keys()
            .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .cloned()
            .collect()
    }

    fn file_mut(&mut self, p: &str) -> Res<&mut Vec<u8>> {
        self.resolve_parent(p)?;
        match self.0.get_mut(p) {
            None => Err(libc::ENOENT),
            Some(Node::Dir) => Err(libc::EISDIR),
            Some(Node::File(d)) => Ok(d),
        }
    }

    fn apply(&mut self, op: &Op) -> Res<Option<Vec<u8>>> {
        match op {
            Op::Create(p, d) => {
                let p = PATHS[*p];
                self.resolve_parent(p)?;
                if self.get(p) == Some(&Node::Dir) {
                    return Err(libc::EISDIR);
                }
                self.0.insert(p.into(), Node::File(d.clone()));
            }
            Op::Write(p, off, d) => {
                let f = self.file_mut(PATHS[*p])?;
                let (start, end) = (*off as usize, *off as usize + d.len());
                if !d.is_empty() {
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    f[start..end].copy_from_slice(d);
                }
            }
            Op::Truncate(p, size) => self.file_mut(PATHS[*p])?.resize(*size as usize, 0),
            Op::Read(p) => return self.file_mut(PATHS[*p]).map(|d| Some(d.clone())),
            Op::WriteFlushWrite(p, a, b) => {
                let f = self.file_mut(PATHS[*p])?;
                let mut new = a.clone();
                new.extend_from_slice(b);
                if f.len() < new.len() {
                    f.resize(new.len(), 0);
                }
                f[..new.len()].copy_from_slice(&new);
            }
            Op::Unlink(p) => {
                let p = PATHS[*p];
                self.file_mut(p)?;
                self.0.remove(p);
            }
            Op::Mkdir(p) => {
                let p = PATHS[*p];
                self.resolve_parent(p)?;
                if self.get(p).is_some() {
                    return Err(libc::EEXIST);
                }
                self.0.insert(p.into(), Node::Dir);
            }
            Op::Rmdir(p) => {
                let p = PATHS[*p];
                self.resolve_parent(p)?;
                match self.get(p) {
                    None => return Err(libc::ENOENT),
                    Some(Node::File(_)) => return Err(libc::ENOTDIR),
                    Some(Node::Dir) if !self.children(p).is_empty() => {
                        return Err(libc::ENOTEMPTY);
                    }
                    Some(Node::Dir) => {
                        self.0.remove(p);
                    }
                }
            }
            Op::Rename(a, b) => {
                let (from, to) = (PATHS[*a], PATHS[*b]);
                self.resolve_parent(from)?;
                let src = self.get(from).cloned().ok_or(libc::ENOENT)?;
                self.resolve_parent(to)?;
                if from == to {
                    return Ok(None);
                }
                if to.starts_with(&format!("{from}/")) {
                    return Err(libc::EINVAL);
                }
                match (&src, self.get(to)) {
                    (Node::File(_), Some(Node::Dir)) => return Err(libc::EISDIR),
                    (Node::Dir, Some(Node::File(_))) => return Err(libc::ENOTDIR),
                    (Node::Dir, Some(Node::Dir)) if !self.children(to).is_empty() => {
                        return Err(libc::ENOTEMPTY);
                    }
                    _ => {}
                }
                let moved: Vec<(String, Node)> = self
                    .0
                    .iter()
                    .filter(|(k, _)| *k == from || k.starts_with(&format!("{from}/")))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.0.remove(to);
                for (k, v) in moved {
                    self.0.remove(&k);
                    self.0.insert(format!("{to}{}", &k[from.len()..]), v);
                }
            }
            Op::Remount => {}
        }
        Ok(None)
    }
}

/// The core over one store; `remount` replaces the core, keeping the store.
struct Harness {
    store: Arc<MockStore>,
    fs: Filesystem,
    staging: tempfile::TempDir,
}

fn new_fs(store: &Arc<MockStore>, staging: &tempfile::TempDir) -> Filesystem {
    let cfg = FsConfig {
        cache_dir: staging.path().to_path_buf(),
        metadata_ttl: Duration::from_secs(60),
        upload: UploadConfig {
            part_size: 1 << 20,
            max_concurrency: 2,
            single_put_threshold: 1 << 20,
        },
        ..FsConfig::default()
    };
    Filesystem::new(store.clone(), cfg, tokio::runtime::Handle::current())
}

impl Harness {
    fn new() -> Harness {
        let store = Arc::new(MockStore::new("bkt"));
        let staging = tempfile::tempdir().expect("tempdir");
        let fs = new_fs(&store, &staging);
        Harness { store, fs, staging }
    }

    /// Resolves `p`: Ok((parent ino, Some((ino, kind)))) or the kernel's errno.
    async fn resolve(&self, p: &str) -> Res<(u64, Option<(u64, FileKind)>)> {
        let mut dir = ROOT_INO;
        let comps: Vec<&str> = p.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            let a = self.fs.lookup(dir, n(comp)).await.map_err(|e| e.errno())?;
            if a.kind != FileKind::Dir {
                return Err(libc::ENOTDIR);
            }
            dir = a.ino;
        }
        let last = comps[comps.len() - 1];
        match self.fs.lookup(dir, n(last)).await {
            Ok(a) => Ok((dir, Some((a.ino, a.kind)))),
            Err(e) if e.errno() == libc::ENOENT => Ok((dir, None)),
            Err(e) => Err(e.errno()),
        }
    }

    async fn file(&self, p: &str) -> Res<u64> {
        match self.resolve(p).await? {
            (_, None) => Err(libc::ENOENT),
            (_, Some((_, FileKind::Dir))) => Err(libc::EISDIR),
            (_, Some((ino, _))) => Ok(ino),
        }
    }

    async fn write_through(&self, ino: u64, flags: i32, writes: &[(u64, &[u8])]) -> Res<()> {
        let fh = self.fs.open(ino, flags).await.map_err(|e| e.errno())?;
        for (off, d) in writes {
            if !d.is_empty() {
                self.fs.write(fh, *off, d).await.map_err(|e| e.errno())?;
            }
        }
        self.fs.flush(fh).await.map_err(|e| e.errno())?;
        self.fs.release(fh).await.map_err(|e| e.errno())
    }

    async fn apply(&mut self, op: &Op) -> Res<Option<Vec<u8>>> {
        let e = |e: ossmount::fs::FsError| e.errno();
        match op {
            Op::Create(p, d) => {
                let p = PATHS[*p];
                let (parent, found) = self.resolve(p).await?;
                match found {
                    Some((_, FileKind::Dir)) => return Err(libc::EISDIR),
                    Some((ino, _)) => {
                        self.write_through(ino, libc::O_WRONLY | libc::O_TRUNC, &[(0, d)])
                            .await?
                    }
                    None => {
                        let name = p.rsplit('/').next().expect("name");
                        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
                        let (_, fh) = self
                            .fs
                            .create(&CTX, parent, n(name), 0o644, 0o022, flags)
                            .await
                            .map_err(e)?;
                        if !d.is_empty() {
                            self.fs.write(fh, 0, d).await.map_err(e)?;
                        }
                        self.fs.flush(fh).await.map_err(e)?;
                        self.fs.release(fh).await.map_err(e)?;
                    }
                }
            }
            Op::Write(p, off, d) => {
                let ino = self.file(PATHS[*p]).await?;
                self.write_through(ino, libc::O_RDWR, &[(*off, d)]).await?;
            }
            Op::Truncate(p, size) => {
                let ino = self.file(PATHS[*p]).await?;
                let set = SetAttr {
                    size: Some(*size),
                    ..SetAttr::default()
                };
                self.fs.setattr(ino, set).await.map_err(e)?;
            }
            Op::Read(p) => {
                let ino = self.file(PATHS[*p]).await?;
                return Ok(Some(read_all(&self.fs, ino).await));
            }
            Op::WriteFlushWrite(p, a, b) => {
                let ino = self.file(PATHS[*p]).await?;
                let fh = self.fs.open(ino, libc::O_WRONLY).await.map_err(e)?;
                if !a.is_empty() {
                    self.fs.write(fh, 0, a).await.map_err(e)?;
                }
                self.fs.flush(fh).await.map_err(e)?;
                if !b.is_empty() {
                    self.fs.write(fh, a.len() as u64, b).await.map_err(e)?;
                }
                self.fs.flush(fh).await.map_err(e)?;
                self.fs.release(fh).await.map_err(e)?;
            }
            Op::Unlink(p) => {
                let p = PATHS[*p];
                let (parent, found) = self.resolve(p).await?;
                match found {
                    None => return Err(libc::ENOENT),
                    Some((_, FileKind::Dir)) => return Err(libc::EISDIR),
                    Some(_) => {}
                }
                let name = p.rsplit('/').next().expect("name");
                self.fs.unlink(parent, n(name)).await.map_err(e)?;
            }
            Op::Mkdir(p) => {
                let p = PATHS[*p];
                let (parent, found) = self.resolve(p).await?;
                if found.is_some() {
                    return Err(libc::EEXIST);
                }
                let name = p.rsplit('/').next().expect("name");
                self.fs
                    .mkdir(&CTX, parent, n(name), 0o755, 0o022)
                    .await
                    .map_err(e)?;
            }
            Op::Rmdir(p) => {
                let p = PATHS[*p];
                let (parent, found) = self.resolve(p).await?;
                match found {
                    None => return Err(libc::ENOENT),
                    Some((_, FileKind::Dir)) => {}
                    Some(_) => return Err(libc::ENOTDIR),
                }
                let name = p.rsplit('/').next().expect("name");
                self.fs.rmdir(parent, n(name)).await.map_err(e)?;
            }
            Op::Rename(a, b) => {
                let (from, to) = (PATHS[*a], PATHS[*b]);
                let (from_parent, src) = self.resolve(from).await?;
                let (_, src_kind) = src.ok_or(libc::ENOENT)?;
                let (to_parent, dst) = self.resolve(to).await?;
                if from == to {
                    return Ok(None);
                }
                if to.starts_with(&format!("{from}/")) {
                    return Err(libc::EINVAL);
                }
                match (src_kind == FileKind::Dir, dst.map(|d| d.1 == FileKind::Dir)) {
                    (false, Some(true)) => return Err(libc::EISDIR),
                    (true, Some(false)) => return Err(libc::ENOTDIR),
                    _ => {}
                }
                let from_name = from.rsplit('/').next().expect("name");
                let to_name = to.rsplit('/').next().expect("name");
                self.fs
                    .rename(from_parent, n(from_name), to_parent, n(to_name), 0)
                    .await
                    .map_err(e)?;
            }
            Op::Remount => {
                self.fs = new_fs(&self.store, &self.staging);
            }
        }
        Ok(None)
    }

    /// The whole tree as the core shows it.
    async fn tree(&self) -> BTreeMap<String, Node> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(String::new(), ROOT_INO)];
        while let Some((path, ino)) = stack.pop() {
            for d in readdir_all(&self.fs, ino).await {
                if d.name == "." || d.name == ".." {
                    continue;
                }
                let p = if path.is_empty() {
                    d.name.clone()
                } else {
                    format!("{path}/{}", d.name)
                };
                let a = self
                    .fs
                    .lookup(ino, n(&d.name))
                    .await
                    .expect("lookup listed");
                if a.kind == FileKind::Dir {
                    out.insert(p.clone(), Node::Dir);
                    stack.push((p, a.ino));
                } else {
                    out.insert(p, Node::File(read_all(&self.fs, a.ino).await));
                }
            }
        }
        out
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut h = Harness::new();
        let mut model = Model::default();
        for (i, op) in start().iter().chain(ops).enumerate() {
            let want = model.apply(op);
            let got = h.apply(op).await;
            prop_assert_eq!(&got, &want, "step {} {:?}", i, op);
            let tree = h.tree().await;
            prop_assert_eq!(&tree, &model.0, "tree after step {} {:?}", i, op);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn core_behaves_like_a_posix_tree(ops in prop::collection::vec(op(), 1..32)) {
        run(&ops)?;
    }
}
