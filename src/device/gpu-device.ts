/**
 * The virtio-gpu device: executes decoded commands (queues/ hands over a decoded record) against
 * resources, scanouts and the cursor, and writes the response. Knows nothing of sockets or rings.
 */
import { randomFillSync } from 'node:crypto';
import type { Codec } from '../queues/codec.js';
import { DEFERRED, type VirtQueue } from '../queues/virtqueue.js';
import type { VirglService } from '../renderers/virgl/service.js';
import { VirglDevice } from '../renderers/virgl/device.js';
import { withoutHostBlobUse } from '../renderers/virgl/capset-data.js';
import type { Renderer } from './renderer.js';
import { ContextRegistry, type ContextResource, type OfferedCapset } from './contexts.js';
import { AnswerOrder, GLOBAL_TIMELINE, WHOLE_CONTEXT, timeline } from './answer-order.js';
import { MAX_RINGS } from '../renderers/worker-context/protocol.js';
import { NO_HOST_VISIBLE_REGION, SHM_ID_HOST_VISIBLE, type HostVisibleRegion } from './host-visible.js';
import { capsetData, capsetInfo } from './capsets.js';
import type { WorkerContexts } from '../renderers/worker-context/host.js';
import {
  R_STATUS, R_TYPE, R_FLAGS, R_FENCE_LO, R_FENCE_HI, R_CTX, R_RING, R_ARGS, R_WLEN, R_AVAIL_POS, R_AVAIL_SEEN,
} from '../queues/layout.js';
import { log } from '../log.js';
import type { DisplaySink } from './display-sink.js';
import { Backing, type GuestAccess } from './backing.js';
import { cursorImage, type PixelStore } from './pixel-store.js';
import { GpuError, respType } from './errors.js';
import { Cmd, Resp, HDR_SIZE, FLAG_FENCE, FLAG_INFO_RING_IDX, GpuFeature, MAX_SCANOUTS, cmdName, DISPLAY_INFO_SIZE, EDID_RESP_SIZE, UUID_RESP_SIZE, CURSOR_SIZE } from './protocol.js';
import { HostMemoryBudget, ResourceTable, type Resource2D } from './resources.js';
import { Scanouts, checkRectInside, type Rect } from './scanouts.js';
import { BYTES_PER_PIXEL, swizzleOf } from './formats.js';
import { BlobCommands, BlobFramebuffer, BlobResource } from './blob.js';

export interface GpuDeviceOptions {
  maxHostMemory: number;
  display: DisplaySink;
  memory: GuestAccess;
  /** Set in virglrenderer mode: resources and virgl contexts then live in virglrenderer. */
  virgl?: VirglService | null;
  /** Capsets of context types run one per worker (cross-domain...), offered after virgl's. */
  workerCapsets?: readonly OfferedCapset[];
  /** The pool those contexts run on (required with workerCapsets). */
  workers?: WorkerContexts | null;
  /** Most contexts at once, of every type. */
  maxContexts?: number;
  /** Bytes of the host-visible shared memory region asked of the front-end (0: none). */
  hostVisibleSize?: number;
}

/** Which request word names the resource, for the commands a virgl-mode device runs itself on its blobs. */
const RESOURCE_ARG = new Map<number, number>([
  [Cmd.RESOURCE_UNREF, 0], [Cmd.RESOURCE_ATTACH_BACKING, 0], [Cmd.RESOURCE_DETACH_BACKING, 0],
  [Cmd.TRANSFER_TO_HOST_2D, 6], [Cmd.RESOURCE_FLUSH, 4], [Cmd.SET_SCANOUT, 5],
]);

/** Default mode reported when QEMU's display does not answer (QEMU's own xres/yres defaults). */
const DEFAULT_WIDTH = 1280;
const DEFAULT_HEIGHT = 800;

