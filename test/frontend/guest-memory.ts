/**
 * Guest RAM for the test frontend: one memfd, mapped once in this process, exposed to the backend
 * as one or two vhost-user memory regions.
 *
 * Guest-physical addresses (GPAs) start at a non-zero base and the fake "QEMU virtual addresses"
 * used for ring addresses are different again, so a backend that mixes up the two translations
 * (or ignores mmap_offset) reads the wrong bytes instead of passing by luck.
 * All addresses are JS numbers (< 2^53); 64-bit fields are written as two u32 halves.
 */
import { native, check } from '../../src/native.js';
import type { NativeAddon, MapHandle } from '../../src/native.js';

export interface RamRegion {
  /** Guest-physical start. */
  readonly gpa: number;
  readonly size: number;
  /** Fake front-end (QEMU) virtual address of the region start: what ring addresses use. */
  readonly userAddr: number;
  /** Offset of the region in the memfd (vhost-user mmap_offset). */
  readonly fdOffset: number;
}

export interface GuestRamOptions {
  /** Total bytes (page multiple, at most 1 GiB). Default 64 MiB. */
  size?: number;
  /** GPA of the first byte. Default 0x1_0000_0000. */
  gpaBase?: number;
  /** Fake QEMU virtual address of the first byte. Default 0x7f00_0000_0000. */
  userAddrBase?: number;
  /** Split into two regions at this byte offset (page multiple): region 1 uses mmap_offset = splitAt. */
  splitAt?: number;
  /** GPA hole between the two regions. Default 0, so a buffer may straddle the boundary. */
  splitGpaGap?: number;
  /** Gap between the two regions' fake virtual addresses. Default 256 MiB (not contiguous). */
  splitUserGap?: number;
  name?: string;
}

/** A guest buffer made of (possibly scattered) GPA ranges, addressed as one linear byte range. */
export interface GuestRange {
  gpa: number;
  len: number;
}

const PAGE = 4096;
export const MAX_RAM = 1024 * 1024 * 1024;

export class GuestRam {
  readonly fd: number;
  readonly size: number;
  readonly regions: readonly RamRegion[];
  /** The whole memfd (RAM offset 0 = region 0 start). Hot paths index this by ramOffset(). */
  readonly bytes: Uint8Array;
  readonly view: DataView;

  private readonly addon: NativeAddon = native();
  private readonly mapAddr: bigint;
  /** Free RAM-offset ranges [start, end), sorted; never merged across a region boundary. */
  private freeStarts: number[] = [];
  private freeEnds: number[] = [];
  private readonly allocated = new Map<number, number>(); // ram offset -> size

  constructor(opts: GuestRamOptions = {}) {
    const size = opts.size ?? 64 * 1024 * 1024;
    if (size % PAGE !== 0 || size <= 0 || size > MAX_RAM) {
      throw new RangeError(`options.size must be a page multiple in (0, 1 GiB], got ${size}`);
    }
    const gpaBase = opts.gpaBase ?? 0x1_0000_0000;
    const userBase = opts.userAddrBase ?? 0x7f00_0000_0000;
    this.size = size;
    this.fd = check('memfd_create', this.addon.memfdCreate(opts.name ?? 'guest-ram', size));
    const map = this.addon.mmap(this.fd, size, 0);
    if (typeof map === 'number') { this.addon.close(this.fd); check('mmap', map); throw new Error('unreachable'); }
    this.mapAddr = map.addr;
    const ab = this.addon.view(map.addr, 0, size);
    if (typeof ab === 'number') { this.close(); check('view', ab); throw new Error('unreachable'); }
    this.bytes = new Uint8Array(ab);
    this.view = new DataView(ab);

    const split = opts.splitAt;
    if (split === undefined) {
      this.regions = [{ gpa: gpaBase, size, userAddr: userBase, fdOffset: 0 }];
    } else {
      if (split % PAGE !== 0 || split <= 0 || split >= size) {
        throw new RangeError(`options.splitAt must be a page multiple inside the RAM, got ${split}`);
      }
      const gap = opts.splitGpaGap ?? 0;
      const userGap = opts.splitUserGap ?? 0x1000_0000;
      this.regions = [
        { gpa: gpaBase, size: split, userAddr: userBase, fdOffset: 0 },
        { gpa: gpaBase + split + gap, size: size - split, userAddr: userBase + split + userGap, fdOffset: split },
      ];
    }
    for (const r of this.regions) { this.freeStarts.push(r.fdOffset); this.freeEnds.push(r.fdOffset + r.size); }
  }

