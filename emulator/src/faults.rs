//! Seeded fault injection for object and list requests.
//!
//! One decision is drawn per request from a `StdRng` seeded with `--seed`, so a test with
//! a fixed seed and a fixed request sequence sees the same faults every run. Kinds:
//! - `error`: a 500 `InternalError` or 503 `ServiceUnavailable` reply before any work;
//! - `reset`: a GET body aborted part-way (the connection is dropped);
//! - `truncate`: a GET body that ends before its `Content-Length`, then the connection
//!   closes;
//! - latency: `latency_ms` added before every object/list request (not counted);
//! - throttling: with `max_qps` > 0, object/list requests beyond that rate are answered
//!   503 with EC 0004-00000302, as OSS answers an account over its QPS limit. The rate is
//!   a token bucket holding one second of requests (so short bursts up to `max_qps` pass);
//! - bandwidth: `conn_mbytes_per_sec` > 0 paces every connection's writes to that many
//!   MB (10^6 bytes) per second ([`super::network`]); changes apply to open connections.
//!
//! `/-/` control endpoints and the metadata service are never faulted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Current fault rates (each 0.0..=1.0) and added latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    pub fail_rate: f64,
    pub reset_rate: f64,
    pub truncate_rate: f64,
    pub latency_ms: u64,
    /// Per-connection send rate cap in MB/s (10^6 bytes), 0 = none.
    #[serde(default)]
    pub conn_mbytes_per_sec: u64,
    /// Object/list requests per second before 503 EC 0004-00000302, 0 = no limit.
    #[serde(default)]
    pub max_qps: u64,
}

/// A partial update (`POST /-/faults`): absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultUpdate {
    #[serde(default)]
    pub fail_rate: Option<f64>,
    #[serde(default)]
    pub reset_rate: Option<f64>,
    #[serde(default)]
    pub truncate_rate: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub conn_mbytes_per_sec: Option<u64>,
    #[serde(default)]
    pub max_qps: Option<u64>,
}

impl FaultSettings {
    pub fn apply(&mut self, u: &FaultUpdate) {
        let clamp = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        if let Some(v) = u.fail_rate {
            self.fail_rate = clamp(v);
        }
        if let Some(v) = u.reset_rate {
            self.reset_rate = clamp(v);
        }
        if let Some(v) = u.truncate_rate {
            self.truncate_rate = clamp(v);
        }
        if let Some(v) = u.latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = u.conn_mbytes_per_sec {
            self.conn_mbytes_per_sec = v;
        }
        if let Some(v) = u.max_qps {
            self.max_qps = v;
        }
    }

