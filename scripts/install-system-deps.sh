#!/usr/bin/env bash
# Installs the Debian packages vhost-gpu needs to build, run and test.
# Idempotent; needs root (or sudo). QEMU 10 comes from bookworm-backports because
# bookworm's QEMU 7.2 refuses vhost-user devices without KVM.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/vhost-gpu-backports.list >/dev/null
fi

want_base=(build-essential python3 pkg-config)
want_test=(busybox-static cpio linux-image-amd64 kmod zstd)
# 3D e2e guest (test/e2e/build-guest.sh --3d): the guest runs the host's own Mesa
# (virtio_gpu gallium driver in libgl1-mesa-dri, GBM/EGL/GLES) and Debian's
# kmscube, copied into its initramfs. The same Mesa's llvmpipe renders for
# QEMU's in-process virtio-gpu-gl reference run; libvirglrenderer1 is the
# host-side virgl decoder.
want_test+=(kmscube libgl1-mesa-dri libgbm1 libegl1 libegl-mesa0 libgles2 libdrm2 libvirglrenderer1)
# Cross-domain tests: a real compositor on the host (weston, headless backend, pixman renderer,
# weston-screenshooter) and the host's own view of its globals (wayland-info).
want_test+=(weston wayland-utils)
want_qemu=(qemu-system-x86 qemu-system-gui)

missing=()
for p in "${want_base[@]}" ${VHOST_GPU_DEPS_TEST:+"${want_test[@]}"}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
qemu_ok=0
if command -v qemu-system-x86_64 >/dev/null && [ -x /usr/lib/qemu/vhost-user-gpu ]; then
  major=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
  [ "${major:-0}" -ge 10 ] && qemu_ok=1
fi
if [ ${#missing[@]} -gt 0 ] || { [ -n "${VHOST_GPU_DEPS_TEST:-}" ] && [ $qemu_ok -eq 0 ]; }; then
  $SUDO apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "${VHOST_GPU_DEPS_TEST:-}" ] && [ $qemu_ok -eq 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${want_qemu[@]}"
  fi
fi

# QEMU 11.1 (Debian sid) for the SHMEM e2e test (vhost-user-test-device-pci): extracted into
# test/e2e/.cache/qemu-11 beside the system, never installed (scripts/setup-qemu-11.sh).
if [ -n "${VHOST_GPU_DEPS_TEST:-}" ]; then
  "$(dirname "${BASH_SOURCE[0]}")/setup-qemu-11.sh" >/dev/null
fi
