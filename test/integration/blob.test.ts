/**
 * Blob resources through the test frontend (playing QEMU 10's vhost-user-gpu-pci: display socket,
 * no SHMEM) against the daemon in 2D and in virglrenderer mode: the dumb-buffer path Linux takes with RESOURCE_BLOB
 * (guest blobs, SET_SCANOUT_BLOB, TRANSFER_TO_HOST_2D + RESOURCE_FLUSH) reaching the display
 * surface, every format with strides and offsets, the cursor from a blob, UUIDs, MAP_BLOB refused
 * without shared memory, and bad offsets, sizes and ids answered with errors. In virglrenderer
 * mode, blobs live beside virglrenderer's resources: one id space, one scanout owner at a time.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import {
  createDumbBlob, writeBlobPixels, scanoutDumbBlob, flushDumbBlob,
  DisplayMsg, GpuResp, GpuFormat, BlobMem, BlobFlag, VirtioFeature, bit,
} from '../frontend/index.js';
import type { GpuResponse } from '../frontend/index.js';
import { useDaemon } from './daemon-fixture.js';
import { clear, tex2dCreate } from '../unit/virgl-helpers.js';

const MiB = 1024 * 1024;
const { USE_SHAREABLE: SHAREABLE, USE_MAPPABLE: MAPPABLE } = BlobFlag;
const MODES = [
  { mode: '2D', args: [] },
  { mode: 'virglrenderer', args: ['--gpu-mode', 'virglrenderer'] },
] as const;

describe.each(MODES)('blob resources through the test frontend (vhost-gpu, $mode mode)', ({ args }) => {
  const d = useDaemon('blob', args, {
    ram: { size: 64 * MiB },
    features: { eventIdx: true, indirect: true, edid: true, resourceUuid: true, resourceBlob: true },
  });

  beforeAll(() => {
    d.s.display.displays = [{ width: 640, height: 480, enabled: true }];
  });

  const type = async (p: Promise<GpuResponse>) => (await p).type;

  it('offers RESOURCE_BLOB (and RESOURCE_UUID) and it is acked', () => {
    const st = d.s.started!;
    expect(st.offeredFeatures & bit(VirtioFeature.GPU_RESOURCE_BLOB)).not.toBe(0n);
    expect(st.features & bit(VirtioFeature.GPU_RESOURCE_BLOB)).not.toBe(0n);
    expect(st.features & bit(VirtioFeature.GPU_RESOURCE_UUID)).not.toBe(0n);
  });

  it("Linux's dumb-buffer path: a guest blob shown with SET_SCANOUT_BLOB, damage flushed", async () => {
    const W = 200, H = 120;
    const fb = await createDumbBlob(d.s.driver, 1, W, H);
    expect(fb.backing.entries.length).toBeGreaterThan(1); // scattered pages
    const pattern = new Uint32Array(W * H).map((_, i) => (0xff000000 | ((i % W) << 12) | Math.floor(i / W)) >>> 0);
    writeBlobPixels(fb, 0, 0, W, H, pattern);
    await scanoutDumbBlob(d.s.driver, fb);
    expect(await d.s.display.waitFor(DisplayMsg.SCANOUT, (e) => e.width === W)).toMatchObject({ scanoutId: 0, width: W, height: H });
    await d.s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === W && e.height === H);
    expect(new Uint32Array(d.s.display.surface(0)!.data.buffer, 0, W * H)).toEqual(pattern);
    // A damaged rectangle, then the flush Linux sends after TRANSFER_TO_HOST_2D.
    writeBlobPixels(fb, 50, 30, 10, 5, new Uint32Array(50).fill(0xff00ff00));
    await flushDumbBlob(d.s.driver, fb, 50, 30, 10, 5);
    expect(await d.s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === 10)).toMatchObject({ x: 50, y: 30, width: 10, height: 5 });
    expect(d.s.display.pixel(0, 50, 30)).toBe(0xff00ff00);
    expect(d.s.display.pixel(0, 59, 34)).toBe(0xff00ff00);
    expect(d.s.display.pixel(0, 60, 34)).toBe(pattern[34 * W + 60]);
    expect(d.s.display.pixel(0, 49, 30)).toBe(pattern[30 * W + 49]);
  });

  it('page flips between two blobs; the unreffed one leaves the scanout', async () => {
    const W = 64, H = 64;
    const a = await createDumbBlob(d.s.driver, 10, W, H), b = await createDumbBlob(d.s.driver, 11, W, H);
    writeBlobPixels(a, 0, 0, W, H, new Uint32Array(W * H).fill(0xff0000aa));
    writeBlobPixels(b, 0, 0, W, H, new Uint32Array(W * H).fill(0xff00bb00));
    await scanoutDumbBlob(d.s.driver, a);
    await d.s.display.waitFor(DisplayMsg.SCANOUT, (e) => e.width === W);
    await d.s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === W);
    expect(d.s.display.pixel(0, 5, 5)).toBe(0xff0000aa);
    d.s.display.clearEvents();
    const scanouts = d.s.display.count(DisplayMsg.SCANOUT);
    await scanoutDumbBlob(d.s.driver, b);
    await flushDumbBlob(d.s.driver, b, 0, 0, W, H);
    await d.s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === W);
    expect(d.s.display.pixel(0, 5, 5)).toBe(0xff00bb00);
    expect(d.s.display.count(DisplayMsg.SCANOUT)).toBe(scanouts); // same size: no new surface
    expect(await type(d.s.driver.resourceUnref(11))).toBe(GpuResp.OK_NODATA);
    expect(await d.s.display.waitFor(DisplayMsg.SCANOUT)).toMatchObject({ scanoutId: 0, width: 0, height: 0 });
    expect(await type(d.s.driver.resourceUnref(10))).toBe(GpuResp.OK_NODATA);
  });

  it('every 2D format, with a padded stride, a plane offset and a partial rectangle', async () => {
    // Bytes 0x11,0x22,0x33,0x44 in memory, per format: the x8r8g8b8 word QEMU gets.
    const cases: [number, number][] = [
      [GpuFormat.B8G8R8A8_UNORM, 0x44332211], [GpuFormat.B8G8R8X8_UNORM, 0x44332211],
      [GpuFormat.A8R8G8B8_UNORM, 0x11223344], [GpuFormat.X8R8G8B8_UNORM, 0x11223344],
      [GpuFormat.R8G8B8A8_UNORM, 0x44112233], [GpuFormat.R8G8B8X8_UNORM, 0x44112233],
      [GpuFormat.X8B8G8R8_UNORM, 0x11443322], [GpuFormat.A8B8G8R8_UNORM, 0x11443322],
    ];
    const W = 48, H = 24, stride = 4096, offset = 8192 + 64;
    const r = await d.s.driver.createBlob({ resourceId: 20, blobMem: BlobMem.GUEST, blobFlags: SHAREABLE, size: offset + stride * H, backing: true });
    expect(r.type).toBe(GpuResp.OK_NODATA);
    const backing = (r as { backing: import('../frontend/index.js').ScatterBuffer }).backing;
    const row = new Uint8Array(W * 4).map((_, i) => [0x11, 0x22, 0x33, 0x44][i % 4]);
    for (let y = 0; y < H; y++) backing.write(offset + y * stride, row);
    for (const [format, want] of cases) {
      d.s.display.clearEvents();
      // Show 20x10 at (8, 4) of the framebuffer.
      expect(await type(d.s.driver.setScanoutBlob({ scanoutId: 0, resourceId: 20, width: W, height: H, format, strides: [stride], offsets: [offset], x: 8, y: 4, rectWidth: 20, rectHeight: 10 }))).toBe(GpuResp.OK_NODATA);
      const u = await d.s.display.waitFor(DisplayMsg.UPDATE);
      expect(u).toMatchObject({ x: 0, y: 0, width: 20, height: 10 });
      expect([format, d.s.display.pixel(0, 0, 0), d.s.display.pixel(0, 19, 9)]).toEqual([format, want, want]);
    }
    expect(await type(d.s.driver.resourceUnref(20))).toBe(GpuResp.OK_NODATA);
  });

  it('the cursor from a blob (its first 64x64 pixels)', async () => {
    const cur = await createDumbBlob(d.s.driver, 30, 64, 64);
    writeBlobPixels(cur, 0, 0, 64, 64, new Uint32Array(64 * 64).fill(0x80402010));
    await d.s.driver.updateCursor(0, 100, 50, 30, 2, 3); // the cursor queue answers nothing
    const e = await d.s.display.waitFor(DisplayMsg.CURSOR_UPDATE);
    expect(e).toMatchObject({ scanoutId: 0, x: 100, y: 50, hotX: 2, hotY: 3 });
    expect(new Uint32Array(e.image!.buffer, e.image!.byteOffset, 64 * 64)[4095]).toBe(0x80402010);
    expect(await type(d.s.driver.resourceUnref(30))).toBe(GpuResp.OK_NODATA);
  });

  it('UUIDs for shareable blobs; DETACH_BACKING refused; TRANSFER is accepted', async () => {
    await createDumbBlob(d.s.driver, 40, 16, 16);
    const u = await d.s.driver.assignUuid(40);
    expect(u.type).toBe(GpuResp.OK_RESOURCE_UUID);
    expect(u.uuid.some((b) => b !== 0)).toBe(true);
    expect(await type(d.s.driver.createBlob({ resourceId: 41, blobMem: BlobMem.GUEST, blobFlags: 0, size: 4096, backing: true }))).toBe(GpuResp.OK_NODATA);
    expect(await type(d.s.driver.assignUuid(41))).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await type(d.s.driver.detachBacking(40))).toBe(GpuResp.ERR_UNSPEC);
    expect(await type(d.s.driver.transferToHost2d(40, 0, 0, 16, 16, { offset: 0 }))).toBe(GpuResp.OK_NODATA);
    for (const id of [40, 41]) expect(await type(d.s.driver.resourceUnref(id))).toBe(GpuResp.OK_NODATA);
  });

  it('without SHMEM (QEMU 10) MAP_BLOB is refused, and without contexts there is no host memory', async () => {
    await createDumbBlob(d.s.driver, 50, 16, 16);
    expect((await d.s.driver.mapBlob(50, 0)).type).toBe(GpuResp.ERR_UNSPEC);
    expect(await type(d.s.driver.unmapBlob(50))).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect((await d.s.driver.mapBlob(99, 0)).type).toBe(GpuResp.ERR_UNSPEC);
    // VIRGL is not negotiated here, so host memory is refused.
    expect(await type(d.s.driver.createBlob({ resourceId: 51, blobMem: BlobMem.HOST3D, blobFlags: MAPPABLE, size: 65536, blobId: 1 }, { ctxId: 1 }))).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await type(d.s.driver.resourceUnref(50))).toBe(GpuResp.OK_NODATA);
  });

  it('bad sizes, offsets, ids and flags get error answers; the device goes on', async () => {
    const blob = (resourceId: number, size: number, more: Partial<Parameters<typeof d.s.driver.createBlob>[0]> = {}) =>
      type(d.s.driver.createBlob({ resourceId, blobMem: BlobMem.GUEST, blobFlags: SHAREABLE, size, backing: true, ...more }));
    expect(await blob(0, 4096)).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect(await blob(60, 0, { backing: [{ gpa: d.s.ram.alloc(4096, 4096), len: 4096 }] })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await blob(60, 4096, { blobFlags: 0x10 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await blob(60, 4096, { blobMem: 7 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await blob(60, 4096, { blobId: 3 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    // size beyond what the entries hold, and a size of 2^64 - 1.
    expect(await blob(60, 8192, { backing: [{ gpa: d.s.ram.alloc(4096, 4096), len: 4096 }] })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await blob(60, 2 ** 64 - 1, { backing: [{ gpa: d.s.ram.alloc(4096, 4096), len: 4096 }] })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    // An entry outside guest memory.
    expect(await blob(60, 4096, { backing: [{ gpa: 0x7000_0000_0000, len: 4096 }] })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    const fb = await createDumbBlob(d.s.driver, 61, 32, 32);
    expect(await blob(61, 4096)).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    const scan = (p: Partial<Parameters<typeof d.s.driver.setScanoutBlob>[0]>) =>
      type(d.s.driver.setScanoutBlob({ scanoutId: 0, resourceId: 61, width: 32, height: 32, format: GpuFormat.B8G8R8X8_UNORM, ...p }));
    expect(await scan({ scanoutId: 16 })).toBe(GpuResp.ERR_INVALID_SCANOUT_ID);
    expect(await scan({ resourceId: 62 })).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect(await scan({ format: 5 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await scan({ offsets: [8] })).toBe(GpuResp.ERR_INVALID_PARAMETER); // ends past the blob
    expect(await scan({ strides: [64] })).toBe(GpuResp.ERR_INVALID_PARAMETER); // below a row
    expect(await scan({ strides: [0x8000_0000] })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await scan({ offsets: [0xffff_ff00] })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await scan({ x: 1 })).toBe(GpuResp.ERR_INVALID_PARAMETER); // rect past the framebuffer
    expect(await scan({ x: 0xffff_ffff, rectWidth: 2 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await scan({ width: 0 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await scan({ width: 0x8000_0000 })).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await type(d.s.driver.setScanout(0, 61, 0, 0, 32, 32))).toBe(GpuResp.ERR_INVALID_PARAMETER); // not SET_SCANOUT
    expect(await type(d.s.driver.resourceFlush(61, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff))).toBe(GpuResp.OK_NODATA); // clipped away
    expect(await type(d.s.driver.resourceFlush(62, 0, 0, 1, 1))).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await d.s.driver.mapBlob(61, 0x1000_0000_0001)).type).toBe(GpuResp.ERR_UNSPEC);
    expect(await type(d.s.driver.attachBacking(61, 4096))).toBe(GpuResp.ERR_UNSPEC); // has its pages
    await scanoutDumbBlob(d.s.driver, fb);
    expect(await type(d.s.driver.resourceUnref(61))).toBe(GpuResp.OK_NODATA);
    expect(await type(d.s.driver.resourceUnref(61))).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await d.s.driver.getDisplayInfo()).type).toBe(GpuResp.OK_DISPLAY_INFO);
    expect(d.backend.running).toBe(true);
    expect(d.backend.stderr()).not.toMatch(/vhost-gpu error/);
  });
});

describe('blobs beside virglrenderer\'s resources (--gpu-mode virglrenderer)', () => {
  const d = useDaemon('blob-virgl', ['--gpu-mode', 'virglrenderer'], {
    ram: { size: 64 * MiB },
    features: { eventIdx: true, indirect: true, virgl: true, contextInit: true, resourceUuid: true, resourceBlob: true },
  });
  beforeAll(() => {
    d.s.display.displays = [{ width: 640, height: 480, enabled: true }];
  });
  const type = async (p: Promise<GpuResponse>) => (await p).type;

  it('one resource id space: neither kind takes an id the other has', async () => {
    const drv = d.s.driver;
    expect(await type(drv.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, 16, 16))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.createBlob({ resourceId: 1, blobMem: BlobMem.GUEST, blobFlags: SHAREABLE, size: 4096, backing: true }))).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    await createDumbBlob(drv, 2, 16, 16);
    expect(await type(drv.resourceCreate2d(2, GpuFormat.B8G8R8X8_UNORM, 16, 16))).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect(await type(drv.resourceCreate3d({ resourceId: 2, target: 2, format: 1, bind: 2, width: 16, height: 16, depth: 1, arraySize: 1, lastLevel: 0, nrSamples: 0, flags: 1 }))).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    // Each kind's commands refuse the other kind's id as a parameter.
    expect(await type(drv.setScanoutBlob({ scanoutId: 0, resourceId: 1, width: 16, height: 16, format: GpuFormat.B8G8R8X8_UNORM }))).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await type(drv.setScanout(0, 2, 0, 0, 16, 16))).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await type(drv.ctxCreate(5, { contextInit: 2 }))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.ctxAttach(5, 2))).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await type(drv.ctxAttach(5, 1))).toBe(GpuResp.OK_NODATA);
    // UUIDs for both; UNREF of each goes to its owner, and the id is free again for the other kind.
    expect(await type(drv.assignUuid(1))).toBe(GpuResp.OK_RESOURCE_UUID);
    expect(await type(drv.assignUuid(2))).toBe(GpuResp.OK_RESOURCE_UUID);
    expect(await type(drv.resourceUnref(1))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.resourceUnref(2))).toBe(GpuResp.OK_NODATA);
    await createDumbBlob(drv, 1, 16, 16);
    expect(await type(drv.resourceCreate2d(2, GpuFormat.B8G8R8X8_UNORM, 16, 16))).toBe(GpuResp.OK_NODATA);
    for (const id of [1, 2]) expect(await type(drv.resourceUnref(id))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.ctxDestroy(5))).toBe(GpuResp.OK_NODATA);
  });

  it('a scanout shows a virgl resource or a blob, never both: the one set last owns it', async () => {
    const drv = d.s.driver, disp = d.s.display;
    const shown = await drv.showPattern(10, 64, 64); // virgl 2D resource on scanout 0
    await disp.waitFor(DisplayMsg.SCANOUT, (e) => e.width === 64);
    expect(await type(drv.resourceFlush(10, 0, 0, 64, 64))).toBe(GpuResp.OK_NODATA);
    await disp.waitFor(DisplayMsg.UPDATE, (e) => e.width === 64);
    expect(disp.pixel(0, 5, 7)).toBe(shown[7 * 64 + 5]);

    const W = 100, H = 50;
    const fb = await createDumbBlob(drv, 11, W, H);
    const pattern = new Uint32Array(W * H).map((_, i) => (0xff000000 | (i * 2654435761)) >>> 0);
    writeBlobPixels(fb, 0, 0, W, H, pattern);
    await scanoutDumbBlob(drv, fb);
    expect(await disp.waitFor(DisplayMsg.SCANOUT, (e) => e.width === W)).toMatchObject({ scanoutId: 0, height: H });
    await disp.waitFor(DisplayMsg.UPDATE, (e) => e.width === W);
    expect(new Uint32Array(disp.surface(0)!.data.buffer, 0, W * H)).toEqual(pattern);
    // The virgl resource no longer shows there: its flush sends nothing.
    expect(await type(drv.resourceFlush(10, 0, 0, 64, 64))).toBe(GpuResp.OK_NODATA);
    expect(disp.pending(DisplayMsg.UPDATE).filter((e) => e.width === 64)).toHaveLength(0);

    // Back to the virgl resource: the blob's flushes send nothing, the resource's do.
    expect(await type(drv.setScanout(0, 10, 0, 0, 64, 64))).toBe(GpuResp.OK_NODATA);
    await disp.waitFor(DisplayMsg.SCANOUT, (e) => e.width === 64);
    await flushDumbBlob(drv, fb, 0, 0, W, H);
    expect(await type(drv.resourceFlush(10, 0, 0, 64, 64))).toBe(GpuResp.OK_NODATA);
    await disp.waitFor(DisplayMsg.UPDATE, (e) => e.width === 64);
    expect(disp.pending(DisplayMsg.UPDATE).filter((e) => e.width === W)).toHaveLength(0);
    expect(disp.pixel(0, 5, 7)).toBe(shown[7 * 64 + 5]);

    // SET_SCANOUT_BLOB with resource 0 disables the scanout whoever shows it.
    expect(await type(drv.setScanoutBlob({ scanoutId: 0, resourceId: 0, width: 0, height: 0, format: GpuFormat.B8G8R8X8_UNORM }))).toBe(GpuResp.OK_NODATA);
    expect(await disp.waitFor(DisplayMsg.SCANOUT, (e) => e.width === 0)).toMatchObject({ scanoutId: 0, height: 0 });
    // And SET_SCANOUT with resource 0 a blob's scanout.
    await scanoutDumbBlob(drv, fb);
    await disp.waitFor(DisplayMsg.SCANOUT, (e) => e.width === W);
    expect(await type(drv.setScanout(0, 0, 0, 0, 0, 0))).toBe(GpuResp.OK_NODATA);
    await disp.waitFor(DisplayMsg.SCANOUT, (e) => e.width === 0);
    for (const id of [10, 11]) expect(await type(drv.resourceUnref(id))).toBe(GpuResp.OK_NODATA);
    expect(d.backend.stderr()).not.toMatch(/vhost-gpu error/);
  });

  it("a fenced blob command's answer waits for the earlier fences of its timeline (virgl submits still running)", async () => {
    const drv = d.s.driver;
    expect(await type(drv.ctxCreate(6, { contextInit: 2 }))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.resourceCreate3d(tex2dCreate(40, 2048, 2048)))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.ctxAttach(6, 40))).toBe(GpuResp.OK_NODATA);
    await createDumbBlob(drv, 41, 16, 16);
    const order: string[] = [];
    const track = (name: string, p: Promise<GpuResponse>) => p.then((r) => (order.push(name), r.type));
    const answers = await Promise.all([
      ...[0, 1, 2, 3].map((i) => track(`submit ${100 + i}`, drv.submit3d(6, clear(40, [i / 4, 0, 0, 1]), { fenceId: 100 + i }))),
      track('transfer 104', drv.transferToHost2d(41, 0, 0, 16, 16, { fenceId: 104 })),
      track('flush 105 (unknown id: an error, still in order)', drv.resourceFlush(99, 0, 0, 1, 1, { fenceId: 105 })),
    ]);
    expect(answers).toEqual([...Array(5).fill(GpuResp.OK_NODATA), GpuResp.ERR_INVALID_RESOURCE_ID]);
    expect(order).toEqual(['submit 100', 'submit 101', 'submit 102', 'submit 103', 'transfer 104', 'flush 105 (unknown id: an error, still in order)']);
    // An answer the queue waits for (QEMU's display info) keeps the order too.
    order.length = 0;
    await Promise.all([
      track('submit 106', drv.submit3d(6, clear(40, [0, 1, 0, 1]), { fenceId: 106 })),
      track('display info 107', drv.getDisplayInfo({ fenceId: 107 })),
    ]);
    expect(order).toEqual(['submit 106', 'display info 107']);
    for (const id of [40, 41]) expect(await type(drv.resourceUnref(id))).toBe(GpuResp.OK_NODATA);
    expect(await type(drv.ctxDestroy(6))).toBe(GpuResp.OK_NODATA);
  });
});
