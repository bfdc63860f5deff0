/**
 * The virglrenderer side of the device (--gpu-mode virglrenderer): every resource is a virgl
 * resource and every context a virgl context, owned by the VirglComponent's render server. All ids are
 * validated here on the coordinator, so nothing the guest names reaches the server unchecked, and
 * so are transfers (against the resource and its backing, as virglrenderer checks them). What only
 * virglrenderer can refuse is answered with its result: an unfenced command when the server has
 * run it, a fenced one when its fence signals (the queue goes on meanwhile in both cases).
 */
import type { Renderer } from '../../device/renderer.js';
import type { ContextResource } from '../../device/contexts.js';
import type { Codec } from '../../queues/codec.js';
import { DEFERRED, type VirtQueue } from '../../queues/virtqueue.js';
import { R_ARGS, R_CTX, R_FENCE_HI, R_FENCE_LO, R_FLAGS, R_NENTRIES, R_RING, R_RLEN } from '../../queues/layout.js';
import type { VirglComponent, VirglCapset } from './component.js';
import type { VirglService } from './service.js';
import { log } from '../../log.js';
import { Backing, ENTRY_OVERHEAD, type GuestAccess } from '../../device/backing.js';
import { GpuError, respType } from '../../device/errors.js';
import { cmdName, Cmd, Resp, HDR_SIZE, FLAG_FENCE, FLAG_INFO_RING_IDX } from '../../device/protocol.js';
import { header } from '../../device/responses.js';
import { AnswerOrder, GLOBAL_TIMELINE, WHOLE_CONTEXT, timeline as answerTimeline } from '../../device/answer-order.js';
import type { HostMemoryBudget } from '../../device/resources.js';
import { MAX_DIMENSION } from '../../device/resources.js';
import { VirglScanouts, type VirglResource } from './scanouts.js';
import type { DisplaySink } from '../../device/display-sink.js';
import { formatBlock, isVirglFormat } from './formats.js';

/** Largest SUBMIT_3D command stream accepted. */
export const MAX_SUBMIT_BYTES = 4 << 20;
const MAX_BACKING_ENTRIES = 16384;
const RESOURCE_OVERHEAD = 512;
const PIPE_TEXTURE_2D = 2;
const PIPE_TEXTURE_3D = 3;
const PIPE_MAX_TARGET = 8; // PIPE_BUFFER 0 .. PIPE_TEXTURE_CUBE_ARRAY 8
/** Targets whose box z/depth count layers (cube, 1D/2D array, cube array), not texels. */
const LAYERED_TARGETS = new Set([4, 6, 7, 8]);
const EINVAL = -22, ENOMEM = -12;
const BIND_RENDER_TARGET = 1 << 1;
const Y_0_TOP = 1;
const SUBMIT_DATA = HDR_SIZE + 8;

export interface VirglDeviceOptions {
  service: VirglService;
  budget: HostMemoryBudget;
  memory: GuestAccess;
  display: DisplaySink;
  /** The device's answer order, shared with every other context type. */
  answers: AnswerOrder;
  /** Whether id names one of the device's own blobs (guest blobs, other context types' host blobs): one id space. */
  isDeviceBlob?: (id: number) => boolean;
  /** A virgl resource (or nothing) goes on scanout id: the device forgets its blob there; whether it showed one. */
  claimScanout?: (id: number) => boolean;
}

/** virglrenderer behind the device: coordinator-side state and validation, work in the render server. */
export class VirglDevice implements Renderer {
  private readonly service: VirglService;
  /** The render server this device's objects live in (the service's, once adopted). */
  private component: VirglComponent;
  private readonly budget: HostMemoryBudget;
  private readonly memory: GuestAccess;
  private readonly resources = new Map<number, VirglResource>();
  /** Context id -> how it was created (to create it again on a restarted server) and the resources attached to it. */
  private readonly contexts = new Map<number, { readonly capsetId: number; readonly name: string; readonly resources: Set<number> }>();
  readonly scanouts: VirglScanouts;
  private readonly box = [0, 0, 0, 0, 0, 0];
  private rec: Int32Array = new Int32Array(0);
  private readonly answers: AnswerOrder;
  private readonly isDeviceBlob: (id: number) => boolean;
  /** The guest memory mappings shared with the render server, for memory generation sharedFor. */
  private shares: number[] = [];
  private sharedFor = -1;

