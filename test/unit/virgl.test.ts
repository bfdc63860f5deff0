// virglrenderer binding, against the real library on Mesa llvmpipe (EGL surfaceless, no GPU).
// vitest runs each test file in its own child process (pool: forks), so this file's main thread
// may own the process-global renderer. Tests run in order and share it.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { native, type MapHandle, VIRGL_GLOBAL_RING, VirglFlags } from '../../src/native.js';
import { packagePath } from '../../src/package-path.js';

const n = native();
const EPERM = -1, EBUSY = -16, EEXIST = -17, ENODEV = -19, EFAULT = -14, EINVAL = -22;
const FLAGS = VirglFlags.USE_EGL | VirglFlags.USE_SURFACELESS;

// virgl protocol (virglrenderer src/virgl_protocol.h): a command header is
// cmd | object type << 8 | payload dwords << 16.
const CCMD = { CREATE_OBJECT: 1, SET_FRAMEBUFFER_STATE: 5, CLEAR: 7, BLIT: 16 } as const;
const OBJ_SURFACE = 8;
const PIPE_CLEAR_COLOR0 = 1 << 2;
const PIPE_MASK_RGBA = 0xf;
const hdr = (cmd: number, obj: number, len: number) => (cmd | (obj << 8) | (len << 16)) >>> 0;
const f32 = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];
const bytesOf = (words: readonly number[]) => new Uint8Array(Uint32Array.from(words).buffer);

let nextSurface = 1;
/** Surface on `res` (level 0, layer 0), bind it as the only colour buffer, clear it to rgba. */
function clearCmds(res: number, format: number, [r, g, b, a]: readonly number[]): number[] {
  const surf = nextSurface++;
  return [
    hdr(CCMD.CREATE_OBJECT, OBJ_SURFACE, 5), surf, res, format, 0, 0,
    hdr(CCMD.SET_FRAMEBUFFER_STATE, 0, 3), 1, 0, surf, // nr_cbufs, zsurf, cbuf0
    hdr(CCMD.CLEAR, 0, 8), PIPE_CLEAR_COLOR0, f32(r), f32(g), f32(b), f32(a), 0, 0, 0, // depth f64, stencil
  ];
}
/** Blit rows [sy, sy+h) of src to rows [dy, dy+h) of dst (full width w, level 0, nearest). */
function blitCmds(w: number, src: number, sy: number, dst: number, dy: number, h: number, format: number): number[] {
  return [hdr(CCMD.BLIT, 0, 21), PIPE_MASK_RGBA, 0, 0,
    dst, 0, format, 0, dy, 0, w, h, 1,
    src, 0, format, 0, sy, 0, w, h, 1];
}

// Resource helpers: PIPE_TEXTURE_2D, bind RENDER_TARGET | SAMPLER_VIEW.
const TEXTURE_2D = 2, BIND_RT_SAMPLER = (1 << 1) | (1 << 3), Y_0_TOP = 1;
const B8G8R8A8 = 1, B8G8R8X8 = 2;
const tex2d = (id: number, w: number, h: number, format = B8G8R8A8, flags = 0) =>
  Uint32Array.of(id, TEXTURE_2D, format, BIND_RT_SAMPLER, w, h, 1, 1, 0, 0, flags);
const box = (x: number, y: number, w: number, h: number) => Uint32Array.of(x, y, 0, w, h, 1);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mapped = (addr: bigint) => readFileSync('/proc/self/maps', 'utf8').includes(`${addr.toString(16)}-`);
const handle = (h: MapHandle | number): MapHandle => {
  if (typeof h === 'number') throw new Error(`mmap: ${h}`);
  return h;
};
/** A memfd mapping made by the addon. */
function mapping(size: number): MapHandle {
  const fd = n.memfdCreate('virgl-test', size);
  const m = handle(n.mmap(fd, size, 0));
  n.close(fd);
  return m;
}
/** A mapping and a view over it (the view keeps it mapped until collected). */
function backing(size: number) {
  const m = mapping(size);
  const v = n.view(m.addr, 0, size);
  if (typeof v === 'number') throw new Error(`view: ${v}`);
  return { m, bytes: new Uint8Array(v) };
}

