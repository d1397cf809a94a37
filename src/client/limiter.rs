//! One budget for requests in flight per client (= per mount), adjusted by throttling.
//!
//! Every attempt [`super::OssClient::run`] makes holds a permit while it is sent and (for
//! ranged GETs and XML replies) while its body is read, so prefetch, attribute and
//! listing fan-out and uploads all draw from the same budget: one busy file cannot flood
//! OSS while the others wait on their own private limits. Waiters are woken one per freed
//! permit.
//!
//! The budget follows AIMD, like TCP's congestion window:
//! - on a throttling signal (HTTP 503 / 429, EC 0004-00000302, or a connection failure
//!   while many requests are in flight) the limit halves (never below 1) — at most once
//!   per [`CUT_SPACING`], since one overload burst fails many requests at once — and new
//!   requests pause for a short, growing hold ([`MIN_HOLD`] doubling up to [`MAX_HOLD`])
//!   so the whole mount slows down, not only the request that was refused;
//! - each success raises it by 1/limit (about +1 per limit's worth of successes) up
//!   to the configured maximum, and ends the hold series.
//!
//! The failed attempt itself is retried by the caller's backoff; throttled attempts get a
//! larger retry budget there (`transport`), so a workload the server only slows down
//! does not fail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Minimum time between two multiplicative decreases.
pub(super) const CUT_SPACING: Duration = Duration::from_millis(200);
/// First pause after a throttling signal.
pub(super) const MIN_HOLD: Duration = Duration::from_millis(50);
/// Longest pause.
pub(super) const MAX_HOLD: Duration = Duration::from_secs(2);

struct State {
    limit: f64,
    in_flight: usize,
    last_cut: Option<Instant>,
    hold_until: Option<Instant>,
    /// Throttling signals since the last success (sets the hold length).
    streak: u32,
}

/// The adjustable in-flight budget. See the module docs.
pub struct InflightLimit {
    max: usize,
    state: Mutex<State>,
    notify: Notify,
}

/// Returned by [`InflightLimit::acquire`]; frees its slot when dropped.
pub struct InflightPermit {
    limit: Arc<InflightLimit>,
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        let mut st = self.limit.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        drop(st);
        self.limit.notify.notify_one();
    }
}

impl InflightLimit {
    /// A budget of `max` requests (at least 1), starting fully open.
    pub fn new(max: usize) -> Arc<InflightLimit> {
        let max = max.max(1);
        Arc::new(InflightLimit {
            max,
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                last_cut: None,
                hold_until: None,
                streak: 0,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The current limit (whole requests).
    pub fn limit(&self) -> usize {
        self.lock().limit as usize
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits for a slot (and for any throttling pause to end).
    pub async fn acquire(self: &Arc<Self>) -> InflightPermit {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let hold = {
                let mut st = self.lock();
                let now = Instant::now();
                match st.hold_until {
                    Some(t) if t > now => Some(t),
                    _ => {
                        if st.in_flight < (st.limit as usize).max(1) {
                            st.in_flight += 1;
                            return InflightPermit {
                                limit: self.clone(),
                            };
                        }
                        None
                    }
                }
            };
            match hold {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => notified.await,
            }
        }
    }

    /// A throttling signal: halve the limit (spaced) and pause new requests briefly.
    pub fn throttled(&self) {
        let mut st = self.lock();
        let now = Instant::now();
        if st
            .last_cut
            .is_none_or(|t| now.duration_since(t) >= CUT_SPACING)
        {
            st.limit = (st.limit / 2.0).max(1.0);
            st.last_cut = Some(now);
            ::metrics::gauge!(crate::metrics::OSS_INFLIGHT_LIMIT).set(st.limit.floor());
        }
        let hold = MIN_HOLD
            .saturating_mul(1u32 << st.streak.min(10))
            .min(MAX_HOLD);
        st.streak = st.streak.saturating_add(1);
        let until = now + hold;
        if st.hold_until.is_none_or(|t| t < until) {
            st.hold_until = Some(until);
        }
    }

    /// A success: additive increase towards the maximum; wakes a waiter if the limit
    /// grew past a whole request.
    pub fn succeeded(&self) {
        let mut st = self.lock();
        st.streak = 0;
        if st.limit >= self.max as f64 {
            return;
        }
        let before = st.limit as usize;
        st.limit = (st.limit + 1.0 / st.limit).min(self.max as f64);
        let grew = st.limit as usize > before;
        if grew {
            ::metrics::gauge!(crate::metrics::OSS_INFLIGHT_LIMIT).set(st.limit.floor());
        }
        drop(st);
        if grew {
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limit_bounds_permits_and_frees_on_drop() {
        let l = InflightLimit::new(2);
        let a = l.acquire().await;
        let _b = l.acquire().await;
        assert_eq!(l.in_flight(), 2);
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _p = l2.acquire().await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap();
        assert_eq!(l.in_flight(), 1);
    }

    #[tokio::test]
    async fn throttling_halves_then_successes_recover() {
        let l = InflightLimit::new(16);
        l.throttled();
        assert_eq!(l.limit(), 8);
        // A burst of signals inside CUT_SPACING is one congestion event.
        l.throttled();
        l.throttled();
        assert_eq!(l.limit(), 8);
        for _ in 0..200 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 16);
        // Never below one.
        let one = InflightLimit::new(1);
        one.throttled();
        assert_eq!(one.limit(), 1);
    }

    #[tokio::test]
    async fn throttling_pauses_new_requests() {
        let l = InflightLimit::new(4);
        let start = Instant::now();
        l.throttled();
        let _p = l.acquire().await;
        assert!(start.elapsed() >= MIN_HOLD);
    }
}
