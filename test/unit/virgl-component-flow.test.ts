// VirglComponent under pressure and failure: full rings in both directions, chunked commands,
// failed commands, destroyed contexts, a render server that crashes, backings outside shared
// memory, fence polling without THREAD_SYNC. Needs the compiled render server (see
// virgl-component.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { native, VirglFlags } from '../../src/native.js';
import { VirglComponent, type VirglOpError } from '../../src/renderers/virgl/component.js';
import { backing, BGRA, clear, tex2d } from './virgl-helpers.js';

const n = native();
const ENODEV = -19, EINVAL = -22, ECANCELED = -125;
const W = 64, H = 32;

let open: VirglComponent | null = null;
afterAll(async () => {
  await open?.close();
});

describe('back-pressure', () => {
  it('tiny rings: thousands of commands, big chunked submits and backings still complete in order', async () => {
    const errors: VirglOpError[] = [];
    const c = (open = await VirglComponent.start({
      capsets: ['virgl'], commandRingBytes: 1024, completionRingBytes: 4096, onError: (e) => errors.push(e),
    }));
    c.createContext(1, 0, 'tiny');
    c.createResource(tex2d(10, W, H));
    c.attachResource(1, 10);
    let maxBacklog = 0;
    const fences: Promise<number>[] = [];
    const readbacks: Promise<number>[] = [];
    for (let i = 0; i < 2000; i++) {
      c.submit(1, clear(10, [(i % 256) / 255, 0, 0, 1]));
      fences.push(c.fence(i % 2 ? 1 : 0));
      if (i % 10 === 0) readbacks.push(c.readback(10, { x: 0, y: 0, width: 1, height: 1 }, false, { offset: 4 * (i / 10), stride: 4 }));
      maxBacklog = Math.max(maxBacklog, c.backlog.messages);
    }
    // A stream larger than one ring message (NOPs, then a clear): split and reassembled.
    const big = new Uint8Array(5000 * 4 + 0);
    const last = clear(10, [0, 1, 1, 1]);
    const stream = new Uint8Array(big.length + last.length);
    stream.set(last, big.length);
    c.submit(1, stream);
    // A backing of one row in 4-byte segments (64 of them): more than one message, chunked too.
    const { m, bytes } = backing(c, W * 4 * 2);
    const segs = new Float64Array(2 * (W * 4 / 4));
    for (let i = 0; i < segs.length / 2; i++) [segs[2 * i], segs[2 * i + 1]] = [Number(m.addr) + 4 * i, 4];
    c.attachBacking(10, segs);
    c.transferRead(10, 1, 0, W * 4, 0, [0, 0, 0, W, 1, 1], 0);
    const lastFence = c.fence(1);
    expect(maxBacklog).toBeGreaterThan(100);
    expect(new Set(await Promise.all(fences))).toEqual(new Set([0]));
    expect(new Set(await Promise.all(readbacks))).toEqual(new Set([0]));
    expect(await lastFence).toBe(0);
    expect(c.backlog).toEqual({ messages: 0, bytes: 0 });
    // Readback i/10 saw clear i exactly (red channel = i % 256): commands ran in order.
    const rb = new Uint8Array(c.readbackBuffer);
    for (let k = 0; k < 200; k++) expect(rb[4 * k + 2], `readback ${k}`).toBe((k * 10) % 256);
    expect([...bytes.subarray(0, 4)]).toEqual(BGRA(0, 1, 1));
    expect([...bytes.subarray(W * 4 - 4, W * 4)]).toEqual(BGRA(0, 1, 1));
    expect(errors).toEqual([]);
    await c.close();
    n.unmap(m.addr);
    open = null;
  });
});

