/**
 * Blob resources (VIRTIO_GPU_F_RESOURCE_BLOB) of the built-in device: RESOURCE_CREATE_BLOB with
 * guest pages (BLOB_MEM_GUEST) or host memory a context makes (HOST3D, HOST3D_GUEST: a memfd),
 * SET_SCANOUT_BLOB (a framebuffer inside the blob, copied into a scanout store at each flush, so
 * the display path is the 2D one), the cursor from a blob, and RESOURCE_MAP_BLOB / UNMAP_BLOB of
 * host memory into the host-visible region (HostVisibleRegion, the transport's SHMEM side).
 */
import { native, type MapHandle } from '../native.js';
import type { Codec } from '../queues/codec.js';
import { DEFERRED, type VirtQueue } from '../queues/virtqueue.js';
import { R_ARGS, R_CTX, R_FENCE_HI, R_FENCE_LO, R_FLAGS, R_NENTRIES, R_RING, R_WLEN } from '../queues/layout.js';
import { log } from '../log.js';
import type { HostBlob } from '../renderers/worker-context/context-api.js';
import type { AnswerOrder } from './answer-order.js';
import { Backing, ENTRY_OVERHEAD, type GuestAccess } from './backing.js';
import type { ContextRegistry } from './contexts.js';
import { GpuError } from './errors.js';
import { BYTES_PER_PIXEL, isSupportedFormat } from './formats.js';
import type { HostVisibleRegion } from './host-visible.js';
import { PixelStore } from './pixel-store.js';
import { CURSOR_SIZE, FLAG_FENCE, HDR_SIZE, Resp } from './protocol.js';
import { MAX_DIMENSION, type HostMemoryBudget, type ResourceTable } from './resources.js';
import { header } from './responses.js';
import { Scanouts, checkRectInside, type Rect, type ScanoutSource } from './scanouts.js';

export const BlobMem = { GUEST: 1, HOST3D: 2, HOST3D_GUEST: 3 } as const;
export const BlobFlag = { MAPPABLE: 1, SHAREABLE: 2, CROSS_DEVICE: 4 } as const;
const ALL_BLOB_FLAGS = BlobFlag.MAPPABLE | BlobFlag.SHAREABLE | BlobFlag.CROSS_DEVICE;
/** VIRTIO_GPU_MAP_CACHE_WC, the largest cache type the spec defines. */
const MAX_MAP_CACHE = 3;
/** Mappings in the host-visible region are whole pages. */
export const PAGE_SIZE = 4096;
export const MAP_INFO_SIZE = HDR_SIZE + 8;
/** Bookkeeping charged per blob and per scanout framebuffer, on top of memory. */
const BLOB_OVERHEAD = 512;
/** A context that does not answer RESOURCE_CREATE_BLOB in this time is refused (the queue waits meanwhile). */
export const CREATE_BLOB_TIMEOUT_MS = 5000;
const CURSOR_BYTES = CURSOR_SIZE * CURSOR_SIZE * 4;

export class BlobResource {
  uuid: Uint8Array | null = null;
  /** Guest pages (GUEST, HOST3D_GUEST): from the create command or a later ATTACH_BACKING. */
  backing: Backing | null = null;
  /** Where the host memory is mapped in the host-visible region (MAP_BLOB), or null. */
  mapping: HostMapping | null = null;
  /** Framebuffers of this blob on scanouts (SET_SCANOUT_BLOB), one per scanout. */
  readonly framebuffers = new Set<BlobFramebuffer>();
  /** The daemon's own mapping of the host memory, made when pixels are first read from it. */
  private hostView: MapHandle | null = null;
  private hostSegs: Float64Array | null = null;

  constructor(
    readonly id: number, readonly blobMem: number, readonly flags: number, readonly size: number,
    /** Host memory made by a context (HOST3D, HOST3D_GUEST); the fd is ours. */
    readonly host: HostBlob | null,
    /** Charged to the budget for the blob itself (backing entries are charged separately). */
    readonly charge: number,
  ) {}

  get mappable(): boolean {
    return (this.flags & BlobFlag.MAPPABLE) !== 0;
  }

