//! Log setup: `tracing` events to stderr, a file, or syslog.
//!
//! The filter comes from `OSSMOUNT_LOG` (tracing `EnvFilter` syntax, e.g.
//! `info,ossmount::client=debug`); without it, `-d` means `ossmount=debug,info` and the
//! default is `info` in the foreground and `warn,ossmount=info` in the background (our own
//! mount/unmount/error events, not the HTTP stack's chatter).
//!
//! Targets: stderr with colours when it is a terminal (foreground); an append-only file
//! (`--log-file`); otherwise syslog (`LOG_DAEMON`, ident `ossmount`) in the background,
//! one syslog record per event with the priority taken from the event level.
//!
//! Panics are logged as errors as well, so a crash in the background leaves a trace in
//! syslog. Secrets never reach this layer: credentials types redact themselves in Debug.

use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::syslog::{Facility, LogFlags, Severity};
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable holding the log filter.
pub(crate) const LOG_ENV: &str = "OSSMOUNT_LOG";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogTarget {
    Stderr,
    File(PathBuf),
    Syslog,
}

impl LogTarget {
    /// Stderr in the foreground, else the log file, else syslog.
    pub(crate) fn choose(foreground: bool, log_file: Option<&Path>) -> LogTarget {
        match (log_file, foreground) {
            (Some(path), _) => LogTarget::File(path.to_path_buf()),
            (None, true) => LogTarget::Stderr,
            (None, false) => LogTarget::Syslog,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid {LOG_ENV} filter '{filter}': {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("cannot open log file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("logging was already initialised")]
    AlreadyInitialised,
}

/// The filter directives to use: `OSSMOUNT_LOG`, else derived from `debug`/`foreground`.
pub(crate) fn filter_directives(env_value: Option<&str>, debug: bool, foreground: bool) -> String {
    match env_value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v.to_string(),
        None if debug => "ossmount=debug,info".to_string(),
        None if foreground => "info".to_string(),
        None => "warn,ossmount=info".to_string(),
    }
}

/// Installs the global subscriber. Call once, after daemonizing.
pub(crate) fn init(target: &LogTarget, debug: bool, foreground: bool) -> Result<(), LoggingError> {
    let env_value = std::env::var(LOG_ENV).ok();
    let directives = filter_directives(env_value.as_deref(), debug, foreground);
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| LoggingError::BadFilter {
            filter: directives.clone(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = match target {
        LogTarget::Stderr => builder
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .try_init(),
        LogTarget::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.clone(),
                    source,
                })?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init()
        }
        LogTarget::Syslog => {
            open_syslog();
            builder
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_writer(SyslogMakeWriter)
                .try_init()
        }
    };
    result.map_err(|_| LoggingError::AlreadyInitialised)?;
    install_panic_logger();
    Ok(())
}

/// Logs panics through tracing too (the default hook still prints to stderr).
fn install_panic_logger() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "ossmount panicked; this is a bug");
        previous(info);
    }));
}

fn open_syslog() {
    // The ident must be 'static: openlog keeps the pointer.
    let _ = nix::syslog::openlog(
        Some(c"ossmount"),
        LogFlags::LOG_PID | LogFlags::LOG_NDELAY,
        Facility::LOG_DAEMON,
    );
}

/// Hands out one [`SyslogWriter`] per event, carrying the event's priority.
struct SyslogMakeWriter;

impl<'a> MakeWriter<'a> for SyslogMakeWriter {
    type Writer = SyslogWriter;

    fn make_writer(&'a self) -> SyslogWriter {
        SyslogWriter::new(Severity::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogWriter {
        SyslogWriter::new(syslog_priority(*meta.level()))
    }
}

fn syslog_priority(level: Level) -> Severity {
    match level {
        Level::ERROR => Severity::LOG_ERR,
        Level::WARN => Severity::LOG_WARNING,
        Level::INFO => Severity::LOG_INFO,
        Level::DEBUG | Level::TRACE => Severity::LOG_DEBUG,
    }
}

/// Buffers one formatted event and sends it as one syslog record when dropped.
struct SyslogWriter {
    priority: Severity,
    buf: Vec<u8>,
}

impl SyslogWriter {
    fn new(priority: Severity) -> SyslogWriter {
        SyslogWriter {
            priority,
            buf: Vec::with_capacity(256),
        }
    }
}

impl Write for SyslogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogWriter {
    fn drop(&mut self) {
        let text: Vec<u8> = self
            .buf
            .iter()
            .copied()
            .filter(|b| *b != 0)
            .collect::<Vec<u8>>()
            .trim_ascii_end()
            .to_vec();
        if text.is_empty() {
            return;
        }
        // Sent with a "%s" format, so `%` in the text is not interpreted.
        let _ = nix::syslog::syslog(self.priority, std::ffi::OsStr::from_bytes(&text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_precedence() {
        assert_eq!(filter_directives(Some("trace"), true, true), "trace");
        assert_eq!(filter_directives(Some("  "), false, true), "info");
        assert_eq!(filter_directives(None, true, false), "ossmount=debug,info");
        assert_eq!(filter_directives(None, false, false), "warn,ossmount=info");
    }

    #[test]
    fn target_choice() {
        assert_eq!(LogTarget::choose(true, None), LogTarget::Stderr);
        assert_eq!(LogTarget::choose(false, None), LogTarget::Syslog);
        assert_eq!(
            LogTarget::choose(true, Some(Path::new("/tmp/x.log"))),
            LogTarget::File(PathBuf::from("/tmp/x.log"))
        );
    }

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(Level::ERROR), Severity::LOG_ERR);
        assert_eq!(syslog_priority(Level::TRACE), Severity::LOG_DEBUG);
    }
}
