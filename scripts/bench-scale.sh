#!/usr/bin/env bash
# Buckets of many objects (part 3 of scripts/bench.sh; can run alone):
#   row S1  RSS per object: `find -size` stats every object of a tree of N objects
#           (N/100 directories) so the kernel holds every inode; peak RSS growth per
#           object, then RSS above the start once the kernel forgets them (drop_caches),
#           2 s later and again once idle connections closed (110 s)
#   row S2  tree walks at 20 ms per request: `find`, `du -s`, `rsync -an` over W objects
#           in W/100+W/1000 directories (100 top directories × 10 sub-directories for
#           W = 10,000): wall time and LIST/HEAD requests
#   row S3  a directory of D objects: time to the first entry of `ls -f`, then
#           `ls | wc -l` wall time and peak RSS
# Usage: scripts/bench-scale.sh [N=100000] [W=10000] [D=1000000]
# Objects are empty files imported into the emulator once per size (kept under
# $OSSMOUNT_BENCH_DATA, default /dev/shm or /tmp, so reruns skip the import).
# Needs root (FUSE and /proc/sys/vm/drop_caches). Extra ossmount options: OSSMOUNT_ARGS.
# Rows to run: OSSMOUNT_BENCH_ROWS (default "S1 S2 S3"), e.g. OSSMOUNT_BENCH_ROWS=S1.
set -euo pipefail
cd "$(dirname "$0")/.."
n_rss=${1:-100000}
n_walk=${2:-10000}
n_dir=${3:-1000000}
rows=" ${OSSMOUNT_BENCH_ROWS:-S1 S2 S3} "
row() { [[ $rows == *" $1 "* ]]; }

