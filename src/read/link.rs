//! What the network to OSS looks like, measured by the GETs themselves, and how much
//! read-ahead it takes to hide it (bandwidth-delay product).
//!
//! Every prefetch GET reports two numbers ([`LinkEstimate::observe`]): the time until its
//! reply headers arrived (≈ one round trip plus server time) and, for bodies of at least
//! [`MIN_BODY_SAMPLE`], the rate its body streamed at on its one connection. Both are kept
//! as moving averages (1/4 weight per sample), shared by all readers of a mount.
//!
//! A sequential reader wants its next bytes to be already on the way when it gets there.
//! One request of `S` bytes occupies `rtt + S / conn_rate` seconds; to keep a reader fed
//! at [`TARGET_RATE`], `TARGET_RATE × (rtt + S / conn_rate)` bytes must be in flight, i.e.
//! that many bytes / `S` requests ([`LinkEstimate::parallel_requests`]). On loopback
//! (rtt ≈ 0.2 ms, 8 MiB in ~3 ms) that is the configured minimum; at 20 ms it is ~8
//! requests of 8 MiB; with connections capped at 100 MB/s it is as many as
//! [`MAX_PARALLEL`] allows. Memory still bounds it: prefetch only takes what the budget
//! gives without waiting ([`super::BlockCache::try_reserve_prefetch`]).
//!
//! When connections are slow (a per-connection cap), the product asks for more bytes in
//! flight than [`IN_FLIGHT_CAP`]; then requests get smaller, not fewer, since the
//! throughput comes from the number of connections: [`LinkEstimate::plan`].
//!
//! Pitfall: a request queued behind the mount-wide in-flight budget (`--max-inflight`) or
//! behind a throttled server measures that wait as "round trip"; that only makes the
//! estimate ask for more parallelism, which the budget then caps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The reader throughput read-ahead is sized for (bytes/s): about what one FUSE reader
/// can take on this project's test machines; beyond it, more in flight buys nothing.
pub const TARGET_RATE: f64 = 3.0e9;
/// Most requests one reader keeps in flight.
pub const MAX_PARALLEL: usize = 32;
/// Read-ahead bytes in flight per reader before requests are made smaller instead.
pub const IN_FLIGHT_CAP: u64 = 128 << 20;
/// Bodies shorter than this do not say much about a connection's rate.
pub const MIN_BODY_SAMPLE: u64 = 1 << 20;

/// Moving averages of round trip and per-connection rate (0 = no sample yet).
#[derive(Debug, Default)]
pub struct LinkEstimate {
    rtt_us: AtomicU64,
    conn_bytes_per_sec: AtomicU64,
}

fn blend(cell: &AtomicU64, sample: u64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 {
            sample.max(1)
        } else {
            ((old * 3 + sample) / 4).max(1)
        })
    });
}

impl LinkEstimate {
    /// Records one GET: time to headers, and the body's length and streaming time.
    pub fn observe(&self, to_headers: Duration, body_bytes: u64, body_time: Duration) {
        blend(&self.rtt_us, to_headers.as_micros() as u64);
        if body_bytes >= MIN_BODY_SAMPLE && !body_time.is_zero() {
            blend(
                &self.conn_bytes_per_sec,
                (body_bytes as f64 / body_time.as_secs_f64()) as u64,
            );
        }
    }

    /// Current round-trip estimate (zero before any sample).
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(self.rtt_us.load(Ordering::Relaxed))
    }

    /// Current per-connection rate estimate in bytes/s (0 before any sample).
    pub fn conn_rate(&self) -> u64 {
        self.conn_bytes_per_sec.load(Ordering::Relaxed)
    }

    /// Requests of `request` bytes a sequential reader should keep in flight: the
    /// bandwidth-delay product over the request size, at least `min`, at most
    /// [`MAX_PARALLEL`].
    pub fn parallel_requests(&self, request: u64, min: usize) -> usize {
        let rtt = self.rtt().as_secs_f64();
        let rate = self.conn_rate();
        if rtt == 0.0 || rate == 0 || request == 0 {
            return min;
        }
        let per_request = rtt + request as f64 / rate as f64;
        let in_flight_bytes = TARGET_RATE * per_request;
        let n = (in_flight_bytes / request as f64).ceil() as usize;
        n.clamp(min, MAX_PARALLEL.max(min))
    }
}

impl LinkEstimate {
    /// Requests in flight and their size for a sequential reader: `max_request`-sized
    /// GETs as [`Self::parallel_requests`] asks, unless that exceeds [`IN_FLIGHT_CAP`];
    /// then smaller (block-aligned, at least one block) and more of them.
    pub fn plan(&self, max_request: u64, block: u64, min: usize) -> (usize, u64) {
        let n = self.parallel_requests(max_request, min);
        if n as u64 * max_request <= IN_FLIGHT_CAP {
            return (n, max_request);
        }
        let size = ((IN_FLIGHT_CAP / n as u64) / block * block)
            .max(block)
            .min(max_request);
        (self.parallel_requests(size, min), size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn no_samples_means_the_configured_minimum() {
        let l = LinkEstimate::default();
        assert_eq!(l.parallel_requests(8 * MIB, 4), 4);
    }

    #[test]
    fn loopback_needs_the_minimum_and_latency_needs_more() {
        let l = LinkEstimate::default();
        // Loopback: 0.2 ms to headers, 8 MiB in 3 ms.
        l.observe(
            Duration::from_micros(200),
            8 * MIB,
            Duration::from_millis(3),
        );
        assert_eq!(l.parallel_requests(8 * MIB, 4), 4);

        // 20 ms away, same connection speed: ~8 requests of 8 MiB.
        let far = LinkEstimate::default();
        far.observe(Duration::from_millis(20), 8 * MIB, Duration::from_millis(3));
        let n = far.parallel_requests(8 * MIB, 4);
        assert!((8..=10).contains(&n), "{n}");

        // 20 ms and 100 MB/s per connection: as many as allowed.
        let capped = LinkEstimate::default();
        capped.observe(
            Duration::from_millis(20),
            8 * MIB,
            Duration::from_millis(84),
        );
        assert_eq!(capped.parallel_requests(8 * MIB, 4), MAX_PARALLEL);
        // … which would be 256 MiB in flight: smaller requests instead.
        assert_eq!(capped.plan(8 * MIB, MIB, 4), (MAX_PARALLEL, 4 * MIB));
        assert_eq!(far.plan(8 * MIB, MIB, 4), (n, 8 * MIB));
    }

    #[test]
    fn averages_move_a_quarter_per_sample_and_ignore_small_bodies() {
        let l = LinkEstimate::default();
        l.observe(Duration::from_millis(4), 4 * MIB, Duration::from_millis(4));
        l.observe(Duration::from_millis(8), 1000, Duration::from_millis(1));
        assert_eq!(l.rtt(), Duration::from_millis(5));
        assert_eq!(l.conn_rate(), 4 * MIB * 1000 / 4);
    }
}
