#!/usr/bin/env bash
# Soak: tests/reliability/load.rs for longer (default 10 minutes): 8 readers and 8 writers
# through one mount of the real binary; every byte verified, no stalled thread (deadlock
# watchdog), the mount's RSS sampled and bounded, no multipart upload left open.
# Usage: scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export RELIABILITY_LOAD_SECS="${1:-${RELIABILITY_LOAD_SECS:-600}}"
cargo build --bins
timeout $((RELIABILITY_LOAD_SECS + 600)) cargo test --test reliability load:: -- --nocapture
