#!/usr/bin/env bash
# Interop suite: the official OSS Python SDK v2 against the local emulator.
# Creates .venv (once), installs the SDK and pytest, builds the emulator, runs
# tests/interop. Extra arguments go to pytest (e.g. -k list -x).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    'alibabacloud-oss-v2>=1.4,<2' 'pytest>=7'
cargo build --quiet --bin ossmount-emulator
exec timeout 900 .venv/bin/python -m pytest -q tests/interop "$@"
