#!/bin/sh
# PID 1 of the 3D (virgl) e2e guest (busybox sh; built by build-guest.sh --3d).
# Brings up virtio_gpu's DRM device, checks the host offered virgl, runs a real
# GL program (Debian's kmscube on the guest's Mesa virtio_gpu driver, on KMS)
# for a bounded number of frames and reports renderer, frames and fps, then
# keeps it rendering in the background so the host's capture shows a GL frame.
# Everything the host looks for on the serial console starts with "E2E: ".
# Must never exit: PID 1 exiting panics the kernel (panic=-1 + QEMU -no-reboot).
#
# Kernel command line knob (dotted, so the kernel leaves it to us):
#   e2e.frames=N   frames in the measured run (default 300)
export PATH=/bin:/usr/bin

. /etc/e2e-boot.sh

# virtio-gpu probes asynchronously; the DRM nodes appear when it is done.
i=0
while [ ! -e /dev/dri/card0 ] || [ ! -e /dev/dri/renderD128 ]; do
  i=$((i + 1))
  [ $i -le 600 ] || fail "no /dev/dri/card0 + renderD128 after 60s"
  usleep 100000
done

# `quiet` hides KERN_INFO lines, so relay the driver's own messages explicitly
# (among them "[drm] features: +virgl ..." and "[drm] number of cap sets").
dmesg | grep -iE 'virtio[-_]gpu|\[drm\]' | sed 's/^/E2E: dmesg: /'
say "dri ready: $(ls /dev/dri | tr '\n' ' ')"
# Without virgl, Mesa would quietly fall back to software rendering in the
# guest (kms_swrast), which is not what a 3D test means to exercise.
dmesg | grep -q 'features: +virgl' || fail "host did not offer virgl (no 'features: +virgl')"

frames=300
for kv in $(cat /proc/cmdline); do
  case "$kv" in e2e.frames=*) frames=${kv#*=} ;; esac
done

# No writable home, and nothing to gain from a shader cache in a one-shot VM.
export HOME=/tmp MESA_SHADER_CACHE_DISABLE=true

# The measured run. Output goes to files first so the relayed lines are not
# interleaved with the kernel's or each other; GL extension lists are cut short.
# stdin stays the console (no input ever arrives): kmscube quits with "user
# interrupted!" as soon as its stdin is readable.
say "gl start: kmscube -D /dev/dri/card0 -c $frames"
kmscube -D /dev/dri/card0 -c "$frames" >/tmp/gl.log 2>/tmp/gl.err
rc=$?
cut -c1-200 /tmp/gl.log | sed 's/^/E2E: gl: /'
cut -c1-200 /tmp/gl.err | sed 's/^/E2E: gl stderr: /'
[ $rc -eq 0 ] || fail "kmscube exited with $rc"

# '  renderer: "virgl (LLVMPIPE (LLVM 15.0.6, 256 bits))"'
renderer=$(sed -n 's/^ *renderer: "\(.*\)"$/\1/p' /tmp/gl.log | head -n1)
[ -n "$renderer" ] || fail "no renderer string in kmscube output"
say "GL_RENDERER: $renderer"
# "Rendered 299 frames in 2.912345 sec (102.666 fps)": kmscube starts its
# clock at the second frame, so N-1 frames are timed.
line=$(grep '^Rendered [0-9]* frames in' /tmp/gl.log | tail -n1)
[ -n "$line" ] || fail "kmscube printed no 'Rendered N frames' line"
set -- $line
say "gl frames=$2 secs=$5 fps=${7#(}"

# When kmscube exits, its framebuffers go away and the screen falls back to
# the (black) fbdev buffer. So keep it rendering in the background; the host
# retries its capture until a GL frame is on screen. It should never end; if
# it does, say so once (with its output), then keep restarting it. The shell
# would give a background job /dev/null as stdin, hence the explicit console.
(
  kmscube -D /dev/dri/card0 </dev/console >/tmp/bg.log 2>&1
  say "background kmscube exited with $?:"
  cut -c1-200 /tmp/bg.log | tail -n 20 | sed 's/^/E2E: gl bg: /'
  while :; do kmscube -D /dev/dri/card0 </dev/console >/dev/null 2>&1; sleep 1; done
) &
say "gl done"

# Stay alive for the capture; the host kills QEMU when done.
while :; do sleep 3600; done
