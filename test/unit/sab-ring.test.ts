import { describe, it, expect } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { Worker } from 'node:worker_threads';
import { SabRing } from '../../src/renderers/sab-ring.js';

describe('SabRing', () => {
  it('passes messages in order and reports full', () => {
    const r = new SabRing(64);
    expect(r.maxMessage).toBe(24);
    expect(r.push(new Uint8Array([1, 2, 3]))).toBe(true);
    expect(r.push(new Uint8Array(20).fill(7))).toBe(true);
    expect(r.push(new Uint8Array(24))).toBe(true); // 8 + 24 + 28 = 60 bytes used
    expect(r.push(new Uint8Array(1))).toBe(false); // 60 + 8 > 64
    const [at, len] = r.peek()!;
    expect([...r.bytes.subarray(at, at + len)]).toEqual([1, 2, 3]);
    r.release();
    const [at2, len2] = r.peek()!;
    expect(len2).toBe(20);
    expect(r.bytes[at2]).toBe(7);
    r.release();
    expect(r.peek()![1]).toBe(24);
    r.release();
    expect(r.peek()).toBeNull();
    expect(r.pending).toBe(0);
  });

  it('refuses messages larger than half the ring', () => {
    expect(() => new SabRing(64).reserve(25)).toThrow(RangeError);
    expect(() => new SabRing(100)).toThrow(RangeError);
  });

  fcTest.prop([fc.array(fc.integer({ min: 0, max: 120 }), { minLength: 1, maxLength: 200 })])(
    'wraps around without losing or reordering bytes',
    (sizes) => {
      const r = new SabRing(256);
      const queue: Uint8Array[] = [];
      let n = 0;
      const drainOne = () => {
        const m = r.peek()!;
        const want = queue.shift()!;
        expect(m[1]).toBe(want.length);
        expect(r.bytes.subarray(m[0], m[0] + m[1])).toEqual(want);
        r.release();
      };
      for (const size of sizes) {
        const msg = new Uint8Array(size).map(() => n++ & 0xff);
        while (!r.push(msg)) drainOne();
        queue.push(msg);
      }
      while (queue.length) drainOne();
      expect(r.peek()).toBeNull();
    },
  );

  it('works across threads', async () => {
    const r = new SabRing(1024);
    const worker = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const ctl = new Int32Array(workerData, 0, 16);
       const cap = Atomics.load(ctl, 2), mask = cap - 1;
       const view = new DataView(workerData, 64, cap);
       let sum = 0, count = 0;
       while (count < 10000) {
         const head = Atomics.load(ctl, 0) >>> 0, tail = Atomics.load(ctl, 1) >>> 0;
         if (head === tail) continue;
         let at = tail & mask, len = view.getUint32(at, true), skip = 0;
         if (len === 0xffffffff) { skip = cap - at; at = 0; len = view.getUint32(0, true); }
         sum += view.getUint32(at + 4, true); count++;
         Atomics.add(ctl, 1, skip + 4 + ((len + 3) & ~3));
       }
       parentPort.postMessage(sum);`,
      { eval: true, workerData: r.buffer },
    );
    const done = new Promise<number>((resolve) => worker.on('message', resolve));
    let expected = 0;
    for (let i = 0; i < 10000; i++) {
      const at = (() => { let a; while ((a = r.reserve(4 + (i % 13))) < 0); return a; })();
      r.view.setUint32(at, i, true);
      r.commit();
      expected += i;
    }
    expect(await done).toBe(expected);
    await worker.terminate();
  });
});
