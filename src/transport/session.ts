/**
 * One vhost-user connection: reads front-end requests (header first, so fds stay with the message
 * that carried them), checks each against its table row, runs its handler and replies. Owns the
 * memory table and the per-ring state (addresses, kick/call/err fds, started/enabled); the
 * backend owns what the queues do.
 */
import { native, watchFd, NativeError, type FdWatcher } from '../native.js';
import { log } from '../log.js';
import { GuestMemory, GuestMemoryError, type RegionDesc } from './guest-memory.js';
import type { VhostUserBackend } from './backend.js';
import { BackendChannel } from './backend-channel.js';
import { frame, sendAll } from './wire.js';
import { SharedMemoryRegion } from './shared-memory.js';
import {
  Req, SPECS, checkRequest, ProtocolFeature, HDR_SIZE, VERSION, FLAG_REPLY, FLAG_NEED_REPLY, MAX_PAYLOAD, MAX_FDS,
  MAX_MEM_SLOTS, REGION_SIZE, CONFIG_HDR, MAX_CONFIG_SIZE, VRING_NOFD, VRING_IDX_MASK, F_PROTOCOL_FEATURES, F_INDIRECT_DESC,
  F_EVENT_IDX, F_VERSION_1, MAX_SHMEM_REGIONS, SHMEM_CONFIG_SIZE, type RequestSpec,
} from './messages.js';

const bit = (n: number) => 1n << BigInt(n);
const DEVICE_NEEDS_RESET = 0x40;
const MAX_QUEUE_SIZE = 32768;
/** Without a kick fd (bit 8 of SET_VRING_KICK) the ring is polled at this period. */
const NOFD_POLL_MS = 1;

/** A request refused for a reason the log should show. */
class Refusal extends Error {}

class Vring {
  num = 0;
  desc = 0n;
  avail = 0n;
  used = 0n;
  addrSet = false;
  base = 0;
  kickFd = -1;
  kickWatcher: FdWatcher | null = null;
  pollTimer: NodeJS.Timeout | null = null;
  callFd = -1;
  errFd = -1;
  enabled = false;
  started = false;
  running = false;
  /** Why the ring broke (a corrupt avail ring), until the front-end sets it up again. */
  broken: string | null = null;
}

export class Session {
  private readonly watcher: FdWatcher;
  private readonly memory = new GuestMemory();
  private readonly rings: Vring[];
  private acked = 0n;
  private protocolAcked = 0n;
  private status = 0;
  private closed = false;
  /** The back-end request channel (SET_BACKEND_REQ_FD), or null. */
  private channel: BackendChannel | null = null;
  // Read state: a header, then its payload.
  private readonly hdr = new Uint8Array(HDR_SIZE);
  private hdrLen = 0;
  private payload = new Uint8Array(0);
  private payloadLen = 0;
  private fds: number[] = [];
  private readonly fdsIn = new Int32Array(MAX_FDS + 1);

  constructor(private readonly fd: number, private readonly backend: VhostUserBackend, private readonly onClose: () => void) {
    this.rings = Array.from({ length: backend.numQueues }, () => new Vring());
    native().setNonBlocking(fd, true);
    this.watcher = watchFd('watch the vhost-user socket', fd, (ev) => (ev < 0 ? this.close('poll error') : this.onReadable()));
    this.watcher.start(native().READABLE);
  }

