/**
 * The virglrenderer side of the device (--gpu-mode virglrenderer): every resource is a virgl
 * resource and every context a virgl context, owned by the VirglComponent's worker. All ids are
 * validated here on the coordinator, so nothing the guest names reaches the worker unchecked.
 * Fenced commands are answered when the component's fence for their timeline signals (the queue
 * goes on meanwhile); unfenced 3D commands are answered at once, as QEMU does.
 */
import type { Renderer } from '../../device/renderer.js';
import type { ContextResource } from '../../device/contexts.js';
import type { Codec } from '../../queues/codec.js';
import { DEFERRED, type VirtQueue } from '../../queues/virtqueue.js';
import { R_ARGS, R_CTX, R_FENCE_HI, R_FENCE_LO, R_FLAGS, R_NENTRIES, R_RING, R_RLEN } from '../../queues/layout.js';
import type { VirglComponent, VirglCapset } from './component.js';
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
import { checkRectInside } from '../../device/scanouts.js';

/** Largest SUBMIT_3D command stream accepted. */
export const MAX_SUBMIT_BYTES = 4 << 20;
const MAX_BACKING_ENTRIES = 16384;
const RESOURCE_OVERHEAD = 512;
const PIPE_TEXTURE_2D = 2;
const PIPE_MAX_TARGET = 8; // PIPE_BUFFER 0 .. PIPE_TEXTURE_CUBE_ARRAY 8
const BIND_RENDER_TARGET = 1 << 1;
const Y_0_TOP = 1;
const SUBMIT_DATA = HDR_SIZE + 8;

export interface VirglDeviceOptions {
  component: VirglComponent;
  budget: HostMemoryBudget;
  memory: GuestAccess;
  display: DisplaySink;
  /** The device's answer order, shared with every other context type. */
  answers: AnswerOrder;
}

/** virglrenderer behind the device: coordinator-side state and validation, work in the worker. */
export class VirglDevice implements Renderer {
  private readonly component: VirglComponent;
  private readonly budget: HostMemoryBudget;
  private readonly memory: GuestAccess;
  private readonly resources = new Map<number, VirglResource>();
  /** Context id -> resources attached to it. */
  private readonly contexts = new Map<number, Set<number>>();
  readonly scanouts: VirglScanouts;
  private readonly box = [0, 0, 0, 0, 0, 0];
  private rec: Int32Array = new Int32Array(0);
  private readonly answers: AnswerOrder;

  constructor(opts: VirglDeviceOptions) {
    this.component = opts.component;
    this.budget = opts.budget;
    this.memory = opts.memory;
    this.answers = opts.answers;
    this.scanouts = new VirglScanouts(opts.component, opts.display);
  }

  get capsets(): readonly VirglCapset[] {
    return this.component.capsets();
  }

  private arg(i: number): number {
    return this.rec[R_ARGS + i] >>> 0;
  }

  resource(id: number): VirglResource {
    const r = this.resources.get(id);
    if (!r) throw new GpuError('resource', `resource ${id} does not exist`);
    return r;
  }

  hasContext(id: number): boolean {
    return this.contexts.has(id);
  }

  contextResource(id: number): ContextResource {
    const res = this.resource(id);
    return { segs: res.backing ? res.backing.resolve(this.memory) : null, fd: -1, size: res.backing?.length ?? 0 };
  }

  private context(id: number): Set<number> {
    const c = this.contexts.get(id);
    if (!c) throw new GpuError('context', `context ${id} does not exist`);
    return c;
  }

