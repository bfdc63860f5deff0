#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install, build and start the daemon in 2D mode on
# a socket (default /tmp/vhost-gpu.sock or $VHOST_GPU_SOCKET; extra arguments go to vhost-gpu, and a
# --socket-path or --fd among them replaces the default).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-system-deps.sh
[ -d node_modules ] && [ -f dist/src/cli/main.js ] || npm ci --no-audit --no-fund
for arg in "$@"; do
  case "$arg" in
    -s|--socket-path|--socket-path=*|--fd|--fd=*) exec node bin/vhost-gpu.js "$@" ;;
  esac
done
exec node bin/vhost-gpu.js --socket-path "${VHOST_GPU_SOCKET:-/tmp/vhost-gpu.sock}" "$@"
