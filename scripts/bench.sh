#!/usr/bin/env bash
# End-to-end benchmark of ossmount against a loopback emulator; prints the tables.
#
#   scripts/bench.sh                      # full run (1 GiB files, 10,000 objects, peers)
#   scripts/bench.sh --size-mib 128 --list-objects 1000 --small-files 100   # quick run
#   scripts/bench.sh --mount-arg=--cache-size=1G    # extra ossmount options
#   OSSMOUNT_BENCH_PEERS=0 scripts/bench.sh         # skip the s3fs/rclone comparison
#   OSSMOUNT_BENCH_SCALE=0 scripts/bench.sh         # skip part 3 (many objects; sizes
#     OSSMOUNT_BENCH_SCALE_N/_W/_D, default 100000 / 10000 / 1000000; see bench-scale.sh)
#   OSSMOUNT_BENCH_NET=0 scripts/bench.sh           # skip the "20 ms" / TLS section
#   OSSMOUNT_BENCH_PEERS=0 OSSMOUNT_BENCH_SCALE=0 OSSMOUNT_BENCH_NET=0 \
#     scripts/bench.sh --only-write-back --write-back-files 300   # write-back rows only
#
# Part 1 (examples/bench.rs) measures the mount against direct HTTP from the same
# emulator, rows 1-3 alternating mount and direct for --rounds rounds (medians); rows 9-10
# are `ls -l` and `find -type f` of --attr-objects objects (default 2000,10000) at emulator
# latency --attr-latency-ms (default 20) with --metadata-ttl 60s, in the default mode
# (stored attributes: a HEAD per entry, 64 in flight) and with --readdir-optimize (LISTs
# only); a repeat within the TTL must send nothing. Rows 11-12 are `--write-back` at
# --write-back-latency-ms (default 20): `cp -r` of --write-back-files (default 300,1000)
# 16 KiB files and `tar x` of a tar of src/, each with write-back (store under
# --write-back-store, default /var/tmp: a local disk), without it, and as serial PUTs;
# the drain after umount is not timed, then every file is checked on the server. Part 2
# (scripts/bench-peers.sh) runs rows 1, 3, 4 and 5 for ossmount, s3fs and rclone against
# one emulator, with the same shell tools. The emulator keeps its data on /dev/shm when
# that has room (disk write-back of earlier rows otherwise lands in later rows' timings).
#
# Needs root (or user FUSE mounts) and /dev/fuse. Builds release binaries first. All
# arguments go to examples/bench.rs (`--help` lists them). Mounts are unmounted on exit,
# also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

base=/tmp
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
if [ "${shm_free_kib:-0}" -gt $((14 << 20)) ]; then base=/dev/shm; fi
work="$(mktemp -d -p "$base" ossmount-bench.XXXXXX)"
cleanup() {
    if mountpoint -q "$work/mnt" 2>/dev/null; then
        umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# One job at a time: the machine is shared.
cargo build --release -j1 --bin ossmount --bin ossmount-emulator --example bench

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); emulator data on $base" >&2
target/release/examples/bench --work-dir "$work" "$@"
rm -rf "$work"

if [ "${OSSMOUNT_BENCH_SCALE:-1}" != 0 ]; then
    # Part 3: buckets of many objects (RSS per object, tree walks at 20 ms, huge directory).
    TMPDIR=$base bash scripts/bench-scale.sh "${OSSMOUNT_BENCH_SCALE_N:-100000}" "${OSSMOUNT_BENCH_SCALE_W:-10000}" "${OSSMOUNT_BENCH_SCALE_D:-1000000}"
fi

if [ "${OSSMOUNT_BENCH_PEERS:-1}" != 0 ]; then
    size=1024 list=10000 small=1000
    # Follow the sizes given to part 1, so a quick run stays quick.
    while [ $# -gt 0 ]; do
        case $1 in
            --size-mib) size=$2; shift ;;
            --size-mib=*) size=${1#*=} ;;
            --list-objects) list=$2; shift ;;
            --list-objects=*) list=${1#*=} ;;
            --small-files) small=$2; shift ;;
            --small-files=*) small=${1#*=} ;;
        esac
        shift
    done
    TMPDIR=$base bash scripts/bench-peers.sh "$size" "$list" "$small"
fi

if [ "${OSSMOUNT_BENCH_NET:-1}" != 0 ]; then
    echo
    echo "== 20 ms section (scripts/bench-net.sh)"
    OSSMOUNT_BENCH_NO_BUILD=1 bash scripts/bench-net.sh
fi
