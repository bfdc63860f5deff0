#!/usr/bin/env bash
# Builds the e2e guest: the installed Debian kernel plus a tiny initramfs
# (busybox-static, the virtio-pci + virtio-gpu modules, guest-init.sh as /init).
#
# Usage: build-guest.sh [--3d | --shmem | --wayland]
#   (default)  2D guest: paints a pattern into /dev/fb0 (guest-init.sh).
#   --shmem    blob mapping guest: test/guest/blob-map.c, built here with
#              gcc -static, maps a cross-domain host3d blob through the
#              device's host-visible region (guest-init-shmem.sh is /init).
#   --3d       3D (virgl) guest: additionally carries the host's Mesa (the
#              virtio_gpu gallium driver, GBM, EGL, GLES) and Debian's kmscube
#              with every shared library it loads; guest-init-3d.sh is /init.
#              About 200 MB, uncompressed.
#   --wayland  Wayland passthrough guest: test/guest/wayland-proxy.c (gcc
#              -static) carries clients over a cross-domain channel, plus
#              Debian's wayland-info with its shared libraries;
#              guest-init-wayland.sh is /init.
#
# Output: test/e2e/.cache/guest-<kver>-<hash>/{vmlinuz,initramfs.cpio} (3D:
# guest3d-<kver>-<hash>/, shmem: guestshm-<kver>-<hash>/, wayland: guestwl-...); the directory path is the only thing printed on
# stdout (progress goes to stderr). A directory that already exists for the
# same key is reused as is, so repeated runs cost nothing. The key is the
# kernel version plus a hash of this script, the init script and the busybox
# binary (3D and wayland: also the path, size and mtime of every copied host
# file, so a Mesa upgrade rebuilds; shmem and wayland: also the C sources).
#
# Env: E2E_KERNEL_VERSION to pick a kernel other than the newest installed one.
# Needs: busybox-static, cpio, and xz/zstd/gzip only if the kernel ships
# compressed modules (modules.dep is parsed here; no kmod tools are used).
# --3d and --wayland also need ldd and the packages listed in
# scripts/install-system-deps.sh.
set -euo pipefail
shopt -s inherit_errexit  # so a die inside $(...) really stops the build

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in
  "")   flavour=2d; prefix=guest;   init_src="$here/guest-init.sh" ;;
  --3d) flavour=3d; prefix=guest3d; init_src="$here/guest-init-3d.sh" ;;
  --shmem) flavour=shmem; prefix=guestshm; init_src="$here/guest-init-shmem.sh" ;;
  --wayland) flavour=wayland; prefix=guestwl; init_src="$here/guest-init-wayland.sh" ;;
  *) echo "usage: $0 [--3d | --shmem | --wayland]" >&2; exit 2 ;;
esac
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
# The static guest program each flavour compiles (with test/guest/virtgpu.h).
guest_src=$here/../guest
case "$flavour" in
  shmem)   guest_prog=blob-map ;;
  wayland) guest_prog=wayland-proxy ;;
  *)       guest_prog="" ;;
esac
if [ -n "$guest_prog" ]; then
  command -v gcc >/dev/null || die "gcc missing (install build-essential)"
fi

# --- 3D and wayland: userspace manifest -------------------------------------
# One "guest-path<TAB>host-path" line per file. The guest tree is not a merged
# /usr (its /bin and /lib/modules come from the 2D layout), so every library
# goes to /usr/lib/<multiarch>, which the dynamic loader searches by default
# (no ld.so.cache needed), and the loader to its PT_INTERP path.
multiarch=x86_64-linux-gnu
libdir=/usr/lib/$multiarch
# Programs with their ldd closure, dlopened libraries and data files to copy.
user_programs=() user_dlopened=() user_data=()
if [ "$flavour" = 3d ]; then
  # kmscube only: glmark2-es2-drm always picks the connector's largest mode,
  # which for virtio-gpu's EDID is 5120x2160, and its modeset then fails.
  user_programs=(/usr/bin/kmscube)
  # Loaded with dlopen, so ldd of the program does not list them: Mesa's EGL
  # vendor library (named by glvnd's JSON below) and the gallium megadriver
  # under the name GBM/EGL look up for the virtio_gpu kernel driver
  # (<driver>_dri.so).
  user_dlopened=(libEGL_mesa.so.0 dri/virtio_gpu_dri.so)
  # Data files read at run time: glvnd's vendor list and Mesa's driconf.
  user_data=(/usr/share/glvnd/egl_vendor.d/50_mesa.json /usr/share/drirc.d)
