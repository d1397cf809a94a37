#!/usr/bin/env bash
# Long version of tests/model_fs.rs: random file operations (and objects changed behind
# the mount's back) applied to a real mount and to a local directory, trees compared after
# every step. Default: seeds 1..10, 500 steps each, 2% server faults (retry back-off makes
# faulty runs slow: ~1 s per step at 5%). A failure prints the seed, the step and the whole
# history; rerun one with RELIABILITY_MODEL_SEED=N.
set -euo pipefail
cd "$(dirname "$0")/.."
export RELIABILITY_MODEL_SEED="${RELIABILITY_MODEL_SEED:-$(seq -s, 1 10)}"
export RELIABILITY_MODEL_STEPS="${RELIABILITY_MODEL_STEPS:-500}"
# Server faults hidden by retries (0 to turn off).
export RELIABILITY_MODEL_FAIL_RATE="${RELIABILITY_MODEL_FAIL_RATE:-0.02}"
cargo build --bins
timeout 7200 cargo test --test model_fs -- --nocapture
