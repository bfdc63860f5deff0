#!/bin/sh
# PID 1 of the Wayland passthrough guest (busybox sh): wayland-proxy (test/guest/wayland-proxy.c)
# serves $XDG_RUNTIME_DIR/wayland-0 over a cross-domain channel to the host's weston. Debian's
# wayland-info lists the globals through it (its output between the "wayland-info begin/end"
# lines), then the proxy's own shm client shows a pattern buffer and keeps it up; the host takes
# weston's screenshot and ends the VM. The host reads everything from the serial console.
export PATH=/bin:/usr/bin

. /etc/e2e-boot.sh

wait_until 60 /dev/dri/card0 test -e /dev/dri/card0
# The features the driver negotiated (`quiet` hides KERN_INFO lines from the console).
dmesg | grep -E '\[drm\] (features:|number of cap sets)' | sed 's/^/E2E: dmesg: /'
# Kernel errors (the driver logs the error answer to a closed context's last POLL) would land in
# the middle of wayland-info's lines on the console: keep them in dmesg, which fail() prints.
dmesg -n 1

export XDG_RUNTIME_DIR=/tmp/xdg WAYLAND_DISPLAY=wayland-0
mkdir -m 700 "$XDG_RUNTIME_DIR"
wayland-proxy proxy "$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY" &
proxy=$!
# A proxy that failed has said so on the console, which ends the run on the host.
wait_until 30 "$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY" test -S "$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY"

wayland-info >/tmp/wayland-info.txt 2>&1
st=$?
# The proxy ends with its client; its last line then comes before the output, not inside it.
wait $proxy
proxy_st=$?
say "wayland-info begin"
sed 's/^/E2E: wi: /' /tmp/wayland-info.txt
say "wayland-info end"
[ $st -eq 0 ] || fail "wayland-info exited with $st"
[ $proxy_st -eq 0 ] || fail "wayland-proxy exited with $proxy_st"

wayland-proxy shm || fail "wayland-proxy shm exited with $?"
