# Sourced by both e2e guests' /init (as /etc/e2e-boot.sh): mounts, console, the
# say/fail helpers and the virtio-gpu modules, in dependency order.
mount -t devtmpfs dev /dev
# The initramfs has no /dev/console node, so PID 1 starts without stdio;
# attach it now that devtmpfs provides the node (console=ttyS0).
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /tmp && mount -t tmpfs tmp /tmp

say() { echo "E2E: $*"; }
fail() {
  say "FAIL $*"
  # Enough context to debug from the host's serial log alone.
  dmesg | tail -n 40 | sed 's/^/E2E: dmesg: /'
  while :; do sleep 3600; done
}
# wait_until SECONDS WHAT CMD...: runs CMD every 0.1 s until it succeeds, or fails "no WHAT after SECONDS s".
wait_until() {
  local secs=$1 what=$2 i=0
  shift 2
  until "$@"; do
    i=$((i + 1))
    [ $i -le $((secs * 10)) ] || fail "no $what after ${secs}s"
    usleep 100000
  done
}

say "init started kernel=$(uname -r)"

# /etc/e2e-modules lists the module files in dependency order (see build-guest.sh).
while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$m" || fail "insmod $m"
done </etc/e2e-modules
say "modules loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

