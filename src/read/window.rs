//! Pure rules of the prefetcher: access classification, window growth, request planning.
//!
//! Kept free of I/O so they can be tested exhaustively and reasoned about on their own:
//! - A read is *sequential* if it starts where the previous one ended, a little before it
//!   (re-reads of the last couple of blocks, common in parsers and `tail`-like readers), or
//!   a little after it (skips within the current window). Anything else is *random* and
//!   resets the window, cancelling the read-ahead that would now be wasted.
//! - The window starts at `first_request_size` and doubles each time a sequential reader
//!   has consumed half of what was queued ahead of it, up to `max_window`.
//! - Requests start and end on block boundaries ([`block_floor`], [`block_ceil`]), so each
//!   can be cached block by block (their sizing lives in the reader).

/// How a read relates to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Sequential,
    Random,
}

/// Classifies a read at `offset` given where the previous read ended (`None` on the first
/// read, which counts as sequential only at offset 0), the current window and the
/// backward tolerance.
pub fn classify(last_end: Option<u64>, offset: u64, window: u64, backward_slack: u64) -> Access {
    match last_end {
        None if offset == 0 => Access::Sequential,
        None => Access::Random,
        Some(last) if offset >= last => {
            if offset - last <= window {
                Access::Sequential
            } else {
                Access::Random
            }
        }
        Some(last) => {
            if last - offset <= backward_slack {
                Access::Sequential
            } else {
                Access::Random
            }
        }
    }
}

/// The next window size: doubled, capped at `max`.
pub fn grow(window: u64, max: u64) -> u64 {
    window.saturating_mul(2).min(max).max(window.min(max))
}

/// Whether a sequential reader at `read_end` should widen its read-ahead: true when less
/// than half the window is still queued ahead of it.
pub fn should_grow(read_end: u64, queued_end: u64, window: u64) -> bool {
    queued_end.saturating_sub(read_end) < window / 2
}

/// Rounds `offset` down to a block boundary.
pub fn block_floor(offset: u64, block: u64) -> u64 {
    offset / block * block
}

/// Rounds `offset` up to a block boundary, capped at `size`.
pub fn block_ceil(offset: u64, block: u64, size: u64) -> u64 {
    offset.div_ceil(block).saturating_mul(block).min(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn classification() {
        assert_eq!(classify(None, 0, MIB, MIB), Access::Sequential);
        assert_eq!(classify(None, 5, MIB, MIB), Access::Random);
        assert_eq!(classify(Some(100), 100, MIB, MIB), Access::Sequential);
        // Small forward skip within the window stays sequential; beyond it does not.
        assert_eq!(classify(Some(100), 100 + MIB, MIB, MIB), Access::Sequential);
        assert_eq!(classify(Some(100), 101 + MIB, MIB, MIB), Access::Random);
        // Short backward re-read stays sequential; a long jump back does not.
        assert_eq!(
            classify(Some(3 * MIB), 2 * MIB, MIB, MIB),
            Access::Sequential
        );
        assert_eq!(
            classify(Some(3 * MIB), 2 * MIB - 1, MIB, MIB),
            Access::Random
        );
    }

    #[test]
    fn window_doubles_up_to_max() {
        let mut w = MIB;
        let mut seen = vec![w];
        for _ in 0..10 {
            w = grow(w, 64 * MIB);
            seen.push(w);
        }
        assert_eq!(&seen[..8], &[1, 2, 4, 8, 16, 32, 64, 64].map(|m| m * MIB));
        assert_eq!(grow(u64::MAX / 2 + 1, u64::MAX), u64::MAX);
    }

    #[test]
    fn growth_trigger_is_half_the_window() {
        assert!(!should_grow(0, MIB, MIB));
        assert!(!should_grow(MIB / 2, MIB, MIB));
        assert!(should_grow(MIB / 2 + 1, MIB, MIB));
        assert!(should_grow(2 * MIB, MIB, MIB)); // reader ahead of the queue
    }

    #[test]
    fn block_rounding() {
        assert_eq!(block_floor(MIB + 3, MIB), MIB);
        assert_eq!(block_ceil(MIB + 3, MIB, 10 * MIB), 2 * MIB);
        assert_eq!(block_ceil(MIB + 3, MIB, MIB + 5), MIB + 5);
    }
}
