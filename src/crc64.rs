//! CRC-64/XZ, the checksum OSS reports in `x-oss-hash-crc64ecma` (docs/PROTOCOL.md §6).
//!
//! Parameters: poly 0x42F0E1EBA9EA3693 (reflected 0xC96C5795D7870F42), init and xorout
//! all ones, reflected in and out; the empty input gives 0. The header carries it as a
//! decimal u64.
//!
//! The hashing itself is delegated to `crc-fast`, which picks a carry-less-multiply
//! (PCLMULQDQ / VPCLMULQDQ / PMULL) kernel at run time, so checking every byte uploaded
//! and downloaded costs little next to the network. Three operations matter:
//! - [`crc64`] / [`Crc64Hasher`]: checksum of a buffer or a stream.
//! - [`Crc64Hasher::with_initial`]: continue from the CRC of bytes already hashed
//!   (AppendObject: seed with the object's current CRC, feed the appended bytes, and the
//!   result must equal the new whole-object header).
//! - [`combine`]: CRC of `A‖B` from `crc(A)`, `crc(B)` and `len(B)`, without the data
//!   (multipart: fold the part CRCs in part order; the result equals the completed
//!   object's header). This is zlib's `crc32_combine` generalised, O(log len);
//!   [`Combiner`] precomputes it for one length (folding fixed-size blocks).
//!
//! Pitfall: a finished CRC has the xorout applied; continuing from it means undoing the
//! xorout to get the raw register back, which `with_initial` does.

use crc_fast::{CrcAlgorithm, Digest};

const ALGORITHM: CrcAlgorithm = CrcAlgorithm::Crc64Xz;
const XOROUT: u64 = u64::MAX;

/// CRC-64/XZ of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(ALGORITHM, data)
}

/// CRC of the concatenation `A‖B` given `crc1 = crc64(A)`, `crc2 = crc64(B)` and
/// `len2 = B.len()`. `combine(crc1, crc2, 0) == crc1`.
pub fn combine(crc1: u64, crc2: u64, len2: u64) -> u64 {
    if len2 == 0 {
        return crc1;
    }
    crc_fast::checksum_combine(ALGORITHM, crc1, crc2, len2)
}

/// [`combine`] for one fixed `len2`, with its GF(2) operator ("append `len2` zero bytes"
/// to the CRC register) computed once: folding many equal-length pieces (the blocks of a
/// download) then costs 64 XORs each instead of a matrix exponentiation (~50 µs).
#[derive(Clone)]
pub struct Combiner {
    len: u64,
    op: Box<[u64; 64]>,
}

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").field("len", &self.len).finish()
    }
}

/// `mat · vec` over GF(2); `mat[i]` is the image of bit `i`.
fn gf2_times(mat: &[u64; 64], mut vec: u64) -> u64 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 == 1 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn gf2_square(mat: &[u64; 64]) -> [u64; 64] {
    let mut out = [0; 64];
    for (o, m) in out.iter_mut().zip(mat) {
        *o = gf2_times(mat, *m);
    }
    out
}

impl Combiner {
    pub fn new(len: u64) -> Self {
        // One zero bit (reflected polynomial), then squared to one zero byte.
        let mut bit = [0u64; 64];
        bit[0] = 0xC96C_5795_D787_0F42;
        for (n, b) in bit.iter_mut().enumerate().skip(1) {
            *b = 1 << (n - 1);
        }
        let mut power = gf2_square(&gf2_square(&gf2_square(&bit)));
        let mut op = [0u64; 64];
        for (n, o) in op.iter_mut().enumerate() {
            *o = 1 << n;
        }
        // All operators are powers of the same one, so the order of products is free.
        let mut rest = len;
        while rest != 0 {
            if rest & 1 == 1 {
                for o in op.iter_mut() {
                    *o = gf2_times(&power, *o);
                }
            }
            rest >>= 1;
            if rest != 0 {
                power = gf2_square(&power);
            }
        }
        Combiner {
            len,
            op: Box::new(op),
        }
    }

