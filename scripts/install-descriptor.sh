#!/usr/bin/env bash
# Install the JSON descriptor libvirt uses to find vhost-user backends (QEMU's vhost-user.json
# "VhostUserBackend"), pointing at this checkout's bin/vhost-gpu.js.
# Default directory: /etc/qemu/vhost-user (the administrator's; /usr/share/qemu/vhost-user is for
# distribution packages). Usage: scripts/install-descriptor.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/etc/qemu/vhost-user}"
binary="$(pwd)/bin/vhost-gpu.js"
mkdir -p "$dir"
sed "s|@BINARY@|$binary|" share/qemu/vhost-user/50-vhost-gpu.json.in > "$dir/50-vhost-gpu.json"
echo "installed $dir/50-vhost-gpu.json -> $binary"
