/**
 * The codec (assembly/ through src/queues/codec.ts) over hostile split rings: random and mutated
 * descriptor tables, indirect tables, avail rings and command bytes in a small guest RAM of two
 * chunks, driven like src/queues/virtqueue.ts drives it (pop, decode, push, arm, notify).
 *
 * Invariants: nothing throws (a Wasm trap is a finding), decoded counts stay within the codec's
 * buffers, a push never reports more than the chain's writable bytes, and guest memory changes
 * only where the device may write: the used ring and buffers some descriptor marks writable.
 */
import { Codec } from '../../src/queues/codec.js';
import { memfdMapping } from '../frontend/guest-memory.js';
import { makeChunk, type Chunk, type GuestMemory } from '../../src/transport/guest-memory.js';
import {
  POP_BROKEN, POP_CHAIN, POP_EMPTY, R_NENTRIES, R_NREAD, R_NSEGS, R_SLOT, R_STATUS, R_WLEN,
} from '../../src/queues/layout.js';
import { Rng } from './rng.js';
import { MAX_FINDINGS, b64, rssMiB, unb64, type Finding, type FuzzReport, type FuzzRunOptions, type FuzzTarget } from './target.js';

const F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;
const BASE0 = 0x10000n, LEN0 = 0x10000;
const BASE1 = 0x30000n, LEN1 = 0x4000;
// Offsets in chunk 0.
const DESC = 0, AVAIL = 0x1000, USED = 0x1400, INDIRECT = 0x2000, READ = 0x4000, WRITE = 0x8000;
const MAX_SIZE = 256;
const COMMANDS = [
  0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10a, 0x10b, 0x10c, 0x10d, 0x10e,
  0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0x20a, 0x300, 0x301,
];
/** Check guest memory for stray writes on every CHECK_EVERY-th input (a full compare costs more than an input). */
const CHECK_EVERY = 32;

interface QueueParams { size: number; features: number; lastAvail: number }

/** Entries the generators fill: the queue size, clamped to what the RAM layout holds (sizes 0 and 65536 are refused by setup). */
const ringSize = (p: QueueParams): number => Math.min(Math.max(p.size, 1), MAX_SIZE);

class Ram {
  readonly chunks: Chunk[];
  private readonly saved: Uint32Array[];
  readonly memory: GuestMemory;

  constructor() {
    this.chunks = ([[BASE0, LEN0], [BASE1, LEN1]] as const).map(([gpa, len]) => {
      const { map, ab } = memfdMapping('fuzz-ram', len);
      return makeChunk(gpa, Number(map.addr), ab);
    });
    this.saved = this.chunks.map((c) => new Uint32Array(c.len >>> 2));
    this.memory = { chunks: this.chunks, generation: 1 } as unknown as GuestMemory;
  }

  get c0(): Chunk { return this.chunks[0]!; }

  snapshot(): void {
    this.chunks.forEach((c, i) => this.saved[i]!.set(c.words));
  }

  /** gpa of every byte that differs from the snapshot and is not inside an allowed range. */
  strayWrites(allowed: [bigint, bigint][]): bigint[] {
    const out: bigint[] = [];
    this.chunks.forEach((c, i) => {
      const was = this.saved[i]!, now = c.words;
      for (let w = 0; w < now.length; w++) {
        if (was[w] === now[w]) continue;
        for (let k = 0; k < 4; k++) {
          if (((was[w]! >>> (8 * k)) & 0xff) === ((now[w]! >>> (8 * k)) & 0xff)) continue;
          const gpa = c.gpa + BigInt(w * 4 + k);
          if (!allowed.some(([a, b]) => gpa >= a && gpa < b)) out.push(gpa);
        }
      }
    });
    return out;
  }

  /** The chunk and offset of gpa, or null outside RAM. */
  locate(gpa: bigint): [Chunk, number] | null {
    for (const c of this.chunks) if (gpa >= c.gpa && gpa < c.gpa + BigInt(c.len)) return [c, Number(gpa - c.gpa)];
    return null;
  }
}

/** Builds and mutates hostile rings in the RAM. */
class RingGen {
  constructor(private readonly r: Rng, private readonly ram: Ram) {}

  /** An address a descriptor may name: mostly useful places, sometimes edges and nonsense. */
  addr(): bigint {
    const r = this.r;
    switch (r.below(10)) {
      case 0: case 1: case 2: return BASE0 + BigInt(READ + r.below(0x4000));
      case 3: case 4: case 5: return BASE0 + BigInt(WRITE + r.below(0x8000));
      case 6: return BASE0 + BigInt(INDIRECT + 16 * r.below(0x200));
      case 7: return BASE1 + BigInt(r.below(LEN1 + 64)) - 32n; // around and across chunk 1
      case 8: return BASE0 + BigInt(LEN0) - BigInt(r.below(64)); // the end of chunk 0
      default: return r.chance(0.5) ? BigInt(r.u32()) | (BigInt(r.edgy()) << 32n) : BigInt(r.edgy());
    }
  }

