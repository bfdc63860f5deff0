import { describe, it, expect, beforeEach } from 'vitest';
import { Codec } from '../../src/queues/codec.js';
import { R_SLOT } from '../../src/queues/layout.js';
import { GpuDevice } from '../../src/device/gpu-device.js';
import { Cmd, Resp } from '../../src/device/protocol.js';
import { Format } from '../../src/device/formats.js';
import { MockRam, MockRing, request } from './mock-ring.js';
import { FakeDisplay } from './fake-display.js';

describe('2D device', () => {
  let ram: MockRam, ring: MockRing, codec: Codec, display: FakeDisplay, dev: GpuDevice;

  beforeEach(() => {
    ram = new MockRam(0x1_0000_0000n, [8 << 20]);
    ring = new MockRing(ram, 64);
    codec = Codec.create();
    ring.setup(codec);
    display = new FakeDisplay();
    dev = new GpuDevice({
      maxHostMemory: 4 << 20,
      display,
      memory: { generation: 1, translate: (g, l, e) => codec.translate(g, l, e), chunkHost: (c) => ram.chunks[c].host, mappings: () => [] },
    });
    dev.setAckedFeatures(dev.features());
  });

  /** Run one control command; returns [response type, full response bytes]. */
  async function run(req: Uint8Array, respLen = 1100): Promise<[number, Uint8Array]> {
    const r = ram.alloc(req.length, 8), w = ram.alloc(respLen, 8);
    ram.write(r, req);
    ring.addChain([{ addr: r, len: req.length }, { addr: w, len: respLen, write: true }]);
    codec.pop(0);
    codec.decode(true);
    const slot = codec.rec[R_SLOT];
    const len = await dev.control(codec);
    const n = codec.push(0, slot, len);
    const resp = ram.read(w, n);
    return [new DataView(resp.buffer).getUint32(0, true), resp];
  }

  const create = (id: number, fmt: number, w: number, h: number) => run(request(Cmd.RESOURCE_CREATE_2D, [id, fmt, w, h]));

  /** Backing of `bytes` in 4 KiB pages, deliberately scattered (every other page). */
  async function attachScattered(id: number, bytes: number): Promise<bigint[]> {
    const pages: bigint[] = [];
    for (let at = 0; at < bytes; at += 4096) {
      pages.push(ram.alloc(4096, 4096));
      ram.alloc(4096, 4096);
    }
    const words = [id, pages.length];
    for (const p of pages) words.push(Number(p & 0xffffffffn), Number(p >> 32n), 4096, 0);
    const [t] = await run(request(Cmd.RESOURCE_ATTACH_BACKING, words));
    expect(t).toBe(Resp.OK_NODATA);
    return pages;
  }

  function writeBacking(pages: bigint[], offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      ram.write(pages[Math.floor(at / 4096)] + BigInt(at % 4096), data.subarray(i, i + 1));
    }
  }

  it('creates, shows, transfers and flushes, converting each format to x8r8g8b8', async () => {
    // One pixel with bytes 0x11,0x22,0x33,0x44 in memory, per format: expected B,G,R word.
    const cases: [number, number][] = [
      [Format.B8G8R8A8_UNORM, 0x44332211], [Format.B8G8R8X8_UNORM, 0x44332211],
      [Format.A8R8G8B8_UNORM, 0x11223344], [Format.X8R8G8B8_UNORM, 0x11223344],
      [Format.R8G8B8A8_UNORM, 0x44112233], [Format.R8G8B8X8_UNORM, 0x44112233],
      [Format.X8B8G8R8_UNORM, 0x11443322], [Format.A8B8G8R8_UNORM, 0x11443322],
    ];
    let id = 1;
    for (const [fmt, want] of cases) {
      expect((await create(id, fmt, 32, 16))[0]).toBe(Resp.OK_NODATA);
      const pages = await attachScattered(id, 32 * 16 * 4);
      const px = new Uint8Array(32 * 16 * 4);
      for (let i = 0; i < px.length; i += 4) px.set([0x11, 0x22, 0x33, 0x44], i);
      writeBacking(pages, 0, px);
      expect((await run(request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, 32, 16, 0, 0, id, 0])))[0]).toBe(Resp.OK_NODATA);
      expect((await run(request(Cmd.SET_SCANOUT, [0, 0, 32, 16, 0, id])))[0]).toBe(Resp.OK_NODATA);
      display.updates = [];
      expect((await run(request(Cmd.RESOURCE_FLUSH, [4, 2, 8, 3, id, 0])))[0]).toBe(Resp.OK_NODATA);
      expect(display.updates).toHaveLength(1);
      const u = display.updates[0];
      expect([u.scanout, u.x, u.y, u.w, u.h]).toEqual([0, 4, 2, 8, 3]);
      expect(u.px[0] >>> 0).toBe(want >>> 0);
      id++;
    }
  });

  it('applies the transfer offset/stride rule for a partial rectangle', async () => {
    await create(1, Format.B8G8R8X8_UNORM, 16, 8);
    const pages = await attachScattered(1, 16 * 8 * 4);
    const img = new Uint8Array(16 * 8 * 4);
    const v = new DataView(img.buffer);
    for (let y = 0; y < 8; y++) for (let x = 0; x < 16; x++) v.setUint32((y * 16 + x) * 4, (y << 8) | x, true);
    writeBacking(pages, 0, img);
    // rect 4x2 at (3,5): offset = 5*stride + 3*4
    await run(request(Cmd.TRANSFER_TO_HOST_2D, [3, 5, 4, 2, 5 * 64 + 12, 0, 1, 0]));
    await run(request(Cmd.SET_SCANOUT, [0, 0, 16, 8, 0, 1]));
    const full = display.updates.at(-1)!; // set_scanout pushes the whole rect
    expect(full.px[5 * 16 + 3]).toBe((5 << 8) | 3);
    expect(full.px[6 * 16 + 6]).toBe((6 << 8) | 6);
    expect(full.px[4 * 16 + 3]).toBe(0); // outside the transferred rect
    expect(full.px[5 * 16 + 7]).toBe(0);
  });

  it('sends updates in scanout coordinates for a scanout showing part of a resource', async () => {
    await create(1, Format.B8G8R8X8_UNORM, 64, 64);
    await run(request(Cmd.SET_SCANOUT, [16, 16, 32, 32, 1, 1]));
    display.updates = [];
    await run(request(Cmd.RESOURCE_FLUSH, [0, 0, 24, 24, 1, 0]));
    expect(display.updates.map((u) => [u.scanout, u.x, u.y, u.w, u.h])).toEqual([[1, 0, 0, 8, 8]]);
    display.updates = [];
    await run(request(Cmd.RESOURCE_FLUSH, [0, 0, 8, 8, 1, 0])); // outside the scanout: nothing
    expect(display.updates).toHaveLength(0);
  });

  const errors: [string, () => Uint8Array, number][] = [
    ['resource id 0', () => request(Cmd.RESOURCE_CREATE_2D, [0, 1, 4, 4]), Resp.ERR_INVALID_RESOURCE_ID],
    ['unknown format', () => request(Cmd.RESOURCE_CREATE_2D, [9, 99, 4, 4]), Resp.ERR_INVALID_PARAMETER],
    ['zero width', () => request(Cmd.RESOURCE_CREATE_2D, [9, 1, 0, 4]), Resp.ERR_INVALID_PARAMETER],
    ['65536x65536', () => request(Cmd.RESOURCE_CREATE_2D, [9, 1, 65536, 65536]), Resp.ERR_INVALID_PARAMETER],
    ['over the memory cap', () => request(Cmd.RESOURCE_CREATE_2D, [9, 1, 4096, 4096]), Resp.ERR_OUT_OF_MEMORY],
    ['unref of an unknown resource', () => request(Cmd.RESOURCE_UNREF, [77, 0]), Resp.ERR_INVALID_RESOURCE_ID],
    ['scanout 16', () => request(Cmd.SET_SCANOUT, [0, 0, 4, 4, 16, 1]), Resp.ERR_INVALID_SCANOUT_ID],
    ['scanout 0xffffffff', () => request(Cmd.SET_SCANOUT, [0, 0, 4, 4, 0xffffffff, 0]), Resp.ERR_INVALID_SCANOUT_ID],
    ['scanout of an unknown resource', () => request(Cmd.SET_SCANOUT, [0, 0, 4, 4, 0, 55]), Resp.ERR_INVALID_RESOURCE_ID],
    ['scanout rect outside the resource', () => request(Cmd.SET_SCANOUT, [1, 0, 8, 8, 0, 1]), Resp.ERR_INVALID_PARAMETER],
    ['scanout rect wrapping 32 bits', () => request(Cmd.SET_SCANOUT, [0xfffffff0, 0, 0x20, 8, 0, 1]), Resp.ERR_INVALID_PARAMETER],
    ['flush rect outside', () => request(Cmd.RESOURCE_FLUSH, [0, 0, 9, 8, 1, 0]), Resp.ERR_INVALID_PARAMETER],
    ['transfer without backing', () => request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, 8, 8, 0, 0, 1, 0]), Resp.ERR_UNSPEC],
    ['detach without backing', () => request(Cmd.RESOURCE_DETACH_BACKING, [1, 0]), Resp.ERR_UNSPEC],
    ['get_capset_info in 2D', () => request(Cmd.GET_CAPSET_INFO, [0, 0]), Resp.ERR_INVALID_PARAMETER],
    ['get_capset in 2D', () => request(Cmd.GET_CAPSET, [1, 0]), Resp.ERR_INVALID_PARAMETER],
    ['3D command in 2D', () => request(Cmd.CTX_CREATE, new Array(18).fill(0)), Resp.ERR_UNSPEC],
    ['edid of scanout 16', () => request(Cmd.GET_EDID, [16, 0]), Resp.ERR_INVALID_SCANOUT_ID],
    ['edid of a scanout QEMU does not have', () => request(Cmd.GET_EDID, [3, 0]), Resp.ERR_INVALID_SCANOUT_ID],
    ['unknown command', () => request(0x0777, [1, 2, 3]), Resp.ERR_UNSPEC],
    ['short request', () => request(Cmd.RESOURCE_CREATE_2D, [1]), Resp.ERR_UNSPEC],
  ];
  for (const [name, req, want] of errors) {
    it(`refuses ${name}`, async () => {
      await create(1, Format.B8G8R8A8_UNORM, 8, 8);
      expect((await run(req()))[0]).toBe(want);
      expect(display.edidAsked).toEqual([]);
    });
  }

  it('cursor: converts the image, and again only after the cursor resource was rewritten', async () => {
    expect((await create(7, Format.R8G8B8A8_UNORM, 64, 64))[0]).toBe(Resp.OK_NODATA);
    const pages = await attachScattered(7, 64 * 64 * 4);
    const cursor = async () => {
      const r = ram.alloc(64, 8);
      ram.write(r, request(Cmd.UPDATE_CURSOR, [0, 10, 20, 0, 7, 3, 4]));
      ring.addChain([{ addr: r, len: 64 }]);
      codec.pop(0);
      codec.decode(false);
      dev.cursor(codec);
      codec.push(0, codec.rec[R_SLOT], 0);
    };
    const paint = async (rgba: number[]) => {
      writeBacking(pages, 0, new Uint8Array(64 * 64 * 4).map((_, i) => rgba[i % 4]));
      expect((await run(request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, 64, 64, 0, 0, 7, 0])))[0]).toBe(Resp.OK_NODATA);
    };
    await paint([0x11, 0x22, 0x33, 0x44]);
    await cursor();
    await cursor();
    await paint([0x55, 0x66, 0x77, 0x88]);
    await cursor();
    expect(display.cursor).toEqual(Array(3).fill(['update', 0, 10, 20, 3, 4]));
    // R,G,B,A bytes -> a8r8g8b8 words.
    expect(display.cursorImages.map((img) => img[4095] >>> 0)).toEqual([0x44112233, 0x44112233, 0x88556677]);
  });

  it('refuses a transfer reading past the end of the backing', async () => {
    await create(1, Format.B8G8R8A8_UNORM, 8, 8);
    await attachScattered(1, 4096); // 8*8*4 = 256 bytes needed, ok
    expect((await run(request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, 8, 8, 4000, 0, 1, 0])))[0]).toBe(Resp.ERR_INVALID_PARAMETER);
    expect((await run(request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, 8, 8, 0, 0xffffffff, 1, 0])))[0]).toBe(Resp.ERR_INVALID_PARAMETER);
    expect((await run(request(Cmd.TRANSFER_TO_HOST_2D, [0, 0, 8, 8, 0, 0, 1, 0])))[0]).toBe(Resp.OK_NODATA);
  });

  it('echoes fences and ring index in the response header', async () => {
    const [t, resp] = await run(request(Cmd.RESOURCE_CREATE_2D, [3, 1, 4, 4], { flags: 3, fence: 0xabcdef0123n, ctx: 0, ring: 5 }));
    const v = new DataView(resp.buffer);
    expect(t).toBe(Resp.OK_NODATA);
    expect(v.getUint32(4, true)).toBe(3);
    expect(v.getBigUint64(8, true)).toBe(0xabcdef0123n);
    expect(v.getUint8(20)).toBe(5);
  });

  it('keeps the memory budget: unref gives memory back', async () => {
    expect((await create(1, 1, 1000, 1000))[0]).toBe(Resp.OK_NODATA); // 4 MB cap: ~3.8 MB used
    expect((await create(2, 1, 300, 300))[0]).toBe(Resp.ERR_OUT_OF_MEMORY);
    expect((await run(request(Cmd.RESOURCE_UNREF, [1, 0])))[0]).toBe(Resp.OK_NODATA);
    expect((await create(2, 1, 300, 300))[0]).toBe(Resp.OK_NODATA);
  });

  it('disables scanouts showing a resource that is unreferenced', async () => {
    await create(1, 1, 16, 16);
    await run(request(Cmd.SET_SCANOUT, [0, 0, 16, 16, 2, 1]));
    await run(request(Cmd.RESOURCE_UNREF, [1, 0]));
    expect(display.scanouts.at(-1)).toEqual([2, 0, 0]);
    expect((await create(1, 1, 16, 16))[0]).toBe(Resp.OK_NODATA); // id reusable
  });

  it('answers display info with a default mode and EDID from the display', async () => {
    const [t, resp] = await run(request(Cmd.GET_DISPLAY_INFO));
    expect(t).toBe(Resp.OK_DISPLAY_INFO);
    expect(resp.length).toBe(408);
    const v = new DataView(resp.buffer);
    expect([v.getUint32(32, true), v.getUint32(36, true), v.getUint32(40, true)]).toEqual([1280, 800, 1]);
    const [t2, e] = await run(request(Cmd.GET_EDID, [0, 0]));
    expect(t2).toBe(Resp.OK_EDID);
    expect(e.length).toBe(1056);
    expect(e[24]).toBe(128);
  });

  it('answers ERR_UNSPEC rather than a partial body when the response does not fit', async () => {
    const [t, resp] = await run(request(Cmd.GET_DISPLAY_INFO), 100);
    expect(t).toBe(Resp.ERR_UNSPEC);
    expect(resp.length).toBe(24);
  });

  it('assigns a stable UUID per resource', async () => {
    await create(1, 1, 4, 4);
    const [t, a] = await run(request(Cmd.RESOURCE_ASSIGN_UUID, [1, 0]));
    const [, b] = await run(request(Cmd.RESOURCE_ASSIGN_UUID, [1, 0]));
    expect(t).toBe(Resp.OK_RESOURCE_UUID);
    expect(a.subarray(24, 40)).toEqual(b.subarray(24, 40));
    expect(a[24 + 6] >> 4).toBe(4);
  });

  it('refuses EDID and UUID commands when their features were not negotiated', async () => {
    dev.setAckedFeatures(0n);
    await create(1, 1, 4, 4);
    expect((await run(request(Cmd.GET_EDID, [0, 0])))[0]).toBe(Resp.ERR_UNSPEC);
    expect((await run(request(Cmd.RESOURCE_ASSIGN_UUID, [1, 0])))[0]).toBe(Resp.ERR_UNSPEC);
  });
});