  /**
   * Copy `rows` rows of rowBytes from the blob's memory (host memory if it has any, the guest
   * pages otherwise): row r from srcOff + r*srcStride to dst[dstOff + r*dstStride]. The caller
   * checked the source range against `size`.
   */
  readRows(mem: GuestAccess, srcOff: number, srcStride: number, dst: Uint8Array, dstOff: number, dstStride: number, rowBytes: number, rows: number): void {
    if (!this.host) {
      if (!this.backing) throw new GpuError('unspec', `blob ${this.id} has no memory attached`);
      this.backing.readRows(mem, srcOff, srcStride, dst, dstOff, dstStride, rowBytes, rows);
      return;
    }
    if (!this.hostSegs) {
      const m = native().mmap(this.host.fd, this.size, 0);
      if (typeof m === 'number') throw new GpuError('unspec', `blob ${this.id}: mapping its host memory failed (${m})`);
      this.hostView = m;
      this.hostSegs = Float64Array.of(Number(m.addr), this.size);
    }
    const rc = native().gatherRows(dst, dstOff, dstStride, rowBytes, rows, this.hostSegs, srcOff, srcStride);
    if (rc !== 0) throw new GpuError('unspec', `blob ${this.id}: copy from host memory failed (${rc})`);
  }

  /** Close the host memory (once no mapping request can still need the fd). */
  releaseHost(): void {
    if (this.hostView) native().unmap(this.hostView.addr);
    this.hostView = null;
    this.hostSegs = null;
    if (this.host) native().close(this.host.fd);
  }
}

/**
 * A framebuffer inside a blob shown on one scanout (SET_SCANOUT_BLOB): the part the scanout shows
 * is copied from the blob into `store` when shown and at each flush, and the display sends it
 * from there like a 2D resource's pixels. As a ScanoutSource it is the shown rectangle only.
 */
export class BlobFramebuffer implements ScanoutSource {
  scanoutMask = 0;
  private storage: PixelStore | null = null;
  readonly width: number;
  readonly height: number;

  constructor(
    readonly blob: BlobResource, readonly scanoutId: number, readonly format: number,
    /** Framebuffer geometry inside the blob (plane 0). */
    readonly stride: number, readonly offset: number,
    /** The rectangle of the framebuffer the scanout shows. */
    readonly shown: Readonly<Rect>,
    readonly charge: number,
  ) {
    this.width = shown.width;
    this.height = shown.height;
  }

  get store(): PixelStore {
    return (this.storage ??= new PixelStore(this.width * this.height * BYTES_PER_PIXEL));
  }

  sameAs(format: number, stride: number, offset: number, r: Rect): boolean {
    const s = this.shown;
    return this.format === format && this.stride === stride && this.offset === offset
      && s.x === r.x && s.y === r.y && s.width === r.width && s.height === r.height;
  }

  /**
   * Copy the part of rect r (framebuffer coordinates) that the scanout shows from the blob into
   * the store; returns it in store coordinates (width 0 if nothing is shown of it).
   */
  pull(mem: GuestAccess, r: Rect, out: Rect): Rect {
    const s = this.shown;
    const x0 = Math.max(r.x, s.x), y0 = Math.max(r.y, s.y);
    const x1 = Math.min(r.x + r.width, s.x + s.width), y1 = Math.min(r.y + r.height, s.y + s.height);
    out.x = x0 - s.x; out.y = y0 - s.y; out.width = Math.max(0, x1 - x0); out.height = Math.max(0, y1 - y0);
    if (out.width === 0 || out.height === 0) return out;
    const store = this.store.forWrite(out.width === this.width && out.height === this.height);
    this.storage = store;
    const rowBytes = out.width * BYTES_PER_PIXEL, pitch = this.width * BYTES_PER_PIXEL;
    this.blob.readRows(mem, this.offset + y0 * this.stride + x0 * BYTES_PER_PIXEL, this.stride,
      store.bytes, out.y * pitch + out.x * BYTES_PER_PIXEL, pitch, rowBytes, out.height);
    return out;
  }

  discard(): void {
    this.storage?.discard();
    this.storage = null;
  }
}

/** A blob's host memory in the host-visible region. */
export interface HostMapping {
  readonly offset: number;
  readonly length: number;
  readonly blob: BlobResource;
  /** Resolves true once the front-end mapped it, false if it refused. */
  readonly ready: Promise<boolean>;
}

