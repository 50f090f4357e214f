#!/usr/bin/env bash
# Creates the project's virtualenv with the exact versions in requirements.lock
# and the package itself in editable mode. Idempotent; used by the Makefile, CI and users.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required (bpy 5.0 is built for it); found $("$python" --version)" >&2
  exit 1
fi

# open3d loads libusb at import time; it is a system library, not a wheel.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; }
  else
    echo "warning: libusb-1.0 is missing; install it (Debian/Ubuntu: apt-get install libusb-1.0-0) for open3d" >&2
  fi
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# pip's exit status is kept; only the noise about absent local index folders is dropped.
pip_quiet() { "$venv/bin/python" -m pip -q "$@" 2> >(grep -v '^WARNING: Location' >&2); }
pip_quiet install --upgrade "pip>=24"
# Exact pins: torch/torchvision come as the registry's matching pair, never a local build.
pip_quiet install -r requirements.lock
pip_quiet install --no-deps -e .
# bpy's wheel metadata carries a cp39 tag, which pip check reports as unsupported; any
# other line is a real dependency conflict.
conflicts=$("$venv/bin/python" -m pip check 2>&1 | grep -v -e '^bpy .* is not supported on this platform' -e '^No broken requirements' || true)
[ -z "$conflicts" ] || { echo "error: dependency conflicts in $venv:" >&2; echo "$conflicts" >&2; exit 1; }
"$venv/bin/python" -c 'import ulip2_pipeline, bpy, torch, torchvision, open3d, trimesh, snakemake' \
  || { echo "error: the environment in $venv is incomplete" >&2; exit 1; }
echo "environment ready: $venv"
