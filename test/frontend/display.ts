/**
 * QEMU's end of the vhost-user-gpu display socket (protocols.md §3): answers the back-end's
 * queries like QEMU does, keeps a framebuffer surface per scanout (SCANOUT + composited UPDATEs)
 * and records events for tests to wait on. Reads run on the event loop; pause() stops reading
 * to imitate a stalled QEMU display.
 */
import { native, check } from '../../src/native.js';
import { SocketChannel } from './socket-channel.js';
import { DisplayMsg as M, DISPLAY_FLAG_REPLY, GpuResp, GPU_MAX_SCANOUTS } from './constants.js';
import { makeEdid } from './edid.js';
import { EventLog } from './event-log.js';

export interface DisplayMode { x?: number; y?: number; width: number; height: number; enabled?: boolean; flags?: number }

export interface DisplayPeerOptions {
  /** What GET_DISPLAY_INFO reports; its length is the number of valid scanouts for GET_EDID. Default: one enabled 1024x768. */
  displays?: DisplayMode[];
  /** Answer to GET_PROTOCOL_FEATURES. Default 0x3 (EDID | DMABUF2), as current QEMU. */
  protocolFeatures?: bigint;
  /** EDID bytes for a valid scanout; default makeEdid(width, height). */
  edid?: (scanoutId: number, mode: DisplayMode) => Uint8Array;
  /** Keep per-scanout surfaces and composite UPDATEs. Default true. */
  surfaces?: boolean;
  /** Record events for waitFor/take. Default true (counters are always kept). */
  recordEvents?: boolean;
  /** Per-type cap of unconsumed events (oldest dropped beyond it). Default 4096. */
  maxQueuedEvents?: number;
  /** Do not answer DMABUF_UPDATE until releaseDmabufUpdates(). */
  holdDmabufUpdates?: boolean;
}

export interface DisplayEvent {
  type: number;
  seq: number;
  scanoutId: number;
  x: number; y: number; width: number; height: number;
  hotX?: number; hotY?: number;
  /** CURSOR_UPDATE: the 64x64 a8r8g8b8 image (16384 bytes). */
  image?: Uint8Array;
  /** SET_PROTOCOL_FEATURES. */
  features?: bigint;
  /** DMABUF_SCANOUT(2): the received fd (owned by the peer; closed when replaced or on close()). */
  fd?: number;
  fdWidth?: number; fdHeight?: number; fdStride?: number; fdFlags?: number; fourcc?: number; modifier?: bigint;
}

export interface Surface { width: number; height: number; stride: number; data: Uint8Array }

export interface CursorState { scanoutId: number; x: number; y: number; hotX: number; hotY: number; visible: boolean; image: Uint8Array | null }

const DISPLAY_INFO_SIZE = 408;
const EDID_RESP_SIZE = 1056;
const CURSOR_IMAGE = 64 * 64 * 4;

export class DisplayPeer {
  readonly channel: SocketChannel;
  displays: DisplayMode[];
  protocolFeaturesOffer: bigint;
  /** Value of the last SET_PROTOCOL_FEATURES, or null. */
  protocolFeatures: bigint | null = null;
  /** Messages received, indexed by message type. */
  readonly counts = new Uint32Array(32);
  /** Pixel bytes received in UPDATE messages. */
  updateBytes = 0;
  /** GET_EDID requests left unanswered (invalid scanout), as QEMU does. */
  edidDropped = 0;
  readonly cursor: CursorState = { scanoutId: 0, x: 0, y: 0, hotX: 0, hotY: 0, visible: false, image: null };
  recordEvents: boolean;
  /**
   * Called after every message has been handled (counters, updateBytes, cursor and surfaces
   * already updated), with its type and payload size. For benchmarks that time UPDATE or
   * CURSOR_UPDATE arrival without recording events; keep it cheap, it runs on every message.
   */
  onHandled: ((type: number, size: number) => void) | null = null;

  private readonly surfaces: (Surface | null)[] = new Array(GPU_MAX_SCANOUTS).fill(null);
  private readonly dmabufFds: (number | null)[] = new Array(GPU_MAX_SCANOUTS).fill(null);
  private readonly dmabufInfo: (DisplayEvent | null)[] = new Array(GPU_MAX_SCANOUTS).fill(null);
  private readonly log: EventLog<DisplayEvent>;
  private seq = 0;
  private current: DisplayEvent | null = null;
  private heldDmabufUpdates = 0;
  private readonly keepSurfaces: boolean;
  private readonly edidFor: (id: number, m: DisplayMode) => Uint8Array;
  private readonly infoReply = new Uint8Array(DISPLAY_INFO_SIZE);
  private readonly edidReply = new Uint8Array(EDID_RESP_SIZE);
  private readonly u64 = new Uint8Array(8);

