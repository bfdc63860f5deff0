/**
 * The command half of VirglComponent: encodes each call as one message (or a few chunks) on the
 * command ring and rings the render server's eventfd once per event-loop turn. Lifecycle and
 * completions live in component.ts.
 *
 * Back-pressure: enqueueing never fails and never blocks. When the command ring is full, messages
 * are queued in order in memory and moved into the ring as the server frees space (`backlog`
 * tells the caller how much is waiting, if it wants to stop reading its virtqueue).
 *
 * Each enqueue method returns the command's tag (as reported to onError), or 0 if nothing was
 * sent because the component is closed or lost; `result(tag)` tells what virglrenderer returned.
 */
import type { NativeAddon } from '../../native.js';
import { FenceTimelines } from './fences.js';
import { RingWriter } from './ring-writer.js';
import * as P from './protocol.js';

export const ENODEV = -19;

export interface ReadbackRect { readonly x: number; readonly y: number; readonly width: number; readonly height: number }
/** Where a readback lands in the readback buffer: first row at `offset`, rows `stride` bytes apart. */
export interface ReadbackTarget { readonly offset: number; readonly stride: number }

export abstract class VirglCommands {
  protected readonly fences = new FenceTimelines();
  protected readonly readbacks = new Map<number, (status: number) => void>();
  /** Commands whose RESULT someone waits for, by tag. */
  protected readonly results = new Map<number, (status: number) => void>();
  private doorbellPending = false;
  private tag = 0;
  private shareId = 0;
  private readonly oneByte = new Uint8Array(1);

  protected constructor(
    protected readonly n: NativeAddon,
    protected readonly out: RingWriter,
    private readonly commandFd: number,
    /** Where SHARE_MEMORY's fds go (non-blocking). */
    private readonly memorySocket: number,
  ) {}

  /** Whether commands are accepted now. */
  protected abstract get accepting(): boolean;
  /** Whether the command eventfd is still open. */
  protected abstract get fdOpen(): boolean;

  /** Commands waiting outside the full command ring. */
  get backlog(): { messages: number; bytes: number } {
    return this.out.backlog;
  }

  createContext(ctxId: number, capsetId: number, name: string): number {
    const nameBytes = utf8Prefix(name, P.MAX_NAME_BYTES);
    const at = this.begin(P.Cmd.CREATE_CONTEXT, P.CREATE_CONTEXT.SIZE + nameBytes.length);
    if (at < 0) return 0;
    this.put(at + P.CREATE_CONTEXT.CTX, ctxId);
    this.put(at + P.CREATE_CONTEXT.CAPSET, capsetId);
    this.put(at + P.CREATE_CONTEXT.NAME_LEN, nameBytes.length);
    this.out.bytes.set(nameBytes, at + P.CREATE_CONTEXT.NAME);
    return this.end();
  }

  /** Destroys the context; its fences that have not signalled resolve with -ECANCELED. */
  destroyContext(ctxId: number): number {
    const at = this.begin(P.Cmd.DESTROY_CONTEXT, P.DESTROY_CONTEXT.SIZE);
    if (at < 0) return 0;
    this.put(at + P.DESTROY_CONTEXT.CTX, ctxId);
    this.put(at + P.DESTROY_CONTEXT.HORIZON_LO, P.seqLo(this.fences.horizon));
    this.put(at + P.DESTROY_CONTEXT.HORIZON_HI, P.seqHi(this.fences.horizon));
    return this.end();
  }

  attachResource(ctxId: number, resId: number): number {
    return this.ctxResource(P.Cmd.CTX_ATTACH, ctxId, resId);
  }

  detachResource(ctxId: number, resId: number): number {
    return this.ctxResource(P.Cmd.CTX_DETACH, ctxId, resId);
  }

