#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install, build and start the daemon in 2D mode on
# a socket (default /tmp/vhost-gpu.sock; extra arguments go to vhost-gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-system-deps.sh
[ -d node_modules ] && [ -f dist/src/cli/main.js ] || npm ci --no-audit --no-fund
SOCKET="${VHOST_GPU_SOCKET:-/tmp/vhost-gpu.sock}"
exec node bin/vhost-gpu.js --socket-path "$SOCKET" "$@"
