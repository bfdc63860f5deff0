/**
 * Thin wrapper over the AssemblyScript codec (assembly/): one compiled module per process, one
 * instance per owner over its own shared memory, fixed views created once. Only numbers cross
 * the boundary; decoded fields are read from `rec`.
 */
import { readFileSync } from 'node:fs';
import { packagePath } from '../package-path.js';
import type { GuestMemory, Chunk } from '../transport/guest-memory.js';
import { REC_WORDS, SEG_SIZE, R_NREAD } from './layout.js';

interface CodecExports {
  mem_clear(): void;
  mem_add(index: number, gpa: bigint, len: bigint): number;
  vq_setup(q: number, size: number, desc: bigint, avail: bigint, used: bigint, features: number, lastAvail: number): number;
  vq_reset(q: number): void;
  vq_pop(q: number): number;
  vq_push(q: number, slot: number, len: number): number;
  vq_need_notify(q: number): number;
  vq_arm(q: number): number;
  vq_last_avail(q: number): number;
  vq_used_idx(q: number): number;
  vq_broken(q: number): number;
  vq_ready(q: number): number;
  decode(needResponse: number): number;
  translate(gpa: bigint, len: bigint): number;
  layout(what: number): number;
}

// Addresses the TypeScript side relies on (assembly/layout.ts); checked against layout() at start.
const EXPECTED_LAYOUT: readonly [number, number][] = [
  [0, 0x10000], [1, REC_WORDS], [2, 0x12000], [3, 4096], [4, 0x13000], [5, 0x10000], [6, 0x23000],
  [7, 0x30000], [8, 16384], [10, 4096], [11, 256], [14, 1],
];
const MEMORY_PAGES = 64;

/** Largest aligned copy between guest memory and the codec done as a word loop. */
const SMALL_COPY = 512;

let compiled: WebAssembly.Module | undefined;

/**
 * Copy len bytes between guest memory and the codec's memory (each given as bytes and whole
 * words). Small copies (descriptors, ring entries, requests, responses) are faster as a loop than
 * subarray+set, and word by word when aligned (they nearly always are).
 */
function copy(
  from: Uint8Array, fromWords: Uint32Array, fromOff: number,
  to: Uint8Array, toWords: Uint32Array, toOff: number, len: number,
): void {
  if (((fromOff | toOff | len) & 3) === 0 && len <= SMALL_COPY) {
    const s = fromOff >>> 2, d = toOff >>> 2;
    for (let i = 0; i < len >>> 2; i++) toWords[d + i] = fromWords[s + i];
  } else if (len <= 32) {
    for (let i = 0; i < len; i++) to[toOff + i] = from[fromOff + i];
  } else to.set(from.subarray(fromOff, fromOff + len), toOff);
}

export class Codec {
  readonly rec: Int32Array;
  readonly req: Uint8Array;
  readonly reqView: DataView;
  readonly resp: Uint8Array;
  readonly respView: DataView;
  /** Decoded mem_entry list: per entry 4 words {gpa lo, gpa hi, len, padding}. */
  readonly entries: Uint32Array;
  readonly respCapacity: number;
  private readonly xlate: Uint32Array;
  /** Segments of the current chain {chunk, off, len}, readable ones first. */
  private readonly chain: Uint32Array;
  readonly maxChunks: number;
  readonly maxEntries: number;
  private chunks: readonly Chunk[] = [];

  private constructor(private readonly x: CodecExports, readonly memory: WebAssembly.Memory) {
    const buf = memory.buffer;
    const at = (what: number) => x.layout(what);
    this.rec = new Int32Array(buf, at(0), REC_WORDS);
    this.req = new Uint8Array(buf, at(2), at(3));
    this.reqView = new DataView(buf, at(2), at(3));
    this.resp = new Uint8Array(buf, at(4), at(5));
    this.respView = new DataView(buf, at(4), at(5));
    this.respCapacity = at(5);
    this.maxEntries = at(8);
    this.entries = new Uint32Array(buf, at(7), this.maxEntries * 4);
    this.xlate = new Uint32Array(buf, at(9), at(10) * (SEG_SIZE / 4));
    this.maxChunks = at(11);
    this.chain = new Uint32Array(buf, at(6), 4096 * (SEG_SIZE / 4));
  }

