/**
 * Submission engine of the GPU driver: preallocated request/response slots in guest RAM per
 * queue, descriptor building, completion dispatch from the call eventfd, timeouts, and batches.
 *
 * A slot is a fixed request area + response area. Commands larger than a slot get a temporary
 * allocation that is freed when the device returns the buffer (never earlier, even on timeout).
 */
import { GuestRam } from './guest-memory.js';
import { DriverQueue } from './virtqueue.js';
import type { GuestRange } from './guest-memory.js';
import { RespKind, decodeResponse, writeHeader } from './gpu-protocol.js';
import type { GpuResponse, SubmitOptions, HeaderOptions } from './gpu-protocol.js';

export const REQ_BYTES = 512;
export const RESP_BYTES = 1088;
const SLOT_BYTES = REQ_BYTES + RESP_BYTES;

const INDIRECT: SubmitOptions = { indirect: true };

export const CONTROL = 0;
export const CURSOR = 1;

export interface Slot {
  readonly index: number;
  readonly reqGpa: number;
  readonly respGpa: number;
  /** Where this submission's request / response live (the slot, or a temporary allocation). */
  reqAt: number; reqOff: number; tempReq: number;
  respAt: number; respOff: number; tempResp: number; respCap: number;
  kind: RespKind;
  /** Descriptors reserved between prepare and enqueue. */
  descs: number;
  resolve: ((r: GpuResponse) => void) | null;
  reject: ((e: Error) => void) | null;
  timer: NodeJS.Timeout | null;
  after: ((r: GpuResponse) => void) | null;
  batch: CommandBatchState | null;
  /** The command's position in its batch. */
  batchPos: number;
}

interface QueueState {
  readonly q: DriverQueue;
  readonly slots: Slot[];
  readonly free: number[];
  readonly headToSlot: Int32Array;
  spaceWaiters: (() => void)[];
  /** Descriptors promised to prepared slots that are not on the ring yet. */
  reserved: number;
}

/** What a batch tracks; CommandBatch (gpu-batch.ts) implements it. */
export interface CommandBatchState {
  /** pos: the command's position in the batch; type: the response type (0 if the command had no response buffer, see hasResp). */
  onComplete(pos: number, type: number, usedLen: number, hasResp: boolean): void;
}

export interface SubmitterOptions {
  /** Default per-command timeout. Default 5000 ms. */
  timeoutMs?: number;
  /** Give cursor commands a 24-byte response buffer (the Linux driver gives none). Default false. */
  cursorResponses?: boolean;
  /**
   * Batches: after the kick, poll the used ring for up to this many µs (interrupts suppressed
   * meanwhile, as a busy-polling guest driver), then sleep on the call eventfd. Default 0: sleep at once.
   */
  spinUs?: number;
}

export class GpuSubmitter {
  timeoutMs: number;
  cursorResponses: boolean;
  spinUs: number;
  /** Used entries whose head was not submitted through this driver (raw ring tests), oldest first (max 1024 kept). */
  readonly foreignUsed: { queue: number; id: number; len: number }[] = [];
  private foreignSeen = 0;
  private foreignWaiters: { n: number; resolve: () => void }[] = [];
  protected fenceSeq = 0;
  protected readonly qs: QueueState[];
  private readonly pools: number[] = [];

  constructor(readonly ram: GuestRam, readonly control: DriverQueue, readonly cursor: DriverQueue, opts: SubmitterOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.cursorResponses = opts.cursorResponses ?? false;
    this.spinUs = opts.spinUs ?? 0;
    this.qs = [control, cursor].map((q) => this.makeQueueState(q));
  }