  /** A socketpair: the peer keeps one end; give `backendFd` to the back-end (GPU_SET_SOCKET). */
  static pair(opts: DisplayPeerOptions = {}): { peer: DisplayPeer; backendFd: number } {
    const p = native().socketPair();
    if (typeof p === 'number') { check('socketpair', p); throw new Error('unreachable'); }
    return { peer: new DisplayPeer(p[0], opts), backendFd: p[1] };
  }

  constructor(fd: number, private readonly opts: DisplayPeerOptions = {}) {
    this.displays = opts.displays ?? [{ width: 1024, height: 768, enabled: true }];
    this.protocolFeaturesOffer = opts.protocolFeatures ?? 0x3n;
    this.keepSurfaces = opts.surfaces ?? true;
    this.recordEvents = opts.recordEvents ?? true;
    this.log = new EventLog<DisplayEvent>(opts.maxQueuedEvents ?? 4096, (t) => this.count(t), () => `(display counts: ${this.describeCounts()})`);
    this.edidFor = opts.edid ?? ((_id, m) => makeEdid(m.width, m.height));
    this.channel = new SocketChannel(fd, (req, flags, size, off, fds) => this.onMessage(req, flags, size, off, fds));
    this.channel.onClose = (err) => this.log.fail(err ?? new Error('display socket closed'));
  }

  count(type: number): number { return this.counts[type] ?? 0; }
  surface(scanoutId: number): Surface | null { return this.surfaces[scanoutId] ?? null; }

  /** Pixel at (x, y) of a scanout surface as a little-endian u32 (x8r8g8b8 → 0xXXRRGGBB). */
  pixel(scanoutId: number, x: number, y: number): number {
    const s = this.surfaces[scanoutId];
    if (!s || x >= s.width || y >= s.height) throw new RangeError(`no pixel (${x},${y}) on scanout ${scanoutId}`);
    const o = y * s.stride + x * 4;
    return (s.data[o]! | (s.data[o + 1]! << 8) | (s.data[o + 2]! << 16) | (s.data[o + 3]! << 24)) >>> 0;
  }

  dmabufFd(scanoutId: number): number | null { return this.dmabufFds[scanoutId] ?? null; }

  /** The last DMABUF_SCANOUT(2) event of a scanout (null once disabled). */
  dmabufScanout(scanoutId: number): DisplayEvent | null { return this.dmabufInfo[scanoutId] ?? null; }

  /** Copy of the current dma-buf of a scanout (fd_stride * fd_height bytes, via mmap), or null. */
  readDmabuf(scanoutId: number): Uint8Array | null {
    const fd = this.dmabufFds[scanoutId], info = this.dmabufInfo[scanoutId];
    if (fd === null || fd === undefined || !info) return null;
    const len = (info.fdStride ?? 0) * (info.fdHeight ?? 0);
    const addon = native();
    const map = addon.mmap(fd, len, 0);
    if (typeof map === 'number') { check('mmap dma-buf', map); return null; }
    try {
      const ab = addon.view(map.addr, 0, len);
      if (typeof ab === 'number') { check('view dma-buf', ab); return null; }
      return new Uint8Array(ab).slice();
    } finally {
      addon.unmap(map.addr);
    }
  }

  /** Stop reading the socket (the back-end's writes back up, as with a stalled QEMU). */
  pause(): void { this.channel.pause(); }
  resume(): void { this.channel.resume(); }

  /** Answer `n` (default all) held DMABUF_UPDATEs. */
  releaseDmabufUpdates(n = this.heldDmabufUpdates): void {
    for (; n > 0 && this.heldDmabufUpdates > 0; n--, this.heldDmabufUpdates--) this.channel.sendMessage(M.DMABUF_UPDATE, DISPLAY_FLAG_REPLY, null);
  }

  get pendingDmabufUpdates(): number { return this.heldDmabufUpdates; }

