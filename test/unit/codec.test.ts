import { describe, it, expect, beforeEach } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { Codec } from '../../src/queues/codec.js';
import {
  POP_BROKEN, POP_CHAIN, POP_EMPTY, R_STATUS, R_SLOT, R_HEAD, R_RLEN, R_WLEN, R_TYPE, R_ARGS, R_NENTRIES, R_FENCE_LO, R_FLAGS, R_AVAIL_SEEN,
} from '../../src/queues/layout.js';
import { MockRam, MockRing, request, F_NEXT, F_WRITE, F_INDIRECT } from './mock-ring.js';

const entryGpa = (codec: Codec, i: number) => BigInt(codec.entries[4 * i]) | (BigInt(codec.entries[4 * i + 1]) << 32n);

const ERR_UNSPEC = 0x1200, ERR_INVALID_PARAMETER = 0x1205;

describe('codec: chains', () => {
  let codec: Codec, ram: MockRam, ring: MockRing;
  beforeEach(() => {
    codec = Codec.create();
    ram = new MockRam();
    ring = new MockRing(ram);
    expect(ring.setup(codec)).toBe(0);
  });

  function submit(req: Uint8Array, respLen = 64): { req: bigint; resp: bigint } {
    const r = ram.alloc(req.length), w = ram.alloc(respLen);
    ram.write(r, req);
    ring.addChain([{ addr: r, len: req.length }, { addr: w, len: respLen, write: true }]);
    return { req: r, resp: w };
  }

  it('pops, decodes and pushes a request with its response', () => {
    const { resp } = submit(request(0x0101, [7, 1, 64, 32], { flags: 1, fence: 0x1_0000_0005n }));
    expect(codec.pop(0)).toBe(POP_CHAIN);
    expect(codec.rec[R_STATUS]).toBe(0);
    expect(codec.rec[R_RLEN]).toBe(40);
    expect(codec.rec[R_WLEN]).toBe(64);
    codec.decode(true);
    expect(codec.rec[R_STATUS]).toBe(0);
    expect(codec.rec[R_TYPE]).toBe(0x0101);
    expect(codec.rec[R_FLAGS]).toBe(1);
    expect(codec.rec[R_FENCE_LO]).toBe(5);
    expect([...codec.rec.subarray(R_ARGS, R_ARGS + 4)]).toEqual([7, 1, 64, 32]);
    codec.respView.setUint32(0, 0x1100, true);
    expect(codec.push(0, codec.rec[R_SLOT], 24)).toBe(24);
    expect(ring.usedIdx()).toBe(1);
    expect(ring.usedElem(0)).toEqual({ id: 0, len: 24 });
    expect(ram.u32(resp)).toBe(0x1100);
    expect(codec.pop(0)).toBe(POP_EMPTY);
  });

  it('splits a request that straddles two memory chunks', () => {
    const two = new MockRam(0x8000_0000n, [4096, 4096]);
    const r2 = new MockRing(two, 8);
    expect(r2.setup(codec)).toBe(0);
    const req = request(0x0105, [1, 2, 3, 4, 0, 0, 9, 0]);
    two.seek(two.base + 4096n - 20n);
    const at = two.alloc(req.length, 4);
    two.write(at, req);
    const w = two.alloc(24);
    r2.addChain([{ addr: at, len: req.length }, { addr: w, len: 24, write: true }]);
    expect(codec.pop(0)).toBe(POP_CHAIN);
    codec.decode(true);
    expect(codec.rec[R_STATUS]).toBe(0);
    expect(codec.rec[R_ARGS + 6]).toBe(9);
  });

  it('walks an indirect table', () => {
    const req = request(0x0100);
    const r = ram.alloc(24), w = ram.alloc(408);
    ram.write(r, req);
    const table = ram.alloc(32, 16);
    ring.setDesc(0, { addr: r, len: 24, flags: F_NEXT, next: 1 }, table);
    ring.setDesc(1, { addr: w, len: 408, flags: F_WRITE, next: 0 }, table);
    ring.setDesc(0, { addr: table, len: 32, flags: F_INDIRECT, next: 0 });
    ring.publish(0);
    expect(codec.pop(0)).toBe(POP_CHAIN);
    expect(codec.rec[R_STATUS]).toBe(0);
    expect(codec.rec[R_WLEN]).toBe(408);
  });

  it.each([2, 64, 65, 200])('walks an indirect table of %i descriptors (small ones are read whole)', (n) => {
    // n-1 readable descriptors of 8 bytes each, then a writable one.
    const req = request(0x0100, Array(2 * n).fill(7));
    const r = ram.alloc(8 * (n - 1) + 24), w = ram.alloc(408);
    ram.write(r, req.subarray(0, Math.min(req.length, 8 * (n - 1))));
    const table = ram.alloc(16 * n, 16);
    for (let i = 0; i < n - 1; i++) ring.setDesc(i, { addr: r + BigInt(8 * i), len: 8, flags: F_NEXT, next: i + 1 }, table);
    ring.setDesc(n - 1, { addr: w, len: 408, flags: F_WRITE, next: 0 }, table);
    ring.setDesc(0, { addr: table, len: 16 * n, flags: F_INDIRECT, next: 0 });
    ring.publish(0);
    expect(codec.pop(0)).toBe(POP_CHAIN);
    expect(codec.rec[R_STATUS]).toBe(0);
    expect([codec.rec[R_RLEN], codec.rec[R_WLEN]]).toEqual([8 * (n - 1), 408]);
  });

  it('reads avail.idx again only once the chains it announced are taken', () => {
    const r = ram.alloc(24), w = ram.alloc(24);
    ram.write(r, request(0x0100));
    const add = () => ring.addChain([{ addr: r, len: 24 }, { addr: w, len: 24, write: true }]);
    const popSeen = () => {
      expect(codec.pop(0)).toBe(POP_CHAIN);
      codec.push(0, codec.rec[R_SLOT], 0);
      return codec.rec[R_AVAIL_SEEN];
    };
    for (let i = 0; i < 3; i++) add();
    expect(popSeen()).toBe(3);
    add(); // announced while chains read earlier are still waiting: not looked at yet
    expect([popSeen(), popSeen(), popSeen()]).toEqual([3, 3, 4]);
    expect(codec.pop(0)).toBe(POP_EMPTY);
  });

  const chainErrors: [string, () => void, number][] = [
    ['next index out of range', () => { ring.setDesc(0, { addr: 0x1_0000_0000n, len: 24, flags: F_NEXT, next: 99 }); ring.publish(0); }, -1],
    ['a loop', () => { ring.setDesc(0, { addr: 0x1_0000_0000n, len: 24, flags: F_NEXT, next: 1 }); ring.setDesc(1, { addr: 0x1_0000_0000n, len: 24, flags: F_NEXT, next: 0 }); ring.publish(0); }, -2],
    ['buffer outside memory', () => { ring.setDesc(0, { addr: 0x10n, len: 24, flags: 0, next: 0 }); ring.publish(0); }, -3],
    ['buffer running past the end of memory', () => { ring.setDesc(0, { addr: ram.end - 8n, len: 24, flags: 0, next: 0 }); ring.publish(0); }, -3],
    ['address wrapping 2^64', () => { ring.setDesc(0, { addr: 0xffff_ffff_ffff_fff0n, len: 0x20, flags: 0, next: 0 }); ring.publish(0); }, -3],
    ['readable after writable', () => { ring.setDesc(0, { addr: ram.base, len: 24, flags: F_WRITE | F_NEXT, next: 1 }); ring.setDesc(1, { addr: ram.base, len: 24, flags: 0, next: 0 }); ring.publish(0); }, -4],
    ['indirect with NEXT', () => { ring.setDesc(0, { addr: ram.base, len: 32, flags: F_INDIRECT | F_NEXT, next: 1 }); ring.publish(0); }, -5],
    ['indirect of odd length', () => { ring.setDesc(0, { addr: ram.base, len: 24, flags: F_INDIRECT, next: 0 }); ring.publish(0); }, -5],
    ['nested indirect', () => {
      const t = ram.alloc(16, 16);
      ring.setDesc(0, { addr: t, len: 16, flags: F_INDIRECT, next: 0 }, t);
      ring.setDesc(0, { addr: t, len: 16, flags: F_INDIRECT, next: 0 });
      ring.publish(0);
    }, -5],
  ];
  for (const [name, build, code] of chainErrors) {
    it(`returns a malformed chain (${name}) with status ${code}`, () => {
      build();
      expect(codec.pop(0)).toBe(POP_CHAIN);
      expect(codec.rec[R_STATUS]).toBe(code);
      expect(codec.push(0, codec.rec[R_SLOT], 24)).toBe(0); // nothing written
      expect(ring.usedElem(0)).toEqual({ id: codec.rec[R_HEAD], len: 0 });
    });
  }

  it('refuses a chain longer than 4 GiB in total', () => {
    // The codec only checks lengths against the chunk table, so a large chunk needs no real bytes.
    const big = { ...ram.chunks[0], len: 0xc000_0000 };
    codec.setMemory({ chunks: [big] } as never);
    ring.setDesc(0, { addr: ram.base + 0x1000_0000n, len: 0x8000_0000, flags: F_NEXT, next: 1 });
    ring.setDesc(1, { addr: ram.base + 0x1000_0000n, len: 0x8000_0000, flags: 0, next: 0 });
    ring.publish(0);
    expect(codec.pop(0)).toBe(POP_CHAIN);
    expect(codec.rec[R_STATUS]).toBe(-6);
  });

  it('refuses indirect tables when INDIRECT_DESC was not negotiated', () => {
    expect(ring.setup(codec, 0, { eventIdx: false, indirect: false })).toBe(0);
    const t = ram.alloc(16, 16);
    ring.setDesc(0, { addr: ram.base, len: 24, flags: 0, next: 0 }, t);
    ring.setDesc(0, { addr: t, len: 16, flags: F_INDIRECT, next: 0 });
    ring.publish(0);
    expect(codec.pop(0)).toBe(POP_CHAIN);
    expect(codec.rec[R_STATUS]).toBe(-5);
  });

  it('marks the ring broken when avail.idx jumps by more than the queue size', () => {
    ram.u16(ring.avail + 2n, 17);
    expect(codec.pop(0)).toBe(POP_BROKEN);
    expect(codec.broken(0)).toBe(1);
    expect(codec.pop(0)).toBe(POP_BROKEN);
  });

  it('marks the ring broken for a head index out of range', () => {
    ring.publish(16);
    expect(codec.pop(0)).toBe(POP_BROKEN);
    expect(codec.broken(0)).toBe(2);
  });

  it('answers a short request with ERR_UNSPEC and an unknown type with ERR_UNSPEC', () => {
    submit(request(0x0101, [1, 1]));
    codec.pop(0);
    expect(codec.decode(true)).toBe(ERR_UNSPEC);
    codec.push(0, codec.rec[R_SLOT], 0);
    submit(request(0x0999, [1, 2, 3]));
    codec.pop(0);
    expect(codec.decode(true)).toBe(ERR_UNSPEC);
  });

  it('treats a control chain without room for a response header as a chain error', () => {
    const r = ram.alloc(24);
    ram.write(r, request(0x0100));
    ring.addChain([{ addr: r, len: 24 }, { addr: ram.alloc(8), len: 8, write: true }]);
    codec.pop(0);
    expect(codec.decode(true)).toBe(-8);
  });

  it('decodes mem entries and refuses entries outside guest memory or too many', () => {
    const good = request(0x0106, [5, 2, ...[0, 1, 4096, 0], ...[4096, 1, 8192, 0]]);
    good.set(new Uint8Array(new BigUint64Array([ram.base + 0x1000n]).buffer), 32);
    good.set(new Uint8Array(new BigUint64Array([ram.base + 0x8000n]).buffer), 48);
    submit(good);
    codec.pop(0);
    expect(codec.decode(true)).toBe(0);
    expect(codec.rec[R_NENTRIES]).toBe(2);
    expect(entryGpa(codec, 1)).toBe(ram.base + 0x8000n);
    expect(codec.entries[4 * 1 + 2]).toBe(8192);
    codec.push(0, codec.rec[R_SLOT], 24);

    const bad = request(0x0106, [5, 1, 0x10, 0, 4096, 0]);
    submit(bad);
    codec.pop(0);
    expect(codec.decode(true)).toBe(ERR_INVALID_PARAMETER);
    codec.push(0, codec.rec[R_SLOT], 24);

    submit(request(0x0106, [5, 16385]));
    codec.pop(0);
    expect(codec.decode(true)).toBe(ERR_INVALID_PARAMETER);
    codec.push(0, codec.rec[R_SLOT], 24);

    submit(request(0x0106, [5, 3, 0, 0, 0, 0])); // claims 3 entries, carries 1
    codec.pop(0);
    expect(codec.decode(true)).toBe(ERR_UNSPEC);
  });

  it('reads large entry lists spread over many descriptors', () => {
    const n = 1000;
    const body = new Uint8Array(32 + 16 * n);
    body.set(request(0x0106, [9, n]));
    const v = new DataView(body.buffer);
    for (let i = 0; i < n; i++) {
      v.setBigUint64(32 + 16 * i, ram.base + BigInt(i * 64), true);
      v.setUint32(40 + 16 * i, 64, true);
    }
    const parts: { addr: bigint; len: number; write?: boolean }[] = [];
    for (let at = 0; at < body.length; at += 4000) {
      const piece = body.subarray(at, at + 4000);
      const a = ram.alloc(piece.length, 8);
      ram.write(a, piece);
      parts.push({ addr: a, len: piece.length });
    }
    parts.push({ addr: ram.alloc(24), len: 24, write: true });
    ring.addChain(parts);
    codec.pop(0);
    expect(codec.decode(true)).toBe(0);
    expect(codec.rec[R_NENTRIES]).toBe(n);
    expect(entryGpa(codec, 999)).toBe(ram.base + 999n * 64n);
  });

  it('writes a response only into the writable buffers, across several of them', () => {
    const r = ram.alloc(24);
    ram.write(r, request(0x0100));
    const w1 = ram.alloc(10), w2 = ram.alloc(100);
    ring.addChain([{ addr: r, len: 24 }, { addr: w1, len: 10, write: true }, { addr: w2, len: 100, write: true }]);
    codec.pop(0);
    codec.decode(true);
    for (let i = 0; i < 60; i++) codec.resp[i] = i + 1;
    expect(codec.push(0, codec.rec[R_SLOT], 60)).toBe(60);
    expect([...ram.read(w1, 10)]).toEqual([...Array(10).keys()].map((i) => i + 1));
    expect(ram.read(w2, 50)[0]).toBe(11);
    expect(ram.read(r, 24)).toEqual(request(0x0100)); // readable part untouched
  });
});