export class GpuDevice {
  readonly budget: HostMemoryBudget;
  readonly resources: ResourceTable;
  private readonly scanouts: Scanouts;
  private readonly display: DisplaySink;
  private readonly memory: GuestAccess;
  private acked = 0n;
  /** The renderer resource and context commands go to (null: the built-in 2D path). */
  private readonly renderer: Renderer | null;
  /** Every 3D context, whatever runs it; null without capsets (pure 2D). */
  private readonly contexts: ContextRegistry | null;
  /** Capsets offered: GET_CAPSET_INFO's index space and num_capsets. */
  readonly capsets: readonly OfferedCapset[];
  /** The converted cursor image, sent from here (lent to the display like resource pixels). */
  private cursorImage: PixelStore | null = null;
  /** What cursorImage holds: a resource's pixels at a version (cursors are re-sent far more often than redrawn). */
  private cursorOf: { res: Resource2D | null; version: number } = { res: null, version: 0 };
  /** The record of the command being executed, and a rectangle reused for its rect argument. */
  private rec: Int32Array = new Int32Array(0);
  private readonly rect: Rect = { x: 0, y: 0, width: 0, height: 0 };
  /**
   * The last display info QEMU gave, with the avail positions it may answer: chains at positions
   * [pos, seen) were already submitted when it was requested, so a reply is valid for them all.
   * This turns a batch of GET_DISPLAY_INFO into one round trip to QEMU.
   */
  private displayInfoCache: { pmodes: Uint8Array | null; pos: number; seen: number } | null = null;
  /**
   * Blob resources (RESOURCE_BLOB): guest blobs and the host memory of worker contexts. In virgl
   * mode they live beside virglrenderer's resources (whose own blob API is not used).
   */
  private readonly blobs: BlobCommands;
  private readonly hostVisibleSize: number;
  /** Fenced answers leave in order per timeline, whoever gives them (renderer, contexts, this device). */
  private readonly answers: AnswerOrder;
  /** Whether the guest has a host-visible region (the transport negotiated SHMEM with one). */
  private hostVisible = false;

  constructor(opts: GpuDeviceOptions) {
    this.hostVisibleSize = opts.hostVisibleSize ?? 0;
    this.budget = new HostMemoryBudget(opts.maxHostMemory);
    // One id space: in virgl mode the renderer's resources and the device's blobs exclude each other.
    this.resources = new ResourceTable(this.budget, (id) => this.renderer?.hasResource(id) ?? false);
    this.display = opts.display;
    this.memory = opts.memory;
    this.scanouts = new Scanouts(opts.display, (src) => {
      if (src instanceof BlobFramebuffer) this.blobs.releaseFramebuffer(src);
    }, (id) => this.renderer?.releaseScanout(id) ?? false);
    const answers = (this.answers = new AnswerOrder());
    const virgl = opts.virgl ? new VirglDevice({
      service: opts.virgl, budget: this.budget, memory: opts.memory, display: opts.display, answers,
      isDeviceBlob: (id) => this.resources.blob(id) !== undefined,
      claimScanout: (id) => this.scanouts.release(id),
    }) : null;
    this.renderer = virgl;
    const virglCapsets: OfferedCapset[] = virgl
      ? virgl.capsets.map((c) => ({ ...c, runner: 'renderer' as const, hostVisibleData: withoutHostBlobUse(c.id, c.data) }))
      : [];
    this.capsets = [...virglCapsets, ...(opts.workerCapsets ?? [])];
    this.contexts = this.capsets.length === 0 ? null : new ContextRegistry({
      capsets: this.capsets,
      workers: opts.workers ?? null,
      budget: this.budget,
      maxContexts: opts.maxContexts ?? 64,
      resource: (id) => this.contextResource(id),
      renderer: virgl,
      answers,
    });
    this.blobs = new BlobCommands({
      budget: this.budget, resources: this.resources, memory: opts.memory, scanouts: this.scanouts,
      contexts: this.contexts, answers, timelineOf: (rec) => this.timelineOf(rec), region: NO_HOST_VISIBLE_REGION,
    });
  }

