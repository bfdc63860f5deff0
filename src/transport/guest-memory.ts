/**
 * The guest's RAM as the front-end shared it: vhost-user memory regions, each an mmap of a memfd,
 * exposed as chunks of at most 1 GiB (one external ArrayBuffer each, which every JS engine API can
 * index). Chunk i here is chunk i of the codec's translation table.
 */
import { native, NativeError, errnoName, type MapHandle } from '../native.js';

export const CHUNK_MAX = 1 << 30;

export interface RegionDesc {
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
  mmapOffset: bigint;
}

export interface Chunk {
  gpa: bigint;
  len: number;
  /** Host address of the chunk's first byte (user-space addresses fit a double exactly). */
  host: number;
  bytes: Uint8Array;
  /** The chunk as 32-bit words (its whole words), for aligned small copies. */
  words: Uint32Array;
  view: DataView;
}

/** A chunk of guest memory over the ArrayBuffer `ab` (a view of the mapping). */
export function makeChunk(gpa: bigint, host: number, ab: ArrayBuffer): Chunk {
  const len = ab.byteLength;
  return { gpa, len, host, bytes: new Uint8Array(ab), words: new Uint32Array(ab, 0, len >>> 2), view: new DataView(ab) };
}

interface Region extends RegionDesc {
  map: MapHandle;
  /** Our own dup of the region's fd, for sharing the mapping with a renderer process. */
  fd: number;
}

/** A mapping behind guest memory: [addr, addr+len) of this process maps fd from offset 0. */
export interface MemoryMapping {
  readonly fd: number;
  readonly addr: number;
  readonly len: number;
}

export class GuestMemoryError extends Error {}

export class GuestMemory {
  private regions: Region[] = [];
  private chunkList: Chunk[] = [];
  /** Bumped on every change, so holders of translated addresses know to translate again. */
  generation = 0;

  get chunks(): readonly Chunk[] {
    return this.chunkList;
  }

  get regionCount(): number {
    return this.regions.length;
  }

  /**
   * Map one region from fd (the caller keeps ownership of fd and closes it). Refuses sizes that
   * do not fit the file (touching a page past its end would SIGBUS) and overlapping regions.
   */
  add(desc: RegionDesc, fd: number): void {
    const n = native();
    const { guestPhysAddr: gpa, memorySize: size, userspaceAddr: ua, mmapOffset: off } = desc;
    if (size === 0n) throw new GuestMemoryError('region of size 0');
    if (gpa + size > 0xffff_ffff_ffff_ffffn || ua + size > 0xffff_ffff_ffff_ffffn) {
      throw new GuestMemoryError('region wraps the address space');
    }
    for (const r of this.regions) {
      if (gpa < r.guestPhysAddr + r.memorySize && r.guestPhysAddr < gpa + size) {
        throw new GuestMemoryError(`region at gpa 0x${gpa.toString(16)} overlaps another`);
      }
    }
    const total = off + size;
    if (total > BigInt(Number.MAX_SAFE_INTEGER)) throw new GuestMemoryError('region too large');
    const fileSize = n.fdSize(fd);
    if (fileSize < 0) throw new NativeError('fstat of memory region fd', fileSize);
    // fdSize is 0 for some special files; only regular files (memfd, hugetlbfs) are checked.
    if (fileSize > 0 && fileSize < Number(total)) {
      throw new GuestMemoryError(`region needs ${total} bytes of its fd but the file has ${fileSize}`);
    }
    const own = n.dup(fd);
    if (own < 0) throw new NativeError('dup of memory region fd', own);
    const map = n.mmap(fd, Number(total), 0);
    if (typeof map === 'number') {
      n.close(own);
      throw new NativeError('mmap of memory region', map);
    }
    this.regions.push({ ...desc, map, fd: own });
    this.rebuild();
  }

  /** Remove the region matching gpa, userspace address and size (REM_MEM_REG). */
  remove(desc: RegionDesc): boolean {
    const i = this.regions.findIndex(
      (r) => r.guestPhysAddr === desc.guestPhysAddr && r.userspaceAddr === desc.userspaceAddr && r.memorySize === desc.memorySize,
    );
    if (i < 0) return false;
    const [r] = this.regions.splice(i, 1);
    native().unmap(r.map.addr);
    native().close(r.fd);
    this.rebuild();
    return true;
  }

  clear(): void {
    for (const r of this.regions) {
      native().unmap(r.map.addr);
      native().close(r.fd);
    }
    this.regions = [];
    this.rebuild();
  }

  /** The mappings behind the chunks (valid until the next change of the generation). */
  mappings(): MemoryMapping[] {
    return this.regions.map((r) => ({ fd: r.fd, addr: Number(r.map.addr), len: r.map.size }));
  }

  /** Guest-physical address of a front-end virtual address (vring addresses), or null. */
  userToGuest(ua: bigint, len: bigint): bigint | null {
    for (const r of this.regions) {
      if (ua >= r.userspaceAddr && ua + len <= r.userspaceAddr + r.memorySize) return r.guestPhysAddr + (ua - r.userspaceAddr);
    }
    return null;
  }

  private rebuild(): void {
    this.regions.sort((a, b) => (a.guestPhysAddr < b.guestPhysAddr ? -1 : 1));
    const chunks: Chunk[] = [];
    for (const r of this.regions) {
      const size = Number(r.memorySize);
      const base = Number(r.mmapOffset);
      for (let at = 0; at < size; at += CHUNK_MAX) {
        const len = Math.min(CHUNK_MAX, size - at);
        const ab = native().view(r.map.addr, base + at, len);
        if (typeof ab === 'number') throw new GuestMemoryError(`cannot view guest memory: ${errnoName(ab)}`);
        chunks.push(makeChunk(r.guestPhysAddr + BigInt(at), Number(r.map.addr) + base + at, ab));
      }
    }
    this.chunkList = chunks;
    this.generation++;
  }
}
