/**
 * A corrupt control ring (issue #9 §1): the device reports DEVICE_NEEDS_RESET and signals the err
 * eventfd once, never reads the ring again on its own, and serves again once the front-end sets
 * the ring up again (in QEMU's orders and others), resets the status or resets the device, with
 * and without the STATUS protocol feature. One daemon serves the file; its stderr shows how often
 * a ring was found broken.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startBackend, connectFrontend, GpuResp, GpuFormat, ProtocolFeature, VirtioStatus, DEFAULT_PROTOCOL_FEATURES, bit,
} from '../frontend/index.js';
import type { BackendProcess, FrontendSession } from '../frontend/index.js';
import { native } from '../../src/native.js';
import { packagePath } from '../../src/package-path.js';

let dir: string;
let backend: BackendProcess;
let probeUsed = false;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-rings-'));
  backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}'], join(dir, 'gpu.sock'));
});

afterAll(async () => {
  const exit = await backend?.stop();
  rmSync(dir, { recursive: true, force: true });
  expect(exit?.code).toBe(0);
});

const WITH_STATUS = DEFAULT_PROTOCOL_FEATURES;
const WITHOUT_STATUS = DEFAULT_PROTOCOL_FEATURES & ~bit(ProtocolFeature.STATUS);
const NEEDS_RESET = VirtioStatus.DEVICE_NEEDS_RESET;

async function withSession(protocolFeatures: bigint, body: (s: FrontendSession) => Promise<void>): Promise<void> {
  const target = probeUsed ? backend.socketPath : backend;
  probeUsed = true;
  const s = await connectFrontend(target, { protocolFeatures, vringErr: true });
  try {
    await body(s);
  } finally {
    s.close();
  }
}

/** How many times the daemon has found a ring broken so far. */
function breaks(): number {
  return backend.stderr().split('\n').filter((l) => /queue \d is broken/.test(l)).length;
}

