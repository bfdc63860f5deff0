/**
 * QEMU's side of the display: the vhost-user-gpu socket received with GPU_SET_SOCKET
 * (docs/interop/vhost-user-gpu.rst). Requests that QEMU answers wait at most REPLY_TIMEOUT_MS;
 * writes never block: what the socket does not take is queued, and pixel updates beyond
 * MAX_BACKLOG are dropped (the damage is sent again once the socket drains).
 */
import { native, watchFd, type FdWatcher } from '../native.js';
import { log } from '../log.js';
import type { DisplaySink, PixelSource } from '../device/display-sink.js';
import { convertWords } from '../device/formats.js';
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
const HDR = 12;
const PROTOCOL_F_EDID = 1n << 0n;
const REPLY_TIMEOUT_MS = 2000;
const MAX_REPLY = 4096;
const MAX_BACKLOG = 64 << 20;
const SEND_BUFFER = 8 << 20;
/** Buffers per sendmsg (IOV_MAX is 1024). */
const MAX_PARTS = 512;

interface Pending {
  request: number;
  resolve: (payload: Uint8Array | null) => void;
  timer: NodeJS.Timeout;
}

export class DisplayChannel implements DisplaySink {
  private readonly watcher: FdWatcher;
  private closed = false;
  private readonly pending: Pending[] = [];
  /** Bytes QEMU has not taken yet, in order; they may be views of resource pixels (see update). */
  private readonly out: Uint8Array[] = [];
  private backlog = 0;
  private flushScheduled = false;
  private waitingWritable = false;
  private inBuf = new Uint8Array(MAX_REPLY + HDR);
  private inLen = 0;
  private protocolFeatures = 0n;
  private enabledScanouts = 1; // bit mask; scanout 0 always exists
  /** Conversion buffer for formats that are not already B,G,R,X; not reused while queued. */
  private convertBuf = new Uint32Array(0);
  private convertBufQueued = false;
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
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.resolve(null);
    }
    this.out.length = 0;
    this.backlog = 0;
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
   * UPDATE without intermediate copies where the format allows: the message is gathered from
   * the header and the resource's own rows (one part for full-width rects). If the socket does not
   * take it all, the rest stays queued as views of the resource, so QEMU may receive pixels newer
   * than this flush, never older ones or freed memory.
   */
  update(scanout: number, x: number, y: number, width: number, height: number, src: PixelSource): boolean {
    if (this.closed) return false;
    const pixelBytes = width * height * 4;
    if (this.backlog + HDR + 20 + pixelBytes > MAX_BACKLOG) {
      this.remember(scanout, x, y, width, height);
      return false;
    }
    const head = new Uint8Array(HDR + 20);
    const v = new DataView(head.buffer);
    v.setUint32(0, Msg.UPDATE, true);
    v.setUint32(8, 20 + pixelBytes, true);
    v.setUint32(12, scanout, true);
    v.setUint32(16, x, true);
    v.setUint32(20, y, true);
    v.setUint32(24, width, true);
    v.setUint32(28, height, true);
    const parts: Uint8Array[] = [head];
    const w = src.words;
    const bytes = new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
    if (src.swizzle === 'none' && (width === src.pitch || height <= MAX_PARTS)) {
      if (width === src.pitch) {
        const at = src.y * src.pitch * 4;
        parts.push(bytes.subarray(at, at + pixelBytes));
      } else {
        for (let row = 0; row < height; row++) {
          const at = ((src.y + row) * src.pitch + src.x) * 4;
          parts.push(bytes.subarray(at, at + width * 4));
        }
      }
    } else {
      if (this.convertBufQueued || this.convertBuf.length < width * height) {
        this.convertBuf = new Uint32Array(Math.max(width * height, this.convertBufQueued ? 0 : this.convertBuf.length));
      }
      const dst = this.convertBuf;
      for (let row = 0; row < height; row++) {
        convertWords(src.swizzle, w, (src.y + row) * src.pitch + src.x, dst, row * width, width);
      }
      parts.push(new Uint8Array(dst.buffer, 0, pixelBytes));
      this.convertBufQueued = true; // until the queue drains
    }
    this.write(parts);
    return true;
  }

  /** Gathered like update(): the image goes out from the caller's buffer, not a copy of it. */
  cursorUpdate(scanout: number, x: number, y: number, hotX: number, hotY: number, image: Uint32Array): void {
    if (this.closed) return;
    const head = u32s(Msg.CURSOR_UPDATE, 0, 20 + image.byteLength, scanout, x, y, hotX, hotY);
    this.write([head, new Uint8Array(image.buffer, image.byteOffset, image.byteLength)]);
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

  private send(type: number, parts: Uint8Array[]): void {
    if (this.closed) return;
    let size = 0;
    for (const p of parts) size += p.byteLength;
    const msg = new Uint8Array(HDR + size);
    const v = new DataView(msg.buffer);
    v.setUint32(0, type, true);
    v.setUint32(8, size, true);
    let at = HDR;
    for (const p of parts) {
      msg.set(p, at);
      at += p.byteLength;
    }
    this.write([msg]);
  }

  /**
   * Queue parts for QEMU. Everything written while a batch of commands runs leaves in one
   * sendmsg: at flush() (the backend calls it before notifying the guest) or at the end of the
   * current task at the latest.
   */
  private write(parts: Uint8Array[]): void {
    if (this.closed) return;
    for (const p of parts) {
      this.out.push(p);
      this.backlog += p.byteLength;
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

  /** One sendmsg of up to MAX_PARTS parts: bytes sent (0 if the socket is full), or -1 after closing. */
  private sendParts(parts: Uint8Array[]): number {
    const n = native();
    const r = n.sendMsg(this.fd, parts.length > MAX_PARTS ? parts.slice(0, MAX_PARTS) : parts, null);
    if (r === -n.EAGAIN) return 0;
    if (r < 0) {
      log.warn(`display: socket write failed (${r}); display disconnected`);
      this.close();
      return -1;
    }
    return r;
  }

  private flushQueue(): void {
    if (this.closed) return;
    while (this.out.length > 0) {
      let r = this.sendParts(this.out);
      if (r < 0) return;
      if (r === 0) {
        if (!this.waitingWritable) this.watcher.start(native().READABLE | native().WRITABLE);
        this.waitingWritable = true;
        return;
      }
      this.backlog -= r;
      while (r > 0) {
        const head = this.out[0];
        if (r < head.byteLength) {
          this.out[0] = head.subarray(r);
          r = 0;
        } else {
          r -= head.byteLength;
          this.out.shift();
        }
      }
    }
    this.convertBufQueued = false;
    if (this.waitingWritable) {
      this.waitingWritable = false;
      this.watcher.start(native().READABLE);
    }
    this.resendDropped();
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

function u32s(...values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 4);
  const v = new DataView(b.buffer);
  values.forEach((x, i) => v.setUint32(i * 4, x >>> 0, true));
  return b;
}