  constructor(opts: VirglDeviceOptions) {
    this.service = opts.service;
    this.component = opts.service.current;
    this.budget = opts.budget;
    this.memory = opts.memory;
    this.answers = opts.answers;
    this.isDeviceBlob = opts.isDeviceBlob ?? (() => false);
    this.scanouts = new VirglScanouts(this.component, opts.display, opts.claimScanout);
  }

  get capsets(): readonly VirglCapset[] {
    return this.component.capsets();
  }

  private arg(i: number): number {
    return this.rec[R_ARGS + i] >>> 0;
  }

  resource(id: number): VirglResource {
    const r = this.resources.get(id);
    if (r) return r;
    // virglrenderer never saw the device's blobs: refused as a parameter, not as an unknown id.
    if (this.isDeviceBlob(id)) throw new GpuError('param', `resource ${id} is a blob of the device, not a virgl resource`);
    throw new GpuError('resource', `resource ${id} does not exist`);
  }

  hasResource(id: number): boolean {
    return this.resources.has(id);
  }

  releaseScanout(id: number): boolean {
    return this.scanouts.release(id);
  }

  hasContext(id: number): boolean {
    return this.contexts.has(id);
  }

  contextResource(id: number): ContextResource {
    const res = this.resource(id);
    return { segs: res.backing ? res.backing.resolve(this.memory) : null, fd: -1, size: res.backing?.length ?? 0 };
  }

  /** The resources attached to context id. */
  private context(id: number): Set<number> {
    const c = this.contexts.get(id);
    if (!c) throw new GpuError('context', `context ${id} does not exist`);
    return c.resources;
  }

  /**
   * Execute a command in virgl mode. Returns the response length, a promise of it (flushes wait
   * for their readback), DEFERRED (answered when the library's result is known, or when its fence
   * signals), or null when the command is not a renderer command (the caller handles it).
   */
  execute(codec: Codec, type: number, queue: VirtQueue, contextInit: boolean): number | Promise<number> | null {
    this.follow();
    try {
      return this.dispatch(codec, type, queue, contextInit);
    } catch (e) {
      const rec = codec.rec;
      if (!(rec[R_FLAGS] & FLAG_FENCE) || !(e instanceof GpuError)) throw e;
      // The guest signals every fence up to this id on its answer: even a refusal waits for the
      // work before it (on the global timeline if the named context does not exist).
      log.guest(`${cmdName(type)}-${e.kind}`, `${cmdName(type)}: ${e.message}`);
      let timeline = this.timeline(rec, contextInit);
      if (!this.contexts.has(timeline)) timeline = 0;
      return this.fenced(codec, queue, timeline, null, respType(e));
    }
  }

  private timeline(rec: Int32Array, contextInit: boolean): number {
    // Per-context timelines only when CONTEXT_INIT was negotiated; otherwise the global one.
    return contextInit && rec[R_FLAGS] & FLAG_INFO_RING_IDX ? rec[R_CTX] >>> 0 : 0;
  }

