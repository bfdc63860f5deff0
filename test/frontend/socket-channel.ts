/**
 * Framed messages over a non-blocking AF_UNIX stream socket, with SCM_RIGHTS fds.
 *
 * vhost-user (control and back-end request channels) and the vhost-user-gpu display protocol use
 * the same framing: a 12-byte header `request u32, flags u32, size u32` (host order; this file
 * assumes a little-endian host) followed by `size` payload bytes. Reads happen on the libuv loop
 * (native.watch), never blocking it, so one process can play both ends of a conversation that the
 * peer conducts synchronously.
 */
import { native, errnoName, watchFd } from '../../src/native.js';
import type { FdWatcher, NativeAddon } from '../../src/native.js';

export const HEADER_SIZE = 12;
const MAX_FDS = 8;
const MIN_READ = 64 * 1024;
/** Guard against a corrupt size field (a 4K x8r8g8b8 UPDATE is ~33 MB). */
const MAX_MESSAGE = 256 * 1024 * 1024;

/**
 * Called once per complete message. The payload is `channel.bytes[payloadOff, payloadOff+size)`;
 * it is only valid during the call (the buffer is reused). `fds` are owned by the handler.
 */
export type MessageHandler = (
  request: number, flags: number, size: number, payloadOff: number, fds: number[] | null,
) => void;

export class SocketChannel {
  /** Receive buffer: read payloads from here (and `dv`) inside the handler only. */
  bytes = new Uint8Array(MIN_READ * 2);
  dv = new DataView(this.bytes.buffer);
  closed = false;
  /** Why the channel closed: null for a clean EOF or a local close(). */
  closeError: Error | null = null;
  onClose: ((err: Error | null) => void) | null = null;

  private readonly addon: NativeAddon = native();
  private readonly watcher: FdWatcher;
  private readonly fdsOut = new Int32Array(MAX_FDS + 1);
  private start = 0;
  private end = 0;
  /** Absolute stream offset of bytes[start]; fds are tagged with the stream offset they arrived at. */
  private streamPos = 0;
  private pendingFds: number[] = [];
  private pendingFdTags: number[] = [];
  private paused = false;
  private inHandler = false;
  private readonly outQueue: { data: Uint8Array; fds: number[] | null }[] = [];
  private readonly header = new Uint8Array(HEADER_SIZE);
  private readonly headerDv = new DataView(this.header.buffer);
  private readonly oneBuf: Uint8Array[] = [this.header];
  private readonly twoBufs: Uint8Array[] = [this.header, this.header];

  constructor(readonly fd: number, private readonly handler: MessageHandler) {
    this.addon.setNonBlocking(fd, true);
    this.watcher = watchFd('watch socket', fd, (events) => this.onEvents(events));
    this.watcher.start(this.addon.READABLE);
  }