describe('completion back-pressure', () => {
  it('a full completion ring delays completions without losing or reordering them', async () => {
    // One batch of 1500 readbacks: 1500 completions of 16 bytes, the ring holds 256.
    const c = (open = await VirglComponent.start({ capsets: ['virgl'], completionRingBytes: 4096 }));
    c.createContext(1, 0, 'burst');
    c.createResource(tex2d(10, 4, 4));
    c.attachResource(1, 10);
    const order: number[] = [];
    const all: Promise<number>[] = [];
    for (let i = 0; i < 1500; i++) {
      if (i % 500 === 0) c.submit(1, clear(10, [i / 1500, 0, 0, 1]));
      all.push(c.readback(10, { x: 0, y: 0, width: 1, height: 1 }, false, { offset: 4 * i, stride: 4 }).then((s) => (order.push(i), s)));
      if (i % 3 === 0) all.push(c.fence(i % 2 ? 1 : 0));
    }
    expect(new Set(await Promise.all(all))).toEqual(new Set([0]));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    const rb = new Uint8Array(c.readbackBuffer);
    expect([rb[2], rb[4 * 499 + 2], rb[4 * 500 + 2], rb[4 * 1499 + 2]]).toEqual([0, 0, 85, 170]);
    await c.close();
    open = null;
  });
});

describe('failures', () => {
  it('reports failed commands with their tag and ids', async () => {
    const errors: VirglOpError[] = [];
    const c = (open = await VirglComponent.start({ capsets: ['virgl'], onError: (e) => errors.push(e) }));
    const tag = c.createResource(tex2d(0, 4, 4)); // id 0
    const tag2 = c.unrefResource(78);
    const tag3 = c.submit(1, new Uint8Array(6)); // no context, and not a multiple of 4
    expect(await c.fence(0)).toBe(0);
    expect(errors).toEqual([
      { op: 'CREATE_RESOURCE', tag, status: EINVAL, ctxId: 0, resId: 0 },
      { op: 'UNREF_RESOURCE', tag: tag2, status: EINVAL, ctxId: 0, resId: 78 },
      { op: 'SUBMIT', tag: tag3, status: EINVAL, ctxId: 1, resId: 0 },
    ]);
  });

  it('result(tag) is what virglrenderer returned for that command, chunked or not', async () => {
    await open!.close();
    const c = (open = await VirglComponent.start({ capsets: ['virgl'], commandRingBytes: 1024 }));
    const results = [
      c.result(c.createResource(tex2d(0, 4, 4))), // id 0
      c.result(c.createContext(1, 0, 'results')),
      c.result(c.createResource(tex2d(10, 4, 4))),
      c.result(c.attachResource(1, 10)),
      c.result(c.submit(1, new Uint8Array(4000))), // NOPs, in chunks
      c.result(c.transferRead(10, 1, 0, 0, 0, [0, 0, 0, 1, 1, 1], 0)), // no backing
    ];
    const { m } = backing(c, 64);
    const segs = new Float64Array(2 * 40).map((_, i) => (i % 2 ? 1 : Number(m.addr) + i / 2)); // 40 one-byte segments, in chunks
    results.push(c.result(c.attachBacking(10, segs)));
    results.push(c.result(c.attachBacking(10, segs))); // already attached
    expect(await Promise.all(results)).toEqual([EINVAL, 0, 0, 0, 0, EINVAL, 0, -16]);
    await c.close();
    expect(await c.result(c.unrefResource(10))).toBe(ENODEV); // tag 0: not sent
    n.unmap(m.addr);
    open = null;
  });

  it('a chunked stream refused half way is dropped whole: its tail never runs as a stream of its own', async () => {
    const c = (open = await VirglComponent.start({ capsets: ['virgl'] }));
    c.createContext(1, 0, 'tail');
    c.createResource(tex2d(10, 4, 4));
    c.attachResource(1, 10);
    c.submit(1, clear(10, [0, 1, 0, 1]));
    // NOPs past the worker's 64 MiB limit, then a clear to red in the last chunk.
    const red = clear(10, [1, 0, 0, 1]);
    const length = (64 << 20) + (1 << 20) + red.length;
    const tag = c.submitWith(1, length, (dst, dstOff, srcOff, len) => {
      dst.fill(0, dstOff, dstOff + len);
      const from = Math.max(srcOff, length - red.length);
      if (from < srcOff + len) dst.set(red.subarray(from - (length - red.length)), dstOff + from - srcOff);
    });
    expect(await c.result(tag)).toBe(EINVAL);
    expect(await c.readback(10, { x: 0, y: 0, width: 1, height: 1 }, false, { offset: 0, stride: 4 })).toBe(0);
    expect([...new Uint8Array(c.readbackBuffer, 0, 4)]).toEqual(BGRA(0, 1, 0));
    expect(await c.result(c.submit(1, red))).toBe(0);
    await c.close();
    open = null;
  });

  it('cancels fences of a context destroyed before they signal', async () => {
    open = await VirglComponent.start({ capsets: ['virgl'] });
    const c = open!;
    c.createContext(5, 0, 'doomed');
    const f = c.fence(5);
    c.destroyContext(5);
    expect([0, ECANCELED]).toContain(await f);
    expect(await c.fence(0)).toBe(0);
  });

  it('a crashing render server marks the component lost without taking the daemon down', async () => {
    const lost: Error[] = [];
    await open!.close();
    const c = (open = await VirglComponent.start({ capsets: ['virgl'], onLost: (e) => lost.push(e) }));
    c.createContext(1, 0, 'victim');
    expect(await c.fence(1)).toBe(0);
    const pending = c.readback(4242, { x: 0, y: 0, width: 1, height: 1 }, false, { offset: 0, stride: 4 });
    const fence = c.fence(1);
    const result = c.result(c.submit(1, clear(1, [0, 0, 0, 1])));
    const pid = c.pid!;
    process.kill(pid, 'SIGSEGV'); // what a library crash on a hostile stream looks like from here
    expect([EINVAL, ENODEV]).toContain(await pending);
    expect([0, ENODEV]).toContain(await fence);
    expect([0, EINVAL, ENODEV]).toContain(await result);
    for (let i = 0; i < 100 && !c.lost; i++) await new Promise((r) => setTimeout(r, 10));
    expect(c.lost).toBe(true);
    expect(lost.length).toBe(1);
    expect(lost[0].message).toMatch(new RegExp(`render server \\(pid ${pid}\\) ended without SHUTDOWN \\(killed by SIGSEGV\\)`));
    expect(c.pid).toBeNull();
    expect(await c.fence(0)).toBe(ENODEV);
    expect(c.createContext(2, 0, 'after')).toBe(0);
    await c.close();
    // A new component starts its own server.
    open = await VirglComponent.start({ capsets: ['virgl'] });
    expect(await open.fence(0)).toBe(0);
    await open.close();
    open = null;
  });
});

