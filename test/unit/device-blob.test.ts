// Blob resources in the device, through a real VirtQueue: guest blobs (scattered pages) scanned out
// in every format, flushed and used as cursors; host blobs made by a real worker context (the probe
// type); MAP_BLOB / UNMAP_BLOB against a fake host-visible region that records what it is asked and
// can hold or refuse each request (the transport's side of this seam is tested with the SHMEM code).
import { readdirSync, readlinkSync } from 'node:fs';
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { Codec } from '../../src/queues/codec.js';
import { VirtQueue } from '../../src/queues/virtqueue.js';
import { R_SLOT } from '../../src/queues/layout.js';
import { GpuDevice } from '../../src/device/gpu-device.js';
import type { HostVisibleRegion } from '../../src/device/host-visible.js';
import { BlobMem, BlobFlag } from '../../src/device/blob.js';
import { Cmd, Resp, GpuFeature, FLAG_FENCE } from '../../src/device/protocol.js';
import { Format } from '../../src/device/formats.js';
import { WorkerContexts } from '../../src/renderers/worker-context/host.js';
import { native } from '../../src/native.js';
import { MockRam, MockRing, request, submitAndWait } from './mock-ring.js';
import { FakeDisplay } from './fake-display.js';
import { PROBE } from './probe-context.js';

const PROBE_CAPSET = 5;
const capsetData = new Uint8Array(16);
const bit = (b: number) => 1n << BigInt(b);
const ALL = bit(GpuFeature.VIRGL) | bit(GpuFeature.CONTEXT_INIT) | bit(GpuFeature.EDID) | bit(GpuFeature.RESOURCE_UUID) | bit(GpuFeature.RESOURCE_BLOB);
const { MAPPABLE, SHAREABLE, CROSS_DEVICE } = BlobFlag;

/** A host-visible region that records requests; each can be held (resolved later) or refused. */
class FakeRegion implements HostVisibleRegion {
  calls: string[] = [];
  hold = false;
  refuse = false;
  private held: (() => void)[] = [];
  /** Our own view of what was mapped at each offset (the fd the device sent, mapped here). */
  views = new Map<number, Uint8Array>();
  constructor(readonly size: number) {}

  map(offset: number, length: number, fd: number, fdOffset: number, writable: boolean): Promise<void> {
    this.calls.push(`map 0x${offset.toString(16)} 0x${length.toString(16)} @${fdOffset} ${writable ? 'rw' : 'ro'}`);
    return this.settle(() => {
      const m = native().mmap(fd, length, fdOffset);
      if (typeof m === 'number') throw new Error(`mmap ${m}`);
      const ab = native().view(m.addr, 0, length);
      if (typeof ab === 'number') throw new Error(`view ${ab}`);
      native().unmap(m.addr); // the view keeps the mapping alive
      this.views.set(offset, new Uint8Array(ab));
    });
  }

  unmap(offset: number, length: number): Promise<void> {
    this.calls.push(`unmap 0x${offset.toString(16)} 0x${length.toString(16)}`);
    return this.settle(() => this.views.delete(offset));
  }

  release(): void {
    for (const go of this.held.splice(0)) go();
  }

  private settle(effect: () => void): Promise<void> {
    if (this.refuse) return Promise.reject(new Error('refused by the test'));
    if (!this.hold) {
      effect();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.held.push(() => { effect(); resolve(); }));
  }
}


