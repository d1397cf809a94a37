#!/usr/bin/env bash
# Network benchmark: the mount against curl on the same emulator, in the same run, with
# OSS-like network conditions made by the emulator (docs/emulator.md, "Network knobs"):
#
#   A. sequential read at 0 ms and at 20 ms (latency hidden when 20 ms ≈ 0 ms), and one
#      curl stream at 20 ms;
#   B. 20 ms + 100 MB/s per connection: one large file, mount vs 16 parallel ranged curls
#      of 8 MiB;
#   C. same network: 4 large files at once, mount (4 readers) vs 4 parallel curls;
#   D. 20 ms: 800 x 64 KiB files read by 8 processes in shuffled order, mount vs 8 curl
#      processes GETting the same lists (listing done before timing);
#   E. loopback: 1 file, mount vs one curl stream, at latency 0 and 3 ms;
#   F. TLS (emulator restarted with a test CA's certificate): mount (--ca-cert) vs curl
#      --cacert, plus the mount's CPU seconds per GiB.
#
# Every row is the median of --rounds rounds (each round remounts, so no cache carries
# over). Waits name their pids: a bare `wait` would also wait for the emulator. curl
# talks to the emulator anonymously (it runs --anonymous; the mount signs).
#
#   scripts/bench-net.sh                                   # full sizes (2 GiB, 1 GiB, …)
#   scripts/bench-net.sh --seq-mib 512 --big-mib 256 --small 200 --rounds 1   # quick
#   OSSMOUNT_BENCH_NET_ROWS="A E" scripts/bench-net.sh      # only sections A and E
#   OSSMOUNT_BENCH_MOUNT_BIN=/path/to/ossmount …               # another build of the mount
#
# Single-reader mount rows also report the mount's CPU seconds per GiB (user + system).
#
# Needs root (or user FUSE mounts), /dev/fuse, curl and openssl. Builds release binaries
# unless OSSMOUNT_BENCH_NO_BUILD=1. Mounts are unmounted and the emulator stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

seq_mib=2048 big_mib=1024 four_mib=256 small=800 loop_mib=1024 tls_mib=512 rounds=3
while [ $# -gt 0 ]; do
    case $1 in
        --seq-mib) seq_mib=$2; shift ;;
        --big-mib) big_mib=$2; shift ;;
        --four-mib) four_mib=$2; shift ;;
        --small) small=$2; shift ;;
        --loop-mib) loop_mib=$2; shift ;;
        --tls-mib) tls_mib=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {print} /^set -e/ {exit}' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "${OSSMOUNT_BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -j1 --bin ossmount --bin ossmount-emulator
fi
EMU=$PWD/target/release/ossmount-emulator
OSSMOUNT=${OSSMOUNT_BENCH_MOUNT_BIN:-$PWD/target/release/ossmount}   # override to compare builds