  /** Stop reading (messages stay in the kernel buffer; the peer's writes eventually block). */
  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.updateWatch();
  }

  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.updateWatch();
    // Messages buffered before the pause; from inside a handler the running parse loop goes on.
    if (!this.inHandler) this.parse();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Send header + payload parts (+ fds) as one sendmsg. Returns false if the channel is broken. */
  sendMessage(request: number, flags: number, payload: readonly Uint8Array[] | Uint8Array | null,
    fds: readonly number[] | null = null): boolean {
    let size = 0;
    let parts: Uint8Array[];
    if (payload === null) {
      parts = this.oneBuf;
    } else if (payload instanceof Uint8Array) {
      size = payload.length;
      parts = this.twoBufs;
      parts[1] = payload;
    } else {
      parts = [this.header];
      for (const p of payload) { size += p.length; parts.push(p); }
    }
    this.headerDv.setUint32(0, request, true);
    this.headerDv.setUint32(4, flags, true);
    this.headerDv.setUint32(8, size, true);
    return this.sendRaw(parts, fds, HEADER_SIZE + size);
  }

  /** Send arbitrary bytes (no framing added). Returns false if the channel is broken. */
  sendRaw(parts: readonly Uint8Array[], fds: readonly number[] | null = null, total = -1): boolean {
    if (this.closed) return false;
    if (total < 0) { total = 0; for (const p of parts) total += p.length; }
    if (this.outQueue.length === 0) {
      const n = this.addon.sendMsg(this.fd, parts, fds && fds.length > 0 ? fds : null);
      if (n === total) return true;
      if (n < 0 && n !== -this.addon.EAGAIN && n !== -this.addon.EINTR) {
        this.fail(new Error(`sendmsg failed: ${errnoName(n)}`));
        return false;
      }
      // Partial write or EAGAIN: queue the rest (fds went out with the first byte, if any).
      this.queueOut(parts, n > 0 ? n : 0, n > 0 ? null : fds);
    } else {
      this.queueOut(parts, 0, fds);
    }
    this.updateWatch();
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    this.addon.close(this.fd);
    for (const fd of this.pendingFds) this.addon.close(fd);
    this.pendingFds.length = 0;
    for (const q of this.outQueue) q.fds?.forEach((fd) => this.addon.close(fd));
    this.outQueue.length = 0;
    this.onClose?.(this.closeError);
  }

  private fail(err: Error | null): void {
    if (this.closed) return;
    this.closeError = err;
    this.close();
  }

  private queueOut(parts: readonly Uint8Array[], skip: number, fds: readonly number[] | null): void {
    let total = 0;
    for (const p of parts) total += p.length;
    const data = new Uint8Array(total - skip);
    let at = 0;
    let toSkip = skip;
    for (const p of parts) {
      if (toSkip >= p.length) { toSkip -= p.length; continue; }
      data.set(toSkip > 0 ? p.subarray(toSkip) : p, at);
      at += p.length - toSkip;
      toSkip = 0;
    }
    // The caller may close its fds right after sending; keep our own duplicates until they go out.
    const dups = fds && fds.length > 0 ? fds.map((fd) => this.addon.dup(fd)) : null;
    this.outQueue.push({ data, fds: dups });
  }

  private updateWatch(): void {
    if (this.closed) return;
    const events = (this.paused ? 0 : this.addon.READABLE) | (this.outQueue.length > 0 ? this.addon.WRITABLE : 0);
    if (events === 0) this.watcher.stop();
    else this.watcher.start(events);
  }

  private onEvents(events: number): void {
    if (this.closed) return;
    if (events < 0) {
      this.fail(new Error(`poll failed: ${errnoName(events)}`));
      return;
    }
    if (events & this.addon.WRITABLE) this.flushOut();
    if ((events & this.addon.READABLE) && !this.paused) this.readAll();
  }

  private flushOut(): void {
    while (this.outQueue.length > 0 && !this.closed) {
      const head = this.outQueue[0]!;
      const n = this.addon.sendMsg(this.fd, [head.data], head.fds);
      if (n === -this.addon.EAGAIN || n === -this.addon.EINTR) return;
      if (n < 0) { this.fail(new Error(`sendmsg failed: ${errnoName(n)}`)); return; }
      head.fds?.forEach((fd) => this.addon.close(fd));
      head.fds = null;
      if (n < head.data.length) { head.data = head.data.subarray(n); return; }
      this.outQueue.shift();
    }
    this.updateWatch();
  }

  private readAll(): void {
    while (!this.closed && !this.paused) {
      this.reserve(MIN_READ);
      this.fdsOut[0] = 0; // the addon leaves the count untouched when recvmsg fails
      const n = this.addon.recvMsg(this.fd, this.bytes, this.end, this.bytes.length - this.end, this.fdsOut);
      if (n === -this.addon.EAGAIN) return;
      if (n === -this.addon.EINTR) continue;
      if (n < 0) { this.fail(new Error(`recvmsg failed: ${errnoName(n)}`)); return; }
      const nfds = this.fdsOut[0]!;
      if (nfds > 0) {
        // The kernel ends a read right after the skb that carried fds, so they belong to the
        // message that ends at this stream offset.
        const tag = this.streamPos + (this.end + n - this.start);
        for (let i = 1; i <= nfds; i++) { this.pendingFds.push(this.fdsOut[i]!); this.pendingFdTags.push(tag); }
      }
      if (n === 0) { this.parse(); this.fail(null); return; }
      this.end += n;
      this.parse();
    }
  }

  /** Make room for `len` more bytes after `end` (compacting, then growing). */
  private reserve(len: number): void {
    if (this.start === this.end) { this.start = this.end = 0; }
    if (this.bytes.length - this.end >= len) return;
    if (this.start > 0) {
      this.bytes.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      if (this.bytes.length - this.end >= len) return;
    }
    let cap = this.bytes.length * 2;
    while (cap - this.end < len) cap *= 2;
    const grown = new Uint8Array(cap);
    grown.set(this.bytes.subarray(0, this.end));
    this.bytes = grown;
    this.dv = new DataView(grown.buffer);
  }

  private parse(): void {
    while (!this.closed && !this.paused && this.end - this.start >= HEADER_SIZE) {
      const request = this.dv.getUint32(this.start, true);
      const flags = this.dv.getUint32(this.start + 4, true);
      const size = this.dv.getUint32(this.start + 8, true);
      if (size > MAX_MESSAGE) {
        this.fail(new Error(`message ${request} claims ${size} payload bytes`));
        return;
      }
      const total = HEADER_SIZE + size;
      if (this.end - this.start < total) {
        this.reserve(total - (this.end - this.start));
        return;
      }
      const endPos = this.streamPos + total;
      let fds: number[] | null = null;
      while (this.pendingFds.length > 0 && this.pendingFdTags[0]! <= endPos) {
        (fds ??= []).push(this.pendingFds.shift()!);
        this.pendingFdTags.shift();
      }
      const payloadOff = this.start + HEADER_SIZE;
      this.start += total;
      this.streamPos = endPos;
      this.inHandler = true;
      try {
        this.handler(request, flags, size, payloadOff, fds);
      } finally {
        this.inHandler = false;
      }
    }
  }
}