/** Triples from virglTakeFences, as [ctx, ring, fence] numbers/bigints. */
const triples = (a: BigUint64Array) => {
  const out: Array<[number, number, bigint]> = [];
  for (let i = 0; i < a.length; i += 3) out.push([Number(a[i]), Number(a[i + 1]), a[i + 2]]);
  return out;
};
const seen: Array<[number, number, bigint]> = [];
/**
 * Poll until fence (ctx, ring, id) has signalled. Without THREAD_SYNC fences retire only inside
 * virglPoll(), and llvmpipe finishes asynchronously: poll with short sleeps.
 */
async function waitFence(ctx: number, ring: number, id: bigint): Promise<void> {
  for (let i = 0; i < 400; i++) {
    n.virglPoll();
    seen.push(...triples(n.virglTakeFences()));
    if (seen.some(([c, r, f]) => c === ctx && r === ring && f === id)) return;
    await sleep(5);
  }
  throw new Error(`fence ${ctx}/${ring}/${id} did not signal`);
}
let nextFence = 1;
async function finish(): Promise<void> {
  const id = nextFence++;
  expect(n.virglCreateFence(id, 0)).toBe(0);
  await waitFence(0, VIRGL_GLOBAL_RING, BigInt(id));
}

function readback(res: number, w: number, h: number): Uint8Array {
  const dst = new Uint8Array(w * h * 4);
  expect(n.virglReadback(res, box(0, 0, w, h), dst, w * 4)).toBe(0);
  return dst;
}
/** First byte of each row of a w-wide 4-byte-per-pixel image. */
const rowBytes = (img: Uint8Array, w: number, h: number) => Array.from({ length: h }, (_, y) => img[y * w * 4]);

