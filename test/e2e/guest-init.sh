#!/bin/sh
# PID 1 of the e2e guest (busybox sh). Brings up virtio-gpu's fbdev, paints a
# known pattern into /dev/fb0 and idles so the host can take a screendump.
# Everything the host looks for on the serial console starts with "E2E: ".
# Must never exit: PID 1 exiting panics the kernel (panic=-1 + QEMU -no-reboot
# then end the VM, which the harness reports as a failure).
export PATH=/bin

. /etc/e2e-boot.sh

# virtio-gpu probes asynchronously; its fbdev emulation registers fb0 when done.
i=0
while [ ! -e /sys/class/graphics/fb0 ] || [ ! -e /dev/fb0 ]; do
  i=$((i + 1))
  [ $i -le 600 ] || fail "no /dev/fb0 after 60s"
  usleep 100000
done

# `quiet` hides KERN_INFO lines, so relay the driver's own messages explicitly.
dmesg | grep -iE 'virtio[-_]gpu|\[drm\]|fb0' | sed 's/^/E2E: dmesg: /'

# fbcon would draw text and a blinking cursor over our pattern. The kernel
# cmdline already maps consoles away from fb0 (fbcon=map:9); unbind anything
# that still grabbed the framebuffer, and report the final state.
for v in /sys/class/vtconsole/vtcon*; do
  [ -e "$v/name" ] || continue
  if grep -q 'frame buffer' "$v/name" && [ "$(cat "$v/bind")" = 1 ]; then
    echo 0 >"$v/bind" || say "could not unbind $(cat "$v/name")"
  fi
  say "vtcon $(basename "$v") bind=$(cat "$v/bind") name=$(cat "$v/name")"
done

fbsys=/sys/class/graphics/fb0
size=$(cat $fbsys/virtual_size)   # "W,H"
w=${size%,*}
h=${size#*,}
bpp=$(cat $fbsys/bits_per_pixel)
stride=$(cat $fbsys/stride)
say "fb0 ready ${w}x${h} bpp=${bpp} stride=${stride} name=$(cat $fbsys/name)"
[ "$bpp" = 32 ] || fail "expected 32 bpp, got $bpp"
[ "$stride" -ge $((w * 4)) ] || fail "stride $stride < width*4"

# DRM's fbdev emulation only commits a mode (-> SET_SCANOUT, so the host shows
# this framebuffer at all) from fb_set_par, which normally fbcon triggers on
# takeover. With fbcon kept off fb0, force it: a sysfs write of virtual_size
# goes through fb_set_var with FB_ACTIVATE_FORCE. Then make sure it is unblanked.
echo "$w,$h" >$fbsys/virtual_size || fail "modeset via $fbsys/virtual_size"
echo 0 >$fbsys/blank || fail "unblank fb0"
say "modeset done"

# Four vertical bands: red, green, blue, white; the last one takes the
# remainder when the width is not a multiple of 4. Pixels are XRGB8888 in
# memory order B,G,R,X with X=0 (a backend must ignore X, not treat it as alpha).
bw=$((w / 4))
# Writes $2 pixels of colour $1 (printf escapes) by doubling a 1-pixel file:
# a handful of cat calls instead of one process per pixel (TCG is slow).
band() {
  printf "$1" >/tmp/px
  n=1
  while [ $n -lt "$2" ]; do
    cat /tmp/px /tmp/px >/tmp/px2 && mv /tmp/px2 /tmp/px
    n=$((n * 2))
  done
  head -c $(($2 * 4)) /tmp/px
}
{
  band '\000\000\377\000' $bw
  band '\000\377\000\000' $bw
  band '\377\000\000\000' $bw
  band '\377\377\377\000' $((w - 3 * bw))
  head -c $((stride - w * 4)) /dev/zero   # row padding up to the stride
} >/tmp/rows
[ "$(wc -c </tmp/rows)" -eq "$stride" ] || fail "row is $(wc -c </tmp/rows) bytes, want $stride"
# Replicate the row to the full height the same way, then one write to fb0.
n=1
while [ $n -lt "$h" ]; do
  cat /tmp/rows /tmp/rows >/tmp/rows2 && mv /tmp/rows2 /tmp/rows
  n=$((n * 2))
done
# One write() for the whole frame, on purpose: Linux 6.1's fbdev damage code
# (drm_fb_helper_memory_range_to_clip) computes an empty clip for a write that
# starts mid-row and ends exactly at a row end, so with head/cat's 4 KiB chunks
# every 5th page of a 1280-px-wide frame was never flushed to the host (seen
# with QEMU's built-in virtio-gpu too). A single full-frame write damages rows
# 0..h-1 at full width.
dd if=/tmp/rows of=/dev/fb0 bs=$((stride * h)) count=1 2>/tmp/dd.err \
  && grep -q '^1+0 records out' /tmp/dd.err \
  || fail "write to /dev/fb0 (not one full write): $(cat /tmp/dd.err)"
rm -f /tmp/rows /tmp/px
say "pattern written"

# Stay alive for the screendump; the host kills QEMU when done.
while :; do sleep 3600; done