  private dispatch(codec: Codec, type: number, queue: VirtQueue, contextInit: boolean): number | Promise<number> | null {
    const rec = (this.rec = codec.rec);
    // What the answer waits for: the library's result (0 or -errno), or a flush's display update.
    let done: Promise<number> | null = null;
    let flush = false;
    switch (type) {
      case Cmd.RESOURCE_CREATE_2D:
        // As QEMU: a 2D resource is a virgl 2D texture usable as a render target, top row first.
        done = this.create([this.arg(0), PIPE_TEXTURE_2D, this.arg(1), BIND_RENDER_TARGET, this.arg(2), this.arg(3), 1, 1, 0, 0, Y_0_TOP]);
        break;
      case Cmd.RESOURCE_CREATE_3D:
        done = this.create([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => this.arg(i)));
        break;
      case Cmd.RESOURCE_UNREF:
        this.unref(this.resource(this.arg(0)));
        break;
      case Cmd.RESOURCE_ATTACH_BACKING:
        done = this.attachBacking(codec, this.resource(this.arg(0)));
        break;
      case Cmd.RESOURCE_DETACH_BACKING: {
        const res = this.resource(this.arg(0));
        if (res.backing) this.component.detachBacking(res.id);
        this.setBacking(res, null);
        break;
      }
      case Cmd.TRANSFER_TO_HOST_2D: {
        const res = this.withBacking(this.arg(6));
        const b = this.box;
        b[0] = this.arg(0); b[1] = this.arg(1); b[2] = 0; b[3] = this.arg(2); b[4] = this.arg(3); b[5] = 1;
        const offset = this.arg(4) + this.arg(5) * 2 ** 32;
        checkTransfer(res, 0, b, 0, 0, offset);
        done = this.component.result(this.component.transferWrite(res.id, 0, 0, 0, 0, b, offset));
        break;
      }
      case Cmd.TRANSFER_TO_HOST_3D:
      case Cmd.TRANSFER_FROM_HOST_3D:
        done = this.transfer3d(type === Cmd.TRANSFER_TO_HOST_3D, rec[R_CTX] >>> 0);
        break;
      case Cmd.CTX_CREATE:
        done = this.createContext(codec, rec[R_CTX] >>> 0, contextInit);
        break;
      case Cmd.CTX_DESTROY:
        this.context(rec[R_CTX] >>> 0);
        this.destroyContext(rec[R_CTX] >>> 0);
        break;
      case Cmd.CTX_ATTACH_RESOURCE: {
        const ctx = this.context(rec[R_CTX] >>> 0), res = this.resource(this.arg(0));
        if (!ctx.has(res.id)) this.component.attachResource(rec[R_CTX] >>> 0, res.id);
        ctx.add(res.id);
        break;
      }
      case Cmd.CTX_DETACH_RESOURCE: {
        const ctx = this.context(rec[R_CTX] >>> 0), res = this.resource(this.arg(0));
        if (ctx.delete(res.id)) this.component.detachResource(rec[R_CTX] >>> 0, res.id);
        break;
      }
      case Cmd.SUBMIT_3D:
        done = this.submit(codec, rec[R_CTX] >>> 0);
        break;
      case Cmd.SET_SCANOUT: {
        const resId = this.arg(5);
        this.scanouts.set(this.arg(4), resId === 0 ? null : this.resource(resId), this.arg(0), this.arg(1), this.arg(2), this.arg(3));
        break;
      }
      case Cmd.RESOURCE_FLUSH:
        done = this.scanouts.flush(this.resource(this.arg(4)), this.arg(0), this.arg(1), this.arg(2), this.arg(3));
        flush = true;
        break;
      default:
        return null;
    }
    if (rec[R_FLAGS] & FLAG_FENCE) return this.fenced(codec, queue, this.timeline(rec, contextInit), done, 0);
    if (!done) return header(codec, Resp.OK_NODATA, rec[R_FLAGS], rec[R_FENCE_LO], rec[R_FENCE_HI], rec[R_CTX], rec[R_RING]);
    // An unfenced flush holds the queue until its update is out; other commands only their answer.
    if (flush) return done.then((st) => header(codec, statusResp(st), rec[R_FLAGS], rec[R_FENCE_LO], rec[R_FENCE_HI], rec[R_CTX], rec[R_RING]));
    return this.answerWhen(codec, queue, done);
  }

  /** Answer an unfenced command with the library's result once it is known (the queue goes on). */
  private answerWhen(codec: Codec, queue: VirtQueue, done: Promise<number>): number {
    const r = codec.rec;
    const flags = r[R_FLAGS], lo = r[R_FENCE_LO], hi = r[R_FENCE_HI], ctx = r[R_CTX], ring = r[R_RING];
    const complete = queue.defer();
    void done.then((st) => complete((c) => header(c, statusResp(st), flags, lo, hi, ctx, ring)));
    return DEFERRED;
  }

  /** Answer later, when everything enqueued so far is done (header fields captured now). */
  private fenced(codec: Codec, queue: VirtQueue, timeline: number, done: Promise<number> | null, refused: number): number {
    const r = codec.rec;
    const flags = r[R_FLAGS], lo = r[R_FENCE_LO], hi = r[R_FENCE_HI], ctx = r[R_CTX], ring = r[R_RING];
    const complete = queue.defer();
    const fence = this.component.fence(timeline);
    // A flush's display update may finish after a later fence: the answers are chained per timeline.
    const order = timeline === 0 ? GLOBAL_TIMELINE : answerTimeline(timeline, WHOLE_CONTEXT);
    this.answers.after(order, Promise.all([fence, done ?? 0]), ([status, result]) => {
      if (status < 0) log.warn(`virgl: fence on timeline ${timeline} did not signal (${status})`);
      const type = refused || (result < 0 ? statusResp(result) : status < 0 ? Resp.ERR_UNSPEC : Resp.OK_NODATA);
      complete((c) => header(c, type, flags, lo, hi, ctx, ring));
    });
    return DEFERRED;
  }