  private makeQueueState(q: DriverQueue): QueueState {
    const pool = this.ram.alloc(q.size * SLOT_BYTES, 4096);
    this.pools.push(pool);
    const slots: Slot[] = [];
    for (let i = 0; i < q.size; i++) {
      const reqGpa = pool + i * SLOT_BYTES;
      const respGpa = reqGpa + REQ_BYTES;
      slots.push({
        index: i, reqGpa, respGpa, reqAt: reqGpa, reqOff: this.ram.offsetOf(reqGpa, REQ_BYTES), tempReq: -1,
        respAt: respGpa, respOff: this.ram.offsetOf(respGpa, RESP_BYTES), tempResp: -1, respCap: 0,
        kind: RespKind.NODATA, descs: 0, resolve: null, reject: null, timer: null, after: null, batch: null, batchPos: 0,
      });
    }
    const st: QueueState = { q, slots, free: slots.map((s) => s.index).reverse(), headToSlot: new Int32Array(q.size).fill(-1), spaceWaiters: [], reserved: 0 };
    q.onInterrupt = () => this.drain(st);
    return st;
  }

  /** Queue index a command goes to (its own, unless opts.queue overrides). */
  protected route(own: number, opts: SubmitOptions | undefined): number {
    return opts?.queue === undefined ? own : opts.queue === 'cursor' ? CURSOR : CONTROL;
  }

  /** Descriptors a submission needs. */
  protected descsNeeded(respCap: number, opts: SubmitOptions | undefined): number {
    if (opts?.indirect) return 1;
    return 1 + (opts?.splitAt?.length ?? 0) + (respCap > 0 ? 1 : 0);
  }

  /**
   * A slot with its header written, or null if the queue has no room (or, unless `jump`, others
   * already wait for room). reqBytes/respCap larger than the slot get temporary RAM.
   */
  protected tryPrepare(which: number, type: number, opts: HeaderOptions | undefined, reqBytes: number, respCap: number,
    descs: number, jump = false): Slot | null {
    const st = this.qs[which]!;
    if (st.free.length === 0 || st.q.freeCount - st.reserved < descs || (!jump && st.spaceWaiters.length > 0)) return null;
    const s = st.slots[st.free.pop()!]!;
    s.descs = descs;
    st.reserved += descs;
    if (reqBytes > REQ_BYTES) { s.tempReq = s.reqAt = this.ram.alloc(reqBytes, 16); s.reqOff = this.ram.offsetOf(s.reqAt, reqBytes); }
    if (respCap > RESP_BYTES) { s.tempResp = s.respAt = this.ram.alloc(respCap, 16); s.respOff = this.ram.offsetOf(s.respAt, respCap); }
    s.respCap = respCap;
    const fence = opts && (opts.fence || opts.fenceId !== undefined) ? (opts.fenceId ?? ++this.fenceSeq) : 0;
    writeHeader(this.ram.view, s.reqOff, type, fence, opts);
    return s;
  }

  /** tryPrepare, waiting in line for completions to free room if needed. */
  protected async prepare(which: number, type: number, opts: SubmitOptions | undefined, reqBytes: number, respCap: number): Promise<Slot> {
    const descs = this.descsNeeded(respCap, opts);
    const st = this.qs[which]!;
    if (descs > st.q.size) throw new RangeError(`a command needing ${descs} descriptors cannot fit queue ${which}`);
    let s = this.tryPrepare(which, type, opts, reqBytes, respCap, descs);
    while (!s) {
      st.q.kick(); // let the device make progress on what is already queued
      await new Promise<void>((resolve) => st.spaceWaiters.push(resolve));
      s = this.tryPrepare(which, type, opts, reqBytes, respCap, descs, true);
      if (s) this.wakeSpace(st); // there may be room for the next one in line too
    }
    return s;
  }

