/**
 * Our daemon under the conditions a production backend meets: reconnects, ring restarts, guest
 * reboots, a stalled display, and hostile input from the guest or the front-end. One daemon
 * serves the whole file, so every test also checks that it kept serving after the previous one.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fc } from '@fast-check/vitest';
import {
  startBackend, connectFrontend, DisplayMsg, GpuCmd, GpuResp, GpuFormat, bit,
  writeHeader, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VhostUserRequest, rawHeader,
} from '../frontend/index.js';
import type { BackendProcess, FrontendSession, ConnectOptions } from '../frontend/index.js';
import { native } from '../../src/native.js';
import { packagePath } from '../../src/package-path.js';

const MAX_HOST_MEMORY = 64 << 20;
let dir: string;
let backend: BackendProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-robust-'));
  backend = await startBackend(
    [process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', `--max-host-memory=${MAX_HOST_MEMORY}`],
    join(dir, 'gpu.sock'),
  );
});

afterAll(async () => {
  const exit = await backend?.stop();
  rmSync(dir, { recursive: true, force: true });
  // SIGTERM is a clean exit.
  expect(exit?.code).toBe(0);
});

let probeUsed = false;

/** A new front-end session (the daemon serves one at a time and keeps serving). */
async function session(opts: ConnectOptions = {}): Promise<FrontendSession> {
  // The first session reuses startBackend's probe connection; later ones connect anew.
  const target = probeUsed ? backend.socketPath : backend;
  probeUsed = true;
  return connectFrontend(target, opts);
}

async function withSession(opts: ConnectOptions, body: (s: FrontendSession) => Promise<void>): Promise<void> {
  const s = await session(opts);
  try {
    await body(s);
  } finally {
    s.close();
  }
}

/** Start the rings again from zeroed rings at index 0, as a new driver (after a reboot or reset) does. */
async function startFreshRings(s: FrontendSession): Promise<void> {
  s.control.reset();
  s.cursor.reset();
  s.driver.resetQueues();
  await s.frontend.startRings([s.control, s.cursor], { bases: [0, 0] });
}

/** The daemon answers a plain command (it is alive and the control queue moves). */
async function alive(s: FrontendSession): Promise<void> {
  expect((await s.driver.getDisplayInfo({ timeoutMs: 3000 })).type).toBe(GpuResp.OK_DISPLAY_INFO);
}

describe('sessions', () => {
  it('drops all device state when the front-end disconnects and serves the next one', async () => {
    await withSession({}, async (s) => {
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 8, 8)).ok).toBe(true);
    });
    await withSession({}, async (s) => {
      // Resource 1 is gone with the old session: the id is free again.
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 8, 8)).ok).toBe(true);
    });
  });

  it('keeps resources across a ring stop/start (a paused VM) and resets them for a new driver', async () => {
    await withSession({}, async (s) => {
      await s.driver.showPattern(1, 16, 16);
      const bases = await s.frontend.stop([s.control, s.cursor]);
      await s.frontend.startRings([s.control, s.cursor], { bases });
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 8, 8)).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
      // Guest reboot: QEMU stops the rings; the new driver starts from zeroed rings at index 0.
      await s.frontend.stop([s.control, s.cursor]);
      await startFreshRings(s);
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 8, 8)).ok).toBe(true);
    });
  });

  it('RESET_DEVICE drops resources and keeps the session', async () => {
    await withSession({}, async (s) => {
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 8, 8)).ok).toBe(true);
      await s.frontend.stop([s.control, s.cursor]);
      await s.frontend.resetDevice();
      await startFreshRings(s);
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 8, 8)).ok).toBe(true);
    });
  });

  it('polls a ring whose kick was set with the no-fd bit', async () => {
    await withSession({}, async (s) => {
      await s.frontend.setVringKick(0, null);
      await alive(s);
    });
  });
});