elif [ "$flavour" = wayland ]; then
  # libwayland-client and what it links, nothing loaded later.
  user_programs=(/usr/bin/wayland-info)
fi

userspace_manifest() {
  local objs=() f name path
  for f in "${user_programs[@]}"; do
    [ -x "$f" ] || die "$f missing (run VHOST_GPU_DEPS_TEST=1 scripts/install-system-deps.sh)"
    objs+=("$f")
    printf '%s\t%s\n' "$f" "$f"
  done
  for f in "${user_dlopened[@]}"; do
    [ -e "$libdir/$f" ] || die "$libdir/$f missing (run VHOST_GPU_DEPS_TEST=1 scripts/install-system-deps.sh)"
    objs+=("$libdir/$f")
    printf '%s\t%s\n' "$libdir/$f" "$libdir/$f"
  done
  # ldd lists the whole DT_NEEDED closure of each object. A library goes in
  # under the name it is asked for (its soname); cp -L copies the real file.
  for f in "${objs[@]}"; do
    ldd "$f" | while read -r name arrow path _; do
      case "$arrow" in
        "=>")
          [ "$path" != "not" ] || die "ldd $f: $name not found"
          printf '%s\t%s\n' "$libdir/$name" "$path" ;;
        "(0x"*)
          # The loader line: "/lib64/ld-linux-x86-64.so.2 (0x...)".
          case "$name" in /*) printf '%s\t%s\n' "$name" "$name" ;; esac ;;
      esac
    done
  done
  for f in "${user_data[@]}"; do
    [ -e "$f" ] || die "$f missing"
    find "$f" -type f -printf '%p\t%p\n'
  done
}

manifest=""
if [ ${#user_programs[@]} -gt 0 ]; then
  # One line per guest path (the same library is reached both by name and via ldd).
  manifest=$(userspace_manifest | LC_ALL=C sort -u -t$'\t' -k1,1)
  [ -n "$manifest" ] || die "empty userspace manifest"
fi

key=$( { cat "${BASH_SOURCE[0]}" "$init_src" "$here/guest-boot.sh" "$busybox"
         [ -z "$guest_prog" ] || cat "$guest_src/$guest_prog.c" "$guest_src/virtgpu.h"
         [ -z "$manifest" ] || cut -f2 <<<"$manifest" | xargs -d '\n' stat -L -c '%n %s %Y'
       } | sha256sum | cut -c1-16)
out="$cache/$prefix-$kver-$key"
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
cp "$here/guest-boot.sh" "$root/etc/e2e-boot.sh"

if [ -n "$manifest" ]; then
  while IFS=$'\t' read -r dst src; do
    mkdir -p "$root$(dirname "$dst")"
    cp -L "$src" "$root$dst"
  done <<<"$manifest"
  log "userspace: $(wc -l <<<"$manifest") files, $(du -sh "$root/usr" | cut -f1)"
fi

if [ -n "$guest_prog" ]; then
  # Static: needs nothing from the image's libraries. Warnings are errors, so a sloppy edit does not boot.
  gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -o "$root/bin/$guest_prog" "$guest_src/$guest_prog.c" \
    || die "cannot build $guest_prog (gcc -static needs libc6-dev)"
fi

# newc cpio, uncompressed: ~3 MB (3D: ~200 MB, mostly libLLVM that Mesa's
# megadriver links), and the guest kernel unpacks it in a moment, where
# decompressing under TCG would take far longer. --owner keeps it independent
# of the builder.
(cd "$root" && find . -print0 | LC_ALL=C sort -z \
  | cpio --null -o -H newc --owner=0:0 --quiet) >"$tmp/initramfs.cpio"
cp "$vmlinuz" "$tmp/vmlinuz"

# Publish atomically, then drop outdated builds.
mkdir -p "$tmp/out"
mv "$tmp/initramfs.cpio" "$tmp/vmlinuz" "$tmp/out/"
rm -rf "$out"
mv "$tmp/out" "$out"
# Only this flavour's: "guest-*" does not match "guest3d-*" and vice versa.
for old in "$cache/$prefix"-*; do
  [ "$old" = "$out" ] || rm -rf "$old"
done
log "built: $out ($(du -sh "$out" | cut -f1))"
echo "$out"
