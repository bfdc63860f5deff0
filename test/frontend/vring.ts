/** Split-virtqueue layout constants and descriptor writers (protocols.md §1.1). */
import { writeU64At } from './guest-memory.js';
import type { GuestRam } from './guest-memory.js';

export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;
export const VRING_DESC_F_INDIRECT = 4;
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
export const VRING_USED_F_NO_NOTIFY = 1;

export interface RawDesc {
  /** bigint for addresses beyond 2^53 (overflow tests). */
  addr: number | bigint;
  len: number;
  flags: number;
  /** Absolute next index; default (with F_NEXT) = the next descriptor of this chain. */
  next?: number;
}

export interface AddOptions {
  /** Put the whole chain in one indirect table (needs INDIRECT_DESC). */
  indirect?: boolean;
}

export interface UsedElem { id: number; len: number }

/** A full memory barrier for plain stores/loads to the mapping: a locked RMW on x86. */
const fenceCell = new Int32Array(new SharedArrayBuffer(4));
export function fullFence(): void {
  Atomics.add(fenceCell, 0, 0);
}

/** Write one 16-byte descriptor at a RAM offset (also for indirect tables). */
export function writeDescAt(dv: DataView, off: number, addr: number | bigint, len: number, flags: number, next: number): void {
  if (typeof addr === 'bigint') dv.setBigUint64(off, BigInt.asUintN(64, addr), true);
  else writeU64At(dv, off, addr);
  dv.setUint32(off + 8, len >>> 0, true);
  dv.setUint16(off + 12, flags, true);
  dv.setUint16(off + 14, next, true);
}

/** Write an indirect table of raw descriptors at `gpa` (for malformed-indirect tests). */
export function writeIndirectTable(ram: GuestRam, gpa: number, descs: readonly RawDesc[]): void {
  const off = ram.offsetOf(gpa, descs.length * 16);
  descs.forEach((d, k) => writeDescAt(ram.view, off + 16 * k, d.addr, d.len, d.flags, d.next ?? (k + 1 < descs.length ? k + 1 : 0)));
}