  /**
   * The next event of `type` matching `pred`: events of that type received earlier and not yet
   * consumed count (so call it after the command that causes the event); it consumes the match
   * and every older event of that type.
   */
  waitFor(type: number, pred?: (e: DisplayEvent) => boolean, timeoutMs = 5000): Promise<DisplayEvent> {
    return this.log.waitFor(type, pred, timeoutMs);
  }

  /** Resolves once `count(type) >= n` (display messages can trail the command completions). */
  waitForCount(type: number, n: number, timeoutMs = 5000): Promise<void> { return this.log.waitForCount(type, n, timeoutMs); }

  /** The oldest unconsumed event of `type`, without waiting. */
  take(type: number): DisplayEvent | undefined { return this.log.take(type); }
  /** Unconsumed events of `type` (not removed). */
  pending(type: number): readonly DisplayEvent[] { return this.log.pending(type); }
  clearEvents(): void { this.log.clear(); }
  /** Events dropped because more than maxQueuedEvents of one type were left unconsumed. */
  get eventsDropped(): number { return this.log.dropped; }

  close(): void {
    this.channel.close();
    for (let i = 0; i < this.dmabufFds.length; i++) this.setDmabufFd(i, null);
  }

  describeCounts(): string {
    const names = Object.entries(M);
    return names.filter(([, v]) => this.counts[v]! > 0).map(([k, v]) => `${k}=${this.counts[v]}`).join(' ') || 'none';
  }

  // --- message handling -----------------------------------------------------------------------

  private onMessage(req: number, _flags: number, size: number, off: number, fds: number[] | null): void {
    const dv = this.channel.dv;
    this.counts[req < 32 ? req : 0]!++;
    const u32 = (i: number) => (size >= i * 4 + 4 ? dv.getUint32(off + i * 4, true) : 0);
    switch (req) {
      case M.GET_PROTOCOL_FEATURES:
        new DataView(this.u64.buffer).setBigUint64(0, this.protocolFeaturesOffer, true);
        this.channel.sendMessage(req, DISPLAY_FLAG_REPLY, this.u64);
        this.record(req, 0, 0, 0, 0, 0);
        break;
      case M.SET_PROTOCOL_FEATURES: {
        this.protocolFeatures = size >= 8 ? dv.getBigUint64(off, true) : 0n;
        const e = this.record(req, 0, 0, 0, 0, 0);
        if (e) e.features = this.protocolFeatures;
        break;
      }
      case M.GET_DISPLAY_INFO:
        this.channel.sendMessage(req, DISPLAY_FLAG_REPLY, this.buildDisplayInfo());
        this.record(req, 0, 0, 0, 0, 0);
        break;
      case M.GET_EDID: {
        const id = u32(0);
        const mode = this.displays[id];
        if (mode) this.channel.sendMessage(req, DISPLAY_FLAG_REPLY, this.buildEdid(id, mode));
        else this.edidDropped++; // QEMU logs "invalid scanout" and never answers
        this.record(req, id, 0, 0, 0, 0);
        break;
      }
      case M.SCANOUT: {
        const id = u32(0), w = u32(1), h = u32(2);
        if (this.keepSurfaces && id < GPU_MAX_SCANOUTS) {
          this.surfaces[id] = w === 0 ? null : { width: w, height: h, stride: w * 4, data: new Uint8Array(w * h * 4) };
        }
        this.record(req, id, 0, 0, w, h);
        break;
      }
      case M.UPDATE: {
        const id = u32(0), x = u32(1), y = u32(2), w = u32(3), h = u32(4);
        const pixels = Math.max(0, size - 20);
        this.updateBytes += pixels;
        if (this.keepSurfaces) this.composite(id, x, y, w, h, off + 20, pixels);
        this.record(req, id, x, y, w, h);
        break;
      }
      case M.CURSOR_POS:
      case M.CURSOR_POS_HIDE: {
        const c = this.cursor;
        c.scanoutId = u32(0); c.x = u32(1); c.y = u32(2); c.visible = req === M.CURSOR_POS;
        this.record(req, c.scanoutId, c.x, c.y, 0, 0);
        break;
      }
      case M.CURSOR_UPDATE: {
        const c = this.cursor;
        c.scanoutId = u32(0); c.x = u32(1); c.y = u32(2); c.hotX = u32(3); c.hotY = u32(4); c.visible = true;
        c.image = this.channel.bytes.slice(off + 20, off + 20 + Math.min(CURSOR_IMAGE, Math.max(0, size - 20)));
        const e = this.record(req, c.scanoutId, c.x, c.y, 64, 64);
        if (e) { e.hotX = c.hotX; e.hotY = c.hotY; e.image = c.image; }
        break;
      }
      case M.DMABUF_SCANOUT:
      case M.DMABUF_SCANOUT2: {
        const id = u32(0);
        const fd = fds && fds.length > 0 ? fds.shift()! : null;
        if (id < GPU_MAX_SCANOUTS) this.setDmabufFd(id, fd); else if (fd !== null) native().close(fd);
        if (this.keepSurfaces && id < GPU_MAX_SCANOUTS) this.surfaces[id] = null;
        // Built even when events are not recorded: readDmabuf needs the layout.
        const e: DisplayEvent = this.record(req, id, u32(1), u32(2), u32(3), u32(4)) ?? { type: req, seq: this.seq, scanoutId: id, x: u32(1), y: u32(2), width: u32(3), height: u32(4) };
        if (fd !== null) e.fd = fd;
        e.fdWidth = u32(5); e.fdHeight = u32(6); e.fdStride = u32(7); e.fdFlags = u32(8); e.fourcc = u32(9) | 0;
        if (req === M.DMABUF_SCANOUT2 && size >= 48) e.modifier = dv.getBigUint64(off + 40, true);
        if (id < GPU_MAX_SCANOUTS) this.dmabufInfo[id] = fd === null ? null : e;
        break;
      }
      case M.DMABUF_UPDATE:
        if (this.opts.holdDmabufUpdates) this.heldDmabufUpdates++;
        else this.channel.sendMessage(req, DISPLAY_FLAG_REPLY, null);
        this.record(req, u32(0), u32(1), u32(2), u32(3), u32(4));
        break;
      default:
        this.record(req, 0, 0, 0, 0, 0);
    }
    if (fds) for (const fd of fds) native().close(fd); // fds on messages that carry none
    const e = this.current;
    if (e) { this.current = null; this.log.push(e); }
    this.log.counted();
    this.onHandled?.(req, size);
  }

