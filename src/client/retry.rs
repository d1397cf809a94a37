//! Which failures are retried, and how long to wait.
//!
//! Throttling (HTTP 429, or 503 with EC 0004-00000302, OSS's QPS limit) is its own
//! reason: such attempts also lower the in-flight budget ([`super::limiter`]) and get up
//! to [`THROTTLED_EXTRA_ATTEMPTS`] attempts beyond the usual count, with the backoff
//! capped at its 5th step, since the server asked us to slow down, not to give up.
//!
//! Retried (docs/PROTOCOL.md §5, like the Go SDK): HTTP 5xx, 408, 429; service codes
//! `RequestTimeTooSkewed` (after adopting the server's clock) and `BadRequest`; timeouts,
//! connection errors and resets; bodies shorter than promised; CRC mismatches of downloads.
//! `SecurityTokenExpired` is retried (at once) only when the credentials provider can fetch
//! a new set (see [`crate::credentials::CredentialsProvider::invalidate`]).
//! Not retried: other 4xx (they will not change), local I/O errors, bad arguments, and
//! upload CRC mismatches (the object now exists with the wrong content: the caller decides).
//!
//! Backoff is "full jitter": the n-th retry (n = 1, 2, …) waits
//! `U[0,1) × min(base × 2^n, max)` with base 0.2 s and max 20 s by default, so the first
//! retry waits at most 0.4 s and the wait never exceeds 20 s. Jitter keeps many clients
//! (or many parallel part uploads) from retrying in lock-step.

use std::time::Duration;

use rand::Rng;

use crate::store::{ServiceCode, StoreError};

/// Why an attempt will be retried; the `reason` label of `OSS_RETRIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    ServerError,
    Throttled,
    RequestTimeout,
    ClockSkew,
    BadRequest,
    Timeout,
    Network,
    ShortBody,
    CrcMismatch,
    /// `SecurityTokenExpired` with credentials the provider could replace.
    ExpiredCredentials,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::ServerError => "server_error",
            RetryReason::Throttled => "throttled",
            RetryReason::RequestTimeout => "request_timeout",
            RetryReason::ClockSkew => "clock_skew",
            RetryReason::BadRequest => "bad_request",
            RetryReason::Timeout => "timeout",
            RetryReason::Network => "network",
            RetryReason::ShortBody => "short_body",
            RetryReason::CrcMismatch => "crc_mismatch",
            RetryReason::ExpiredCredentials => "expired_credentials",
        }
    }
}

/// Attempts a request may make beyond `max_attempts` when the extra failures were
/// throttling.
pub(super) const THROTTLED_EXTRA_ATTEMPTS: u32 = 12;

/// OSS's detailed error id for "QPS limit exceeded".
pub(super) const EC_QPS_LIMIT: &str = "0004-00000302";

/// Classifies an OSS error reply, with its detailed error id (EC) when known.
pub(super) fn classify_reply(status: u16, code: &ServiceCode, ec: &str) -> Option<RetryReason> {
    if status == 503 && ec == EC_QPS_LIMIT {
        return Some(RetryReason::Throttled);
    }
    classify_status(status, code)
}

/// Classifies an OSS error reply by its HTTP status and parsed service code
/// ([`ServiceCode::None`] when the reply had no readable code).
pub fn classify_status(status: u16, code: &ServiceCode) -> Option<RetryReason> {
    match (status, code) {
        (_, ServiceCode::RequestTimeTooSkewed) => Some(RetryReason::ClockSkew),
        (_, ServiceCode::BadRequest) => Some(RetryReason::BadRequest),
        (408, _) => Some(RetryReason::RequestTimeout),
        (429, _) => Some(RetryReason::Throttled),
        (s, _) if s >= 500 => Some(RetryReason::ServerError),
        _ => None,
    }
}

/// A failed attempt: the error to return if we give up, and whether to try again.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: StoreError,
    pub retry: Option<RetryReason>,
    /// Server time minus local time, in ms, when the server said our clock is off.
    pub clock_offset_ms: Option<i64>,
}

impl Failure {
    pub(crate) fn fatal(error: StoreError) -> Failure {
        Failure {
            error,
            retry: None,
            clock_offset_ms: None,
        }
    }
    pub(crate) fn retryable(error: StoreError, reason: RetryReason) -> Failure {
        Failure {
            error,
            retry: Some(reason),
            clock_offset_ms: None,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::fatal(e)
    }
}

/// Backoff parameters.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Upper bound of the wait before retry number `retry` (1-based).
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random wait in `[0, cap(retry))`.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.cap(retry);
        let frac: f64 = rand::rng().random_range(0.0..1.0);
        cap.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify_status(500, &ServiceCode::parse("InternalError")),
            Some(RetryReason::ServerError)
        );
        assert_eq!(
            classify_status(503, &ServiceCode::parse("")),
            Some(RetryReason::ServerError)
        );
        assert_eq!(
            classify_status(429, &ServiceCode::parse("")),
            Some(RetryReason::Throttled)
        );
        assert_eq!(
            classify_reply(
                503,
                &ServiceCode::parse("ServiceUnavailable"),
                "0004-00000302"
            ),
            Some(RetryReason::Throttled)
        );
        assert_eq!(
            classify_reply(
                503,
                &ServiceCode::parse("ServiceUnavailable"),
                "0003-00000503"
            ),
            Some(RetryReason::ServerError)
        );
        assert_eq!(
            classify_status(408, &ServiceCode::parse("")),
            Some(RetryReason::RequestTimeout)
        );
        assert_eq!(
            classify_status(403, &ServiceCode::parse("RequestTimeTooSkewed")),
            Some(RetryReason::ClockSkew)
        );
        assert_eq!(
            classify_status(400, &ServiceCode::parse("BadRequest")),
            Some(RetryReason::BadRequest)
        );
        for (s, c) in [
            (404, "NoSuchKey"),
            (403, "AccessDenied"),
            (403, "SignatureDoesNotMatch"),
            (412, "PreconditionFailed"),
            (409, "PositionNotEqualToLength"),
            (400, "InvalidArgument"),
        ] {
            assert_eq!(classify_status(s, &ServiceCode::parse(c)), None, "{s} {c}");
        }
    }

    #[test]
    fn backoff_bounds() {
        let b = Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(20),
        };
        assert_eq!(b.cap(1), Duration::from_millis(400));
        assert_eq!(b.cap(2), Duration::from_millis(800));
        assert_eq!(b.cap(7), Duration::from_secs(20));
        assert_eq!(b.cap(1000), Duration::from_secs(20));
        for retry in 1..12 {
            for _ in 0..50 {
                let d = b.delay(retry);
                assert!(d < b.cap(retry), "{d:?} >= {:?}", b.cap(retry));
            }
        }
        // Jitter actually varies.
        let samples: std::collections::HashSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(samples.len() > 1);
    }
}
