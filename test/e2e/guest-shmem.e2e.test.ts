// Blob mapping end to end: QEMU 11.1's vhost-user-test-device-pci (as a virtio-gpu) passes our
// daemon's host-visible SHMEM region to a Linux guest as a PCI BAR. The guest's blob-map
// (test/guest/blob-map.c) makes a cross-domain HOST3D blob, maps it and writes a pattern; the
// test reads that pattern from the daemon's own memfd (through /proc/<pid>/fd) and writes the
// complement back, which blob-map must then see in its mapping. So both directions go through
// the same memory, with no copy anywhere. No compositor: blob-map's cross-domain context is query
// only (INIT without a channel), so the Wayland socket is never opened.
// QEMU 11.1 comes from scripts/setup-qemu-11.sh (CI: scripts/install-system-deps.sh).
import { mkdtemp, open, readdir, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGuest, runGuest, setupQemu11, SHMEM_DONE_MARKER, type SerialHookContext } from './qemu.js';
import { packagePath } from '../../src/package-path.js';

/** blob-map's line once its pattern is in the mapped blob; then it polls ~30 s for ours. */
const PATTERN_WRITTEN = /E2E: blob-map pattern written res=(\d+) size=(\d+) words=(\d+)/;
/** Named so in src/renderers/cross-domain/context.ts (createBlob for image requirements). */
const MEMFD_PREFIX = '/memfd:cross-domain-image';
/** --host-visible-size: not the default 1G, so the guest's window is seen to be the daemon's. */
const HOST_VISIBLE = 256 << 20;

/** blob-map's word i (pattern() there); the host answers with its complement. */
const pattern = (i: number) => (Math.imul(i, 2654435761) ^ 0x5a5a0000) >>> 0;
const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`;

interface Exchange {
  fd: string;
  /** How many of the daemon's fds name that memfd (the resource's and its context's dup). */
  fds: number;
  size: number;
}

/**
 * The host side of blob-map's exchange: finds the blob's memfd among the daemon's fds, checks the
 * guest's pattern in it and writes the complement.
 */
async function answerGuest(pid: number, size: number): Promise<Exchange> {
  const dir = `/proc/${pid}/fd`;
  const files = new Map<string, { path: string; size: number; fds: number }>();
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const target = await readlink(path).catch(() => ''); // closed meanwhile
    if (!target.startsWith(MEMFD_PREFIX)) continue;
    const st = await stat(path).catch(() => null);
    if (!st) continue;
    const key = `${st.dev}:${st.ino}`;
    const seen = files.get(key);
    if (seen) seen.fds++;
    else files.set(key, { path, size: st.size, fds: 1 });
  }
  const found = [...files.values()];
  const list = found.map((f) => `${f.path} (${f.size} bytes, ${f.fds} fds)`).join(', ') || 'none';
  if (found.length !== 1) throw new Error(`want one ${MEMFD_PREFIX} memfd in daemon ${pid}, found ${list}`);
  const file = found[0]!;
  if (file.size !== size) throw new Error(`${file.path} has ${file.size} bytes, the guest's blob ${size}`);

  // Opening /proc/<pid>/fd/N opens the memfd itself (read-write: same user), not a dup of the fd.
  const fh = await open(file.path, 'r+');
  try {
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    if (bytesRead !== size) throw new Error(`read ${bytesRead} of ${size} bytes from ${file.path}`);
    const words = size / 4;
    let bad = 0;
    const problems: string[] = [];
    for (let i = 0; i < words; i++) {
      const got = buf.readUInt32LE(4 * i);
      if (got !== pattern(i) && ++bad <= 5) problems.push(`word ${i} is ${hex(got)}, want ${hex(pattern(i))}`);
    }
    if (bad) throw new Error(`the guest's pattern is not in ${file.path}: ${problems.join('; ')} (${bad} of ${words} words differ)`);
    for (let i = 0; i < words; i++) buf.writeUInt32LE(~pattern(i) >>> 0, 4 * i);
    const { bytesWritten } = await fh.write(buf, 0, size, 0);
    if (bytesWritten !== size) throw new Error(`wrote ${bytesWritten} of ${size} bytes to ${file.path}`);
  } finally {
    await fh.close();
  }
  return { fd: file.path, fds: file.fds, size };
}

