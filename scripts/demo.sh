#!/usr/bin/env bash
# The README's first command: builds ossmount, starts the local OSS emulator with sample
# data (no OSS account needed), mounts the bucket and shows the files.
# Interactive: the mount stays until you press Enter. Non-interactive (no terminal on
# stdin): it unmounts and exits after showing the files.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building ossmount (release)"
cargo build --release --bins --quiet

work=${OSSMOUNT_DEMO_DIR:-/tmp/ossmount-demo}
mnt="$work/mnt"
mkdir -p "$work/data" "$mnt"
if mountpoint -q "$mnt" 2>/dev/null || ! ls "$mnt" >/dev/null 2>&1; then
  umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
fi

# Sample data: a few text files, a nested directory and a 64 MiB binary.
samples="$work/samples"
if [ ! -f "$samples/big/random-64MiB.bin" ]; then
  mkdir -p "$samples/docs" "$samples/big" "$samples/logs/2026/11"
  cp README.md "$samples/docs/README.md"
  cp -r examples/sample-data/. "$samples/" 2>/dev/null || true
  for i in 1 2 3; do echo "log line $i from the ossmount demo" > "$samples/logs/2026/11/app-$i.log"; done
  head -c $((64 << 20)) /dev/urandom > "$samples/big/random-64MiB.bin"
fi

emu_log="$work/emulator.log"
target/release/ossmount-emulator --listen 127.0.0.1:0 --data-dir "$work/data" \
  --bucket demo-bucket --region cn-hangzhou \
  --access-key-id demo-ak --access-key-secret demo-secret-key \
  --import-dir "$samples" > "$work/emulator.out" 2> "$emu_log" &
emu_pid=$!
cleanup() {
  umount "$mnt" 2>/dev/null || true
  kill "$emu_pid" 2>/dev/null || true
  wait "$emu_pid" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do
  grep -q '^ready ' "$work/emulator.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(awk '/^ready /{print $2}' "$work/emulator.out")
[ -n "$addr" ] || { echo "emulator did not start; see $emu_log" >&2; exit 1; }
echo "== emulator listening on $addr (bucket demo-bucket, sample data imported)"

echo "== mounting: ossmount demo-bucket $mnt --endpoint http://$addr"
OSS_ACCESS_KEY_ID=demo-ak OSS_ACCESS_KEY_SECRET=demo-secret-key \
  target/release/ossmount demo-bucket "$mnt" --endpoint "http://$addr" --region cn-hangzhou

echo "== ls -lR $mnt"
ls -lR "$mnt"
echo "== cat $mnt/logs/2026/11/app-1.log"
cat "$mnt/logs/2026/11/app-1.log"
echo "== sha256 of the 64 MiB object read through the mount vs the local original"
sha256sum "$mnt/big/random-64MiB.bin" "$samples/big/random-64MiB.bin"

if [ -t 0 ]; then
  echo
  echo "The bucket is mounted at $mnt. Try: cp, cat, mkdir, rm, tar… inside it."
  read -r -p "Press Enter to unmount and stop the emulator. " _
fi