  // --- address translation -------------------------------------------------------------------

  /** RAM offset of [gpa, gpa+len) if it lies inside the RAM (possibly across contiguous regions), else -1. */
  ramOffset(gpa: number, len = 1): number {
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i]!;
      const rel = gpa - r.gpa;
      if (rel < 0 || rel >= r.size) continue;
      const off = r.fdOffset + rel;
      if (rel + len <= r.size) return off;
      // Straddles: fine for our own linear mapping only if the next region continues both the
      // GPA range and the memfd range.
      const next = rs[i + 1];
      if (next && next.gpa === r.gpa + r.size && next.fdOffset === r.fdOffset + r.size &&
          rel + len <= r.size + next.size) return off;
      return -1;
    }
    return -1;
  }

  /** Like ramOffset but throws. */
  offsetOf(gpa: number, len = 1): number {
    const off = this.ramOffset(gpa, len);
    if (off < 0) throw new RangeError(`GPA range 0x${gpa.toString(16)}+${len} is outside guest RAM`);
    return off;
  }

  gpaOfOffset(off: number): number {
    for (const r of this.regions) {
      if (off >= r.fdOffset && off < r.fdOffset + r.size) return r.gpa + (off - r.fdOffset);
    }
    throw new RangeError(`RAM offset ${off} is outside guest RAM`);
  }

  /** Fake QEMU virtual address of a GPA (what SET_VRING_ADDR carries). */
  userAddrOf(gpa: number): number {
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa < r.gpa + r.size) return r.userAddr + (gpa - r.gpa);
    }
    throw new RangeError(`GPA 0x${gpa.toString(16)} is outside guest RAM`);
  }

  /** GPA where region `index` starts / the boundary between region 0 and 1. */
  regionStart(index: number): number {
    return this.regions[index]!.gpa;
  }

  // --- allocation -----------------------------------------------------------------------------

  /** Allocate `size` bytes aligned to `align` (GPA alignment, power of two). Never straddles regions. */
  alloc(size: number, align = 16): number {
    if (size <= 0) throw new RangeError(`alloc size must be positive, got ${size}`);
    for (let i = 0; i < this.freeStarts.length; i++) {
      const s = this.freeStarts[i]!;
      const gpa = this.gpaOfOffset(s);
      const pad = (align - (gpa % align)) % align;
      if (s + pad + size <= this.freeEnds[i]!) return this.take(i, s + pad, size);
    }
    throw new RangeError(`guest RAM exhausted: cannot allocate ${size} bytes`);
  }

  /** Allocate exactly [gpa, gpa+size) (e.g. straddling the region boundary). Throws if not free. */
  allocAt(gpa: number, size: number): number {
    let off = this.offsetOf(gpa, size);
    const end = off + size;
    // The range may span two adjacent free ranges (split at a region boundary): take each part.
    const parts: [number, number][] = [];
    for (let i = 0; i < this.freeStarts.length && off < end; i++) {
      const s = this.freeStarts[i]!, e = this.freeEnds[i]!;
      if (off >= s && off < e) { const pe = Math.min(e, end); parts.push([off, pe]); off = pe; }
    }
    if (off !== end) throw new RangeError(`GPA range 0x${gpa.toString(16)}+${size} is not free`);
    for (const [ps, pe] of parts) {
      const i = this.freeStarts.findIndex((s, k) => ps >= s && ps < this.freeEnds[k]!);
      this.take(i, ps, pe - ps);
      if (ps !== parts[0]![0]) this.allocated.delete(ps);
    }
    this.allocated.set(parts[0]![0], size);
    return gpa;
  }

  /** Free an allocation made by alloc/allocAt (by its GPA). */
  free(gpa: number): void {
    const off = this.offsetOf(gpa);
    const size = this.allocated.get(off);
    if (size === undefined) throw new RangeError(`GPA 0x${gpa.toString(16)} is not an allocation`);
    this.allocated.delete(off);
    // Give back per region so free ranges never merge across a boundary.
    let at = off;
    const end = off + size;
    for (const r of this.regions) {
      const rs = r.fdOffset, re = r.fdOffset + r.size;
      if (at >= rs && at < re) { const pe = Math.min(end, re); this.release(at, pe); at = pe; }
    }
  }

  /** Bytes currently free. */
  freeBytes(): number {
    let n = 0;
    for (let i = 0; i < this.freeStarts.length; i++) n += this.freeEnds[i]! - this.freeStarts[i]!;
    return n;
  }

  /**
   * A buffer of `size` bytes split into `chunk`-byte pieces placed out of order with holes
   * between them (reverse order, every other chunk of one allocation), as a guest's scattered
   * page list would be. chunk >= size gives one contiguous entry.
   */
  allocScattered(size: number, chunk = PAGE): ScatterBuffer {
    const n = Math.ceil(size / chunk);
    if (n <= 1) {
      const gpa = this.alloc(size, PAGE);
      return new ScatterBuffer(this, [{ gpa, len: size }], [gpa]);
    }
    const block = this.alloc(2 * n * chunk, PAGE);
    const entries: GuestRange[] = [];
    for (let i = 0; i < n; i++) {
      entries.push({ gpa: block + 2 * (n - 1 - i) * chunk, len: i === n - 1 ? size - (n - 1) * chunk : chunk });
    }
    return new ScatterBuffer(this, entries, [block]);
  }

  /** A contiguous buffer crossing the region-0/1 boundary (needs splitAt with no GPA gap). */
  allocStraddling(size: number, before = Math.floor(size / 2)): ScatterBuffer {
    if (this.regions.length < 2) throw new RangeError('allocStraddling needs a split RAM (options.splitAt)');
    const gpa = this.allocAt(this.regions[1]!.gpa - before, size);
    return new ScatterBuffer(this, [{ gpa, len: size }], [gpa]);
  }

  private take(i: number, off: number, size: number): number {
    const s = this.freeStarts[i]!, e = this.freeEnds[i]!;
    const tail = off + size;
    if (off === s && tail === e) { this.freeStarts.splice(i, 1); this.freeEnds.splice(i, 1); }
    else if (off === s) this.freeStarts[i] = tail;
    else if (tail === e) this.freeEnds[i] = off;
    else { this.freeEnds[i] = off; this.freeStarts.splice(i + 1, 0, tail); this.freeEnds.splice(i + 1, 0, e); }
    this.allocated.set(off, size);
    return this.gpaOfOffset(off);
  }

  private release(start: number, end: number): void {
    let i = 0;
    while (i < this.freeStarts.length && this.freeStarts[i]! < start) i++;
    this.freeStarts.splice(i, 0, start);
    this.freeEnds.splice(i, 0, end);
    const boundary = (off: number) => this.regions.some((r) => r.fdOffset === off);
    if (i + 1 < this.freeStarts.length && this.freeStarts[i + 1] === end && !boundary(end)) {
      this.freeEnds[i] = this.freeEnds[i + 1]!;
      this.freeStarts.splice(i + 1, 1); this.freeEnds.splice(i + 1, 1);
    }
    if (i > 0 && this.freeEnds[i - 1] === start && !boundary(start)) {
      this.freeEnds[i - 1] = this.freeEnds[i]!;
      this.freeStarts.splice(i, 1); this.freeEnds.splice(i, 1);
    }
  }

  // --- access ---------------------------------------------------------------------------------

  /** A live view of [gpa, gpa+len) (no copy). */
  subarray(gpa: number, len: number): Uint8Array {
    const off = this.offsetOf(gpa, len);
    return this.bytes.subarray(off, off + len);
  }

  read(gpa: number, len: number): Uint8Array {
    return this.subarray(gpa, len).slice();
  }

  write(gpa: number, data: Uint8Array): void {
    this.bytes.set(data, this.offsetOf(gpa, data.length));
  }

  fill(gpa: number, len: number, value: number): void {
    const off = this.offsetOf(gpa, len);
    this.bytes.fill(value, off, off + len);
  }

  readU32(gpa: number): number { return this.view.getUint32(this.offsetOf(gpa, 4), true); }
  writeU32(gpa: number, v: number): void { this.view.setUint32(this.offsetOf(gpa, 4), v, true); }
  readU16(gpa: number): number { return this.view.getUint16(this.offsetOf(gpa, 2), true); }
  writeU16(gpa: number, v: number): void { this.view.setUint16(this.offsetOf(gpa, 2), v, true); }
  readU64(gpa: number): number { return readU64At(this.view, this.offsetOf(gpa, 8)); }
  writeU64(gpa: number, v: number): void { writeU64At(this.view, this.offsetOf(gpa, 8), v); }

  close(): void {
    this.addon.unmap(this.mapAddr);
    this.addon.close(this.fd);
  }
}