  /**
   * Execute a command in virgl mode. Returns the response length, a promise of it (flushes wait
   * for their readback), DEFERRED (fenced: answered when its fence signals), or null when the
   * command is not a renderer command (the caller handles it).
   */
  execute(codec: Codec, type: number, queue: VirtQueue, contextInit: boolean): number | Promise<number> | null {
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
    let pending: Promise<number> | null = null;
    switch (type) {
      case Cmd.RESOURCE_CREATE_2D:
        // As QEMU: a 2D resource is a virgl 2D texture usable as a render target, top row first.
        this.create([this.arg(0), PIPE_TEXTURE_2D, this.arg(1), BIND_RENDER_TARGET, this.arg(2), this.arg(3), 1, 1, 0, 0, Y_0_TOP]);
        break;
      case Cmd.RESOURCE_CREATE_3D:
        this.create([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => this.arg(i)));
        break;
      case Cmd.RESOURCE_UNREF:
        this.unref(this.resource(this.arg(0)));
        break;
      case Cmd.RESOURCE_ATTACH_BACKING:
        this.attachBacking(codec, this.resource(this.arg(0)));
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
        checkRectInside('transfer', { x: b[0], y: b[1], width: b[3], height: b[4] }, res.width, res.height);
        this.component.transferWrite(res.id, 0, 0, 0, 0, b, this.arg(4) + this.arg(5) * 2 ** 32);
        break;
      }
      case Cmd.TRANSFER_TO_HOST_3D:
      case Cmd.TRANSFER_FROM_HOST_3D:
        this.transfer3d(type === Cmd.TRANSFER_TO_HOST_3D, rec[R_CTX] >>> 0);
        break;
      case Cmd.CTX_CREATE:
        this.createContext(codec, rec[R_CTX] >>> 0, contextInit);
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
        this.submit(codec, rec[R_CTX] >>> 0);
        break;
      case Cmd.SET_SCANOUT: {
        const resId = this.arg(5);
        this.scanouts.set(this.arg(4), resId === 0 ? null : this.resource(resId), this.arg(0), this.arg(1), this.arg(2), this.arg(3));
        break;
      }
      case Cmd.RESOURCE_FLUSH:
        pending = this.scanouts.flush(this.resource(this.arg(4)), this.arg(0), this.arg(1), this.arg(2), this.arg(3));
        break;
      default:
        return null;
    }
    if (rec[R_FLAGS] & FLAG_FENCE) return this.fenced(codec, queue, this.timeline(rec, contextInit), pending, 0);
    if (pending) return pending.then(() => header(codec, Resp.OK_NODATA, rec[R_FLAGS], rec[R_FENCE_LO], rec[R_FENCE_HI], rec[R_CTX], rec[R_RING]));
    return header(codec, Resp.OK_NODATA, rec[R_FLAGS], rec[R_FENCE_LO], rec[R_FENCE_HI], rec[R_CTX], rec[R_RING]);
  }

  /** Answer later, when everything enqueued so far is done (header fields captured now). */
  private fenced(codec: Codec, queue: VirtQueue, timeline: number, pending: Promise<number> | null, refused: number): number {
    const r = codec.rec;
    const flags = r[R_FLAGS], lo = r[R_FENCE_LO], hi = r[R_FENCE_HI], ctx = r[R_CTX], ring = r[R_RING];
    const complete = queue.defer();
    const fence = this.component.fence(timeline);
    // A flush's display update may finish after a later fence: the answers are chained per timeline.
    const order = timeline === 0 ? GLOBAL_TIMELINE : answerTimeline(timeline, WHOLE_CONTEXT);
    this.answers.after(order, Promise.all([fence, pending ?? 0]), ([status, flushed]) => {
      if (status < 0) log.warn(`virgl: fence on timeline ${timeline} did not signal (${status})`);
      const ok = status >= 0 && flushed >= 0;
      complete((c) => header(c, refused || (ok ? Resp.OK_NODATA : Resp.ERR_UNSPEC), flags, lo, hi, ctx, ring));
    });
    return DEFERRED;
  }

  /** args: handle, target, format, bind, width, height, depth, array_size, last_level, nr_samples, flags. */
  private create(args: number[]): void {
    const [id, target, , , width, height, depth, arraySize, lastLevel] = args;
    if (id === 0) throw new GpuError('resource', 'resource id 0 is reserved');
    if (this.resources.has(id)) throw new GpuError('resource', `resource ${id} already exists`);
    if (target > PIPE_MAX_TARGET) throw new GpuError('param', `resource target ${target} unknown`);
    if (width === 0 || width > (target === 0 ? 2 ** 31 : MAX_DIMENSION) || height > MAX_DIMENSION || depth > MAX_DIMENSION
      || arraySize > MAX_DIMENSION || lastLevel > 15 || height === 0 || depth === 0 || arraySize === 0) {
      throw new GpuError('param', `resource ${id}: bad size ${width}x${height}x${depth} array ${arraySize} levels ${lastLevel}`);
    }
    // Host memory the renderer may hold for it (4 bytes per texel, mips not counted): bounded like 2D.
    const charge = (target === 0 ? width : width * height * depth * arraySize * 4) + RESOURCE_OVERHEAD;
    this.budget.reserve(charge, 'resource', id);
    this.component.createResource(args);
    this.resources.set(id, { id, format: args[2], width, height, yTop: (args[10] & Y_0_TOP) !== 0, target, backing: null, charge, uuid: null });
  }

  private unref(res: VirglResource): void {
    this.scanouts.detach(res);
    for (const [ctxId, set] of this.contexts) if (set.delete(res.id)) this.component.detachResource(ctxId, res.id);
    this.component.unrefResource(res.id);
    this.setBacking(res, null);
    this.budget.release(res.charge);
    this.resources.delete(res.id);
  }

  private setBacking(res: VirglResource, b: Backing | null): void {
    if (res.backing) this.budget.release(res.backing.entryCount * ENTRY_OVERHEAD);
    res.backing = b;
  }

  private attachBacking(codec: Codec, res: VirglResource): void {
    if (res.backing) throw new GpuError('unspec', `resource ${res.id} already has backing`);
    const n = codec.rec[R_NENTRIES];
    if (n > MAX_BACKING_ENTRIES) throw new GpuError('param', `${n} backing entries (max ${MAX_BACKING_ENTRIES})`);
    const b = Backing.fromRequest(codec);
    const segs = b.resolve(this.memory);
    this.budget.reserve(n * ENTRY_OVERHEAD, 'backing of resource', res.id);
    res.backing = b;
    this.component.attachBacking(res.id, segs);
  }

  private withBacking(id: number): VirglResource {
    const res = this.resource(id);
    if (!res.backing) throw new GpuError('unspec', `resource ${id} has no backing`);
    return res;
  }

  private transfer3d(toHost: boolean, ctxId: number): void {
    // transfer_host_3d: box(6) @0, offset u64 @6, resource_id @8, level @9, stride @10, layer_stride @11.
    const res = this.withBacking(this.arg(8));
    if (ctxId !== 0) this.context(ctxId);
    const b = this.box;
    for (let i = 0; i < 6; i++) b[i] = this.arg(i);
    const offset = this.arg(6) + this.arg(7) * 2 ** 32;
    if (offset >= res.backing!.length && b[3] * b[4] * b[5] !== 0) throw new GpuError('param', `transfer offset ${offset} beyond the backing`);
    if (toHost) this.component.transferWrite(res.id, ctxId, this.arg(9), this.arg(10), this.arg(11), b, offset);
    else this.component.transferRead(res.id, ctxId, this.arg(9), this.arg(10), this.arg(11), b, offset);
  }

  private createContext(codec: Codec, ctxId: number, contextInit: boolean): void {
    if (ctxId === 0) throw new GpuError('context', 'context id 0 is reserved');
    if (this.contexts.has(ctxId)) throw new GpuError('context', `context ${ctxId} already exists`);
    const nlen = Math.min(this.arg(0), 64);
    let capsetId = contextInit ? this.arg(1) & 0xff : 0;
    if (capsetId === 0) capsetId = this.capsets[0]?.id ?? 1; // default type: the first offered capset
    if (!this.capsets.some((c) => c.id === capsetId)) throw new GpuError('param', `context ${ctxId}: capset ${capsetId} is not offered`);
    const nameBytes = codec.req.subarray(HDR_SIZE + 8, HDR_SIZE + 8 + Math.min(nlen, codec.rec[R_RLEN] - HDR_SIZE - 8));
    const name = new TextDecoder().decode(nameBytes).replace(/\0.*$/, '');
    this.component.createContext(ctxId, capsetId, name);
    this.contexts.set(ctxId, new Set());
  }

  private destroyContext(ctxId: number): void {
    this.component.destroyContext(ctxId);
    this.contexts.delete(ctxId);
  }

  private submit(codec: Codec, ctxId: number): void {
    this.context(ctxId);
    const size = this.arg(0);
    if (size > MAX_SUBMIT_BYTES) throw new GpuError('param', `SUBMIT_3D of ${size} bytes (max ${MAX_SUBMIT_BYTES})`);
    if (SUBMIT_DATA + size > (codec.rec[R_RLEN] >>> 0)) throw new GpuError('param', `SUBMIT_3D of ${size} bytes but the request has ${codec.rec[R_RLEN] >>> 0}`);
    if (size === 0) return;
    this.component.submitWith(ctxId, size, (dst, dstOff, srcOff, len) => {
      if (codec.copyReadable(SUBMIT_DATA + srcOff, dst, dstOff, len) !== len) throw new Error('submit: chain shorter than announced');
    });
  }

  /**
   * The memory table changed: virglrenderer holds host addresses of the old mappings, so every
   * backing is attached again at its new addresses (after the work already enqueued), or dropped
   * if it is no longer guest memory.
   */
  cursor(resourceId: number, scanout: number, x: number, y: number, hotX: number, hotY: number): void {
    this.scanouts.cursor(this.resource(resourceId), scanout, x, y, hotX, hotY);
  }

  memoryChanged(): void {
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
  }

  /** Forget everything (device reset or the session ended): the worker's objects are released too. */
  reset(): void {
    this.scanouts.reset();
    for (const id of [...this.contexts.keys()]) this.destroyContext(id);
    for (const res of [...this.resources.values()]) this.unref(res);
  }
}
