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
//!   MB (10^6 bytes) per second ([`super::network`]); changes apply to open connections;
//! - rules ([`FaultRule`]): targeted, deterministic failures — requests of one operation
//!   (optionally only under a key prefix, optionally only the Nth to Mth of them) answered
//!   with a chosen OSS error (`AccessDenied`, `EntityTooLarge`, …), before any work. They
//!   test one step of a multi-request sequence (the CopyObject of a rename, the DeleteObject
//!   after it) where a random rate cannot aim. Rules draw nothing from the seeded RNG, so
//!   adding them does not change the random faults a seed gives.
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

/// A targeted fault (`POST /-/faults {"rules":[…]}`): requests of `op` (the operation name
/// as in `/-/stats`, e.g. `CopyObject`) whose key starts with `key_prefix` are answered
/// with the OSS error `code` — after `skip` matching requests went through, for `times`
/// requests (absent: every one after the skipped). `hits` counts the requests failed so far
/// (reported by `GET /-/faults`; ignored on input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    pub op: String,
    /// Only objects under this prefix (for CopyObject and UploadPartCopy: the destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Matching requests let through before the first failure.
    #[serde(default)]
    pub skip: u64,
    /// How many matching requests fail (after `skip`); absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// OSS error code of the reply; one of [`RULE_CODES`] (default `InternalError`).
    #[serde(default = "default_rule_code")]
    pub code: String,
    /// HTTP status of the reply; absent: the code's usual status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Matching requests seen so far (skipped ones included).
    #[serde(default)]
    pub seen: u64,
    /// Requests this rule failed so far.
    #[serde(default)]
    pub hits: u64,
}

fn default_rule_code() -> String {
    "InternalError".into()
}

/// The error codes a [`FaultRule`] can answer with, and their usual HTTP status.
pub const RULE_CODES: &[(&str, u16)] = &[
    ("InternalError", 500),
    ("ServiceUnavailable", 503),
    ("AccessDenied", 403),
    ("EntityTooLarge", 400),
    ("InvalidArgument", 400),
    ("InvalidObjectName", 400),
    ("NoSuchKey", 404),
    ("PreconditionFailed", 412),
];

impl FaultRule {
    /// A rule failing every `op` request with `code` (builder for tests).
    pub fn new(op: &str, code: &str) -> FaultRule {
        FaultRule {
            op: op.into(),
            key_prefix: None,
            skip: 0,
            times: None,
            code: code.into(),
            status: None,
            seen: 0,
            hits: 0,
        }
    }

    /// Only requests whose key starts with `prefix`.
    pub fn under(mut self, prefix: &str) -> FaultRule {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// Lets `skip` matching requests through, then fails `times` of them.
    pub fn nth(mut self, skip: u64, times: u64) -> FaultRule {
        self.skip = skip;
        self.times = Some(times);
        self
    }

    /// The code as a static string and the status, or an error naming the known codes.
    fn reply(&self) -> Result<(&'static str, u16), String> {
        let (code, usual) = RULE_CODES
            .iter()
            .find(|(c, _)| *c == self.code)
            .ok_or_else(|| {
                let known: Vec<&str> = RULE_CODES.iter().map(|(c, _)| *c).collect();
                format!(
                    "fault rule code `{}` is not one of {}",
                    self.code,
                    known.join(", ")
                )
            })?;
        let status = self.status.unwrap_or(*usual);
        if !(400..=599).contains(&status) {
            return Err(format!("fault rule status {status} is not an error status"));
        }
        Ok((code, status))
    }
}

/// A rule's verdict on one request: fail it with this status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleHit {
    pub status: u16,
    pub code: &'static str,
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
    rules: Mutex<Vec<FaultRule>>,
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
            rules: Mutex::new(Vec::new()),
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

    /// The current rules with their counters.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces every rule (counters start at 0); refuses unknown codes, keeping the old
    /// rules.
    pub fn set_rules(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        let mut rules = rules;
        for r in &mut rules {
            r.reply()?;
            r.seen = 0;
            r.hits = 0;
        }
        *self.rules.lock().unwrap_or_else(|e| e.into_inner()) = rules;
        Ok(())
    }

    /// The first rule that fails this request of `op` on `key` (counting it), if any.
    pub fn rule_for(&self, op: &str, key: Option<&str>) -> Option<RuleHit> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for r in rules.iter_mut() {
            if r.op != op {
                continue;
            }
            if let Some(p) = &r.key_prefix
                && !key.is_some_and(|k| k.starts_with(p.as_str()))
            {
                continue;
            }
            r.seen += 1;
            if r.seen <= r.skip || r.times.is_some_and(|t| r.hits >= t) {
                continue;
            }
            r.hits += 1;
            // Codes were checked when the rule was set.
            let (code, status) = r.reply().ok()?;
            return Some(RuleHit { status, code });
        }
        None
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
    fn rules_fail_the_chosen_requests_only() {
        let f = Faults::new(FaultSettings::default(), 1);
        f.set_rules(vec![
            FaultRule::new("CopyObject", "AccessDenied")
                .under("d/")
                .nth(1, 2),
        ])
        .unwrap();
        let hit = Some(RuleHit {
            status: 403,
            code: "AccessDenied",
        });
        assert_eq!(f.rule_for("CopyObject", Some("e/x")), None);
        assert_eq!(f.rule_for("DeleteObject", Some("d/x")), None);
        assert_eq!(f.rule_for("CopyObject", Some("d/x")), None, "skipped");
        assert_eq!(f.rule_for("CopyObject", Some("d/x")), hit);
        assert_eq!(f.rule_for("CopyObject", Some("d/y")), hit);
        assert_eq!(f.rule_for("CopyObject", Some("d/x")), None, "spent");
        let r = &f.rules()[0];
        assert_eq!((r.seen, r.hits), (4, 2));
        // Random faults are unaffected by rules.
        assert_eq!(f.decide(false).0, FaultDecision::None);
        let err = f
            .set_rules(vec![FaultRule::new("PutObject", "NoSuchThing")])
            .unwrap_err();
        assert!(err.contains("AccessDenied"), "{err}");
        assert_eq!(f.rules().len(), 1, "a refused update keeps the old rules");
        f.set_rules(vec![FaultRule {
            status: Some(507),
            ..FaultRule::new("PutObject", "InternalError")
        }])
        .unwrap();
        assert_eq!(
            f.rule_for("PutObject", None),
            Some(RuleHit {
                status: 507,
                code: "InternalError"
            })
        );
        f.set_rules(Vec::new()).unwrap();
        assert_eq!(f.rule_for("PutObject", None), None);
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