/** Write a u64 given as a JS number (< 2^53) without BigInt allocation. */
export function writeU64At(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v / 0x1_0000_0000) >>> 0, true);
}

export function readU64At(dv: DataView, off: number): number {
  return dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 0x1_0000_0000;
}

/** A linear buffer over a list of GPA ranges (a resource backing). */
export class ScatterBuffer {
  readonly size: number;
  /** Start of each entry in the linear buffer. */
  private readonly starts: number[] = [];

  constructor(readonly ram: GuestRam, readonly entries: readonly GuestRange[], private readonly blocks: number[]) {
    let at = 0;
    for (const e of entries) { this.starts.push(at); at += e.len; }
    this.size = at;
  }

  write(offset: number, data: Uint8Array): void {
    this.forEach(offset, data.length, (ramOff, at, n) => this.ram.bytes.set(data.subarray(at, at + n), ramOff));
  }

  read(offset: number, len: number, out = new Uint8Array(len)): Uint8Array {
    this.forEach(offset, len, (ramOff, at, n) => out.set(this.ram.bytes.subarray(ramOff, ramOff + n), at));
    return out;
  }

  fill(value: number, offset = 0, len = this.size - offset): void {
    this.forEach(offset, len, (ramOff, _at, n) => this.ram.bytes.fill(value, ramOff, ramOff + n));
  }

