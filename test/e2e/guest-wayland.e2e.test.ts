// Wayland passthrough end to end: a QEMU 11.1 guest's Wayland clients on the host's weston. In
// the guest, wayland-proxy (test/guest/wayland-proxy.c) carries the bytes of Debian's wayland-info
// over a cross-domain context of our daemon (vhost-user-test-device-pci as a virtio-gpu), and then
// shows a wl_shm buffer of its own whose pool is a host3d blob. The test compares the globals the
// guest's wayland-info lists with the host's own wayland-info against the same weston, and finds
// the buffer's pattern, every pixel, in weston's screenshot (taken while the guest keeps the window).
// Both with the daemon in 2D mode and beside virglrenderer (the guest then also has virgl capsets).
// QEMU 11.1 comes from scripts/setup-qemu-11.sh (CI: scripts/install-system-deps.sh).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGuest, runGuest, setupQemu11, WAYLAND_SHOWN_MARKER } from './qemu.js';
import { packagePath } from '../../src/package-path.js';
import { Weston, findPattern, parseWaylandInfo } from '../integration/weston.js';
import { patternColor, type Global } from '../integration/wayland-guest-client.js';

const byName = (gs: Global[]) => [...gs].sort((a, b) => a.name - b.name);
const MODES = [
  { mode: '2D', args: ['--capset', 'cross-domain'], capsets: 1 },
  { mode: 'virglrenderer', args: ['--gpu-mode', 'virglrenderer', '--capset', 'virgl,virgl2,cross-domain'], capsets: 3 },
] as const;

/** The guest's wayland-info output: guest-init-wayland.sh prints it as "E2E: wi: " lines between two markers. */
function guestWaylandInfo(serialLog: string): string {
  const m = /E2E: wayland-info begin\r?\n([\s\S]*?)E2E: wayland-info end/.exec(serialLog);
  if (!m) throw new Error('no wayland-info output on the serial console');
  return m[1]!.split(/\r?\n/).filter((l) => l.startsWith('E2E: wi: ')).map((l) => l.slice('E2E: wi: '.length)).join('\n');
}

describe('e2e Wayland passthrough: QEMU 11.1 guest clients on the host\'s weston through vhost-gpu --capset cross-domain', () => {
  let qemuBin = '';
  let weston: Weston | undefined;
  beforeAll(async () => {
    // Outside the run's budget: the first setup fetches QEMU 11.1, the first build compiles wayland-proxy.
    [qemuBin] = await Promise.all([setupQemu11(), buildGuest('wayland')]);
    weston = await Weston.start(320, 240);
  }, 600_000);
  afterAll(async () => {
    await weston?.stop();
  });

  it.each(MODES)(
    '$mode mode: the guest\'s wayland-info lists weston\'s globals, and its wl_shm buffer is in weston\'s screenshot',
    async ({ mode, args, capsets }) => {
      const w = weston!;
      let shot: Awaited<ReturnType<Weston['screenshot']>> | null = null;
      const run = await runGuest({
        guest: 'wayland',
        device: 'vhost-user-test-device',
        qemuBin,
        backendCmd: [
          process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', ...args,
          '--wayland-socket', w.socket,
        ],
        timeoutMs: 170_000,
        // The guest keeps its window up until runGuest ends the VM after this.
        onSerial: [{ marker: WAYLAND_SHOWN_MARKER, run: async () => void (shot = await w.screenshot()) }],
      });
      const context = `\n--- serial ---\n${run.serialLog}\n--- backend stderr ---\n${run.backendStderr}\n--- weston ---\n${w.output}`;

      // The guest's driver has blobs, the host-visible window and CONTEXT_INIT, and the virgl capsets in virgl mode.
      expect(run.serialLog, context).toMatch(/E2E: dmesg: .*\[drm\] features: .*\+resource_blob \+host_visible/);
      expect(run.serialLog, context).toMatch(/E2E: dmesg: .*\[drm\] features: .*\+context_init/);
      expect(run.serialLog, context).toMatch(new RegExp(`\\[drm\\] number of cap sets: ${capsets}`));
      const guest = parseWaylandInfo(guestWaylandInfo(run.serialLog));
      const host = await w.hostGlobals();
      expect(host.map((g) => g.iface), context).toContain('wl_shm');
      expect(byName(guest), context).toEqual(byName(host));
      expect(run.serialLog, context).toMatch(/E2E: wayland-proxy client done: [1-9]\d* bytes to the compositor, [1-9]\d* back/);

      const [, width, height] = WAYLAND_SHOWN_MARKER.exec(run.serialLog)!;
      expect(shot, context).not.toBeNull();
      const found = findPattern(shot!, Number(width), Number(height), patternColor);
      expect(found, `the guest's buffer is on weston's output, every pixel${context}`).toMatchObject({ wrong: 0 });
      expect(run.serialLog, context).not.toContain('E2E: FAIL');
      expect(run.backendStderr, context).not.toContain('vhost-gpu error:');
      console.log(
        `[wayland ${mode}] guest wayland-info: ${guest.length} globals, as the host's; ${width}x${height} shm buffer at ` +
          `(${found!.x},${found!.y}) in weston's screenshot; boot to shown ${run.bootMs} ms, run ${run.totalMs} ms`,
      );
    },
    200_000,
  );
});