describe('codec: notifications (EVENT_IDX)', () => {
  it('notifies only when used_event is crossed, and arms avail_event', () => {
    const codec = Codec.create();
    const ram = new MockRam();
    const ring = new MockRing(ram, 8);
    expect(ring.setup(codec, 0, { eventIdx: true, indirect: true })).toBe(0);
    const usedEvent = ring.avail + BigInt(4 + 2 * 8);
    const doOne = () => {
      const r = ram.alloc(24), w = ram.alloc(24);
      ram.write(r, request(0x0100));
      ring.addChain([{ addr: r, len: 24 }, { addr: w, len: 24, write: true }]);
      expect(codec.pop(0)).toBe(POP_CHAIN);
      codec.push(0, codec.rec[R_SLOT], 24);
    };
    ram.u16(usedEvent, 0);
    doOne();
    expect(codec.needNotify(0)).toBe(true); // first one always
    ram.u16(usedEvent, 5); // driver wants an interrupt after used entry 5
    doOne();
    expect(codec.needNotify(0)).toBe(false);
    for (let i = 0; i < 4; i++) doOne(); // used idx 2..6: crosses 5
    expect(codec.needNotify(0)).toBe(true);
    expect(codec.arm(0)).toBe(false);
    expect(ram.u16(ring.used + BigInt(4 + 8 * 8))).toBe(codec.lastAvail(0));
  });

  it('honours NO_INTERRUPT without EVENT_IDX', () => {
    const codec = Codec.create();
    const ram = new MockRam();
    const ring = new MockRing(ram, 8);
    ring.setup(codec, 0, { eventIdx: false, indirect: false });
    ram.u16(ring.avail, 1);
    expect(codec.needNotify(0)).toBe(false);
    ram.u16(ring.avail, 0);
    expect(codec.needNotify(0)).toBe(true);
  });
});