  /**
   * args: handle, target, format, bind, width, height, depth, array_size, last_level, nr_samples,
   * flags. Returns the library's result; a resource it refused is forgotten here too.
   */
  private create(args: number[]): Promise<number> {
    const [id, target, format, , width, height, depth, arraySize, lastLevel] = args;
    if (id === 0) throw new GpuError('resource', 'resource id 0 is reserved');
    if (this.resources.has(id) || this.isDeviceBlob(id)) throw new GpuError('resource', `resource ${id} already exists`);
    if (target > PIPE_MAX_TARGET) throw new GpuError('param', `resource target ${target} unknown`);
    if (!isVirglFormat(format)) throw new GpuError('param', `resource ${id}: format ${format} unknown`);
    if (width === 0 || width > (target === 0 ? 2 ** 31 : MAX_DIMENSION) || height > MAX_DIMENSION || depth > MAX_DIMENSION
      || arraySize > MAX_DIMENSION || lastLevel > 15 || height === 0 || depth === 0 || arraySize === 0) {
      throw new GpuError('param', `resource ${id}: bad size ${width}x${height}x${depth} array ${arraySize} levels ${lastLevel}`);
    }
    // Host memory the renderer may hold for it (4 bytes per texel, mips not counted): bounded like 2D.
    const charge = (target === 0 ? width : width * height * depth * arraySize * 4) + RESOURCE_OVERHEAD;
    this.budget.reserve(charge, 'resource', id);
    const result = this.component.result(this.component.createResource(args));
    const res: VirglResource = {
      args, id, format, width, height, depth, arraySize, lastLevel, yTop: (args[10] & Y_0_TOP) !== 0, target, backing: null, charge, uuid: null,
    };
    this.resources.set(id, res);
    return result.then((st) => {
      if (st < 0 && this.resources.get(id) === res) this.forget(res);
      return st;
    });
  }

  private unref(res: VirglResource): void {
    this.forget(res);
    this.component.unrefResource(res.id);
  }

  /** Drop a resource from the coordinator's tables (the caller releases it in the library). */
  private forget(res: VirglResource): void {
    this.scanouts.detach(res);
    for (const [ctxId, c] of this.contexts) if (c.resources.delete(res.id)) this.component.detachResource(ctxId, res.id);
    this.setBacking(res, null);
    this.budget.release(res.charge);
    this.resources.delete(res.id);
  }

  private setBacking(res: VirglResource, b: Backing | null): void {
    if (res.backing) this.budget.release(res.backing.entryCount * ENTRY_OVERHEAD);
    res.backing = b;
  }

  /** Returns the library's result; a backing it refused is dropped here too. */
  private attachBacking(codec: Codec, res: VirglResource): Promise<number> {
    if (res.backing) throw new GpuError('unspec', `resource ${res.id} already has backing`);
    const n = codec.rec[R_NENTRIES];
    if (n > MAX_BACKING_ENTRIES) throw new GpuError('param', `${n} backing entries (max ${MAX_BACKING_ENTRIES})`);
    const b = Backing.fromRequest(codec);
    const segs = b.resolve(this.memory);
    this.budget.reserve(n * ENTRY_OVERHEAD, 'backing of resource', res.id);
    res.backing = b;
    this.unshare(this.shareMemory()); // no backing was attached in the old memory, or memoryChanged would have run
    return this.component.result(this.component.attachBacking(res.id, segs)).then((st) => {
      if (st < 0 && res.backing === b) this.setBacking(res, null);
      return st;
    });
  }

  private withBacking(id: number): VirglResource {
    const res = this.resource(id);
    if (!res.backing) throw new GpuError('unspec', `resource ${id} has no backing`);
    return res;
  }

  private transfer3d(toHost: boolean, ctxId: number): Promise<number> {
    // transfer_host_3d: box(6) @0, offset u64 @6, resource_id @8, level @9, stride @10, layer_stride @11.
    const res = this.withBacking(this.arg(8));
    // virglrenderer looks the resource up in the named context: it must be attached there.
    if (ctxId !== 0 && !this.context(ctxId).has(res.id)) throw new GpuError('resource', `resource ${res.id} is not attached to context ${ctxId}`);
    const b = this.box;
    for (let i = 0; i < 6; i++) b[i] = this.arg(i);
    const offset = this.arg(6) + this.arg(7) * 2 ** 32;
    const [level, stride, layerStride] = [this.arg(9), this.arg(10), this.arg(11)];
    checkTransfer(res, level, b, stride, layerStride, offset);
    const tag = toHost
      ? this.component.transferWrite(res.id, ctxId, level, stride, layerStride, b, offset)
      : this.component.transferRead(res.id, ctxId, level, stride, layerStride, b, offset);
    return this.component.result(tag);
  }

