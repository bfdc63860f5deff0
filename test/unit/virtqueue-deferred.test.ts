// VirtQueue's deferred completions (fenced 3D commands): the queue goes on, answers arrive later
// in any order, each built right before its push; and codec.copyReadable across descriptors.
import { describe, it, expect, beforeEach } from 'vitest';
import { Codec } from '../../src/queues/codec.js';
import { VirtQueue, DEFERRED, type Completer } from '../../src/queues/virtqueue.js';
import { R_TYPE, R_FENCE_LO } from '../../src/queues/layout.js';
import { MockRam, MockRing, request } from './mock-ring.js';

describe('VirtQueue: deferred completions', () => {
  let codec: Codec, ram: MockRam, ring: MockRing, q: VirtQueue;
  const later: { fence: number; done: Completer }[] = [];
  let notified = 0;
  const resps: bigint[] = [];

  beforeEach(() => {
    codec = Codec.create();
    ram = new MockRam();
    ring = new MockRing(ram);
    later.length = 0;
    resps.length = 0;
    notified = 0;
    const handler = {
      responds: true,
      execute(c: Codec, queue: VirtQueue): number {
        if (c.rec[R_TYPE] === 0x0207) {
          later.push({ fence: c.rec[R_FENCE_LO], done: queue.defer() });
          return DEFERRED;
        }
        c.respView.setUint32(0, 0x1100, true);
        c.respView.setUint32(8, 0, true);
        return 24;
      },
    };
    q = new VirtQueue(0, codec, handler, () => notified++, () => {});
    codec.setMemory(ram.asGuestMemory());
    expect(q.start({ size: ring.size, desc: ring.desc, avail: ring.avail, used: ring.used, lastAvail: 0, eventIdx: false, indirect: true })).toBeNull();
  });

  function submit(type: number, fence: number, first: number): void {
    const req = request(type, [0, 0], { flags: 1, fence: BigInt(fence) });
    const r = ram.alloc(req.length), w = ram.alloc(24);
    ram.write(r, req);
    resps.push(w);
    ring.addChain([{ addr: r, len: req.length }, { addr: w, len: 24, write: true }], first);
  }

  it('goes on past a deferred command and pushes its answer when completed', async () => {
    submit(0x0207, 7, 0);
    submit(0x0101, 8, 2);
    q.process();
    expect(ring.usedIdx()).toBe(1); // the second, immediate one
    expect(ring.usedElem(0).id).toBe(2);
    expect(later).toHaveLength(1);
    later[0].done((c) => {
      c.respView.setUint32(0, 0x1100, true);
      c.respView.setUint32(8, later[0].fence, true);
      return 24;
    });
    expect(ring.usedIdx()).toBe(2);
    expect(ring.usedElem(1)).toEqual({ id: 0, len: 24 });
    expect(ram.u32(resps[0] + 8n)).toBe(7);
    expect(notified).toBe(1); // the notify comes after the completions of this run
    await Promise.resolve();
    expect(notified).toBe(2);
  });

  it('notifies once for completions that arrive together', async () => {
    for (let i = 0; i < 3; i++) submit(0x0207, i, 2 * i);
    q.process();
    expect(later).toHaveLength(3);
    const before = notified;
    for (const l of later) l.done((c) => (c.respView.setUint32(0, 0x1100, true), 24));
    await Promise.resolve();
    expect(ring.usedIdx()).toBe(3);
    expect(notified - before).toBe(1);
  });

  it('drops a completion that arrives after the ring was stopped', () => {
    submit(0x0207, 1, 0);
    q.process();
    q.stop();
    later[0].done(() => 24);
    expect(ring.usedIdx()).toBe(0);
  });

  it('copies readable chain bytes across descriptors', () => {
    const a = ram.alloc(8), b = ram.alloc(8), w = ram.alloc(24);
    ram.write(a, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    ram.write(b, Uint8Array.of(9, 10, 11, 12, 13, 14, 15, 16));
    ring.addChain([{ addr: a, len: 8 }, { addr: b, len: 8 }, { addr: w, len: 24, write: true }]);
    const c2 = Codec.create();
    expect(ring.setup(c2)).toBe(0);
    expect(c2.pop(0)).toBe(1);
    const dst = new Uint8Array(8);
    expect(c2.copyReadable(6, dst, 1, 6)).toBe(6);
    expect([...dst]).toEqual([0, 7, 8, 9, 10, 11, 12, 0]);
    expect(c2.copyReadable(14, dst, 0, 8)).toBe(2); // past the end: only what exists
  });
});