  /** Free the guest pages (only once the device no longer uses them). */
  free(): void {
    for (const b of this.blocks) this.ram.free(b);
    this.blocks.length = 0;
  }

  /** Visit [offset, offset+len) as contiguous RAM pieces: (ramOffset, offsetInRequest, length). */
  private forEach(offset: number, len: number, fn: (ramOff: number, at: number, n: number) => void): void {
    if (offset < 0 || offset + len > this.size) {
      throw new RangeError(`range ${offset}+${len} is outside the ${this.size}-byte buffer`);
    }
    let lo = 0, hi = this.starts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.starts[mid]! <= offset) lo = mid; else hi = mid - 1; }
    let at = 0;
    for (let i = lo; at < len; i++) {
      const e = this.entries[i]!;
      const inEntry = offset + at - this.starts[i]!;
      const n = Math.min(e.len - inEntry, len - at);
      fn(this.ram.offsetOf(e.gpa + inEntry, n), at, n);
      at += n;
    }
  }
}

/** A memfd of `size` bytes mapped by the addon, and a view over all of it (a stand-in for guest memory). */
export function memfdMapping(name: string, size: number): { map: MapHandle; ab: ArrayBuffer } {
  const n = native();
  const fd = n.memfdCreate(name, size);
  const map = n.mmap(fd, size, 0);
  n.close(fd);
  if (typeof map === 'number') throw new Error(`mmap: ${map}`);
  const ab = n.view(map.addr, 0, size);
  if (typeof ab === 'number') throw new Error(`view: ${ab}`);
  return { map, ab };
}