/** The daemon's CPU time (user + system) in clock ticks. */
function cpuTicks(): number {
  const fields = readFileSync(`/proc/${backend.proc.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait until the daemon has logged `n` breaks (stderr arrives on our event loop). */
async function waitBreaks(n: number): Promise<void> {
  for (let i = 0; i < 300 && breaks() < n; i++) await sleep(10);
  expect(breaks()).toBe(n);
}

const corruptions: [string, (s: FrontendSession) => void][] = [
  ['avail.idx jumps by more than the queue size', (s) => s.control.setAvailIdx(s.control.availIdx + s.control.size + 1)],
  ['an avail ring head >= the queue size', (s) => {
    s.control.setAvailRing(s.control.availIdx, s.control.size + 3);
    s.control.setAvailIdx(s.control.availIdx + 1);
  }],
];

/** Corrupt the control ring, kick, and see the device say so (err eventfd, GET_STATUS). Returns the avail index before. */
async function breakControlRing(s: FrontendSession, corrupt: (s: FrontendSession) => void): Promise<number> {
  expect((await s.driver.getDisplayInfo({ timeoutMs: 3000 })).type).toBe(GpuResp.OK_DISPLAY_INFO);
  const before = breaks(), good = s.control.availIdx;
  corrupt(s);
  s.control.kick(true);
  expect(native().pollFd(s.control.errFd, native().POLLIN, 3000) & native().POLLIN).toBeTruthy();
  expect(native().eventfdRead(s.control.errFd)).toBe(1);
  await waitBreaks(before + 1);
  if (s.frontend.hasProtocolFeature(ProtocolFeature.STATUS)) expect((await s.frontend.getStatus()) & NEEDS_RESET).toBe(NEEDS_RESET);
  return good;
}

/** The ring the guest driver sets up anew (zeroed, index 0), as after a device reset. */
function freshDriverRings(s: FrontendSession): void {
  s.driver.resetQueues();
}

async function answers(s: FrontendSession): Promise<void> {
  expect((await s.driver.resourceCreate2d(7, GpuFormat.B8G8R8X8_UNORM, 16, 16, { timeoutMs: 3000 })).type).toBe(GpuResp.OK_NODATA);
  expect((await s.driver.getDisplayInfo({ timeoutMs: 3000 })).type).toBe(GpuResp.OK_DISPLAY_INFO);
  if (s.frontend.hasProtocolFeature(ProtocolFeature.STATUS)) expect((await s.frontend.getStatus()) & NEEDS_RESET).toBe(0);
}

/** Ways a front-end brings the broken ring back. Each leaves the driver's rings at index 0. */
const recoveries: [string, (s: FrontendSession) => Promise<void>][] = [
  ['GET_VRING_BASE, then NUM/BASE/ADDR/KICK/CALL and ENABLE (QEMU after a guest reset)', async (s) => {
    await s.frontend.stop([s.control, s.cursor]); // with STATUS, also SET_STATUS 0
    freshDriverRings(s);
    await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0], vringErr: true });
  }],
  ['NUM/BASE/ADDR/KICK/CALL and ENABLE without stopping the ring first', async (s) => {
    freshDriverRings(s);
    await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0] });
  }],
  ['SET_VRING_ENABLE 0, the setup, then SET_VRING_ENABLE 1', async (s) => {
    await s.frontend.setVringEnable(0, false);
    freshDriverRings(s);
    await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0] });
  }],
  ['RESET_DEVICE, then the setup', async (s) => {
    await s.frontend.stop([s.control, s.cursor]);
    await s.frontend.resetDevice();
    freshDriverRings(s);
    await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0] });
  }],
  ['RESET_OWNER, then the setup', async (s) => {
    await s.frontend.resetOwner();
    freshDriverRings(s);
    await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0] });
  }],
];

for (const [statusName, proto] of [['with STATUS', WITH_STATUS], ['without STATUS', WITHOUT_STATUS]] as const) {
  describe(`a broken control ring, ${statusName}`, () => {
    for (const [what, corrupt] of corruptions) {
      for (const [how, recover] of recoveries) {
        it(`after ${what}: serves again after ${how}`, async () => {
          await withSession(proto, async (s) => {
            await breakControlRing(s, corrupt);
            await recover(s);
            await answers(s);
          });
        });
      }
    }

    it('is never read again until it is set up again: kicks, a new kick fd and re-enabling are ignored, nothing spins', async () => {
      await withSession(proto, async (s) => {
        await breakControlRing(s, corruptions[0]![1]);
        const n = breaks(), used = s.control.usedIdx();
        const cpu = cpuTicks();
        for (let i = 0; i < 50; i++) s.control.kick(true);
        await s.frontend.setVringKick(0, s.control.kickFd); // a start trigger, but no new setup
        await s.frontend.setVringEnable(0, false);
        await s.frontend.setVringEnable(0, true);
        for (let i = 0; i < 50; i++) s.control.kick(true);
        await sleep(500);
        expect(breaks()).toBe(n);
        expect(s.control.usedIdx()).toBe(used);
        expect(native().eventfdRead(s.control.errFd)).toBe(-native().EAGAIN);
        // A busy loop would use all of the 500 ms (50 ticks at 100 Hz); idle is ~0.
        expect(cpuTicks() - cpu).toBeLessThan(20);
        if (s.frontend.hasProtocolFeature(ProtocolFeature.STATUS)) expect((await s.frontend.getStatus()) & NEEDS_RESET).toBe(NEEDS_RESET);
        // The cursor queue is not broken and goes on (it returns the buffer, with no response).
        const usedCursor = s.cursor.usedIdx();
        await s.driver.moveCursor(0, 5, 5, { timeoutMs: 3000 });
        expect(s.cursor.usedIdx()).toBe((usedCursor + 1) & 0xffff);

        // Set up again at the same position over the same corrupt ring: it is read once more and
        // breaks once more (one break per setup, not a loop).
        const bases = await s.frontend.stop([s.control]);
        await s.frontend.startRings([s.control], { bases });
        await waitBreaks(n + 1);
        expect(native().pollFd(s.control.errFd, native().POLLIN, 3000) & native().POLLIN).toBeTruthy();
        expect(native().eventfdRead(s.control.errFd)).toBe(1);
        for (let i = 0; i < 20; i++) s.control.kick(true);
        await sleep(200);
        expect(breaks()).toBe(n + 1);

        // Once the driver starts over, it works.
        await s.frontend.stop([s.control, s.cursor]);
        freshDriverRings(s);
        await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0], vringErr: true });
        await answers(s);
      });
    });
  });
}

describe('a broken control ring and the status', () => {
  it('SET_STATUS 0 ends the broken state: the ring resumes where it stopped once the driver repaired it', async () => {
    await withSession(WITH_STATUS, async (s) => {
      const good = await breakControlRing(s, corruptions[0]![1]);
      await s.frontend.setStatus(0);
      expect((await s.frontend.getStatus()) & NEEDS_RESET).toBe(0);
      s.control.setAvailIdx(good); // the driver undoes its garbage
      await s.frontend.setStatus(VirtioStatus.ACKNOWLEDGE | VirtioStatus.DRIVER | VirtioStatus.FEATURES_OK | VirtioStatus.DRIVER_OK);
      await s.frontend.setVringEnable(0, true); // the next start of the ring
      expect((await s.driver.getDisplayInfo({ timeoutMs: 3000 })).type).toBe(GpuResp.OK_DISPLAY_INFO);
      expect((await s.frontend.getStatus()) & NEEDS_RESET).toBe(0);
    });
  });
});