  /** args: handle, target, format, bind, width, height, depth, array_size, last_level, nr_samples, flags. */
  createResource(args: ArrayLike<number>): number {
    if (args.length !== P.CREATE_RESOURCE.ARG_COUNT) throw new RangeError(`createResource needs ${P.CREATE_RESOURCE.ARG_COUNT} arguments, got ${args.length}`);
    const at = this.begin(P.Cmd.CREATE_RESOURCE, P.CREATE_RESOURCE.SIZE);
    if (at < 0) return 0;
    for (let i = 0; i < args.length; i++) this.put(at + P.CREATE_RESOURCE.ARGS + 4 * i, args[i]);
    return this.end();
  }

  unrefResource(resId: number): number {
    return this.resourceOp(P.Cmd.UNREF_RESOURCE, resId);
  }

  /**
   * Let the render server map `fd` as this process mapped it at `addr` (its first `len` bytes,
   * from file offset 0), so that backings inside [addr, addr+len) can be attached. The server
   * keeps it mapped until unshareMemory(id) and the last backing in it is gone. Returns
   * [share id, tag], or null if nothing was sent (closed, lost, or the fd could not be passed).
   */
  shareMemory(fd: number, addr: number, len: number): [id: number, tag: number] | null {
    if (!this.accepting) return null;
    // Concurrency: the server takes one fd from the socket per SHARE_MEMORY it executes; both
    // travel in order, so the fd sent now is the one this message's execution receives.
    const sent = this.n.sendMsg(this.memorySocket, [this.oneByte], [fd]);
    if (sent !== 1) return null;
    const id = (this.shareId = (this.shareId + 1) >>> 0 || 1);
    const at = this.begin(P.Cmd.SHARE_MEMORY, P.SHARE_MEMORY.SIZE);
    this.put(at + P.SHARE_MEMORY.ID, id);
    this.out.view.setFloat64(at + P.SHARE_MEMORY.ADDR, addr, true);
    this.out.view.setFloat64(at + P.SHARE_MEMORY.LEN, len, true);
    return [id, this.end()];
  }

  unshareMemory(id: number): number {
    const at = this.begin(P.Cmd.UNSHARE_MEMORY, P.UNSHARE_MEMORY.SIZE);
    if (at < 0) return 0;
    this.put(at + P.UNSHARE_MEMORY.ID, id);
    return this.end();
  }

  /**
   * segments: [hostAddr, len] pairs inside memory shared with shareMemory (device/backing.ts
   * resolves them). virglrenderer keeps them, pinned, until detachBacking/unrefResource. Large
   * lists go in chunks.
   */
  attachBacking(resId: number, segments: Float64Array): number {
    const perChunk = Math.floor((this.out.maxMessage - P.ATTACH_BACKING.SEGS) / P.ATTACH_BACKING.SEG_BYTES);
    const total = segments.length >> 1;
    const tag = this.nextTag();
    let done = 0;
    do {
      const count = Math.min(perChunk, total - done);
      const at = this.begin(P.Cmd.ATTACH_BACKING, P.ATTACH_BACKING.SEGS + count * P.ATTACH_BACKING.SEG_BYTES, tag);
      if (at < 0) return 0;
      this.put(at + P.ATTACH_BACKING.RES, resId);
      this.put(at + P.ATTACH_BACKING.FLAGS, done + count < total ? P.FLAG_MORE : 0);
      this.put(at + P.ATTACH_BACKING.COUNT, count);
      const v = this.out.view;
      for (let i = 0, off = at + P.ATTACH_BACKING.SEGS; i < 2 * count; i++, off += 8) v.setFloat64(off, segments[2 * done + i], true);
      this.end();
      done += count;
    } while (done < total);
    return tag;
  }

  detachBacking(resId: number): number {
    return this.resourceOp(P.Cmd.DETACH_BACKING, resId);
  }

  /** TRANSFER_TO_HOST_3D from the attached backing. box = x, y, z, w, h, d; offset in the backing. */
  transferWrite(resId: number, ctxId: number, level: number, stride: number, layerStride: number, box: ArrayLike<number>, offset: number): number {
    return this.transfer(P.Cmd.TRANSFER_WRITE, resId, ctxId, level, stride, layerStride, box, offset);
  }

