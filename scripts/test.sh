#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, Rust unit and integration tests (real FUSE
# mounts against the local emulator), the Python SDK interop suite, and the man page
# generation. Every mounting test unmounts on failure; this script also fails if a FUSE
# mount made by the tests (under their private TMPDIR) is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# One-shot builds (CI) gain nothing from incremental state; it only costs disk and time.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --workspace -- -D warnings
# Internal documentation (private items and the `testing` doubles included, so links to
# them resolve): broken links and bad markup fail the build.
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings -A rustdoc::private_intra_doc_links" \
  cargo doc --no-deps --workspace --document-private-items --all-features
echo "== cargo build"
cargo build --bins --examples

echo "== man page and completions"
mkdir -p target/man
target/debug/ossmount man > target/man/ossmount.1
grep -q '^\.TH' target/man/ossmount.1
target/debug/ossmount completions bash > target/man/ossmount.bash

if [ -d tests/interop ]; then
  echo "== interop: official Python SDK against the emulator"
  OSSMOUNT_EMULATOR_BIN="$PWD/target/debug/ossmount-emulator" \
    .venv/bin/python -m pytest -q tests/interop
fi

echo "== cargo test"
# Every mountpoint the tests make is a temp dir, so a private TMPDIR holds all of them:
# the leftover check below looks only there, never at mounts others made on this machine.
# 0755 so the tests that switch to other users (pjdfstest, attrs_multiuser) can reach it.
# Tests that need root fail without it; OSSMOUNT_TESTS_WITHOUT_ROOT=skip skips them.
test_tmp=$(mktemp -d "${TMPDIR:-/tmp}/ossmount-tests.XXXXXX")
chmod 755 "$test_tmp"
status=0
TMPDIR="$test_tmp" cargo test --all-targets --no-fail-fast -- --test-threads=2 || status=$?

stale=$(awk -v dir="$test_tmp/" '$3 ~ /^fuse/ && index($2, dir) == 1 {print $2}' /proc/mounts || true)
if [ -n "$stale" ]; then
  echo "FUSE mounts left behind by the tests:" >&2
  echo "$stale" >&2
  exit 1
fi
# --one-file-system: never descend into a mount, whatever happened above.
rm -rf --one-file-system "$test_tmp"
exit "$status"
