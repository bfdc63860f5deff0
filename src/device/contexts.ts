/**
 * The context registry: every 3D context the guest created, whatever renderer runs it. CTX_CREATE
 * picks the renderer by capset id (the capset table, renderers/capsets.ts); contexts of a type
 * that runs one context per worker (cross-domain, ...) are executed here through their
 * WorkerContextHost; virgl contexts are handed to the virgl renderer, which keeps all of them in
 * one worker. The registry alone decides which ids exist and enforces --max-contexts and the
 * host memory charged per context.
 */
import type { Codec } from '../queues/codec.js';
import { DEFERRED, type VirtQueue } from '../queues/virtqueue.js';
import { R_ARGS, R_CTX, R_FENCE_HI, R_FENCE_LO, R_FLAGS, R_RING, R_RLEN } from '../queues/layout.js';
import { log } from '../log.js';
import type { HostBlob } from '../renderers/worker-context/context-api.js';
import { ContextRefusal, CONTEXT_CHARGE, type WorkerContextHost, type WorkerContexts, type WorkerContextType } from '../renderers/worker-context/host.js';
import { GLOBAL_RING, MAX_RINGS } from '../renderers/worker-context/protocol.js';
import { AnswerOrder, GLOBAL_TIMELINE, timeline } from './answer-order.js';
import { GpuError, respType } from './errors.js';
import { Cmd, Resp, HDR_SIZE, FLAG_FENCE, FLAG_INFO_RING_IDX, cmdName } from './protocol.js';
import type { HostMemoryBudget } from './resources.js';
import type { Renderer } from './renderer.js';
import { header } from './responses.js';

/** A capset the device offers, and who runs contexts of it. */
export interface OfferedCapset {
  readonly id: number;
  readonly name: string;
  readonly maxVersion: number;
  readonly maxSize: number;
  readonly data: Uint8Array;
  /** 'renderer': the device's renderer (virgl) runs these contexts; else one worker per context. */
  readonly runner: 'renderer' | WorkerContextType;
}

/** What a context sees of a resource attached to it. */
export interface ContextResource {
  /** Guest memory as [hostAddr, len] pairs, or null (no guest memory). */
  readonly segs: Float64Array | null;
  /** Host memory (host3d blobs), or -1. */
  readonly fd: number;
  readonly size: number;
}

export interface ContextRegistryOptions {
  readonly capsets: readonly OfferedCapset[];
  readonly workers: WorkerContexts | null;
  readonly budget: HostMemoryBudget;
  readonly maxContexts: number;
  /** A resource by id as a context sees it; throws GpuError('resource') if unknown. */
  readonly resource: (id: number) => ContextResource;
  /** The renderer running 'renderer' contexts (virgl), if any. */
  readonly renderer: Renderer | null;
  /** Shared with the renderer: answers of one timeline leave in order. */
  readonly answers: AnswerOrder;
}

interface WorkerEntry {
  readonly host: WorkerContextHost;
  readonly attached: Set<number>;
}

export const MAX_DEBUG_NAME = 64;
const SUBMIT_DATA = HDR_SIZE + 8;

export class ContextRegistry {
  private readonly workerCtx = new Map<number, WorkerEntry>();
  private readonly rendererCtx = new Set<number>();

  constructor(private readonly o: ContextRegistryOptions) {}

  get count(): number {
    return this.workerCtx.size + this.rendererCtx.size;
  }

  /** Whether `type` concerns contexts (and so goes through the registry first). */
  static routes(type: number): boolean {
    return type === Cmd.CTX_CREATE || type === Cmd.CTX_DESTROY || type === Cmd.CTX_ATTACH_RESOURCE
      || type === Cmd.CTX_DETACH_RESOURCE || type === Cmd.SUBMIT_3D;
  }

  /**
   * Execute a context command. Returns a response length, DEFERRED (fenced: answered when the
   * context's fence signals), or null: the command belongs to the renderer (a virgl context).
   */
  execute(codec: Codec, type: number, queue: VirtQueue, contextInit: boolean): number | null {
    const rec = codec.rec;
    const ctxId = rec[R_CTX] >>> 0;
    let entry: WorkerEntry | undefined;
    let status: number = Resp.OK_NODATA;
    try {
      if (type === Cmd.CTX_CREATE) {
        const r = this.create(codec, ctxId, contextInit, queue);
        if (r !== undefined) return r;
        entry = this.workerCtx.get(ctxId);
      } else {
        entry = this.workerCtx.get(ctxId);
        if (!entry) {
          if (this.rendererCtx.has(ctxId)) return this.toRenderer(codec, type, queue, contextInit, ctxId);
          throw new GpuError('context', `context ${ctxId} does not exist`);
        }
        this.onWorker(codec, type, entry, ctxId);
      }
    } catch (e) {
      if (!(e instanceof GpuError)) throw e;
      log.guest(`${cmdName(type)}-${e.kind}`, `${cmdName(type)}: ${e.message}`);
      status = respType(e);
      if (!(rec[R_FLAGS] & FLAG_FENCE)) return header(codec, status, rec[R_FLAGS], rec[R_FENCE_LO], rec[R_FENCE_HI], rec[R_CTX], rec[R_RING]);
    }
    if (!(rec[R_FLAGS] & FLAG_FENCE)) return header(codec, status, rec[R_FLAGS], rec[R_FENCE_LO], rec[R_FENCE_HI], rec[R_CTX], rec[R_RING]);
    return this.fenced(codec, queue, contextInit, entry ?? this.workerCtx.get(ctxId), status);
  }

