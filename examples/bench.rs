//! End-to-end benchmark: ossmount (FUSE) against direct HTTP, on a loopback emulator.
//!
//! Starts `ossmount-emulator` on 127.0.0.1, prepares data with the OSS client, mounts
//! the bucket with `ossmount … -f`, runs the workloads and prints one table:
//! 1. sequential read (mount vs ranged GETs of the same size and parallelism),
//! 2. four files read concurrently, 3. sequential write (mount vs direct multipart),
//! 4. `ls -l` of many objects (wall time + request counts from `GET /-/stats`),
//! 5. many 64 KiB files written then read, 6. random 4 KiB reads cold/warm,
//! 7. peak RSS of the mount process, 8. its CPU seconds per GiB.
//!
//! Rows 9-10: `ls -l` and `find` at emulator latency;
//! rows 11-12: `--write-back` at emulator latency (default 20 ms): `cp -r` of many 16 KiB
//! files and `tar x` of a source tree, each timed with write-back, without it, and as
//! serial PutObjects of the same files from the OSS client. The drain after `umount` is
//! not timed; every file is then checked byte for byte on the server and the daemon must
//! exit 0. `--only-write-back` runs only these rows.
//!
//! Run it through `scripts/bench.sh` (builds the release binaries). The mount is always
//! unmounted and the child processes killed, also when a step fails (drop guards; the
//! script adds a trap for signals).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use ossmount::client::{ClientConfig, OssClient};
use ossmount::credentials::{Credentials, StaticProvider};
use ossmount::store::{ObjectStore, PartInfo, PutBody, PutOptions};
use ossmount_emulator::StatsSnapshot;

const MIB: u64 = 1024 * 1024;
const BUCKET: &str = "bench";
const AK: &str = "bench-ak";
const SK: &str = "bench-secret";
const REGION: &str = "cn-hangzhou";

#[derive(Parser, Debug)]
#[command(about = "ossmount end-to-end benchmark (see scripts/bench.sh)")]
struct Args {
    /// Size of the sequential read/write files, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Objects listed by `ls -l`.
    #[arg(long, default_value_t = 10_000)]
    list_objects: usize,
    /// Small files written and read through the mount.
    #[arg(long, default_value_t = 1000)]
    small_files: usize,
    /// Random 4 KiB reads per pass.
    #[arg(long, default_value_t = 2000)]
    random_reads: usize,
    /// GET size and parallelism of the direct-HTTP read baseline (the mount's defaults).
    #[arg(long, default_value_t = 8)]
    request_mib: u64,
    #[arg(long, default_value_t = 4)]
    read_parallelism: usize,
    /// Part size and parallelism of the direct multipart baseline (the mount's defaults).
    #[arg(long, default_value_t = 8)]
    part_mib: u64,
    #[arg(long, default_value_t = 8)]
    write_parallelism: usize,
    /// Rounds of rows 1-3; mount and direct alternate in every round and the table shows
    /// the median (the machine is shared and noisy, one sample each proves little).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value = "target/release/ossmount-emulator")]
    emulator: PathBuf,
    #[arg(long, default_value = "target/release/ossmount")]
    ossmount: PathBuf,
    /// Scratch directory (emulator data + mountpoint); a temp dir when absent.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Extra arguments for ossmount (repeatable), e.g. `--mount-arg=--cache-size=1G`.
    #[arg(long = "mount-arg", allow_hyphen_values = true)]
    mount_args: Vec<String>,
    /// Objects per directory of rows 9-10 (`ls -l` and `find` at emulator latency), comma
    /// separated.
    #[arg(long, value_delimiter = ',', default_value = "2000,10000")]
    attr_objects: Vec<usize>,
    /// Emulator latency (ms per object/list request) for rows 9-10.
    #[arg(long, default_value_t = 20)]
    attr_latency_ms: u64,
    /// Rows 11-12 (`--write-back`): numbers of 16 KiB files copied with `cp -r`, comma
    /// separated; `0` skips the `cp -r` rows.
    #[arg(long, value_delimiter = ',', default_value = "300,1000")]
    write_back_files: Vec<usize>,
    /// Emulator latency (ms per object/list request) for rows 11-12.
    #[arg(long, default_value_t = 20)]
    write_back_latency_ms: u64,
    /// Row 12: the tarball `tar x` unpacks (default: a tar of this repository's src/).
    #[arg(long)]
    write_back_tar: Option<PathBuf>,
    /// Where the write-back stores live: a local disk, as the target says (the
    /// work directory may be on /dev/shm).
    #[arg(long, default_value = "/var/tmp")]
    write_back_store: PathBuf,
    /// Run only rows 11-12 (the quick way to measure write-back).
    #[arg(long)]
    only_write_back: bool,
}

