//! What every request handler can reach: storage, statistics, faults, the authenticator
//! and the per-process request ids. Shared by the front ([`crate::server`]), the
//! operations ([`crate::ops`]) and the metadata service, which all depend on this
//! module and never on each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::auth::Authenticator;
use super::faults::Faults;
use super::stats::Stats;
use super::storage::Storage;

/// Everything a request handler can reach.
pub struct State {
    pub storage: Storage,
    pub stats: Arc<Stats>,
    pub faults: Faults,
    pub auth: Authenticator,
    pub region: String,
    pub anonymous: bool,
    pub metadata_down: AtomicBool,
    request_prefix: u32,
    request_counter: AtomicU64,
}

impl State {
    pub fn new(
        storage: Storage,
        stats: Arc<Stats>,
        faults: Faults,
        auth: Authenticator,
        region: String,
        anonymous: bool,
    ) -> Self {
        State {
            storage,
            stats,
            faults,
            auth,
            region,
            anonymous,
            metadata_down: AtomicBool::new(false),
            request_prefix: rand::random(),
            request_counter: AtomicU64::new(1),
        }
    }

    /// 24 upper-case hex characters, unique per process run.
    pub fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08X}{:016X}", self.request_prefix, n)
    }

    pub fn host_id(&self, bucket: Option<&str>) -> String {
        match bucket {
            Some(b) => format!("{b}.oss-{}.aliyuncs.com", self.region),
            None => format!("oss-{}.aliyuncs.com", self.region),
        }
    }
}
