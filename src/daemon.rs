//! Background mode: detach like a mount(8) helper, but only report success once the
//! mount is really ready.
//!
//! Flow: the process forks *before* any thread exists (no tokio runtime, no logging
//! threads, no metrics exporter): after `fork(2)` only the calling thread survives in the
//! child, so a runtime created earlier would be silently broken. The parent keeps the read
//! end of a pipe and blocks on it; the child calls `setsid`, `chdir("/")`, points stdin and
//! stdout at /dev/null and stderr at the log file (so a panic message is not lost) or
//! /dev/null, then builds the runtime and mounts. It writes `OK` or `ERR <message>` into
//! the pipe through [`ReadyNotifier`]; the parent exits 0, or prints the message and exits
//! 1. If the child dies without a word (EOF), the parent reaps it and reports how it died.
//!
//! This is what makes `mount -a`, systemd `Type=forking` and scripts reliable: when
//! `ossmount` returns 0 the mountpoint already serves the bucket.
//!
//! The pipe is created with `O_CLOEXEC` so helpers spawned by the child (fusermount)
//! do not inherit the write end and keep the parent waiting.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot go to the background: {what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot go to the background: {0} threads are already running (internal error: fork must happen first)"
    )]
    Threads(usize),
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Tells the waiting parent how the mount went. In the foreground it does nothing.
#[derive(Debug)]
pub(crate) struct ReadyNotifier {
    pipe: Option<File>,
}

impl ReadyNotifier {
    /// A notifier for foreground mode: there is nobody to tell.
    pub(crate) fn foreground() -> ReadyNotifier {
        ReadyNotifier { pipe: None }
    }

    /// True when a parent is waiting (background mode).
    pub(crate) fn is_background(&self) -> bool {
        self.pipe.is_some()
    }

    /// The mount is ready: the parent exits 0. Only the first report counts.
    pub(crate) fn ready(&mut self) {
        self.send("OK\n");
    }

    /// Mounting failed: the parent prints `message` and exits 1. Only the first report
    /// counts, so calling this after [`ReadyNotifier::ready`] does nothing.
    pub(crate) fn failed(&mut self, message: &str) {
        self.send(&format!("ERR {message}\n"));
    }

    fn send(&mut self, text: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            // The parent may already be gone (killed); nothing useful to do then.
            let _ = pipe.write_all(text.as_bytes());
        }
    }
}

/// Forks into the background. Returns in the child only; the parent waits for the
/// child's report and exits the process. `log_file`, when given, receives the child's
/// stderr (it must be absolute: the child changes directory to `/`).
pub(crate) fn daemonize(log_file: Option<&Path>) -> Result<ReadyNotifier, DaemonError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(DaemonError::Threads(threads));
    }
    // Open the log file before forking so an error is still reported on the terminal.
    let stderr_target = match log_file {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| DaemonError::LogFile {
                path: path.display().to_string(),
                source,
            })?,
        None => open_dev_null()?,
    };
    let (read_end, write_end) = pipe()?;

    // SAFETY: the process is single-threaded (checked above), so the child gets a
    // consistent copy of the whole address space and may run any code, not only
    // async-signal-safe functions.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            drop(stderr_target);
            wait_for_child(read_end, child);
        }
        ForkResult::Child => {}
    }

    drop(read_end);
    nix::unistd::setsid().map_err(sys("setsid"))?;
    std::env::set_current_dir("/").map_err(|source| DaemonError::Sys {
        what: "chdir /",
        source,
    })?;
    let null = open_dev_null()?;
    nix::unistd::dup2_stdin(&null).map_err(sys("dup2"))?;
    nix::unistd::dup2_stdout(&null).map_err(sys("dup2"))?;
    nix::unistd::dup2_stderr(&stderr_target).map_err(sys("dup2"))?;
    Ok(ReadyNotifier {
        pipe: Some(File::from(write_end)),
    })
}

/// Parent side: relay the child's verdict as our exit status. Never returns.
fn wait_for_child(read_end: OwnedFd, child: Pid) -> ! {
    let mut message = String::new();
    let _ = File::from(read_end).read_to_string(&mut message);
    let message = message.trim_end();
    if message == "OK" {
        std::process::exit(0);
    }
    if let Some(error) = message.strip_prefix("ERR ") {
        eprintln!("ossmount: {error}");
        std::process::exit(1);
    }
    let how = match waitpid(child, None) {
        Ok(WaitStatus::Signaled(_, signal, _)) => {
            format!("was killed by signal {}", signal as i32)
        }
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        _ => "closed its status pipe".to_string(),
    };
    eprintln!(
        "ossmount: the background process {how} before the mount was ready (run with -f to see its log)"
    );
    std::process::exit(1);
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| dir.count())
        .unwrap_or(1)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), DaemonError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))
}

fn open_dev_null() -> Result<File, DaemonError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| DaemonError::Sys {
            what: "open /dev/null",
            source,
        })
}

/// Maps a failed system call to [`DaemonError::Sys`] naming it.
fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> DaemonError {
    move |errno| DaemonError::Sys {
        what,
        source: io::Error::from(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreground_notifier_is_a_no_op() {
        let mut n = ReadyNotifier::foreground();
        assert!(!n.is_background());
        n.ready();
    }

    #[test]
    fn notifier_writes_the_protocol() {
        let (r, w) = pipe().unwrap();
        let mut n = ReadyNotifier {
            pipe: Some(File::from(w)),
        };
        assert!(n.is_background());
        n.failed("bucket not found");
        n.ready();
        assert!(!n.is_background());
        let mut text = String::new();
        File::from(r).read_to_string(&mut text).unwrap();
        assert_eq!(text, "ERR bucket not found\n");
    }

    #[test]
    fn refuses_to_fork_with_threads_running() {
        // The test harness itself runs tests on worker threads.
        let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        assert!(matches!(daemonize(None), Err(DaemonError::Threads(_))));
    }
}
