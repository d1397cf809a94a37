//! `ossmount-emulator`: a local OSS for tests, benchmarks and the demo. A thin wrapper
//! over [`ossmount_emulator::start`]; see that module for behaviour.
//!
//! Prints `metadata <addr>` (when `--metadata-listen` is given) and then `ready <addr>`
//! on stdout once accepting connections; exits cleanly on SIGTERM/SIGINT. Bad flags or
//! an invalid configuration exit with status 2.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ossmount::credentials::Secret;
use ossmount_emulator::{EmulatorConfig, EmulatorError, FaultSettings, TlsFiles};

// No Debug derive: the struct holds the access key secret.
#[derive(Parser)]
#[command(
    name = "ossmount-emulator",
    version,
    about = "Local Alibaba Cloud OSS emulator for tests and benchmarks"
)]
struct Args {
    /// Address to serve OSS on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Directory holding the buckets (created if missing; data survives restarts).
    #[arg(long)]
    data_dir: PathBuf,
    /// Bucket to serve (repeatable).
    #[arg(long = "bucket", required = true)]
    buckets: Vec<String>,
    /// Region id clients must sign for (bare id, e.g. cn-hangzhou).
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
    #[arg(
        long,
        env = "OSS_EMULATOR_ACCESS_KEY_ID",
        default_value = "emulator-ak"
    )]
    access_key_id: String,
    #[arg(
        long,
        env = "OSS_EMULATOR_ACCESS_KEY_SECRET",
        default_value = "emulator-secret",
        hide_env_values = true
    )]
    access_key_secret: String,
    /// Serve ECS metadata + STS (AssumeRoleWithOIDC) on this address.
    #[arg(long)]
    metadata_listen: Option<SocketAddr>,
    /// Lifetime in seconds of STS credentials issued by the metadata service.
    #[arg(long, default_value_t = 3600)]
    sts_lifetime: u64,
    /// Accept unsigned requests.
    #[arg(long)]
    anonymous: bool,
    /// Fraction of object/list requests answered 500/503.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Fraction of GET bodies aborted part-way (connection dropped).
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Fraction of GET bodies cut short of their Content-Length.
    #[arg(long, default_value_t = 0.0)]
    truncate_rate: f64,
    /// Latency added to every object/list request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the fault RNG.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Import the files under this directory into the first bucket at start.
    #[arg(long)]
    import_dir: Option<PathBuf>,
    /// Cap each connection's send rate at N megabytes (10^6 bytes) per second; 0 = none.
    #[arg(long, default_value_t = 0, value_name = "N")]
    conn_mbytes_per_sec: u64,
    /// Answer object/list requests beyond N per second with 503 (EC 0004-00000302), as
    /// OSS does over its QPS limit; 0 = no limit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_qps: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cfg = EmulatorConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        buckets: args.buckets,
        region: args.region,
        access_key_id: args.access_key_id,
        access_key_secret: Secret::new(args.access_key_secret),
        metadata_listen: args.metadata_listen,
        sts_lifetime: Duration::from_secs(args.sts_lifetime),
        anonymous: args.anonymous,
        faults: FaultSettings {
            fail_rate: args.fail_rate,
            reset_rate: args.reset_rate,
            truncate_rate: args.truncate_rate,
            latency_ms: args.latency_ms,
            conn_mbytes_per_sec: args.conn_mbytes_per_sec,
            max_qps: args.max_qps,
        },
        seed: args.seed,
        import_dir: args.import_dir,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ossmount-emulator: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(run(cfg));
    std::process::exit(code);
}

async fn run(cfg: EmulatorConfig) -> i32 {
    let emu = match ossmount_emulator::start(cfg).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ossmount-emulator: {e}");
            return match e {
                EmulatorError::InvalidConfig(_) => 2,
                _ => 1,
            };
        }
    };
    {
        let mut out = std::io::stdout().lock();
        if let Some(m) = emu.metadata_addr() {
            let _ = writeln!(out, "metadata {m}");
        }
        let _ = writeln!(out, "ready {}", emu.addr());
        let _ = out.flush();
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ossmount-emulator: cannot install the SIGTERM handler: {e}");
            return 1;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received, shutting down");
    emu.shutdown().await;
    0
}
