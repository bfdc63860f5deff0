// VirglComponent end to end through its render server, on Mesa llvmpipe (EGL surfaceless). The
// server is the compiled dist/src/renderers/virgl/render-server.js: `npm test` builds first; run
// `npm run build:ts` after editing src/ when calling vitest directly.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { native } from '../../src/native.js';
import { packagePath } from '../../src/package-path.js';
import { VirglComponent, type VirglOpError } from '../../src/renderers/virgl/component.js';
import { backing, BGRA, bytesOf, CCMD, clear, hdr, tex2d } from './virgl-helpers.js';

const n = native();
const ENODEV = -19, EINVAL = -22;
const W = 64, H = 32;
const pixel = (buf: ArrayBuffer, off: number) => [...new Uint8Array(buf, off, 4)];

/** Every pixel of a WxH readback at offset 0 (stride W*4) equals px. */
function expectFilled(buf: ArrayBuffer, px: number[], w = W, h = H): void {
  const img = new Uint8Array(buf, 0, w * h * 4);
  for (let i = 0; i < w * h; i++) if (img[i * 4] !== px[0] || img[i * 4 + 2] !== px[2]) expect([...img.subarray(i * 4, i * 4 + 4)], `pixel ${i}`).toEqual(px);
}

let open: VirglComponent | null = null;
/** onError reports of the component opened in 'start'. */
const errors: VirglOpError[] = [];
afterAll(async () => {
  await open?.close();
});

describe('start', () => {
  it('has a compiled render server', () => {
    expect(existsSync(packagePath('dist/src/renderers/virgl/render-server.js')), 'run npm run build:ts first').toBe(true);
  });

  it('rejects with one clear message when the library cannot be loaded', async () => {
    await expect(VirglComponent.start({ capsets: ['virgl'], libraryPath: '/nonexistent/libvirglrenderer.so.1' }))
      .rejects.toThrow(/^virglrenderer: cannot load \/nonexistent\/libvirglrenderer\.so\.1: .*No such file/);
  });

  it('rejects with one clear message when virglrenderer refuses to initialise', async () => {
    await expect(VirglComponent.start({ capsets: ['virgl'], flags: -1 }))
      .rejects.toThrow(/^virglrenderer: init with flags 0xffffffff failed: EINVAL$/);
  });

  it('refuses rings too small for its messages', async () => {
    await expect(VirglComponent.start({ capsets: ['virgl'], commandRingBytes: 512 })).rejects.toThrow(/commandRingBytes must be >= 1024/);
    await expect(VirglComponent.start({ capsets: ['virgl'], completionRingBytes: 1024 })).rejects.toThrow(/completionRingBytes must be >= 4096/);
  });

  it('serves capsets virgl (1) and virgl2 (2) with their data', async () => {
    open = await VirglComponent.start({ capsets: ['virgl', 'virgl2'], onError: (e) => errors.push(e) });
    const caps = open.capsets();
    expect(caps.map((c) => [c.id, c.name, c.maxVersion])).toEqual([[1, 'virgl', 1], [2, 'virgl2', 2]]);
    for (const c of caps) {
      expect(c.maxSize).toBeGreaterThan(0);
      expect(c.data.length).toBe(c.maxSize);
      expect(new DataView(c.data.buffer, c.data.byteOffset).getUint32(0, true)).toBe(c.maxVersion); // virgl_caps max_version
    }
    expect(caps[1].maxSize).toBeGreaterThan(caps[0].maxSize);
  });

  it('runs a second component beside the first: each has its own render server process', async () => {
    const second = await VirglComponent.start({ capsets: ['virgl'] });
    try {
      expect(second.pid).not.toBe(open!.pid);
      expect(second.pid).toBeGreaterThan(0);
      expect(await Promise.all([second.fence(0), open!.fence(0)])).toEqual([0, 0]);
    } finally {
      await second.close();
    }
    expect(second.pid).toBeNull();
    expect(await open!.fence(0)).toBe(0); // the first one is unaffected
  });
});