    /// The `len2` this combiner was built for.
    pub fn len2(&self) -> u64 {
        self.len
    }

    /// Same as `combine(crc1, crc2, self.len2())`.
    pub fn combine(&self, crc1: u64, crc2: u64) -> u64 {
        if self.len == 0 {
            return crc1;
        }
        gf2_times(&self.op, crc1) ^ crc2
    }
}

/// Incremental CRC-64/XZ.
#[derive(Clone)]
pub struct Crc64Hasher {
    digest: Digest,
}

impl std::fmt::Debug for Crc64Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crc64Hasher")
            .field("crc", &self.finish())
            .field("bytes", &self.digest.get_amount())
            .finish()
    }
}

impl Default for Crc64Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64Hasher {
    /// A hasher over no bytes yet (`finish()` gives 0).
    pub fn new() -> Self {
        Crc64Hasher {
            digest: Digest::new(ALGORITHM),
        }
    }

    /// A hasher that continues after bytes whose CRC is `crc` (a finished value, e.g. an
    /// object's `x-oss-hash-crc64ecma`). `with_initial(0)` equals `new()`.
    pub fn with_initial(crc: u64) -> Self {
        Crc64Hasher {
            digest: Digest::new_with_init_state(ALGORITHM, crc ^ XOROUT),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The CRC of everything so far (including the initial bytes); the hasher can keep
    /// going afterwards.
    pub fn finish(&self) -> u64 {
        self.digest.finalize()
    }

    /// Bytes fed through `update` (not counting the bytes behind an initial CRC).
    pub fn bytes_hashed(&self) -> u64 {
        self.digest.get_amount()
    }
}

impl std::io::Write for Crc64Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which kernel crc-fast selected on this CPU (for logs and the benchmark), e.g.
/// `x86_64-avx512-vpclmulqdq`.
pub fn implementation() -> String {
    crc_fast::get_calculator_target(ALGORITHM)
}

/// Parses an `x-oss-hash-crc64ecma` header value (decimal u64, surrounding whitespace
/// tolerated).
pub fn parse_header(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHECK: &[u8] = b"123456789";
    const EBS: &[u8] = b"This is a test of the emergency broadcast system.";

    /// Bit-at-a-time reference implementation, independent of crc-fast.
    fn reference(data: &[u8]) -> u64 {
        let mut crc = u64::MAX;
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xC96C_5795_D787_0F42
                } else {
                    crc >> 1
                };
            }
        }
        crc ^ u64::MAX
    }

    /// zlib-style GF(2) matrix combine (docs/PROTOCOL.md §6), independent of crc-fast,
    /// to check crc-fast's combine at lengths too large to hash in a test.
    fn reference_combine(mut crc1: u64, crc2: u64, mut len2: u64) -> u64 {
        // The matrix helpers are the Combiner's own; what this checks is crc-fast.
        use super::{gf2_square as square, gf2_times as times};
        if len2 == 0 {
            return crc1;
        }
        let mut odd = [0u64; 64];
        odd[0] = 0xC96C_5795_D787_0F42;
        for (n, o) in odd.iter_mut().enumerate().skip(1) {
            *o = 1 << (n - 1);
        }
        let mut even = square(&odd); // two zero bits
        odd = square(&even); // four zero bits
        loop {
            even = square(&odd);
            if len2 & 1 == 1 {
                crc1 = times(&even, crc1);
            }
            len2 >>= 1;
            if len2 == 0 {
                break;
            }
            odd = square(&even);
            if len2 & 1 == 1 {
                crc1 = times(&odd, crc1);
            }
            len2 >>= 1;
            if len2 == 0 {
                break;
            }
        }
        crc1 ^ crc2
    }

    #[test]
    fn fixed_length_combiner_equals_combine() {
        for len in [0u64, 1, 7, 8, 4096, 12_345, 1 << 20, (1 << 20) + 3, 5 << 30] {
            let c = Combiner::new(len);
            assert_eq!(c.len2(), len);
            for (a, b) in [(0u64, 0u64), (crc64(CHECK), crc64(EBS)), (u64::MAX, 42)] {
                let b = if len == 0 { 0 } else { b };
                assert_eq!(c.combine(a, b), combine(a, b, len), "len {len}");
            }
        }
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 251) as u8).collect();
        let c = Combiner::new(1000);
        let folded = data
            .chunks(1000)
            .fold(0, |acc, piece| c.combine(acc, crc64(piece)));
        assert_eq!(folded, crc64(&data));
    }

    #[test]
    fn check_values_from_go_sdk() {
        assert_eq!(crc64(b""), 0);
        assert_eq!(crc64(CHECK), 0x995D_C9BB_DF19_39FA);
        assert_eq!(crc64(CHECK), 11_051_210_869_376_104_954);
        assert_eq!(crc64(EBS), 0x27DB_187F_C15B_BC72);
        let both = [CHECK, EBS].concat();
        assert_eq!(crc64(&both), 0x6A7A_A19F_CBF4_8688);
        assert_eq!(reference(&both), 0x6A7A_A19F_CBF4_8688);
    }

    #[test]
    fn combine_and_continue_match_concatenation() {
        let both = crc64(&[CHECK, EBS].concat());
        assert_eq!(combine(crc64(CHECK), crc64(EBS), EBS.len() as u64), both);
        assert_eq!(combine(crc64(CHECK), 0, 0), crc64(CHECK));
        assert_eq!(combine(0, crc64(EBS), EBS.len() as u64), crc64(EBS));
        let mut h = Crc64Hasher::with_initial(crc64(CHECK));
        h.update(EBS);
        assert_eq!(h.finish(), both);
        assert_eq!(h.bytes_hashed(), EBS.len() as u64);
        let mut h = Crc64Hasher::with_initial(0);
        h.update(CHECK);
        assert_eq!(h.finish(), crc64(CHECK));
    }

    /// On x86-64 with carry-less multiply the SIMD kernel must be selected (the software
    /// table fallback would cost ~10x on every transferred byte).
    #[test]
    fn simd_kernel_selected_when_available() {
        let kernel = implementation();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            assert!(kernel.contains("pclmulqdq"), "kernel {kernel}");
        }
        assert!(!kernel.is_empty());
    }

    #[test]
    fn header_parse() {
        assert_eq!(
            parse_header(" 11051210869376104954 "),
            Some(0x995D_C9BB_DF19_39FA)
        );
        assert_eq!(parse_header("-1"), None);
        assert_eq!(parse_header("18446744073709551616"), None);
    }

    proptest! {
        #[test]
        fn combine_matches_reference_at_any_length(
            crc1 in any::<u64>(), crc2 in any::<u64>(), len2 in 0u64..(1 << 45),
        ) {
            prop_assert_eq!(combine(crc1, crc2, len2), reference_combine(crc1, crc2, len2));
        }

        #[test]
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(crc64(&data), reference(&data));
        }

        #[test]
        fn split_combine_and_stream(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            let whole = crc64(&data);
            // Multipart style: fold part CRCs in order, starting from 0.
            let mut folded = 0;
            let mut streamed = Crc64Hasher::new();
            let mut appended = 0;
            for w in points.windows(2) {
                let part = &data[w[0]..w[1]];
                folded = combine(folded, crc64(part), part.len() as u64);
                streamed.update(part);
                // Append style: each append continues from the previous whole CRC.
                let mut h = Crc64Hasher::with_initial(appended);
                h.update(part);
                appended = h.finish();
            }
            prop_assert_eq!(folded, whole);
            prop_assert_eq!(streamed.finish(), whole);
            prop_assert_eq!(appended, whole);
        }
    }
}
