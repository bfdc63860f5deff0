/**
 * A resource's guest backing: the mem_entry list from ATTACH_BACKING, resolved into guest-memory
 * segments. The segments are resolved again whenever the memory table changed since.
 */
import { GpuError } from './errors.js';

/** Guest memory as the device sees it: translation plus chunk bytes. */
export interface GuestAccess {
  /** Current memory generation; resolved segments are valid only for it. */
  readonly generation: number;
  /** Segments of [gpa, gpa+len) via `each`; count, or negative if not entirely guest memory. */
  translate(gpa: bigint, len: number, each: (chunk: number, off: number, len: number) => void): number;
  chunkBytes(chunk: number): Uint8Array;
}

export class Backing {
  private segChunk: number[] = [];
  private segOff: number[] = [];
  private segLen: number[] = [];
  private segStart: number[] = []; // backing offset where each segment begins
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

  private resolve(mem: GuestAccess): void {
    if (this.resolvedFor === mem.generation) return;
    const chunk: number[] = [], off: number[] = [], len: number[] = [], start: number[] = [];
    let at = 0;
    for (let i = 0; i < this.gpas.length; i++) {
      const n = mem.translate(this.gpas[i], this.lens[i], (c, o, l) => {
        chunk.push(c); off.push(o); len.push(l); start.push(at);
        at += l;
      });
      if (n < 0) throw new GpuError('unspec', `backing entry ${i} is no longer guest memory`);
    }
    this.segChunk = chunk; this.segOff = off; this.segLen = len; this.segStart = start;
    this.resolvedFor = mem.generation;
  }

  /** Index of the segment containing backing offset `at` (at < length). */
  private find(at: number): number {
    const s = this.segStart;
    let lo = 0, hi = s.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (s[mid] <= at) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  /** Copy backing bytes [from, from+len) into dst at dstAt. The caller checked the range. */
  read(mem: GuestAccess, from: number, dst: Uint8Array, dstAt: number, len: number): void {
    this.resolve(mem);
    let i = this.find(from);
    let inSeg = from - this.segStart[i];
    while (len > 0) {
      const n = Math.min(len, this.segLen[i] - inSeg);
      if (n > 0) {
        const src = mem.chunkBytes(this.segChunk[i]);
        const o = this.segOff[i] + inSeg;
        dst.set(src.subarray(o, o + n), dstAt);
        dstAt += n;
        len -= n;
      }
      i++;
      inSeg = 0;
    }
  }

  /** Copy src into backing bytes [to, to+src.length). The caller checked the range. */
  write(mem: GuestAccess, to: number, src: Uint8Array): void {
    this.resolve(mem);
    let i = this.find(to);
    let inSeg = to - this.segStart[i];
    let done = 0;
    while (done < src.length) {
      const n = Math.min(src.length - done, this.segLen[i] - inSeg);
      if (n > 0) {
        mem.chunkBytes(this.segChunk[i]).set(src.subarray(done, done + n), this.segOff[i] + inSeg);
        done += n;
      }
      i++;
      inSeg = 0;
    }
  }
}
