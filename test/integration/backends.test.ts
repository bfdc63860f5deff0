/**
 * One suite, every backend: QEMU's C back-end (/usr/lib/qemu/vhost-user-gpu, 2D mode: no render
 * node here, so it uses SCANOUT/UPDATE rather than DMABUF_*) and our daemon, driven by the test
 * frontend. Where the two differ on purpose, `quirks` says how; the C back-end's choices are the
 * baseline that validates the frontend itself.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startBackend, connectFrontend, DisplayMsg, GpuResp, GpuFormat, VirtioFeature, ProtocolFeature, bit,
  edidValid, GPU_FLAG_FENCE,
} from '../frontend/index.js';
import type { BackendProcess, FrontendSession } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';

const MiB = 1024 * 1024;

interface Quirks {
  /** Display protocol features the backend sets (ours uses EDID only until DMA-BUF scanout exists). */
  displayFeatures: bigint;
  /** GET_CAPSET_INFO without capsets. */
  capsetInfoError: number;
  /** RESOURCE_ASSIGN_UUID (ours offers RESOURCE_UUID). */
  assignUuid: number;
  /** Whether ring_idx is echoed with INFO_RING_IDX. */
  echoesRingIdx: boolean;
  /** A backing entry crossing two memory regions (the spec allows it; libvhost-user does not). */
  straddlingBacking: number;
  /** Commands wait while QEMU does not read the display socket (blocking writes). */
  displayBlocksCommands: boolean;
}

const backends: [string, string[], Quirks][] = [
  ['QEMU C reference', ['/usr/lib/qemu/vhost-user-gpu', '--socket-path={socket}'], {
    displayFeatures: 0x3n, capsetInfoError: GpuResp.ERR_UNSPEC, assignUuid: GpuResp.ERR_UNSPEC, echoesRingIdx: false,
    straddlingBacking: GpuResp.ERR_UNSPEC, displayBlocksCommands: true,
  }],
  ['vhost-gpu', [process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}'], {
    displayFeatures: 0x1n, capsetInfoError: GpuResp.ERR_INVALID_PARAMETER, assignUuid: GpuResp.OK_RESOURCE_UUID,
    echoesRingIdx: true, straddlingBacking: GpuResp.OK_NODATA, displayBlocksCommands: false,
  }],
];

