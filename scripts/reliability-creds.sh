#!/usr/bin/env bash
# Long version of tests/reliability/creds.rs: `ossmount --ram-role` with 60 s STS
# credentials from the emulator's ECS metadata service, 5 minutes of continuous writes and
# reads, the metadata service down for 30 s right after a refresh. Zero failed operations.
set -euo pipefail
cd "$(dirname "$0")/.."
export RELIABILITY_STS_SECS="${RELIABILITY_STS_SECS:-60}"
export RELIABILITY_CREDS_SECS="${RELIABILITY_CREDS_SECS:-300}"
export RELIABILITY_OUTAGE_SECS="${RELIABILITY_OUTAGE_SECS:-30}"
cargo build --bins
timeout 900 cargo test --test reliability creds:: -- --nocapture
