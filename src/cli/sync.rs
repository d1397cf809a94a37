//! `ossmount sync MOUNTPOINT`: waits until every file closed on a `--write-back` mount
//! before the command started is uploaded (or settled as a conflict), for scripts that
//! must know their data is on the server.
//!
//! The mount's control socket answers the `sync` request with a stream of progress lines
//! ([`crate::control::SyncProgress`]); files closed after the request are not waited
//! for, so a busy writer cannot keep `sync` waiting forever. The mount is found like
//! `ossmount status` finds it ([`super::status::locate`]), which includes a process still
//! uploading after `umount`.
//!
//! Output: a progress bar on a terminal (stderr), otherwise a progress line on stderr at
//! most every [`PLAIN_PROGRESS_INTERVAL`]; one result line on stdout.
//!
//! Exit status: 0 when everything queued before the command is uploaded, and also at
//! once for a mount without write-back (every close there already waited for its upload;
//! a note says so). 1 when the mount cannot be reached, the process exits or its queue
//! stops before the uploads are done, `--timeout` passes, or files were settled as
//! conflicts during the wait (their local copies are in the store's `conflicts/`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::units::{format_duration, format_size};
use crate::control::{SyncProgress, sync_write_back};
use crate::write_back::WriteBackStatus;

use super::args::SyncArgs;
use super::error::CliError;
use super::status::locate;

/// How often progress is printed when stderr is not a terminal.
pub const PLAIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

pub fn run_sync(args: &SyncArgs) -> Result<(), CliError> {
    let target = locate(&args.mountpoint).map_err(CliError::Sync)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let mut display = Display::new(std::io::stderr().is_terminal());
    let wait = sync_write_back(&target.socket, |line| display.show(line));
    let result = runtime.block_on(async {
        match args.timeout {
            Some(limit) => tokio::time::timeout(limit, wait).await.map_err(|_| {
                format!(
                    "timed out after {}; the uploads go on in the background",
                    format_duration(limit)
                )
            }),
            None => Ok(wait.await),
        }
    });
    display.finish();
    let last = match result {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => return Err(CliError::Sync(e.to_string())),
        Err(message) => {
            let left = display
                .last
                .as_ref()
                .map(|s| format!(" ({})", super::write_back::describe(s)))
                .unwrap_or_default();
            return Err(CliError::Sync(format!("{message}{left}")));
        }
    };
    let text = outcome(&target.path, display.first.as_ref(), &last)?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(CliError::Output)
}

/// The result line for the final answer, or the error when files ended as conflicts.
fn outcome(
    path: &std::path::Path,
    first: Option<&WriteBackStatus>,
    last: &SyncProgress,
) -> Result<String, CliError> {
    let Some(end) = &last.write_back else {
        return Ok(format!(
            "{}: write-back is off for this mount: every close already waited for its upload, nothing to wait for\n",
            path.display()
        ));
    };
    let start = first.unwrap_or(end);
    let conflicts = end.conflicts.saturating_sub(start.conflicts);
    if conflicts > 0 {
        return Err(CliError::Sync(format!(
            "{conflicts} files changed on the server since they were opened and were not uploaded; the local copies are in {}",
            end.store_dir.join("conflicts").display()
        )));
    }
    let uploaded = end.uploaded_files.saturating_sub(start.uploaded_files);
    Ok(format!(
        "{}: everything closed before the sync is uploaded ({uploaded} files uploaded while waiting, {} pending now)\n",
        path.display(),
        end.pending_files
    ))
}

/// The progress bar or the plain lines.
struct Display {
    bar: Option<ProgressBar>,
    first: Option<WriteBackStatus>,
    last: Option<WriteBackStatus>,
    last_line: Option<Instant>,
}

impl Display {
    fn new(terminal: bool) -> Display {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Display {
            bar,
            first: None,
            last: None,
            last_line: None,
        }
    }

    fn show(&mut self, line: &SyncProgress) {
        let Some(now) = &line.write_back else {
            return;
        };
        let first = self.first.get_or_insert_with(|| now.clone());
        // Progress in journal records: from what was settled at the start to the target.
        let total = line.target_seq.saturating_sub(first.settled_seq);
        let done = now.settled_seq.saturating_sub(first.settled_seq).min(total);
        let message = format!(
            "{} files ({}) pending, {} uploading{}",
            now.pending_files,
            format_size(now.pending_bytes),
            now.uploading_files,
            match (&now.last_error, now.failing_files) {
                (Some(e), n) if n > 0 => format!(", {n} failing: {e}"),
                _ => String::new(),
            }
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(message);
            }
            None => {
                let due = self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= PLAIN_PROGRESS_INTERVAL);
                if due && !line.done {
                    eprintln!("ossmount sync: {done}/{total} settled; {message}");
                    self.last_line = Some(Instant::now());
                }
            }
        }
        self.last = Some(now.clone());
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::write_back::fake::{pending, upload_one};
    use std::path::Path;

    fn line(done: bool, target_seq: u64, status: Option<WriteBackStatus>) -> SyncProgress {
        SyncProgress {
            done,
            target_seq,
            write_back: status,
        }
    }

    #[test]
    fn a_mount_without_write_back_has_nothing_to_wait_for() {
        let text = outcome(Path::new("/mnt/x"), None, &line(true, 0, None)).unwrap();
        assert!(text.contains("write-back is off"), "{text}");
    }

    #[test]
    fn the_result_counts_what_was_uploaded_while_waiting() {
        let start = pending(3);
        let mut end = start.clone();
        for _ in 0..3 {
            upload_one(&mut end);
        }
        let text = outcome(Path::new("/mnt/x"), Some(&start), &line(true, 3, Some(end))).unwrap();
        assert!(
            text.contains("3 files uploaded while waiting, 0 pending now"),
            "{text}"
        );
    }

    #[test]
    fn conflicts_during_the_wait_fail_the_sync() {
        let start = pending(2);
        let mut end = start.clone();
        end.pending_files = 0;
        end.settled_seq = 2;
        end.conflicts = 2;
        let err = outcome(Path::new("/mnt/x"), Some(&start), &line(true, 2, Some(end)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 files changed on the server"), "{err}");
        assert!(err.contains("/var/cache/ossmount/test/conflicts"), "{err}");
    }

    #[test]
    fn progress_is_measured_from_the_first_answer() {
        let mut display = Display::new(false);
        let mut s = pending(4);
        s.settled_seq = 10;
        s.enqueued_seq = 14;
        display.show(&line(false, 14, Some(s.clone())));
        upload_one(&mut s);
        display.show(&line(false, 14, Some(s.clone())));
        assert_eq!(display.first.as_ref().unwrap().settled_seq, 10);
        assert_eq!(display.last.as_ref().unwrap().settled_seq, 11);
    }
}