/// A child process killed (and waited for) on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The mounted filesystem: unmounted, then its process stopped, on drop.
struct Mount {
    dir: PathBuf,
    child: ChildGuard,
}

impl Mount {
    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Already unmounted (and waited for) by `unmount_and_wait`.
        if !is_mounted(&self.dir) && matches!(self.child.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        // Give the daemon a moment to exit by itself after the unmount.
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn is_mounted(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else {
        return false;
    };
    let target = canon.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| {
            s.lines()
                .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
        })
        .unwrap_or(false)
}

fn start_emulator(bin: &Path, data_dir: &Path) -> Result<(ChildGuard, String)> {
    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--bucket",
            BUCKET,
            "--region",
            REGION,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("OSS_EMULATOR_ACCESS_KEY_ID", AK)
        .env("OSS_EMULATOR_ACCESS_KEY_SECRET", SK)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("emulator stdout")?;
    let guard = ChildGuard(child);
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next().transpose()? {
        if let Some(addr) = line.strip_prefix("ready ") {
            return Ok((guard, addr.trim().to_string()));
        }
    }
    bail!("emulator exited before printing `ready <addr>`")
}

fn mount(args: &Args, endpoint: &str, dir: &Path) -> Result<Mount> {
    mount_with(args, endpoint, dir, &[])
}

/// [`mount`] with `extra` arguments after `--mount-arg`s.
fn mount_with(args: &Args, endpoint: &str, dir: &Path, extra: &[&str]) -> Result<Mount> {
    std::fs::create_dir_all(dir)?;
    let child = Command::new(&args.ossmount)
        .arg(BUCKET)
        .arg(dir)
        .args([
            "--endpoint",
            endpoint,
            "--path-style",
            "--region",
            REGION,
            "-f",
        ])
        .args(&args.mount_args)
        .args(extra)
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", args.ossmount.display()))?;
    let mut m = Mount {
        dir: dir.to_path_buf(),
        child: ChildGuard(child),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(dir) {
        if let Some(status) = m.child.0.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = m.child.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("ossmount exited with {status} before mounting:\n{err}");
        }
        if Instant::now() > deadline {
            bail!("mount did not appear within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Drain stderr so a chatty daemon never blocks on a full pipe.
    if let Some(mut e) = m.child.0.stderr.take() {
        std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
    }
    Ok(m)
}

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the `(comm)`, which may contain spaces.
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the full line (11 and 12 here).
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

async fn stats(http: &reqwest::Client, endpoint: &str) -> Result<StatsSnapshot> {
    let body = http
        .get(format!("{endpoint}/-/stats"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

/// The stats once the mount has stopped sending (no new request for 50 ms, at most
/// 2 s): read-ahead that the reads just measured started in the background counts as
/// theirs, not as the next measurement's.
async fn settled_stats(http: &reqwest::Client, endpoint: &str) -> Result<StatsSnapshot> {
    let mut last = stats(http, endpoint).await?;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = stats(http, endpoint).await?;
        if delta(&last, &now).is_empty() {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn delta(before: &StatsSnapshot, after: &StatsSnapshot) -> Vec<(String, u64)> {
    after
        .requests
        .iter()
        .map(|(op, n)| (op.clone(), n - before.requests_for(op)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn fmt_counts(c: &[(String, u64)], per: f64) -> String {
    let total: u64 = c.iter().map(|x| x.1).sum();
    let parts: Vec<String> = c
        .iter()
        .map(|(op, n)| format!("{op} {:.3}", *n as f64 / per))
        .collect();
    format!("{:.3} req ({})", total as f64 / per, parts.join(", "))
}

/// utime + stime of this process, seconds.
fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Keeps one round's MB/s of the mount and the direct baseline, and logs them.
fn record_round(
    row: u32,
    round: usize,
    mount: f64,
    direct: f64,
    m: &mut Vec<f64>,
    d: &mut Vec<f64>,
) {
    eprintln!("row {row} round {round}: mount {mount:.0} MB/s, direct {direct:.0} MB/s");
    m.push(mount);
    d.push(direct);
}

/// Per-round ratios, e.g. "0.91 0.88 0.95".
fn ratios(mount: &[f64], direct: &[f64]) -> String {
    mount
        .iter()
        .zip(direct)
        .map(|(m, d)| format!("{:.2}", m / d))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8 ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// Multipart upload of `size` bytes (one part buffer reused), `parallel` parts in flight.
async fn direct_upload(
    client: &Arc<OssClient>,
    key: &str,
    size: u64,
    part: &Bytes,
    parallel: usize,
) -> Result<Duration> {
    let t = Instant::now();
    let id = client
        .initiate_multipart_upload(key, &PutOptions::default())
        .await?;
    let part_len = part.len() as u64;
    let n = size.div_ceil(part_len) as u32;
    let mut parts: Vec<PartInfo> = futures::stream::iter(1..=n)
        .map(|i| {
            let len = part_len.min(size - u64::from(i - 1) * part_len) as usize;
            let body = PutBody::Bytes(part.slice(..len));
            let (client, id) = (client.clone(), id.clone());
            async move { client.upload_part(key, &id, i, body).await }
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number);
    client.complete_multipart_upload(key, &id, &parts).await?;
    Ok(t.elapsed())
}

/// Ranged GETs of `request` bytes over the whole object, `parallel` in flight, in order.
async fn direct_read(
    client: &Arc<OssClient>,
    key: &str,
    size: u64,
    request: u64,
    parallel: usize,
) -> Result<Duration> {
    let t = Instant::now();
    let ranges: Vec<_> = (0..size.div_ceil(request))
        .map(|i| i * request..((i + 1) * request).min(size))
        .collect();
    let total: u64 = futures::stream::iter(ranges)
        .map(|r| {
            let client = client.clone();
            async move {
                client
                    .get_range(key, r, None)
                    .await
                    .map(|o| o.data.len() as u64)
            }
        })
        .buffered(parallel)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
    if total != size {
        bail!("direct read returned {total} of {size} bytes");
    }
    Ok(t.elapsed())
}

fn mount_read(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn mount_write(path: &Path, size: u64, chunk: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut left = size;
    while left > 0 {
        let n = (chunk.len() as u64).min(left) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all().context("fsync (upload) of the written file")?;
    Ok(())
}

/// The table, and the mount's pid (its peak RSS is logged after every row).
struct Table(String, u32);

impl Table {
    fn row(&mut self, name: &str, mount: String, direct: String, note: String) {
        let _ = writeln!(self.0, "| {name} | {mount} | {direct} | {note} |");
        eprintln!(
            "after {name}: mount peak RSS {:.0} MiB",
            peak_rss_mib(self.1)
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let size = args.size_mib * MIB;

    let (_emu, addr) = start_emulator(&args.emulator, &work.join("emulator-data"))?;
    let endpoint = format!("http://{addr}");
    let mut cfg = ClientConfig::new(
        endpoint.clone(),
        BUCKET,
        REGION,
        Arc::new(StaticProvider {
            creds: Credentials::new(AK, SK),
            source: "bench".into(),
        }),
    );
    cfg.read_timeout = Duration::from_secs(60);
    let client = Arc::new(OssClient::new(cfg)?);
    let http = reqwest::Client::new();
    let part = pattern((args.part_mib * MIB) as usize, 7);
    if args.only_write_back {
        let mut table = Table(String::new(), std::process::id());
        let _ = writeln!(table.0, "| workload | mount | direct HTTP | notes |");
        let _ = writeln!(table.0, "|---|---|---|---|");
        let result = write_back_rows(&args, &client, &http, &endpoint, &work, &mut table).await;
        println!("{}", table.0);
        return result;
    }

    eprintln!("preparing data on {endpoint} …");
    // One object per round for rows 1 and 2: a later round must not be served by the
    // block cache the earlier round filled.
    for round in 0..args.rounds.max(1) {
        let key = format!("seq/file{round}");
        direct_upload(&client, &key, size, &part, args.write_parallelism).await?;
        for i in 0..4 {
            let key = format!("four/{round}-{i}");
            direct_upload(&client, &key, size / 4, &part, args.write_parallelism).await?;
        }
    }
    direct_upload(&client, "rand/file", size, &part, args.write_parallelism).await?;
    futures::stream::iter(0..args.list_objects)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .put_object(
                        &format!("many/obj-{i:06}"),
                        PutBody::Bytes(Bytes::from_static(b"x")),
                        &PutOptions::default(),
                    )
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;

    let mnt = work.join("mnt");
    let m = mount(&args, &endpoint, &mnt)?;
    let mut table = Table(String::new(), m.pid());
    let _ = writeln!(table.0, "| workload | mount | direct HTTP | notes |");
    let _ = writeln!(table.0, "|---|---|---|---|");
    let env = Env {
        args: &args,
        client: &client,
        http: &http,
        endpoint: &endpoint,
        mnt: &mnt,
        pid: m.pid(),
        part: &part,
        size,
    };
    let mut result = run_rows(&env, &mut table).await;
    drop(m);
    if result.is_ok() {
        result = attr_rows(&env, &mut table, &work).await;
    }
    if result.is_ok() {
        result = write_back_rows(&args, &client, &http, &endpoint, &work, &mut table).await;
    }
    // Print what was measured even when a later row failed.
    println!("{}", table.0);
    result
}

struct Env<'a> {
    args: &'a Args,
    client: &'a Arc<OssClient>,
    http: &'a reqwest::Client,
    endpoint: &'a str,
    mnt: &'a Path,
    pid: u32,
    part: &'a Bytes,
    size: u64,
}

async fn run_rows(env: &Env<'_>, table: &mut Table) -> Result<()> {
    let Env {
        args,
        client,
        http,
        endpoint,
        mnt,
        pid,
        part,
        size,
    } = *env;
    let rounds = args.rounds.max(1);
    let gib = size as f64 / (1024.0 * MIB as f64);

    // 1. Sequential read: mount and direct alternate, `rounds` times.
    let (mut mount_mbps, mut direct_mbps) = (Vec::new(), Vec::new());
    let (mut mount_cpu, mut direct_cpu) = (Vec::new(), Vec::new());
    let mut counts = String::new();
    let mut fetched_ratio = 0.0;
    // Odd rounds measure direct first: whichever goes first in a round pays for pages
    // the emulator and kernel touch for the first time (expensive on this VM).
    for round in 0..rounds {
        let key = format!("seq/file{round}");
        let direct_row1 = || async {
            let cpu0 = self_cpu_seconds();
            let d = direct_read(
                client,
                &key,
                size,
                args.request_mib * MIB,
                args.read_parallelism,
            )
            .await?;
            anyhow::Ok((d, (self_cpu_seconds() - cpu0) / gib))
        };
        let early = if round % 2 == 1 {
            Some(direct_row1().await?)
        } else {
            None
        };
        let before = stats(http, endpoint).await?;
        let cpu0 = cpu_seconds(pid);
        let t = Instant::now();
        let n = tokio::task::block_in_place(|| mount_read(&mnt.join(&key)))?;
        let mount_d = t.elapsed();
        mount_cpu.push((cpu_seconds(pid) - cpu0) / gib);
        let after = stats(http, endpoint).await?;
        if n != size {
            bail!("mount read returned {n} of {size} bytes");
        }
        if round == 0 {
            fetched_ratio = (after.bytes_out - before.bytes_out) as f64 / size as f64;
            counts = fmt_counts(&delta(&before, &after), 1.0);
        }
        let (direct_d, cpu) = match early {
            Some(r) => r,
            None => direct_row1().await?,
        };
        direct_cpu.push(cpu);
        record_round(
            1,
            round,
            mbps(size, mount_d),
            mbps(size, direct_d),
            &mut mount_mbps,
            &mut direct_mbps,
        );
    }
    table.row(
        &format!("1. seq read {} MiB", args.size_mib),
        format!("{:.0} MB/s", median(&mount_mbps)),
        format!("{:.0} MB/s", median(&direct_mbps)),
        format!(
            "ratio {:.2} (median of {rounds}; rounds {}); {} MiB GETs × {}; mount fetched {:.2}× the file in {}",
            median(&mount_mbps) / median(&direct_mbps),
            ratios(&mount_mbps, &direct_mbps),
            args.request_mib,
            args.read_parallelism,
            fetched_ratio,
            counts
        ),
    );

    // 2. Four files concurrently.
    let (mut mount4, mut direct4) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let direct_row2 = || async {
            let t = Instant::now();
            futures::future::try_join_all((0..4).map(|i| {
                let client = client.clone();
                let key = format!("four/{round}-{i}");
                let (req, par) = (args.request_mib * MIB, args.read_parallelism);
                async move { direct_read(&client, &key, size / 4, req, par).await }
            }))
            .await?;
            anyhow::Ok(t.elapsed())
        };
        let early = if round % 2 == 1 {
            Some(direct_row2().await?)
        } else {
            None
        };
        let t = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let p = mnt.join(format!("four/{round}-{i}"));
                std::thread::spawn(move || mount_read(&p))
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h
                .join()
                .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
        }
        if total != size / 4 * 4 {
            bail!("four-file mount read returned {total} bytes");
        }
        let mount_d = t.elapsed();
        let direct_d = match early {
            Some(d) => d,
            None => direct_row2().await?,
        };
        record_round(
            2,
            round,
            mbps(total, mount_d),
            mbps(total, direct_d),
            &mut mount4,
            &mut direct4,
        );
    }
    table.row(
        "2. 4 files concurrently",
        format!("{:.0} MB/s", median(&mount4)),
        format!("{:.0} MB/s", median(&direct4)),
        format!(
            "ratio {:.2} (median of {rounds}; rounds {})",
            median(&mount4) / median(&direct4),
            ratios(&mount4, &direct4)
        ),
    );

    // 3. Sequential write (includes close/fsync, i.e. the upload is complete).
    //
    // Each write is followed by the deletion of what it wrote, and one unmeasured write
    // comes first, so every measured write starts with the same emulator memory state:
    // the memory the previous object freed. (On VMs that return freed guest memory to
    // the host, touching fresh pages is slow; with both objects deleted only at the end
    // of a round, whichever side wrote first in a round ran up to 2x faster.)
    let chunk = part.slice(..MIB as usize);
    std::fs::create_dir_all(mnt.join("written"))?;
    direct_upload(client, "direct/warm-up", size, part, args.write_parallelism).await?;
    client.delete_object("direct/warm-up").await?;
    let (mut mount_w, mut direct_w, mut write_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let direct_key = format!("direct/file{round}");
        let direct_row3 = || async {
            let d = direct_upload(client, &direct_key, size, part, args.write_parallelism).await?;
            client.delete_object(&direct_key).await?;
            anyhow::Ok(d)
        };
        let early = if round % 2 == 1 {
            Some(direct_row3().await?)
        } else {
            None
        };
        let key = format!("written/file{round}");
        let path = mnt.join(&key);
        let cpu0 = cpu_seconds(pid);
        let t = Instant::now();
        tokio::task::block_in_place(|| mount_write(&path, size, &chunk))?;
        let mount_d = t.elapsed();
        write_cpu.push((cpu_seconds(pid) - cpu0) / gib);
        let head = client.head_object(&key).await?;
        if head.size != size {
            bail!("written object has {} bytes, expected {size}", head.size);
        }
        client.delete_object(&key).await?;
        let direct_d = match early {
            Some(d) => d,
            None => direct_row3().await?,
        };
        record_round(
            3,
            round,
            mbps(size, mount_d),
            mbps(size, direct_d),
            &mut mount_w,
            &mut direct_w,
        );
    }
    table.row(
        &format!("3. seq write {} MiB", args.size_mib),
        format!("{:.0} MB/s", median(&mount_w)),
        format!("{:.0} MB/s", median(&direct_w)),
        format!(
            "ratio {:.2} (median of {rounds}; rounds {}); {} MiB parts × {}",
            median(&mount_w) / median(&direct_w),
            ratios(&mount_w, &direct_w),
            args.part_mib,
            args.write_parallelism
        ),
    );
    let (read_cpu, write_cpu) = (median(&mount_cpu), median(&write_cpu));
    let direct_read_cpu = median(&direct_cpu);

    // 4. ls -l of many objects: first with `many` unknown (its lookup is part of the
    // cost), then again once the kernel knows the directory (the listing alone).
    let mut ls_runs = Vec::new();
    for _ in 0..2 {
        let before = stats(http, endpoint).await?;
        let t = Instant::now();
        let out = Command::new("ls")
            .arg("-l")
            .arg(mnt.join("many"))
            .stdout(Stdio::piped())
            .output()?;
        let ls_d = t.elapsed();
        let listed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .count()
            .saturating_sub(1);
        let after = stats(http, endpoint).await?;
        ls_runs.push((ls_d, listed, delta(&before, &after)));
    }
    let (cold_d, listed, cold) = &ls_runs[0];
    let (warm_d, _, warm) = &ls_runs[1];
    table.row(
        &format!("4. ls -l {} objects", args.list_objects),
        format!(
            "{:.2} s; again {:.2} s",
            cold_d.as_secs_f64(),
            warm_d.as_secs_f64()
        ),
        "-".into(),
        format!(
            "{listed} entries; {}; again (directory known): {}",
            fmt_counts(cold, 1.0),
            fmt_counts(warm, 1.0)
        ),
    );

    // 5. Many small files: write all, then read all.
    let small = pattern(64 * 1024, 3);
    let dir = mnt.join("small");
    std::fs::create_dir_all(&dir)?;
    let before = stats(http, endpoint).await?;
    let t = Instant::now();
    for i in 0..args.small_files {
        std::fs::write(dir.join(format!("f{i:05}")), &small)?;
    }
    let write_d = t.elapsed();
    let mid = stats(http, endpoint).await?;
    let t = Instant::now();
    for i in 0..args.small_files {
        let got = std::fs::read(dir.join(format!("f{i:05}")))?;
        if got != small {
            bail!("small file {i} read back wrong");
        }
    }
    let read_d = t.elapsed();
    let after = stats(http, endpoint).await?;
    let nf = args.small_files as f64;
    table.row(
        &format!("5. {}×64 KiB files", args.small_files),
        format!(
            "write {:.0} files/s, read {:.0} files/s",
            nf / write_d.as_secs_f64(),
            nf / read_d.as_secs_f64()
        ),
        "-".into(),
        format!(
            "per file: write {}; read {}",
            fmt_counts(&delta(&before, &mid), nf),
            fmt_counts(&delta(&mid, &after), nf)
        ),
    );

    // 6. Random 4 KiB reads, cold then warm (same offsets).
    let f = std::fs::File::open(mnt.join("rand/file"))?;
    // Consecutive offsets at least 2 MiB apart (when the file allows), so that every read
    // is a random one: a read within the read-ahead window of the last one counts as
    // sequential and starts a read-ahead, which the next jump may cut short at a moment
    // that varies from run to run (the warm pass then fetches it again).
    let mut seed = 0x9E3779B97F4A7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % (size - 4096)) & !4095
    };
    let min_jump = if size >= 8 * MIB { 2 * MIB + 4096 } else { 0 };
    let mut offsets: Vec<u64> = Vec::with_capacity(args.random_reads);
    while offsets.len() < args.random_reads {
        let off = next();
        if off == 0 || offsets.last().is_some_and(|&p| off.abs_diff(p) < min_jump) {
            continue;
        }
        offsets.push(off);
    }
    let mut buf = vec![0u8; 4096];
    let mut pass = || -> Result<Duration> {
        let t = Instant::now();
        for &off in &offsets {
            f.read_exact_at(&mut buf, off)?;
        }
        Ok(t.elapsed())
    };
    let before = settled_stats(http, endpoint).await?;
    let cold = pass()?;
    let mid = settled_stats(http, endpoint).await?;
    let warm = pass()?;
    let after = settled_stats(http, endpoint).await?;
    let nr = args.random_reads as f64;
    table.row(
        &format!("6. random 4 KiB reads ×{}", args.random_reads),
        format!(
            "cold {:.0} IOPS ({:.2} ms), warm {:.0} IOPS ({:.3} ms)",
            nr / cold.as_secs_f64(),
            cold.as_secs_f64() * 1000.0 / nr,
            nr / warm.as_secs_f64(),
            warm.as_secs_f64() * 1000.0 / nr
        ),
        "-".into(),
        format!(
            "per read: cold {}; warm {}",
            fmt_counts(&delta(&before, &mid), nr),
            fmt_counts(&delta(&mid, &after), nr)
        ),
    );

    // 7, 8.
    table.row(
        "7. peak RSS of mount",
        format!("{:.0} MiB", peak_rss_mib(pid)),
        "-".into(),
        "VmHWM".into(),
    );
    table.row(
        "8. CPU per GiB",
        format!("read {read_cpu:.2} s, write {write_cpu:.2} s"),
        format!("read {direct_read_cpu:.2} s"),
        "utime+stime, medians of rows 1 and 3: the mount process vs the direct client \
         (both exclude the emulator and the reading application)"
            .into(),
    );
    Ok(())
}

/// Rows 9-10: `ls -l` and `find -type f` of directories of `--attr-objects` objects with
/// the emulator's latency at `--attr-latency-ms` and `--metadata-ttl 60s`, in the default
/// mode (stored attributes: one HEAD per entry, many in flight) and with
/// `--readdir-optimize` (listing attributes; objects of up to 4095 bytes are HEADed while
/// listing, since one may be an ossfs-style symlink) and with `--readdir-optimize
/// --readdir-check-size 0` (LISTs only; such links list as files). Each measurement runs on a fresh
/// mount; "again" is the same `ls -l` within the TTL (the listing and attributes cached).
async fn attr_rows(env: &Env<'_>, table: &mut Table, work: &Path) -> Result<()> {
    let (args, client, http, endpoint) = (env.args, env.client, env.http, env.endpoint);
    for &n in &args.attr_objects {
        let dir = format!("attrs{n}");
        futures::stream::iter(0..n)
            .map(|i| {
                let client = client.clone();
                let key = format!("{dir}/f{i:06}");
                async move {
                    client
                        .put_object(
                            &key,
                            PutBody::Bytes(Bytes::from_static(b"x")),
                            &PutOptions::default(),
                        )
                        .await
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await?;
        set_latency(http, endpoint, args.attr_latency_ms).await?;
        let run = async {
            for (mode, extra) in [
                ("default", &[][..]),
                ("--readdir-optimize", &["--readdir-optimize"][..]),
                (
                    "--readdir-optimize --readdir-check-size 0",
                    &["--readdir-optimize", "--readdir-check-size", "0"][..],
                ),
            ] {
                let mut margs = Vec::new();
                margs.extend(["--metadata-ttl", "60s"]);
                margs.extend(extra.iter().copied());
                let measure = |cmd: &'static str, mnt: PathBuf| async move {
                    let before = stats(http, endpoint).await?;
                    let t = Instant::now();
                    let out = match cmd {
                        "ls" => Command::new("ls").arg("-l").arg(&mnt).output()?,
                        _ => Command::new("find")
                            .arg(&mnt)
                            .args(["-type", "f"])
                            .output()?,
                    };
                    let d = t.elapsed();
                    if !out.status.success() {
                        bail!("{cmd} failed: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
                    let after = stats(http, endpoint).await?;
                    Ok::<_, anyhow::Error>((d, lines, delta(&before, &after)))
                };
                let mnt = work.join(format!("mnt-attrs-{n}-{}", extra.len()));
                let m = mount_with(args, endpoint, &mnt, &margs)?;
                let (ls_d, lines, ls_c) = measure("ls", mnt.join(&dir)).await?;
                let (again_d, _, again_c) = measure("ls", mnt.join(&dir)).await?;
                drop(m);
                let m = mount_with(args, endpoint, &mnt, &margs)?;
                let (find_d, found, find_c) = measure("find", mnt.join(&dir)).await?;
                drop(m);
                let nf = n as f64;
                table.row(
                    &format!(
                        "9. ls -l {n} objects, {} ms latency, {mode}",
                        args.attr_latency_ms
                    ),
                    format!(
                        "{:.2} s; again {:.2} s",
                        ls_d.as_secs_f64(),
                        again_d.as_secs_f64()
                    ),
                    "-".into(),
                    format!(
                        "{} entries; {} ({} per entry); again within the TTL: {}",
                        lines.saturating_sub(1),
                        fmt_counts(&ls_c, 1.0),
                        fmt_counts(&ls_c, nf),
                        fmt_counts(&again_c, 1.0)
                    ),
                );
                table.row(
                    &format!(
                        "10. find -type f {n} objects, {} ms latency, {mode}",
                        args.attr_latency_ms
                    ),
                    format!("{:.2} s", find_d.as_secs_f64()),
                    "-".into(),
                    format!(
                        "{} found; {}",
                        found.saturating_sub(0),
                        fmt_counts(&find_c, 1.0)
                    ),
                );
            }
            Ok::<_, anyhow::Error>(())
        };
        let r = run.await;
        set_latency(http, endpoint, 0).await?;
        r?;
    }
    Ok(())
}

async fn set_latency(http: &reqwest::Client, endpoint: &str, ms: u64) -> Result<()> {
    let url = format!("{}/-/faults", endpoint.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .body(format!("{{\"latency_ms\":{ms}}}"))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("POST {url}: {}", resp.status());
    }
    Ok(())
}

/// One file of a write-back workload: path relative to the tree, content.
struct TreeFile {
    rel: String,
    data: Vec<u8>,
}

/// Every regular file under `root`, sorted.
fn read_tree(root: &Path) -> Result<Vec<TreeFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<TreeFile>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
                out.push(TreeFile {
                    rel,
                    data: std::fs::read(&path)?,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Unmounts `m` and waits (up to 10 min) for its process to exit by itself: a
/// write-back mount drains its queue first. Returns the time it took and whether the
/// process exited 0.
fn unmount_and_wait(mut m: Mount) -> Result<(Duration, bool)> {
    let t = Instant::now();
    let ok = Command::new("umount")
        .arg(&m.dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("umount {} failed", m.dir.display());
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = m.child.0.try_wait()? {
            return Ok((t.elapsed(), status.success()));
        }
        if Instant::now() > deadline {
            bail!("ossmount did not exit within 10 min of the umount");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Keys of `files` under `prefix` that are not exactly on the server.
async fn not_on_server(client: &Arc<OssClient>, prefix: &str, files: &[TreeFile]) -> Vec<String> {
    futures::stream::iter(files)
        .map(|f| {
            let client = client.clone();
            let key = format!("{prefix}/{}", f.rel);
            async move {
                let exact = match client.head_object(&key).await {
                    Ok(meta) if meta.size == f.data.len() as u64 && f.data.is_empty() => true,
                    Ok(meta) if meta.size == f.data.len() as u64 => client
                        .get_range(&key, 0..meta.size, None)
                        .await
                        .is_ok_and(|o| o.data[..] == f.data[..]),
                    _ => false,
                };
                (!exact).then_some(key)
            }
        })
        .buffer_unordered(32)
        .filter_map(|k| async move { k })
        .collect()
        .await
}

/// Rows 11-12: small-file workloads with and without `--write-back`, and as serial PUTs.
async fn write_back_rows(
    args: &Args,
    client: &Arc<OssClient>,
    http: &reqwest::Client,
    endpoint: &str,
    work: &Path,
    table: &mut Table,
) -> Result<()> {
    // The workloads: (name, local source tree, shell command run in the mount).
    let mut workloads = Vec::new();
    for &n in args.write_back_files.iter().filter(|&&n| n > 0) {
        let src = work.join(format!("wb-src-{n}"));
        std::fs::create_dir_all(&src)?;
        for i in 0..n {
            std::fs::write(src.join(format!("f{i:05}")), pattern(16 * 1024, i as u8))?;
        }
        workloads.push((
            format!("11. cp -r {n} × 16 KiB"),
            src.clone(),
            format!("cp -r {} DEST", src.display()),
        ));
    }
    let tar = match &args.write_back_tar {
        Some(t) => t.clone(),
        None => {
            let t = work.join("wb-src.tar");
            let ok = Command::new("tar")
                .arg("cf")
                .arg(&t)
                .args(["-C", env!("CARGO_MANIFEST_DIR"), "src"])
                .status()?
                .success();
            if !ok {
                bail!("tar cf {} of src/ failed", t.display());
            }
            t
        }
    };
    let tar_local = work.join("wb-tar-local");
    std::fs::create_dir_all(&tar_local)?;
    if !Command::new("tar")
        .arg("xf")
        .arg(&tar)
        .arg("-C")
        .arg(&tar_local)
        .status()?
        .success()
    {
        bail!("tar xf {} failed", tar.display());
    }
    workloads.push((
        format!("12. tar x of {}", tar.display()),
        tar_local.clone(),
        format!("tar xf {} -C DEST", tar.display()),
    ));

    let latency = args.write_back_latency_ms;
    for (i, (name, src, script)) in workloads.iter().enumerate() {
        // `cp -r SRC DEST` puts the tree at DEST (DEST must not exist); `tar x -C DEST`
        // unpacks into DEST (it must exist). Either way the files end up at DEST/<rel>.
        let files = read_tree(src)?;
        let bytes: usize = files.iter().map(|f| f.data.len()).sum();
        let run_in = |m: &Mount, dest: &str| -> Result<Duration> {
            let dest_path = m.dir.join(dest);
            if script.starts_with("tar ") {
                std::fs::create_dir_all(&dest_path)?;
            }
            let cmd = script.replace("DEST", &dest_path.to_string_lossy());
            let t = Instant::now();
            let out = Command::new("sh").arg("-c").arg(&cmd).output()?;
            let d = t.elapsed();
            if !out.status.success() {
                bail!("`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(d)
        };
        set_latency(http, endpoint, latency).await?;
        let measured = async {
            // Without write-back.
            let mnt = work.join(format!("mnt-wb-{i}-plain"));
            let m = mount_with(args, endpoint, &mnt, &[])?;
            let plain = tokio::task::block_in_place(|| run_in(&m, &format!("plain{i}")))?;
            drop(m);
            // With write-back; the store on a local disk.
            let store = tempfile::Builder::new()
                .prefix("ossmount-bench-store-")
                .tempdir_in(&args.write_back_store)?;
            let store_arg = store.path().to_string_lossy().into_owned();
            let mnt = work.join(format!("mnt-wb-{i}-wb"));
            let m = mount_with(
                args,
                endpoint,
                &mnt,
                &["--write-back", "--cache-dir", &store_arg],
            )?;
            let wb = tokio::task::block_in_place(|| run_in(&m, &format!("wb{i}")))?;
            let (drain, exit0) = tokio::task::block_in_place(|| unmount_and_wait(m))?;
            // Raw serial PUTs of the same files.
            let t = Instant::now();
            for f in &files {
                client
                    .put_object(
                        &format!("put{i}/{}", f.rel),
                        PutBody::Bytes(Bytes::from(f.data.clone())),
                        &PutOptions::default(),
                    )
                    .await?;
            }
            let puts = t.elapsed();
            anyhow::Ok((plain, wb, drain, exit0, puts))
        };
        let r = measured.await;
        set_latency(http, endpoint, 0).await?;
        let (plain, wb, drain, exit0, puts) = r?;
        let missing = not_on_server(client, &format!("wb{i}"), &files).await;
        if !missing.is_empty() {
            bail!(
                "{name}: {} of {} files not exact on the server after the drain, e.g. {}",
                missing.len(),
                files.len(),
                missing[0]
            );
        }
        if !exit0 {
            bail!("{name}: the write-back daemon did not exit 0 after its drain");
        }
        let n = files.len() as f64;
        table.row(
            &format!("{name}, {latency} ms latency, --write-back"),
            format!(
                "{:.2} s ({:.0} files/s)",
                wb.as_secs_f64(),
                n / wb.as_secs_f64()
            ),
            format!("{:.2} s serial PUTs", puts.as_secs_f64()),
            format!(
                "{} files, {:.1} MiB; without write-back {:.2} s: write-back {:.1}× faster, {:.1}× serial PUTs; drain {:.1} s after umount (not timed), all {} exact on the server, exit 0",
                files.len(),
                bytes as f64 / MIB as f64,
                plain.as_secs_f64(),
                plain.as_secs_f64() / wb.as_secs_f64(),
                puts.as_secs_f64() / wb.as_secs_f64(),
                drain.as_secs_f64(),
                files.len()
            ),
        );
    }
    Ok(())
}
