/**
 * Host-side resources and the host memory budget they draw from. Every byte the guest can make
 * the device hold (pixels, backing lists, per-resource bookkeeping) is charged to the budget, so a
 * guest cannot grow the daemon without bound.
 */
import { GpuError } from './errors.js';
import { ENTRY_OVERHEAD, type Backing } from './backing.js';
import { BYTES_PER_PIXEL, isSupportedFormat } from './formats.js';
import { PixelStore } from './pixel-store.js';
import type { BlobResource } from './blob.js';

/** Bookkeeping charged per resource and per backing entry, on top of pixel storage. */
const RESOURCE_OVERHEAD = 512;
/** Largest width or height accepted (as large as any real GPU's 2D texture limit). */
export const MAX_DIMENSION = 16384;

export class HostMemoryBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Charge bytes for (what, id); the message is built only on failure (this runs per command). */
  reserve(bytes: number, what: 'resource' | 'backing of resource' | 'context' | 'blob resource' | 'framebuffer of resource', id: number): void {
    if (this.used + bytes > this.limit) {
      throw new GpuError('oom', `${what} ${id} needs ${bytes} bytes; ${this.used} of ${this.limit} in use`);
    }
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

export class Resource2D {
  backing: Backing | null = null;
  uuid: Uint8Array | null = null;
  /** Scanouts showing this resource (bit i = scanout i). */
  scanoutMask = 0;
  readonly stride: number;
  private storage: PixelStore | null = null;
  /** Counts writes to the pixels, so derived images (the cursor) know when they are stale. */
  version = 0;

  constructor(readonly id: number, readonly format: number, readonly width: number, readonly height: number) {
    this.stride = width * BYTES_PER_PIXEL;
  }

  /**
   * The pixels, allocated on first use: the budget is charged at creation, but a resource that
   * is never written or shown costs no page faults (as calloc'd memory in a C backend).
   */
  get store(): PixelStore {
    return (this.storage ??= new PixelStore(this.stride * this.height));
  }

  get words(): Uint32Array {
    return this.store.words;
  }

  /** The pixels to write into (a copy while the display still reads the current ones, see PixelStore). */
  pixelsForWrite(overwritesAll: boolean): Uint8Array {
    const s = this.store.forWrite(overwritesAll);
    this.storage = s;
    this.version++;
    return s.bytes;
  }

  /** The resource is gone: its pixel memory goes back now (see PixelStore.discard). */
  discardPixels(): void {
    this.storage?.discard();
    this.storage = null;
  }

  get charge(): number {
    return this.stride * this.height + RESOURCE_OVERHEAD;
  }
}

/**
 * Every resource of the built-in device, 2D and blob (blob.ts), in one id space. Blobs are created
 * and destroyed by blob.ts (their memory comes and goes asynchronously); the table only keeps ids.
 */
export class ResourceTable {
  private readonly map = new Map<number, Resource2D>();
  private readonly blobMap = new Map<number, BlobResource>();
  /** takenElsewhere: ids a renderer owns (virgl mode: its resources share the guest's id space with our blobs). */
  constructor(private readonly budget: HostMemoryBudget, private readonly takenElsewhere: (id: number) => boolean = () => false) {}

  get size(): number {
    return this.map.size + this.blobMap.size;
  }

  /** A 2D resource by id; a blob's id is refused (the caller handles blobs first where they apply). */
  get(id: number): Resource2D {
    const r = this.map.get(id);
    if (!r) {
      if (this.blobMap.has(id)) throw new GpuError('param', `resource ${id} is a blob resource`);
      throw new GpuError('resource', `resource ${id} does not exist`);
    }
    return r;
  }

  /** A resource of either kind, or throws ERR_INVALID_RESOURCE_ID (ERR_INVALID_PARAMETER for a renderer's resource). */
  any(id: number): Resource2D | BlobResource {
    const r = this.map.get(id) ?? this.blobMap.get(id);
    if (r) return r;
    if (this.takenElsewhere(id)) throw new GpuError('param', `resource ${id} is a renderer resource, not a blob`);
    throw new GpuError('resource', `resource ${id} does not exist`);
  }

  blob(id: number): BlobResource | undefined {
    return this.blobMap.get(id);
  }

  blobs(): IterableIterator<BlobResource> {
    return this.blobMap.values();
  }

  /** Throws unless `id` may name a new resource. */
  checkNewId(id: number): void {
    if (id === 0) throw new GpuError('resource', 'resource id 0 is reserved');
    if (this.map.has(id) || this.blobMap.has(id) || this.takenElsewhere(id)) throw new GpuError('resource', `resource ${id} already exists`);
  }

  addBlob(b: BlobResource): void {
    this.checkNewId(b.id);
    this.blobMap.set(b.id, b);
  }

  deleteBlob(b: BlobResource): void {
    this.blobMap.delete(b.id);
  }

  values(): IterableIterator<Resource2D> {
    return this.map.values();
  }

  create2d(id: number, format: number, width: number, height: number): Resource2D {
    this.checkNewId(id);
    if (!isSupportedFormat(format)) throw new GpuError('param', `unsupported format ${format}`);
    if (width === 0 || height === 0 || width > MAX_DIMENSION || height > MAX_DIMENSION) {
      throw new GpuError('param', `bad size ${width}x${height} (1..${MAX_DIMENSION} each)`);
    }
    const bytes = width * height * BYTES_PER_PIXEL + RESOURCE_OVERHEAD;
    this.budget.reserve(bytes, 'resource', id);
    const r = new Resource2D(id, format, width, height);
    this.map.set(id, r);
    return r;
  }

  attachBacking(r: Resource2D, backing: Backing): void {
    if (r.backing) throw new GpuError('unspec', `resource ${r.id} already has backing`);
    this.budget.reserve(backing.entryCount * ENTRY_OVERHEAD, 'backing of resource', r.id);
    r.backing = backing;
  }

  detachBacking(r: Resource2D): void {
    if (!r.backing) throw new GpuError('unspec', `resource ${r.id} has no backing`);
    this.budget.release(r.backing.entryCount * ENTRY_OVERHEAD);
    r.backing = null;
  }

  destroy(r: Resource2D): void {
    if (r.backing) this.detachBacking(r);
    r.discardPixels();
    this.budget.release(r.charge);
    this.map.delete(r.id);
  }

  /** Destroy every 2D resource (blobs are destroyed by blob.ts, which unmaps them first). */
  clear(): void {
    for (const r of [...this.map.values()]) this.destroy(r);
  }
}