cargo build --release --quiet -j1 --bin ossmount --bin ossmount-emulator
base=${OSSMOUNT_BENCH_DATA:-$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )}/ossmount-bench-scale
mkdir -p "$base"
work=$(mktemp -d -p "${TMPDIR:-/tmp}" ossmount-scale.XXXXXX)
emu_pid=""
cleanup() {
  umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$work/mnt"

# tree NAME FILES_PER_LEAF TOP SUB: TOP × SUB leaf directories of FILES_PER_LEAF objects.
make_tree() {
  local dir=$1 per=$2 top=$3 sub=$4
  [ -d "$dir.data" ] && return 0
  echo "preparing $dir ($((per * top * (sub > 0 ? sub : 1))) objects)" >&2
  python3 - "$dir" "$per" "$top" "$sub" <<'EOF'
import os, sys
root, per, top, sub = sys.argv[1], *map(int, sys.argv[2:])
for a in range(top):
    for b in range(max(sub, 1)):
        d = os.path.join(root, f"d{a:04}", f"s{b:03}") if sub > 0 else os.path.join(root, f"d{a:04}")
        os.makedirs(d, exist_ok=True)
        for f in range(per):
            open(os.path.join(d, f"f{f:07}"), "w").close()
EOF
}

# start_emu DIR: serves DIR (imported on first use) as bucket scale-bkt.
start_emu() {
  local dir=$1 imp=()
  [ -d "$dir.data" ] || imp=(--import-dir "$dir")
  target/release/ossmount-emulator --listen 127.0.0.1:0 --data-dir "$dir.data" --bucket scale-bkt \
    --anonymous "${imp[@]}" > "$work/emu.out" 2> "$work/emu.err" &
  emu_pid=$!
  for _ in $(seq 36000); do
    kill -0 "$emu_pid" 2>/dev/null || { cat "$work/emu.err" >&2; exit 1; }
    grep -q '^ready ' "$work/emu.out" 2>/dev/null && break
    sleep 0.1
  done
  url="http://$(awk '/^ready /{print $2}' "$work/emu.out")"
  rm -rf "$dir"  # imported: the emulator's data dir is enough from now on
  mkdir -p "$dir"
}
stop_emu() { kill "$emu_pid"; wait "$emu_pid" 2>/dev/null || true; emu_pid=""; }
latency() { curl -s -X POST -d "{\"latency_ms\":$1}" "$url/-/faults" >/dev/null; }
stat_reset() { curl -s -X POST "$url/-/stats/reset" >/dev/null; }
stat_req() { curl -s "$url/-/stats" | python3 -c "import json,sys; r=json.load(sys.stdin)['requests']; print(', '.join(f'{k} {v}' for k,v in sorted(r.items())) or 'none')"; }
mnt_up() {
  # shellcheck disable=SC2086
  target/release/ossmount scale-bkt "$work/mnt" --endpoint "$url" --anonymous --region cn-hangzhou \
    ${OSSMOUNT_ARGS:-} "$@"
  mount_pid=$(pgrep -n -f "ossmount scale-bkt $work/mnt")
}
mnt_down() { umount "$work/mnt"; while kill -0 "$mount_pid" 2>/dev/null; do sleep 0.1; done; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$mount_pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$mount_pid/status"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }  # KiB -> MiB, one decimal

echo "| row | figure | command |"
echo "|---|---|---|"

# S1: RSS per object.
if row S1; then
  tree=$base/rss-$n_rss
  make_tree "$tree" 100 $(( (n_rss + 999) / 1000 )) 10
  start_emu "$tree"
  mport=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  mnt_up --metrics-addr "127.0.0.1:$mport"
  inodes() { curl -s "http://127.0.0.1:$mport/metrics" | awk '/^ossmount_inodes / {print $2}'; }
  sleep 1
  rss0=$(rss_kib)
  cd "$work/mnt"; count=$(find . -type f -size -2 | wc -l); cd - >/dev/null
  peak=$(hwm_kib)
  inodes_peak=$(inodes)
  sync; echo 2 > /proc/sys/vm/drop_caches
  for _ in $(seq 100); do [ "$(inodes)" -lt 1000 ] 2>/dev/null && break; sleep 0.1; done
  sleep 2  # the listings kept for the 1 s TTL go when it ends
  rss1=$(rss_kib)
  inodes1=$(inodes)
  # Idle keep-alive connections of the walk's parallel requests close after 50-100 s (the
  # pool checks every 50 s); the mount asks malloc to hand memory back after 105 s.
  sleep 108
  rss2=$(rss_kib)
  echo "| S1 RSS per object ($count objects, kernel holds all) | start $((rss0 / 1024)) MiB, peak +$(( (peak - rss0) * 1024 / count )) B/object ($inodes_peak inodes); after drop_caches +$(mib $((rss1 - rss0))) MiB ($inodes1 inodes), once idle connections closed (110 s) +$(mib $((rss2 - rss0))) MiB | \`find . -type f -size -2\`, then \`echo 2 > /proc/sys/vm/drop_caches\`; VmHWM/VmRSS 2 s and 110 s later, \`ossmount_inodes\` |"
  mnt_down; stop_emu
fi

# S2: walks at 20 ms.
if row S2; then
  tree=$base/walk-$n_walk
  make_tree "$tree" 10 $(( n_walk / 100 )) 10
  start_emu "$tree"
  latency 20
  for cmd in "find . | wc -l" "du -s ." "rsync -an --stats . /tmp/ossmount-rsync-none | grep 'files transferred'"; do
    mnt_up
    cd "$work/mnt"; stat_reset; t0=$(now); eval "$cmd" >/dev/null; t1=$(now); cd - >/dev/null
    echo "| S2 walk of $n_walk objects at 20 ms | $(secs "$t0" "$t1") s; $(stat_req) | \`$cmd\` |"
    mnt_down
  done
  stop_emu
fi

# S3: one huge directory.
if row S3; then
  tree=$base/dir-$n_dir
  make_tree "$tree" "$n_dir" 1 0
  start_emu "$tree"
  mnt_up
  cd "$work/mnt"
  t0=$(now); { ls -f d0000 || true; } | head -1 >/dev/null; t1=$(now)  # ls dies of SIGPIPE
  echo "| S3 first entry of a $n_dir-entry directory | $(secs "$t0" "$t1") s | \`ls -f d0000 \| head -1\` |"
  t0=$(now); lines=$(ls d0000 | wc -l); t1=$(now)
  cd - >/dev/null
  echo "| S3 list a $n_dir-entry directory | $lines entries in $(secs "$t0" "$t1") s, peak RSS $(( $(hwm_kib) / 1024 )) MiB | \`ls d0000 \| wc -l\` |"
  mnt_down; stop_emu
fi