  len(): number {
    const r = this.r;
    switch (r.below(6)) {
      case 0: return 24 + 4 * r.below(32);
      case 1: return r.below(4096);
      case 2: return r.pick([0, 1, 23, 24, 4096, 4097]);
      default: return r.edgy();
    }
  }

  flags(): number {
    const r = this.r;
    if (r.chance(0.05)) return r.u32() & 0xffff;
    return (r.chance(0.5) ? F_NEXT : 0) | (r.chance(0.4) ? F_WRITE : 0) | (r.chance(0.08) ? F_INDIRECT : 0);
  }

  desc(c: Chunk, off: number, max: number): void {
    const v = c.view;
    v.setBigUint64(off, this.addr(), true);
    v.setUint32(off + 8, this.len(), true);
    v.setUint16(off + 12, this.flags(), true);
    v.setUint16(off + 14, this.r.chance(0.9) ? this.r.below(max) : this.r.u32() & 0xffff, true);
  }

  /** A well-formed chain (readable command, writable response) at head, to keep valid paths busy. */
  goodChain(size: number, head: number): void {
    const v = this.ram.c0.view, r = this.r;
    const n = 1 + r.below(3);
    for (let k = 0; k < n; k++) {
      const i = (head + k) % size, last = k === n - 1, write = k > 0 && (last || r.chance(0.5));
      const off = DESC + 16 * i;
      v.setBigUint64(off, BASE0 + BigInt((write ? WRITE : READ) + 8 * r.below(0x600)), true);
      v.setUint32(off + 8, write ? 24 + r.below(1200) : 24 + 4 * r.below(40), true);
      v.setUint16(off + 12, (write ? F_WRITE : 0) | (last ? 0 : F_NEXT), true);
      v.setUint16(off + 14, (i + 1) % size, true);
    }
  }

  /** Random command bytes: the whole area once, later n words and command types. */
  commands(n: number): void {
    const c = this.ram.c0, r = this.r;
    if (n < 0) r.fill(c.bytes, READ, 0x4000);
    for (let k = n < 0 ? 0x4000 / 64 : n; k > 0; k--) {
      c.view.setUint32(READ + 4 * r.below(0x1000), r.chance(0.5) ? r.edgy() : r.u32(), true);
      c.view.setUint32(READ + 8 * r.below(0x800), r.pick(COMMANDS), true);
    }
  }

  fresh(p: QueueParams): void {
    const c = this.ram.c0, r = this.r;
    p.size = r.chance(0.03) ? r.pick([0, 3, 100, 65536]) : 2 ** r.below(9); // MAX_SIZE at most: the layout holds no more
    p.features = r.below(4);
    p.lastAvail = r.chance(0.8) ? 0 : r.u32() & 0xffff;
    const size = ringSize(p);
    c.bytes.fill(0, 0, READ);
    for (let i = 0; i < size; i++) {
      if (r.chance(0.5)) this.goodChain(size, i);
      else this.desc(c, DESC + 16 * i, size);
    }
    for (let i = 0; i < 0x200; i++) if (r.chance(0.3)) this.desc(c, INDIRECT + 16 * i, 16);
    this.commands(16);
    c.view.setUint16(USED + 2, r.chance(0.9) ? p.lastAvail : r.u32() & 0xffff, true);
    this.publish(p, 1 + r.below(size));
  }

  /** Make n more chains available (heads mostly in range), avail.idx sometimes jumping. */
  publish(p: QueueParams, n: number): void {
    const v = this.ram.c0.view, r = this.r, size = ringSize(p);
    let idx = v.getUint16(AVAIL + 2, true);
    for (let k = 0; k < n; k++) {
      v.setUint16(AVAIL + 4 + 2 * (idx % size), r.chance(0.995) ? r.below(size) : r.u32() & 0xffff, true);
      idx = (idx + 1) & 0xffff;
    }
    if (r.chance(0.002)) idx = r.u32() & 0xffff;
    v.setUint16(AVAIL + 2, idx, true);
    if (r.chance(0.2)) v.setUint16(AVAIL + 4 + 2 * size, r.u32() & 0xffff, true); // used_event
  }