  private composite(id: number, x: number, y: number, w: number, h: number, src: number, avail: number): void {
    const s = this.surfaces[id];
    if (!s || x >= s.width || y >= s.height) return;
    const rowBytes = w * 4;
    const cols = Math.min(w, s.width - x) * 4;
    const rows = Math.min(h, s.height - y, rowBytes > 0 ? Math.floor(avail / rowBytes) : 0);
    const bytes = this.channel.bytes;
    if (x === 0 && w === s.width && rows > 0) {
      s.data.set(bytes.subarray(src, src + rows * rowBytes), y * s.stride);
      return;
    }
    const addon = native();
    for (let r = 0; r < rows; r++) addon.copy(s.data, (y + r) * s.stride + x * 4, bytes, src + r * rowBytes, cols);
  }

  private record(type: number, scanoutId: number, x: number, y: number, width: number, height: number): DisplayEvent | null {
    this.seq++;
    if (!this.recordEvents) return null;
    // Delivered by onMessage once the caller has filled in the type-specific fields.
    return (this.current = { type, seq: this.seq, scanoutId, x, y, width, height });
  }

  private setDmabufFd(id: number, fd: number | null): void {
    const old = this.dmabufFds[id];
    if (old !== null && old !== undefined) native().close(old);
    this.dmabufFds[id] = fd;
  }

  private buildDisplayInfo(): Uint8Array {
    const b = this.infoReply;
    b.fill(0);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, GpuResp.OK_DISPLAY_INFO, true);
    this.displays.slice(0, GPU_MAX_SCANOUTS).forEach((m, i) => {
      const o = 24 + 24 * i;
      dv.setUint32(o, m.x ?? 0, true); dv.setUint32(o + 4, m.y ?? 0, true);
      dv.setUint32(o + 8, m.width, true); dv.setUint32(o + 12, m.height, true);
      dv.setUint32(o + 16, (m.enabled ?? true) ? 1 : 0, true); dv.setUint32(o + 20, m.flags ?? 0, true);
    });
    return b;
  }

  private buildEdid(id: number, mode: DisplayMode): Uint8Array {
    const b = this.edidReply;
    b.fill(0);
    const dv = new DataView(b.buffer);
    const edid = this.edidFor(id, mode).subarray(0, 1024);
    dv.setUint32(0, GpuResp.OK_EDID, true);
    dv.setUint32(24, edid.length, true);
    b.set(edid, 32);
    return b;
  }
}