  /**
   * A fenced command: answered once everything the context was given before it is done (its
   * fence on the command's ring, or on all rings for the global timeline), in timeline order.
   */
  fenced(codec: Codec, queue: VirtQueue, contextInit: boolean, entry: WorkerEntry | undefined, status: number): number {
    const r = codec.rec;
    const flags = r[R_FLAGS], lo = r[R_FENCE_LO], hi = r[R_FENCE_HI], ctx = r[R_CTX], ringIdx = r[R_RING] & 0xff;
    const perRing = contextInit && (flags & FLAG_INFO_RING_IDX) !== 0;
    if (perRing && ringIdx >= MAX_RINGS && status === Resp.OK_NODATA) {
      log.guest('ring-idx', `ring_idx ${ringIdx} out of range (max ${MAX_RINGS - 1})`);
      status = Resp.ERR_INVALID_PARAMETER;
    }
    const ring = perRing && ringIdx < MAX_RINGS ? ringIdx : GLOBAL_RING;
    const t = perRing && entry ? timeline(ctx >>> 0, ring) : GLOBAL_TIMELINE;
    const fenceId = BigInt(hi >>> 0) << 32n | BigInt(lo >>> 0);
    const ready = entry ? entry.host.fence(ring, fenceId) : Promise.resolve(0);
    const complete = queue.defer();
    this.o.answers.after(t, ready, (fenceStatus) => {
      const type = status !== Resp.OK_NODATA ? status : fenceStatus === 0 ? Resp.OK_NODATA : Resp.ERR_UNSPEC;
      complete((c) => header(c, type, flags, lo, hi, ctx, ringIdx));
    });
    return DEFERRED;
  }

  /** CTX_CREATE: undefined when a worker context was made (the caller answers), else the renderer's answer. */
  private create(codec: Codec, ctxId: number, contextInit: boolean, queue: VirtQueue): number | undefined {
    if (ctxId === 0) throw new GpuError('context', 'context id 0 is reserved');
    if (this.workerCtx.has(ctxId) || this.rendererCtx.has(ctxId)) throw new GpuError('context', `context ${ctxId} already exists`);
    const arg1 = codec.rec[R_ARGS + 1] >>> 0;
    let capsetId = contextInit ? arg1 & 0xff : 0;
    // The default type (0, or no CONTEXT_INIT) is the first capset offered, as in QEMU and crosvm.
    if (capsetId === 0) capsetId = this.o.capsets[0]?.id ?? 0;
    const cap = this.o.capsets.find((c) => c.id === capsetId);
    if (!cap) throw new GpuError('param', `context ${ctxId}: capset ${capsetId} is not offered`);
    if (this.count >= this.o.maxContexts) throw new GpuError('oom', `context ${ctxId}: ${this.count} contexts exist (--max-contexts ${this.o.maxContexts})`);
    if (cap.runner === 'renderer') {
      const r = this.o.renderer!.execute(codec, Cmd.CTX_CREATE, queue, contextInit);
      if (this.o.renderer!.hasContext(ctxId)) this.rendererCtx.add(ctxId);
      return r as number;
    }
    if (!this.o.workers) throw new GpuError('unspec', `context ${ctxId}: no worker pool`);
    this.o.budget.reserve(CONTEXT_CHARGE, 'context', ctxId);
    let host: WorkerContextHost;
    try {
      host = this.o.workers.start(cap.runner, ctxId, capsetId, this.debugName(codec), (reason) =>
        log.guest('ctx-lost', `context ${ctxId} (${cap.name}) lost: ${reason}; its commands now fail`));
    } catch (e) {
      this.o.budget.release(CONTEXT_CHARGE);
      throw e instanceof ContextRefusal ? new GpuError(e.kind, e.message) : e;
    }
    this.workerCtx.set(ctxId, { host, attached: new Set() });
    return undefined;
  }

