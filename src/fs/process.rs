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
//! So each writable handle tracks its [`Writers`]: the process that opened it and every
//! process that wrote through it. A flush commits only when it comes from one of them; a
//! process that merely inherited the descriptor and closes it commits nothing (and had
//! nothing of its own to lose). This also keeps the hand-over case right: a parent that
//! opens a file and gives it to a child as stdout makes the child a writer, so the
//! child's exit commits (synchronously, before the parent's `wait` returns), and a
//! writer's successful close always means its bytes were uploaded.
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

/// Threads and processes remembered per handle; past this every close commits.
const MAX_TRACKED: usize = 64;

/// The processes writing through one open file (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Writers {
    /// Thread groups of the opener and of every process that wrote.
    processes: Vec<u32>,
    /// Threads known to belong to `processes` (saves the `/proc` read).
    tids: Vec<u32>,
    /// Some writer could not be identified: every close commits, as it always did.
    unknown: bool,
}

impl Writers {
    /// The writers of a file just opened by thread `tid` (0: unknown).
    pub(crate) fn opened_by(tid: u32) -> Writers {
        let mut w = Writers::default();
        w.add(tid);
        w
    }

    /// Records a write by thread `tid`. (A pid of 0, outside our pid namespace, needs no
    /// record: that process's close also reports 0, which always commits.)
    pub(crate) fn wrote(&mut self, tid: u32) {
        if tid != 0 && !self.unknown && !self.tids.contains(&tid) {
            self.add(tid);
        }
    }

    fn add(&mut self, tid: u32) {
        match thread_group(tid) {
            Some(t) if self.processes.len() < MAX_TRACKED => {
                if !self.processes.contains(&t) {
                    self.processes.push(t);
                }
                if self.tids.len() < MAX_TRACKED {
                    self.tids.push(tid);
                }
            }
            _ => self.unknown = true,
        }
    }

    /// Whether a close by thread `tid` comes from a writer (or cannot be told apart).
    pub(crate) fn includes(&self, tid: u32) -> bool {
        self.unknown
            || tid == 0
            || self.tids.contains(&tid)
            || thread_group(tid).is_none_or(|t| self.processes.contains(&t))
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
        let writers = Writers::opened_by(me);
        // The thread has exited: unknown, which counts as a writer.
        assert!(writers.includes(gone));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = stop_rx.recv();
        });
        let live = rx.recv().unwrap();
        assert_ne!(live, me);
        assert_eq!(thread_group(live), Some(me));
        assert!(writers.includes(live));
        assert!(writers.includes(me));
        // Opened by a thread that then exits: its process is still the writer.
        let mut by_thread = Writers::opened_by(live);
        by_thread.wrote(me);
        assert_eq!(by_thread.processes, vec![me]);
        stop_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn the_opener_and_every_process_that_wrote_are_writers() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut w = Writers::opened_by(me);
        assert!(w.includes(me));
        assert!(!w.includes(pid), "a child that only inherited the file");
        w.wrote(pid);
        assert!(w.includes(pid), "the child wrote");
        assert!(w.includes(me), "the opener stays a writer");
        child.kill().unwrap();
        child.wait().unwrap();
        // Unknown opener: every close commits. A write from pid 0 changes nothing.
        assert!(Writers::opened_by(0).includes(pid));
        let mut w = Writers::opened_by(me);
        w.wrote(0);
        assert!(!w.unknown && w.includes(0));
    }

    #[test]
    fn another_process_is_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(thread_group(pid), Some(pid));
        let writers = Writers::opened_by(std::process::id());
        assert!(!writers.includes(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        // Unknown pids (gone, or outside our pid namespace) count as writers.
        assert!(writers.includes(0));
        assert!(writers.includes(pid));
        assert_eq!(thread_group(0), None);
    }
}
