/**
 * QEMU's side of the display: the vhost-user-gpu socket received with GPU_SET_SOCKET
 * (docs/interop/vhost-user-gpu.rst). Requests that QEMU answers wait at most REPLY_TIMEOUT_MS;
 * writes never block: what the socket does not take is queued, and pixel updates beyond
 * MAX_BACKLOG are dropped (the damage is sent again once the socket drains).
 *
 * Pixels are never copied on our side: an UPDATE is gathered from the header and the store's own
 * rows, and large contiguous payloads go into the socket by page reference (vmsplice + splice),
 * so the only copy is QEMU's read. A store is "lent" while any of its pixels are queued here or
 * referenced by the kernel; writers then copy-on-write (PixelStore.forWrite), so QEMU receives
 * exactly the pixels of each flush.
 */
import { errnoName, native, watchFd, type FdWatcher } from '../native.js';
import { log } from '../log.js';
import type { DisplaySink, PixelSource } from '../device/display-sink.js';
import { convertWords } from '../device/formats.js';
import { PixelStore, type PixelReader } from '../device/pixel-store.js';
import { MAX_SCANOUTS } from '../device/protocol.js';

export const Msg = {
  GET_PROTOCOL_FEATURES: 1,
  SET_PROTOCOL_FEATURES: 2,
  GET_DISPLAY_INFO: 3,
  CURSOR_POS: 4,
  CURSOR_POS_HIDE: 5,
  CURSOR_UPDATE: 6,
  SCANOUT: 7,
  UPDATE: 8,
  DMABUF_SCANOUT: 9,
  DMABUF_UPDATE: 10,
  GET_EDID: 11,
  DMABUF_SCANOUT2: 12,
} as const;

const FLAG_REPLY = 0x4;
const CURSOR_BYTES = 64 * 64 * 4;
const HDR = 12;
const PROTOCOL_F_EDID = 1n << 0n;
const REPLY_TIMEOUT_MS = 2000;
const MAX_REPLY = 4096;
const MAX_BACKLOG = 64 << 20;
const SEND_BUFFER = 8 << 20;
/** Buffers per sendmsg (IOV_MAX is 1024). */
const MAX_PARTS = 512;
/** Pixel parts from this size on go out by page reference instead of being copied. */
const BY_REFERENCE_MIN = 4096;
/** Page memory for our own bytes (headers) that travel in the pipe beside pixels sent by reference. */
const ARENA_SIZE = 256 << 10;
/** Queued bytes from which a batch's display messages leave at once instead of at its end. */
const EARLY_FLUSH = 64 << 10;
/** Pipe for page references: 1 MiB is the largest size unprivileged processes get by default. */
const PIPE_CAPACITY = 1 << 20;
/**
 * Most pixel memory lent at once. Writers copy a lent store before changing it, so this also bounds
 * the memory those copies add; beyond it, parts are copied into the message instead of lent.
 */
const MAX_LENT = 128 << 20;

/** Bytes queued for QEMU: our own (store null) or a view of a store's pixels. */
interface Part {
  bytes: Uint8Array;
  store: PixelStore | null;
  /** Goes by page reference: store pixels of BY_REFERENCE_MIN or more, or bytes copied into the arena. */
  byReference: boolean;
}

/** A store whose pages the display may still read. */
interface Loan {
  /** Parts of it still in our queue. */
  queued: number;
  /** Some of its pages went to the kernel by reference (read by QEMU only once outq is 0). */
  referenced: boolean;
}

interface Pending {
  request: number;
  resolve: (payload: Uint8Array | null) => void;
  timer: NodeJS.Timeout;
}