  /** TRANSFER_FROM_HOST_3D into the attached backing. */
  transferRead(resId: number, ctxId: number, level: number, stride: number, layerStride: number, box: ArrayLike<number>, offset: number): number {
    return this.transfer(P.Cmd.TRANSFER_READ, resId, ctxId, level, stride, layerStride, box, offset);
  }

  /** SUBMIT_3D: the command stream is copied once, into the ring. */
  submit(ctxId: number, cmds: Uint8Array): number {
    return this.submitWith(ctxId, cmds.length, (dst, dstOff, srcOff, len) => dst.set(cmds.subarray(srcOff, srcOff + len), dstOff));
  }

  /**
   * SUBMIT_3D of `length` bytes that `fill` writes straight into the ring (e.g. gathered from
   * guest memory): called synchronously, once per chunk, to copy source bytes [srcOff, srcOff+len)
   * to dst[dstOff..]. Streams larger than one ring message go in chunks the server reassembles.
   * If fill throws, the server drops the partial stream and the exception propagates.
   */
  submitWith(ctxId: number, length: number, fill: (dst: Uint8Array, dstOff: number, srcOff: number, len: number) => void): number {
    const chunk = (this.out.maxMessage - P.SUBMIT.DATA) & ~3;
    const tag = this.nextTag();
    let done = 0;
    do {
      const len = Math.min(chunk, length - done);
      const at = this.begin(P.Cmd.SUBMIT, P.SUBMIT.DATA + len, tag);
      if (at < 0) return 0;
      this.put(at + P.SUBMIT.CTX, ctxId);
      this.put(at + P.SUBMIT.FLAGS, done + len < length ? P.FLAG_MORE : 0);
      this.put(at + P.SUBMIT.LEN, len);
      try {
        fill(this.out.bytes, at + P.SUBMIT.DATA, done, len);
      } catch (e) {
        this.put(at + P.SUBMIT.FLAGS, P.FLAG_ABORT); // still published: ends the chunk sequence
        this.end();
        throw e;
      }
      this.end();
      done += len;
    } while (done < length);
    return tag;
  }

  /**
   * A fence after everything enqueued so far, on context ctxId's timeline (0 = the global one).
   * Resolves 0 when it signals, in order per timeline; or, when it never will, -ECANCELED
   * (context destroyed), a virglrenderer error (fence refused), or -ENODEV (lost or closed).
   */
  fence(ctxId: number): Promise<number> {
    if (!this.accepting) return Promise.resolve(ENODEV);
    const { seq, done } = this.fences.add(ctxId);
    const at = this.begin(P.Cmd.FENCE, P.FENCE.SIZE);
    this.put(at + P.FENCE.CTX, ctxId);
    this.put(at + P.FENCE.SEQ_LO, P.seqLo(seq));
    this.put(at + P.FENCE.SEQ_HI, P.seqHi(seq));
    this.end();
    return done;
  }

  /**
   * What virglrenderer returned for the command with this tag (from an enqueue method, this
   * event-loop turn): 0 or -errno; -ENODEV for tag 0 or when the server is lost or closed first.
   * FENCE and READBACK have their own results.
   */
  result(tag: number): Promise<number> {
    if (tag === 0 || !this.accepting) return Promise.resolve(ENODEV);
    return new Promise((resolve) => this.results.set(tag, resolve));
  }