  static create(): Codec {
    compiled ??= new WebAssembly.Module(readFileSync(packagePath('build/codec.wasm')));
    const memory = new WebAssembly.Memory({ initial: MEMORY_PAGES, maximum: MEMORY_PAGES, shared: true });
    const bytes = new Uint8Array(memory.buffer);
    const words = new Uint32Array(memory.buffer);
    let codec: Codec | undefined;
    const chunk = (i: number) => codec!.chunks[i];
    const env = {
      memory,
      guest_read(c: number, off: number, dst: number, len: number): void {
        const ch = chunk(c);
        copy(ch.bytes, ch.words, off, bytes, words, dst, len);
      },
      guest_write(c: number, off: number, src: number, len: number): void {
        const ch = chunk(c);
        copy(bytes, words, src, ch.bytes, ch.words, off, len);
      },
      guest_load16: (c: number, off: number): number => chunk(c).view.getUint16(off, true),
      guest_store16: (c: number, off: number, v: number): void => chunk(c).view.setUint16(off, v, true),
    };
    const instance = new WebAssembly.Instance(compiled, { env });
    codec = new Codec(instance.exports as unknown as CodecExports, memory);
    for (const [what, want] of EXPECTED_LAYOUT) {
      if (codec.x.layout(what) !== want) throw new Error(`codec layout mismatch at ${what}: module ${codec.x.layout(what)}, expected ${want}`);
    }
    return codec;
  }

  /** Mirror the guest memory's chunks into the codec's translation table. */
  setMemory(mem: GuestMemory): void {
    this.x.mem_clear();
    const chunks = mem.chunks;
    if (chunks.length > this.maxChunks) throw new Error(`guest memory has ${chunks.length} chunks; at most ${this.maxChunks}`);
    chunks.forEach((c, i) => this.x.mem_add(i, c.gpa, BigInt(c.len)));
    this.chunks = chunks;
  }

  chunkBytes(i: number): Uint8Array {
    return this.chunks[i].bytes;
  }

  setupQueue(q: number, size: number, desc: bigint, avail: bigint, used: bigint, features: number, lastAvail: number): number {
    return this.x.vq_setup(q, size, desc, avail, used, features, lastAvail);
  }
  resetQueue(q: number): void { this.x.vq_reset(q); }
  pop(q: number): number { return this.x.vq_pop(q); }
  decode(needResponse: boolean): number { return this.x.decode(needResponse ? 1 : 0); }
  push(q: number, slot: number, len: number): number { return this.x.vq_push(q, slot, len); }
  needNotify(q: number): boolean { return this.x.vq_need_notify(q) !== 0; }
  arm(q: number): boolean { return this.x.vq_arm(q) !== 0; }
  lastAvail(q: number): number { return this.x.vq_last_avail(q); }
  usedIdx(q: number): number { return this.x.vq_used_idx(q); }
  broken(q: number): number { return this.x.vq_broken(q); }

  /**
   * Copy readable bytes [from, from+len) of the current chain straight from guest memory to
   * dst[dstOff..] (any length: the codec's REQ buffer holds only the first 4 KiB). Returns the bytes copied (less at the end).
   */
  copyReadable(from: number, dst: Uint8Array, dstOff: number, len: number): number {
    const n = this.rec[R_NREAD];
    let pos = 0, done = 0;
    for (let i = 0; i < n && done < len; i++) {
      const c = this.chain[3 * i], off = this.chain[3 * i + 1], segLen = this.chain[3 * i + 2];
      const start = Math.max(from + done - pos, 0);
      if (start < segLen) {
        const take = Math.min(segLen - start, len - done);
        dst.set(this.chunks[c].bytes.subarray(off + start, off + start + take), dstOff + done);
        done += take;
      }
      pos += segLen;
    }
    return done;
  }

  /**
   * Translate [gpa, gpa+len) into segments; calls `each(chunk, offset, length)` per segment.
   * Returns the segment count or a negative X_* code.
   */
  translate(gpa: bigint, len: number, each: (chunk: number, off: number, len: number) => void): number {
    const n = this.x.translate(gpa, BigInt(len));
    for (let i = 0; i < n; i++) each(this.xlate[i * 3], this.xlate[i * 3 + 1], this.xlate[i * 3 + 2]);
    return n;
  }
}