export class DisplayChannel implements DisplaySink, PixelReader {
  private readonly watcher: FdWatcher;
  private closed = false;
  private readonly pending: Pending[] = [];
  /** Bytes QEMU has not taken yet, in order; they may be views of resource pixels (see update). */
  private readonly out: Part[] = [];
  private backlog = 0;
  private readonly loans = new Map<PixelStore, Loan>();
  /** Sum of the sizes of the stores in loans. */
  private lentBytes = 0;
  /** Pipe for sends by page reference ([read, write] fds), null when unavailable. */
  private pipe: Int32Array | null = null;
  /** Bytes in the pipe not yet spliced into the socket: they go before anything else. */
  private inPipe = 0;
  /** Where our own bytes are copied to go through the pipe; a new one when full (never reused). */
  private arena: PixelStore | null = null;
  private arenaAt = ARENA_SIZE;
  private flushScheduled = false;
  private waitingWritable = false;
  private inBuf = new Uint8Array(MAX_REPLY + HDR);
  private inLen = 0;
  private protocolFeatures = 0n;
  private enabledScanouts = 1; // bit mask; scanout 0 always exists
  /** Conversion buffer for formats that are not already B,G,R,X. */
  private convertStore: PixelStore | null = null;
  private readonly fdsOut = new Int32Array(9);
  /** Damage dropped while the socket was backed up, per scanout, to resend when it drains. */
  private readonly dropped = new Map<number, { x0: number; y0: number; x1: number; y1: number }>();
  onDrained: ((scanout: number, x: number, y: number, w: number, h: number) => void) | null = null;

  constructor(private readonly fd: number) {
    native().setNonBlocking(fd, true);
    // A 1080p UPDATE is 8 MiB: a large send buffer lets it leave in a few writes, not dozens.
    native().setSendBuffer(fd, SEND_BUFFER);
    this.watcher = watchFd('watch the display socket', fd, (ev) => this.onEvents(ev));
    this.watcher.start(native().READABLE);
    const pipe = new Int32Array(2);
    const capacity = native().pipeCreate(pipe, PIPE_CAPACITY);
    if (capacity > 0) this.pipe = pipe;
    else log.warn(`display: no pipe for zero-copy updates (${errnoName(capacity)}); pixels are copied into the socket`);
  }