describe('shared memory', () => {
  it('refuses a backing outside the memory shared with the server, and keeps an unshared share mapped while a backing uses it', async () => {
    const c = (open = await VirglComponent.start({ capsets: ['virgl'] }));
    c.createContext(1, 0, 'shares');
    c.createResource(tex2d(10, 4, 4));
    c.createResource(tex2d(11, 4, 4));
    c.attachResource(1, 10);
    // Mapped here but never shared: the server has no such memory and refuses it.
    const fd = n.memfdCreate('not-shared', 4096);
    const priv = n.mmap(fd, 4096, 0);
    if (typeof priv === 'number') throw new Error(`mmap: ${priv}`);
    expect(await c.result(c.attachBacking(11, Float64Array.of(Number(priv.addr), 64)))).toBe(EINVAL);
    // One byte past a share is outside it too.
    const { m, bytes } = backing(c, 4096);
    expect(await c.result(c.attachBacking(11, Float64Array.of(Number(m.addr) + 4000, 97)))).toBe(EINVAL);
    // Unsharing does not pull memory from under an attached backing: a transfer still reads it.
    const [id] = c.shareMemory(fd, Number(priv.addr), 4096)!;
    n.close(fd);
    expect(await c.result(c.attachBacking(10, Float64Array.of(Number(priv.addr), 64)))).toBe(0);
    expect(await c.result(c.unshareMemory(id))).toBe(0);
    expect(await c.result(c.unshareMemory(id))).toBe(-2); // ENOENT: already unshared
    expect(await c.result(c.attachBacking(11, Float64Array.of(Number(priv.addr), 64)))).toBe(EINVAL); // no new users
    const pv = new Uint8Array(n.view(priv.addr, 0, 64) as ArrayBuffer);
    pv.fill(0x5a);
    c.transferWrite(10, 0, 0, 16, 0, [0, 0, 0, 4, 4, 1], 0);
    expect(await c.readback(10, { x: 0, y: 0, width: 4, height: 4 }, false, { offset: 0, stride: 16 })).toBe(0);
    expect([...new Uint8Array(c.readbackBuffer, 0, 64)].every((b) => b === 0x5a)).toBe(true);
    // A share whose fd is smaller than claimed is refused (touching past its end would SIGBUS).
    const small = n.memfdCreate('small', 4096);
    expect(await c.result(c.shareMemory(small, Number(m.addr), 8192)![1])).toBe(EINVAL);
    n.close(small);
    expect(await c.fence(0)).toBe(0);
    expect(bytes.length).toBe(4096);
    await c.close();
    n.unmap(m.addr);
    n.unmap(priv.addr);
    open = null;
  });
});

