#!/usr/bin/env bash
# Ranged-GET throughput of ossmount-emulator vs nginx serving the same file on loopback.
#
# Both servers serve one file of SIZE_MIB (default 1024) from the page cache; the same
# client (curl, one keep-alive connection per worker) fetches it as RANGE_MIB (default
# 8) ranges with CONCURRENCY (default 4) workers, PASSES (default 3) times after one
# warm-up pass. Prints MB/s for each server and the ratio emulator/nginx.
# The emulator runs --anonymous (the client sends no signatures, like for nginx).
#
# Env: SIZE_MIB, RANGE_MIB, CONCURRENCY, PASSES, WORK (scratch dir, kept; default a
# temporary dir removed at exit), EMULATOR (binary; default: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
RANGE_MIB=${RANGE_MIB:-8}
CONCURRENCY=${CONCURRENCY:-4}
PASSES=${PASSES:-3}
# A scratch dir made here is removed at exit (it holds 2+ GiB); a given WORK is kept.
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d /tmp/bench-emu-nginx.XXXXXX)
  REMOVE_WORK=1
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${REMOVE_WORK:-0}" = 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT


if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx"
  (apt-get install -y nginx-light >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y nginx-light >/dev/null 2>&1; } || apt-get install -y nginx >/dev/null)
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v curl >/dev/null || apt-get install -y curl >/dev/null

if [ -z "${EMULATOR:-}" ]; then
  echo "== building ossmount-emulator (release)"
  cargo build --release --bin ossmount-emulator --quiet
  EMULATOR=target/release/ossmount-emulator
fi

mkdir -p "$WORK/www" "$WORK/import" "$WORK/nginx"
file="$WORK/www/big.bin"
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne $((SIZE_MIB << 20)) ]; then
  echo "== creating a ${SIZE_MIB} MiB test file"
  head -c $((SIZE_MIB << 20)) /dev/urandom > "$file"
fi
ln -f "$file" "$WORK/import/big.bin" 2>/dev/null || cp "$file" "$WORK/import/big.bin"

# nginx: 2 workers (the machine size), sendfile on, keep-alive without a request cap.
port_nginx=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$port_nginx;
    root $WORK/www;
  }
}
CONF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
pids+=($!)

"$EMULATOR" --listen 127.0.0.1:0 --data-dir "$WORK/emu-data" --bucket bench --anonymous \
  --import-dir "$WORK/import" > "$WORK/emu.out" 2> "$WORK/emu.log" &
pids+=($!)
for _ in $(seq 600); do grep -q '^ready ' "$WORK/emu.out" 2>/dev/null && break; sleep 0.1; done
emu_addr=$(awk '/^ready /{print $2}' "$WORK/emu.out")
[ -n "$emu_addr" ] || { echo "emulator did not start; see $WORK/emu.log" >&2; exit 1; }
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port_nginx/big.bin" -r 0-0 && break; sleep 0.1; done

nginx_url="http://127.0.0.1:$port_nginx/big.bin"
emu_url="http://$emu_addr/bench/big.bin"

# One curl config per worker: worker w fetches ranges w, w+C, w+2C, … on one connection.
ranges=$(( SIZE_MIB / RANGE_MIB ))
make_configs() {
  local url=$1 tag=$2
  for w in $(seq 0 $((CONCURRENCY - 1))); do
    cfg="$WORK/curl-$tag-$w.cfg"
    : > "$cfg"
    local first=1
    for r in $(seq "$w" "$CONCURRENCY" $((ranges - 1))); do
      start=$(( r * RANGE_MIB << 20 ))
      end=$(( start + (RANGE_MIB << 20) - 1 ))
      [ "$first" = 1 ] || printf 'next\n' >> "$cfg"
      first=0
      printf 'url = "%s"\nrange = "%s-%s"\noutput = "/dev/null"\nfail\nsilent\n' "$url" "$start" "$end" >> "$cfg"
    done
  done
}

one_pass() {
  local tag=$1
  local wp=()
  for w in $(seq 0 $((CONCURRENCY - 1))); do
    curl -s --fail -K "$WORK/curl-$tag-$w.cfg" &
    wp+=($!)
  done
  local rc=0
  for p in "${wp[@]}"; do wait "$p" || rc=1; done
  return $rc
}

measure() {
  local url=$1 tag=$2
  make_configs "$url" "$tag"
  one_pass "$tag" # warm-up (page cache, connections)
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq "$PASSES"); do one_pass "$tag"; done
  t1=$(date +%s.%N)
  python3 -c "print(f'{$PASSES * $ranges * $RANGE_MIB * 1048576 / ($t1 - $t0) / 1e6:.0f}')"
}

# Both must serve the same bytes for a range.
check_start=$(( (SIZE_MIB / 3) << 20 ))
check_end=$(( check_start + (RANGE_MIB << 20) - 1 ))
want=$(dd if="$file" bs=1M skip=$((SIZE_MIB / 3)) count="$RANGE_MIB" status=none | sha256sum | cut -d' ' -f1)
for u in "$nginx_url" "$emu_url"; do
  got=$(curl -s --fail -r "$check_start-$check_end" "$u" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "range check failed for $u" >&2; exit 1; }
done

echo "== ${SIZE_MIB} MiB file, ${RANGE_MIB} MiB ranges, concurrency ${CONCURRENCY}, ${PASSES} passes"
nginx_mbs=$(measure "$nginx_url" nginx)
echo "nginx:    ${nginx_mbs} MB/s"
emu_mbs=$(measure "$emu_url" emu)
echo "emulator: ${emu_mbs} MB/s"
python3 -c "print(f'ratio emulator/nginx: {$emu_mbs / $nginx_mbs:.2f}')"