  /** Device feature bits offered (the transport adds the ring and vhost-user bits). */
  features(): bigint {
    const base = (1n << BigInt(GpuFeature.EDID)) | (1n << BigInt(GpuFeature.RESOURCE_UUID)) | (1n << BigInt(GpuFeature.RESOURCE_BLOB));
    // Contexts of any type need VIRGL (the 3D command range) and CONTEXT_INIT (their capset id).
    return this.capsets.length > 0 ? base | (1n << BigInt(GpuFeature.VIRGL)) | (1n << BigInt(GpuFeature.CONTEXT_INIT)) : base;
  }

  /** A resource as a context sees it when attached (guest memory and/or host memory). */
  private contextResource(id: number): ContextResource {
    const blob = this.resources.blob(id);
    if (blob) return { segs: blob.backing ? blob.backing.resolve(this.memory) : null, fd: blob.host?.fd ?? -1, size: blob.size };
    if (this.renderer) return this.renderer.contextResource(id);
    const res = this.resources.get(id);
    return { segs: res.backing ? res.backing.resolve(this.memory) : null, fd: -1, size: res.backing?.length ?? 0 };
  }

  /**
   * The device's VIRTIO shared memory regions by shm id: the host-visible one where MAP_BLOB puts
   * blobs' host memory.
   */
  sharedMemorySizes(): readonly number[] {
    if (this.hostVisibleSize === 0) return [];
    const sizes = new Array<number>(SHM_ID_HOST_VISIBLE + 1).fill(0);
    sizes[SHM_ID_HOST_VISIBLE] = this.hostVisibleSize;
    return sizes;
  }

  /** The transport negotiated shared memory (or lost it: NO_HOST_VISIBLE_REGION). */
  setHostVisible(region: HostVisibleRegion): void {
    this.hostVisible = region.size > 0;
    this.blobs.setRegion(region);
  }

  setAckedFeatures(f: bigint): void {
    this.acked = f;
  }

  private has(bit: number): boolean {
    return (this.acked & (1n << BigInt(bit))) !== 0n;
  }

  /** virtio_gpu_config: events_read, events_clear, num_scanouts, num_capsets (QEMU owns the first three). */
  config(): Uint8Array {
    const c = new Uint8Array(16);
    new DataView(c.buffer).setUint32(8, 1, true);
    new DataView(c.buffer).setUint32(12, this.capsets.length, true);
    return c;
  }

  /** Push a scanout rectangle to the display again (it could not take it earlier). */
  refreshScanout(id: number, r: Rect): void {
    this.scanouts.refresh(id, r);
  }

  /** The guest memory table changed (renderers holding host addresses must follow). */
  memoryChanged(): void {
    this.renderer?.memoryChanged();
    this.contexts?.memoryChanged();
  }

  reset(): void {
    this.displayInfoCache = null;
    this.contexts?.reset();
    this.scanouts.reset();
    this.blobs.reset();
    this.resources.clear();
    this.renderer?.reset();
  }

  /** The context registry (tests reach a worker context through it). */
  get contextRegistry(): ContextRegistry | null {
    return this.contexts;
  }

  /**
   * Execute the control command decoded in codec.rec; the response goes to codec.resp.
   * Returns the response length, or a promise of it for commands that wait for QEMU's display.
   */
  control(codec: Codec, queue?: VirtQueue): number | Promise<number> {
    const rec = codec.rec;
    const type = rec[R_TYPE] >>> 0;
    const status = rec[R_STATUS];
    if (status > 0) {
      log.guest(`bad-request-${type}`, `control: malformed ${cmdName(type)} request (${rec[4]} readable bytes) -> 0x${status.toString(16)}`);
      return this.header(codec, status);
    }
    const fenced = queue !== undefined && (rec[R_FLAGS] & FLAG_FENCE) !== 0;
    let len: number;
    try {
      const r = this.execute(codec, type, queue);
      if (r === DEFERRED) return r;
      if (typeof r !== 'number') {
        const answer = r.then((n) => this.fit(codec, n), (e) => this.fail(codec, type, e));
        return fenced ? this.afterEarlierFences(this.timelineOf(rec), answer) : answer;
      }
      len = this.fit(codec, r);
    } catch (e) {
      len = this.fail(codec, type, e);
    }
    return fenced ? this.inOrder(codec, queue!, len) : len;
  }

