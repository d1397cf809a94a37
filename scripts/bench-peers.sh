#!/usr/bin/env bash
# ossmount vs s3fs-fuse (the code ossfs 1.x forked) vs rclone mount, side by side in one
# run against one loopback emulator (anonymous, path style), with the same shell tools:
#   row 1  sequential read of a SIZE object      dd bs=1M to /dev/null (cold: fresh mount)
#   row 3  sequential write of a SIZE file       cp from local disk (timed through close)
#   row 4  ls -l of a directory of N objects     wall time + LIST/HEAD requests (emulator stats)
#   row 5  small files: write M x 64 KiB, then read them back: files/s + requests per file
# Usage: scripts/bench-peers.sh [SIZE_MIB=1024] [N=10000] [M=1000]
# Installs s3fs and rclone from Debian when missing; a peer that cannot mount is reported
# as skipped. Every mount is unmounted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
n_list=${2:-10000}
n_small=${3:-1000}

if ! command -v s3fs >/dev/null || ! command -v rclone >/dev/null; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s3fs rclone >/dev/null
fi
cargo build --release --quiet -j1 --bin ossmount --bin ossmount-emulator

work=$(mktemp -d -p "${TMPDIR:-/tmp}" ossmount-peers.XXXXXX)
tools=(ossmount s3fs rclone)
cleanup() {
  for t in "${tools[@]}"; do umount "$work/mnt-$t" 2>/dev/null || umount -l "$work/mnt-$t" 2>/dev/null || true; done
  [ -n "${emu_pid:-}" ] && kill "$emu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "preparing data: ${size_mib} MiB object, $n_list listing objects, $n_small x 64 KiB local files" >&2
mkdir -p "$work/import/list" "$work/small" "$work/data"
head -c $((size_mib << 20)) /dev/urandom > "$work/import/seq.bin"
for i in $(seq 1 "$n_list"); do : > "$work/import/list/f$i"; done
for i in $(seq 1 "$n_small"); do head -c 65536 /dev/urandom > "$work/small/s$i"; done
cp "$work/import/seq.bin" "$work/local-src.bin"
want=$(sha256sum < "$work/import/seq.bin" | cut -d' ' -f1)

target/release/ossmount-emulator --listen 127.0.0.1:0 --data-dir "$work/data" --bucket peers \
  --anonymous --import-dir "$work/import" > "$work/emu.out" 2> "$work/emu.err" &
emu_pid=$!
for _ in $(seq 600); do grep -q '^ready ' "$work/emu.out" 2>/dev/null && break; sleep 0.1; done
addr=$(awk '/^ready /{print $2}' "$work/emu.out")
[ -n "$addr" ] || { echo "emulator did not start" >&2; cat "$work/emu.err" >&2; exit 1; }
url="http://$addr"

stat_reset() { curl -s -X POST "$url/-/stats/reset" >/dev/null; }
stat_get() { curl -s "$url/-/stats" | python3 -c "import json,sys; r=json.load(sys.stdin)['requests']; print(sum(v for k,v in r.items() if k in sys.argv[1:]))" "$@"; }
stat_total() { curl -s "$url/-/stats" | python3 -c "import json,sys; print(sum(json.load(sys.stdin)['requests'].values()))"; }
now() { date +%s.%N; }
mnt_up() { # tool
  local t=$1 m="$work/mnt-$1"
  mkdir -p "$m"
  case $t in
    ossmount) target/release/ossmount peers "$m" --endpoint "$url" --anonymous --region cn-hangzhou ;;
    s3fs) s3fs peers "$m" -o "url=$url,use_path_request_style,public_bucket=1" ;;
    rclone) env -u AWS_CA_BUNDLE rclone mount --config "$work/rclone.conf" emu:peers "$m" --daemon ;;
  esac
  for _ in $(seq 100); do grep -q " $m " /proc/mounts && return 0; sleep 0.1; done
  return 1
}
mnt_down() { umount "$work/mnt-$1" 2>/dev/null || umount -l "$work/mnt-$1" 2>/dev/null || true; }
printf '[emu]\ntype = s3\nprovider = Other\nendpoint = %s\nforce_path_style = true\n' "$url" > "$work/rclone.conf"