  /** Negotiate protocol features and learn the enabled scanouts, as QEMU expects after GPU_SET_SOCKET. */
  async init(): Promise<void> {
    const f = await this.request(Msg.GET_PROTOCOL_FEATURES, null);
    if (f && f.length >= 8) {
      this.protocolFeatures = new DataView(f.buffer, f.byteOffset).getBigUint64(0, true) & PROTOCOL_F_EDID;
      const p = new Uint8Array(8);
      new DataView(p.buffer).setBigUint64(0, this.protocolFeatures, true);
      this.send(Msg.SET_PROTOCOL_FEATURES, [p]);
    }
    await this.displayInfo();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    native().close(this.fd);
    this.closePipe();
    this.loans.clear();
    this.lentBytes = 0;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.resolve(null);
    }
    this.out.length = 0;
    this.backlog = 0;
  }

  private closePipe(): void {
    if (!this.pipe) return;
    native().close(this.pipe[0]);
    native().close(this.pipe[1]);
    this.pipe = null;
    this.inPipe = 0;
  }

  /** PixelReader: whether QEMU may still read pixels of `store` (it must not change meanwhile). */
  stillReading(store: PixelStore): boolean {
    const loan = this.loans.get(store);
    if (!loan) return false;
    if (loan.queued > 0) return true;
    this.returnLoans();
    return this.loans.has(store);
  }

  /** Once QEMU has read everything sent, no page sent by reference is in use any more. */
  private returnLoans(): void {
    if (this.inPipe > 0 || native().unsentBytes(this.fd) > 0) return;
    for (const [store, loan] of this.loans) if (loan.queued === 0) this.endLoan(store);
  }

  /** A new loan of store, or null if it would pass MAX_LENT even after returning what QEMU has read. */
  private lend(store: PixelStore): Loan | null {
    if (this.lentBytes + store.byteLength > MAX_LENT) this.returnLoans();
    if (this.lentBytes + store.byteLength > MAX_LENT) return null;
    const loan = { queued: 0, referenced: false };
    this.loans.set(store, loan);
    this.lentBytes += store.byteLength;
    return loan;
  }

  private endLoan(store: PixelStore): void {
    this.loans.delete(store);
    this.lentBytes -= store.byteLength;
  }

  // --- DisplaySink ---

  async displayInfo(): Promise<Uint8Array | null> {
    const r = await this.request(Msg.GET_DISPLAY_INFO, null);
    if (!r || r.length < 24 + MAX_SCANOUTS * 24) return null;
    const pmodes = r.slice(24, 24 + MAX_SCANOUTS * 24);
    const v = new DataView(pmodes.buffer);
    let mask = 1;
    for (let i = 0; i < MAX_SCANOUTS; i++) if (v.getUint32(i * 24 + 16, true)) mask |= 1 << i;
    this.enabledScanouts = mask;
    return pmodes;
  }

  hasScanout(scanout: number): boolean {
    return scanout < MAX_SCANOUTS && (this.enabledScanouts & (1 << scanout)) !== 0;
  }

  async edid(scanout: number): Promise<Uint8Array | null> {
    if ((this.protocolFeatures & PROTOCOL_F_EDID) === 0n) return null;
    const req = new Uint8Array(4);
    new DataView(req.buffer).setUint32(0, scanout, true);
    const r = await this.request(Msg.GET_EDID, req);
    if (!r || r.length < 24 + 8) return null;
    return r.subarray(24);
  }

  scanout(scanout: number, width: number, height: number): void {
    this.send(Msg.SCANOUT, [u32s(scanout, width, height)]);
  }

  /**
   * UPDATE without copies of our own: the message is gathered from the header and the store's
   * rows (one part for full-width rects, sent by page reference when large). Formats that are not
   * B,G,R,X are converted once, into a store of our own that is sent the same way.
   */
  update(scanout: number, x: number, y: number, width: number, height: number, src: PixelSource): boolean {
    if (this.closed) return false;
    const pixelBytes = width * height * 4;
    if (this.backlog + HDR + 20 + pixelBytes > MAX_BACKLOG) {
      this.remember(scanout, x, y, width, height);
      return false;
    }
    this.queue(u32s(Msg.UPDATE, 0, 20 + pixelBytes, scanout, x, y, width, height), null);
    const bytes = src.store.bytes;
    if (src.swizzle === 'none' && width === src.pitch) {
      const at = src.y * src.pitch * 4;
      this.queue(bytes.subarray(at, at + pixelBytes), src.store);
    } else if (src.swizzle === 'none' && height <= MAX_PARTS) {
      for (let row = 0; row < height; row++) {
        const at = ((src.y + row) * src.pitch + src.x) * 4;
        this.queue(bytes.subarray(at, at + width * 4), src.store);
      }
    } else {
      let conv = this.convertStore;
      conv = conv && conv.byteLength >= pixelBytes ? conv.forWrite(true) : new PixelStore(Math.max(pixelBytes, 64 << 10));
      this.convertStore = conv;
      for (let row = 0; row < height; row++) {
        convertWords(src.swizzle, src.store.words, (src.y + row) * src.pitch + src.x, conv.words, row * width, width);
      }
      this.queue(conv.bytes.subarray(0, pixelBytes), conv);
    }
    this.scheduleFlush();
    return true;
  }

  /** Gathered like update(): the image goes out from the caller's store, by page reference. */
  cursorUpdate(scanout: number, x: number, y: number, hotX: number, hotY: number, image: PixelStore): void {
    if (this.closed) return;
    this.queue(u32s(Msg.CURSOR_UPDATE, 0, 20 + CURSOR_BYTES, scanout, x, y, hotX, hotY), null);
    this.queue(image.bytes.subarray(0, CURSOR_BYTES), image);
    this.scheduleFlush();
  }

  cursorMove(scanout: number, x: number, y: number): void {
    this.send(Msg.CURSOR_POS, [u32s(scanout, x, y)]);
  }

  cursorHide(scanout: number, x: number, y: number): void {
    this.send(Msg.CURSOR_POS_HIDE, [u32s(scanout, x, y)]);
  }

  // --- plumbing ---

  private request(type: number, payload: Uint8Array | null): Promise<Uint8Array | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const p: Pending = {
        request: type,
        resolve,
        timer: setTimeout(() => {
          const i = this.pending.indexOf(p);
          if (i >= 0) this.pending.splice(i, 1);
          log.warn(`display: no reply to request ${type} within ${REPLY_TIMEOUT_MS} ms`);
          resolve(null);
        }, REPLY_TIMEOUT_MS),
      };
      this.pending.push(p);
      this.send(type, payload ? [payload] : []);
    });
  }

  /** A message of our own bytes (copied: these are small). */
  private send(type: number, parts: Uint8Array[]): void {
    if (this.closed) return;
    let size = 0;
    for (const p of parts) size += p.byteLength;
    const msg = new Uint8Array(HDR + size);
    putU32(msg, 0, type);
    putU32(msg, 8, size);
    let at = HDR;
    for (const p of parts) {
      msg.set(p, at);
      at += p.byteLength;
    }
    this.queue(msg, null);
    this.scheduleFlush();
  }

  /** Append a part; a view of a store lends the store until it has left (see stillReading). */
  private queue(bytes: Uint8Array, store: PixelStore | null): void {
    if (store) {
      const loan = this.loans.get(store) ?? this.lend(store);
      if (loan) {
        loan.queued++;
        store.reader = this;
      } else {
        bytes = bytes.slice(); // too much lent already: these bytes become our own
        store = null;
      }
    }
    const byReference = store !== null && this.pipe !== null && bytes.byteLength >= BY_REFERENCE_MIN;
    this.out.push({ bytes, store, byReference });
    this.backlog += bytes.byteLength;
  }

  /**
   * Everything queued while a batch of commands runs leaves in as few writes as possible: at
   * flush() (the backend calls it before notifying the guest) or at the end of the current task
   * at the latest.
   */
  private scheduleFlush(): void {
    // Enough for QEMU to start on while we go on with the batch: send it now (both CPUs work).
    if (this.backlog >= EARLY_FLUSH && !this.waitingWritable) {
      this.flush();
      return;
    }
    if (!this.flushScheduled && !this.waitingWritable) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Send what is queued, as far as the socket takes it now. */
  flush(): void {
    this.flushScheduled = false;
    if (!this.waitingWritable && this.out.length > 0) this.flushQueue();
  }

  private flushQueue(): void {
    for (;;) {
      if (this.closed) return;
      // Bytes in the pipe come next in the stream: nothing else may pass them.
      if (this.inPipe > 0) {
        const r = native().spliceOut(this.pipe![0], this.fd, this.inPipe);
        if (!this.took(r, 'splice')) return;
        this.inPipe -= r;
        continue;
      }
      if (this.out.length === 0) break;
      const run = this.pipe ? this.referenceRun() : null;
      if (run) {
        const r = native().vmspliceIn(this.pipe![1], run);
        if (r < 0) {
          // A kernel that cannot: copy into the socket from now on, and say so once.
          log.warn(`display: zero-copy update failed (${errnoName(r)}); pixels are copied into the socket from now on`);
          this.closePipe();
          for (const p of this.out) p.byReference = false;
          continue;
        }
        this.inPipe += r;
        this.consumed(r, true);
        continue;
      }
      let n = 1;
      while (n < this.out.length && n < MAX_PARTS && !this.out[n].byReference) n++;
      const bufs = new Array<Uint8Array>(n);
      for (let i = 0; i < n; i++) bufs[i] = this.out[i].bytes;
      const r = native().sendMsg(this.fd, bufs, null);
      if (!this.took(r, 'write')) return;
      this.consumed(r);
    }
    if (this.waitingWritable) {
      this.waitingWritable = false;
      this.watcher.start(native().READABLE);
    }
    this.resendDropped();
  }

  /** Check a write's result: true if it moved bytes; on a full socket, wait for it to drain. */
  private took(r: number, what: string): boolean {
    const n = native();
    if (r > 0) return true;
    if (r === -n.EAGAIN || r === 0) {
      if (!this.waitingWritable) this.watcher.start(n.READABLE | n.WRITABLE);
      this.waitingWritable = true;
      return false;
    }
    log.warn(`display: socket ${what} failed (${errnoName(r)}); display disconnected`);
    this.close();
    return false;
  }

  /**
   * The parts at the head of the queue for one vmsplice, when they include pixels sent by
   * reference: those as they are, our own bytes copied into the arena (page memory too). Null when
   * the head has nothing to send by reference (sendmsg copies it just as well, in one call).
   */
  private referenceRun(): Uint8Array[] | null {
    let n = 0, need = 0, any = false;
    while (n < this.out.length && n < MAX_PARTS) {
      const p = this.out[n];
      if (!p.byReference) {
        const len = p.bytes.byteLength;
        if (len > ARENA_SIZE) break;
        if (this.arenaAt + need + len > ARENA_SIZE) {
          if (need > 0) break; // the rest goes in the next run
          // Bytes already in the old arena may still be unread: take a fresh one, never rewind.
          this.arena = new PixelStore(ARENA_SIZE);
          this.arenaAt = 0;
        }
        need += len;
      }
      any ||= p.byReference;
      n++;
    }
    if (!any) return null;
    const run = new Array<Uint8Array>(n);
    for (let i = 0; i < n; i++) {
      const p = this.out[i];
      if (!p.byReference) {
        const at = this.arenaAt, len = p.bytes.byteLength;
        this.arena!.bytes.set(p.bytes, at);
        this.arenaAt = at + len;
        if (p.store) this.partLeft(p.store); // copied: the store is free of this part
        p.bytes = this.arena!.bytes.subarray(at, at + len);
        p.store = null;
        p.byReference = true;
      }
      run[i] = p.bytes;
    }
    return run;
  }

  /** r bytes of the queue's head have left (into the socket, or by reference into the pipe). */
  private consumed(r: number, byReference = false): void {
    this.backlog -= r;
    while (r > 0) {
      const head = this.out[0];
      if (byReference && head.store) this.loans.get(head.store)!.referenced = true;
      if (r < head.bytes.byteLength) {
        head.bytes = head.bytes.subarray(r);
        return;
      }
      r -= head.bytes.byteLength;
      this.out.shift();
      if (head.store) this.partLeft(head.store);
    }
  }

  private partLeft(store: PixelStore): void {
    const loan = this.loans.get(store)!;
    if (--loan.queued === 0 && !loan.referenced) this.endLoan(store);
  }

  private remember(scanout: number, x: number, y: number, w: number, h: number): void {
    const d = this.dropped.get(scanout);
    if (d) {
      d.x0 = Math.min(d.x0, x); d.y0 = Math.min(d.y0, y);
      d.x1 = Math.max(d.x1, x + w); d.y1 = Math.max(d.y1, y + h);
    } else {
      log.warn(`display: QEMU is not reading; holding back updates of scanout ${scanout}`);
      this.dropped.set(scanout, { x0: x, y0: y, x1: x + w, y1: y + h });
    }
  }

  private resendDropped(): void {
    if (this.dropped.size === 0 || !this.onDrained) return;
    const all = [...this.dropped];
    this.dropped.clear();
    for (const [id, d] of all) this.onDrained(id, d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0);
  }

  private onEvents(ev: number): void {
    if (this.closed) return;
    const n = native();
    if (ev < 0) {
      this.close();
      return;
    }
    if (ev & n.WRITABLE) this.flushQueue();
    if (ev & n.READABLE) this.readReplies();
  }

  private readReplies(): void {
    const n = native();
    for (;;) {
      const got = n.recvMsg(this.fd, this.inBuf, this.inLen, this.inBuf.length - this.inLen, this.fdsOut);
      if (got > 0) for (let i = 1; i <= this.fdsOut[0]; i++) n.close(this.fdsOut[i]); // QEMU sends no fds here
      if (got === -n.EAGAIN) return;
      if (got <= 0) {
        if (got < 0) log.warn(`display: socket read failed (${got})`);
        else log.info('display: QEMU closed the display socket');
        this.close();
        return;
      }
      this.inLen += got;
      while (this.inLen >= HDR) {
        const v = new DataView(this.inBuf.buffer, 0, HDR);
        const type = v.getUint32(0, true), flags = v.getUint32(4, true), size = v.getUint32(8, true);
        if (size > MAX_REPLY) {
          log.warn(`display: reply of ${size} bytes is too large; closing the display socket`);
          this.close();
          return;
        }
        if (this.inLen < HDR + size) break;
        const payload = this.inBuf.slice(HDR, HDR + size);
        this.inBuf.copyWithin(0, HDR + size, this.inLen);
        this.inLen -= HDR + size;
        this.onReply(type, flags, payload);
      }
    }
  }

  private onReply(type: number, flags: number, payload: Uint8Array): void {
    if (!(flags & FLAG_REPLY)) {
      log.warn(`display: unexpected request ${type} from QEMU ignored`);
      return;
    }
    const i = this.pending.findIndex((p) => p.request === type);
    if (i < 0) {
      log.debug(`display: late or unexpected reply ${type} ignored`);
      return;
    }
    const [p] = this.pending.splice(i, 1);
    clearTimeout(p.timer);
    p.resolve(payload);
  }
}

/**
 * Little-endian u32s as bytes. Stored byte by byte: a small Uint8Array lives on V8's heap until its
 * .buffer is asked for (a DataView over it), which would cost a malloc per message header.
 */
function u32s(...values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 4);
  for (let i = 0; i < values.length; i++) putU32(b, 4 * i, values[i]);
  return b;
}

function putU32(b: Uint8Array, at: number, x: number): void {
  b[at] = x;
  b[at + 1] = x >>> 8;
  b[at + 2] = x >>> 16;
  b[at + 3] = x >>> 24;
}