    /// The per-connection cap in bytes per second (0 = none).
    pub fn conn_bytes_per_sec(&self) -> u64 {
        self.conn_mbytes_per_sec.saturating_mul(1_000_000)
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDecision {
    None,
    /// Reply with this 5xx status.
    Error(u16),
    /// Abort the body after this fraction (per mille) of it.
    Reset {
        permille: u16,
    },
    /// End the body early after this fraction (per mille) of it.
    Truncate {
        permille: u16,
    },
    /// Over the request-rate limit: 503, EC 0004-00000302.
    Throttled,
}

/// Request-rate token bucket: `tokens` refill at `max_qps` per second up to `max_qps`.
struct RateBucket {
    tokens: f64,
    last: Instant,
}

impl RateBucket {
    fn admit(&mut self, qps: u64) -> bool {
        let now = Instant::now();
        let cap = qps.max(1) as f64;
        let refill = now.duration_since(self.last).as_secs_f64() * qps as f64;
        self.tokens = (self.tokens + refill).min(cap);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct Faults {
    state: Mutex<(FaultSettings, StdRng)>,
    rate: Mutex<RateBucket>,
    /// Mirror of `conn_bytes_per_sec()`, read by every connection's writer.
    conn_rate: Arc<AtomicU64>,
}

impl Faults {
    pub fn new(settings: FaultSettings, seed: u64) -> Self {
        Faults {
            rate: Mutex::new(RateBucket {
                tokens: settings.max_qps as f64,
                last: Instant::now(),
            }),
            conn_rate: Arc::new(AtomicU64::new(settings.conn_bytes_per_sec())),
            state: Mutex::new((settings, StdRng::seed_from_u64(seed))),
        }
    }

    /// The live per-connection byte rate (0 = unlimited), shared with connections.
    pub fn conn_rate(&self) -> Arc<AtomicU64> {
        self.conn_rate.clone()
    }

    pub fn settings(&self) -> FaultSettings {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    pub fn update(&self, u: &FaultUpdate) -> FaultSettings {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0.apply(u);
        self.conn_rate
            .store(st.0.conn_bytes_per_sec(), Ordering::Relaxed);
        st.0
    }

    /// Draws the fault for one request. `body_faults` is true when the reply streams an
    /// object body (only those can be reset or truncated).
    pub fn decide(&self, body_faults: bool) -> (FaultDecision, u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (s, rng) = &mut *st;
        let latency = s.latency_ms;
        if s.max_qps > 0
            && !self
                .rate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(s.max_qps)
        {
            return (FaultDecision::Throttled, latency);
        }
        if s.fail_rate == 0.0 && s.reset_rate == 0.0 && s.truncate_rate == 0.0 {
            return (FaultDecision::None, latency);
        }
        let draw: f64 = rng.random();
        let fraction: u16 = rng.random_range(0..900);
        let status = if rng.random_bool(0.5) { 500 } else { 503 };
        let decision = if draw < s.fail_rate {
            FaultDecision::Error(status)
        } else if body_faults && draw < s.fail_rate + s.reset_rate {
            FaultDecision::Reset { permille: fraction }
        } else if body_faults && draw < s.fail_rate + s.reset_rate + s.truncate_rate {
            FaultDecision::Truncate { permille: fraction }
        } else {
            FaultDecision::None
        };
        (decision, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let s = FaultSettings {
            fail_rate: 0.3,
            reset_rate: 0.3,
            truncate_rate: 0.3,
            ..Default::default()
        };
        let a = Faults::new(s, 7);
        let b = Faults::new(s, 7);
        let da: Vec<_> = (0..50).map(|_| a.decide(true).0).collect();
        let db: Vec<_> = (0..50).map(|_| b.decide(true).0).collect();
        assert_eq!(da, db);
        assert!(da.iter().any(|d| matches!(d, FaultDecision::Error(_))));
        assert!(da.iter().any(|d| matches!(d, FaultDecision::Reset { .. })));
        assert!(
            da.iter()
                .any(|d| matches!(d, FaultDecision::Truncate { .. }))
        );
    }

    #[test]
    fn partial_update_keeps_other_fields() {
        let f = Faults::new(FaultSettings::default(), 1);
        f.update(&FaultUpdate {
            latency_ms: Some(5),
            ..Default::default()
        });
        let s = f.update(&FaultUpdate {
            fail_rate: Some(2.0),
            ..Default::default()
        });
        assert_eq!(s.latency_ms, 5);
        assert_eq!(s.fail_rate, 1.0);
        let s = f.update(&FaultUpdate {
            conn_mbytes_per_sec: Some(100),
            ..Default::default()
        });
        assert_eq!(s.latency_ms, 5);
        assert_eq!(f.conn_rate().load(Ordering::Relaxed), 100_000_000);
    }

    #[test]
    fn rate_limit_admits_one_second_of_requests_then_throttles() {
        let f = Faults::new(
            FaultSettings {
                max_qps: 10,
                ..Default::default()
            },
            1,
        );
        let admitted = (0..30)
            .filter(|_| f.decide(false).0 != FaultDecision::Throttled)
            .count();
        // The bucket starts full (10) and refills at 10/s: a fast loop gets ~10 through.
        assert!((10..=12).contains(&admitted), "{admitted}");
        f.update(&FaultUpdate {
            max_qps: Some(0),
            ..Default::default()
        });
        assert_eq!(f.decide(false).0, FaultDecision::None);
    }
}
