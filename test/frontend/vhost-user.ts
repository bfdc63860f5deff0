/**
 * The vhost-user front-end (QEMU's role, protocols.md §2): one request/response helper over the
 * control socket, a method per message, and start(), QEMU's usual bring-up sequence.
 *
 * Replies are read on the event loop, never by blocking it: a C back-end may itself wait on the
 * display socket, which our DisplayPeer answers from the same loop.
 */
import { native, check } from '../../src/native.js';
import { SocketChannel, HEADER_SIZE } from './socket-channel.js';
import {
  VhostUserRequest as Req, VHOST_USER_VERSION, VHOST_USER_FLAG_REPLY, VHOST_USER_FLAG_NEED_REPLY,
  VHOST_USER_VRING_NOFD, ProtocolFeature, BackendRequest, bit,
} from './constants.js';
import type { DriverQueue } from './virtqueue.js';
import { startSequence, startRings } from './vhost-user-start.js';
import { FrontendSharedMemory, parseShmemConfig } from './shared-memory.js';
import type { StartOptions, StartResult, RingStartOptions } from './vhost-user-start.js';

export * from './vhost-user-start.js';

export interface VhostUserMessage { request: number; flags: number; payload: Uint8Array; fds: number[] }

/** One vhost-user memory region as sent on the wire, plus the fd that backs it. */
export interface MemRegionDesc { gpa: number; size: number; userAddr: number; mmapOffset: number; fd: number }

export interface VringAddrs { desc: number; used: number; avail: number; log?: number; flags?: number }

export interface GpuConfig { eventsRead: number; eventsClear: number; numScanouts: number; numCapsets: number }

export class VhostUserError extends Error {
  constructor(readonly request: number, message: string) {
    super(`vhost-user request ${request}: ${message}`);
  }
}

interface Waiter { resolve: (m: VhostUserMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | null }

export class VhostUserFrontend {
  readonly channel: SocketChannel;
  offeredFeatures = 0n;
  features = 0n;
  offeredProtocolFeatures = 0n;
  protocolFeatures = 0n;
  /** With REPLY_ACK negotiated, set NEED_REPLY on every request that has no reply of its own. */
  needReply = true;
  timeoutMs = 5000;
  /** Requests the back-end sent on the SET_BACKEND_REQ_FD channel (their fds closed once handled). */
  readonly backendRequests: VhostUserMessage[] = [];
  /** The SHMEM regions and what is mapped in them (the front-end's view). */
  readonly shmem = new FrontendSharedMemory();
  /**
   * How back-end requests are answered when they ask for a reply: 'answer' (as QEMU does),
   * 'silent' (never: a hung front-end), 'garbage' (a reply to another request id).
   */
  backendReplies: 'answer' | 'silent' | 'garbage' = 'answer';
  readonly closed: Promise<Error | null>;
  private backendChannel: SocketChannel | null = null;
  private waiters: Waiter[] = [];
  private unclaimed: VhostUserMessage[] = [];
  private status = 0;

  /** Blocking connect (fine for a local socket that is already listening). */
  static connect(path: string): VhostUserFrontend {
    return new VhostUserFrontend(check(`connect ${path}`, native().connectUnix(path)));
  }

  constructor(fd: number) {
    this.channel = new SocketChannel(fd, (request, flags, size, off, fds) => {
      const msg = { request, flags, payload: this.channel.bytes.slice(off, off + size), fds: fds ?? [] };
      const w = this.waiters.shift();
      if (w) { if (w.timer) clearTimeout(w.timer); w.resolve(msg); } else this.unclaimed.push(msg);
    });
    this.closed = new Promise((resolve) => {
      this.channel.onClose = (err) => {
        const e = err ?? new Error('the back-end closed the vhost-user connection');
        for (const w of this.waiters) { if (w.timer) clearTimeout(w.timer); w.reject(e); }
        this.waiters = [];
        resolve(err);
      };
    });
  }

  hasProtocolFeature(b: number): boolean { return (this.protocolFeatures & bit(b)) !== 0n; }

  // --- raw access -----------------------------------------------------------------------------

  /** Send bytes as they are (no header added), with optional fds. */
  sendRaw(data: Uint8Array | readonly Uint8Array[], fds: readonly number[] | null = null): void {
    if (!this.channel.sendRaw(data instanceof Uint8Array ? [data] : data, fds)) throw new Error('vhost-user socket is closed');
  }

