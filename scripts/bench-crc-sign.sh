#!/usr/bin/env bash
# CRC-64 throughput (GB/s) and V4 signatures/second, release build.
# Usage: scripts/bench-crc-sign.sh [MIB] [SIGNATURES]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet --example crc_sign_bench -- "$@"