  private debugName(codec: Codec): string {
    const nlen = Math.min(codec.rec[R_ARGS] >>> 0, MAX_DEBUG_NAME);
    const avail = Math.max(0, (codec.rec[R_RLEN] >>> 0) - HDR_SIZE - 8);
    const bytes = codec.req.subarray(HDR_SIZE + 8, HDR_SIZE + 8 + Math.min(nlen, avail));
    return new TextDecoder().decode(bytes).replace(/\0.*$/s, '');
  }

  private toRenderer(codec: Codec, type: number, queue: VirtQueue, contextInit: boolean, ctxId: number): number {
    const r = this.o.renderer!.execute(codec, type, queue, contextInit) as number;
    if (type === Cmd.CTX_DESTROY && !this.o.renderer!.hasContext(ctxId)) this.rendererCtx.delete(ctxId);
    return r;
  }

  private onWorker(codec: Codec, type: number, entry: WorkerEntry, ctxId: number): void {
    const host = entry.host;
    const arg0 = codec.rec[R_ARGS] >>> 0;
    switch (type) {
      case Cmd.CTX_DESTROY:
        this.destroy(ctxId, entry);
        return;
      case Cmd.CTX_ATTACH_RESOURCE: {
        this.lostCheck(host);
        const res = this.o.resource(arg0);
        if (entry.attached.has(arg0)) return;
        this.refusalToGpu(() => host.attach(arg0, res.segs, res.fd, res.size));
        entry.attached.add(arg0);
        return;
      }
      case Cmd.CTX_DETACH_RESOURCE:
        this.lostCheck(host);
        this.o.resource(arg0);
        if (entry.attached.delete(arg0)) host.detach(arg0);
        return;
      case Cmd.SUBMIT_3D: {
        this.lostCheck(host);
        const size = arg0, rlen = codec.rec[R_RLEN] >>> 0;
        if (SUBMIT_DATA + size > rlen) throw new GpuError('param', `SUBMIT_3D of ${size} bytes but the request has ${rlen}`);
        if (size === 0) return;
        this.refusalToGpu(() => host.submit(size, (dst, dstOff, len) => {
          if (codec.copyReadable(SUBMIT_DATA, dst, dstOff, len) !== len) throw new Error('submit: chain shorter than announced');
        }));
        return;
      }
    }
  }

  private lostCheck(host: WorkerContextHost): void {
    if (host.lost !== null) throw new GpuError('unspec', `context ${host.ctxId} is lost (${host.lost})`);
  }

  private refusalToGpu(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      throw e instanceof ContextRefusal ? new GpuError(e.kind, e.message) : e;
    }
  }

  private destroy(ctxId: number, entry: WorkerEntry): void {
    this.workerCtx.delete(ctxId);
    this.o.budget.release(CONTEXT_CHARGE);
    void entry.host.destroy();
  }

  /** RESOURCE_CREATE_BLOB with host memory: the context `ctxId` makes it. */
  async createBlob(ctxId: number, blobId: bigint, size: number, flags: number): Promise<HostBlob> {
    const entry = this.workerCtx.get(ctxId);
    if (!entry) {
      // virglrenderer's blob API is not used: its contexts' memory cannot leave the render server.
      if (this.rendererCtx.has(ctxId)) throw new GpuError('param', `context ${ctxId} is a virgl context: host blobs come from the other context types`);
      throw new GpuError('context', `context ${ctxId} does not exist`);
    }
    this.lostCheck(entry.host);
    try {
      return await entry.host.createBlob(blobId, size, flags);
    } catch (e) {
      throw e instanceof ContextRefusal ? new GpuError(e.kind, e.message) : e;
    }
  }

  /** A resource is being destroyed: detach it from every context first. */
  resourceGone(id: number): void {
    for (const entry of this.workerCtx.values()) if (entry.attached.delete(id)) entry.host.detach(id);
  }

  /** Guest memory moved: contexts get the new addresses of attached guest memory. */
  memoryChanged(): void {
    for (const entry of this.workerCtx.values()) {
      for (const id of entry.attached) {
        try {
          const res = this.o.resource(id);
          entry.host.attach(id, res.segs, res.fd, res.size);
        } catch (e) {
          log.guest('ctx-memory', `context ${entry.host.ctxId}: resource ${id}: ${(e as Error).message}`);
        }
      }
    }
  }

  /** Forget every context (device reset, session end); virgl's are reset by the renderer itself. */
  reset(): void {
    for (const [id, entry] of [...this.workerCtx]) this.destroy(id, entry);
    this.rendererCtx.clear();
    this.o.answers.clear();
  }

  /** A worker context by id (tests: kill its worker). */
  workerContext(ctxId: number): WorkerContextHost | undefined {
    return this.workerCtx.get(ctxId)?.host;
  }
}