  mutate(p: QueueParams): void {
    const c = this.ram.c0, r = this.r, size = ringSize(p);
    for (let m = 1 + r.below(4); m > 0; m--) {
      switch (r.below(7)) {
        case 0: this.desc(c, DESC + 16 * r.below(size), size); break;
        case 1: this.goodChain(size, r.below(size)); break;
        case 2: this.desc(c, INDIRECT + 16 * r.below(0x200), 16); break;
        case 3: c.bytes[r.below(READ)] = r.u32() & 0xff; break; // any ring byte (not the used ring's own state)
        case 4: c.view.setUint32(READ + 4 * r.below(0x1000), r.chance(0.5) ? r.pick(COMMANDS) : r.edgy(), true); break;
        case 5: c.bytes[WRITE + r.below(0x8000)] = r.u32() & 0xff; break;
        default: break;
      }
    }
    this.publish(p, r.below(4));
  }
}

/** Ranges the device may write: the used ring, and every buffer a descriptor (direct or indirect) marks writable. */
function writableRanges(ram: Ram, p: QueueParams): [bigint, bigint][] {
  const size = p.size;
  const out: [bigint, bigint][] = [[BASE0 + BigInt(USED), BASE0 + BigInt(USED + 6 + 8 * size)]];
  const table = (c: Chunk, off: number, n: number, nested: boolean) => {
    for (let i = 0; i < n && off + 16 * i + 16 <= c.len; i++) {
      const at = off + 16 * i;
      const addr = c.view.getBigUint64(at, true), len = c.view.getUint32(at + 8, true), flags = c.view.getUint16(at + 12, true);
      if (flags & F_WRITE) out.push([addr, addr + BigInt(len)]);
      if (nested && flags & F_INDIRECT) {
        const t = ram.locate(addr);
        if (t) table(t[0], t[1], Math.min(len >>> 4, 4096), false);
      }
    }
  };
  table(ram.c0, DESC, size, true);
  return out;
}

/**
 * Where the pass may have written: what the descriptors said before it (a response may overwrite
 * the very descriptors that made it writable) and after it (a chain popped later in the pass
 * reads descriptors an earlier response rewrote).
 */
function allowedWrites(before: [bigint, bigint][], ram: Ram, p: QueueParams): [bigint, bigint][] {
  return [...before, ...writableRanges(ram, p)];
}

export class CodecTarget implements FuzzTarget {
  readonly name = 'codec';

  async run(o: FuzzRunOptions): Promise<FuzzReport> {
    const r = new Rng(o.seed);
    const ram = new Ram();
    const codec = Codec.create();
    codec.setMemory(ram.memory);
    const gen = new RingGen(r, ram);
    const p: QueueParams = { size: 16, features: 0, lastAvail: 0 };
    const findings: Finding[] = [];
    let findingCount = 0;
    const rssStart = rssMiB();
    let rssPeak = rssStart, inputs = 0, chains = 0, setups = 0;
    const start = performance.now(), deadline = start + o.seconds * 1000;
    let ready = false, broken = false;
    gen.commands(-1);
    const before = { c0: new Uint8Array(LEN0), c1: new Uint8Array(LEN1), p: { ...p } };

    const record = (f: Finding) => {
      findingCount++;
      if (findings.length < MAX_FINDINGS) findings.push(f);
      o.progress?.(`codec: ${f.kind}: ${f.message}`);
    };

    while ((o.maxInputs === undefined || inputs < o.maxInputs) && ((inputs & 1023) !== 0 || performance.now() < deadline)) {
      if (!ready || r.chance(1 / 256)) {
        // A broken ring is set up again as a front-end would (from avail.idx), else rebuilt.
        if (!ready && broken && r.chance(0.9)) p.lastAvail = ram.c0.view.getUint16(AVAIL + 2, true);
        else gen.fresh(p);
        broken = false;
        ready = setup(codec, p) === 0;
        setups++;
        if (!ready) continue;
      } else gen.mutate(p);
      inputs++;
      const check = inputs % CHECK_EVERY === 0;
      let allowedBefore: [bigint, bigint][] = [];
      if (check) {
        ram.snapshot();
        allowedBefore = writableRanges(ram, p);
        before.c0.set(ram.chunks[0]!.bytes); before.c1.set(ram.chunks[1]!.bytes); Object.assign(before.p, p);
        before.p.lastAvail = codec.lastAvail(0);
      }
      try {
        const problem = drive(codec, r, p.size);
        chains += problem.chains;
        if (problem.broken) { ready = false; broken = true; }
        if (problem.error) record({ kind: 'invariant', message: problem.error });
      } catch (e) {
        record({ kind: 'crash', message: `codec threw: ${(e as Error)?.stack ?? e}` });
        ready = false;
        codec.resetQueue(0);
      }
      if (check) {
        const stray = ram.strayWrites(allowedWrites(allowedBefore, ram, p));
        if (stray.length > 0) {
          record({
            kind: 'invariant',
            message: `${stray.length} bytes written outside the used ring and writable buffers, first at 0x${stray[0]!.toString(16)}`,
            reproducer: { params: { ...before.p }, chunk0: b64(before.c0), chunk1: b64(before.c1) },
          });
        }
      }
      if ((inputs & 0xffff) === 0) {
        rssPeak = Math.max(rssPeak, rssMiB());
        if (rssPeak - rssStart > 256) record({ kind: 'leak', message: `RSS grew from ${rssStart.toFixed(0)} to ${rssPeak.toFixed(0)} MiB` });
        o.progress?.(`codec: ${inputs} inputs, ${chains} chains, ${((performance.now() - start) / 1000).toFixed(1)} s`);
      }
    }
    rssPeak = Math.max(rssPeak, rssMiB());
    return {
      target: this.name, inputs, unit: 'ring states', seconds: (performance.now() - start) / 1000, findings,
      rssStartMiB: rssStart, rssPeakMiB: rssPeak,
      notes: [`${chains} chains popped, ${setups} queue setups${findingCount > findings.length ? `, ${findingCount} findings in all` : ''}`],
    };
  }

