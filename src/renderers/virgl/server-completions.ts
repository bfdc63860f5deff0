/**
 * Render server side of the completion ring: builds completion messages and wakes the coordinator once
 * per batch (one eventfdWrite however many completions a wake-up produced).
 */
import type { NativeAddon } from '../../native.js';
import { RingWriter } from './ring-writer.js';
import * as P from './protocol.js';

export class CompletionWriter {
  private pending = false;

  constructor(
    private readonly n: NativeAddon,
    private readonly out: RingWriter,
    private readonly completionFd: number,
  ) {}

  get view(): DataView {
    return this.out.view;
  }

  get bytes(): Uint8Array {
    return this.out.bytes;
  }

  get maxMessage(): number {
    return this.out.maxMessage;
  }

  /** Start a completion of `size` bytes; returns its offset in view/bytes. */
  begin(op: number, tag: number, size: number): number {
    const at = this.out.begin(size);
    this.out.view.setUint32(at + P.HDR.OP, op, true);
    this.out.view.setUint32(at + P.HDR.TAG, tag, true);
    return at;
  }

  end(): void {
    this.out.end();
    this.pending = true;
  }

  /** ERROR: message `op` (tag) could not be executed (status); a, b = what it was about. */
  error(op: number, tag: number, status: number, a: number, b: number): void {
    this.status(P.Cpl.ERROR, op, tag, status, a, b);
  }

  /** RESULT: command `op` (tag) returned status (0 or -errno); a, b = the ids it was about. */
  result(op: number, tag: number, status: number, a: number, b: number): void {
    this.status(P.Cpl.RESULT, op, tag, status, a, b);
  }

  private status(cpl: number, op: number, tag: number, status: number, a: number, b: number): void {
    const at = this.begin(cpl, tag, P.ERROR.SIZE);
    const v = this.out.view;
    v.setUint32(at + P.ERROR.FAILED_OP, op, true);
    v.setInt32(at + P.ERROR.STATUS, status, true);
    v.setUint32(at + P.ERROR.A, a >>> 0, true);
    v.setUint32(at + P.ERROR.B, b >>> 0, true);
    this.end();
  }

  /** A completion of the three-word form {ctx, seq lo, seq hi} (FENCE_SIGNALLED, FENCES_DROPPED). */
  fenceEvent(op: number, tag: number, ctx: number, seq: number): void {
    const at = this.begin(op, tag, P.FENCE_SIGNALLED.SIZE);
    const v = this.out.view;
    v.setUint32(at + P.FENCE_SIGNALLED.CTX, ctx, true);
    v.setUint32(at + P.FENCE_SIGNALLED.SEQ_LO, P.seqLo(seq), true);
    v.setUint32(at + P.FENCE_SIGNALLED.SEQ_HI, P.seqHi(seq), true);
    this.end();
  }

  /** Wake the coordinator even without a completion (it waits for command ring space). */
  wake(): void {
    this.pending = true;
  }

  /** Move queued completions in and signal the coordinator if anything is new. */
  signal(): void {
    if (this.out.backlog.messages > 0 && this.out.flush()) this.pending = true;
    if (!this.pending) return;
    this.pending = false;
    this.n.eventfdWrite(this.completionFd, 1);
  }
}