describe('display', () => {
  it('never blocks on a stalled display: commands complete, the update arrives when QEMU reads again', async () => {
    await withSession({}, async (s) => {
      await s.driver.showPattern(1, 512, 512);
      s.display.pause();
      for (let i = 0; i < 4; i++) expect((await s.driver.resourceFlush(1, 0, 0, 512, 512, { timeoutMs: 2000 })).ok).toBe(true);
      await alive(s); // GET_DISPLAY_INFO waits for its reply (bounded) and is answered
      s.display.resume();
      expect(await s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === 512)).toMatchObject({ height: 512 });
    });
  });

  it('asks QEMU once for a batch of GET_DISPLAY_INFO, and again for a later one', async () => {
    await withSession({}, async (s) => {
      s.display.displays = [{ width: 1024, height: 768, enabled: true }];
      const before = s.display.count(DisplayMsg.GET_DISPLAY_INFO);
      const b = s.driver.batch();
      for (let i = 0; i < 64; i++) b.getDisplayInfo();
      expect(await b.submit()).toMatchObject({ count: 64, errors: 0 });
      // All 64 were in the ring before the first request went out: one reply answers them.
      expect(s.display.count(DisplayMsg.GET_DISPLAY_INFO) - before).toBe(1);
      // A display change is seen by the next GET_DISPLAY_INFO submitted after the reply.
      s.display.displays = [{ width: 800, height: 600, enabled: true }];
      const r = await s.driver.getDisplayInfo();
      expect(r.displays[0]).toMatchObject({ width: 800, height: 600, enabled: true });
    });
  });

  it('never forwards GET_EDID for a scanout QEMU does not have', async () => {
    await withSession({}, async (s) => {
      expect((await s.driver.getEdid(5, { timeoutMs: 1000 })).type).toBe(GpuResp.ERR_INVALID_SCANOUT_ID);
      expect((await s.driver.getEdid(16, { timeoutMs: 1000 })).type).toBe(GpuResp.ERR_INVALID_SCANOUT_ID);
      expect(s.display.edidDropped).toBe(0);
      expect((await s.driver.getEdid(0)).type).toBe(GpuResp.OK_EDID);
    });
  });

  it('converts formats to x8r8g8b8 and sends updates in scanout coordinates', async () => {
    await withSession({}, async (s) => {
      expect((await s.driver.resourceCreate2d(1, GpuFormat.R8G8B8A8_UNORM, 64, 64)).ok).toBe(true);
      expect((await s.driver.attachBacking(1)).ok).toBe(true);
      // Bytes R,G,B,A = 0x10,0x20,0x30,0xff in memory: the word is 0xff302010.
      s.driver.fillPixels(1, () => 0xff302010);
      expect((await s.driver.transferToHost2d(1, 0, 0, 64, 64)).ok).toBe(true);
      expect((await s.driver.setScanout(0, 1, 16, 16, 32, 32)).ok).toBe(true);
      await s.display.waitFor(DisplayMsg.SCANOUT);
      s.display.clearEvents();
      expect((await s.driver.resourceFlush(1, 20, 20, 4, 4)).ok).toBe(true);
      const u = await s.display.waitFor(DisplayMsg.UPDATE);
      expect(u).toMatchObject({ x: 4, y: 4, width: 4, height: 4 });
      expect(s.display.pixel(0, 4, 4)! & 0xffffff).toBe(0x102030); // B,G,R,X bytes
    });
  });
});