describe('codec: ring setup', () => {
  it('refuses bad sizes, misaligned rings and rings outside memory', () => {
    const codec = Codec.create();
    const ram = new MockRam();
    codec.setMemory(ram.asGuestMemory());
    const b = ram.base;
    expect(codec.setupQueue(0, 3, b, b + 0x1000n, b + 0x2000n, 0, 0)).toBe(-10);
    expect(codec.setupQueue(0, 65536, b, b + 0x1000n, b + 0x2000n, 0, 0)).toBe(-10);
    expect(codec.setupQueue(0, 8, b + 8n, b + 0x1000n, b + 0x2000n, 0, 0)).toBe(-11);
    expect(codec.setupQueue(0, 8, 0n, b + 0x1000n, b + 0x2000n, 0, 0)).toBe(-12);
    expect(codec.setupQueue(5, 8, b, b + 0x1000n, b + 0x2000n, 0, 0)).toBe(-10);
    expect(codec.setupQueue(0, 8, b, b + 0x1000n, b + 0x2000n, 0, 0)).toBe(0);
  });
});

describe('codec: hostile rings (property)', () => {
  // Any descriptor table and avail ring: pop returns a defined result, never throws, and a push
  // writes only inside buffers the chain marked writable.
  fcTest.prop([
    fc.array(fc.record({
      addrOff: fc.oneof(fc.integer({ min: 0, max: 0x3ffff }), fc.constant(-1)),
      len: fc.oneof(fc.integer({ min: 0, max: 512 }), fc.constant(0xffffffff)),
      flags: fc.integer({ min: 0, max: 7 }),
      next: fc.integer({ min: 0, max: 20 }),
    }), { minLength: 16, maxLength: 16 }),
    fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 16 }),
    fc.boolean(),
  ], { numRuns: 300 })('random descriptor tables', (descs, heads, eventIdx) => {
    const codec = Codec.create();
    const ram = new MockRam(0x4000_0000n, [0x40000]);
    const ring = new MockRing(ram, 16);
    ring.setup(codec, 0, { eventIdx, indirect: true });
    const snapshot = ram.chunks[0].bytes.slice();
    descs.forEach((d, i) => ring.setDesc(i, {
      addr: d.addrOff < 0 ? 0xdead_0000n : ram.base + BigInt(d.addrOff),
      len: d.len, flags: d.flags, next: d.next,
    }));
    for (const h of heads) ring.publish(h);
    const before = ram.chunks[0].bytes.slice();
    for (let i = 0; i < heads.length + 2; i++) {
      const r = codec.pop(0);
      expect([POP_EMPTY, POP_CHAIN, POP_BROKEN]).toContain(r);
      if (r !== POP_CHAIN) break;
      if (codec.rec[R_STATUS] === 0) codec.decode(true);
      codec.resp.fill(0xee, 0, 64);
      const wrote = codec.push(0, codec.rec[R_SLOT], 64);
      expect(wrote).toBeLessThanOrEqual(Math.max(0, codec.rec[R_WLEN]));
    }
    // Bytes that changed lie in the used ring or in some writable descriptor's buffer.
    const after = ram.chunks[0].bytes;
    const usedStart = Number(ring.used - ram.base), usedEnd = usedStart + 6 + 8 * 16;
    const writable = descs.filter((d) => d.flags & F_WRITE && d.addrOff >= 0).map((d) => [d.addrOff, d.addrOff + d.len]);
    const indirectTables = descs.filter((d) => d.flags & F_INDIRECT && d.addrOff >= 0);
    for (let i = 0; i < after.length; i++) {
      if (after[i] === before[i]) continue;
      const ok = (i >= usedStart && i < usedEnd) || writable.some(([a, b]) => i >= a && i < b) || indirectTables.length > 0;
      expect(ok, `byte ${i} changed`).toBe(true);
    }
    void snapshot;
  });
});
