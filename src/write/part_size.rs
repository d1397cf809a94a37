//! Part-size rules (OSS limits: 1..=10,000 parts, 100 KiB..=5 GiB per part, except that
//! the last part may be smaller).
//!
//! - Known size ([`part_size_for`]): the configured size, raised just enough that the
//!   object fits in 10,000 parts (rounded to whole MiB). Objects up to 48.8 TiB fit.
//! - Unknown size (streaming, [`streaming_part_size`]): the configured size for the first
//!   [`GROW_EVERY`] parts, then doubling every [`GROW_EVERY`] parts up to 5 GiB. Small and
//!   medium files keep small parts (low memory, good parallelism); with the 8 MiB default
//!   parts stay 8 MiB up to ~3.9 GiB and a stream can reach ~28 TiB
//!   ([`streaming_capacity`]). Only a known size can use 5 GiB parts from the start, so
//!   the full 48.8 TiB needs the staged path.

/// Most parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;
/// Smallest part except the last.
pub const MIN_PART_SIZE: u64 = 100 * 1024;
/// Largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Largest object a multipart upload can produce.
pub const MAX_OBJECT_SIZE: u64 = MAX_PARTS as u64 * MAX_PART_SIZE;
/// Streaming part size doubles every this many parts.
pub const GROW_EVERY: u32 = 500;

const MIB: u64 = 1024 * 1024;

/// The configured part size made valid.
pub fn clamp_part_size(configured: u64) -> u64 {
    configured.clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// Part size for an upload of known `size`; `None` when it cannot fit at all.
pub fn part_size_for(size: u64, configured: u64) -> Option<u64> {
    if size > MAX_OBJECT_SIZE {
        return None;
    }
    let base = clamp_part_size(configured);
    let needed = size.div_ceil(u64::from(MAX_PARTS));
    if needed <= base {
        return Some(base);
    }
    Some((needed.div_ceil(MIB) * MIB).min(MAX_PART_SIZE))
}

/// Size of streaming part `part_number` (1-based).
pub fn streaming_part_size(configured: u64, part_number: u32) -> u64 {
    let base = clamp_part_size(configured);
    let doublings = (part_number.saturating_sub(1) / GROW_EVERY).min(40);
    base.saturating_mul(1u64 << doublings).min(MAX_PART_SIZE)
}

/// Total bytes a streaming upload can hold in [`MAX_PARTS`] parts.
pub fn streaming_capacity(configured: u64) -> u64 {
    (1..=MAX_PARTS)
        .step_by(GROW_EVERY as usize)
        .map(|n| streaming_part_size(configured, n) * u64::from(GROW_EVERY))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_size_fits_in_max_parts() {
        assert_eq!(part_size_for(0, 8 * MIB), Some(8 * MIB));
        assert_eq!(part_size_for(80_000 * MIB, 8 * MIB), Some(8 * MIB));
        let big = 80_000 * MIB + 1;
        let ps = part_size_for(big, 8 * MIB).unwrap();
        assert!(big.div_ceil(ps) <= u64::from(MAX_PARTS));
        assert_eq!(ps % MIB, 0);
        assert_eq!(part_size_for(MAX_OBJECT_SIZE, 8 * MIB), Some(MAX_PART_SIZE));
        assert_eq!(part_size_for(MAX_OBJECT_SIZE + 1, 8 * MIB), None);
        // Tiny configured sizes are raised to the OSS minimum.
        assert_eq!(part_size_for(10, 1), Some(MIN_PART_SIZE));
    }

    #[test]
    fn streaming_parts_grow_every_group() {
        assert_eq!(streaming_part_size(8 * MIB, 1), 8 * MIB);
        assert_eq!(streaming_part_size(8 * MIB, GROW_EVERY), 8 * MIB);
        assert_eq!(streaming_part_size(8 * MIB, GROW_EVERY + 1), 16 * MIB);
        assert_eq!(streaming_part_size(8 * MIB, MAX_PARTS), MAX_PART_SIZE);
        // Parts never shrink as the number increases.
        let sizes: Vec<u64> = (1..=MAX_PARTS)
            .map(|n| streaming_part_size(8 * MIB, n))
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
        let cap = streaming_capacity(8 * MIB);
        assert_eq!(cap, sizes.iter().sum::<u64>());
        assert!(cap > 25 * 1024 * 1024 * MIB, "capacity {cap}");
    }
}
