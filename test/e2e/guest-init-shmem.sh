#!/bin/sh
# PID 1 of the blob mapping guest (busybox sh): virtio-gpu's DRM device, the driver's feature
# lines from dmesg, then blob-map (test/guest/blob-map.c), which maps a cross-domain host3d blob
# through the host-visible region and exchanges a pattern with the host. Powers off when done;
# the host reads everything from the serial console ("E2E: " lines).
export PATH=/bin

. /etc/e2e-boot.sh

wait_until 60 /dev/dri/card0 test -e /dev/dri/card0

# `quiet` hides KERN_INFO lines: relay the driver's own ("features: ...", "Host memory window").
dmesg | grep -iE 'virtio[-_]gpu|\[drm\]' | sed 's/^/E2E: dmesg: /'

blob-map /dev/dri/card0 || fail "blob-map exited with $?"
say "blob-map done"
# -f: no init system to ask; with QEMU's -no-reboot the VM then ends.
poweroff -f