describe('rendering', () => {
  const CTX = 1, RES = 10;

  it('clears a texture, fences on the context and global timelines in order, reads back', async () => {
    const c = open!;
    expect(c.createContext(CTX, 0, 'component-test')).toBeGreaterThan(0);
    c.createResource(tex2d(RES, W, H));
    c.attachResource(CTX, RES);
    c.submit(CTX, clear(RES, [1, 0.5, 0.25, 1]));
    const order: string[] = [];
    const ctxFence = c.fence(CTX).then((s) => (order.push('ctx'), s));
    const globalFence = c.fence(0).then((s) => (order.push('global'), s));
    expect(await Promise.all([ctxFence, globalFence])).toEqual([0, 0]);
    expect(order).toEqual(['ctx', 'global']);
    expect(await c.readback(RES, { x: 0, y: 0, width: W, height: H }, false, { offset: 0, stride: W * 4 })).toBe(0);
    expectFilled(c.readbackBuffer, BGRA(1, 0.5, 0.25));
    expect(errors).toEqual([]);
  });

  it('reads a sub-rectangle at an offset and stride, and bottom-up with flipY', async () => {
    const c = open!;
    // Make rows distinguishable: write row y = y+1 from a backing.
    const { m, bytes } = backing(c, W * H * 4);
    for (let y = 0; y < H; y++) bytes.fill(y + 1, y * W * 4, (y + 1) * W * 4);
    c.attachBacking(RES, Float64Array.of(Number(m.addr), W * H * 4));
    c.transferWrite(RES, 0, 0, W * 4, 0, [0, 0, 0, W, H, 1], 0);
    const buf = new Uint8Array(c.readbackBuffer);
    buf.fill(0xee, 0, 4096);
    expect(await c.readback(RES, { x: 2, y: 3, width: 4, height: 3 }, false, { offset: 100, stride: 40 })).toBe(0);
    expect([buf[100], buf[140], buf[180]]).toEqual([4, 5, 6]);
    expect(buf[100 + 16]).toBe(0xee); // between rows: untouched
    expect(await c.readback(RES, { x: 0, y: 0, width: W, height: H }, true, { offset: 0, stride: W * 4 })).toBe(0);
    expect(Array.from({ length: H }, (_, y) => buf[y * W * 4])).toEqual(Array.from({ length: H }, (_, y) => H - y));
    // Out of the readback buffer, or of the resource: refused, nothing else breaks.
    expect(await c.readback(RES, { x: 0, y: 0, width: W, height: H }, false, { offset: c.readbackBuffer.byteLength - 10, stride: W * 4 })).toBe(EINVAL);
    expect(await c.readback(RES, { x: 1, y: 0, width: W, height: H }, false, { offset: 0, stride: W * 4 })).toBe(EINVAL);
    expect(await c.readback(4242, { x: 0, y: 0, width: 1, height: 1 }, false, { offset: 0, stride: 4 })).toBe(EINVAL);
    c.detachBacking(RES);
    n.unmap(m.addr);
  });

  it('TRANSFER_READ into an attached memfd backing split in two segments', async () => {
    const c = open!;
    c.submit(CTX, clear(RES, [0, 1, 0, 1]));
    const size = W * H * 4;
    const { m, bytes } = backing(c, size + 4096);
    const base = Number(m.addr);
    c.attachBacking(RES, Float64Array.of(base + 16, 1000, base + 16 + 1000, size - 1000));
    c.transferRead(RES, CTX, 0, W * 4, 0, [0, 0, 0, W, H, 1], 0);
    expect(await c.fence(CTX)).toBe(0);
    for (let i = 0; i < W * H; i++) if (bytes[16 + i * 4 + 1] !== 255) expect([...bytes.subarray(16 + i * 4, 20 + i * 4)], `pixel ${i}`).toEqual(BGRA(0, 1, 0));
    expect(bytes[15]).toBe(0);
    expect(bytes[16 + size]).toBe(0);
    c.detachBacking(RES);
    n.unmap(m.addr);
  });

  it('destroys contexts and resources and reuses their ids', async () => {
    const c = open!;
    c.destroyContext(CTX);
    c.unrefResource(RES);
    expect(await c.fence(0)).toBe(0);
    // A fence on a context that no longer exists is refused, not left hanging.
    expect(await c.fence(CTX)).toBeLessThan(0);
    expect(errors.splice(0)).toEqual([expect.objectContaining({ op: 'FENCE', ctxId: CTX })]);
    c.createContext(CTX, 2, 'reused'); // capset virgl2
    c.createResource(tex2d(RES, W, H));
    c.attachResource(CTX, RES);
    c.submit(CTX, clear(RES, [0, 0, 1, 1]));
    expect(await c.fence(CTX)).toBe(0);
    expect(await c.readback(RES, { x: 0, y: 0, width: W, height: H }, false, { offset: 0, stride: W * 4 })).toBe(0);
    expectFilled(c.readbackBuffer, BGRA(0, 0, 1));
    expect(errors).toEqual([]);
  });

  it('completes many fences in flight, in order on each timeline', async () => {
    const c = open!;
    c.createContext(2, 0, 'second');
    const seen = new Map<number, number[]>([[0, []], [CTX, []], [2, []]]);
    const all: Promise<number>[] = [];
    for (let i = 0; i < 3000; i++) {
      const ctx = [0, CTX, 2][i % 3];
      if (ctx) c.submit(ctx, bytesOf([hdr(CCMD.NOP, 0, 0)]));
      if (i % 100 === 0) c.submit(CTX, clear(RES, [i / 3000, 0, 0, 1]));
      all.push(c.fence(ctx).then((s) => (seen.get(ctx)!.push(i), s)));
    }
    expect(new Set(await Promise.all(all))).toEqual(new Set([0]));
    for (const list of seen.values()) {
      expect(list.length).toBe(1000);
      expect([...list].sort((a, b) => a - b)).toEqual(list);
    }
  });

  it('a garbage stream breaks only its own context', async () => {
    const c = open!;
    const BAD = 3, BAD_RES = 30;
    c.createContext(BAD, 0, 'garbage');
    c.createResource(tex2d(BAD_RES, 4, 4));
    c.attachResource(BAD, BAD_RES);
    c.submit(BAD, clear(BAD_RES, [1, 1, 1, 1]));
    c.submit(BAD, Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24));
    c.submit(BAD, bytesOf([hdr(CCMD.CREATE_OBJECT, 8, 0xffff)]));
    c.submit(BAD, clear(BAD_RES, [0, 0, 0, 1])); // ignored once the context is in error
    const badFence = await c.fence(BAD);
    expect(badFence === 0 || badFence < 0).toBe(true); // settles either way
    // The other contexts and the renderer still work.
    c.submit(CTX, clear(RES, [1, 0, 1, 1]));
    expect(await c.fence(CTX)).toBe(0);
    expect(await c.fence(0)).toBe(0);
    expect(await c.readback(RES, { x: 0, y: 0, width: W, height: H }, false, { offset: 0, stride: W * 4 })).toBe(0);
    expectFilled(c.readbackBuffer, BGRA(1, 0, 1));
    expect(await c.readback(BAD_RES, { x: 0, y: 0, width: 4, height: 4 }, false, { offset: 0, stride: 16 })).toBe(0);
    expect(pixel(c.readbackBuffer, 0)).toEqual([255, 255, 255, 255]); // the clear before the garbage
    c.destroyContext(BAD);
    expect(await c.fence(0)).toBe(0);
    // virglrenderer refuses some bad streams outright (EINVAL), ignores others.
    for (const e of errors.splice(0)) expect(e).toMatchObject({ op: 'SUBMIT', ctxId: BAD, status: EINVAL });
  });

  it('close() is clean and a second start works', async () => {
    const pending = open!.fence(CTX);
    await open!.close();
    // Reported if it retired before SHUTDOWN, else settled as never-to-signal: never left hanging.
    expect([0, ENODEV]).toContain(await pending);
    expect(await open!.fence(CTX)).toBe(ENODEV);
    expect(open!.submit(CTX, clear(RES, [0, 0, 0, 1]))).toBe(0); // not sent
    await open!.close(); // idempotent
    open = await VirglComponent.start({ capsets: ['virgl2'] });
    expect(open.capsets().map((c) => c.id)).toEqual([2]);
    open.createContext(1, 0, 'again');
    open.createResource(tex2d(10, 4, 4));
    open.attachResource(1, 10);
    open.submit(1, clear(10, [1, 1, 0, 1]));
    expect(await open.fence(1)).toBe(0);
    expect(await open.readback(10, { x: 0, y: 0, width: 4, height: 4 }, false, { offset: 0, stride: 16 })).toBe(0);
    expect(pixel(open.readbackBuffer, 0)).toEqual(BGRA(1, 1, 0));
    await open.close();
    open = null;
  });
});
