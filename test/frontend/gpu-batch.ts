/**
 * Throughput path: queue many commands (no promise, no allocation per command), kick each
 * touched queue once, and wait for all of them with one promise. A batch object is reusable
 * once its submit() has settled.
 */
import { GpuCmd, GpuResp, GPU_HDR_SIZE } from './constants.js';
import { CONTROL, CURSOR } from './gpu-submit.js';
import type { GpuSubmitter, CommandBatchState, Slot } from './gpu-submit.js';
import { RESP_SIZE, encCreate2d, encCursor, encFlush, encResourceOnly, encSetScanout, encTransfer2d } from './gpu-protocol.js';
import type { HeaderOptions } from './gpu-protocol.js';
import { writeU64At } from './guest-memory.js';
import type { GuestRange } from './guest-memory.js';

export interface BatchResult {
  /** Commands completed. */
  count: number;
  /** Responses whose type is not an OK_* code. */
  errors: number;
  /** Type of the first error response (0 if none). */
  firstErrorType: number;
  /** From submit() to the last completion. */
  elapsedMs: number;
}

export class CommandBatch implements CommandBatchState {
  private queued = 0;
  private done = 0;
  private errors = 0;
  private firstErrorType = 0;
  private touched = 0;
  private started = 0;
  private resolve: ((r: BatchResult) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private broken = false;
  /** Positions of the queued commands not completed yet. */
  private readonly unanswered = new Set<number>();
  private readonly allDone = () => this.done === this.queued;

  /**
   * indirect: each command takes one descriptor (an indirect table) instead of two, so a
   * batch can fill every slot of the queue. Needs INDIRECT_DESC.
   */
  constructor(private readonly d: GpuSubmitter, private readonly cursorResponses: boolean, private readonly indirect = false) {}

  /** Commands queued and not yet submitted / completed. */
  get size(): number { return this.queued; }

  resourceCreate2d(resourceId: number, format: number, width: number, height: number, hdr?: HeaderOptions): this {
    const s = this.slot(CONTROL, GpuCmd.RESOURCE_CREATE_2D, hdr, 40, RESP_SIZE.NODATA);
    return this.push(CONTROL, s, encCreate2d(this.d.ram.view, s.reqOff, resourceId, format, width, height));
  }

  resourceUnref(resourceId: number, hdr?: HeaderOptions): this {
    const s = this.slot(CONTROL, GpuCmd.RESOURCE_UNREF, hdr, 32, RESP_SIZE.NODATA);
    return this.push(CONTROL, s, encResourceOnly(this.d.ram.view, s.reqOff, resourceId));
  }

  /**
   * RESOURCE_ATTACH_BACKING with these entries in the request itself (one readable buffer, unlike
   * GpuDriver.attachBacking, which splits as Linux does). The driver does not track the backing.
   */
  resourceAttachBacking(resourceId: number, entries: readonly GuestRange[], hdr?: HeaderOptions): this {
    const len = 32 + 16 * entries.length;
    const s = this.slot(CONTROL, GpuCmd.RESOURCE_ATTACH_BACKING, hdr, len, RESP_SIZE.NODATA);
    const dv = this.d.ram.view;
    dv.setUint32(s.reqOff + 24, resourceId, true);
    dv.setUint32(s.reqOff + 28, entries.length, true);
    for (let i = 0, o = s.reqOff + 32; i < entries.length; i++, o += 16) {
      writeU64At(dv, o, entries[i]!.gpa);
      dv.setUint32(o + 8, entries[i]!.len, true);
      dv.setUint32(o + 12, 0, true);
    }
    return this.push(CONTROL, s, len);
  }

  setScanout(scanoutId: number, resourceId: number, x: number, y: number, w: number, h: number, hdr?: HeaderOptions): this {
    const s = this.slot(CONTROL, GpuCmd.SET_SCANOUT, hdr, 48, RESP_SIZE.NODATA);
    return this.push(CONTROL, s, encSetScanout(this.d.ram.view, s.reqOff, scanoutId, resourceId, x, y, w, h));
  }

  transferToHost2d(resourceId: number, x: number, y: number, w: number, h: number, offset: number, hdr?: HeaderOptions): this {
    const s = this.slot(CONTROL, GpuCmd.TRANSFER_TO_HOST_2D, hdr, 56, RESP_SIZE.NODATA);
    return this.push(CONTROL, s, encTransfer2d(this.d.ram.view, s.reqOff, resourceId, x, y, w, h, offset));
  }

  resourceFlush(resourceId: number, x: number, y: number, w: number, h: number, hdr?: HeaderOptions): this {
    const s = this.slot(CONTROL, GpuCmd.RESOURCE_FLUSH, hdr, 48, RESP_SIZE.NODATA);
    return this.push(CONTROL, s, encFlush(this.d.ram.view, s.reqOff, resourceId, x, y, w, h));
  }

  getDisplayInfo(hdr?: HeaderOptions): this {
    const s = this.slot(CONTROL, GpuCmd.GET_DISPLAY_INFO, hdr, GPU_HDR_SIZE, RESP_SIZE.DISPLAY_INFO);
    return this.push(CONTROL, s, GPU_HDR_SIZE);
  }

  updateCursor(scanoutId: number, x: number, y: number, resourceId: number, hotX: number, hotY: number, hdr?: HeaderOptions): this {
    const s = this.slot(CURSOR, GpuCmd.UPDATE_CURSOR, hdr, 56, this.cursorResponses ? RESP_SIZE.NODATA : 0);
    return this.push(CURSOR, s, encCursor(this.d.ram.view, s.reqOff, scanoutId, x, y, resourceId, hotX, hotY));
  }

  moveCursor(scanoutId: number, x: number, y: number, resourceId = 0, hdr?: HeaderOptions): this {
    const s = this.slot(CURSOR, GpuCmd.MOVE_CURSOR, hdr, 56, this.cursorResponses ? RESP_SIZE.NODATA : 0);
    return this.push(CURSOR, s, encCursor(this.d.ram.view, s.reqOff, scanoutId, x, y, resourceId, 0, 0));
  }

  /** Arbitrary request bytes (copied; they replace the header too) with a writable buffer of respLen. */
  raw(bytes: Uint8Array, respLen: number, queue: 'control' | 'cursor' = 'control'): this {
    const which = queue === 'cursor' ? CURSOR : CONTROL;
    const s = this.slot(which, 0, undefined, bytes.length, respLen);
    this.d.ram.bytes.set(bytes, s.reqOff);
    return this.push(which, s, bytes.length);
  }

  /** Kick each touched queue once and resolve when every queued command has completed. */
  submit(timeoutMs = this.d.timeoutMs): Promise<BatchResult> {
    if (this.resolve) return Promise.reject(new Error('batch already submitted'));
    this.started = performance.now();
    const p = new Promise<BatchResult>((resolve, reject) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => {
        this.resolve = null;
        this.broken = true; // late completions would corrupt a reused batch's counts
        reject(new Error(`batch: ${this.done}/${this.queued} commands completed within ${timeoutMs} ms (unanswered: #${[...this.unanswered].join(' #')})`));
      }, timeoutMs);
    });
    this.d.kickQueues(this.touched, this.allDone);
    if (this.resolve && this.done === this.queued) this.settle(); // empty, or the device was already running
    return p;
  }

  /** @internal Called by the submitter for each completed command of this batch. */
  onComplete(pos: number, type: number, _usedLen: number, hasResp: boolean): void {
    if (this.broken) return;
    this.done++;
    this.unanswered.delete(pos);
    if (hasResp && (type < GpuResp.OK_NODATA || type >= GpuResp.ERR_UNSPEC)) {
      if (this.errors++ === 0) this.firstErrorType = type;
    }
    if (this.resolve && this.done === this.queued) this.settle();
  }

  private slot(which: number, type: number, hdr: HeaderOptions | undefined, reqBytes: number, respCap: number): Slot {
    if (this.resolve) throw new Error('batch already submitted; wait for it before queueing more');
    if (this.broken) throw new Error('this batch timed out; use a new one');
    return this.d.batchSlot(which, type, hdr, reqBytes, respCap, this.indirect);
  }

  private push(which: number, s: Slot, reqLen: number): this {
    this.d.batchEnqueue(which, s, reqLen, this, this.queued, this.indirect);
    this.unanswered.add(this.queued++);
    this.touched |= which === CURSOR ? 2 : 1;
    return this;
  }

  private settle(): void {
    const resolve = this.resolve!;
    const r: BatchResult = { count: this.done, errors: this.errors, firstErrorType: this.firstErrorType, elapsedMs: performance.now() - this.started };
    this.reset();
    resolve(r);
  }

  private reset(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.resolve = null;
    this.queued = this.done = this.errors = this.firstErrorType = this.touched = 0;
    this.unanswered.clear();
  }
}
