//! What `ossmount` does with a parsed command line.
//!
//! Mount flow, in this order because of `fork`:
//! 1. parse, resolve and validate the configuration, check the mountpoint — all
//!    synchronous, errors go straight to stderr;
//! 2. without `-f`, fork into the background ([`crate::daemon`]) *before* any thread
//!    exists; from here on errors travel to the waiting parent through the ready pipe;
//! 3. logging, the tokio runtime, the metrics recorder/exporter;
//! 4. endpoint choice, credentials, client, bucket probe (errors get hints), a report of
//!    abandoned multipart uploads;
//! 5. mount, tell the parent "ready", serve until a signal or `umount`
//!    ([`super::serve`]).
//!
//! `--dry-run` stops after step 4 and prints what it resolved, in the foreground.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::FromArgMatches;
use clap::parser::ValueSource;

use crate::config::{Config, KeyOrigin, parse_bucket_spec, resolve_connection};
use crate::daemon::{ReadyNotifier, daemonize};
use crate::endpoint::{format_region_table, region_listing};
use crate::logging::{self, LogTarget};
use crate::mount_check::{MountpointStatus, check_allow_other_permitted, check_mountpoint};

use super::args::{self, CleanupArgs, Cli, Command, RegionsArgs};
use super::bucket_check::{abort_uploads, format_age, probe_bucket, stale_uploads};
use super::connect;
use super::error::CliError;
use super::helper::{is_helper_invocation, translate_helper_args};
use super::serve::Signals;

/// Uploads older than this are reported at mount time as probably abandoned.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// Entry point of the `ossmount` binary.
pub fn main_with_args(argv: Vec<OsString>) -> ExitCode {
    let argv = match argv.first() {
        Some(argv0) if is_helper_invocation(argv0) => match translate_helper_args(&argv[1..]) {
            Ok(translated) => translated,
            Err(message) => return fail(&CliError::Helper(message)),
        },
        _ => argv,
    };
    let secrets = secret_values(&argv);
    let matches = match args::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => {
            // --help/--version print and exit 0; usage errors exit 2.
            if e.use_stderr() {
                eprint!("{}", redact(&e.render().to_string(), &secrets));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Some(Command::Man) => print_man_page(),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut args::command(),
                "ossmount",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Some(Command::Regions(r)) => run_regions(&r),
        Some(Command::Status(s)) => super::status::run_status(&s),
        Some(Command::Sync(s)) => super::sync::run_sync(&s),
        Some(Command::Csi(c)) => crate::csi::run_plugin(&c).map_err(CliError::from),
        None if cli.list_regions => run_regions(&RegionsArgs {
            connection: cli.mount.connection.clone(),
            offline: false,
        }),
        Some(Command::Cleanup(c)) => {
            let sub = matches.subcommand_matches("cleanup").unwrap_or(&matches);
            run_cleanup(&c, key_origin(sub))
        }
        None => run_mount(&cli.mount, key_origin(&matches)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Whether clap took the AccessKey from the command line or from `OSS_ACCESS_KEY_ID`.
fn key_origin(matches: &clap::ArgMatches) -> KeyOrigin {
    match matches.value_source("access_key_id") {
        Some(ValueSource::EnvVariable) => KeyOrigin::Environment,
        _ => KeyOrigin::CommandLine,
    }
}

/// Values that must never be echoed: the secret/token flags' values and their
/// environment variables. clap repeats stray arguments in usage errors, and a misplaced
/// secret is exactly such an argument.
fn secret_values(argv: &[OsString]) -> Vec<String> {
    const FLAGS: [&str; 2] = ["--access-key-secret", "--security-token"];
    let mut found: Vec<String> = ["OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    for (i, arg) in args.iter().enumerate() {
        for flag in FLAGS {
            if arg == flag {
                found.extend(args.get(i + 1).cloned());
            } else if let Some(v) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                found.push(v.to_string());
            }
        }
    }
    found.retain(|s| s.len() >= 4);
    found
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "<redacted>"))
}

fn fail(e: &CliError) -> ExitCode {
    eprintln!("ossmount: {}", e.render());
    ExitCode::from(e.exit_code())
}

fn print_man_page() -> Result<(), CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(args::command())
        .render(&mut out)
        .map_err(CliError::Output)?;
    std::io::stdout().write_all(&out).map_err(CliError::Output)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ossmount")
        .build()
        .map_err(CliError::Runtime)
}