  async replay(rep: unknown): Promise<Finding[]> {
    const x = rep as { params: QueueParams; chunk0: string; chunk1: string };
    const ram = new Ram();
    ram.chunks[0]!.bytes.set(unb64(x.chunk0));
    ram.chunks[1]!.bytes.set(unb64(x.chunk1));
    const codec = Codec.create();
    codec.setMemory(ram.memory);
    const p = x.params;
    if (setup(codec, p) !== 0) return [];
    ram.snapshot();
    const allowedBefore = writableRanges(ram, p);
    const out: Finding[] = [];
    try {
      const res = drive(codec, new Rng(1), p.size);
      if (res.error) out.push({ kind: 'invariant', message: res.error });
    } catch (e) {
      out.push({ kind: 'crash', message: String(e) });
    }
    const stray = ram.strayWrites(allowedWrites(allowedBefore, ram, p));
    if (stray.length) out.push({ kind: 'invariant', message: `stray writes at 0x${stray[0]!.toString(16)}` });
    return out;
  }
}

function setup(codec: Codec, p: QueueParams): number {
  return codec.setupQueue(0, p.size, BASE0 + BigInt(DESC), BASE0 + BigInt(AVAIL), BASE0 + BigInt(USED), p.features, p.lastAvail);
}

/** One service pass as virtqueue.ts does it; every popped chain is pushed (so slots never run out). */
function drive(codec: Codec, r: Rng, size: number): { chains: number; broken: boolean; error: string | null } {
  const rec = codec.rec;
  let chains = 0, pushed = 0;
  for (let budget = Math.min(size, MAX_SIZE) + 2; budget > 0; budget--) {
    const res = codec.pop(0);
    if (res === POP_EMPTY) {
      if (codec.arm(0)) continue;
      break;
    }
    if (res === POP_BROKEN) return { chains, broken: true, error: codec.broken(0) === 0 ? 'POP_BROKEN without a broken reason' : null };
    if (res !== POP_CHAIN) return { chains, broken: false, error: `pop returned ${res} with every slot free` };
    chains++;
    const slot = rec[R_SLOT]!;
    if (rec[R_STATUS] === 0) codec.decode(true);
    const nSegs = rec[R_NSEGS]!, nRead = rec[R_NREAD]!, nEntries = rec[R_NENTRIES]!;
    if (nRead < 0 || nRead > nSegs || nSegs > 4096) return { chains, broken: false, error: `segment counts read ${nRead} of ${nSegs}` };
    if (nEntries < 0 || nEntries > codec.maxEntries) return { chains, broken: false, error: `${nEntries} mem entries decoded (max ${codec.maxEntries})` };
    const wlen = rec[R_STATUS]! < 0 ? 0 : rec[R_WLEN]! >>> 0;
    // What the device answers: nothing, the whole buffer, or more than it has (must be clamped).
    const want = r.pick([0, 24, wlen, wlen + 1 + r.below(64), r.below(codec.respCapacity + 1)]);
    if (rec[R_STATUS]! >= 0) codec.resp.fill(r.u32() & 0xff, 0, Math.min(want, codec.respCapacity));
    const n = codec.push(0, slot, rec[R_STATUS]! < 0 ? 0 : Math.min(want, codec.respCapacity));
    pushed++;
    if (n > wlen) return { chains, broken: false, error: `push reported ${n} bytes for a chain with ${wlen} writable` };
  }
  if (pushed > 0) codec.needNotify(0);
  return { chains, broken: false, error: null };
}