  /** A fenced answer the queue waits for (display queries, host blob creation): pushed after the earlier fences of its timeline. */
  private async afterEarlierFences(t: number, answer: Promise<number>): Promise<number> {
    const len = await answer;
    if (!this.answers.busy(t)) return len;
    return new Promise((resolve) => this.answers.after(t, Promise.resolve(), () => resolve(len)));
  }

  /**
   * A fenced command this device answered at once: if an earlier fence of its timeline is still
   * outstanding (a 3D submit, a worker context's ring), the answer waits for it, since the guest
   * takes it as "every fence up to this one is done".
   */
  private inOrder(codec: Codec, queue: VirtQueue, len: number): number {
    const t = this.timelineOf(codec.rec);
    if (!this.answers.busy(t)) return len;
    const resp = codec.resp.slice(0, len);
    const complete = queue.defer(len);
    this.answers.after(t, Promise.resolve(), () => complete((c) => {
      c.resp.set(resp);
      return len;
    }));
    return DEFERRED;
  }

  /** The fence timeline of a command, as the renderer or the context registry orders it. */
  private timelineOf(rec: Int32Array): number {
    const ring = rec[R_RING] & 0xff, ctx = rec[R_CTX] >>> 0;
    if (!(rec[R_FLAGS] & FLAG_INFO_RING_IDX) || !this.has(GpuFeature.CONTEXT_INIT) || ring >= MAX_RINGS) return GLOBAL_TIMELINE;
    return this.renderer?.hasContext(ctx) ? timeline(ctx, WHOLE_CONTEXT) : timeline(ctx, ring);
  }

  private fail(codec: Codec, type: number, e: unknown): number {
    if (!(e instanceof GpuError)) log.error(`${cmdName(type)}: ${(e as Error)?.stack ?? e}`);
    else log.guest(`${cmdName(type)}-${e.kind}`, `${cmdName(type)}: ${e.message}`);
    return this.header(codec, respType(e));
  }

  /** A response larger than the guest's writable buffers becomes ERR_UNSPEC, never a partial body. */
  private fit(codec: Codec, len: number): number {
    const cap = codec.rec[R_WLEN] >>> 0;
    if (len <= cap) return len;
    log.guest('resp-too-big', `response of ${len} bytes does not fit the ${cap}-byte writable buffer`);
    return this.header(codec, Resp.ERR_UNSPEC);
  }

  /** Write the response header (fence and ring echoed from the request) and return its length. */
  private header(codec: Codec, type: number): number {
    const rec = codec.rec, v = codec.respView;
    const flags = rec[R_FLAGS] & (FLAG_FENCE | FLAG_INFO_RING_IDX);
    v.setUint32(0, type, true);
    v.setUint32(4, flags, true);
    v.setUint32(8, flags & FLAG_FENCE ? rec[R_FENCE_LO] : 0, true);
    v.setUint32(12, flags & FLAG_FENCE ? rec[R_FENCE_HI] : 0, true);
    v.setUint32(16, rec[R_CTX], true);
    v.setUint32(20, flags & FLAG_INFO_RING_IDX ? rec[R_RING] & 0xff : 0, true);
    return HDR_SIZE;
  }

  /** Request word i (after the header) as u32. */
  private arg(i: number): number {
    return this.rec[R_ARGS + i] >>> 0;
  }

  /** The rect starting at request word i, in the reused rectangle (valid until the next command). */
  private rectAt(i: number): Rect {
    const r = this.rect;
    r.x = this.arg(i);
    r.y = this.arg(i + 1);
    r.width = this.arg(i + 2);
    r.height = this.arg(i + 3);
    return r;
  }