  /** Put the slot's buffers on the ring (no kick). */
  protected enqueue(which: number, s: Slot, reqLen: number, kind: RespKind, opts: SubmitOptions | undefined): void {
    const st = this.qs[which]!;
    s.kind = kind;
    st.reserved -= s.descs;
    s.descs = 0;
    const cap = s.respCap;
    if (cap > 0) this.ram.bytes.fill(0, s.respOff, s.respOff + Math.min(cap, 24));
    let head: number;
    if (!opts || (!opts.indirect && !opts.splitAt)) {
      head = st.q.addPair(s.reqAt, reqLen, s.respAt, cap);
    } else if (!opts.splitAt) {
      head = st.q.addPairIndirect(s.reqAt, reqLen, s.respAt, cap);
    } else {
      const readable: GuestRange[] = [];
      let at = 0;
      for (const cut of opts.splitAt ?? []) {
        if (cut <= at || cut >= reqLen) continue;
        readable.push({ gpa: s.reqAt + at, len: cut - at });
        at = cut;
      }
      readable.push({ gpa: s.reqAt + at, len: reqLen - at });
      head = st.q.add(readable, cap > 0 ? [{ gpa: s.respAt, len: cap }] : [], { indirect: !!opts.indirect });
    }
    st.headToSlot[head] = s.index;
  }

