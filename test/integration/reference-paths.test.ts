/**
 * More front-end paths validated against QEMU's C back-end: feature subsets, ring restart,
 * stalled display, raw rings and malformed input (which libvhost-user answers by exiting).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startBackend, connectFrontend, DisplayMsg, GpuCmd, GpuResp,
  encCursor, writeHeader, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
} from '../frontend/index.js';
import type { FrontendSession } from '../frontend/index.js';

const REFERENCE = '/usr/lib/qemu/vhost-user-gpu';

// Never skipped: CI installs the reference (qemu-system-gui); without it these fail.
describe('QEMU reference back-end: other front-end paths', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-ref2-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function session(name: string, opts: Parameters<typeof connectFrontend>[1] = {}) {
    const backend = await startBackend([REFERENCE, '--socket-path={socket}'], join(dir, name));
    const s = await connectFrontend(backend, opts).catch(async (e: unknown) => { await backend.stop(); throw e; });
    return { backend, s, async done() { s.close(); return backend.stop(); } };
  }

  it('restarts the rings after GET_VRING_BASE, as QEMU does on stop/start', async () => {
    const { s, done } = await session('restart.sock');
    try {
      expect((await s.driver.getDisplayInfo()).ok).toBe(true);
      const bases = await s.frontend.stop([s.control, s.cursor]);
      expect(bases).toEqual([1, 0]);
      await s.frontend.startRings([s.control, s.cursor], { bases });
      expect((await s.driver.getDisplayInfo()).ok).toBe(true);
    } finally {
      await done();
    }
  });

  it('a stalled display blocks the C back-end until the display reads again', async () => {
    const { s, done } = await session('stall.sock');
    try {
      await s.driver.showPattern(1, 512, 512);
      s.display.pause();
      // A 1 MiB UPDATE does not fit the socket buffer; the back-end blocks in sendmsg.
      await expect(s.driver.resourceFlush(1, 0, 0, 512, 512, { timeoutMs: 300 })).rejects.toThrow(/no completion/);
      s.display.resume();
      expect(await s.display.waitFor(DisplayMsg.UPDATE)).toMatchObject({ width: 512, height: 512 });
      // The abandoned command completed meanwhile and its slot was recycled.
      expect((await s.driver.resourceFlush(1, 0, 0, 1, 1)).ok).toBe(true);
      expect(s.driver.inFlight()).toBe(0);
    } finally {
      await done();
    }
  });

  it('GET_EDID for a scanout QEMU does not have is never answered: the control queue stalls', async () => {
    const { s, done } = await session('edid.sock');
    try {
      await expect(s.driver.getEdid(5, { timeoutMs: 300 })).rejects.toThrow(/no completion/);
      expect(s.display.edidDropped).toBe(1);
      await expect(s.driver.getDisplayInfo({ timeoutMs: 200 })).rejects.toThrow(/no completion/);
    } finally {
      await done();
    }
  });

  it('an unknown vhost-user request makes libvhost-user panic and exit', async () => {
    const { backend, s, done } = await session('raw.sock');
    try {
      const hdr = new Uint8Array(12);
      const dv = new DataView(hdr.buffer);
      dv.setUint32(0, 999, true);
      dv.setUint32(4, 0x1, true);
      s.frontend.sendRaw(hdr);
      expect(await s.frontend.waitClosed()).toBe(true);
      const exit = await backend.exited;
      expect(exit.code).toBe(1);
      expect(exit.stderr).toMatch(/999/);
    } finally {
      await done();
    }
  });

  it('exits when the front-end closes the connection', async () => {
    const { backend, s } = await session('close.sock');
    s.close();
    expect((await backend.exited).code).toBe(0);
  });

  it('DriverQueue alone: add, kick, waitUsed and popUsed on the cursor queue', async () => {
    const { s, done } = await session('queue.sock');
    try {
      s.cursor.onInterrupt = null; // take the queue away from the GpuDriver
      const req = s.ram.alloc(56);
      const off = s.ram.offsetOf(req, 56);
      writeHeader(s.ram.view, off, GpuCmd.MOVE_CURSOR, 0, undefined);
      encCursor(s.ram.view, off, 0, 11, 22, 1, 0, 0);
      const head = s.cursor.add([{ gpa: req, len: 56 }], []);
      expect(s.cursor.kick()).toBe(true);
      await s.cursor.waitUsed(2000);
      expect(s.cursor.popUsed()).toEqual({ id: head, len: 0 });
      expect(s.cursor.popUsed()).toBeNull();
      expect(await s.display.waitFor(DisplayMsg.CURSOR_POS)).toMatchObject({ x: 11, y: 22 });
      expect(s.cursor.freeCount).toBe(s.cursor.size);
    } finally {
      await done();
    }
  });

  it('a raw chain submitted beside the driver shows up in foreignUsed', async () => {
    const { s, done } = await session('raw-chain.sock');
    try {
      const req = s.ram.alloc(24), resp = s.ram.alloc(408);
      writeHeader(s.ram.view, s.ram.offsetOf(req, 24), GpuCmd.GET_DISPLAY_INFO, 0, undefined);
      const [head] = s.control.addRawChain([
        { addr: req, len: 24, flags: VRING_DESC_F_NEXT },
        { addr: resp, len: 408, flags: VRING_DESC_F_WRITE },
      ]);
      s.control.kick();
      await s.driver.waitForeignUsed(1);
      expect(s.driver.foreignUsed.at(-1)).toEqual({ queue: 0, id: head, len: 408 });
      expect(s.ram.readU32(resp)).toBe(GpuResp.OK_DISPLAY_INFO);
      // The driver keeps working next to it.
      expect((await s.driver.getDisplayInfo()).ok).toBe(true);
    } finally {
      await done();
    }
  });

  const malformed: [string, (s: FrontendSession) => void, RegExp][] = [
    ['a descriptor loop', (s) => {
      const buf = s.ram.alloc(64);
      const idx = s.control.addRawChain([{ addr: buf, len: 24, flags: VRING_DESC_F_NEXT }, { addr: buf, len: 24, flags: VRING_DESC_F_NEXT }], false);
      s.control.writeDesc(idx[1]!, buf, 24, VRING_DESC_F_NEXT, idx[0]!); // back to the head
      s.control.publish(idx[0]!);
    }, /loop/i],
    ['a readable descriptor after a writable one', (s) => {
      const buf = s.ram.alloc(64);
      s.control.addRawChain([{ addr: buf, len: 24, flags: VRING_DESC_F_WRITE | VRING_DESC_F_NEXT }, { addr: buf + 32, len: 24, flags: 0 }]);
    }, /order/i],
    ['a buffer outside guest RAM', (s) => {
      s.control.addRawChain([{ addr: 0x1000, len: 24, flags: 0 }]);
    }, /address|buffer/i],
    // QEMU 10.0's libvhost-user does not check the jump: it walks the stale (zeroed) ring entries
    // and dies on the zero-length descriptor 0 instead.
    ['avail.idx moved more than the ring size', (s) => {
      s.control.setAvailIdx(s.control.availIdx + s.control.size + 1);
    }, /zero sized|avail index|used index/i],
  ];

  for (const [what, corrupt, message] of malformed) {
    it(`libvhost-user exits on ${what}`, async () => {
      const { backend, s, done } = await session(`bad-${what.length}.sock`);
      try {
        corrupt(s);
        s.control.kick(true);
        const exit = await backend.exited;
        expect(exit.code).not.toBe(0);
        expect(exit.stderr).toMatch(message);
      } finally {
        await done();
      }
    });
  }
});
