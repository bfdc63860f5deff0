/**
 * The display channel's pixel lending, on a real socket pair: what QEMU reads is what was flushed,
 * and the memory lent to a QEMU that does not read stays bounded.
 */
import { describe, it, expect } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { native } from '../../src/native.js';
import { DisplayChannel } from '../../src/display/display-channel.js';
import { PixelStore } from '../../src/device/pixel-store.js';

const n = native();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function socketPair(): [number, number] {
  const p = n.socketPair();
  if (typeof p === 'number') throw new Error(`socketPair: ${p}`);
  n.setNonBlocking(p[1], true);
  return p;
}

/** Read `total` bytes from a non-blocking fd, giving the event loop turns meanwhile. */
async function readAll(fd: number, total: number): Promise<Uint8Array> {
  const buf = new Uint8Array(total);
  let got = 0;
  for (let idle = 0; got < total && idle < 500; ) {
    const r = n.recvMsg(fd, buf, got, total - got, new Int32Array(9));
    if (r > 0) {
      got += r;
      idle = 0;
    } else {
      expect(r).toBe(-n.EAGAIN);
      idle++;
      await sleep(2);
    }
  }
  expect(got).toBe(total);
  return buf;
}

describe('display channel', () => {
  it('lends at most 128 MiB of pixel stores to a QEMU that does not read; sends the rest by copy, all intact', async () => {
    const [ours, qemu] = socketPair();
    const ch = new DisplayChannel(ours);
    const W = 1024, H = 256, payload = W * H * 4; // 1 MiB per update, from 16 MiB stores
    const stores: PixelStore[] = [];
    for (let i = 0; i < 12; i++) {
      const store = new PixelStore(16 << 20);
      store.bytes.fill(i + 1, 0, payload);
      stores.push(store);
      expect(ch.update(0, 0, 0, W, H, { store, pitch: W, x: 0, y: 0, swizzle: 'none' })).toBe(true);
    }
    ch.flush();
    // 8 x 16 MiB are lent; the other updates were copied into the channel's own buffers.
    expect(stores.map((s) => s.lent)).toEqual([...Array(8).fill(true), ...Array(4).fill(false)]);
    // The lent ones may not change under QEMU: a writer gets a copy.
    const w = stores[0].forWrite(false);
    expect(w === stores[0]).toBe(false); // (not toBe: printing a 16 MiB store would exhaust the heap)
    expect(w.bytes[payload - 1]).toBe(1);
    w.bytes.fill(99, 0, payload);
    stores[9].forWrite(true).bytes.fill(99, 0, payload); // not lent: written in place, after its copy left

    const msg = await readAll(qemu, 12 * (32 + payload));
    for (let i = 0; i < 12; i++) {
      const at = i * (32 + payload);
      const v = new DataView(msg.buffer, at, 32);
      expect([v.getUint32(0, true), v.getUint32(8, true), v.getUint32(24, true), v.getUint32(28, true)]).toEqual([8, 20 + payload, W, H]);
      const px = msg.subarray(at + 32, at + 32 + payload);
      expect(px.every((b) => b === i + 1)).toBe(true);
    }
    expect(stores[0].lent).toBe(false); // QEMU read it all: nothing is lent any more
    ch.close();
    n.close(qemu);
  });

  it('keeps the byte stream exact when headers travel through the arena beside pixels sent by reference', async () => {
    const [ours, qemu] = socketPair();
    const ch = new DisplayChannel(ours);
    const images = [0xa1, 0xb2].map((v) => {
      const st = new PixelStore(64 * 64 * 4);
      st.bytes.fill(v);
      return st;
    });
    // 60 x (a cursor image by reference + 300 small messages): 430 KiB of our own bytes, so the
    // 256 KiB arena is replaced while all of it still sits unread in the socket.
    const expectMsgs: [number, number, number][] = [];
    for (let i = 0; i < 60; i++) {
      ch.cursorUpdate(0, i, 2 * i, 3, 4, images[i & 1]);
      expectMsgs.push([6, 20 + 16384, i]);
      for (let k = 0; k < 300; k++) {
        ch.cursorMove(0, i, k);
        expectMsgs.push([4, 12, i]);
      }
    }
    ch.flush();
    const total = expectMsgs.reduce((t, [, size]) => t + 12 + size, 0);
    const got = await readAll(qemu, total);
    const v = new DataView(got.buffer);
    let at = 0;
    for (const [type, size, i] of expectMsgs) {
      expect([v.getUint32(at, true), v.getUint32(at + 8, true), v.getUint32(at + 16, true)]).toEqual([type, size, i]);
      if (type === 6) {
        const want = i & 1 ? 0xb2 : 0xa1;
        expect(got[at + 32]).toBe(want);
        expect(got[at + 32 + 16383]).toBe(want);
      }
      at += 12 + size;
    }
    ch.close();
    n.close(qemu);
  });

  it('converts formats that are not B,G,R,X once, into a store of its own', async () => {
    const [ours, qemu] = socketPair();
    const ch = new DisplayChannel(ours);
    const store = new PixelStore(64 * 64 * 4);
    store.words.fill(0x11223344); // R8G8B8A8 bytes 44 33 22 11 -> B,G,R,X = 22 33 44 11
    expect(ch.update(0, 0, 0, 64, 64, { store, pitch: 64, x: 0, y: 0, swizzle: 'swapRB' })).toBe(true);
    ch.flush();
    expect(store.lent).toBe(false);
    const msg = await readAll(qemu, 32 + 64 * 64 * 4);
    expect(new DataView(msg.buffer, 32, 4).getUint32(0, true).toString(16)).toBe('11443322');
    ch.close();
    n.close(qemu);
  });

  // Any interleaving of updates (by reference or copied), cursor images, small messages, writes to
  // the stores (through forWrite, as the device writes) and partial reads by QEMU: QEMU receives
  // every message in order, each with the pixels its store held when it was queued.
  const W = 256, H = 64; // 1 KiB rows: full-width updates go by reference, partial ones are copied
  const op = fc.oneof(
    fc.record({ kind: fc.constant('update' as const), store: fc.nat(2), y: fc.nat(H - 1), h: fc.integer({ min: 1, max: H }), x: fc.nat(W - 1), w: fc.integer({ min: 1, max: W }), full: fc.boolean() }),
    fc.record({ kind: fc.constant('write' as const), store: fc.nat(2), value: fc.integer({ min: 1, max: 255 }), all: fc.boolean() }),
    fc.record({ kind: fc.constant('cursor' as const), value: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant('move' as const) }),
    fc.record({ kind: fc.constant('read' as const), bytes: fc.integer({ min: 1, max: 200_000 }) }),
    fc.record({ kind: fc.constant('flush' as const) }),
  );
  fcTest.prop([fc.array(op, { minLength: 1, maxLength: 60 })], { numRuns: 40, endOnFailure: true })('random interleavings keep every message intact (property)', async (ops) => {
    const [ours, qemu] = socketPair();
    const ch = new DisplayChannel(ours);
    const stores = [0, 1, 2].map((i) => {
      const st = new PixelStore(W * H * 4);
      st.bytes.fill(i + 1);
      return st;
    });
    let cursor = null as PixelStore | null; // (a plain null initializer narrows it to null for TypeScript)
    const expected: { type: number; payload: Uint8Array }[] = [];
    const received: Uint8Array[] = [];
    let receivedBytes = 0;
    const readSome = (max: number) => {
      const buf = new Uint8Array(max);
      const r = n.recvMsg(qemu, buf, 0, max, new Int32Array(9));
      if (r > 0) {
        received.push(buf.subarray(0, r));
        receivedBytes += r;
      }
    };
    const message = (head: Uint8Array, body: Uint8Array) => {
      const m = new Uint8Array(head.length + body.length);
      m.set(head);
      m.set(body, head.length);
      return m;
    };
    for (const o of ops) {
      if (o.kind === 'update') {
        const st = stores[o.store];
        const y = o.y, h = Math.min(o.h, H - y), x = o.full ? 0 : o.x, w = o.full ? W : Math.min(o.w, W - o.x);
        const payload = new Uint8Array(w * h * 4);
        for (let r = 0; r < h; r++) payload.set(st.bytes.subarray(((y + r) * W + x) * 4, ((y + r) * W + x + w) * 4), r * w * 4);
        expect(ch.update(0, x, y, w, h, { store: st, pitch: W, x, y, swizzle: 'none' })).toBe(true);
        const head = new Uint8Array(20);
        new DataView(head.buffer).setUint32(4, x, true);
        new DataView(head.buffer).setUint32(8, y, true);
        new DataView(head.buffer).setUint32(12, w, true);
        new DataView(head.buffer).setUint32(16, h, true);
        expected.push({ type: 8, payload: message(head, payload) });
      } else if (o.kind === 'write') {
        const st = (stores[o.store] = stores[o.store].forWrite(o.all));
        if (o.all) st.bytes.fill(o.value);
        else st.bytes.fill(o.value, 0, 8 * W * 4); // the first 8 rows
      } else if (o.kind === 'cursor') {
        cursor = cursor?.forWrite(true) ?? new PixelStore(64 * 64 * 4);
        cursor.bytes.fill(o.value);
        ch.cursorUpdate(0, 1, 2, 3, 4, cursor);
        const head = new Uint8Array(20);
        [0, 1, 2, 3, 4].forEach((v, i) => new DataView(head.buffer).setUint32(i * 4, v, true));
        expected.push({ type: 6, payload: message(head, cursor.bytes) });
      } else if (o.kind === 'move') {
        ch.cursorMove(0, 5, 6);
        expected.push({ type: 4, payload: Uint8Array.of(0, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0) });
      } else if (o.kind === 'read') {
        readSome(o.bytes);
      } else {
        ch.flush();
      }
    }
    ch.flush();
    const total = expected.reduce((t, m) => t + 12 + m.payload.length, 0);
    received.push(await readAll(qemu, total - receivedBytes));
    const got = new Uint8Array(total);
    let filled = 0;
    for (const r of received) {
      got.set(r, filled);
      filled += r.length;
    }
    let at = 0;
    for (const m of expected) {
      const v = new DataView(got.buffer, at, 12);
      expect([v.getUint32(0, true), v.getUint32(8, true)]).toEqual([m.type, m.payload.length]);
      expect(Buffer.compare(got.subarray(at + 12, at + 12 + m.payload.length), m.payload)).toBe(0);
      at += 12 + m.payload.length;
    }
    ch.close();
    n.close(qemu);
  });
});
