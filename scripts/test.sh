#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install what the tests need, build, run every test
# (unit, integration against real backends, end-to-end with QEMU and a Linux guest).
set -euo pipefail
cd "$(dirname "$0")/.."
VHOST_GPU_DEPS_TEST=1 ./scripts/install-system-deps.sh
npm ci --no-audit --no-fund
npm test