/** Open memfds of this process (other fds come and go with vitest's and piscina's threads). */
function memfdCount(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:')) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

describe('device: blob resources', () => {
  let ram: MockRam, ring: MockRing, codec: Codec, q: VirtQueue, dev: GpuDevice, pool: WorkerContexts, display: FakeDisplay;
  let next = 0;
  const made: { dev: GpuDevice; pool: WorkerContexts }[] = [];

  function setup(opts: { features?: bigint; maxHostMemory?: number } = {}): void {
    ram = new MockRam(0x1_0000_0000n, [16 << 20]);
    ring = new MockRing(ram, 256);
    codec = Codec.create();
    pool = new WorkerContexts(4);
    display = new FakeDisplay();
    dev = new GpuDevice({
      maxHostMemory: opts.maxHostMemory ?? 64 << 20,
      display,
      memory: { generation: 1, translate: (g, l, e) => codec.translate(g, l, e), chunkHost: (c) => ram.chunks[c].host, mappings: () => [] },
      workerCapsets: [{ id: PROBE_CAPSET, name: 'probe', maxVersion: 0, maxSize: capsetData.length, data: capsetData, runner: PROBE }],
      workers: pool,
    });
    made.push({ dev, pool });
    dev.setAckedFeatures(opts.features ?? ALL);
    q = new VirtQueue(0, codec, { responds: true, execute: (c, queue) => dev.control(c, queue) }, () => {}, () => {});
    codec.setMemory(ram.asGuestMemory());
    expect(q.start({ size: ring.size, desc: ring.desc, avail: ring.avail, used: ring.used, lastAvail: 0, eventIdx: false, indirect: true })).toBeNull();
    next = 0;
  }

  beforeEach(() => setup());

  afterEach(async () => {
    for (const m of made.splice(0)) {
      m.dev.reset();
      await m.pool.close();
    }
  });

  /** Queue one command; resolves with its response bytes once its chain is used. */
  const send = (req: Uint8Array) => submitAndWait(ring, q, req, (next++ * 2) % ring.size);
  const type = async (req: Uint8Array) => new DataView((await send(req)).buffer).getUint32(0, true);
  const pending = <T>(p: Promise<T>) => Promise.race([p, new Promise<string>((r) => setTimeout(() => r('pending'), 100))]);

  /** size bytes of guest pages, every other page (scattered), as mem entry words. */
  function scatteredPages(size: number): { pages: bigint[]; words: number[] } {
    const pages: bigint[] = [], words: number[] = [];
    for (let at = 0; at < size; at += 4096) {
      const p = ram.alloc(4096, 4096);
      ram.alloc(4096, 4096);
      pages.push(p);
      words.push(Number(p & 0xffffffffn), Number(p >> 32n), 4096, 0);
    }
    return { pages, words };
  }

  function writePages(pages: bigint[], offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length;) {
      const at = offset + i, page = Math.floor(at / 4096), n = Math.min(4096 - (at % 4096), data.length - i);
      ram.write(pages[page] + BigInt(at % 4096), data.subarray(i, i + n));
      i += n;
    }
  }

  const createBlob = (id: number, mem: number, flags: number, size: number, entries: number[] = [], o: { blobId?: bigint; ctx?: number; nEntries?: number } = {}) =>
    type(request(Cmd.RESOURCE_CREATE_BLOB, [id, mem, flags, o.nEntries ?? entries.length / 4, Number((o.blobId ?? 0n) & 0xffffffffn), Number((o.blobId ?? 0n) >> 32n),
      size % 2 ** 32, Math.floor(size / 2 ** 32), ...entries], { ctx: o.ctx ?? 0 }));

  /** A guest blob of `size` bytes on scattered pages. */
  async function guestBlob(id: number, size: number, flags: number = SHAREABLE): Promise<bigint[]> {
    const { pages, words } = scatteredPages(size);
    expect(await createBlob(id, BlobMem.GUEST, flags, size, words)).toBe(Resp.OK_NODATA);
    return pages;
  }

  const scanoutBlob = (scanout: number, id: number, w: number, h: number, format: number, stride: number, offset: number, rect = [0, 0, w, h]) =>
    type(request(Cmd.SET_SCANOUT_BLOB, [...rect, scanout, id, w, h, format, 0, stride, 0, 0, 0, offset, 0, 0, 0]));
  const flush = (id: number, x: number, y: number, w: number, h: number) => type(request(Cmd.RESOURCE_FLUSH, [x, y, w, h, id, 0]));
  const mapBlob = (id: number, offset: number) => send(request(Cmd.RESOURCE_MAP_BLOB, [id, 0, offset % 2 ** 32, Math.floor(offset / 2 ** 32)]));
  const respType = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(0, true);
  const unref = (id: number) => type(request(Cmd.RESOURCE_UNREF, [id, 0]));
  const ctxCreate = (ctx: number) => type(request(Cmd.CTX_CREATE, [4, PROBE_CAPSET, 0x626f7270, ...new Array(15).fill(0)], { ctx }));
  const hostBlob = (id: number, size: number, flags: number = MAPPABLE, ctx = 1, blobId = 7n) => createBlob(id, BlobMem.HOST3D, flags, size, [], { ctx, blobId });

  it('is offered with RESOURCE_UUID in 2D mode and refused unless negotiated', async () => {
    expect(dev.features() & bit(GpuFeature.RESOURCE_BLOB)).not.toBe(0n);
    expect(dev.features() & bit(GpuFeature.RESOURCE_UUID)).not.toBe(0n);
    setup({ features: ALL & ~bit(GpuFeature.RESOURCE_BLOB) });
    const { words } = scatteredPages(4096);
    expect(await createBlob(1, BlobMem.GUEST, SHAREABLE, 4096, words)).toBe(Resp.ERR_UNSPEC);
    expect(await scanoutBlob(0, 1, 16, 16, Format.B8G8R8X8_UNORM, 64, 0)).toBe(Resp.ERR_UNSPEC);
    expect(respType(await mapBlob(1, 0))).toBe(Resp.ERR_UNSPEC);
  });

  it('creates guest blobs and refuses bad ids, flags, sizes, blob_mem and blob_id', async () => {
    const { words } = scatteredPages(8192);
    expect(await createBlob(0, BlobMem.GUEST, 0, 8192, words)).toBe(Resp.ERR_INVALID_RESOURCE_ID);
    expect(await createBlob(1, BlobMem.GUEST, 8, 8192, words)).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await createBlob(1, BlobMem.GUEST, 0, 0, words)).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await createBlob(1, 0, 0, 8192, words)).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await createBlob(1, 4, 0, 8192, words)).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await createBlob(1, BlobMem.GUEST, 0, 8193, words)).toBe(Resp.ERR_INVALID_PARAMETER); // more than the entries hold
    expect(await createBlob(1, BlobMem.GUEST, 0, 2 ** 53, words)).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await createBlob(1, BlobMem.GUEST, 0, 8192, words, { blobId: 5n })).toBe(Resp.ERR_INVALID_PARAMETER);
    // An entry count beyond the request's bytes, and an entry outside guest memory, are the codec's.
    expect(await createBlob(1, BlobMem.GUEST, 0, 8192, words, { nEntries: 3 })).toBe(Resp.ERR_UNSPEC);
    expect(await createBlob(1, BlobMem.GUEST, 0, 4096, [0, 0x10, 4096, 0])).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(dev.budget.inUse).toBe(0);
    expect(await createBlob(1, BlobMem.GUEST, SHAREABLE | MAPPABLE | CROSS_DEVICE, 8192, words)).toBe(Resp.OK_NODATA);
    expect(await createBlob(1, BlobMem.GUEST, 0, 8192, words)).toBe(Resp.ERR_INVALID_RESOURCE_ID);
    expect(await type(request(Cmd.RESOURCE_CREATE_2D, [1, Format.B8G8R8X8_UNORM, 4, 4]))).toBe(Resp.ERR_INVALID_RESOURCE_ID);
    expect(dev.budget.inUse).toBeGreaterThan(0);
    expect(await unref(1)).toBe(Resp.OK_NODATA);
    expect(await unref(1)).toBe(Resp.ERR_INVALID_RESOURCE_ID);
    expect(dev.budget.inUse).toBe(0);
  });

  it('scans out a framebuffer inside a guest blob in every 2D format, with stride and offset', async () => {
    // One pixel with bytes 0x11,0x22,0x33,0x44 in memory, per format: the B,G,R word shown.
    const cases: [number, number][] = [
      [Format.B8G8R8A8_UNORM, 0x44332211], [Format.B8G8R8X8_UNORM, 0x44332211],
      [Format.A8R8G8B8_UNORM, 0x11223344], [Format.X8R8G8B8_UNORM, 0x11223344],
      [Format.R8G8B8A8_UNORM, 0x44112233], [Format.R8G8B8X8_UNORM, 0x44112233],
      [Format.X8B8G8R8_UNORM, 0x11443322], [Format.A8B8G8R8_UNORM, 0x11443322],
    ];
    const W = 40, H = 20, stride = 256, offset = 1000, size = offset + stride * H;
    const pages = await guestBlob(1, Math.ceil(size / 4096) * 4096);
    for (const [fmt, want] of cases) {
      const px = new Uint8Array(stride * H).fill(0xee);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) px.set([0x11, 0x22, 0x33, 0x44], y * stride + x * 4);
      writePages(pages, offset, px);
      display.updates = [];
      expect(await scanoutBlob(0, 1, W, H, fmt, stride, offset)).toBe(Resp.OK_NODATA);
      // Shown at once, whole.
      expect(display.updates).toHaveLength(1);
      const u = display.updates[0];
      expect([u.scanout, u.x, u.y, u.w, u.h]).toEqual([0, 0, 0, W, H]);
      expect(new Set(u.px)).toEqual(new Set([want >>> 0]));
    }
    expect(display.scanouts).toEqual([[0, W, H]]);
  });

  it('flushes what changed in the blob, clipped to the shown rectangle', async () => {
    const W = 64, H = 32, stride = W * 4;
    const pages = await guestBlob(1, stride * H);
    // Show only the rect 16x8+8+4 of the framebuffer.
    expect(await scanoutBlob(0, 1, W, H, Format.B8G8R8X8_UNORM, stride, 0, [8, 4, 16, 8])).toBe(Resp.OK_NODATA);
    expect(display.scanouts).toEqual([[0, 16, 8]]);
    const row = new Uint32Array(W).map((_, x) => 0xff000000 | x);
    for (let y = 0; y < H; y++) writePages(pages, y * stride, new Uint8Array(row.map((v) => v | (y << 8)).buffer));
    display.updates = [];
    // The guest says the dumb buffer changed (Linux sends this): nothing to copy, the flush reads the blob.
    expect(await type(request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, W, H, 0, 0, 1, 0]))).toBe(Resp.OK_NODATA);
    expect(await flush(1, 20, 0, 40, 6)).toBe(Resp.OK_NODATA);
    expect(display.updates).toHaveLength(1);
    const u = display.updates[0];
    // Flush rect ∩ shown rect = x 20..24, y 4..6, in scanout coordinates 12..16, 0..2.
    expect([u.x, u.y, u.w, u.h]).toEqual([12, 0, 4, 2]);
    expect(Array.from(u.px).map((v) => v & 0xffff)).toEqual([0x414, 0x415, 0x416, 0x417, 0x514, 0x515, 0x516, 0x517]);
    display.updates = [];
    expect(await flush(1, 0, 0, 4, 4)).toBe(Resp.OK_NODATA); // outside what is shown
    expect(await flush(1, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff)).toBe(Resp.OK_NODATA);
    expect(display.updates).toHaveLength(0);
  });

  it('refuses bad SET_SCANOUT_BLOB geometry, formats, ids and kinds', async () => {
    const W = 32, H = 16;
    await guestBlob(1, W * H * 4);
    expect(await type(request(Cmd.RESOURCE_CREATE_2D, [2, Format.B8G8R8X8_UNORM, W, H]))).toBe(Resp.OK_NODATA);
    const bad: [unknown[], number][] = [
      [[16, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 0], Resp.ERR_INVALID_SCANOUT_ID],
      [[0, 9, W, H, Format.B8G8R8X8_UNORM, W * 4, 0], Resp.ERR_INVALID_RESOURCE_ID],
      [[0, 2, W, H, Format.B8G8R8X8_UNORM, W * 4, 0], Resp.ERR_INVALID_PARAMETER], // a 2D resource
      [[0, 1, W, H, 0, W * 4, 0], Resp.ERR_INVALID_PARAMETER],
      [[0, 1, W, H, 9999, W * 4, 0], Resp.ERR_INVALID_PARAMETER],
      [[0, 1, 0, H, Format.B8G8R8X8_UNORM, W * 4, 0], Resp.ERR_INVALID_PARAMETER],
      [[0, 1, 16385, 1, Format.B8G8R8X8_UNORM, 16385 * 4, 0], Resp.ERR_INVALID_PARAMETER],
      [[0, 1, W, H, Format.B8G8R8X8_UNORM, W * 4 - 4, 0], Resp.ERR_INVALID_PARAMETER], // stride below a row
      [[0, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 4], Resp.ERR_INVALID_PARAMETER], // ends 4 bytes past the blob
      [[0, 1, W, H, Format.B8G8R8X8_UNORM, 0xffffffff, 0], Resp.ERR_INVALID_PARAMETER], // stride * height beyond 2^32
      [[0, 1, W, 1, Format.B8G8R8X8_UNORM, W * 4, 0xffffff80], Resp.ERR_INVALID_PARAMETER], // offset + row wraps 32 bits
    ];
    for (const [[s, id, w, h, f, stride, off], want] of bad) {
      expect(await scanoutBlob(s as number, id as number, w as number, h as number, f as number, stride as number, off as number)).toBe(want);
    }
    // The shown rectangle inside the framebuffer, and not empty.
    expect(await scanoutBlob(0, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 0, [1, 0, W, H])).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await scanoutBlob(0, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 0, [0xffffffff, 0, 2, H])).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await scanoutBlob(0, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 0, [0, 0, 0, H])).toBe(Resp.ERR_INVALID_PARAMETER);
    // SET_SCANOUT with a blob is refused (it has no 2D geometry).
    expect(await type(request(Cmd.SET_SCANOUT, [0, 0, W, H, 0, 1]))).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(display.scanouts).toEqual([]);
  });

  it('keeps the framebuffer charged while shown, releases it when replaced, disabled or unreffed', async () => {
    const W = 64, H = 64;
    await guestBlob(1, W * H * 4);
    await guestBlob(2, W * H * 4);
    const base = dev.budget.inUse;
    expect(await scanoutBlob(0, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 0)).toBe(Resp.OK_NODATA);
    expect(dev.budget.inUse).toBeGreaterThanOrEqual(base + W * H * 4);
    expect(await scanoutBlob(1, 1, W, H, Format.B8G8R8X8_UNORM, W * 4, 0)).toBe(Resp.OK_NODATA); // mirrored
    expect(await scanoutBlob(0, 2, W, H, Format.B8G8R8X8_UNORM, W * 4, 0)).toBe(Resp.OK_NODATA); // page flip
    expect(await scanoutBlob(0, 2, W, H, Format.B8G8R8X8_UNORM, W * 4, 0)).toBe(Resp.OK_NODATA); // same again
    const two = dev.budget.inUse;
    expect(two - base).toBeGreaterThanOrEqual(2 * W * H * 4);
    expect(two - base).toBeLessThan(3 * W * H * 4);
    expect(await type(request(Cmd.SET_SCANOUT, [0, 0, 0, 0, 1, 0]))).toBe(Resp.OK_NODATA); // disable scanout 1
    expect(await unref(2)).toBe(Resp.OK_NODATA); // takes scanout 0 down
    expect(display.scanouts.slice(-2)).toEqual([[1, 0, 0], [0, 0, 0]]);
    expect(await unref(1)).toBe(Resp.OK_NODATA);
    expect(dev.budget.inUse).toBe(0);
    // A framebuffer that does not fit the budget is refused.
    setup({ maxHostMemory: 256 << 10 });
    await guestBlob(3, 512 * 512 * 4);
    expect(await scanoutBlob(0, 3, 512, 512, Format.B8G8R8X8_UNORM, 2048, 0)).toBe(Resp.ERR_OUT_OF_MEMORY);
    expect(await scanoutBlob(0, 3, 512, 512, Format.B8G8R8X8_UNORM, 2048, 0, [0, 0, 64, 64])).toBe(Resp.OK_NODATA);
  });

  it('backing: entries later for a blob created without, DETACH refused, no second ATTACH', async () => {
    expect(await createBlob(1, BlobMem.GUEST, SHAREABLE, 8192)).toBe(Resp.OK_NODATA);
    expect(await scanoutBlob(0, 1, 32, 16, Format.B8G8R8X8_UNORM, 128, 0)).toBe(Resp.ERR_UNSPEC); // no memory yet
    const small = scatteredPages(4096);
    expect(await type(request(Cmd.RESOURCE_ATTACH_BACKING, [1, 1, ...small.words]))).toBe(Resp.ERR_INVALID_PARAMETER);
    const { pages, words } = scatteredPages(8192);
    expect(await type(request(Cmd.RESOURCE_ATTACH_BACKING, [1, 2, ...words]))).toBe(Resp.OK_NODATA);
    expect(await type(request(Cmd.RESOURCE_ATTACH_BACKING, [1, 2, ...words]))).toBe(Resp.ERR_UNSPEC);
    writePages(pages, 0, new Uint8Array(8192).fill(0x5a));
    expect(await scanoutBlob(0, 1, 32, 16, Format.B8G8R8X8_UNORM, 128, 0)).toBe(Resp.OK_NODATA);
    expect(display.updates.at(-1)!.px[0] >>> 0).toBe(0x5a5a5a5a);
    expect(await type(request(Cmd.RESOURCE_DETACH_BACKING, [1, 0]))).toBe(Resp.ERR_UNSPEC);
  });

  it('uses the first 64x64 pixels of a blob as the cursor, re-read at every UPDATE_CURSOR', async () => {
    const pages = await guestBlob(1, 64 * 64 * 4);
    await guestBlob(2, 4096);
    const cursorCodec = Codec.create();
    const cursorRing = new MockRing(ram, 16);
    cursorRing.setup(cursorCodec);
    const cursor = (id: number) => {
      const r = ram.alloc(64, 8);
      ram.write(r, request(Cmd.UPDATE_CURSOR, [0, 10, 20, 0, id, 3, 4]));
      cursorRing.addChain([{ addr: r, len: 64 }]);
      cursorCodec.pop(0);
      cursorCodec.decode(false);
      dev.cursor(cursorCodec);
      cursorCodec.push(0, cursorCodec.rec[R_SLOT], 0);
    };
    writePages(pages, 0, new Uint8Array(64 * 64 * 4).map((_, i) => [0x11, 0x22, 0x33, 0x44][i % 4]));
    cursor(1);
    writePages(pages, 64 * 64 * 4 - 4, Uint8Array.of(0x55, 0x66, 0x77, 0x88));
    cursor(1);
    cursor(2); // too small: ignored
    expect(display.cursorImages.map((img) => [img[0] >>> 0, img[4095] >>> 0])).toEqual([[0x44332211, 0x44332211], [0x44332211, 0x88776655]]);
  });

  it('assigns UUIDs to shareable blobs only', async () => {
    await guestBlob(1, 4096, SHAREABLE);
    await guestBlob(2, 4096, CROSS_DEVICE);
    await guestBlob(3, 4096, 0);
    const uuid = async (id: number) => send(request(Cmd.RESOURCE_ASSIGN_UUID, [id, 0]));
    const a = await uuid(1), b = await uuid(2);
    expect([respType(a), respType(b)]).toEqual([Resp.OK_RESOURCE_UUID, Resp.OK_RESOURCE_UUID]);
    expect(a.subarray(24, 40)).not.toEqual(b.subarray(24, 40));
    expect(respType(await uuid(3))).toBe(Resp.ERR_INVALID_PARAMETER);
  });

  it('host blobs: made by the context in the header, with VIRGL, without entries', async () => {
    expect(await hostBlob(1, 65536)).toBe(Resp.ERR_INVALID_CONTEXT_ID); // no such context
    expect(await ctxCreate(1)).toBe(Resp.OK_NODATA);
    expect(await hostBlob(1, 65536, MAPPABLE, 1, 0n)).toBe(Resp.ERR_INVALID_PARAMETER); // the probe refuses blob id 0
    expect(await createBlob(1, BlobMem.HOST3D, MAPPABLE, 4096, scatteredPages(4096).words, { ctx: 1, blobId: 7n })).toBe(Resp.ERR_INVALID_PARAMETER);
    const before = dev.budget.inUse;
    expect(await hostBlob(1, 64 << 20)).toBe(Resp.ERR_OUT_OF_MEMORY); // charged before the context is asked
    expect(dev.budget.inUse).toBe(before);
    expect(await hostBlob(1, 65536)).toBe(Resp.OK_NODATA);
    expect(dev.budget.inUse).toBeGreaterThanOrEqual(before + 65536);
    // HOST3D_GUEST: host memory plus guest pages.
    expect(await createBlob(2, BlobMem.HOST3D_GUEST, MAPPABLE, 8192, scatteredPages(8192).words, { ctx: 1, blobId: 8n })).toBe(Resp.OK_NODATA);
    // CTX_ATTACH of a blob hands the context its memory.
    expect(await type(request(Cmd.CTX_ATTACH_RESOURCE, [2, 0], { ctx: 1 }))).toBe(Resp.OK_NODATA);
    setup({ features: ALL & ~bit(GpuFeature.VIRGL) });
    expect(await hostBlob(1, 65536)).toBe(Resp.ERR_INVALID_PARAMETER);
  });

  it('MAP_BLOB without a host-visible region is refused; the rest of blob works', async () => {
    expect(await ctxCreate(1)).toBe(Resp.OK_NODATA);
    expect(await hostBlob(1, 65536)).toBe(Resp.OK_NODATA);
    expect(respType(await mapBlob(1, 0))).toBe(Resp.ERR_UNSPEC);
    expect(await type(request(Cmd.RESOURCE_UNMAP_BLOB, [1, 0]))).toBe(Resp.ERR_INVALID_PARAMETER);
  });

  describe('with a host-visible region', () => {
    let region: FakeRegion;
    const SIZE = 1 << 20;

    beforeEach(async () => {
      region = new FakeRegion(SIZE);
      dev.setHostVisible(region);
      expect(await ctxCreate(1)).toBe(Resp.OK_NODATA);
    });

    it('maps a host blob, answers its cache type, and the guest sees the same memory as the scanout', async () => {
      expect(await hostBlob(1, 16384)).toBe(Resp.OK_NODATA);
      const r = await mapBlob(1, 0x10000);
      expect(respType(r)).toBe(Resp.OK_MAP_INFO);
      expect(r.length).toBe(32);
      expect(new DataView(r.buffer, r.byteOffset).getUint32(24, true)).toBe(1); // the probe's cache type
      expect(region.calls).toEqual(['map 0x10000 0x4000 @0 rw']);
      // Write through the region's view of the mapping; the blob's scanout shows it.
      const view = new Uint32Array(region.views.get(0x10000)!.buffer);
      view.fill(0xff123456);
      expect(await scanoutBlob(0, 1, 64, 64, Format.B8G8R8X8_UNORM, 256, 0)).toBe(Resp.OK_NODATA);
      expect(new Set(display.updates.at(-1)!.px)).toEqual(new Set([0xff123456]));
      expect(await type(request(Cmd.RESOURCE_UNMAP_BLOB, [1, 0]))).toBe(Resp.OK_NODATA);
      expect(region.calls).toEqual(['map 0x10000 0x4000 @0 rw', 'unmap 0x10000 0x4000']);
      expect(await type(request(Cmd.RESOURCE_UNMAP_BLOB, [1, 0]))).toBe(Resp.ERR_INVALID_PARAMETER);
      expect(respType(await mapBlob(1, 0))).toBe(Resp.OK_MAP_INFO); // again, elsewhere
    });

    it('rounds the length to pages and checks offset, bounds, overlaps, flags and kinds', async () => {
      expect(await hostBlob(1, 5000)).toBe(Resp.OK_NODATA);
      expect(await hostBlob(2, 8192)).toBe(Resp.OK_NODATA);
      expect(await hostBlob(3, 8192, SHAREABLE)).toBe(Resp.OK_NODATA); // not MAPPABLE
      await guestBlob(4, 8192, MAPPABLE);
      expect(await type(request(Cmd.RESOURCE_CREATE_2D, [5, Format.B8G8R8X8_UNORM, 4, 4]))).toBe(Resp.OK_NODATA);
      const bad: [number, number, number][] = [
        [2, 0x800, Resp.ERR_INVALID_PARAMETER], // not page-aligned
        [2, SIZE - 4096, Resp.ERR_INVALID_PARAMETER], // runs past the region
        [2, SIZE, Resp.ERR_INVALID_PARAMETER],
        [2, 2 ** 52, Resp.ERR_INVALID_PARAMETER],
        [2, 2 ** 64 - 4096, Resp.ERR_INVALID_PARAMETER],
        [3, 0, Resp.ERR_INVALID_PARAMETER], // not MAPPABLE
        [4, 0, Resp.ERR_INVALID_PARAMETER], // guest memory
        [5, 0, Resp.ERR_INVALID_PARAMETER], // 2D resource
        [9, 0, Resp.ERR_INVALID_RESOURCE_ID],
        [1, 0, Resp.ERR_INVALID_PARAMETER], // 5000 bytes: its memfd is not a whole number of pages
      ];
      for (const [id, off, want] of bad) expect([id, off, respType(await mapBlob(id, off))]).toEqual([id, off, want]);
      expect(region.calls).toEqual([]);
      expect(respType(await mapBlob(2, SIZE - 8192))).toBe(Resp.OK_MAP_INFO); // exactly at the end
      expect(respType(await mapBlob(2, 0))).toBe(Resp.ERR_INVALID_PARAMETER); // already mapped
      expect(await hostBlob(6, 3 * 4096)).toBe(Resp.OK_NODATA);
      expect(respType(await mapBlob(6, SIZE - 12288))).toBe(Resp.ERR_INVALID_PARAMETER); // overlaps blob 2
      expect(respType(await mapBlob(6, SIZE - 16384))).toBe(Resp.ERR_INVALID_PARAMETER);
      expect(respType(await mapBlob(6, SIZE - 20480))).toBe(Resp.OK_MAP_INFO); // right before it
      expect(region.calls).toEqual([`map 0x${(SIZE - 8192).toString(16)} 0x2000 @0 rw`, `map 0x${(SIZE - 20480).toString(16)} 0x3000 @0 rw`]);
    });

    it('a refused map is an error and leaves the blob unmapped', async () => {
      expect(await hostBlob(1, 8192)).toBe(Resp.OK_NODATA);
      region.refuse = true;
      expect(respType(await mapBlob(1, 0))).toBe(Resp.ERR_UNSPEC);
      region.refuse = false;
      expect(respType(await mapBlob(1, 0))).toBe(Resp.OK_MAP_INFO);
    });

    it('defers the answer until the front-end mapped it; the queue goes on meanwhile', async () => {
      expect(await hostBlob(1, 8192)).toBe(Resp.OK_NODATA);
      region.hold = true;
      const m = mapBlob(1, 0);
      expect(await pending(m)).toBe('pending');
      expect(await type(request(Cmd.RESOURCE_CREATE_2D, [2, Format.B8G8R8X8_UNORM, 4, 4]))).toBe(Resp.OK_NODATA);
      // A fenced one keeps its place too.
      const fenced = send(request(Cmd.RESOURCE_MAP_BLOB, [1, 0, 0x4000, 0], { flags: FLAG_FENCE, fence: 9n }));
      expect(respType(await fenced)).toBe(Resp.ERR_INVALID_PARAMETER); // blob 1 is being mapped already
      region.release();
      expect(respType(await m)).toBe(Resp.OK_MAP_INFO);
    });

    it('unmaps at UNREF, not at reset; a map over a range still being unmapped waits for it', async () => {
      const fds = memfdCount();
      expect(await hostBlob(1, 8192)).toBe(Resp.OK_NODATA);
      expect(await hostBlob(2, 8192)).toBe(Resp.OK_NODATA);
      expect(respType(await mapBlob(1, 0))).toBe(Resp.OK_MAP_INFO);
      region.hold = true;
      // As Linux frees a blob: UNREF of the mapped blob, then a new blob mapped at the same offset.
      expect(await unref(1)).toBe(Resp.OK_NODATA);
      const m = mapBlob(2, 0);
      expect(await pending(m)).toBe('pending');
      expect(region.calls).toEqual(['map 0x0 0x2000 @0 rw', 'unmap 0x0 0x2000']);
      region.hold = false;
      region.release();
      expect(respType(await m)).toBe(Resp.OK_MAP_INFO);
      expect(region.calls.at(-1)).toBe('map 0x0 0x2000 @0 rw');
      expect(await unref(2)).toBe(Resp.OK_NODATA);
      // Every blob's memfd closed (closes may trail the answer: the worker's dup goes on its thread).
      for (let i = 0; i < 100 && memfdCount() > fds; i++) await new Promise((r) => setTimeout(r, 20));
      expect(memfdCount()).toBe(fds);
      expect(await hostBlob(3, 8192)).toBe(Resp.OK_NODATA);
      expect(respType(await mapBlob(3, 0))).toBe(Resp.OK_MAP_INFO);
      // A device reset: the front-end drops the reset device's mappings itself (vhost-user
      // SHMEM), so nothing is unmapped from here; the memory is released all the same.
      const calls = region.calls.length;
      dev.reset();
      await new Promise((r) => setTimeout(r, 20));
      expect(region.calls.length).toBe(calls);
      expect(dev.budget.inUse).toBe(0);
      for (let i = 0; i < 100 && memfdCount() > fds; i++) await new Promise((r) => setTimeout(r, 20));
      expect(memfdCount()).toBe(fds);
    });

    it('a fenced MAP_BLOB answers with its fence once mapped', async () => {
      expect(await hostBlob(1, 8192)).toBe(Resp.OK_NODATA);
      const r = await send(request(Cmd.RESOURCE_MAP_BLOB, [1, 0, 0, 0], { flags: FLAG_FENCE, fence: 42n }));
      const v = new DataView(r.buffer, r.byteOffset);
      expect([v.getUint32(0, true), v.getUint32(4, true) & FLAG_FENCE, v.getBigUint64(8, true), v.getUint32(24, true)]).toEqual([Resp.OK_MAP_INFO, FLAG_FENCE, 42n, 1]);
    });
  });
});