  private execute(codec: Codec, type: number, queue: VirtQueue | undefined): number | Promise<number> {
    const rec = codec.rec;
    this.rec = rec;
    if (this.displayInfoCache && type !== Cmd.GET_DISPLAY_INFO) this.expireDisplayInfo(rec[R_AVAIL_POS]);
    if (type >= Cmd.CTX_CREATE && type <= Cmd.SUBMIT_3D && this.contexts && !this.has(GpuFeature.VIRGL)) throw new GpuError('unspec', 'VIRGL was not negotiated');
    if (this.contexts !== null && queue && ContextRegistry.routes(type)) {
      const r = this.contexts.execute(codec, type, queue, this.has(GpuFeature.CONTEXT_INIT));
      if (r !== null) return r;
    }
    if (type === Cmd.GET_CAPSET_INFO) return capsetInfo(codec, this.capsets, this.arg(0));
    if (type === Cmd.GET_CAPSET) return capsetData(codec, this.capsets, this.arg(0), this.arg(1), this.hostVisible);
    if (type === Cmd.RESOURCE_UNREF) this.contexts?.resourceGone(this.arg(0));
    if (this.renderer !== null && queue && !this.namesDeviceBlob(type)) {
      const r = this.renderer.execute(codec, type, queue, this.has(GpuFeature.CONTEXT_INIT));
      if (r !== null) return r;
    }
    switch (type) {
      case Cmd.GET_DISPLAY_INFO:
        return this.getDisplayInfo(codec);
      case Cmd.RESOURCE_CREATE_2D:
        this.resources.create2d(this.arg(0), this.arg(1), this.arg(2), this.arg(3));
        break;
      case Cmd.RESOURCE_UNREF: {
        const res = this.resources.any(this.arg(0));
        if (res instanceof BlobResource) {
          this.blobs.unref(res);
        } else {
          this.scanouts.detachResource(res);
          this.resources.destroy(res);
        }
        break;
      }
      case Cmd.SET_SCANOUT: {
        const id = this.arg(4), resId = this.arg(5);
        Scanouts.checkId(id);
        if (resId === 0) this.scanouts.disable(id);
        else this.scanouts.set(id, this.resources.get(resId), this.rectAt(0));
        break;
      }
      case Cmd.RESOURCE_FLUSH: {
        const res = this.resources.any(this.arg(4));
        const r = this.rectAt(0);
        if (res instanceof BlobResource) {
          this.blobs.flush(res, r);
        } else {
          checkRectInside('flush', r, res.width, res.height);
          this.scanouts.flush(res, r);
        }
        break;
      }
      case Cmd.TRANSFER_TO_HOST_2D: {
        const res = this.resources.any(this.arg(6));
        // A blob framebuffer is read from the blob's memory at each flush: nothing to copy here.
        if (!(res instanceof BlobResource)) this.transferToHost2d(res, this.rectAt(0), this.arg(4) + this.arg(5) * 2 ** 32);
        break;
      }
      case Cmd.RESOURCE_ATTACH_BACKING: {
        const res = this.resources.any(this.arg(0));
        if (res instanceof BlobResource) this.blobs.attachBacking(res, codec);
        else this.resources.attachBacking(res, Backing.fromRequest(codec));
        break;
      }
      case Cmd.RESOURCE_DETACH_BACKING: {
        const res = this.resources.any(this.arg(0));
        // Scanouts and contexts read a blob's pages for as long as it exists.
        if (res instanceof BlobResource) throw new GpuError('unspec', `blob ${res.id} keeps its guest memory until RESOURCE_UNREF`);
        this.resources.detachBacking(res);
        break;
      }
      case Cmd.RESOURCE_ASSIGN_UUID: {
        if (!this.has(GpuFeature.RESOURCE_UUID)) throw new GpuError('unspec', 'RESOURCE_UUID was not negotiated');
        if (this.renderer && !this.resources.blob(this.arg(0))) return this.assignUuid(codec, this.renderer.resource(this.arg(0)));
        const res = this.resources.any(this.arg(0));
        if (res instanceof BlobResource) this.blobs.checkShareable(res);
        return this.assignUuid(codec, res);
      }
      case Cmd.RESOURCE_CREATE_BLOB: {
        const done = this.blobCommands().create(codec, this.has(GpuFeature.VIRGL));
        if (done) return done.then(() => this.header(codec, Resp.OK_NODATA));
        break;
      }
      case Cmd.SET_SCANOUT_BLOB:
        this.blobCommands().setScanout(rec);
        break;
      case Cmd.RESOURCE_MAP_BLOB:
        return this.blobCommands().map(codec, queue);
      case Cmd.RESOURCE_UNMAP_BLOB:
        return this.blobCommands().unmap(codec, queue);
      case Cmd.GET_EDID:
        if (!this.has(GpuFeature.EDID)) throw new GpuError('unspec', 'EDID was not negotiated');
        return this.getEdid(codec, this.arg(0));
      default:
        throw new GpuError('unspec', `command ${cmdName(type)} is not supported in 2D mode`);
    }
    return this.header(codec, Resp.OK_NODATA);
  }