  /** The library's result; a refused context stays known here (the registry mirrors it) until CTX_DESTROY. */
  private createContext(codec: Codec, ctxId: number, contextInit: boolean): Promise<number> {
    if (ctxId === 0) throw new GpuError('context', 'context id 0 is reserved');
    if (this.contexts.has(ctxId)) throw new GpuError('context', `context ${ctxId} already exists`);
    const nlen = Math.min(this.arg(0), 64);
    let capsetId = contextInit ? this.arg(1) & 0xff : 0;
    if (capsetId === 0) capsetId = this.capsets[0]?.id ?? 1; // default type: the first offered capset
    if (!this.capsets.some((c) => c.id === capsetId)) throw new GpuError('param', `context ${ctxId}: capset ${capsetId} is not offered`);
    const nameBytes = codec.req.subarray(HDR_SIZE + 8, HDR_SIZE + 8 + Math.min(nlen, codec.rec[R_RLEN] - HDR_SIZE - 8));
    const name = new TextDecoder().decode(nameBytes).replace(/\0.*$/, '');
    const tag = this.component.createContext(ctxId, capsetId, name);
    this.contexts.set(ctxId, { capsetId, name, resources: new Set() });
    return this.component.result(tag);
  }

  private destroyContext(ctxId: number): void {
    this.component.destroyContext(ctxId);
    this.contexts.delete(ctxId);
  }

  private submit(codec: Codec, ctxId: number): Promise<number> | null {
    this.context(ctxId);
    const size = this.arg(0);
    if (size > MAX_SUBMIT_BYTES) throw new GpuError('param', `SUBMIT_3D of ${size} bytes (max ${MAX_SUBMIT_BYTES})`);
    if (SUBMIT_DATA + size > (codec.rec[R_RLEN] >>> 0)) throw new GpuError('param', `SUBMIT_3D of ${size} bytes but the request has ${codec.rec[R_RLEN] >>> 0}`);
    if (size === 0) return null;
    return this.component.result(this.component.submitWith(ctxId, size, (dst, dstOff, srcOff, len) => {
      if (codec.copyReadable(SUBMIT_DATA + srcOff, dst, dstOff, len) !== len) throw new Error('submit: chain shorter than announced');
    }));
  }

  /**
   * The memory table changed: virglrenderer holds host addresses of the old mappings, so every
   * backing is attached again at its new addresses (after the work already enqueued), or dropped
   * if it is no longer guest memory.
   */
  cursor(resourceId: number, scanout: number, x: number, y: number, hotX: number, hotY: number): void {
    this.follow();
    this.scanouts.cursor(this.resource(resourceId), scanout, x, y, hotX, hotY);
  }

  memoryChanged(): void {
    this.follow();
    const old = this.shareMemory();
    for (const res of this.resources.values()) {
      if (!res.backing) continue;
      this.component.detachBacking(res.id);
      try {
        this.component.attachBacking(res.id, res.backing.resolve(this.memory));
      } catch (e) {
        log.guest('backing-gone', `resource ${res.id}: ${(e as Error).message}; backing dropped`);
        this.setBacking(res, null);
      }
    }
    this.unshare(old); // after the re-attaches: the server keeps what a backing still uses anyway
  }

  /** Move to the service's current render server if ours died and a new one is up. */
  private follow(): void {
    const next = this.service.current;
    if (next !== this.component && !next.lost) this.adopt(next);
  }

  /**
   * Our render server died and the service started the next one: create every context and
   * resource there again, with its backing and attachments, so the guest's ids stay valid and
   * guest-backed resources come back with their next transfer (the console does). What lived
   * only in the dead server (texture contents, a context's GL objects) is gone, as after a GPU
   * reset; commands in flight when it died were answered with errors.
   */
  private adopt(next: VirglComponent): void {
    this.component = next;
    this.scanouts.use(next);
    this.shares = [];
    this.sharedFor = -1;
    this.shareMemory(); // the shares of the dead server went with it: nothing to unshare
    for (const [id, c] of this.contexts) next.createContext(id, c.capsetId, c.name);
    for (const res of this.resources.values()) {
      next.createResource(res.args);
      if (!res.backing) continue;
      try {
        next.attachBacking(res.id, res.backing.resolve(this.memory));
      } catch (e) {
        log.guest('backing-gone', `resource ${res.id}: ${(e as Error).message}; backing dropped`);
        this.setBacking(res, null);
      }
    }
    for (const [ctx, c] of this.contexts) for (const id of c.resources) next.attachResource(ctx, id);
    log.warn(`virgl: ${this.contexts.size} contexts and ${this.resources.size} resources created again on the new render server`);
  }

