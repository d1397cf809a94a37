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
//! requests of 8 MiB, made as ~4 of 32 MiB since fast connections on a far link get
//! longer requests ([`LinkEstimate::far_request`]); with connections capped at 100 MB/s it is as many as
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
/// Round trip from which fast connections get requests longer than the configured size
/// ([`LinkEstimate::far_request`]).
pub const FAR_REQUEST_RTT: Duration = Duration::from_millis(10);
/// Per-connection rate from which a far link's connections count as fast (bytes/s).
pub const FAST_CONN_RATE: u64 = 250_000_000;
/// Largest request [`LinkEstimate::far_request`] makes.
pub const FAR_REQUEST_MAX: u64 = 32 << 20;
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
        let max_request = self.far_request(max_request);
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

impl LinkEstimate {
    /// The request size for a far link ([`FAR_REQUEST_RTT`] or more) whose connections
    /// are fast ([`FAST_CONN_RATE`] or more): [`FAR_REQUEST_MAX`]. Fewer, longer GETs
    /// carry the same bytes in flight with fewer connections and wake-ups: 2 GiB read at
    /// 20 ms, alternating builds on one emulator, went from 1531 / 1492 MB/s with 8 MiB
    /// GETs to 1760 / 1622 MB/s (`bench-net.sh` row A; the mount reads ~1,950 MB/s at
    /// 0 ms there). Slow connections (where a long GET would make a reader wait for its
    /// tail) and near links keep `max_request`.
    fn far_request(&self, max_request: u64) -> u64 {
        let (rtt, rate) = (self.rtt(), self.conn_rate());
        if rtt < FAR_REQUEST_RTT || rate < FAST_CONN_RATE {
            return max_request;
        }
        FAR_REQUEST_MAX.max(max_request)
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
        // Fast connections 20 ms away: fewer, longer requests (`far_request`).
        assert_eq!(
            far.plan(8 * MIB, MIB, 4),
            (far.parallel_requests(FAR_REQUEST_MAX, 4), FAR_REQUEST_MAX)
        );
    }

    #[test]
    fn far_fast_links_get_longer_requests_and_others_keep_the_configured_size() {
        // 20 ms away, 1 GB/s per connection.
        let far_fast = LinkEstimate::default();
        far_fast.observe(Duration::from_millis(20), 8 * MIB, Duration::from_millis(8));
        // Requests of up to 32 MiB (smaller here, where 32 MiB ones would need more than
        // the in-flight cap), several in flight.
        let (n, size) = far_fast.plan(8 * MIB, MIB, 4);
        assert!(size > 8 * MIB && size <= FAR_REQUEST_MAX, "{size}");
        assert!(n >= 4, "{n}");
        // 2 GB/s: exactly 4 of 32 MiB.
        let faster = LinkEstimate::default();
        faster.observe(Duration::from_millis(20), 8 * MIB, Duration::from_millis(4));
        assert_eq!(faster.plan(8 * MIB, MIB, 4), (4, FAR_REQUEST_MAX));
        // Slow connections (100 MB/s) keep the configured size or go smaller (see
        // `plan`), even with a long round trip and small requests.
        let slow = LinkEstimate::default();
        slow.observe(
            Duration::from_millis(20),
            8 * MIB,
            Duration::from_millis(84),
        );
        assert!(slow.plan(8 * MIB, MIB, 4).1 <= 8 * MIB);
        let slow_and_far = LinkEstimate::default();
        slow_and_far.observe(
            Duration::from_millis(150),
            8 * MIB,
            Duration::from_millis(84),
        );
        assert_eq!(slow_and_far.far_request(256 * 1024), 256 * 1024);
        // Near links (3 ms) keep it too, whatever the connection speed.
        let near = LinkEstimate::default();
        near.observe(Duration::from_millis(3), 8 * MIB, Duration::from_millis(2));
        assert_eq!(near.plan(8 * MIB, MIB, 4).1, 8 * MIB);
        // A configured size above the far size is never made smaller by this rule.
        assert_eq!(faster.far_request(64 * MIB), 64 * MIB);
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