  /**
   * Virgl mode: whether the resource a command names is one of the device's blobs (the built-in
   * code below runs it, not the renderer). Context commands reach this through the registry.
   */
  private namesDeviceBlob(type: number): boolean {
    const at = RESOURCE_ARG.get(type);
    return at !== undefined && this.resources.blob(this.arg(at)) !== undefined;
  }

  private blobCommands(): BlobCommands {
    if (!this.has(GpuFeature.RESOURCE_BLOB)) throw new GpuError('unspec', 'RESOURCE_BLOB was not negotiated');
    return this.blobs;
  }

  private transferToHost2d(res: Resource2D, r: Rect, offset: number): void {
    const backing = res.backing;
    if (!backing) throw new GpuError('unspec', `resource ${res.id} has no backing`);
    checkRectInside('transfer', r, res.width, res.height);
    if (r.width === 0 || r.height === 0) return;
    const rowBytes = r.width * BYTES_PER_PIXEL;
    // Row h comes from backing offset + stride*h (the guest's image has the resource's stride).
    const lastEnd = offset + res.stride * (r.height - 1) + rowBytes;
    if (lastEnd > backing.length) {
      throw new GpuError('param', `transfer reads backing up to ${lastEnd} but it has ${backing.length} bytes`);
    }
    const dstAt = r.y * res.stride + r.x * BYTES_PER_PIXEL;
    const pixels = res.pixelsForWrite(r.width === res.width && r.height === res.height);
    // Full-width rows are contiguous on both sides: one row of stride*height bytes.
    if (r.width === res.width) backing.readRows(this.memory, offset, 0, pixels, dstAt, 0, res.stride * r.height, 1);
    else backing.readRows(this.memory, offset, res.stride, pixels, dstAt, res.stride, rowBytes, r.height);
  }

  /** Forget the cached display info once a chain past its window is executed (and before u16 wrap). */
  private expireDisplayInfo(pos: number): void {
    const c = this.displayInfoCache!;
    if (((pos - c.pos) & 0xffff) >= ((c.seen - c.pos) & 0xffff)) this.displayInfoCache = null;
  }

  private getDisplayInfo(codec: Codec): number | Promise<number> {
    const pos = codec.rec[R_AVAIL_POS], seen = codec.rec[R_AVAIL_SEEN];
    if (this.displayInfoCache) {
      this.expireDisplayInfo(pos);
      if (this.displayInfoCache) return this.writeDisplayInfo(codec, this.displayInfoCache.pmodes);
    }
    return this.display.displayInfo().then((pmodes) => {
      this.displayInfoCache = { pmodes, pos, seen };
      return this.writeDisplayInfo(codec, pmodes);
    });
  }

  private writeDisplayInfo(codec: Codec, pmodes: Uint8Array | null): number {
    this.header(codec, Resp.OK_DISPLAY_INFO);
    const body = codec.resp.subarray(HDR_SIZE, DISPLAY_INFO_SIZE);
    if (pmodes) body.set(pmodes.subarray(0, body.length));
    else {
      body.fill(0);
      const v = codec.respView;
      v.setUint32(HDR_SIZE + 8, DEFAULT_WIDTH, true);
      v.setUint32(HDR_SIZE + 12, DEFAULT_HEIGHT, true);
      v.setUint32(HDR_SIZE + 16, 1, true);
    }
    return DISPLAY_INFO_SIZE;
  }

