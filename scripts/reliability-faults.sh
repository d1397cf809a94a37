#!/usr/bin/env bash
# Long version of tests/reliability/faults.rs: through the real ossmount binary against an
# emulator injecting 10% 5xx, 2% connection resets and 2% truncated bodies, a sequential
# read of a 1 GiB object plus 200 random reads must return exactly its bytes, writes of
# 0 B .. 50 MiB must close with exact content or fail with EIO leaving nothing, and no
# multipart upload may stay open. Sizes can be overridden through the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export RELIABILITY_READ_MIB="${RELIABILITY_READ_MIB:-1024}"
export RELIABILITY_RANDOM_READS="${RELIABILITY_RANDOM_READS:-200}"
export RELIABILITY_WRITE_MAX_MIB="${RELIABILITY_WRITE_MAX_MIB:-50}"
cargo build --bins
timeout 3600 cargo test --test reliability faults:: -- --nocapture --test-threads=1