  static offeredFeatures(backend: VhostUserBackend): bigint {
    return backend.deviceFeatures() | bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX) | bit(F_PROTOCOL_FEATURES);
  }

  static offeredProtocolFeatures(backend: VhostUserBackend): bigint {
    const p = ProtocolFeature;
    const base = bit(p.MQ) | bit(p.REPLY_ACK) | bit(p.CONFIG) | bit(p.RESET_DEVICE) | bit(p.CONFIGURE_MEM_SLOTS) | bit(p.STATUS);
    // Shared memory needs the back-end channel (SHMEM_MAP) with fds on it (the memfds).
    const shmem = backend.sharedMemorySizes().some((s) => s > 0)
      ? bit(p.BACKEND_REQ) | bit(p.BACKEND_SEND_FD) | bit(p.SHMEM) : 0n;
    return base | shmem;
  }

  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    log.info(`vhost-user: session ended (${why})`);
    this.watcher.close();
    native().close(this.fd);
    this.channel?.close('session ended');
    this.channel = null;
    this.backend.setSharedMemory(new Map());
    for (let i = 0; i < this.rings.length; i++) this.dropRing(i);
    this.closeFds();
    this.backend.close();
    this.memory.clear();
    this.onClose();
  }

  // --- reading ---

  private onReadable(): void {
    const n = native();
    while (!this.closed) {
      const inHeader = this.hdrLen < HDR_SIZE;
      const got = inHeader
        ? n.recvMsg(this.fd, this.hdr, this.hdrLen, HDR_SIZE - this.hdrLen, this.fdsIn)
        : n.recvMsg(this.fd, this.payload, this.payloadLen, this.payload.length - this.payloadLen, this.fdsIn);
      if (got > 0) {
        for (let i = 1; i <= this.fdsIn[0]; i++) this.fds.push(this.fdsIn[i]);
        if (!inHeader) this.payloadLen += got;
        else if ((this.hdrLen += got) === HDR_SIZE && !this.startPayload()) return;
      }
      if (got === -n.EAGAIN) return;
      if (got === 0) return this.close('front-end disconnected');
      if (got < 0) return this.close(`read error ${got}`);
      if (this.hdrLen === HDR_SIZE && this.payloadLen === this.payload.length) this.dispatchCurrent();
    }
  }

  /** Header complete: size the payload buffer. False if the session was closed. */
  private startPayload(): boolean {
    const size = new DataView(this.hdr.buffer).getUint32(8, true);
    if (size > MAX_PAYLOAD) {
      log.error(`vhost-user: message with a ${size}-byte payload; closing the connection`);
      this.close('oversized message');
      return false;
    }
    this.payload = new Uint8Array(size);
    this.payloadLen = 0;
    return true;
  }

  private dispatchCurrent(): void {
    const v = new DataView(this.hdr.buffer);
    const request = v.getUint32(0, true), flags = v.getUint32(4, true);
    const payload = this.payload, fds = this.fds;
    this.hdrLen = 0;
    this.fds = [];
    try {
      this.dispatch(request, flags, payload, fds);
    } finally {
      for (const fd of fds) if (fd >= 0) native().close(fd); // handlers take the fds they keep (set to -1)
    }
  }

  private dispatch(request: number, flags: number, payload: Uint8Array, fds: number[]): void {
    const spec = SPECS.get(request);
    const needReply = (flags & FLAG_NEED_REPLY) !== 0 && (this.protocolAcked & bit(ProtocolFeature.REPLY_ACK)) !== 0n;
    const name = spec?.name ?? `request ${request}`;
    let problem: string | null = null;
    if ((flags & 0x3) !== VERSION) problem = `bad version in flags 0x${flags.toString(16)}`;
    else if (!spec) problem = 'unknown request';
    else problem = checkRequest(spec, payload.length, fds.length);
    if (problem !== null || !spec) {
      log.error(`vhost-user: ${name} refused: ${problem}`);
      if (needReply || spec?.reply === 'ack') this.replyAck(request, needReply, false);
      return;
    }
    const p = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    try {
      const body = this.handle(request, spec, p, fds);
      if (spec.reply === 'body') this.reply(request, body!);
      else this.replyAck(request, needReply, true);
    } catch (e) {
      // Whatever goes wrong, the request is refused and the daemon goes on.
      if (e instanceof Refusal || e instanceof GuestMemoryError || e instanceof NativeError) {
        log.error(`vhost-user: ${name} refused: ${e.message}`);
      } else {
        log.error(`vhost-user: ${name} failed: ${(e as Error)?.stack ?? e}`);
      }
      if (spec.reply === 'ack') this.replyAck(request, needReply, false);
      // A request that always has a body gets no reply: the stream stays in step, the front-end sees the error.
    }
  }

  private replyAck(request: number, needReply: boolean, ok: boolean): void {
    if (!needReply) return;
    this.reply(request, u64(ok ? 0n : 1n));
  }

  private reply(request: number, body: Uint8Array): void {
    if (this.closed) return;
    const err = sendAll(this.fd, frame(request, VERSION | FLAG_REPLY, body), null);
    if (err !== null) this.close(`replying: ${err}`);
  }

  // --- requests ---

  private ring(index: number): Vring {
    const r = this.rings[index];
    if (!r) throw new Refusal(`queue index ${index} out of range (0..${this.rings.length - 1})`);
    return r;
  }

  /** Handle one request. Returns the reply body for 'body' requests. */
  private handle(request: number, spec: RequestSpec, p: DataView, fds: number[]): Uint8Array | void {
    const u64At = (o: number) => p.getBigUint64(o, true);
    const u32At = (o: number) => p.getUint32(o, true);
    switch (request) {
      case Req.GET_FEATURES:
        return u64(Session.offeredFeatures(this.backend));
      case Req.SET_FEATURES: {
        const offered = Session.offeredFeatures(this.backend);
        const f = u64At(0) & offered;
        // QEMU passes on transport bits its device model added (e.g. RING_RESET) that no backend
        // offered; like libvhost-user, ignore them rather than fail the device.
        const extra = u64At(0) & ~offered;
        if (extra) log.debug(`vhost-user: SET_FEATURES: ignoring bits 0x${extra.toString(16)} that were not offered`);
        this.acked = f;
        this.backend.setAckedFeatures(f);
        // Without protocol features there is no SET_VRING_ENABLE: rings are enabled now.
        if (!(f & bit(F_PROTOCOL_FEATURES))) this.rings.forEach((r, i) => { r.enabled = true; this.maybeRun(i); });
        return;
      }
      case Req.GET_PROTOCOL_FEATURES:
        return u64(Session.offeredProtocolFeatures(this.backend));
      case Req.SET_PROTOCOL_FEATURES: {
        const f = u64At(0);
        const extra = f & ~Session.offeredProtocolFeatures(this.backend);
        if (extra) throw new Refusal(`protocol features 0x${extra.toString(16)} were not offered`);
        this.protocolAcked = f;
        this.updateSharedMemory();
        return;
      }
      case Req.SET_BACKEND_REQ_FD: {
        if (!this.protocolHas(ProtocolFeature.BACKEND_REQ)) throw new Refusal('BACKEND_REQ was not negotiated');
        if (fds.length !== 1) throw new Refusal('SET_BACKEND_REQ_FD needs one fd');
        this.channel?.close('replaced by a new back-end channel');
        this.channel = null;
        const fd = fds[0];
        fds[0] = -1;
        this.channel = new BackendChannel(fd, this.protocolHas(ProtocolFeature.REPLY_ACK));
        this.updateSharedMemory();
        return;
      }
      case Req.GET_SHMEM_CONFIG:
        if (!this.protocolHas(ProtocolFeature.SHMEM)) throw new Refusal('SHMEM was not negotiated');
        return shmemConfig(this.backend.sharedMemorySizes());
      case Req.SET_OWNER:
        return;
      case Req.RESET_OWNER:
        // Deprecated; the spec says to disable the rings only, so the device state stays. QEMU
        // still sends it as its device reset when RESET_DEVICE was not negotiated: the rings
        // are set up anew after it, so nothing of a broken ring is kept either.
        for (let i = 0; i < this.rings.length; i++) this.dropRing(i);
        this.mendRings('RESET_OWNER');
        return;
      case Req.RESET_DEVICE:
        for (let i = 0; i < this.rings.length; i++) this.dropRing(i);
        this.mendRings('RESET_DEVICE');
        this.status = 0;
        // Also empties the shared memory regions: the front-end removed a reset device's mappings.
        this.backend.reset();
        return;
      case Req.GET_QUEUE_NUM:
        return u64(BigInt(this.rings.length));
      case Req.GET_MAX_MEM_SLOTS:
        return u64(BigInt(MAX_MEM_SLOTS));
      case Req.SET_MEM_TABLE:
        return this.setMemTable(p, fds);
      case Req.ADD_MEM_REG: {
        if (fds.length !== 1) throw new Refusal('ADD_MEM_REG needs one fd');
        if (this.memory.regionCount >= MAX_MEM_SLOTS) throw new Refusal(`already ${MAX_MEM_SLOTS} regions`);
        this.changeMemory(() => this.memory.add(region(p, 8), fds[0]));
        return;
      }
      case Req.REM_MEM_REG: {
        let found = false;
        this.changeMemory(() => { found = this.memory.remove(region(p, 8)); });
        if (!found) throw new Refusal('no such region');
        return;
      }
      case Req.SET_VRING_NUM: {
        const r = this.ring(u32At(0));
        const num = u32At(4);
        if (num === 0 || num > MAX_QUEUE_SIZE || (num & (num - 1)) !== 0) throw new Refusal(`bad queue size ${num}`);
        this.reconfigure(u32At(0), () => { r.num = num; }, 'SET_VRING_NUM');
        return;
      }
      case Req.SET_VRING_ADDR: {
        const r = this.ring(u32At(0));
        this.reconfigure(u32At(0), () => {
          r.desc = u64At(8);
          r.used = u64At(16);
          r.avail = u64At(24);
          r.addrSet = true;
        }, 'SET_VRING_ADDR');
        return;
      }
      case Req.SET_VRING_BASE: {
        const r = this.ring(u32At(0));
        const num = u32At(4);
        if (num > 0xffff) throw new Refusal(`vring base 0x${num.toString(16)} has bits above 15 (packed rings are not offered)`);
        this.reconfigure(u32At(0), () => { r.base = num; }, 'SET_VRING_BASE');
        return;
      }
      case Req.GET_VRING_BASE: {
        const index = u32At(0);
        this.ring(index);
        this.dropRing(index);
        const body = new Uint8Array(8);
        const v = new DataView(body.buffer);
        v.setUint32(0, index, true);
        v.setUint32(4, this.rings[index].base, true);
        return body;
      }
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR:
        return this.setVringFd(request, u64At(0), fds);
      case Req.SET_VRING_ENABLE: {
        const index = u32At(0), on = u32At(4);
        const r = this.ring(index);
        if (on > 1) throw new Refusal(`enable value ${on}`);
        r.enabled = on === 1;
        if (r.enabled) this.maybeRun(index);
        else this.haltRing(index);
        return;
      }
      case Req.GET_CONFIG: {
        const offset = u32At(0), size = u32At(4);
        const cfg = this.backend.config();
        const body = new Uint8Array(CONFIG_HDR + size);
        body.set(new Uint8Array(p.buffer, p.byteOffset, CONFIG_HDR));
        if (size !== p.byteLength - CONFIG_HDR || offset + size > MAX_CONFIG_SIZE) {
          throw new Refusal(`config read of ${size} bytes at ${offset} (at most ${MAX_CONFIG_SIZE} bytes of config space)`);
        }
        // A newer front-end's config struct can be longer than ours (QEMU 11.1 reads 20 bytes of
        // virtio_gpu_config: blob_alignment follows num_capsets). Fields of features we do not
        // offer read as zero, as a device without them has them.
        body.set(cfg.subarray(offset, offset + size), CONFIG_HDR); // subarray stops at cfg's end
        return body;
      }
      case Req.SET_CONFIG: {
        const offset = u32At(0), size = u32At(4);
        if (size !== p.byteLength - CONFIG_HDR) throw new Refusal(`config size ${size} does not match the payload`);
        if (offset + size > MAX_CONFIG_SIZE) throw new Refusal(`config write of ${size} bytes at ${offset} (at most ${MAX_CONFIG_SIZE} bytes of config space)`);
        const data = new Uint8Array(p.buffer, p.byteOffset + CONFIG_HDR, size);
        if (!this.backend.setConfig(offset, data)) throw new Refusal(`config write of ${size} bytes at ${offset}`);
        return;
      }
      case Req.GPU_SET_SOCKET: {
        if (fds.length !== 1) throw new Refusal('GPU_SET_SOCKET needs one fd');
        this.backend.setDisplaySocket(fds[0]);
        fds[0] = -1;
        return;
      }
      case Req.SET_STATUS: {
        const s = u64At(0);
        if (s > 0xffn) throw new Refusal(`status 0x${s.toString(16)}`);
        this.status = Number(s);
        // Status 0 is a device reset (QEMU sends it when it stops the device). Resources stay:
        // a paused VM comes back with them (see GpuBackend.startQueue for a new driver).
        if (s === 0n) this.mendRings('SET_STATUS 0');
        return;
      }
      case Req.GET_STATUS: {
        const broken = this.rings.some((r) => r.broken !== null);
        return u64(BigInt(this.status | (broken ? DEVICE_NEEDS_RESET : 0)));
      }
      case Req.VRING_KICK:
        throw new Refusal('in-band notifications were not offered');
    }
    throw new Refusal(`${spec.name} is not supported`);
  }

  private protocolHas(feature: number): boolean {
    return (this.protocolAcked & bit(feature)) !== 0n;
  }

  /**
   * Tell the backend which shared memory regions the front-end maps into now: those of
   * sharedMemorySizes() once SHMEM is negotiated and a back-end channel is set, else none.
   */
  private updateSharedMemory(): void {
    const regions = new Map<number, SharedMemoryRegion>();
    const channel = this.channel;
    if (channel && this.protocolHas(ProtocolFeature.SHMEM) && this.protocolHas(ProtocolFeature.BACKEND_SEND_FD)) {
      this.backend.sharedMemorySizes().forEach((size, shmid) => {
        if (size > 0) regions.set(shmid, new SharedMemoryRegion(channel, shmid, size));
      });
    }
    this.backend.setSharedMemory(regions);
  }

  private setMemTable(p: DataView, fds: number[]): void {
    const n = p.getUint32(0, true);
    if (p.byteLength !== 8 + n * REGION_SIZE) throw new Refusal(`${n} regions in a ${p.byteLength}-byte payload`);
    if (fds.length !== n) throw new Refusal(`${n} regions but ${fds.length} fds`);
    this.changeMemory(() => {
      this.memory.clear();
      try {
        for (let i = 0; i < n; i++) this.memory.add(region(p, 8 + i * REGION_SIZE), fds[i]);
      } catch (e) {
        this.memory.clear(); // never keep half a table
        throw e;
      }
    });
  }

  /** Change the memory table with every running ring stopped, then restart them on the new table. */
  private changeMemory(change: () => void): void {
    const wasRunning = this.rings.map((r, i) => (r.running ? (this.haltRing(i), true) : false));
    try {
      change();
    } finally {
      this.backend.memoryChanged(this.memory);
      wasRunning.forEach((was, i) => was && this.maybeRun(i));
    }
  }

  /**
   * Change a ring's setup; a running ring restarts with it. A broken ring set up again is
   * mended, and runs again at its next start (SET_VRING_KICK, SET_VRING_ENABLE), not here:
   * the rest of its new setup is still to come.
   */
  private reconfigure(index: number, change: () => void, what: string): void {
    const r = this.rings[index];
    const was = r.running;
    if (was) this.haltRing(index);
    change();
    this.mendRing(index, what);
    if (was) this.maybeRun(index);
  }

  private mendRing(index: number, why: string): void {
    const r = this.rings[index];
    if (r.broken === null) return;
    log.info(`vhost-user: queue ${index} set up again (${why}) after it broke (${r.broken}); it runs at its next start`);
    r.broken = null;
  }

  private mendRings(why: string): void {
    for (let i = 0; i < this.rings.length; i++) this.mendRing(i, why);
  }

  private setVringFd(request: number, value: bigint, fds: number[]): void {
    const index = Number(value & BigInt(VRING_IDX_MASK));
    const r = this.ring(index);
    const noFd = (value & BigInt(VRING_NOFD)) !== 0n;
    if (value & ~BigInt(VRING_IDX_MASK | VRING_NOFD)) throw new Refusal(`unknown bits in 0x${value.toString(16)}`);
    if (noFd && fds.length) throw new Refusal('fd sent together with the no-fd bit');
    if (!noFd && fds.length !== 1) throw new Refusal('missing fd');
    const fd = noFd ? -1 : fds[0];
    if (!noFd) fds[0] = -1;
    const n = native();
    if (request === Req.SET_VRING_CALL) {
      if (r.callFd >= 0) n.close(r.callFd);
      r.callFd = fd;
    } else if (request === Req.SET_VRING_ERR) {
      if (r.errFd >= 0) n.close(r.errFd);
      r.errFd = fd;
    } else {
      this.stopKick(r);
      r.kickFd = fd;
      if (fd >= 0) {
        n.setNonBlocking(fd, true);
        r.kickWatcher = watchFd(`watch the kick fd of queue ${index}`, fd, () => {
          n.eventfdRead(fd);
          this.kick(index);
        });
        r.kickWatcher.start(n.READABLE);
      } else {
        r.pollTimer = setInterval(() => this.kick(index), NOFD_POLL_MS);
      }
      r.started = true; // a kick fd (or the no-fd bit) starts the ring
      this.maybeRun(index);
    }
  }

  private kick(index: number): void {
    if (!this.rings[index].running) return;
    try {
      this.backend.kick(index);
    } catch (e) {
      // A bug, not guest input (the queue layer answers bad input itself): keep serving.
      log.error(`queue ${index}: ${(e as Error)?.stack ?? e}`);
    }
  }

  private stopKick(r: Vring): void {
    r.kickWatcher?.close();
    r.kickWatcher = null;
    if (r.pollTimer) clearInterval(r.pollTimer);
    r.pollTimer = null;
    if (r.kickFd >= 0) native().close(r.kickFd);
    r.kickFd = -1;
  }

  /** Run the ring if it is started, enabled and fully set up on a memory table. */
  private maybeRun(index: number): void {
    const r = this.rings[index];
    if (r.running || r.broken !== null || !r.started || !r.enabled || !r.addrSet || r.num === 0 || this.memory.regionCount === 0) return;
    const len = (n: number) => BigInt(n);
    const desc = this.memory.userToGuest(r.desc, len(16 * r.num));
    const avail = this.memory.userToGuest(r.avail, len(6 + 2 * r.num));
    const used = this.memory.userToGuest(r.used, len(6 + 8 * r.num));
    if (desc === null || avail === null || used === null) {
      log.error(`vhost-user: queue ${index}: ring addresses are outside the memory table`);
      return;
    }
    const layout = {
      size: r.num, desc, avail, used, lastAvail: r.base,
      eventIdx: (this.acked & bit(F_EVENT_IDX)) !== 0n,
      indirect: (this.acked & bit(F_INDIRECT_DESC)) !== 0n,
    };
    const err = this.backend.startQueue(index, layout, () => this.notify(index), (reason) => this.markBroken(index, reason));
    if (err) {
      log.error(`vhost-user: queue ${index}: cannot start: ${err}`);
      return;
    }
    r.running = true;
    this.kick(index); // buffers may already be waiting
  }

  private haltRing(index: number): void {
    const r = this.rings[index];
    if (!r.running) return;
    r.base = this.backend.stopQueue(index);
    r.running = false;
  }

  /** Stop the ring completely (GET_VRING_BASE, reset, disconnect): it needs a new kick to start again. */
  private dropRing(index: number): void {
    const r = this.rings[index];
    this.haltRing(index);
    this.stopKick(r);
    r.started = false;
    if (r.callFd >= 0) native().close(r.callFd);
    r.callFd = -1;
  }

  private notify(index: number): void {
    const fd = this.rings[index].callFd;
    if (fd >= 0) native().eventfdWrite(fd, 1);
  }

  /**
   * The queue found its ring corrupt: it stays stopped (kicks are ignored, nothing is read again)
   * until the front-end sets the ring up again or resets the device; the err eventfd tells it.
   */
  private markBroken(index: number, reason: string): void {
    const r = this.rings[index];
    r.broken = reason;
    log.error(`vhost-user: queue ${index} is broken (${reason}); reporting DEVICE_NEEDS_RESET until it is set up again`);
    this.haltRing(index);
    const fd = this.rings[index].errFd;
    if (fd >= 0) native().eventfdWrite(fd, 1);
  }

  private closeFds(): void {
    for (const r of this.rings) {
      if (r.errFd >= 0) native().close(r.errFd);
      r.errFd = -1;
    }
    for (const fd of this.fds) native().close(fd);
    this.fds = [];
  }
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

/**
 * GET_SHMEM_CONFIG reply: nregions, then a size per shmid. QEMU reads the sizes of shmids below
 * nregions only, so nregions is the highest shmid in use plus one (zero sizes are no region).
 */
function shmemConfig(sizes: readonly number[]): Uint8Array {
  const body = new Uint8Array(SHMEM_CONFIG_SIZE);
  const v = new DataView(body.buffer);
  let count = 0;
  sizes.slice(0, MAX_SHMEM_REGIONS).forEach((size, shmid) => {
    if (size <= 0) return;
    v.setBigUint64(8 + 8 * shmid, BigInt(size), true);
    count = shmid + 1;
  });
  v.setUint32(0, count, true);
  return body;
}

function region(p: DataView, at: number): RegionDesc {
  return {
    guestPhysAddr: p.getBigUint64(at, true),
    memorySize: p.getBigUint64(at + 8, true),
    userspaceAddr: p.getBigUint64(at + 16, true),
    mmapOffset: p.getBigUint64(at + 24, true),
  };
}