  private async getEdid(codec: Codec, scanout: number): Promise<number> {
    Scanouts.checkId(scanout);
    // QEMU silently drops GET_EDID for a scanout it does not have; never ask it about one.
    if (!this.display.hasScanout(scanout)) throw new GpuError('scanout', `scanout ${scanout} does not exist`);
    const blob = await this.display.edid(scanout);
    if (!blob) throw new GpuError('unspec', `no EDID for scanout ${scanout}`);
    this.header(codec, Resp.OK_EDID);
    const body = codec.resp.subarray(HDR_SIZE, EDID_RESP_SIZE);
    body.fill(0);
    body.set(blob.subarray(0, body.length));
    return EDID_RESP_SIZE;
  }

  private assignUuid(codec: Codec, res: { uuid: Uint8Array | null }): number {
    if (!res.uuid) {
      res.uuid = randomFillSync(new Uint8Array(16));
      res.uuid[6] = (res.uuid[6] & 0x0f) | 0x40; // RFC 4122 version 4
      res.uuid[8] = (res.uuid[8] & 0x3f) | 0x80;
    }
    this.header(codec, Resp.OK_RESOURCE_UUID);
    codec.resp.set(res.uuid, HDR_SIZE);
    return UUID_RESP_SIZE;
  }

  /** Execute a cursor-queue command (no response body: QEMU returns these with len 0). */
  cursor(codec: Codec): void {
    const rec = codec.rec;
    const type = rec[R_TYPE] >>> 0;
    if (rec[R_STATUS] !== 0) {
      log.guest('cursor-bad', `cursor: malformed ${cmdName(type)} request`);
      return;
    }
    this.rec = rec;
    const scanout = this.arg(0), x = this.arg(1), y = this.arg(2);
    if (scanout >= MAX_SCANOUTS) {
      log.guest('cursor-scanout', `cursor: scanout ${scanout} out of range`);
      return;
    }
    const resId = this.arg(4);
    if (type === Cmd.MOVE_CURSOR) {
      // As in QEMU: the cursor is visible while the guest names a cursor resource.
      if (resId === 0) this.display.cursorHide(scanout, x, y);
      else this.display.cursorMove(scanout, x, y);
    } else if (type === Cmd.UPDATE_CURSOR) {
      if (resId === 0) {
        this.display.cursorHide(scanout, x, y);
        return;
      }
      try {
        if (this.renderer && !this.resources.blob(resId)) {
          this.renderer.cursor(resId, scanout, x, y, this.arg(5), this.arg(6));
          return;
        }
        const res = this.resources.any(resId);
        if (res instanceof BlobResource) {
          // As QEMU: the first 64x64x4 bytes of the blob, in the cursor's own B,G,R,A order.
          this.cursorImage = cursorImage(this.cursorImage, 'none', this.blobs.cursorWords(res));
          this.cursorOf = { res: null, version: 0 };
          this.display.cursorUpdate(scanout, x, y, this.arg(5), this.arg(6), this.cursorImage);
          return;
        }
        if (res.width !== CURSOR_SIZE || res.height !== CURSOR_SIZE) {
          throw new GpuError('param', `cursor resource ${resId} is ${res.width}x${res.height}, not 64x64`);
        }
        if (this.cursorOf.res !== res || this.cursorOf.version !== res.version) {
          this.cursorImage = cursorImage(this.cursorImage, swizzleOf(res.format), res.words);
          this.cursorOf = { res, version: res.version };
        }
        this.display.cursorUpdate(scanout, x, y, this.arg(5), this.arg(6), this.cursorImage!);
      } catch (e) {
        log.guest('cursor-update', `cursor: ${(e as Error).message}`);
      }
    } else {
      log.guest('cursor-type', `cursor: unexpected command ${cmdName(type)} on the cursor queue`);
    }
  }
}
