/**
 * A resource's guest backing: the mem_entry list from ATTACH_BACKING, resolved into host
 * segments of guest memory. The segments are resolved again whenever the memory table changed.
 */
import { native } from '../native.js';
import type { MemoryMapping } from '../transport/guest-memory.js';
import { GpuError } from './errors.js';
import type { Codec } from '../queues/codec.js';
import { R_NENTRIES } from '../queues/layout.js';

/** Guest memory as the device sees it: translation to chunks and where each chunk is mapped. */
export interface GuestAccess {
  /** Current memory generation; resolved segments are valid only for it. */
  readonly generation: number;
  /** Segments of [gpa, gpa+len) via `each`; count, or negative if not entirely guest memory. */
  translate(gpa: bigint, len: number, each: (chunk: number, off: number, len: number) => void): number;
  /** Host address of a chunk's first byte. */
  chunkHost(chunk: number): number;
  /** The mappings the chunks lie in, for renderers in another process (virgl's render server). */
  mappings(): readonly MemoryMapping[];
}

/** Bookkeeping charged to the host memory budget per backing entry. */
export const ENTRY_OVERHEAD = 48;

export class Backing {
  /** [hostAddr, len] pairs for the addon's gatherRows, resolved on first use. */
  private segs: Float64Array | null = null;
  private resolvedFor = -1;
  readonly length: number;

  /** entries: [gpa, len] pairs exactly as the guest gave them (checked to be guest memory by the codec). */
  private constructor(private readonly entries: readonly number[]) {
    let total = 0;
    for (let i = 1; i < entries.length; i += 2) total += entries[i];
    this.length = total;
  }

  /**
   * The mem_entry list the codec decoded for the current request (ATTACH_BACKING). Addresses are
   * kept as numbers: the codec checked every entry against guest memory, whose addresses QEMU
   * gives below 2^52, so they are exact.
   */
  static fromRequest(codec: Codec): Backing {
    const n = codec.rec[R_NENTRIES], e = codec.entries;
    // A plain array: V8 allocates it on its heap, where a typed array this size costs a malloc.
    const entries: number[] = [];
    for (let i = 0; i < n; i++) entries.push(e[4 * i + 1] * 2 ** 32 + e[4 * i], e[4 * i + 2]);
    return new Backing(entries);
  }

  get entryCount(): number {
    return this.entries.length / 2;
  }

  /** [hostAddr, len] pairs of the backing for the current memory table. */
  resolve(mem: GuestAccess): Float64Array {
    if (this.segs && this.resolvedFor === mem.generation) return this.segs;
    const out: number[] = [];
    for (let i = 0; i < this.entries.length; i += 2) {
      const n = mem.translate(BigInt(this.entries[i]), this.entries[i + 1], (c, o, l) => {
        const host = mem.chunkHost(c) + o;
        // Merge with the previous segment when contiguous in host memory (common for guest RAM).
        if (out.length && out[out.length - 2] + out[out.length - 1] === host) out[out.length - 1] += l;
        else out.push(host, l);
      });
      if (n < 0) throw new GpuError('unspec', `backing entry ${i / 2} is no longer guest memory`);
    }
    this.segs = Float64Array.from(out);
    this.resolvedFor = mem.generation;
    return this.segs;
  }

  /**
   * Copy `rows` rows of rowBytes: row r from backing offset srcOff + r*srcStride to
   * dst[dstOff + r*dstStride]. The caller checked both ranges; the addon checks them again.
   */
  readRows(mem: GuestAccess, srcOff: number, srcStride: number, dst: Uint8Array, dstOff: number, dstStride: number, rowBytes: number, rows: number): void {
    const rc = native().gatherRows(dst, dstOff, dstStride, rowBytes, rows, this.resolve(mem), srcOff, srcStride);
    if (rc !== 0) throw new GpuError('unspec', `copy from guest backing failed (${rc})`);
  }
}
