#!/bin/sh
# PID 1 of the Wayland passthrough guest (busybox sh): wayland-proxy (test/guest/wayland-proxy.c)
# serves $XDG_RUNTIME_DIR/wayland-0 over a cross-domain channel to the host's weston. Debian's
# wayland-info lists the globals through it (its output between the "wayland-info begin/end"
# lines), then the proxy's own shm client shows a pattern buffer and keeps it up; the host takes
# weston's screenshot and ends the VM. The host reads everything from the serial console.
export PATH=/bin:/usr/bin

. /etc/e2e-boot.sh

i=0
while [ ! -e /dev/dri/card0 ]; do
  i=$((i + 1))
  [ $i -le 600 ] || fail "no /dev/dri/card0 after 60s"
  usleep 100000
done

export XDG_RUNTIME_DIR=/tmp/xdg WAYLAND_DISPLAY=wayland-0
mkdir -m 700 "$XDG_RUNTIME_DIR"
wayland-proxy proxy "$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY" &
proxy=$!
i=0
while [ ! -S "$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY" ]; do
  i=$((i + 1))
  kill -0 $proxy 2>/dev/null || fail "wayland-proxy exited before listening"
  [ $i -le 300 ] || fail "no $XDG_RUNTIME_DIR/$WAYLAND_DISPLAY after 30s"
  usleep 100000
done

say "wayland-info begin"
wayland-info >/tmp/wayland-info.txt 2>&1
st=$?
sed 's/^/E2E: wi: /' /tmp/wayland-info.txt
say "wayland-info end"
[ $st -eq 0 ] || fail "wayland-info exited with $st"
wait $proxy || fail "wayland-proxy exited with $?"

wayland-proxy shm || fail "wayland-proxy shm exited with $?"