/** A range being unmapped: no new mapping may use it before the front-end confirmed. */
interface Draining {
  readonly offset: number;
  readonly end: number;
  /** Resolves true once unmapped; false if the front-end refused (the range then stays taken). */
  readonly done: Promise<boolean>;
}

/**
 * The mappings of one host-visible region: live ones sorted by offset and disjoint, plus ranges
 * whose unmap the front-end has not confirmed yet (Linux frees a range in its allocator before it
 * sends UNMAP_BLOB, so a MAP_BLOB over such a range waits for the unmap rather than failing).
 */
export class HostVisibleMaps {
  private readonly live: HostMapping[] = [];
  private readonly draining = new Set<Draining>();
  /** Set when the device left these maps behind (reset, new region): nothing more is sent. */
  private abandoned = false;

  constructor(readonly region: HostVisibleRegion) {}

  /** Maps still waiting for an earlier unmap are not sent any more (their fds are about to close). */
  abandon(): void {
    this.abandoned = true;
  }

  get count(): number {
    return this.live.length;
  }

  /** The live mapping overlapping [offset, end), or null (binary search on the sorted list). */
  overlap(offset: number, end: number): HostMapping | null {
    const i = this.firstEndingAfter(offset);
    const m = this.live[i];
    return m && m.offset < end ? m : null;
  }

