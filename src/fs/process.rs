//! Which process a FUSE request comes from, for telling the writer's own close from a
//! stranger's.
//!
//! The kernel sends FLUSH on *every* close of a descriptor, including descriptors a
//! process merely inherited: a child's `exec` closes the parent's `O_CLOEXEC`
//! descriptors, and a child's exit closes all of them. A program that starts a
//! subprocess while it writes a file (any `Command`/`subprocess` call from another
//! thread) thus produces flushes in the middle of the write. Committing there would
//! publish a half-written object over the previous content and turn the rest of the
//! write into appends.
//!
//! So each writable handle tracks its [`Writer`]: the process that opened it until
//! someone writes, then the process that wrote last. A flush commits only when it comes
//! from that process. This also keeps the hand-over case right: a parent that opens a
//! file, gives it to a child as stdout and closes its own copy leaves the child as the
//! writer, so the child's exit commits (synchronously, before the parent's `wait`
//! returns).
//!
//! Pitfalls:
//! - The request's pid is the calling *thread* (a TID); threads of one process share
//!   descriptors and are the same writer, so pids are compared by thread group, which
//!   is resolved when a thread is first seen (one small `/proc` read), not at flush: the
//!   thread may be gone by then.
//! - A pid outside our pid namespace is reported as 0, and a thread may be gone: when
//!   either side is unknown the answer is "the writer", i.e. flush commits as it always
//!   did. Release commits in every case, so a skipped flush delays the upload to the
//!   last close; it never drops it.

/// Threads remembered per writer before `/proc` is asked again.
const MAX_TIDS: usize = 64;

/// The process writing through one open file (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// Its thread group; `None` when unknown (then every close counts as its own).
    tgid: Option<u32>,
    /// Threads already known to belong to it.
    tids: Vec<u32>,
}

impl Writer {
    /// The writer of a file opened by thread `tid` (0: unknown).
    pub(crate) fn opened_by(tid: u32) -> Writer {
        Writer {
            tgid: thread_group(tid),
            tids: vec![tid],
        }
    }

    /// Records a write by thread `tid`: its process becomes the writer.
    pub(crate) fn wrote(&mut self, tid: u32) {
        if tid == 0 || self.tids.contains(&tid) {
            return;
        }
        let tgid = thread_group(tid);
        if tgid.is_some() && tgid == self.tgid {
            if self.tids.len() < MAX_TIDS {
                self.tids.push(tid);
            }
        } else {
            self.tgid = tgid;
            self.tids = vec![tid];
        }
    }

    /// Whether a close by thread `tid` is the writer's own.
    pub(crate) fn is_writer(&self, tid: u32) -> bool {
        self.tids.contains(&tid) || in_process(tid, self.tgid)
    }
}

/// The thread group (process id) of thread `tid`, from `/proc/<tid>/status`.
pub(crate) fn thread_group(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether thread `tid` belongs to process `tgid` (a [`thread_group`] answer); `true`
/// when either is unknown.
pub(crate) fn in_process(tid: u32, tgid: Option<u32>) -> bool {
    let Some(tgid) = tgid else { return true };
    if tid == 0 || tid == tgid {
        return true;
    }
    thread_group(tid).is_none_or(|t| t == tgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gettid() -> u32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as u32 }
    }

    #[test]
    fn threads_of_one_process_are_the_same_writer() {
        let me = std::process::id();
        assert_eq!(thread_group(me), Some(me));
        let gone = std::thread::spawn(gettid).join().unwrap();
        // The thread has exited: unknown, which counts as the same process.
        assert!(in_process(gone, Some(me)));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = stop_rx.recv();
        });
        let live = rx.recv().unwrap();
        assert_ne!(live, me);
        assert_eq!(thread_group(live), Some(me));
        assert!(in_process(live, Some(me)));
        assert!(in_process(me, Some(me)));
        stop_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn the_last_process_that_wrote_is_the_writer() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut w = Writer::opened_by(me);
        assert!(w.is_writer(me));
        assert!(!w.is_writer(pid), "a child that only inherited the file");
        w.wrote(pid);
        assert!(w.is_writer(pid), "the child wrote last");
        assert!(!w.is_writer(me));
        w.wrote(me);
        assert!(w.is_writer(me) && !w.is_writer(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        // Unknown opener: every close commits.
        assert!(Writer::opened_by(0).is_writer(pid));
    }

    #[test]
    fn another_process_is_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(thread_group(pid), Some(pid));
        let me = Some(std::process::id());
        assert!(!in_process(pid, me));
        child.kill().unwrap();
        child.wait().unwrap();
        // Unknown pids (gone, or outside our pid namespace) count as the same.
        assert!(in_process(0, me));
        assert!(in_process(pid, me));
        assert!(in_process(pid, None));
        assert_eq!(thread_group(0), None);
    }
}
