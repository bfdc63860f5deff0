#!/usr/bin/env bash
# Sets up QEMU 11.1 from Debian sid next to the system, without installing anything of sid:
# mmdebstrap extracts qemu-system-x86 and its dependency closure (sid's libc included) into
# test/e2e/.cache/qemu-11/root, and a wrapper runs the binary with that tree's own dynamic loader,
# libraries, modules and firmware. Needed for -device vhost-user-test-device-pci, which passes a
# vhost-user back-end's shared memory regions (GET_SHMEM_CONFIG) to the guest as a PCI BAR: QEMU
# 10 has no such device.
#
# Idempotent: an existing tree whose wrapper runs is reused. Prints the wrapper's path on stdout
# (progress on stderr). Installs mmdebstrap from the host's own Debian if it is missing (root or
# sudo). Env: QEMU11_SUITE (default sid), QEMU11_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${QEMU11_SUITE:-sid}
mirror=${QEMU11_MIRROR:-http://deb.debian.org/debian}
log() { echo "setup-qemu-11: $*" >&2; }
die() { log "error: $*"; exit 1; }

# "QEMU emulator version 11.1.3 (...)" -> ok if >= 11.1.
version_ok() {
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p') || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 11 ] || { [ "$1" -eq 11 ] && [ "$2" -ge 1 ]; }
}

mkdir -p "$here/../test/e2e/.cache/qemu-11"
cache=$(cd "$here/../test/e2e/.cache/qemu-11" && pwd)
wrapper=$cache/qemu-system-x86_64
# Parallel test runs may call this at once: one builds, the others wait and reuse.
exec 9>"$cache/.lock"
flock 9
if [ -x "$wrapper" ] && version_ok "$wrapper"; then
  log "cached: $("$wrapper" --version | head -n1)"
  echo "$wrapper"
  exit 0
fi

if ! command -v mmdebstrap >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing mmdebstrap"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 mmdebstrap >&2 \
    || { $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600 >&2 \
         && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
              -o DPkg::Lock::Timeout=600 mmdebstrap >&2; } \
    || die "cannot install mmdebstrap"
fi

tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# extract: unpack the packages apt resolves for --include (the whole Depends closure), run no
# maintainer scripts, install nothing into the host. Check-Valid-Until off: sid's Release file
# is short-lived and a mirror snapshot older than the host clock would otherwise be refused.
log "extracting qemu-system-x86 from $suite ($mirror), about 160 MB"
mmdebstrap --variant=extract --include=qemu-system-x86 \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" "$tmp/root" "$mirror" >&2 || die "mmdebstrap failed"

r=$tmp/root
for f in usr/lib64/ld-linux-x86-64.so.2 usr/bin/qemu-system-x86_64 usr/share/qemu usr/share/seabios/bios-256k.bin; do
  [ -e "$r/$f" ] || die "the extracted tree has no /$f"
done

# The wrapper resolves the tree from its own location, so the cache directory can move.
# QEMU_MODULE_DIR: the tree's dlopen()ed modules (display, audio); -L: ROMs and firmware,
# SeaBIOS first (the sid build looks for it outside /usr/share/qemu).
cat >"$tmp/qemu-system-x86_64" <<'EOF'
#!/bin/sh
# QEMU from the Debian tree beside this file, with that tree's loader and libraries (setup-qemu-11.sh).
root=$(cd "$(dirname "$0")" && pwd)/root
lib=$root/usr/lib/x86_64-linux-gnu
export QEMU_MODULE_DIR="$lib/qemu"
exec "$root/usr/lib64/ld-linux-x86-64.so.2" --library-path "$lib:$root/usr/lib" "$root/usr/bin/qemu-system-x86_64" \
  -L "$root/usr/share/seabios" -L "$root/usr/share/qemu" "$@"
EOF
chmod 755 "$tmp/qemu-system-x86_64"
version_ok "$tmp/qemu-system-x86_64" || die "the extracted QEMU is not 11.1 or newer: $("$tmp/qemu-system-x86_64" --version 2>&1 | head -n1)"

# Publish: the old tree (if any, e.g. a broken one) goes, the new one moves in.
rm -rf "$cache/root" "$wrapper"
mv "$r" "$cache/root"
mv "$tmp/qemu-system-x86_64" "$wrapper"
log "ready: $("$wrapper" --version | head -n1) ($(du -sh "$cache/root" | cut -f1))"
echo "$wrapper"
