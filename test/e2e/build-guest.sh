#!/usr/bin/env bash
# Builds the e2e guest: the installed Debian kernel plus a tiny initramfs
# (busybox-static, the virtio-pci + virtio-gpu modules, guest-init.sh as /init).
#
# Output: test/e2e/.cache/guest-<kver>-<hash>/{vmlinuz,initramfs.cpio}; the
# directory path is the only thing printed on stdout (progress goes to stderr).
# A directory that already exists for the same key is reused as is, so repeated
# runs cost nothing. The key is the kernel version plus a hash of this script,
# the init script and the busybox binary.
#
# Env: E2E_KERNEL_VERSION to pick a kernel other than the newest installed one.
# Needs: busybox-static, cpio, and xz/zstd/gzip only if the kernel ships
# compressed modules (modules.dep is parsed here; no kmod tools are used).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
init_src="$here/guest-init.sh"
cache="$here/.cache"
busybox=/bin/busybox
log() { echo "build-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Newest kernel that has both a vmlinuz and a module tree (linux-image-amd64
# depends on exactly one, but tolerate leftovers from upgrades).
pick_kernel() {
  local v best=""
  for d in /lib/modules/*/; do
    v=$(basename "$d")
    [ -r "/boot/vmlinuz-$v" ] && [ -r "$d/modules.dep" ] || continue
    if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n1)" = "$v" ]; then
      best=$v
    fi
  done
  echo "$best"
}
kver=${E2E_KERNEL_VERSION:-$(pick_kernel)}
[ -n "$kver" ] || die "no kernel found (install linux-image-amd64)"
moddir=/lib/modules/$kver
vmlinuz=/boot/vmlinuz-$kver
[ -r "$vmlinuz" ] || die "$vmlinuz not readable"
[ -r "$moddir/modules.dep" ] || die "$moddir/modules.dep missing"
[ -x "$busybox" ] || die "$busybox missing (install busybox-static)"
command -v cpio >/dev/null || die "cpio missing"

key=$(cat "${BASH_SOURCE[0]}" "$init_src" "$busybox" | sha256sum | cut -c1-16)
out="$cache/guest-$kver-$key"
# Parallel test files may call this at once: serialise, so nobody replaces or
# prunes a build another run is about to boot.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/initramfs.cpio" ] && [ -f "$out/vmlinuz" ]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

# --- module closure from modules.dep -------------------------------------
# modules.dep lines are "path: dep dep ...". Module names compare with '-'
# and '_' equivalent (the file is virtio-gpu.ko, the module virtio_gpu).
declare -A dep_of=() path_of=()
modname() { local b=${1##*/}; b=${b%%.ko*}; echo "${b//-/_}"; }
while IFS= read -r line; do
  p=${line%%:*}
  n=$(modname "$p")
  path_of[$n]=$p
  dep_of[$p]=${line#*:}
done <"$moddir/modules.dep"

# Depth-first: a module is emitted after all of its dependencies, once.
declare -A seen=()
order=()
visit() {
  local p=$1 d
  [ -z "${seen[$p]:-}" ] || return 0
  seen[$p]=1
  for d in ${dep_of[$p]:-}; do visit "$d"; done
  order+=("$p")
}
# virtio_pci: the transport for -device ...-pci on q35. virtio_gpu: the DRM
# driver whose fbdev emulation provides /dev/fb0. Both are =m in Debian.
for want in virtio_pci virtio_gpu; do
  p=${path_of[$want]:-}
  if [ -z "$p" ]; then
    # Built-in modules have no .ko; that is fine, anything else is not.
    grep -q "/$want.ko\|/${want//_/-}.ko" "$moddir/modules.builtin" 2>/dev/null \
      && { log "$want is built in"; continue; }
    die "module $want not found in $moddir/modules.dep"
  fi
  visit "$p"
done

# --- assemble the tree ---------------------------------------------------
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules}

cp "$busybox" "$root/bin/busybox"
# Applet symlinks for everything busybox offers; init calls them by name.
for a in $("$busybox" --list); do
  [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done

# Modules are stored flat and uncompressed: busybox insmod only loads plain
# ELF objects, and decompressing here is cheaper than in a TCG guest.
: >"$root/etc/e2e-modules"
for p in "${order[@]}"; do
  src=$moddir/$p
  base=${p##*/}
  case "$p" in
    *.ko)     cp "$src" "$root/lib/modules/$base" ;;
    *.ko.xz)  base=${base%.xz};  xz -dc "$src" >"$root/lib/modules/$base" ;;
    *.ko.zst) base=${base%.zst}; zstd -qdc "$src" >"$root/lib/modules/$base" ;;
    *.ko.gz)  base=${base%.gz};  gzip -dc "$src" >"$root/lib/modules/$base" ;;
    *) die "unknown module format: $p" ;;
  esac
  echo "$base" >>"$root/etc/e2e-modules"
done
log "modules: $(tr '\n' ' ' <"$root/etc/e2e-modules")"

cp "$init_src" "$root/init"
chmod 755 "$root/init"

# newc cpio, uncompressed: ~3 MB, and the guest kernel unpacks it instantly
# (no decompression under TCG). --owner keeps it independent of the builder.
(cd "$root" && find . -print0 | LC_ALL=C sort -z \
  | cpio --null -o -H newc --owner=0:0 --quiet) >"$tmp/initramfs.cpio"
cp "$vmlinuz" "$tmp/vmlinuz"

# Publish atomically, then drop outdated builds.
mkdir -p "$tmp/out"
mv "$tmp/initramfs.cpio" "$tmp/vmlinuz" "$tmp/out/"
rm -rf "$out"
mv "$tmp/out" "$out"
for old in "$cache"/guest-*; do
  [ "$old" = "$out" ] || rm -rf "$old"
done
log "built: $out ($(du -sh "$out" | cut -f1))"
echo "$out"
