#!/usr/bin/env bash
# End-to-end benchmark of ossmount against a loopback emulator; prints one table.
#
#   scripts/bench.sh                      # full run (1 GiB files, 10,000 objects, …)
#   scripts/bench.sh --size-mib 128 --list-objects 1000 --small-files 100   # quick run
#   scripts/bench.sh --mount-arg=--cache-size=1G    # extra ossmount options
#
# Needs root (or user FUSE mounts) and /dev/fuse. Builds release binaries first. All
# arguments go to examples/bench.rs (`--help` lists them). The mount is unmounted on
# exit, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d -t ossmount-bench.XXXXXX)"
cleanup() {
    if mountpoint -q "$work/mnt" 2>/dev/null; then
        umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# One job at a time: the machine is shared.
cargo build --release -j1 --bin ossmount --bin ossmount-emulator --example bench

target/release/examples/bench --work-dir "$work" "$@"