describe('hostile front-end (vhost-user messages)', () => {
  it('refuses unknown and malformed requests with a failure status and keeps serving', async () => {
    await withSession({}, async (s) => {
      const fe = s.frontend;
      // Unknown request with NEED_REPLY: status 1.
      fe.sendRaw(rawHeader(999, 0x9, 0));
      let r = await fe.recvReply();
      expect(r.request).toBe(999);
      expect(new DataView(r.payload.buffer).getBigUint64(0, true)).not.toBe(0n);
      // Wrong payload sizes, bad version bits, fds where none belong.
      const cases: [Uint8Array[], number[] | null][] = [
        [[rawHeader(VhostUserRequest.SET_FEATURES, 0x9, 4), new Uint8Array(4)], null],
        [[rawHeader(VhostUserRequest.SET_VRING_NUM, 0x9, 8), new Uint8Array([9, 0, 0, 0, 8, 0, 0, 0])], null], // queue 9
        [[rawHeader(VhostUserRequest.SET_VRING_NUM, 0x9, 8), new Uint8Array([0, 0, 0, 0, 3, 0, 0, 0])], null], // size 3
        [[rawHeader(VhostUserRequest.SET_OWNER, 0xb, 0)], null], // version 3
        [[rawHeader(VhostUserRequest.SET_OWNER, 0x9, 0)], [s.control.kickFd]], // an fd on SET_OWNER
        [[rawHeader(VhostUserRequest.SET_MEM_TABLE, 0x9, 8 + 32), new Uint8Array(40).fill(0xff)], null], // 1 region, no fd
        [[rawHeader(VhostUserRequest.SET_VRING_KICK, 0x9, 8), new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0])], [s.control.kickFd]], // fd + no-fd bit
        [[rawHeader(VhostUserRequest.GPU_SET_SOCKET, 0x9, 0)], null], // no fd
      ];
      for (const [parts, fds] of cases) {
        fe.sendRaw(parts, fds);
        r = await fe.recvReply();
        expect(new DataView(r.payload.buffer).getBigUint64(0, true)).not.toBe(0n);
      }
      await alive(s);
    });
  });

  it('serves config reads and writes the size of a newer front-end\'s struct, and refuses past 256 bytes', async () => {
    await withSession({}, async (s) => {
      const fe = s.frontend;
      const ours = await fe.getConfig(0, 16);
      // QEMU 11.1 reads 20 bytes (blob_alignment follows num_capsets): the rest reads as zero.
      const longer = await fe.getConfig(0, 20);
      expect([...longer.subarray(0, 16)]).toEqual([...ours]);
      expect([...longer.subarray(16)]).toEqual([0, 0, 0, 0]);
      expect([...(await fe.getConfig(8, 8))]).toEqual([...ours.subarray(8, 16)]);
      expect([...(await fe.getConfig(200, 56))]).toEqual(new Array(56).fill(0));
      // QEMU writes its whole struct at offset 0 when the guest clears events.
      await fe.setConfig(0, new Uint8Array(20));
      await fe.setConfig(4, Uint8Array.of(1, 0, 0, 0));
      expect([...(await fe.getConfig(0, 16))]).toEqual([...ours]);
      await expect(fe.getConfig(250, 16)).rejects.toThrow();
      await expect(fe.setConfig(250, new Uint8Array(16))).rejects.toThrow();
      await alive(s);
    });
  });

  it('refuses a memory region larger than its fd (touching it would SIGBUS)', async () => {
    await withSession({}, async (s) => {
      const fd = native().memfdCreate('small', 4096);
      const p = new Uint8Array(40);
      const v = new DataView(p.buffer);
      v.setBigUint64(8, 0x4000_0000_0000n, true); // gpa far away from the RAM
      v.setBigUint64(16, 1n << 30n, true); // 1 GiB on a 4 KiB file
      v.setBigUint64(24, 0x5000_0000_0000n, true);
      s.frontend.sendRaw([rawHeader(VhostUserRequest.ADD_MEM_REG, 0x9, 40), p], [fd]);
      native().close(fd);
      const r = await s.frontend.recvReply();
      expect(new DataView(r.payload.buffer).getBigUint64(0, true)).not.toBe(0n);
      await alive(s);
    });
  });

  it('closes a connection announcing an oversized payload and serves the next one', async () => {
    const s = await session();
    s.frontend.sendRaw(rawHeader(VhostUserRequest.SET_FEATURES, 0x1, 1 << 30));
    expect(await s.frontend.waitClosed(3000)).toBe(true);
    s.close();
    await withSession({}, alive);
  });

  it('survives random vhost-user messages', async () => {
    const requests = fc.sample(fc.record({
      request: fc.oneof(fc.integer({ min: 0, max: 45 }), fc.integer({ min: 0, max: 0xffffffff })),
      payload: fc.uint8Array({ maxLength: 300 }),
    }), { numRuns: 200, seed: 42 });
    for (const { request, payload } of requests) {
      const s = await session({ start: false });
      // Never send a well-formed GET_VRING_BASE etc. that changes nothing; just garbage.
      s.frontend.sendRaw([rawHeader(request, 0x1, payload.length), payload]);
      s.close();
    }
    await withSession({}, alive);
  });
});