  /** Enqueue, kick and resolve with the decoded response. */
  protected finish(which: number, s: Slot, reqLen: number, kind: RespKind, opts: SubmitOptions | undefined,
    after: ((r: GpuResponse) => void) | null = null): Promise<GpuResponse> {
    this.enqueue(which, s, reqLen, kind, opts);
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const p = new Promise<GpuResponse>((resolve, reject) => {
      s.resolve = resolve;
      s.reject = reject;
      s.after = after;
      s.timer = setTimeout(() => {
        // Abandon: the device still owns the buffers; the slot is recycled when it completes.
        s.resolve = null; s.reject = null; s.after = null; s.timer = null;
        reject(new Error(`virtio-gpu command 0x${this.ram.view.getUint32(s.reqOff, true).toString(16)} on queue ${which}: no completion within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    this.qs[which]!.q.kick();
    return p;
  }

  /** @internal For batches: a prepared slot now, or a RangeError if the queue is full. */
  batchSlot(which: number, type: number, opts: HeaderOptions | undefined, reqBytes: number, respCap: number, indirect: boolean): Slot {
    const s = this.tryPrepare(which, type, opts, reqBytes, respCap, indirect || respCap === 0 ? 1 : 2, true);
    if (!s) throw new RangeError(`batch does not fit queue ${which}: ${this.qs[which]!.q.freeCount} descriptors free, ${this.qs[which]!.free.length} slots free`);
    return s;
  }

  /** @internal For batches: enqueue without kicking or a promise. */
  batchEnqueue(which: number, s: Slot, reqLen: number, batch: CommandBatchState, pos: number, indirect: boolean): void {
    s.batch = batch;
    s.batchPos = pos;
    this.enqueue(which, s, reqLen, RespKind.NODATA, indirect ? INDIRECT : undefined);
  }

  /**
   * @internal Kick the queues in `mask` (bit 0 control, bit 1 cursor). With spinUs, their used
   * rings are then polled (the device told not to interrupt) until `done()` or spinUs passed;
   * interrupts are allowed again before returning, so the call eventfd takes over from there.
   */
  kickQueues(mask: number, done: () => boolean): void {
    const spin = this.spinUs > 0;
    for (const st of this.qs) if (mask & (1 << st.q.index)) { if (spin) st.q.suppressInterrupts(); st.q.kick(); }
    if (!spin) return;
    const end = performance.now() + this.spinUs / 1000;
    while (!done() && performance.now() < end) {
      for (const st of this.qs) if (mask & (1 << st.q.index)) this.popAll(st);
    }
    for (const st of this.qs) if (mask & (1 << st.q.index) && st.q.allowInterrupts()) this.drain(st);
  }

  /** Give back a prepared slot that will not be enqueued (its encoder threw). */
  protected unprepare(which: number, s: Slot): void {
    const st = this.qs[which]!;
    st.reserved -= s.descs;
    s.descs = 0;
    this.release(st, s);
  }

  /** Pick up every used buffer; re-arm the interrupt before leaving so none is missed. */
  private drain(st: QueueState): void {
    do this.popAll(st);
    while (st.q.armInterrupt(1));
  }

  private popAll(st: QueueState): void {
    let head: number;
    while ((head = st.q.popUsedId()) >= 0) this.complete(st, head, st.q.lastUsedLen);
  }

  private complete(st: QueueState, head: number, usedLen: number): void {
    const si = head < st.headToSlot.length ? st.headToSlot[head]! : -1;
    if (si < 0) { this.foreign(st, head, usedLen); return; }
    st.headToSlot[head] = -1;
    const s = st.slots[si]!;
    if (s.batch) {
      const hasResp = s.respCap >= 24;
      const type = hasResp ? this.ram.view.getUint32(s.respOff, true) : 0;
      const b = s.batch;
      s.batch = null;
      this.release(st, s);
      b.onComplete(s.batchPos, type, usedLen, hasResp);
      return;
    }
    const resolve = s.resolve;
    const after = s.after;
    let r: GpuResponse | null = null;
    if (resolve) r = decodeResponse(s.kind, this.ram.bytes, this.ram.view, s.respOff, s.respCap, usedLen);
    if (s.timer) clearTimeout(s.timer);
    s.resolve = null; s.reject = null; s.after = null; s.timer = null;
    this.release(st, s);
    if (r && resolve) { after?.(r); resolve(r); }
  }

  private foreign(st: QueueState, id: number, len: number): void {
    this.foreignUsed.push({ queue: st.q.index, id, len });
    if (this.foreignUsed.length > 1024) this.foreignUsed.shift();
    this.foreignSeen++;
    this.foreignWaiters = this.foreignWaiters.filter((w) => (this.foreignSeen >= w.n ? (w.resolve(), false) : true));
  }

  /** Resolves once `n` more foreign used entries (see foreignUsed) than now have arrived. */
  waitForeignUsed(n = 1, timeoutMs = this.timeoutMs): Promise<void> {
    const target = this.foreignSeen + n;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.foreignWaiters = this.foreignWaiters.filter((w) => w.resolve !== done);
        reject(new Error(`${this.foreignSeen - target + n}/${n} foreign used entries within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => { clearTimeout(timer); resolve(); };
      this.foreignWaiters.push({ n: target, resolve: done });
    });
  }

  private release(st: QueueState, s: Slot): void {
    if (s.tempReq >= 0) { this.ram.free(s.tempReq); s.tempReq = -1; s.reqAt = s.reqGpa; s.reqOff = this.ram.offsetOf(s.reqGpa); }
    if (s.tempResp >= 0) { this.ram.free(s.tempResp); s.tempResp = -1; s.respAt = s.respGpa; s.respOff = this.ram.offsetOf(s.respGpa); }
    st.free.push(s.index);
    this.wakeSpace(st);
  }

  private wakeSpace(st: QueueState): void {
    const w = st.spaceWaiters.shift();
    if (w) w();
  }

  /** Commands submitted and not completed, per queue. */
  inFlight(which = CONTROL): number {
    const st = this.qs[which]!;
    return st.slots.length - st.free.length;
  }

  /**
   * Forget everything in flight (rejecting its promises) and zero both rings, e.g. after
   * RESET_DEVICE or before replaying the negotiation on a new connection.
   */
  resetQueues(): void {
    for (const st of this.qs) {
      for (const s of st.slots) {
        if (st.free.includes(s.index)) continue;
        if (s.timer) clearTimeout(s.timer);
        s.reject?.(new Error('virtqueue reset'));
        s.resolve = null; s.reject = null; s.after = null; s.timer = null; s.batch = null;
        s.descs = 0;
        this.release(st, s);
      }
      st.reserved = 0;
      st.headToSlot.fill(-1);
      st.q.reset();
    }
  }

  /** Reject everything in flight and stop listening (the queues stay open). */
  closeSubmitter(): void {
    for (const st of this.qs) {
      st.q.onInterrupt = null;
      for (const s of st.slots) {
        if (s.timer) clearTimeout(s.timer);
        s.reject?.(new Error('GPU driver closed'));
        s.resolve = null; s.reject = null; s.timer = null;
      }
    }
  }
}