/** Run `code` in a worker thread with `n` = the addon; resolves with what it posts. */
function inWorker(code: string): Promise<unknown> {
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const n = require(workerData.path);
     parentPort.postMessage((() => { ${code} })());`,
    { eval: true, workerData: { path: packagePath('native/build/Release/vhost_gpu_native.node') } },
  );
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  }).finally(() => worker.terminate());
}

describe('virglLoad', () => {
  it('explains a missing library or a library without the entry points', () => {
    const missing = n.virglLoad('/nonexistent/libvirglrenderer.so.1');
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.error).toMatch(/\/nonexistent\/libvirglrenderer\.so\.1.*No such file/);
    const wrong = n.virglLoad('libc.so.6');
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.error).toMatch(/libc\.so\.6 is not a usable virglrenderer: missing virgl_renderer_init, /);
    expect(() => n.virglLoad(3 as never)).toThrow(TypeError);
  });

  it('refuses every call before init', () => {
    expect(n.virglInit(FLAGS)).toBe(ENODEV); // not loaded yet
    const r = n.virglLoad(null);
    expect(r.ok).toBe(true);
    expect(n.virglSubmit(1, new Uint8Array(4))).toBe(ENODEV);
    expect(n.virglGetCapset(1)).toEqual([0, 0]);
    expect(n.virglCleanup()).toBe(ENODEV);
    expect(n.virglTakeFences().length).toBe(0);
    n.virglPoll(); // no-op
  });

  it('loads Debian 12 virglrenderer 0.10.4 and reports its optional entry points', () => {
    const r = n.virglLoad(null);
    if (!r.ok) throw new Error(r.error);
    expect(r.path).toMatch(/libvirglrenderer\.so\.1/);
    expect(r.version).toBe('1.7.7'); // file version of release 0.10.4
    expect(r.optional).toEqual(expect.arrayContaining([
      'virgl_renderer_context_create_with_flags',
      'virgl_renderer_context_create_fence',
      'virgl_renderer_context_poll',
      'virgl_renderer_resource_create_blob',
    ]));
    expect(r.optional).not.toContain('virgl_renderer_resource_get_info_ext'); // 1.0+
    expect(n.virglLoad('/other/path')).toEqual(r); // loaded once per process
  });
});

describe('virglInit', () => {
  it('inits on llvmpipe with EGL surfaceless, once per process', async () => {
    expect(n.virglInit(-1)).toBe(EINVAL);
    expect(n.virglInit(FLAGS)).toBe(0);
    expect(n.virglInit(FLAGS)).toBe(EBUSY);
    expect(n.virglPollFd()).toBe(-2); // -ENOENT: no poll fd without THREAD_SYNC
    // Another thread: init refused (already initialised), calls refused (not the owner thread).
    expect(await inWorker(`return [n.virglInit(${FLAGS}), n.virglSubmit(1, new Uint8Array(4)),
      n.virglContextCreate(99, 0, 'w'), n.virglGetCapset(1), n.virglCleanup()];`))
      .toEqual([EBUSY, EPERM, EPERM, [0, 0], EPERM]);
  });
});

describe('capsets', () => {
  it('serves VIRGL (1) and VIRGL2 (2)', () => {
    for (const set of [1, 2]) {
      const [ver, size] = n.virglGetCapset(set);
      expect(ver).toBe(set);
      expect(size).toBeGreaterThan(0);
      const caps = new Uint8Array(size + 8).fill(0xee);
      expect(n.virglFillCaps(set, ver, caps)).toBe(size);
      expect(new DataView(caps.buffer).getUint32(0, true)).toBe(set); // virgl_caps_v1.max_version
      expect(caps.subarray(4, size).some((b) => b !== 0)).toBe(true);
      expect(caps[size]).toBe(0xee); // nothing written past maxSize
      expect(n.virglFillCaps(set, ver, new Uint8Array(size - 1))).toBe(EINVAL);
      expect(n.virglFillCaps(set, ver + 1, caps)).toBe(EINVAL);
    }
    expect(n.virglGetCapset(2)[1]).toBeGreaterThan(n.virglGetCapset(1)[1]);
    expect(n.virglGetCapset(3)).toEqual([0, 0]); // gfxstream: not virgl's
    expect(n.virglFillCaps(3, 0, new Uint8Array(4096))).toBe(EINVAL);
    expect(n.virglGetCapset(-1)).toEqual([0, 0]);
    expect(() => n.virglFillCaps(1, 1, new Uint32Array(100) as never)).toThrow(TypeError);
  });
});

describe('contexts, resources, rendering', () => {
  const W = 64, H = 32;
  const RES = 10, CTX = 1;

  it('validates context and resource arguments', () => {
    expect(n.virglContextCreate(0, 0, 'zero')).toBe(EINVAL);
    expect(n.virglContextCreate(2 ** 32, 0, 'big')).toBe(EINVAL);
    expect(n.virglContextCreate(5, 256, 'capset')).toBe(EINVAL);
    expect(n.virglContextCreate(5, 0, 'nul\0')).toBe(EINVAL);
    expect(() => n.virglContextCreate('1' as never, 0, 'x')).toThrow(TypeError);
    expect(() => n.virglContextCreate(1, 0, null as never)).toThrow(TypeError);
    expect(n.virglResourceCreate(new Uint32Array(10))).toBe(EINVAL); // 11 words
    expect(n.virglResourceCreate(tex2d(0, W, H))).toBe(EINVAL); // id 0
    expect(n.virglResourceCreate(tex2d(99, 1 << 20, 1 << 20))).toBeLessThan(0); // virgl: too big
    expect(n.virglResourceCreate(tex2d(99, W, H, 0xffff))).toBeLessThan(0); // unknown format
    expect(() => n.virglResourceCreate([1, 2] as never)).toThrow(TypeError);
    expect(n.virglResourceGetInfo(12345)).toBe(EINVAL);
  });

  it('clears a texture through a command stream and reads it back', async () => {
    expect(n.virglContextCreate(CTX, 0, 'clear-test')).toBe(0);
    expect(n.virglResourceCreate(tex2d(RES, W, H))).toBe(0);
    expect(n.virglResourceCreate(tex2d(RES, W, H))).toBe(EEXIST); // virgl itself would say 0 and replace it
    expect(n.virglResourceGetInfo(RES)).toMatchObject({ format: B8G8R8A8, width: W, height: H, depth: 1, flags: 0, stride: W * 4 });
    expect(n.virglCtxAttachResource(CTX, RES)).toBe(0);
    expect(n.virglSubmit(CTX, bytesOf(clearCmds(RES, B8G8R8A8, [1, 0.5, 0.25, 1])))).toBe(0);
    await finish();
    // B8G8R8A8 in memory: B, G, R, A.
    const px = [64, 128, 255, 255];
    const img = readback(RES, W, H);
    for (let i = 0; i < W * H; i++) expect([...img.subarray(i * 4, i * 4 + 4)], `pixel ${i}`).toEqual(px);
    // A sub-rectangle lands at dst[0] with the given stride; bytes between rows are untouched.
    const part = new Uint8Array(3 * 40).fill(7);
    expect(n.virglReadback(RES, box(5, 6, 8, 3), part, 40)).toBe(0);
    expect([...part.subarray(0, 4)]).toEqual(px);
    expect([...part.subarray(32, 40)]).toEqual(Array(8).fill(7));
    expect([...part.subarray(80, 84)]).toEqual(px);
  });

  it('bounds-checks readback', () => {
    const dst = new Uint8Array(W * H * 4);
    expect(n.virglReadback(RES, box(0, 0, W + 1, H), dst, (W + 1) * 4)).toBe(EINVAL); // wider than the resource
    expect(n.virglReadback(RES, box(1, 0, W, H), dst, W * 4)).toBe(EINVAL);
    expect(n.virglReadback(RES, box(0, H, W, 1), dst, W * 4)).toBe(EINVAL);
    expect(n.virglReadback(RES, box(0, 0, W, H), dst.subarray(1), W * 4)).toBe(EINVAL); // dst short by 1
    expect(n.virglReadback(RES, box(0, 0, W, H), dst, W * 4 - 1)).toBe(EINVAL); // stride < row
    expect(n.virglReadback(RES, box(0, 0, 0, H), dst, W * 4)).toBe(EINVAL);
    expect(n.virglReadback(RES, Uint32Array.of(0, 0, 1, W, H, 1), dst, W * 4)).toBe(EINVAL); // z
    expect(n.virglReadback(RES, box(0, 0, W, H).subarray(1), dst, W * 4)).toBe(EINVAL); // 5 words
    expect(n.virglReadback(4242, box(0, 0, 1, 1), dst, 4)).toBe(EINVAL); // unknown resource
    expect(() => n.virglReadback(RES, box(0, 0, 1, 1), [0, 0, 0, 0] as never, 4)).toThrow(TypeError);
    // The last row only needs w*4 bytes, not a full stride.
    expect(n.virglReadback(RES, box(0, 0, 2, 2), new Uint8Array(100 + 8), 100)).toBe(0);
  });

  it('transfers to and from an attached backing in an addon mapping', async () => {
    const size = W * H * 4;
    const { m, bytes } = backing(size * 2);
    expect(n.virglTransferRead(RES, 0, 0, W * 4, 0, box(0, 0, W, H), 0)).toBe(EINVAL); // no backing yet
    // Two iovecs, split in the middle of a row: virglrenderer gathers across them.
    const split = 1000n;
    expect(n.virglAttachIov(RES, BigUint64Array.of(m.addr, split, m.addr + split, BigInt(size) - split))).toBe(0);
    expect(n.virglAttachIov(RES, BigUint64Array.of(m.addr, 4n))).toBe(EBUSY);
    expect(n.virglTransferRead(RES, CTX, 0, W * 4, 0, box(0, 0, W, H), 0)).toBe(0);
    await finish();
    for (let i = 0; i < W * H; i++) expect([...bytes.subarray(i * 4, i * 4 + 4)], `pixel ${i}`).toEqual([64, 128, 255, 255]);
    // Write one row from the backing, read it back through the renderer.
    bytes.fill(0x11, 0, W * 4);
    expect(n.virglTransferWrite(RES, 0, 0, W * 4, 0, box(0, 3, W, 1), 0)).toBe(0);
    expect(rowBytes(readback(RES, W, H), W, H).slice(2, 5)).toEqual([64, 0x11, 64]);
    // Transfers past the backing are refused by virglrenderer.
    expect(n.virglTransferRead(RES, 0, 0, W * 4, 0, box(0, 0, W, H), 8)).toBeLessThan(0);
    expect(n.virglTransferWrite(RES, 0, 0, W * 4, 0, box(0, 0, W, H), 1)).toBeLessThan(0);
    expect(n.virglTransferWrite(RES, 0, 0, W * 4, 0, box(0, 0, W, H), -1)).toBe(EINVAL);
    expect(n.virglTransferWrite(RES, 0, 0, W * 4, 0, new Uint32Array(5), 0)).toBe(EINVAL);
    expect(() => n.virglTransferWrite(RES, 0, 0, W * 4, 0, [0, 0, 0, 1, 1, 1] as never, 0)).toThrow(TypeError);
    expect(n.virglDetachIov(RES)).toBe(0);
    expect(n.virglDetachIov(RES)).toBe(EINVAL); // nothing attached
    expect(n.unmap(m.addr)).toBe(0);
  });

  it('refuses iovecs outside addon mappings without crashing', () => {
    const m = mapping(8192);
    const bad: Array<[BigUint64Array, number]> = [
      [BigUint64Array.of(0x1000n, 4096n), EFAULT], // not mapped at all
      [BigUint64Array.of(m.addr, 8193n), EFAULT], // runs past the mapping
      [BigUint64Array.of(m.addr + 8192n, 1n), EFAULT], // just past the end
      [BigUint64Array.of(m.addr - 1n, 2n), EFAULT],
      [BigUint64Array.of(2n ** 64n - 16n, 32n), EFAULT], // wraps
      [BigUint64Array.of(m.addr, 4096n, 0x1000n, 1n), EFAULT], // second entry bad
      [BigUint64Array.of(m.addr, 0n), EINVAL], // empty entry
      [BigUint64Array.of(m.addr), EINVAL], // odd length
      [new BigUint64Array(0), EINVAL],
      [new BigUint64Array(2 * 16385).fill(m.addr), EINVAL], // too many entries
    ];
    for (const [iov, code] of bad) expect(n.virglAttachIov(RES, iov), `${iov.slice(0, 4)}`).toBe(code);
    expect(n.virglAttachIov(0, BigUint64Array.of(m.addr, 16n))).toBe(EINVAL);
    expect(n.virglAttachIov(4242, BigUint64Array.of(m.addr, 16n))).toBe(EINVAL); // virgl: no such resource
    expect(() => n.virglAttachIov(RES, [m.addr, 16n] as never)).toThrow(TypeError);
    expect(() => n.virglAttachIov(RES, new BigInt64Array(2) as never)).toThrow(TypeError);
    // Failed attaches left no pin behind: the mapping goes away at unmap().
    expect(n.unmap(m.addr)).toBe(0);
    expect(mapped(m.addr)).toBe(false);
  });

  it('keeps an attached mapping alive across unmap() until detach', async () => {
    const size = W * H * 4;
    const { m, bytes } = backing(size);
    expect(n.virglAttachIov(RES, BigUint64Array.of(m.addr, BigInt(size)))).toBe(0);
    expect(n.unmap(m.addr)).toBe(0);
    expect(mapped(m.addr)).toBe(true); // pinned by the attachment (and our view)
    expect(n.virglTransferRead(RES, 0, 0, W * 4, 0, box(0, 0, W, H), 0)).toBe(0);
    expect(bytes[0]).toBe(64);
    expect(n.virglResourceUnref(RES)).toBe(0); // detaches and releases the pin too
    expect(n.virglResourceGetInfo(RES)).toBe(EINVAL);
    expect(n.virglResourceCreate(tex2d(RES, W, H))).toBe(0); // id free again
    expect(n.virglCtxAttachResource(CTX, RES)).toBe(0);
  });

  it('submit: refuses bad sizes, copies unaligned buffers', async () => {
    const cmds = bytesOf(clearCmds(RES, B8G8R8A8, [0, 0, 1, 1]));
    expect(n.virglSubmit(CTX, cmds.subarray(0, cmds.length - 1))).toBe(EINVAL);
    expect(n.virglSubmit(0, cmds)).toBe(EINVAL);
    expect(n.virglSubmit(CTX, new Uint8Array(0))).toBe(0);
    expect(n.virglSubmit(4242, new Uint8Array(0))).toBe(EINVAL); // no such context
    expect(() => n.virglSubmit(CTX, Uint32Array.of(0) as never)).toThrow(TypeError);
    const unaligned = new Uint8Array(cmds.length + 1).subarray(1);
    unaligned.set(cmds);
    expect(n.virglSubmit(CTX, unaligned)).toBe(0);
    await finish();
    expect([...readback(RES, W, H).subarray(0, 4)]).toEqual([255, 0, 0, 255]); // blue: B first
  });
});

describe('orientation', () => {
  // Readback rows are transfer rows (what TRANSFER_FROM_HOST_3D writes into guest memory). GPU
  // coordinates (blit/draw y) map to the same row without Y_0_TOP and to height-1-y with it.
  const W = 4, H = 4, CTX = 1;
  it.each([[0, 'no flags'], [Y_0_TOP, 'Y_0_TOP']])('flags %i (%s)', async (flags) => {
    const src = 200 + flags * 10, dst = src + 1;
    const { m, bytes } = backing(W * H * 4);
    expect(n.virglResourceCreate(tex2d(src, W, H, B8G8R8X8, flags))).toBe(0);
    expect(n.virglResourceCreate(tex2d(dst, W, H, B8G8R8X8, flags))).toBe(0);
    for (const r of [src, dst]) expect(n.virglCtxAttachResource(CTX, r)).toBe(0);
    for (let y = 0; y < H; y++) bytes.fill(10 * (y + 1), y * W * 4, (y + 1) * W * 4);
    expect(n.virglAttachIov(src, BigUint64Array.of(m.addr, BigInt(W * H * 4)))).toBe(0);
    expect(n.virglTransferWrite(src, 0, 0, W * 4, 0, box(0, 0, W, H), 0)).toBe(0);
    expect(rowBytes(readback(src, W, H), W, H)).toEqual([10, 20, 30, 40]); // same order as written
    // Blit GPU row 0 of src into GPU row 3 of a cleared dst.
    expect(n.virglSubmit(CTX, bytesOf([...clearCmds(dst, B8G8R8X8, [0, 0, 0, 1]), ...blitCmds(W, src, 0, dst, 3, 1, B8G8R8X8)]))).toBe(0);
    await finish();
    const rows = rowBytes(readback(dst, W, H), W, H);
    expect(rows).toEqual(flags ? [40, 0, 0, 0] : [0, 0, 0, 10]);
    expect(n.virglResourceGetInfo(dst)).toMatchObject({ flags });
    for (const r of [src, dst]) expect(n.virglResourceUnref(r)).toBe(0);
    n.unmap(m.addr);
  });
});

describe('fences', () => {
  it('global fences signal in order as (0, 0xFFFFFFFF, id); one poll reports only the newest', async () => {
    n.virglTakeFences();
    seen.length = 0;
    expect(n.virglCreateFence(100, 0)).toBe(0);
    expect(n.virglCreateFence(101, 1)).toBe(0);
    expect(n.virglCreateFence(0xffffffff, 0)).toBe(0); // 32-bit ids, all of them
    await waitFence(0, VIRGL_GLOBAL_RING, 0xffffffffn);
    // virglrenderer calls write_fence once per poll, with the newest retired id: whoever holds
    // fenced responses must complete every id <= the reported one.
    const ids = seen.filter(([c]) => c === 0).map(([, , f]) => f);
    expect(ids.at(-1)).toBe(0xffffffffn);
    expect([...ids].sort((a, b) => (a < b ? -1 : 1))).toEqual(ids);
    expect(n.virglCreateFence(2 ** 32, 0)).toBe(EINVAL);
  });

  it('per-context fences signal as (ctx, ring, id)', async () => {
    seen.length = 0;
    expect(n.virglContextCreateFence(1, 0, 0, 2n ** 40n)).toBe(0);
    expect(n.virglContextCreateFence(1, 1, 0, 2n ** 40n + 1n)).toBe(0); // MERGEABLE
    await waitFence(1, 0, 2n ** 40n + 1n);
    expect(n.virglContextCreateFence(1, 0, 1, 7n)).toBe(EINVAL); // 0.10.4: virgl contexts have ring 0 only
    expect(n.virglContextCreateFence(1, 0, 64, 7n)).toBe(EINVAL);
    expect(n.virglContextCreateFence(1, 2, 0, 7n)).toBe(EINVAL); // unknown flag
    expect(n.virglContextCreateFence(0, 0, 0, 7n)).toBe(EINVAL);
    expect(n.virglContextCreateFence(77, 0, 0, 7n)).toBeLessThan(0); // no such context
    expect(n.virglContextCreateFence(1, 0, 0, -1n)).toBe(EINVAL);
    expect(() => n.virglContextCreateFence(1, 0, 0, 7 as never)).toThrow(TypeError);
    expect(n.virglContextPoll(1)).toBe(0);
  });
});

describe('hostile command streams', () => {
  // Each in a fresh context: virglrenderer may mark a context "in error" after a bad stream, and
  // then silently ignores its later submits (they still return 0).
  const streams: Record<string, Uint8Array> = {
    'unknown command': bytesOf([hdr(0xff, 0, 0)]),
    'length past the end': bytesOf([hdr(CCMD.CREATE_OBJECT, OBJ_SURFACE, 0xffff)]),
    'unknown object type': bytesOf([hdr(CCMD.CREATE_OBJECT, 200, 3), 1, 2, 3]),
    'truncated clear': bytesOf([hdr(CCMD.CLEAR, 0, 8), PIPE_CLEAR_COLOR0]),
    'too many colour buffers': bytesOf([hdr(CCMD.SET_FRAMEBUFFER_STATE, 0, 3), 100, 0, 1]),
    'surface on a missing resource': bytesOf([hdr(CCMD.CREATE_OBJECT, OBJ_SURFACE, 5), 1, 999, 1, 0, 0]),
    'pseudo-random bytes': Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24),
  };
  let ctx = 50;
  it.each(Object.keys(streams))('%s: refused or ignored, no crash', async (name) => {
    expect(n.virglContextCreate(ctx, 0, name)).toBe(0);
    const r = n.virglSubmit(ctx, streams[name]);
    expect([0, EINVAL]).toContain(r);
    expect(n.virglContextDestroy(ctx++)).toBe(0);
    await finish(); // the renderer still works
  });
});

describe('cleanup', () => {
  it('cleans up, releases pinned backings, and can init again', async () => {
    const m = mapping(4096);
    expect(n.virglResourceCreate(tex2d(300, 4, 4))).toBe(0);
    expect(n.virglAttachIov(300, BigUint64Array.of(m.addr, 64n))).toBe(0);
    expect(n.unmap(m.addr)).toBe(0);
    expect(mapped(m.addr)).toBe(true); // pinned
    expect(n.virglCleanup()).toBe(0);
    expect(mapped(m.addr)).toBe(false);
    expect(n.virglCleanup()).toBe(ENODEV);
    expect(n.virglResourceGetInfo(300)).toBe(ENODEV);
    expect(n.virglInit(FLAGS)).toBe(0);
    expect(n.virglResourceGetInfo(300)).toBe(EINVAL); // a fresh renderer
    expect(n.virglResourceCreate(tex2d(300, 4, 4))).toBe(0);
    expect(n.virglCleanup()).toBe(0);
  });

  it('THREAD_SYNC gives a poll fd that turns readable when fences are ready', async () => {
    expect(n.virglInit(FLAGS | VirglFlags.THREAD_SYNC)).toBe(0);
    const fd = n.virglPollFd();
    expect(fd).toBeGreaterThan(2);
    expect(n.virglContextCreate(1, 0, 'sync')).toBe(0);
    n.virglPoll();
    n.virglTakeFences();
    expect(n.virglSubmit(1, bytesOf([hdr(0, 0, 0)]))).toBe(0); // NOP
    expect(n.virglCreateFence(7, 0)).toBe(0);
    expect(n.virglContextCreateFence(1, 0, 0, 8n)).toBe(0);
    const got: Array<[number, number, bigint]> = [];
    for (let i = 0; i < 10 && got.length < 2; i++) {
      expect(n.pollFd(fd, n.POLLIN, 2000) & n.POLLIN).toBeTruthy();
      n.virglPoll(); // callbacks run here, on this thread; it also drains the fd
      got.push(...triples(n.virglTakeFences()));
    }
    expect(got).toEqual(expect.arrayContaining([[0, VIRGL_GLOBAL_RING, 7n], [1, 0, 8n]]));
    expect(n.virglCleanup()).toBe(0);
  });

  it('a worker that exits without cleanup releases the renderer', async () => {
    expect(await inWorker(`const r = n.virglInit(${FLAGS}); return [r, n.virglContextCreate(1, 0, 'w')];`)).toEqual([0, 0]);
    // The worker's env teardown ran virgl_renderer_cleanup on the worker thread.
    for (let i = 0; i < 100 && n.virglInit(FLAGS) === EBUSY; i++) await sleep(10);
    expect(n.virglGetCapset(2)[1]).toBeGreaterThan(0); // owned by this thread now
    expect(n.virglCleanup()).toBe(0);
  });

});
