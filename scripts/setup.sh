#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing ossmount. Idempotent.
# - Rust components rustfmt and clippy (the toolchain itself comes with the machine).
# - Debian packages used by the tests: rsync (shell-tool tests), util-linux mount (fstab test),
#   autoconf automake libtool (to build pjdfstest from ../shared/thirdparty in the tests).
#   fuse3 (dependency of the .deb that the package test installs), git (tests/mount_rww.rs
#   clones, gcs and commits a repository inside a mount).
# - A Python venv in .venv with the official OSS SDK (alibabacloud-oss-v2) and pytest,
#   used by the interop suite that drives our emulator with the reference client.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

if have rustup; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

missing=()
have rsync || missing+=(rsync)
have mount || missing+=(mount)
have autoreconf || missing+=(autoconf)
have automake || missing+=(automake)
have libtoolize || missing+=(libtool)
have git || missing+=(git)
have attr || true
# fuse3: the Debian package (scripts/package.sh) depends on it; its test installs the .deb.
have dpkg && ! dpkg -s fuse3 >/dev/null 2>&1 && missing+=(fuse3)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install: ${missing[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import alibabacloud_oss_v2, pytest' >/dev/null 2>&1; then
  .venv/bin/pip install -q --disable-pip-version-check 'alibabacloud-oss-v2>=1.1' 'pytest>=7'
fi