describe('submitWith', () => {
  it('fills the ring straight from mapped memory, in chunks; a failing fill drops the partial stream', async () => {
    const errors: VirglOpError[] = [];
    const c = (open = await VirglComponent.start({ capsets: ['virgl'], commandRingBytes: 1024, onError: (e) => errors.push(e) }));
    c.createContext(1, 0, 'gather');
    c.createResource(tex2d(10, 4, 4));
    c.attachResource(1, 10);
    // The stream lives in an addon mapping (as guest memory would): 2000 NOP words, then a clear.
    const cmds = clear(10, [1, 0, 0, 1]);
    const { m, bytes } = backing(c, 8000 + cmds.length);
    bytes.set(cmds, 8000);
    const segs = Float64Array.of(Number(m.addr), 8000 + cmds.length);
    const chunks: number[] = [];
    c.submitWith(1, 8000 + cmds.length, (dst, dstOff, srcOff, len) => {
      chunks.push(len);
      expect(n.gatherRows(dst, dstOff, 0, len, 1, segs, srcOff, 0)).toBe(0);
    });
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.every((l) => l % 4 === 0)).toBe(true);
    // A fill that throws half way: the chunks already sent are dropped, not glued to the next stream.
    const boom = new Error('guest memory vanished');
    let calls = 0;
    expect(() => c.submitWith(1, 4000, (dst, dstOff, _src, len) => {
      if (++calls === 2) throw boom;
      dst.fill(0xff, dstOff, dstOff + len); // garbage if it were ever submitted
    })).toThrow(boom);
    c.submit(1, clear(10, [0, 1, 0, 1]));
    expect(await c.fence(1)).toBe(0);
    expect(await c.readback(10, { x: 0, y: 0, width: 1, height: 1 }, false, { offset: 0, stride: 4 })).toBe(0);
    expect([...new Uint8Array(c.readbackBuffer, 0, 4)]).toEqual(BGRA(0, 1, 0));
    expect(errors).toEqual([]);
    await c.close();
    n.unmap(m.addr);
    open = null;
  });
});

describe('without THREAD_SYNC', () => {
  it('polls fences on a timer instead of the poll fd', async () => {
    const c = (open = await VirglComponent.start({ capsets: ['virgl'], flags: VirglFlags.USE_EGL | VirglFlags.USE_SURFACELESS }));
    c.createContext(1, 0, 'no-sync');
    c.createResource(tex2d(10, W, H));
    c.attachResource(1, 10);
    const results: Promise<number>[] = [];
    for (let i = 0; i < 50; i++) {
      c.submit(1, clear(10, [i / 50, 0, 0, 1]));
      results.push(c.fence(i % 2 ? 1 : 0));
    }
    expect(new Set(await Promise.all(results))).toEqual(new Set([0]));
    await c.close();
    open = null;
  });
});