fn run_mount(args: &args::MountArgs, origin: KeyOrigin) -> Result<(), CliError> {
    let config = Config::resolve(args, origin)?;
    let recover = config.mount.recover_stale_mount && !config.dry_run;
    let status = check_mountpoint(&config.mountpoint, config.mount.nonempty, recover)?;
    if config.mount.allow_other || config.mount.allow_root {
        let fuse_conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        check_allow_other_permitted(&fuse_conf, euid).map_err(CliError::Mount)?;
    }

    let foreground = config.mount.foreground || config.dry_run;
    let mut notifier = if foreground {
        ReadyNotifier::foreground()
    } else {
        daemonize(config.logging.log_file.as_deref())?
    };
    // From here on, errors must also reach the waiting parent through the notifier.
    let result = mount_in_process(&config, status, foreground, &mut notifier);
    if let Err(e) = &result
        && notifier.is_background()
    {
        // The terminal gets the message from the parent; the log gets it here.
        tracing::error!(error = %e, "ossmount failed");
        notifier.failed(&e.render());
    }
    result
}

fn mount_in_process(
    config: &Config,
    status: MountpointStatus,
    foreground: bool,
    notifier: &mut ReadyNotifier,
) -> Result<(), CliError> {
    let target = if config.dry_run {
        LogTarget::Stderr
    } else {
        LogTarget::choose(foreground, config.logging.log_file.as_deref())
    };
    logging::init(&target, config.logging.debug, foreground)?;
    if status == MountpointStatus::RecoveredStale {
        tracing::warn!(mountpoint = %config.mountpoint.display(), "recovered a stale mount (lazy unmount)");
    }
    tracing::debug!(ignored = ?config.ignored_options, "generic mount options ignored");
    runtime()?.block_on(mount_async(config, notifier))
}

async fn mount_async(config: &Config, notifier: &mut ReadyNotifier) -> Result<(), CliError> {
    let metrics = crate::metrics::install_exporter(config.logging.metrics_addr)?;
    let conn = connect_and_probe(config).await?;
    if config.dry_run {
        return print_dry_run(config, &conn).await;
    }
    report_stale_uploads(config, &conn).await;
    let signals = Signals::register()
        .map_err(|e| CliError::Mount(format!("cannot install signal handlers: {e}")))?;
    let fs = super::fuse_mount::mount(config, conn.store.clone()).await?;
    tracing::info!(
        bucket = %config.bucket,
        prefix = %config.prefix,
        mountpoint = %config.mountpoint.display(),
        endpoint = %conn.endpoint.config.base_url(),
        "mounted"
    );
    let write_back = fs.write_back();
    let write_back_metrics = write_back.clone().map(super::write_back::spawn_metrics);
    let control = start_control_socket(config, &conn, &metrics, write_back);
    notifier.ready();
    // The control socket stays up until the write-back queue is drained (or abandoned),
    // so `ossmount status` and `ossmount sync` work after `umount`.
    let stopped = super::serve::serve_until_stopped(fs, signals, Some(metrics))
        .await
        .map_err(|e| CliError::Mount(format!("unmount failed: {e}")))?;
    if let Some(control) = control {
        // A drained queue completes every `ossmount sync` waiting on it: let them send
        // their final line. After an abandoned drain they could only wait in vain.
        let grace = match stopped.write_back_left {
            None => Duration::from_secs(2),
            Some(_) => Duration::ZERO,
        };
        control.finish(grace).await;
    }
    if let Some(task) = write_back_metrics {
        task.abort();
    }
    tracing::info!(reason = ?stopped.reason, "ossmount exiting");
    match stopped.write_back_left {
        Some(left) => Err(CliError::WriteBackLeft {
            files: left.pending_files,
            bytes: left.pending_bytes,
            store: left.store_dir,
        }),
        None => Ok(()),
    }
}

/// The per-mount control socket `ossmount status` talks to ([`crate::control`]). A mount
/// works without it, so a failure is only logged.
fn start_control_socket(
    config: &Config,
    conn: &connect::Connection,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    write_back: Option<std::sync::Arc<dyn crate::write_back::WriteBackQueue>>,
) -> Option<crate::control::ControlServer> {
    let mountpoint = std::fs::canonicalize(&config.mountpoint).unwrap_or(config.mountpoint.clone());
    let facts = crate::control::MountFacts {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        bucket: config.bucket.clone(),
        prefix: config.prefix.clone(),
        mountpoint,
        endpoint: conn.endpoint.config.base_url(),
        credentials: conn.credentials_source.clone(),
        read_only: config.mount.read_only,
        mounted_at: crate::control::now_epoch_secs(),
    };
    let handle = metrics.clone();
    match crate::control::ControlServer::start_with_write_back(
        facts,
        Box::new(move || handle.render()),
        write_back,
    ) {
        Ok(server) => {
            tracing::debug!(socket = %server.path().display(), "control socket ready");
            Some(server)
        }
        Err(e) => {
            tracing::warn!(error = %e, "`ossmount status` will not work for this mount");
            None
        }
    }
}