  /**
   * Copy `rect` of a 4-byte-per-pixel resource into the readback buffer, after everything
   * enqueued so far: rows in transfer order, or bottom-up with flipY. Resolves 0 or -errno; the
   * buffer region is the caller's to read only after that.
   */
  readback(resId: number, rect: ReadbackRect, flipY: boolean, dst: ReadbackTarget): Promise<number> {
    const at = this.begin(P.Cmd.READBACK, P.READBACK.SIZE);
    if (at < 0) return Promise.resolve(ENODEV);
    const tag = this.tag;
    this.put(at + P.READBACK.RES, resId);
    this.put(at + P.READBACK.X, rect.x);
    this.put(at + P.READBACK.Y, rect.y);
    this.put(at + P.READBACK.W, rect.width);
    this.put(at + P.READBACK.H, rect.height);
    this.put(at + P.READBACK.FLIP_Y, flipY ? 1 : 0);
    this.put(at + P.READBACK.DST_OFFSET, dst.offset);
    this.put(at + P.READBACK.DST_STRIDE, dst.stride);
    const done = new Promise<number>((resolve) => this.readbacks.set(tag, resolve));
    this.end();
    return done;
  }

  /** SHUTDOWN, written even though commands are no longer accepted. */
  protected enqueueShutdown(): void {
    const at = this.out.begin(P.HDR.SIZE);
    this.put(at + P.HDR.OP, P.Cmd.SHUTDOWN);
    this.put(at + P.HDR.TAG, 0);
    if (this.out.end()) this.doorbell();
  }

  /** Wake the server once per event-loop turn, however many commands this turn enqueued. */
  protected doorbell(): void {
    if (this.doorbellPending) return;
    this.doorbellPending = true;
    queueMicrotask(() => {
      this.doorbellPending = false;
      if (this.fdOpen) this.n.eventfdWrite(this.commandFd, 1);
    });
  }

  private nextTag(): number {
    this.tag = (this.tag + 1) >>> 0 || 1;
    return this.tag;
  }

  /** Start a command message; -1 if commands are not accepted. */
  private begin(op: number, size: number, tag = this.nextTag()): number {
    if (!this.accepting) return -1;
    const at = this.out.begin(size);
    this.put(at + P.HDR.OP, op);
    this.put(at + P.HDR.TAG, tag);
    return at;
  }

  private end(): number {
    if (this.out.end()) this.doorbell();
    return this.tag;
  }

  private put(offset: number, value: number): void {
    this.out.view.setUint32(offset, value >>> 0, true);
  }

  private ctxResource(op: number, ctxId: number, resId: number): number {
    const at = this.begin(op, P.CTX_RESOURCE.SIZE);
    if (at < 0) return 0;
    this.put(at + P.CTX_RESOURCE.CTX, ctxId);
    this.put(at + P.CTX_RESOURCE.RES, resId);
    return this.end();
  }

  private resourceOp(op: number, resId: number): number {
    const at = this.begin(op, P.RESOURCE.SIZE);
    if (at < 0) return 0;
    this.put(at + P.RESOURCE.RES, resId);
    return this.end();
  }

  private transfer(op: number, resId: number, ctxId: number, level: number, stride: number, layerStride: number, box: ArrayLike<number>, offset: number): number {
    if (box.length !== 6) throw new RangeError(`transfer box needs 6 values, got ${box.length}`);
    const at = this.begin(op, P.TRANSFER.SIZE);
    if (at < 0) return 0;
    this.put(at + P.TRANSFER.RES, resId);
    this.put(at + P.TRANSFER.CTX, ctxId);
    this.put(at + P.TRANSFER.LEVEL, level);
    this.put(at + P.TRANSFER.STRIDE, stride);
    this.put(at + P.TRANSFER.LAYER_STRIDE, layerStride);
    for (let i = 0; i < 6; i++) this.put(at + P.TRANSFER.BOX + 4 * i, box[i]);
    this.out.view.setFloat64(at + P.TRANSFER.OFFSET, offset, true);
    return this.end();
  }
}

/** UTF-8 bytes of s, cut to at most max bytes on a character boundary. */
function utf8Prefix(s: string, max: number): Uint8Array {
  const bytes = ENCODER.encode(s);
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // do not split a character
  return bytes.subarray(0, end);
}

const ENCODER = new TextEncoder();