declare -A R
for t in "${tools[@]}"; do
  if ! mnt_up "$t" 2> "$work/$t.mount.err"; then
    echo "$t: could not mount ($(head -c 200 "$work/$t.mount.err")) — skipped" >&2
    continue
  fi
  m="$work/mnt-$t"
  # row 1: cold sequential read (fresh mount, nothing cached)
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  # (timed to /dev/null: piping into sha256sum would cap every tool at its ~300 MB/s)
  t0=$(now); dd if="$m/seq.bin" of=/dev/null bs=1M 2>/dev/null; t1=$(now)
  got=$(sha256sum < "$m/seq.bin" | cut -d' ' -f1)
  [ "$got" = "$want" ] || echo "$t: WRONG BYTES on sequential read" >&2
  R[$t,read]=$(python3 -c "print(f'{$size_mib*1.048576/($t1-$t0):.0f}')")
  # row 3: sequential write, timed through close
  t0=$(now); cp "$work/local-src.bin" "$m/written-$t.bin"; t1=$(now)
  R[$t,write]=$(python3 -c "print(f'{$size_mib*1.048576/($t1-$t0):.0f}')")
  # row 4: ls -l of n_list objects (remount so nothing is cached)
  mnt_down "$t"; mnt_up "$t"; stat_reset
  t0=$(now); cnt=$(ls -l "$m/list" | grep -c '^-'); t1=$(now)
  R[$t,ls]=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  R[$t,lsreq]="$(stat_get ListObjectsV2 ListObjects) LIST, $(stat_get HeadObject) HEAD"
  [ "$cnt" = "$n_list" ] || echo "$t: ls -l showed $cnt of $n_list" >&2
  # row 5: small files write then read back (a fresh mount for each read), three times:
  # one pass is a few seconds and swings by a third on this shared machine; the median
  # of three is reported
  ws=() rs=()
  for rep in 1 2 3; do
    d="$m/small-$t-$rep"
    mkdir -p "$d"; stat_reset
    t0=$(now); cp "$work/small/"* "$d/"; t1=$(now)
    wreq=$(stat_total)
    mnt_down "$t"; mnt_up "$t"; stat_reset
    t2=$(now); cat "$d/"* | wc -c > /dev/null; t3=$(now)
    rreq=$(stat_total)
    ws+=("$(python3 -c "print($n_small/($t1-$t0))")") rs+=("$(python3 -c "print($n_small/($t3-$t2))")")
  done
  med() { python3 -c "import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:]))))" "$@"; }
  R[$t,smallw]=$(med "${ws[@]}") R[$t,smallr]=$(med "${rs[@]}")
  R[$t,small]=$(python3 -c "print(f'${R[$t,smallw]} w/s, ${R[$t,smallr]} r/s (medians of 3); req/file {$wreq/$n_small:.2f} w, {$rreq/$n_small:.2f} r (incl. listing)')")
  mnt_down "$t"
done

ratio() { python3 -c "a,b='$1','$2'; print(f'{float(a)/float(b):.2f}x' if a and b else '-')"; }
echo
echo "| row | ossmount | s3fs | rclone | ossmount/s3fs | ossmount/rclone |"
echo "|---|---|---|---|---|---|"
echo "| 1. seq read ${size_mib} MiB (MB/s) | ${R[ossmount,read]:-} | ${R[s3fs,read]:-} | ${R[rclone,read]:-} | $(ratio "${R[ossmount,read]:-}" "${R[s3fs,read]:-}") | $(ratio "${R[ossmount,read]:-}" "${R[rclone,read]:-}") |"
echo "| 3. seq write ${size_mib} MiB (MB/s) | ${R[ossmount,write]:-} | ${R[s3fs,write]:-} | ${R[rclone,write]:-} | $(ratio "${R[ossmount,write]:-}" "${R[s3fs,write]:-}") | $(ratio "${R[ossmount,write]:-}" "${R[rclone,write]:-}") |"
echo "| 4. ls -l $n_list objects (s) | ${R[ossmount,ls]:-} | ${R[s3fs,ls]:-} | ${R[rclone,ls]:-} | $(ratio "${R[s3fs,ls]:-}" "${R[ossmount,ls]:-}") faster | $(ratio "${R[rclone,ls]:-}" "${R[ossmount,ls]:-}") faster |"
echo "| 4. requests | ${R[ossmount,lsreq]:-} | ${R[s3fs,lsreq]:-} | ${R[rclone,lsreq]:-} | | |"
echo "| 5. $n_small x 64 KiB | ${R[ossmount,small]:-} | ${R[s3fs,small]:-} | ${R[rclone,small]:-} | $(ratio "${R[ossmount,smallw]:-}" "${R[s3fs,smallw]:-}") w, $(ratio "${R[ossmount,smallr]:-}" "${R[s3fs,smallr]:-}") r | $(ratio "${R[ossmount,smallw]:-}" "${R[rclone,smallw]:-}") w, $(ratio "${R[ossmount,smallr]:-}" "${R[rclone,smallr]:-}") r |"