describe.each(backends)('%s driven by the test frontend', (_name, cmd, quirks) => {
  let dir: string;
  let backend: BackendProcess;
  let s: FrontendSession;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-ref-'));
    backend = await startBackend(cmd, join(dir, 'gpu.sock'));
    // Two regions (mmap_offset used for the second) with distinct fake QEMU addresses.
    s = await connectFrontend(backend, { ram: { size: 64 * MiB, splitAt: 32 * MiB } });
  });

  afterAll(async () => {
    s?.close();
    const exit = await backend?.stop();
    if (process.env.SHOW_BACKEND_STDERR) console.error(`reference back-end: ${JSON.stringify(exit)}`);
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates features and the display protocol', async () => {
    const st = s.started!;
    for (const b of [VirtioFeature.VERSION_1, VirtioFeature.PROTOCOL_FEATURES, VirtioFeature.EVENT_IDX, VirtioFeature.INDIRECT_DESC, VirtioFeature.GPU_EDID]) {
      expect(st.features & bit(b)).not.toBe(0n);
    }
    expect(st.protocolFeatures & bit(ProtocolFeature.REPLY_ACK)).not.toBe(0n);
    expect(st.protocolFeatures & bit(ProtocolFeature.CONFIG)).not.toBe(0n);
    expect(st.queueNum).toBe(2);
    expect(st.config).not.toBeNull();
    // The back-end asks for the display protocol features right after GPU_SET_SOCKET.
    const set = await s.display.waitFor(DisplayMsg.SET_PROTOCOL_FEATURES);
    expect(set.features).toBe(quirks.displayFeatures);
    expect(s.display.count(DisplayMsg.GET_PROTOCOL_FEATURES)).toBe(1);
  });

  it('answers GET_DISPLAY_INFO through the display socket', async () => {
    s.display.displays = [{ width: 1024, height: 768, enabled: true }, { width: 800, height: 600, enabled: true }];
    const r = await s.driver.getDisplayInfo();
    expect(r.type).toBe(GpuResp.OK_DISPLAY_INFO);
    expect(r.usedLen).toBe(408);
    expect(r.displays[0]).toMatchObject({ width: 1024, height: 768, enabled: true });
    expect(r.displays[1]).toMatchObject({ width: 800, height: 600, enabled: true });
    expect(r.displays[2]!.enabled).toBe(false);
    await s.display.waitFor(DisplayMsg.GET_DISPLAY_INFO);
  });

  it('answers GET_EDID with the display peer EDID', async () => {
    const r = await s.driver.getEdid(0);
    expect(r.type).toBe(GpuResp.OK_EDID);
    expect(r.size).toBe(128);
    expect(edidValid(r.edid)).toBe(true);
  });

  it('2D: scattered backing, transfer, scanout and flush reach the display surface', async () => {
    const W = 64, H = 64;
    expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, W, H)).type).toBe(GpuResp.OK_NODATA);
    // 16 KiB in 1 KiB entries, reversed with holes between them.
    const att = await s.driver.attachBacking(1, W * H * 4, { chunk: 1024 });
    expect(att.type).toBe(GpuResp.OK_NODATA);
    expect(att.backing.entries.length).toBe(16);
    const pattern = s.driver.fillPixels(1, (x, y) => 0xff000000 | (x << 16) | (y << 8) | ((x ^ y) & 0xff));
    expect((await s.driver.transferToHost2d(1, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await s.driver.setScanout(0, 1, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    const scanout = await s.display.waitFor(DisplayMsg.SCANOUT);
    expect(scanout).toMatchObject({ scanoutId: 0, width: W, height: H });
    expect((await s.driver.resourceFlush(1, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    const upd = await s.display.waitFor(DisplayMsg.UPDATE);
    expect(upd).toMatchObject({ scanoutId: 0, x: 0, y: 0, width: W, height: H });
    const surf = s.display.surface(0)!;
    expect(new Uint32Array(surf.data.buffer, 0, W * H)).toEqual(pattern);
  });

  it('partial transfer with an offset and a partial flush update only that rectangle', async () => {
    const px = new Uint32Array(8 * 4).fill(0xff112233);
    s.driver.writePixels(1, 10, 20, 8, 4, px);
    expect((await s.driver.transferToHost2d(1, 10, 20, 8, 4)).type).toBe(GpuResp.OK_NODATA);
    expect((await s.driver.resourceFlush(1, 10, 20, 8, 4)).type).toBe(GpuResp.OK_NODATA);
    const upd = await s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === 8);
    expect(upd).toMatchObject({ x: 10, y: 20, width: 8, height: 4 });
    expect(s.display.pixel(0, 10, 20)).toBe(0xff112233);
    expect(s.display.pixel(0, 17, 23)).toBe(0xff112233);
    expect(s.display.pixel(0, 9, 20)).toBe((0xff000000 | (9 << 16) | (20 << 8) | (9 ^ 20)) >>> 0);
  });

  it('a large UPDATE shows the pixels of its flush though the guest rewrites them before QEMU reads', async () => {
    // Ours sends large payloads by page reference: this is what its copy-on-write must keep true.
    const W = 512, H = 256, id = 60; // 512 KiB per full update
    const A = (x: number, y: number) => (0xff000000 | (x << 12) | y) >>> 0;
    expect((await s.driver.resourceCreate2d(id, GpuFormat.B8G8R8X8_UNORM, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await s.driver.attachBacking(id, W * H * 4)).type).toBe(GpuResp.OK_NODATA);
    s.driver.fillPixels(id, A);
    expect((await s.driver.transferToHost2d(id, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await s.driver.setScanout(0, id, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    await s.display.waitFor(DisplayMsg.SCANOUT, (e) => e.width === W);

    const seen: number[][] = [];
    s.display.onHandled = (type) => {
      if (type === DisplayMsg.UPDATE) seen.push([s.display.pixel(0, 8, 8), s.display.pixel(0, 300, 200)]);
    };
    s.display.pause();
    // A backend that blocks on its display socket answers only once QEMU reads again.
    let resumed = false;
    const resume = setTimeout(() => { resumed = true; s.display.resume(); }, 1000);
    const ok = async (p: Promise<{ type: number }>) => expect((await p).type).toBe(GpuResp.OK_NODATA);
    try {
      // Flush A; rewrite a corner (a partial transfer: the rest of A must stay); flush A+corner;
      // rewrite everything (B); flush B. The guest rewrites its pages only after each transfer
      // is answered, as a driver does.
      const flushes = [s.driver.resourceFlush(id, 0, 0, W, H)];
      s.driver.writePixels(id, 0, 0, 16, 16, new Uint32Array(16 * 16).fill(0xff00ff00));
      await ok(s.driver.transferToHost2d(id, 0, 0, 16, 16));
      flushes.push(s.driver.resourceFlush(id, 0, 0, W, H));
      s.driver.fillPixels(id, () => 0xff0000ff);
      await ok(s.driver.transferToHost2d(id, 0, 0, W, H));
      flushes.push(s.driver.resourceFlush(id, 0, 0, W, H));
      for (const f of flushes) await ok(f);
      expect(resumed).toBe(quirks.displayBlocksCommands);
      clearTimeout(resume);
      s.display.resume();
      for (let i = 0; i < 3; i++) await s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === W);
      expect(seen).toEqual([[A(8, 8), A(300, 200)], [0xff00ff00, A(300, 200)], [0xff0000ff, 0xff0000ff]]);
    } finally {
      clearTimeout(resume);
      s.display.onHandled = null;
      s.display.resume();
    }
    // Leave scanout 0 as the tests below expect it: showing resource 1.
    expect((await s.driver.setScanout(0, 1, 0, 0, 64, 64)).type).toBe(GpuResp.OK_NODATA);
    expect((await s.driver.resourceUnref(id)).type).toBe(GpuResp.OK_NODATA);
    s.display.clearEvents();
  });

  it('reports errors with the right codes', async () => {
    expect((await s.driver.resourceFlush(99, 0, 0, 1, 1)).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await s.driver.transferToHost2d(1, 60, 0, 8, 8)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect((await s.driver.setScanout(16, 1, 0, 0, 64, 64)).type).toBe(GpuResp.ERR_INVALID_SCANOUT_ID);
    expect((await s.driver.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 4, 4)).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    // Commands it does not implement in 2D mode.
    expect((await s.driver.getCapsetInfo(0)).type).toBe(quirks.capsetInfoError);
    expect((await s.driver.assignUuid(1)).type).toBe(quirks.assignUuid);
    // A header shorter than 24 bytes.
    // QEMU 10.0 warns and runs it with a zero-filled header (ERR_UNSPEC); later versions answer
    // ERR_INVALID_PARAMETER.
    const short = await s.driver.submitRaw(new Uint8Array(8), 24);
    expect([GpuResp.ERR_UNSPEC, GpuResp.ERR_INVALID_PARAMETER]).toContain(short.type);
  });

  it('echoes fence flag, fence id, ctx id (and ring_idx where supported)', async () => {
    const r = await s.driver.resourceFlush(1, 0, 0, 1, 1, { fenceId: 0x1_2345_6789n, ctxId: 7, ringIdx: 3 });
    expect(r.type).toBe(GpuResp.OK_NODATA);
    expect(r.flags & GPU_FLAG_FENCE).toBe(GPU_FLAG_FENCE);
    expect(r.fenceId).toBe(0x1_2345_6789n);
    expect(r.ctxId).toBe(7);
    expect(r.ringIdx).toBe(quirks.echoesRingIdx ? 3 : 0);
  });

  it('accepts indirect descriptors and requests split over several descriptors', async () => {
    expect((await s.driver.resourceFlush(1, 0, 0, 64, 64, { indirect: true })).type).toBe(GpuResp.OK_NODATA);
    expect((await s.driver.resourceFlush(1, 0, 0, 64, 64, { splitAt: [4, 24, 30] })).type).toBe(GpuResp.OK_NODATA);
    const info = await s.driver.getDisplayInfo({ indirect: true, splitAt: [12] });
    expect(info.type).toBe(GpuResp.OK_DISPLAY_INFO);
  });

  it('runs a batch of commands with one kick', async () => {
    let before = s.display.count(DisplayMsg.UPDATE);
    const b = s.driver.batch();
    // Two descriptors per command: 64 pairs = 128 commands fill the 256-entry ring.
    for (let i = 0; i < 64; i++) b.transferToHost2d(1, 0, i, 64, 1, i * 256).resourceFlush(1, 0, i, 64, 1);
    expect(() => b.resourceFlush(1, 0, 0, 1, 1)).toThrow(RangeError);
    const r = await b.submit();
    expect(r).toMatchObject({ count: 128, errors: 0 });
    await s.display.waitForCount(DisplayMsg.UPDATE, before + 64);
    // One indirect descriptor per command: all 256 slots.
    before = s.display.count(DisplayMsg.UPDATE);
    const bi = s.driver.batch({ indirect: true });
    for (let i = 0; i < 256; i++) bi.resourceFlush(1, 0, i % 64, 64, 1);
    expect(await bi.submit()).toMatchObject({ count: 256, errors: 0 });
    await s.display.waitForCount(DisplayMsg.UPDATE, before + 256);
    // Reusable, and errors are counted.
    const r2 = await b.resourceFlush(42, 0, 0, 1, 1).resourceFlush(1, 0, 0, 1, 1).submit();
    expect(r2).toMatchObject({ count: 2, errors: 1, firstErrorType: GpuResp.ERR_INVALID_RESOURCE_ID });
    s.display.clearEvents();
  });

  it('cursor: UPDATE_CURSOR sends the 64x64 image, MOVE_CURSOR the position', async () => {
    expect((await s.driver.resourceCreate2d(2, GpuFormat.B8G8R8A8_UNORM, 64, 64)).ok).toBe(true);
    expect((await s.driver.attachBacking(2)).ok).toBe(true);
    const img = s.driver.fillPixels(2, (x, y) => (x < 32 ? 0xffff0000 : 0x8000ff00) + y);
    expect((await s.driver.transferToHost2d(2, 0, 0, 64, 64, { fence: true })).ok).toBe(true);
    const r = await s.driver.updateCursor(0, 100, 200, 2, 5, 6);
    expect(r.usedLen).toBe(0); // cursor buffers come back without a response
    const ev = await s.display.waitFor(DisplayMsg.CURSOR_UPDATE);
    expect(ev).toMatchObject({ scanoutId: 0, x: 100, y: 200, hotX: 5, hotY: 6 });
    expect(new Uint32Array(ev.image!.buffer, ev.image!.byteOffset, 64 * 64)).toEqual(img);
    await s.driver.moveCursor(0, 300, 400);
    expect(await s.display.waitFor(DisplayMsg.CURSOR_POS)).toMatchObject({ x: 300, y: 400 });
    // MOVE_CURSOR with resource 0 hides the cursor.
    await s.driver.moveCursor(0, 1, 2, { resourceId: 0 });
    await s.display.waitFor(DisplayMsg.CURSOR_POS_HIDE);
    expect(s.display.cursor.visible).toBe(false);
  });

  it('handles a backing entry that straddles two memory regions', async () => {
    // libvhost-user's vu_gpa_to_va stops at a region end, so the C back-end fails the attach;
    // ours splits the entry at the region boundary.
    expect((await s.driver.resourceCreate2d(3, GpuFormat.B8G8R8X8_UNORM, 16, 16)).ok).toBe(true);
    const straddling = s.ram.allocStraddling(16 * 16 * 4);
    const r = await s.driver.attachBacking(3, straddling);
    expect(r.type).toBe(quirks.straddlingBacking);
    straddling.free();
  });

  it('disables the scanout on unref and stops the rings on GET_VRING_BASE', async () => {
    expect((await s.driver.resourceUnref(1)).ok).toBe(true);
    expect(await s.display.waitFor(DisplayMsg.SCANOUT, (e) => e.width === 0)).toMatchObject({ scanoutId: 0 });
    expect(s.display.surface(0)).toBeNull();
    const availBefore = s.control.availIdx;
    const bases = await s.frontend.stop([s.control, s.cursor]);
    expect(bases).toEqual([availBefore, s.cursor.availIdx]);
  });
});

describe.each(backends)('%s with fewer features', (_name, cmd) => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-plain-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('works without EVENT_IDX, INDIRECT_DESC and REPLY_ACK, with ADD_MEM_REG and a small ring', async () => {
    const backend = await startBackend(cmd, join(dir, 'gpu.sock'));
    const s = await connectFrontend(backend, {
      features: { edid: true },
      protocolFeatures: bit(ProtocolFeature.MQ) | bit(ProtocolFeature.CONFIG) | bit(ProtocolFeature.CONFIGURE_MEM_SLOTS),
      memTable: 'add', controlSize: 64,
    }).catch(async (e: unknown) => { await backend.stop(); throw e; });
    try {
      expect(s.started!.features & (bit(VirtioFeature.EVENT_IDX) | bit(VirtioFeature.INDIRECT_DESC))).toBe(0n);
      // Without REPLY_ACK nothing says the back-end has read SET_VRING_CALL yet: a command
      // answered before that raises no interrupt (the C back-end then stalls this test). A request
      // with a reply is the barrier: a back-end answers messages in order.
      await s.frontend.getQueueNum();
      const px = await s.driver.showPattern(1, 32, 32);
      // 100 commands at once on a 64-descriptor ring: later ones wait for ring space.
      const all = await Promise.all(Array.from({ length: 100 }, (_, i) => s.driver.resourceFlush(1, 0, i % 32, 32, 1)));
      expect(all.every((r) => r.ok)).toBe(true);
      await s.display.waitForCount(DisplayMsg.UPDATE, 100);
      expect(new Uint32Array(s.display.surface(0)!.data.buffer)).toEqual(px);
      expect(s.driver.inFlight()).toBe(0);
    } finally {
      s.close();
      await backend.stop();
    }
  });
});
