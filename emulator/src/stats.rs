//! Request statistics, served as JSON on `GET /-/stats` and by `RunningEmulator::stats`.
//!
//! Tests and benchmarks assert on these counts (e.g. "one GetObject per 8 MiB read"), so
//! every request routed to an OSS operation is counted once under its OSS API name, even
//! when it then fails authentication or a fault is injected.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A point-in-time copy of the counters (the `/-/stats` JSON shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub requests: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub auth_failures: BTreeMap<String, u64>,
    pub faults_injected: BTreeMap<String, u64>,
    pub sts_issued: u64,
    pub metadata_requests: u64,
}

impl StatsSnapshot {
    /// Requests counted for one operation (0 when none).
    pub fn requests_for(&self, op: &str) -> u64 {
        self.requests.get(op).copied().unwrap_or(0)
    }
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

#[derive(Default)]
struct Maps {
    requests: BTreeMap<String, u64>,
    auth_failures: BTreeMap<String, u64>,
    faults_injected: BTreeMap<String, u64>,
}

/// Live counters, shared by all connections.
#[derive(Default)]
pub struct Stats {
    maps: Mutex<Maps>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    sts_issued: AtomicU64,
    metadata_requests: AtomicU64,
}

impl Stats {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn request(&self, op: &str) {
        *self.maps().requests.entry(op.to_string()).or_default() += 1;
    }
    pub fn auth_failure(&self, code: &str) {
        *self
            .maps()
            .auth_failures
            .entry(code.to_string())
            .or_default() += 1;
    }
    pub fn fault(&self, kind: &str) {
        *self
            .maps()
            .faults_injected
            .entry(kind.to_string())
            .or_default() += 1;
    }
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
    pub fn sts_issued(&self) {
        self.sts_issued.fetch_add(1, Ordering::Relaxed);
    }
    pub fn metadata_request(&self) {
        self.metadata_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let maps = self.maps();
        let mut faults = maps.faults_injected.clone();
        for kind in ["error", "reset", "truncate"] {
            faults.entry(kind.to_string()).or_default();
        }
        StatsSnapshot {
            requests: maps.requests.clone(),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            auth_failures: maps.auth_failures.clone(),
            faults_injected: faults,
            sts_issued: self.sts_issued.load(Ordering::Relaxed),
            metadata_requests: self.metadata_requests.load(Ordering::Relaxed),
        }
    }

    pub fn reset(&self) {
        *self.maps() = Maps::default();
        for c in [
            &self.bytes_in,
            &self.bytes_out,
            &self.sts_issued,
            &self.metadata_requests,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let s = Stats::default();
        s.request("GetObject");
        s.request("GetObject");
        s.auth_failure("SignatureDoesNotMatch");
        s.bytes_out(10);
        let snap = s.snapshot();
        assert_eq!(snap.requests_for("GetObject"), 2);
        assert_eq!(snap.auth_failures["SignatureDoesNotMatch"], 1);
        assert_eq!(snap.faults_injected["reset"], 0);
        assert_eq!(snap.bytes_out, 10);
        s.reset();
        assert_eq!(s.snapshot().total_requests(), 0);
        assert_eq!(s.snapshot().bytes_out, 0);
    }
}
