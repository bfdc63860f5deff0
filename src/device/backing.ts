/**
 * A resource's guest backing: the mem_entry list from ATTACH_BACKING, resolved into host
 * segments of guest memory. The segments are resolved again whenever the memory table changed.
 */
import { native } from '../native.js';
import { GpuError } from './errors.js';

/** Guest memory as the device sees it: translation to chunks and where each chunk is mapped. */
export interface GuestAccess {
  /** Current memory generation; resolved segments are valid only for it. */
  readonly generation: number;
  /** Segments of [gpa, gpa+len) via `each`; count, or negative if not entirely guest memory. */
  translate(gpa: bigint, len: number, each: (chunk: number, off: number, len: number) => void): number;
  /** Host address of a chunk's first byte. */
  chunkHost(chunk: number): number;
}

export class Backing {
  /** [hostAddr, len] pairs, for the addon's gatherRows. */
  private segs = new Float64Array(0);
  private resolvedFor = -1;
  readonly length: number;

  /** entries: gpa/len pairs exactly as the guest gave them (already checked to be guest memory). */
  constructor(private readonly gpas: bigint[], private readonly lens: number[]) {
    let total = 0;
    for (const l of lens) total += l;
    this.length = total;
  }

  get entryCount(): number {
    return this.gpas.length;
  }

  /** [hostAddr, len] pairs of the backing for the current memory table. */
  resolve(mem: GuestAccess): Float64Array {
    if (this.resolvedFor === mem.generation) return this.segs;
    const out: number[] = [];
    for (let i = 0; i < this.gpas.length; i++) {
      const n = mem.translate(this.gpas[i], this.lens[i], (c, o, l) => {
        const host = mem.chunkHost(c) + o;
        // Merge with the previous segment when contiguous in host memory (common for guest RAM).
        if (out.length && out[out.length - 2] + out[out.length - 1] === host) out[out.length - 1] += l;
        else out.push(host, l);
      });
      if (n < 0) throw new GpuError('unspec', `backing entry ${i} is no longer guest memory`);
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