  /**
   * Share the current guest memory with the render server (backings can only point into shared
   * memory). Returns the shares of the memory before, for the caller to unshare.
   */
  private shareMemory(): number[] {
    if (this.sharedFor === this.memory.generation) return [];
    const old = this.shares;
    this.shares = [];
    for (const m of this.memory.mappings()) {
      const s = this.component.shareMemory(m.fd, m.addr, m.len);
      if (s) this.shares.push(s[0]);
      else log.error(`virgl: cannot share guest memory at 0x${m.addr.toString(16)} with the render server; backings there will fail`);
    }
    this.sharedFor = this.memory.generation;
    return old;
  }

  private unshare(ids: readonly number[]): void {
    for (const id of ids) this.component.unshareMemory(id);
  }

  /** Forget everything (device reset or the session ended): the server's objects are released too. */
  reset(): void {
    this.scanouts.reset();
    for (const id of [...this.contexts.keys()]) this.destroyContext(id);
    for (const res of [...this.resources.values()]) this.unref(res);
    this.unshare(this.shares);
    this.shares = [];
    this.sharedFor = -1;
  }
}

/** The answer to a command the library returned `status` for (0 or -errno). */
function statusResp(status: number): number {
  if (status >= 0) return Resp.OK_NODATA;
  return status === EINVAL ? Resp.ERR_INVALID_PARAMETER : status === ENOMEM ? Resp.ERR_OUT_OF_MEMORY : Resp.ERR_UNSPEC;
}

const minify = (size: number, level: number): number => Math.max(1, Math.floor(size / 2 ** level));

/**
 * A transfer's checks as virglrenderer makes them (check_transfer_bounds, check_iov_bounds), but
 * in exact arithmetic where it wraps at 32 bits: the level exists, the box lies inside it, strides
 * cover a row/layer of the box, and the bytes the box spans from `offset` lie inside the backing.
 * Formats without a block size here are left to the library but for the offset.
 */
function checkTransfer(res: VirglResource, level: number, box: readonly number[], stride: number, layerStride: number, offset: number): void {
  const what = `transfer of resource ${res.id}`;
  if (level > res.lastLevel) throw new GpuError('param', `${what}: level ${level} beyond its last level ${res.lastLevel}`);
  const [x, y, z, w, h, d] = box;
  const lw = minify(res.width, level), lh = minify(res.height, level);
  const ld = res.target === PIPE_TEXTURE_3D ? minify(res.depth, level) : LAYERED_TARGETS.has(res.target) ? res.arraySize : 1;
  if (x + w > lw || y + h > lh || z + d > ld) {
    throw new GpuError('param', `${what}: box ${w}x${h}x${d}+${x}+${y}+${z} outside level ${level} (${lw}x${lh}x${ld})`);
  }
  const length = res.backing!.length;
  const block = formatBlock(res.format);
  if (!block) {
    if (offset >= length) throw new GpuError('param', `${what}: offset ${offset} beyond the backing (${length} bytes)`);
    return;
  }
  const blocksX = (n: number) => Math.ceil(n / block.width), blocksY = (n: number) => Math.ceil(n / block.height);
  const minStride = blocksX(w) * block.bytes;
  if (stride !== 0 && stride < minStride) throw new GpuError('param', `${what}: stride ${stride} below a row of the box (${minStride})`);
  const rowStride = stride || blocksX(lw) * block.bytes;
  const minLayer = rowStride * blocksY(h);
  if (layerStride !== 0 && layerStride < minLayer) throw new GpuError('param', `${what}: layer stride ${layerStride} below a layer of the box (${minLayer})`);
  const layer = layerStride || rowStride * blocksY(lh);
  // An empty box still spans one block, as virglrenderer counts it.
  const size = (Math.max(d, 1) - 1) * layer + (blocksY(Math.max(h, 1)) - 1) * rowStride + blocksX(Math.max(w, 1)) * block.bytes;
  if (offset + size > length) throw new GpuError('param', `${what}: ${size} bytes at offset ${offset} exceed the backing (${length} bytes)`);
}