describe('hostile guest (virtqueues and commands)', () => {
  const malformed: [string, (s: FrontendSession) => void][] = [
    ['a descriptor loop', (s) => {
      const buf = s.ram.alloc(64);
      const idx = s.control.addRawChain([{ addr: buf, len: 24, flags: VRING_DESC_F_NEXT }, { addr: buf, len: 24, flags: VRING_DESC_F_NEXT }], false);
      s.control.writeDesc(idx[1]!, buf, 24, VRING_DESC_F_NEXT, idx[0]!);
      s.control.publish(idx[0]!);
    }],
    ['a readable descriptor after a writable one', (s) => {
      const buf = s.ram.alloc(64);
      s.control.addRawChain([{ addr: buf, len: 24, flags: VRING_DESC_F_WRITE | VRING_DESC_F_NEXT }, { addr: buf + 32, len: 24, flags: 0 }]);
    }],
    ['a buffer outside guest RAM', (s) => {
      s.control.addRawChain([{ addr: 0x1000, len: 24, flags: 0 }]);
    }],
  ];
  for (const [what, corrupt] of malformed) {
    it(`returns ${what} with used len 0 and keeps going`, async () => {
      await withSession({}, async (s) => {
        corrupt(s);
        s.control.kick(true);
        await s.driver.waitForeignUsed(1);
        expect(s.driver.foreignUsed.at(-1)!.len).toBe(0);
        await alive(s);
      });
    });
  }

  it('marks the device DEVICE_NEEDS_RESET on an avail index jump and signals the err eventfd', async () => {
    await withSession({ vringErr: true }, async (s) => {
      await alive(s);
      s.control.setAvailIdx(s.control.availIdx + s.control.size + 1);
      s.control.kick(true);
      expect(native().pollFd(s.control.errFd, native().POLLIN, 3000) & native().POLLIN).toBeTruthy();
      expect((await s.frontend.getStatus()) & 0x40).toBe(0x40);
      // RESET_DEVICE and a fresh start bring it back.
      await s.frontend.stop([s.control, s.cursor]);
      await s.frontend.resetDevice();
      expect((await s.frontend.getStatus()) & 0x40).toBe(0);
      await startFreshRings(s);
      await alive(s);
    });
  });

  it('answers absurd sizes and the memory cap with the right errors, without allocating', async () => {
    await withSession({}, async (s) => {
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 65536, 65536)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
      expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 16384, 16384)).type).toBe(GpuResp.ERR_OUT_OF_MEMORY);
      // Fill the cap with 4 MiB resources, then one more fails; freeing one makes room.
      let id = 10;
      while ((await s.driver.resourceCreate2d(id, GpuFormat.B8G8R8X8_UNORM, 1024, 1024)).ok) id++;
      expect(id - 10).toBe(Math.floor(MAX_HOST_MEMORY / (4 << 20)) - 1 + (MAX_HOST_MEMORY % (4 << 20) > 0 ? 1 : 0));
      expect((await s.driver.resourceUnref(10)).ok).toBe(true);
      expect((await s.driver.resourceCreate2d(10, GpuFormat.B8G8R8X8_UNORM, 1024, 1024)).ok).toBe(true);
    });
  });

  it('never writes a 32-bit-wrapped rectangle: transfer and flush rects are checked in full', async () => {
    await withSession({}, async (s) => {
      await s.driver.showPattern(1, 64, 64);
      const big = 0xffff_fff0;
      expect((await s.driver.transferToHost2d(1, big, 0, 0x20, 1)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
      expect((await s.driver.transferToHost2d(1, 0, big, 1, 0x20)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
      expect((await s.driver.resourceFlush(1, big, 0, 0x20, 1)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
      expect((await s.driver.setScanout(0, 1, 0, big, 16, 0x20)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    });
  });

  it('transfers pixels from a backing entry that straddles two memory regions', async () => {
    await withSession({ ram: { size: 64 << 20, splitAt: 32 << 20 } }, async (s) => {
      expect((await s.driver.resourceCreate2d(3, GpuFormat.B8G8R8X8_UNORM, 32, 32)).ok).toBe(true);
      const straddling = s.ram.allocStraddling(32 * 32 * 4);
      expect((await s.driver.attachBacking(3, straddling)).ok).toBe(true);
      const px = s.driver.fillPixels(3, (x, y) => 0xff000000 | (x << 8) | y);
      expect((await s.driver.transferToHost2d(3, 0, 0, 32, 32)).ok).toBe(true);
      expect((await s.driver.setScanout(0, 3, 0, 0, 32, 32)).ok).toBe(true);
      await s.display.waitFor(DisplayMsg.UPDATE);
      expect(new Uint32Array(s.display.surface(0)!.data.buffer, 0, 32 * 32)).toEqual(px);
    });
  });

  it('completes fenced commands with their fence ids, in order', async () => {
    await withSession({}, async (s) => {
      await s.driver.showPattern(1, 16, 16);
      const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => s.driver.resourceFlush(1, 0, 0, 16, 16, { fenceId: BigInt(1000 + i) })));
      rs.forEach((r, i) => {
        expect(r.ok).toBe(true);
        expect(r.fenceId).toBe(BigInt(1000 + i));
      });
    });
  });

  it('survives random command bytes', async () => {
    await withSession({}, async (s) => {
      const cmds = fc.sample(fc.tuple(
        fc.constantFrom(...Object.values(GpuCmd), 0, 0xffffffff),
        fc.uint8Array({ minLength: 0, maxLength: 200 }),
        fc.integer({ min: 0, max: 1200 }),
      ), { numRuns: 300, seed: 7 });
      for (const [type, body, respLen] of cmds) {
        const req = new Uint8Array(Math.max(4, body.length));
        req.set(body);
        new DataView(req.buffer).setUint32(0, type, true);
        await s.driver.submitRaw(req, respLen, { timeoutMs: 3000 });
      }
      await alive(s);
    });
  });

  it('answers a command header without a response buffer large enough by returning len 0', async () => {
    await withSession({}, async (s) => {
      const req = s.ram.alloc(24), resp = s.ram.alloc(8);
      writeHeader(s.ram.view, s.ram.offsetOf(req, 24), GpuCmd.GET_DISPLAY_INFO, 0, undefined);
      s.control.addRawChain([{ addr: req, len: 24, flags: VRING_DESC_F_NEXT }, { addr: resp, len: 8, flags: VRING_DESC_F_WRITE }]);
      s.control.kick(true);
      await s.driver.waitForeignUsed(1);
      expect(s.driver.foreignUsed.at(-1)!.len).toBe(0);
      await alive(s);
    });
  });
});