/// Endpoint, credentials, client, then a one-key listing to prove it all works.
async fn connect_and_probe(config: &Config) -> Result<connect::Connection, CliError> {
    let conn = connect::connect(&config.endpoint, &config.credentials, &config.bucket).await?;
    probe_bucket(conn.store.as_ref(), &config.prefix)
        .await
        .map_err(|e| {
            CliError::store(
                format!(
                    "bucket {} does not answer at {}",
                    config.bucket,
                    conn.endpoint.config.base_url()
                ),
                e,
            )
        })?;
    Ok(conn)
}

async fn report_stale_uploads(config: &Config, conn: &connect::Connection) {
    let listing = tokio::time::timeout(
        Duration::from_secs(10),
        stale_uploads(
            conn.store.as_ref(),
            &config.prefix,
            STALE_UPLOAD_AGE,
            SystemTime::now(),
        ),
    )
    .await;
    match listing {
        Ok(Ok(uploads)) if !uploads.is_empty() => tracing::warn!(
            count = uploads.len(),
            "multipart uploads older than 24h are pending under the mount prefix (storage is billed); abort them with: ossmount cleanup {}:{}",
            config.bucket,
            config.prefix
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "could not list multipart uploads"),
        Err(_) => tracing::debug!("listing multipart uploads timed out"),
    }
}

async fn print_dry_run(config: &Config, conn: &connect::Connection) -> Result<(), CliError> {
    let now = SystemTime::now();
    let stale = stale_uploads(conn.store.as_ref(), &config.prefix, STALE_UPLOAD_AGE, now).await;
    let mut out = String::new();
    out.push_str("ossmount dry run: nothing will be mounted\n");
    out.push_str(&format!(
        "endpoint: {} ({})\n",
        conn.endpoint.config.base_url(),
        conn.endpoint.why
    ));
    out.push_str(&format!(
        "region: {} ({})\n",
        conn.endpoint.region.as_deref().unwrap_or("-"),
        config.endpoint.region_source
    ));
    out.push_str(&format!(
        "addressing: {}, signature version {}\n",
        conn.endpoint.config.style,
        match config.endpoint.signature_version {
            crate::config::SignatureVersion::V1 => 1,
            crate::config::SignatureVersion::V4 => 4,
        }
    ));
    out.push_str(&format!("credentials: {}\n", conn.credentials_source));
    for line in config.describe_options() {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "bucket check: ok (ListObjects on {} answered)\n",
        config.bucket
    ));
    match stale {
        Ok(u) if u.is_empty() => out.push_str("abandoned multipart uploads (>24h): none\n"),
        Ok(u) => out.push_str(&format!(
            "abandoned multipart uploads (>24h): {} (abort with `ossmount cleanup`)\n",
            u.len()
        )),
        Err(e) => out.push_str(&format!("abandoned multipart uploads: cannot list ({e})\n")),
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(CliError::Output)
}

fn run_regions(args: &RegionsArgs) -> Result<(), CliError> {
    let (rows, source) = if args.offline {
        (region_listing(), "built-in table".to_string())
    } else {
        runtime()?.block_on(super::connect::describe_regions(&args.connection))
    };
    let text = format!("{}\n({source})\n", format_region_table(&rows).trim_end());
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(CliError::Output)
}

fn run_cleanup(args: &CleanupArgs, origin: KeyOrigin) -> Result<(), CliError> {
    let (bucket, prefix) = parse_bucket_spec(&args.bucket)?;
    let target = LogTarget::Stderr;
    logging::init(&target, args.debug, true)?;
    runtime()?.block_on(async {
        let (endpoint, credentials) = resolve_connection(&args.connection, origin)?;
        let conn = connect::connect(&endpoint, &credentials, &bucket).await?;
        let now = SystemTime::now();
        let uploads = stale_uploads(conn.store.as_ref(), &prefix, args.older_than, now)
            .await
            .map_err(|e| {
                CliError::store(format!("cannot list multipart uploads in {bucket}"), e)
            })?;
        let mut out = String::new();
        if uploads.is_empty() {
            out.push_str("no abandoned multipart uploads found\n");
        }
        for u in &uploads {
            out.push_str(&format!(
                "{} {} ({})\n",
                if args.dry_run {
                    "would abort"
                } else {
                    "aborting"
                },
                u.key,
                format_age(u.initiated, now)
            ));
        }
        if !args.dry_run && !uploads.is_empty() {
            let report = abort_uploads(conn.store.as_ref(), uploads).await;
            out.push_str(&format!("aborted {} upload(s)\n", report.aborted.len()));
            for (u, e) in &report.failed {
                out.push_str(&format!(
                    "failed to abort {} ({}): {e}\n",
                    u.key, u.upload_id
                ));
            }
            std::io::stdout()
                .write_all(out.as_bytes())
                .map_err(CliError::Output)?;
            if !report.failed.is_empty() {
                return Err(CliError::Mount(format!(
                    "{} upload(s) could not be aborted",
                    report.failed.len()
                )));
            }
            return Ok(());
        }
        std::io::stdout()
            .write_all(out.as_bytes())
            .map_err(CliError::Output)
    })
}