base=/tmp
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
need_kib=$(( (seq_mib + big_mib + 4 * four_mib + loop_mib + tls_mib + small / 16 + 64) * 2 * 1024 ))
if [ "${shm_free_kib:-0}" -gt "$need_kib" ]; then base=/dev/shm; fi
work="$(mktemp -d -p "$base" ossmount-bench-net.XXXXXX)"
mnt=$work/mnt
emu_pid="" mount_pid=""
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; fi
    [ -n "$mount_pid" ] && kill "$mount_pid" 2>/dev/null || true
    [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$mnt" "$work/import/seq" "$work/import/big" "$work/import/four" \
    "$work/import/small" "$work/import/loop" "$work/import/tls" "$work/data"

echo "preparing data under $work" >&2
mk() { head -c "$(( $2 << 20 ))" /dev/urandom > "$1"; }
mk "$work/import/seq/file" "$seq_mib"
mk "$work/import/big/file" "$big_mib"
for i in 1 2 3 4; do mk "$work/import/four/f$i" "$four_mib"; done
mk "$work/import/loop/file" "$loop_mib"
mk "$work/import/tls/file" "$tls_mib"
for i in $(seq -w 1 "$small"); do head -c 65536 /dev/urandom > "$work/import/small/s$i"; done

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null

# start_emulator [extra flags…]: sets $emu_pid and $addr.
start_emulator() {
    "$EMU" --listen 127.0.0.1:0 --data-dir "$work/data" --bucket bench \
        --access-key-id bench-ak --access-key-secret bench-secret --anonymous \
        --import-dir "$work/import" "$@" > "$work/emu.out" 2> "$work/emu.err" &
    emu_pid=$!
    for _ in $(seq 1 600); do
        addr=$(awk '/^ready / {print $2}' "$work/emu.out")
        [ -n "$addr" ] && return 0
        kill -0 "$emu_pid" 2>/dev/null || { cat "$work/emu.err" >&2; exit 1; }
        sleep 0.1
    done
    echo "emulator did not start" >&2; exit 1
}
stop_emulator() { kill "$emu_pid"; wait "$emu_pid" 2>/dev/null || true; emu_pid=""; }
scheme=http curl_tls=()
faults() { curl -sf "${curl_tls[@]}" -X POST "$scheme://$addr/-/faults" -d "$1" > /dev/null; }

# mount_fs [extra ossmount flags…]: foreground mount in the background, ready on return.
mount_fs() {
    OSS_ACCESS_KEY_ID=bench-ak OSS_ACCESS_KEY_SECRET=bench-secret \
    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true OSSMOUNT_ECS_METADATA_ENDPOINT=http://127.0.0.1:1 \
        "$OSSMOUNT" --endpoint "$scheme://$addr" --region cn-hangzhou --path-style \
        --cache-dir "$work/cache" "$@" -f bench "$mnt" 2> "$work/mount.err" &
    mount_pid=$!
    for _ in $(seq 1 300); do
        mountpoint -q "$mnt" && return 0
        kill -0 "$mount_pid" 2>/dev/null || { cat "$work/mount.err" >&2; exit 1; }
        sleep 0.05
    done
    echo "mount did not come up" >&2; exit 1
}
umount_fs() { umount "$mnt"; wait "$mount_pid" 2>/dev/null || true; mount_pid=""; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

now() { date +%s.%N; }
mbps() { awk -v b="$1" -v s="$2" -v e="$3" 'BEGIN {printf "%.0f", b / (e - s) / 1e6}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", (b > 0) ? a / b : 0}'; }
url() { echo "$scheme://$addr/bench/$1"; }

# Timed workloads; each prints MB/s.
mount_cat() {   # mount_cat KEY MIB [mount flags…]: one reader through a fresh mount
    local key=$1 mib=$2; shift 2
    mount_fs "$@"
    local t0; t0=$(cpu_ticks "$mount_pid")
    local s; s=$(now); cat "$mnt/$key" > /dev/null; local e; e=$(now)
    local t1; t1=$(cpu_ticks "$mount_pid")
    umount_fs
    cpu_per_gib "$(( t1 - t0 ))" "$mib" >> "$work/cat.cpu"
    mbps $(( mib << 20 )) "$s" "$e"
}
cpu_per_gib() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v m="$2" 'BEGIN {printf "%.2f\n", t / hz / (m / 1024)}'; }
# cat_cpu: median CPU s/GiB of the mount_cat rounds since the last call.
cat_cpu() { median < <(tr '\n' ' ' < "$work/cat.cpu"); rm -f "$work/cat.cpu"; }
want() { [ -z "${OSSMOUNT_BENCH_NET_ROWS:-}" ] || [[ " $OSSMOUNT_BENCH_NET_ROWS " == *" $1 "* ]]; }
curl_one() {    # curl_one KEY MIB: one stream
    local s; s=$(now); curl -sf "${curl_tls[@]}" -o /dev/null "$(url "$1")"; local e; e=$(now)
    mbps $(( $2 << 20 )) "$s" "$e"
}
curl_ranged() { # curl_ranged KEY MIB PAR: 8 MiB ranges, PAR curls at a time
    local key=$1 mib=$2 par=$3 u; u=$(url "$key")
    local s; s=$(now)
    for ((o = 0; o < mib; o += 8)); do echo "$(( o << 20 ))-$(( ((o + 8) << 20) - 1 ))"; done |
        xargs -P "$par" -I{} curl -sf "${curl_tls[@]}" -o /dev/null -r {} "$u"
    local e; e=$(now)
    mbps $(( mib << 20 )) "$s" "$e"
}
mount_four() {
    mount_fs
    local s; s=$(now)
    local pids=()
    for i in 1 2 3 4; do cat "$mnt/four/f$i" > /dev/null & pids+=($!); done
    wait "${pids[@]}"
    local e; e=$(now)
    umount_fs
    mbps $(( (4 * four_mib) << 20 )) "$s" "$e"
}
curl_four() {
    local s; s=$(now)
    local pids=()
    for i in 1 2 3 4; do curl -sf -o /dev/null "$(url "four/f$i")" & pids+=($!); done
    wait "${pids[@]}"
    local e; e=$(now)
    mbps $(( (4 * four_mib) << 20 )) "$s" "$e"
}
ls "$work/import/small" > "$work/small.list"
split_lists() { # 8 shuffled lists of the small files, new order every round
    shuf "$work/small.list" > "$work/small.shuf"
    rm -f "$work"/list.*
    split -n r/8 "$work/small.shuf" "$work/list."
}
mount_small() {
    split_lists
    mount_fs
    ls -l "$mnt/small" > /dev/null   # listing not timed
    local s; s=$(now)
    local pids=()
    for l in "$work"/list.*; do (cd "$mnt/small" && xargs cat < "$l" > /dev/null) & pids+=($!); done
    wait "${pids[@]}"
    local e; e=$(now)
    umount_fs
    mbps $(( small * 65536 )) "$s" "$e"
}
curl_small() {
    split_lists
    local pids=()
    for l in "$work"/list.*; do
        sed "s|^|url = $scheme://$addr/bench/small/|; s|$|\noutput = /dev/null|" "$l" > "$l.cfg"
    done
    local s; s=$(now)
    for l in "$work"/list.*.cfg; do curl -sf -K "$l" & pids+=($!); done
    wait "${pids[@]}"
    local e; e=$(now)
    mbps $(( small * 65536 )) "$s" "$e"
}

# rounds_of CMD…: median MB/s of $rounds runs.
rounds_of() { local v=""; for _ in $(seq 1 "$rounds"); do v="$v $("$@")"; done; echo "$v" | median; }

start_emulator
echo "machine: $(nproc) cores, $(uname -r); data on $base; rounds: $rounds (medians)" >&2
rows=()
row() { rows+=("| $1 | $2 MB/s | $3 MB/s | $(ratio "$2" "$3") | $4 |"); echo "row: $1: mount $2, raw $3" >&2; }

# A.
if want A; then
faults '{"latency_ms":0,"conn_mbytes_per_sec":0}'
a0=$(rounds_of mount_cat seq/file "$seq_mib")
a0cpu=$(cat_cpu)
faults '{"latency_ms":20}'
a20=$(rounds_of mount_cat seq/file "$seq_mib")
a20cpu=$(cat_cpu)
c20=$(rounds_of curl_one seq/file "$seq_mib")
row "sequential $seq_mib MiB, 20 ms (raw = the mount at 0 ms)" "$a20" "$a0" "target ≥ 0.9x; one curl stream at 20 ms: $c20 MB/s; mount CPU $a20cpu / $a0cpu s/GiB"
fi
# B, C.
if want B || want C; then faults '{"latency_ms":20,"conn_mbytes_per_sec":100}'; fi
if want B; then
b=$(rounds_of mount_cat big/file "$big_mib")
bcpu=$(cat_cpu)
bc=$(rounds_of curl_ranged big/file "$big_mib" 16)
row "$big_mib MiB, 20 ms + 100 MB/s per connection" "$b" "$bc" "raw = 16 parallel 8 MiB ranged curls; target ≥ 0.8x; mount CPU $bcpu s/GiB"
fi
if want C; then
c=$(rounds_of mount_four)
cc=$(rounds_of curl_four)
row "4 x $four_mib MiB at once, 20 ms + 100 MB/s per connection" "$c" "$cc" "raw = 4 parallel curls; target ≥ 0.8x"
fi
# D.
if want D; then
faults '{"latency_ms":20,"conn_mbytes_per_sec":0}'
d=$(rounds_of mount_small)
dc=$(rounds_of curl_small)
row "$small x 64 KiB, 8 processes, shuffled, 20 ms" "$d" "$dc" "raw = 8 curl processes (keep-alive); target ≥ 0.9x"
fi
# E.
if want E; then
for lat in 0 3; do
    faults "{\"latency_ms\":$lat,\"conn_mbytes_per_sec\":0}"
    e=$(rounds_of mount_cat loop/file "$loop_mib")
    ecpu=$(cat_cpu)
    ec=$(rounds_of curl_one loop/file "$loop_mib")
    row "loopback $loop_mib MiB, latency $lat ms" "$e" "$ec" "raw = one curl stream; target ≥ 0.85x; mount CPU $ecpu s/GiB"
done
fi
# F.
if want F; then
stop_emulator
start_emulator --tls-cert "$work/server.pem" --tls-key "$work/server.key"
scheme=https curl_tls=(--cacert "$work/ca.pem")
tls_mount() {
    mount_fs --ca-cert "$work/ca.pem"
    local t0; t0=$(cpu_ticks "$mount_pid")
    local s; s=$(now); cat "$mnt/tls/file" > /dev/null; local e; e=$(now)
    local t1; t1=$(cpu_ticks "$mount_pid")
    umount_fs
    cpu_per_gib "$(( t1 - t0 ))" "$tls_mib" >> "$work/tls.cpu"
    mbps $(( tls_mib << 20 )) "$s" "$e"
}
f=$(rounds_of tls_mount)
fc=$(rounds_of curl_one tls/file "$tls_mib")
cpu=$(median < <(tr '\n' ' ' < "$work/tls.cpu"))
row "TLS $tls_mib MiB (loopback)" "$f" "$fc" "raw = one curl stream over the same TLS server; mount CPU $cpu s/GiB; target ≥ 0.8x"
fi

echo
echo "| workload | mount | raw (curl) | ratio | notes |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
