/**
 * The front-end side of the vhost-user SHMEM feature (QEMU 11.1.3's docs/interop/vhost-user.rst),
 * as QEMU's vhost-user-test-device-pci plays it: the regions GET_SHMEM_CONFIG announced, the
 * back-end's SHMEM_MAP / SHMEM_UNMAP requests checked the way QEMU checks them (known shmid, range
 * inside the region, no overlap with a live mapping, an unmap naming exactly one whole mapping),
 * and each mapping really mmapped, so a test sees through `read`/`write` what the guest would see
 * at those offsets of the BAR.
 */
import { native, type MapHandle } from '../../src/native.js';
import { BackendRequest, SHMEM_MAX_REGIONS, SHMEM_MMAP_SIZE } from './constants.js';

export interface ShmemMapping {
  readonly shmid: number;
  readonly offset: number;
  readonly length: number;
  readonly fdOffset: number;
  readonly writable: boolean;
  readonly map: MapHandle;
}

/** GET_SHMEM_CONFIG's reply: nregions and a size per shmid. */
export function parseShmemConfig(payload: Uint8Array): { nregions: number; sizes: number[] } {
  if (payload.length !== 8 + 8 * SHMEM_MAX_REGIONS) throw new Error(`GET_SHMEM_CONFIG reply of ${payload.length} bytes`);
  const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const sizes: number[] = [];
  for (let i = 0; i < SHMEM_MAX_REGIONS; i++) sizes.push(Number(v.getBigUint64(8 + 8 * i, true)));
  return { nregions: v.getUint32(0, true), sizes };
}

const PAGE = 4096;

export class FrontendSharedMemory {
  /** Region sizes by shmid, as GET_SHMEM_CONFIG announced them (set by the start sequence). */
  sizes: number[] = [];
  readonly mappings: ShmemMapping[] = [];
  /** One line per request handled: "map 1 0x0+0x1000 ok", "unmap 1 0x0+0x1000 refused: ...". */
  readonly events: string[] = [];
  /** Refuse every request (a front-end out of resources). */
  refuseAll = false;

  /** Handle SHMEM_MAP / SHMEM_UNMAP; the status to reply (0 = done). Takes no fd: the caller closes its own. */
  handle(request: number, payload: Uint8Array, fds: readonly number[]): bigint {
    const name = request === BackendRequest.SHMEM_MAP ? 'map' : request === BackendRequest.SHMEM_UNMAP ? 'unmap' : `request ${request}`;
    if (payload.length !== SHMEM_MMAP_SIZE) return this.refuse(`${name}: payload of ${payload.length} bytes`);
    const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
    const shmid = v.getUint8(0);
    const fdOffset = Number(v.getBigUint64(8, true)), offset = Number(v.getBigUint64(16, true));
    const length = Number(v.getBigUint64(24, true)), flags = v.getBigUint64(32, true);
    const what = `${name} ${shmid} 0x${offset.toString(16)}+0x${length.toString(16)}`;
    if (this.refuseAll) return this.refuse(`${what}: refusing everything`);
    const size = this.sizes[shmid] ?? 0;
    if (size === 0) return this.refuse(`${what}: no region ${shmid}`);
    if (length === 0 || offset + length > size) return this.refuse(`${what}: outside the ${size}-byte region`);
    if (request === BackendRequest.SHMEM_UNMAP) {
      const i = this.mappings.findIndex((m) => m.shmid === shmid && m.offset === offset && m.length === length);
      if (i < 0) return this.refuse(`${what}: no such mapping`);
      native().unmap(this.mappings[i].map.addr);
      this.mappings.splice(i, 1);
      return this.ok(what);
    }
    if (request !== BackendRequest.SHMEM_MAP) return this.refuse(`${what}: unknown request`);
    if (fds.length !== 1) return this.refuse(`${what}: ${fds.length} fds`);
    if (offset % PAGE || length % PAGE || fdOffset % PAGE) return this.refuse(`${what}: not page-aligned`);
    if (flags & ~1n) return this.refuse(`${what}: unknown flags 0x${flags.toString(16)}`);
    if (this.mappings.some((m) => m.shmid === shmid && m.offset < offset + length && offset < m.offset + m.length)) {
      return this.refuse(`${what}: overlaps a mapping`);
    }
    const map = native().mmap(fds[0], length, fdOffset);
    if (typeof map === 'number') return this.refuse(`${what}: mmap failed (${map})`);
    this.mappings.push({ shmid, offset, length, fdOffset, writable: (flags & 1n) !== 0n, map });
    return this.ok(what);
  }

  /** The mapping covering [offset, offset+length) of region shmid, or throws (the guest would fault). */
  private at(shmid: number, offset: number, length: number): { m: ShmemMapping; bytes: Uint8Array } {
    const m = this.mappings.find((x) => x.shmid === shmid && x.offset <= offset && offset + length <= x.offset + x.length);
    if (!m) throw new Error(`nothing mapped at region ${shmid} 0x${offset.toString(16)}+0x${length.toString(16)}`);
    const ab = native().view(m.map.addr, offset - m.offset, length);
    if (typeof ab === 'number') throw new Error(`view failed (${ab})`);
    return { m, bytes: new Uint8Array(ab) };
  }

  /** What the guest reads at offset of region shmid. */
  read(shmid: number, offset: number, length: number): Uint8Array {
    return this.at(shmid, offset, length).bytes.slice();
  }

  /** What the guest writes there (through a writable mapping only). */
  write(shmid: number, offset: number, data: Uint8Array): void {
    const { m, bytes } = this.at(shmid, offset, data.length);
    if (!m.writable) throw new Error(`region ${shmid} 0x${offset.toString(16)} is mapped read-only`);
    bytes.set(data);
  }

  /** A device reset: the front-end removes every mapping itself. */
  reset(): void {
    for (const m of this.mappings.splice(0)) native().unmap(m.map.addr);
    this.events.push('reset');
  }

  private ok(what: string): bigint {
    this.events.push(`${what} ok`);
    return 0n;
  }

  private refuse(why: string): bigint {
    this.events.push(`${why.replace(/: /, ' refused: ')}`);
    return 1n;
  }
}
