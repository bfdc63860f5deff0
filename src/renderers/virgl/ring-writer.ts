/**
 * Producer side of a SabRing with an overflow queue, used by both threads: messages go straight
 * into the ring while it has room; when it is full they are built in plain buffers, queued in
 * order, and moved in by flush() once the consumer has released space. The producer never waits.
 */
import { SabRing } from '../sab-ring.js';

export class RingWriter {
  /** Where the message being built lives: the ring's own view, or a queued buffer's. */
  view: DataView;
  bytes: Uint8Array;
  private inRing = false;
  private building: Uint8Array | null = null;
  private readonly queued: Uint8Array[] = [];
  private queuedHead = 0;
  private queuedBytes = 0;

  /**
   * @param ctl control block; ctl[wantedSlot] = 1 asks the consumer to signal us after it has
   *   released messages (see protocol.ts CTL).
   */
  constructor(readonly ring: SabRing, private readonly ctl: Int32Array, private readonly wantedSlot: number) {
    this.view = ring.view;
    this.bytes = ring.bytes;
  }

  /** Largest payload of one message. */
  get maxMessage(): number {
    return this.ring.maxMessage;
  }

  /** Messages waiting in the overflow queue, and their bytes. */
  get backlog(): { messages: number; bytes: number } {
    return { messages: this.queued.length - this.queuedHead, bytes: this.queuedBytes };
  }

  /** Start a message of `size` bytes (<= maxMessage); returns its offset in view/bytes. */
  begin(size: number): number {
    if (this.queuedHead === this.queued.length) {
      const at = this.reserve(size);
      if (at >= 0) {
        this.inRing = true;
        this.view = this.ring.view;
        this.bytes = this.ring.bytes;
        return at;
      }
    }
    // Ring full, or older messages still queued (keep the order): build it aside.
    const msg = new Uint8Array(size);
    this.inRing = false;
    this.building = msg;
    this.view = new DataView(msg.buffer);
    this.bytes = msg;
    return 0;
  }

  /** Publish the message started last. True if it reached the ring (else it is queued). */
  end(): boolean {
    if (this.inRing) {
      this.ring.commit();
      return true;
    }
    this.queued.push(this.building!);
    this.queuedBytes += this.building!.length;
    this.building = null;
    return false;
  }

  /** Move queued messages into the ring, in order. True if at least one moved. */
  flush(): boolean {
    let moved = false;
    while (this.queuedHead < this.queued.length) {
      const msg = this.queued[this.queuedHead];
      const at = this.reserve(msg.length);
      if (at < 0) break;
      this.ring.bytes.set(msg, at);
      this.ring.commit();
      this.queued[this.queuedHead++] = EMPTY;
      this.queuedBytes -= msg.length;
      moved = true;
    }
    if (this.queuedHead === this.queued.length) {
      this.queued.length = 0;
      this.queuedHead = 0;
    } else if (this.queuedHead > 1024 && this.queuedHead * 2 > this.queued.length) {
      this.queued.splice(0, this.queuedHead);
      this.queuedHead = 0;
    }
    return moved;
  }

  /** Drop everything queued (the consumer is gone). */
  discard(): void {
    this.queued.length = 0;
    this.queuedHead = 0;
    this.queuedBytes = 0;
  }

  private reserve(size: number): number {
    const at = this.ring.reserve(size);
    if (at >= 0) return at;
    // Concurrency: raise the flag first, then look again. The consumer releases, then clears the
    // flag and signals; so either this second reserve sees its release, or it sees our flag.
    Atomics.store(this.ctl, this.wantedSlot, 1);
    return this.ring.reserve(size);
  }
}

const EMPTY = new Uint8Array(0);