  /** The next message from the back-end that no request claimed. Rejects on timeout or close. */
  recvReply(timeoutMs = this.timeoutMs): Promise<VhostUserMessage> {
    const m = this.unclaimed.shift();
    if (m) return Promise.resolve(m);
    if (this.channel.closed) return Promise.reject(new Error('vhost-user socket is closed'));
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: null };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no vhost-user message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Resolves true once the back-end has closed the socket, false after timeoutMs. */
  waitClosed(timeoutMs = this.timeoutMs): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.closed.then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); }),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Send one request. kind 'reply': a reply is always expected (GET_*); 'ack': reply only via
   * REPLY_ACK (u64 status; non-zero throws); 'none': no reply.
   */
  async request(request: number, payload: Uint8Array | null, fds: readonly number[] | null,
    kind: 'reply' | 'ack' | 'none'): Promise<VhostUserMessage | null> {
    const ack = kind === 'ack' && this.needReply && this.hasProtocolFeature(ProtocolFeature.REPLY_ACK);
    const flags = VHOST_USER_VERSION | (ack ? VHOST_USER_FLAG_NEED_REPLY : 0);
    if (!this.channel.sendMessage(request, flags, payload, fds)) {
      throw new VhostUserError(request, this.channel.closeError?.message ?? 'socket closed');
    }
    if (kind === 'none' || (kind === 'ack' && !ack)) return null;
    const reply = await this.recvReply();
    if (reply.request !== request) throw new VhostUserError(request, `reply carries request id ${reply.request}`);
    if ((reply.flags & 0x3) !== VHOST_USER_VERSION || !(reply.flags & VHOST_USER_FLAG_REPLY)) {
      throw new VhostUserError(request, `reply flags 0x${reply.flags.toString(16)}`);
    }
    if (kind === 'ack') {
      const status = reply.payload.length >= 8 ? new DataView(reply.payload.buffer).getBigUint64(0, true) : -1n;
      if (status !== 0n) throw new VhostUserError(request, `back-end reported failure (status ${status})`);
    }
    return reply;
  }

  private async getU64(request: number): Promise<bigint> {
    const r = (await this.request(request, null, null, 'reply'))!;
    if (r.payload.length !== 8) throw new VhostUserError(request, `reply size ${r.payload.length}, expected 8`);
    return new DataView(r.payload.buffer).getBigUint64(0, true);
  }

  private async setU64(request: number, v: bigint, fds: readonly number[] | null = null): Promise<void> {
    await this.request(request, u64Bytes(v), fds, 'ack');
  }

  // --- messages -------------------------------------------------------------------------------

  async getFeatures(): Promise<bigint> { return (this.offeredFeatures = await this.getU64(Req.GET_FEATURES)); }
  async setFeatures(f: bigint): Promise<void> { this.features = f; await this.setU64(Req.SET_FEATURES, f); }
  async setOwner(): Promise<void> { await this.request(Req.SET_OWNER, null, null, 'ack'); }
  async resetOwner(): Promise<void> { await this.request(Req.RESET_OWNER, null, null, 'ack'); }
  async getProtocolFeatures(): Promise<bigint> { return (this.offeredProtocolFeatures = await this.getU64(Req.GET_PROTOCOL_FEATURES)); }
  async setProtocolFeatures(f: bigint): Promise<void> {
    // Like QEMU, no NEED_REPLY on the message that negotiates REPLY_ACK itself.
    await this.setU64(Req.SET_PROTOCOL_FEATURES, f);
    this.protocolFeatures = f;
  }
  async getQueueNum(): Promise<number> { return Number(await this.getU64(Req.GET_QUEUE_NUM)); }
  async getMaxMemSlots(): Promise<number> { return Number(await this.getU64(Req.GET_MAX_MEM_SLOTS)); }
  async resetDevice(): Promise<void> {
    await this.request(Req.RESET_DEVICE, null, null, 'ack');
    this.shmem.reset(); // the front-end drops every mapping of a reset device
  }

  /** GET_SHMEM_CONFIG: remembers the region sizes in `shmem` (as QEMU sizes the BAR from them). */
  async getShmemConfig(): Promise<{ nregions: number; sizes: number[] }> {
    const r = (await this.request(Req.GET_SHMEM_CONFIG, null, null, 'reply'))!;
    const cfg = parseShmemConfig(r.payload);
    // QEMU reads the sizes of shmids below nregions only.
    this.shmem.sizes = cfg.sizes.map((size, shmid) => (shmid < cfg.nregions ? size : 0));
    return cfg;
  }
  async getStatus(): Promise<number> { return Number(await this.getU64(Req.GET_STATUS)); }
  async setStatus(s: number): Promise<void> { this.status = s; await this.setU64(Req.SET_STATUS, BigInt(s)); }

  async setMemTable(regions: readonly MemRegionDesc[]): Promise<void> {
    const p = new Uint8Array(8 + 32 * regions.length);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, regions.length, true);
    regions.forEach((r, i) => writeRegion(dv, 8 + 32 * i, r));
    await this.request(Req.SET_MEM_TABLE, p, regions.map((r) => r.fd), 'ack');
  }

  async addMemReg(r: MemRegionDesc): Promise<void> {
    const p = new Uint8Array(40);
    writeRegion(new DataView(p.buffer), 8, r);
    await this.request(Req.ADD_MEM_REG, p, [r.fd], 'ack');
  }

  async remMemReg(r: MemRegionDesc): Promise<void> {
    const p = new Uint8Array(40);
    writeRegion(new DataView(p.buffer), 8, r);
    await this.request(Req.REM_MEM_REG, p, null, 'ack');
  }

  async setVringNum(index: number, num: number): Promise<void> { await this.request(Req.SET_VRING_NUM, vringState(index, num), null, 'ack'); }
  async setVringBase(index: number, base: number): Promise<void> { await this.request(Req.SET_VRING_BASE, vringState(index, base), null, 'ack'); }
  async setVringEnable(index: number, on: boolean): Promise<void> { await this.request(Req.SET_VRING_ENABLE, vringState(index, on ? 1 : 0), null, 'ack'); }

  /** Stops the ring; returns the next avail index the back-end would process. */
  async getVringBase(index: number): Promise<number> {
    const r = (await this.request(Req.GET_VRING_BASE, vringState(index, 0), null, 'reply'))!;
    if (r.payload.length !== 8) throw new VhostUserError(Req.GET_VRING_BASE, `reply size ${r.payload.length}`);
    return new DataView(r.payload.buffer).getUint32(4, true);
  }

  async setVringAddr(index: number, a: VringAddrs): Promise<void> {
    const p = new Uint8Array(40);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, index, true);
    dv.setUint32(4, a.flags ?? 0, true);
    dv.setBigUint64(8, BigInt(a.desc), true);
    dv.setBigUint64(16, BigInt(a.used), true);
    dv.setBigUint64(24, BigInt(a.avail), true);
    dv.setBigUint64(32, BigInt(a.log ?? 0), true);
    await this.request(Req.SET_VRING_ADDR, p, null, 'ack');
  }

  /** fd null sends the 0x100 "no fd" bit (poll mode). */
  async setVringKick(index: number, fd: number | null): Promise<void> { await this.setVringFd(Req.SET_VRING_KICK, index, fd); }
  async setVringCall(index: number, fd: number | null): Promise<void> { await this.setVringFd(Req.SET_VRING_CALL, index, fd); }
  async setVringErr(index: number, fd: number | null): Promise<void> { await this.setVringFd(Req.SET_VRING_ERR, index, fd); }

  private async setVringFd(request: number, index: number, fd: number | null): Promise<void> {
    await this.setU64(request, BigInt(index | (fd === null ? VHOST_USER_VRING_NOFD : 0)), fd === null ? null : [fd]);
  }

  async getConfig(offset: number, size: number, flags = 0): Promise<Uint8Array> {
    const p = new Uint8Array(12 + size);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, offset, true); dv.setUint32(4, size, true); dv.setUint32(8, flags, true);
    const r = (await this.request(Req.GET_CONFIG, p, null, 'reply'))!;
    if (r.payload.length !== 12 + size) throw new VhostUserError(Req.GET_CONFIG, `reply size ${r.payload.length}, expected ${12 + size}`);
    return r.payload.slice(12);
  }

  async setConfig(offset: number, data: Uint8Array, flags = 0): Promise<void> {
    const p = new Uint8Array(12 + data.length);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, offset, true); dv.setUint32(4, data.length, true); dv.setUint32(8, flags, true);
    p.set(data, 12);
    await this.request(Req.SET_CONFIG, p, null, 'ack');
  }

  async getGpuConfig(): Promise<GpuConfig> {
    const c = await this.getConfig(0, 16);
    const dv = new DataView(c.buffer);
    return { eventsRead: dv.getUint32(0, true), eventsClear: dv.getUint32(4, true), numScanouts: dv.getUint32(8, true), numCapsets: dv.getUint32(12, true) };
  }

  async gpuSetSocket(fd: number): Promise<void> { await this.request(Req.GPU_SET_SOCKET, null, [fd], 'ack'); }

  /** Create a socketpair, hand one end over with SET_BACKEND_REQ_FD, and answer what arrives on ours. */
  async setBackendReqFd(): Promise<void> {
    const pair = native().socketPair();
    if (typeof pair === 'number') { check('socketpair', pair); return; }
    const ch = new SocketChannel(pair[0], (request, flags, size, off, fds) => {
      const msg = { request, flags, payload: ch.bytes.slice(off, off + size), fds: fds ?? [] };
      this.backendRequests.push(msg);
      const shmem = request === BackendRequest.SHMEM_MAP || request === BackendRequest.SHMEM_UNMAP;
      const status = shmem ? this.shmem.handle(request, msg.payload, msg.fds) : 1n;
      for (const fd of msg.fds) native().close(fd); // a mapping keeps its own reference
      if (!(flags & VHOST_USER_FLAG_NEED_REPLY) || this.backendReplies === 'silent') return;
      const replyTo = this.backendReplies === 'garbage' ? request + 1000 : request;
      ch.sendMessage(replyTo, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, u64Bytes(status));
    });
    this.backendChannel = ch;
    try {
      await this.request(Req.SET_BACKEND_REQ_FD, null, [pair[1]], 'ack');
    } finally {
      native().close(pair[1]);
    }
  }

  /** The front-end closes its end of the back-end channel (a crashed or misbehaving QEMU). */
  closeBackendChannel(): void {
    this.backendChannel?.close();
    this.backendChannel = null;
  }

  // --- QEMU's bring-up (vhost-user-start.ts) ----------------------------------------------------

  /** Negotiate, hand over memory, display socket and rings, and enable the rings (protocols.md §2.5). */
  start(o: StartOptions): Promise<StartResult> { return startSequence(this, o); }

  /** Per ring NUM, BASE, ADDR, KICK, CALL (ERR), then SET_VRING_ENABLE 1: also restarts rings after stop(). */
  startRings(queues: readonly DriverQueue[], o: RingStartOptions = {}): Promise<void> { return startRings(this, queues, o); }

  /** QEMU's stop: GET_VRING_BASE per ring (stops them). Returns the bases. */
  async stop(queues: readonly DriverQueue[]): Promise<number[]> {
    const bases: number[] = [];
    for (const q of queues) bases.push(await this.getVringBase(q.index));
    if (this.hasProtocolFeature(ProtocolFeature.STATUS)) await this.setStatus(0);
    return bases;
  }

  /** The virtio status last sent with SET_STATUS. */
  get lastStatus(): number { return this.status; }

  close(): void {
    this.channel.close();
    this.backendChannel?.close();
    this.shmem.reset();
    for (const m of this.unclaimed) m.fds.forEach((fd) => native().close(fd));
    this.unclaimed = [];
  }
}

function u64Bytes(v: bigint): Uint8Array {
  const p = new Uint8Array(8);
  new DataView(p.buffer).setBigUint64(0, v, true);
  return p;
}

function vringState(index: number, num: number): Uint8Array {
  const p = new Uint8Array(8);
  const dv = new DataView(p.buffer);
  dv.setUint32(0, index, true);
  dv.setUint32(4, num, true);
  return p;
}

function writeRegion(dv: DataView, off: number, r: MemRegionDesc): void {
  dv.setBigUint64(off, BigInt(r.gpa), true);
  dv.setBigUint64(off + 8, BigInt(r.size), true);
  dv.setBigUint64(off + 16, BigInt(r.userAddr), true);
  dv.setBigUint64(off + 24, BigInt(r.mmapOffset), true);
}

export { HEADER_SIZE as VHOST_USER_HEADER_SIZE };