  /** Index of the first live mapping whose end is past `offset`. */
  private firstEndingAfter(offset: number): number {
    let lo = 0, hi = this.live.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = this.live[mid];
      if (m.offset + m.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Map blob's host memory at [offset, offset+length) (checked free by the caller). */
  map(blob: BlobResource, offset: number, length: number): HostMapping {
    const end = offset + length;
    const waits: Promise<boolean>[] = [];
    for (const d of this.draining) if (d.offset < end && offset < d.end) waits.push(d.done);
    let resolveReady!: (ok: boolean) => void;
    const m: HostMapping = { offset, length, blob, ready: new Promise((r) => (resolveReady = r)) };
    this.live.splice(this.firstEndingAfter(offset), 0, m);
    const fd = blob.host!.fd;
    void Promise.all(waits).then(async (freed) => {
      if (!freed.every(Boolean)) throw new Error('an earlier mapping there could not be removed');
      if (this.abandoned) throw new Error('the device was reset meanwhile');
      await this.region.map(offset, length, fd, 0, true);
    }).then(
      () => resolveReady(true),
      (e: unknown) => {
        log.warn(`MAP_BLOB: resource ${blob.id} at 0x${offset.toString(16)}+0x${length.toString(16)}: the front-end refused: ${(e as Error)?.message ?? e}`);
        this.remove(m);
        resolveReady(false);
      },
    );
    return m;
  }

  /** Remove a mapping (after its map settled); resolves true once the front-end unmapped it. */
  unmap(m: HostMapping): Promise<boolean> {
    this.remove(m);
    const done = m.ready.then(async (mapped) => {
      if (!mapped) return true;
      try {
        await this.region.unmap(m.offset, m.length);
        return true;
      } catch (e) {
        log.warn(`UNMAP_BLOB: resource ${m.blob.id} at 0x${m.offset.toString(16)}: the front-end refused: ${(e as Error)?.message ?? e}; the range stays taken`);
        return false;
      }
    });
    const d: Draining = { offset: m.offset, end: m.offset + m.length, done };
    this.draining.add(d);
    void done.then((ok) => ok && this.draining.delete(d));
    return done;
  }

  private remove(m: HostMapping): void {
    const i = this.live.indexOf(m, this.firstEndingAfter(m.offset));
    if (i >= 0) this.live.splice(i, 1);
  }
}

export interface BlobCommandsOptions {
  readonly budget: HostMemoryBudget;
  readonly resources: ResourceTable;
  readonly memory: GuestAccess;
  readonly scanouts: Scanouts;
  /** Creates host memory for HOST3D blobs; null without capsets. */
  readonly contexts: ContextRegistry | null;
  readonly answers: AnswerOrder;
  /** The fence timeline a command's answer is ordered on (the device's rule for every answer). */
  readonly timelineOf: (rec: Int32Array) => number;
  readonly region: HostVisibleRegion;
}

/** The blob commands on the device's resource table (GpuDevice dispatches them here). */
export class BlobCommands {
  private maps: HostVisibleMaps;
  /** Bumped at reset: a host blob a context answers afterwards is not added. */
  private generation = 0;
  private readonly flushed: Rect = { x: 0, y: 0, width: 0, height: 0 };
  private readonly cursorBytes = new Uint8Array(CURSOR_BYTES);
  private readonly cursorPixels = new Uint32Array(this.cursorBytes.buffer);

  constructor(private readonly o: BlobCommandsOptions) {
    this.maps = new HostVisibleMaps(o.region);
  }

  get mappings(): number {
    return this.maps.count;
  }

  /**
   * The transport's region changed (SHMEM negotiated, a new back-end channel, a device reset, the
   * session over): the front-end dropped the old region's mappings itself, so they are forgotten
   * here, not unmapped (an unmap would name a mapping the front-end no longer has).
   */
  setRegion(region: HostVisibleRegion): void {
    for (const b of this.o.resources.blobs()) b.mapping = null;
    this.maps.abandon();
    this.maps = new HostVisibleMaps(region);
  }

  /**
   * RESOURCE_CREATE_BLOB: resource_id, blob_mem, blob_flags, nr_entries, blob_id (u64), size
   * (u64), then the mem entries (decoded by the codec). virgl: VIRGL negotiated (host memory needs it).
   */
  create(codec: Codec, virgl: boolean): void | Promise<void> {
    const rec = codec.rec, a = (i: number) => rec[R_ARGS + i] >>> 0;
    const id = a(0), mem = a(1), flags = a(2), nEntries = rec[R_NENTRIES];
    const blobId = BigInt(a(5)) << 32n | BigInt(a(4));
    if (a(7) >= 2 ** 21) throw new GpuError('param', `blob ${id}: size 0x${a(7).toString(16)}${a(6).toString(16).padStart(8, '0')} is too large`);
    const size = a(6) + a(7) * 2 ** 32;
    this.o.resources.checkNewId(id);
    if (flags & ~ALL_BLOB_FLAGS) throw new GpuError('param', `blob ${id}: unknown blob flags 0x${flags.toString(16)}`);
    if (size === 0) throw new GpuError('param', `blob ${id}: size 0`);
    if (mem !== BlobMem.GUEST && mem !== BlobMem.HOST3D && mem !== BlobMem.HOST3D_GUEST) throw new GpuError('param', `blob ${id}: unknown blob_mem ${mem}`);
    if (mem === BlobMem.HOST3D && nEntries > 0) throw new GpuError('param', `blob ${id}: BLOB_MEM_HOST3D takes no guest memory (${nEntries} entries)`);
    const backing = nEntries > 0 ? Backing.fromRequest(codec) : null;
    if (backing && backing.length < size) throw new GpuError('param', `blob ${id}: ${size} bytes but its ${nEntries} entries hold ${backing.length}`);
    const entryCharge = backing ? backing.entryCount * ENTRY_OVERHEAD : 0;
    if (mem === BlobMem.GUEST) {
      if (blobId !== 0n) throw new GpuError('param', `blob ${id}: blob_id ${blobId} with BLOB_MEM_GUEST (must be 0)`);
      this.o.budget.reserve(BLOB_OVERHEAD + entryCharge, 'blob resource', id);
      const b = new BlobResource(id, mem, flags, size, null, BLOB_OVERHEAD);
      b.backing = backing;
      this.o.resources.addBlob(b);
      return;
    }
    // Host memory: the context named in the header makes it (the spec: only with VIRGL).
    if (!virgl) throw new GpuError('param', `blob ${id}: host memory (blob_mem ${mem}) needs VIRGL`);
    const contexts = this.o.contexts;
    if (!contexts) throw new GpuError('context', `blob ${id}: no context can create host memory (no capsets offered)`);
    const charge = size + BLOB_OVERHEAD;
    this.o.budget.reserve(charge + entryCharge, 'blob resource', id);
    const gen = this.generation;
    const refuse = (e: unknown, fd: number): never => {
      if (fd >= 0) native().close(fd);
      this.o.budget.release(charge + entryCharge);
      throw e;
    };
    return this.hostBlob(contexts, rec[R_CTX] >>> 0, blobId, size, flags, id).then((host) => {
      if (gen !== this.generation) refuse(new GpuError('unspec', `blob ${id}: the device was reset meanwhile`), host.fd);
      const b = new BlobResource(id, mem, flags, size, host, charge);
      b.backing = backing;
      try {
        this.o.resources.addBlob(b);
      } catch (e) {
        refuse(e, host.fd);
      }
    }, (e: unknown) => refuse(e, -1));
  }

  /** Ask the context for host memory, bounded in time; checks what it gives. */
  private hostBlob(contexts: ContextRegistry, ctxId: number, blobId: bigint, size: number, flags: number, id: number): Promise<HostBlob> {
    return new Promise<HostBlob>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(new GpuError('unspec', `blob ${id}: context ${ctxId} did not answer within ${CREATE_BLOB_TIMEOUT_MS} ms`));
      }, CREATE_BLOB_TIMEOUT_MS);
      contexts.createBlob(ctxId, blobId, size, flags).then((host) => {
        clearTimeout(timer);
        if (timedOut) return void native().close(host.fd);
        const have = native().fdSize(host.fd);
        if (have < size || host.mapInfo > MAX_MAP_CACHE) {
          native().close(host.fd);
          return reject(new GpuError('unspec', `blob ${id}: context ${ctxId} gave ${have} bytes (${size} asked), cache type ${host.mapInfo}`));
        }
        resolve(host);
      }, (e: unknown) => {
        clearTimeout(timer);
        if (!timedOut) reject(e);
      });
    });
  }

  /** RESOURCE_UNREF of a blob: off every scanout, unmapped, its memory released. */
  unref(b: BlobResource): void {
    for (const fb of [...b.framebuffers]) this.o.scanouts.disable(fb.scanoutId);
    this.o.resources.deleteBlob(b);
    this.o.budget.release(b.charge + (b.backing ? b.backing.entryCount * ENTRY_OVERHEAD : 0));
    const m = b.mapping;
    b.mapping = null;
    // The fd stays open until no mapping request can still send it.
    if (m) void this.maps.unmap(m).then(() => b.releaseHost());
    else b.releaseHost();
  }

  /** ATTACH_BACKING on a blob: the spec lets GUEST / HOST3D_GUEST blobs created without entries get them later. */
  attachBacking(b: BlobResource, codec: Codec): void {
    if (b.blobMem === BlobMem.HOST3D) throw new GpuError('param', `blob ${b.id} is host memory only (BLOB_MEM_HOST3D)`);
    if (b.backing) throw new GpuError('unspec', `blob ${b.id} already has guest memory`);
    const backing = Backing.fromRequest(codec);
    if (backing.length < b.size) throw new GpuError('param', `blob ${b.id}: ${b.size} bytes but the entries hold ${backing.length}`);
    this.o.budget.reserve(backing.entryCount * ENTRY_OVERHEAD, 'backing of resource', b.id);
    b.backing = backing;
  }

  /**
   * SET_SCANOUT_BLOB: rect (4), scanout_id, resource_id, width, height, format, padding,
   * strides[4], offsets[4]. The framebuffer is plane 0 (the 2D formats have one plane); planes
   * 1-3 are ignored. The whole framebuffer must lie inside the blob, as Linux's DRM checks too.
   */
  setScanout(rec: Int32Array): void {
    const a = (i: number) => rec[R_ARGS + i] >>> 0;
    const scanoutId = a(4), resId = a(5), width = a(6), height = a(7), format = a(8), stride = a(10), offset = a(14);
    Scanouts.checkId(scanoutId);
    if (resId === 0) return this.o.scanouts.disable(scanoutId);
    const b = this.o.resources.blob(resId);
    if (!b) {
      this.o.resources.any(resId);
      throw new GpuError('param', `resource ${resId} is not a blob (use SET_SCANOUT)`);
    }
    if (!isSupportedFormat(format)) throw new GpuError('param', `scanout blob: unsupported format ${format}`);
    if (width === 0 || height === 0 || width > MAX_DIMENSION || height > MAX_DIMENSION) {
      throw new GpuError('param', `scanout blob: bad size ${width}x${height} (1..${MAX_DIMENSION} each)`);
    }
    const r: Rect = { x: a(0), y: a(1), width: a(2), height: a(3) };
    if (r.width === 0 || r.height === 0) throw new GpuError('param', `empty scanout rect ${r.width}x${r.height}`);
    checkRectInside('scanout', r, width, height);
    if (stride < width * BYTES_PER_PIXEL) throw new GpuError('param', `scanout blob: stride ${stride} is below a row of ${width} pixels`);
    // Doubles: stride < 2^32 and height <= 2^14, so every term is exact (no wrap).
    const end = offset + stride * (height - 1) + width * BYTES_PER_PIXEL;
    if (end > b.size) throw new GpuError('param', `scanout blob: framebuffer ends at byte ${end} of a ${b.size}-byte blob`);
    if (!b.host && !b.backing) throw new GpuError('unspec', `blob ${resId} has no memory attached`);
    const current = this.o.scanouts.shown(scanoutId);
    if (current instanceof BlobFramebuffer && current.blob === b && current.sameAs(format, stride, offset, r)) {
      // The same framebuffer again: shown at once with its current pixels, as a new one would be.
      this.o.scanouts.flush(current, current.pull(this.o.memory, r, this.flushed));
      return;
    }
    const charge = r.width * r.height * BYTES_PER_PIXEL + BLOB_OVERHEAD;
    this.o.budget.reserve(charge, 'framebuffer of resource', resId);
    const fb = new BlobFramebuffer(b, scanoutId, format, stride, offset, { ...r }, charge);
    b.framebuffers.add(fb);
    try {
      fb.pull(this.o.memory, r, this.flushed);
    } catch (e) {
      this.releaseFramebuffer(fb);
      throw e;
    }
    this.o.scanouts.set(scanoutId, fb, { x: 0, y: 0, width: r.width, height: r.height });
  }

  /** A framebuffer left its scanout (replaced, disabled, reset): its store and charge go back. */
  releaseFramebuffer(fb: BlobFramebuffer): void {
    if (!fb.blob.framebuffers.delete(fb)) return;
    fb.discard();
    this.o.budget.release(fb.charge);
  }

  /** RESOURCE_FLUSH of a blob: rect r (framebuffer coordinates) of every scanout showing it. */
  flush(b: BlobResource, r: Rect): void {
    for (const fb of b.framebuffers) {
      const local = fb.pull(this.o.memory, r, this.flushed);
      if (local.width > 0 && local.height > 0) this.o.scanouts.flush(fb, local);
    }
  }

  /** A 64x64 cursor image from the start of a blob (B8G8R8A8, as QEMU reads it): its words, valid until the next call. */
  cursorWords(b: BlobResource): Uint32Array {
    if (b.size < CURSOR_BYTES) throw new GpuError('param', `cursor blob ${b.id} has ${b.size} bytes, not 64x64x4`);
    b.readRows(this.o.memory, 0, 0, this.cursorBytes, 0, 0, CURSOR_BYTES, 1);
    return this.cursorPixels;
  }

  /** RESOURCE_ASSIGN_UUID is for blobs made to be shared. */
  checkShareable(b: BlobResource): void {
    if (!(b.flags & (BlobFlag.SHAREABLE | BlobFlag.CROSS_DEVICE))) throw new GpuError('param', `blob ${b.id} was not created SHAREABLE or CROSS_DEVICE`);
  }

  /**
   * RESOURCE_MAP_BLOB: resource_id, padding, offset (u64). Answered OK_MAP_INFO (the blob's cache
   * type) once the front-end mapped it; the queue goes on meanwhile (or waits without `queue`).
   */
  map(codec: Codec, queue: VirtQueue | undefined): number | Promise<number> {
    const rec = codec.rec, a = (i: number) => rec[R_ARGS + i] >>> 0;
    const region = this.maps.region;
    if (region.size === 0) {
      throw new GpuError('unspec', 'no host-visible region: the front-end did not negotiate shared memory (SHMEM), so blobs cannot be mapped');
    }
    const b = this.blobOf(a(0));
    if (!b.host) throw new GpuError('param', `blob ${b.id} has no host memory to map (blob_mem ${b.blobMem})`);
    if (!b.mappable) throw new GpuError('param', `blob ${b.id} was not created MAPPABLE`);
    if (b.mapping) throw new GpuError('param', `blob ${b.id} is already mapped at 0x${b.mapping.offset.toString(16)}`);
    if ((rec[R_WLEN] >>> 0) < MAP_INFO_SIZE) throw new GpuError('unspec', `MAP_BLOB needs a ${MAP_INFO_SIZE}-byte response buffer`);
    const offset = a(2) + a(3) * 2 ** 32;
    const length = Math.ceil(b.size / PAGE_SIZE) * PAGE_SIZE;
    if (offset % PAGE_SIZE !== 0) throw new GpuError('param', `MAP_BLOB offset 0x${offset.toString(16)} is not page-aligned`);
    if (offset + length > region.size) {
      throw new GpuError('param', `MAP_BLOB of ${length} bytes at 0x${offset.toString(16)} exceeds the ${region.size}-byte host-visible region`);
    }
    const other = this.maps.overlap(offset, offset + length);
    if (other) throw new GpuError('param', `MAP_BLOB at 0x${offset.toString(16)}+0x${length.toString(16)} overlaps resource ${other.blob.id}'s mapping`);
    // The front-end maps whole pages of the fd: past its end the guest would fault.
    const have = native().fdSize(b.host.fd);
    if (have < length) throw new GpuError('param', `blob ${b.id}: its memory is ${have} bytes, not a whole number of pages`);
    const m = this.maps.map(b, offset, length);
    b.mapping = m;
    const mapInfo = b.host.mapInfo;
    const done = m.ready.then((ok) => {
      // Refused: the blob is not mapped (unless it was unreffed, then gone anyway).
      if (!ok && b.mapping === m) b.mapping = null;
      return ok;
    });
    return this.answerLater(codec, queue, done, (c) => {
      const v = c.respView;
      v.setUint32(HDR_SIZE, mapInfo, true);
      v.setUint32(HDR_SIZE + 4, 0, true);
      return MAP_INFO_SIZE;
    }, Resp.OK_MAP_INFO);
  }

  /** RESOURCE_UNMAP_BLOB: answered once the front-end removed the mapping. */
  unmap(codec: Codec, queue: VirtQueue | undefined): number | Promise<number> {
    const b = this.blobOf(codec.rec[R_ARGS] >>> 0);
    const m = b.mapping;
    if (!m) throw new GpuError('param', `blob ${b.id} is not mapped`);
    b.mapping = null;
    return this.answerLater(codec, queue, this.maps.unmap(m), () => HDR_SIZE, Resp.OK_NODATA);
  }

  private blobOf(id: number): BlobResource {
    const b = this.o.resources.blob(id);
    if (b) return b;
    this.o.resources.any(id);
    throw new GpuError('param', `resource ${id} is not a blob`);
  }

  /**
   * Answer when `ready` resolves (true: `okType` with body from `body`; false: ERR_UNSPEC).
   * Deferred through the queue when there is one; fenced answers keep their timeline's order.
   */
  private answerLater(codec: Codec, queue: VirtQueue | undefined, ready: Promise<boolean>,
    body: (c: Codec) => number, okType: number): number | Promise<number> {
    const r = codec.rec;
    const flags = r[R_FLAGS], lo = r[R_FENCE_LO], hi = r[R_FENCE_HI], ctx = r[R_CTX], ring = r[R_RING];
    const write = (c: Codec, ok: boolean): number => {
      if (!ok) return header(c, Resp.ERR_UNSPEC, flags, lo, hi, ctx, ring);
      header(c, okType, flags, lo, hi, ctx, ring);
      return body(c);
    };
    if (!queue) return ready.then((ok) => write(codec, ok));
    const complete = queue.defer();
    if (flags & FLAG_FENCE) {
      this.o.answers.after(this.o.timelineOf(r), ready, (ok) => complete((c) => write(c, ok)));
    } else {
      void ready.then((ok) => complete((c) => write(c, ok)));
    }
    return DEFERRED;
  }

  /**
   * Device reset: every blob goes. The front-end removes the mappings of a reset device itself
   * (vhost-user SHMEM), so they are forgotten rather than unmapped, and the region starts empty.
   */
  reset(): void {
    this.generation++;
    this.setRegion(this.maps.region);
    for (const b of [...this.o.resources.blobs()]) this.unref(b);
  }
}