describe('e2e blob mapping: QEMU 11.1 vhost-user-test-device-pci served by vhost-gpu --capset cross-domain', () => {
  let qemuBin = '';
  let tmp = '';
  beforeAll(async () => {
    // Outside the run's budget: the first setup fetches QEMU 11.1, the first build compiles blob-map.
    [qemuBin] = await Promise.all([setupQemu11(), buildGuest('shmem')]);
    tmp = await mkdtemp(join(tmpdir(), 'vgpu-shmem-'));
  }, 600_000);
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it(
    'maps a host3d blob into the guest through SHMEM: the guest\'s writes reach the daemon\'s memfd and back',
    async () => {
      let exchange: Exchange | null = null;
      const run = await runGuest({
        guest: 'shmem',
        device: 'vhost-user-test-device',
        qemuBin,
        backendCmd: [
          process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', '--capset', 'cross-domain',
          // Never connected to (see the top of this file), so it need not exist.
          '--wayland-socket', join(tmp, 'no-compositor'), `--host-visible-size=${HOST_VISIBLE}`,
        ],
        timeoutMs: 170_000,
        waitForPowerOff: true,
        onSerial: [
          {
            marker: PATTERN_WRITTEN,
            run: async ({ match, backendPid }: SerialHookContext) => {
              if (backendPid === undefined) throw new Error('the daemon is not running');
              const size = Number(match[2]);
              if (Number(match[3]) * 4 !== size) throw new Error(`"${match[0]}": words and size disagree`);
              exchange = await answerGuest(backendPid, size);
            },
          },
        ],
      });
      const context = `\n--- serial ---\n${run.serialLog}\n--- backend stderr ---\n${run.backendStderr}`;

      // The device as the guest's driver saw it (relayed from dmesg by guest-init-shmem.sh).
      expect(run.serialLog, context).toMatch(/\[drm\] Initialized virtio_gpu/);
      const window = /\[drm\] Host memory window: 0x([0-9a-f]+) \+0x([0-9a-f]+)/.exec(run.serialLog);
      expect(window, context).not.toBeNull();
      expect(parseInt(window![2]!, 16), context).toBe(HOST_VISIBLE);
      expect(run.serialLog, context).toMatch(/\[drm\] features: .*\+resource_blob \+host_visible/);
      expect(run.serialLog, context).toMatch(/\[drm\] features: .*\+context_init/);
      expect(run.serialLog, context).toContain('E2E: blob-map params resource_blob=1 host_visible=1 context_init=1');

      // Guest -> host: the hook found the pattern in the daemon's memfd; host -> guest: blob-map saw ours.
      expect(exchange, context).not.toBeNull();
      const { size } = exchange!;
      const words = size / 4;
      expect(run.serialLog, context).toContain(
        `E2E: blob-map host pattern seen words=${words} first=${hex(~pattern(0) >>> 0)} last=${hex(~pattern(words - 1) >>> 0)}`,
      );
      expect(run.serialLog, context).toContain(SHMEM_DONE_MARKER);
      expect(run.serialLog, context).not.toContain('E2E: FAIL');
      // poweroff -f with -no-reboot: QEMU ends by itself, cleanly.
      expect(run.qemuExit, context).toEqual({ code: 0, signal: null });
      expect(run.backendStderr, context).not.toContain('vhost-gpu error:');
      console.log(
        `[shmem] host memory window ${window![0]!.split(': ')[1]}; blob of ${size} bytes exchanged through ${exchange!.fd} ` +
          `(${exchange!.fds} daemon fds on it); boot to done ${run.bootMs} ms, run ${run.totalMs} ms`,
      );
    },
    200_000,
  );
});
