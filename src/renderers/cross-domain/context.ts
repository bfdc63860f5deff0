/**
 * The cross-domain context (capset 5): a guest proxy's Wayland connection passed through to the
 * host compositor, one context per worker thread. The guest writes commands with SUBMIT_3D;
 * answers go into two guest rings it attached: GET_IMAGE_REQUIREMENTS into the query ring, and
 * one event at a time (RECEIVE from the compositor, READ from a pipe or eventfd) into the channel
 * ring, each completing the oldest fence the guest queued on ring 1 (it queues one with every
 * POLL). Nothing is read from the compositor while no channel fence waits, so a flooding
 * compositor fills its own socket, not our memory.
 *
 * fds: blobs the guest SENDs go out as dups of their memfd, pipes are made here, and whatever the
 * compositor sends becomes an identifier (identifiers.ts). Every fd has one owner and is closed
 * with it; destroy() closes them all.
 */
import { readSync, writeSync } from 'node:fs';
import { errnoName, FdKind, native, type NativeAddon } from '../../native.js';
import { ContextError, type AttachedResource, type ContextEnv, type HostBlob, type WorkerContext } from '../worker-context/context-api.js';
import { Channel } from './channel.js';
import { Identifiers, type EventItem, type ReadPipe, type WritePipe } from './identifiers.js';
import { imageLayout } from './image-layout.js';
import * as P from './protocol.js';

/** Bytes queued for pipes whose reader is slow, at most, over all of a context's pipes. */
export const MAX_PIPE_QUEUED = 1 << 20;
/** A READ's data at most: what fits with its header in one page. */
const MAX_READ_DATA = 4096 - P.READ_WRITE.BYTES;
/** The channel ring must hold a whole RECEIVE: one page, as every guest proxy allocates it. */
export const MIN_CHANNEL_RING = 4096;
const PIPE_CAPACITY = 64 << 10;
const PAGE = 4096;

export default function crossDomain(env: ContextEnv): WorkerContext {
  return new CrossDomainContext(env, native());
}

interface Rings {
  readonly query: number;
  readonly channel: number;
}

class CrossDomainContext implements WorkerContext {
  private readonly items: Identifiers;
  private rings: Rings | null = null;
  private channel: Channel | null = null;
  /** Channel-ring fences waiting for an event, oldest first. */
  private readonly channelFences: bigint[] = [];
  private pipeQueued = 0;
  private dead = false;
  private readonly receiveBuf = new Uint8Array(P.MAX_RECEIVE_DATA);
  private readonly readBuf = new Uint8Array(MAX_READ_DATA);
  private readonly header = new Uint8Array(P.SEND_RECEIVE.BYTES);
  private readonly fdsIn = new Int32Array(2 + P.MAX_IDENTIFIERS);
  private readonly fdInfo = new Float64Array(2);

  constructor(private readonly env: ContextEnv, private readonly n: NativeAddon) {
    this.items = new Identifiers(n);
  }

  // --- WorkerContext ---

  submit(stream: Uint8Array): void {
    for (let at = 0; at < stream.length;) {
      const left = stream.length - at;
      if (left < P.HDR.BYTES) throw new ContextError(`${left} bytes after the last command, less than a header`);
      const cmd = stream[at + P.HDR.CMD];
      const size = stream[at + P.HDR.CMD_SIZE] | stream[at + P.HDR.CMD_SIZE + 1] << 8;
      if (size < P.HDR.BYTES || size > left) throw new ContextError(`command ${cmd}: cmd_size ${size} outside ${P.HDR.BYTES}..${left}`);
      const c = stream.subarray(at, at + size);
      this.command(cmd, c, new DataView(c.buffer, c.byteOffset, c.length));
      at += size;
    }
  }

  fence(ringIdx: number, fenceId: bigint): void {
    if (ringIdx === P.QUERY_RING) {
      this.env.signal(ringIdx, fenceId); // its answers were written when the command ran
      return;
    }
    if (ringIdx !== P.CHANNEL_RING) throw new ContextError(`fence on ring ${ringIdx}: cross-domain has rings 0 (query) and 1 (channel)`);
    if (!this.channel) throw new ContextError('a channel-ring fence without a channel (INIT with a channel type first)');
    this.channelFences.push(fenceId);
    this.arm();
  }

  createBlob(blobId: bigint, size: number, _flags: number): HostBlob {
    const id = Number(blobId);
    if (blobId > 0xffffffffn) throw new ContextError(`blob id ${blobId} is no cross-domain identifier`);
    const it = this.items.get(id);
    if (!it) throw new ContextError(`blob id ${id} names no identifier`);
    if (it.kind === 'requirements') {
      if (size !== it.layout.size) throw new ContextError(`blob of ${size} bytes for image requirements ${id} of ${it.layout.size}`);
      const fd = this.n.memfdCreate('cross-domain-image', size);
      if (fd < 0) throw new ContextError(`cannot make ${size} bytes of image memory: ${errnoName(fd)}`);
      return { fd, size, mapInfo: P.MAP_CACHE_CACHED };
    }
    if (it.kind !== 'memory') throw new ContextError(`blob id ${id} is a ${it.kind}, not memory`);
    const pages = Math.ceil(size / PAGE) * PAGE;
    if (size === 0 || pages > Math.ceil(it.size / PAGE) * PAGE) {
      throw new ContextError(`blob of ${size} bytes from compositor memory ${id} of ${it.size}`);
    }
    this.items.take(id); // once: the fd is the device's now, or copied and closed
    // MAP_BLOB maps whole pages read-write: memory that is read-only or ends inside a page (a
    // keymap) goes to the guest as a copy in a memfd of whole pages.
    if (it.writable && it.size >= pages) return { fd: it.fd, size, mapInfo: P.MAP_CACHE_CACHED };
    try {
      return { fd: this.copyOf(it.fd, Math.min(it.size, size), pages), size, mapInfo: P.MAP_CACHE_CACHED };
    } finally {
      this.n.close(it.fd);
    }
  }

  destroy(): void {
    this.dead = true;
    this.channel?.close();
    this.channel = null;
    this.items.clear();
    this.channelFences.length = 0;
  }

  /** A new memfd of `size` bytes holding the first `len` bytes of `src`. */
  private copyOf(src: number, len: number, size: number): number {
    const fd = this.n.memfdCreate('cross-domain-compositor-memory', size);
    if (fd < 0) throw new ContextError(`cannot copy compositor memory: ${errnoName(fd)}`);
    try {
      const buf = Buffer.allocUnsafe(Math.min(len, 1 << 20));
      for (let at = 0; at < len;) {
        const n = readSync(src, buf, 0, Math.min(buf.length, len - at), at);
        if (n === 0) break; // the compositor shrank it meanwhile: the rest reads as zeros
        writeSync(fd, buf, 0, n, at);
        at += n;
      }
    } catch (e) {
      this.n.close(fd);
      throw new ContextError(`cannot copy compositor memory: ${(e as Error).message}`);
    }
    return fd;
  }

  // --- commands ---

  private command(cmd: number, c: Uint8Array, v: DataView): void {
    switch (cmd) {
      case P.Cmd.INIT:
        need(c, P.INIT.BYTES, 'INIT');
        this.init(v.getUint32(P.INIT.QUERY_RING_ID, true), v.getUint32(P.INIT.CHANNEL_RING_ID, true), v.getUint32(P.INIT.CHANNEL_TYPE, true));
        return;
      case P.Cmd.GET_IMAGE_REQUIREMENTS:
        need(c, P.GET_REQS.BYTES, 'GET_IMAGE_REQUIREMENTS');
        this.imageRequirements(v.getUint32(P.GET_REQS.WIDTH, true), v.getUint32(P.GET_REQS.HEIGHT, true), v.getUint32(P.GET_REQS.DRM_FORMAT, true));
        return;
      case P.Cmd.POLL:
        // The fence that comes with it (ring 1) is what waits for the next event.
        if (!this.channel) throw new ContextError('POLL without a channel');
        return;
      case P.Cmd.SEND:
        this.send(c, v);
        return;
      case P.Cmd.WRITE:
        this.write(c, v);
        return;
      case P.Cmd.READ_CREATE_EVENT: {
        need(c, P.CREATE_EVENT.BYTES, 'READ_CREATE_EVENT');
        const id = v.getUint32(P.CREATE_EVENT.ID, true), it = this.items.get(id);
        if (it?.kind !== 'event') throw new ContextError(`READ_CREATE_EVENT: ${id} is ${it ? `a ${it.kind}` : 'no identifier'}, not an eventfd`);
        it.watched = true;
        this.arm();
        return;
      }
      default:
        throw new ContextError(`unknown cross-domain command ${cmd}`);
    }
  }

  private init(query: number, channel: number, channelType: number): void {
    if (this.rings) throw new ContextError('INIT twice');
    this.ring(query, P.REQS.BYTES, 'query ring');
    if (channelType !== 0) {
      if (channelType !== P.CHANNEL_TYPE_WAYLAND) throw new ContextError(`channel type ${channelType} is not offered (Wayland is ${P.CHANNEL_TYPE_WAYLAND})`);
      this.ring(channel, MIN_CHANNEL_RING, 'channel ring');
      const path = this.env.options.waylandSocket;
      if (!path) throw new ContextError('no Wayland socket is configured (--wayland-socket)');
      this.channel = new Channel(this.n, path, () => this.guarded(() => this.onCompositor()), (e) => this.failWith(e));
    }
    this.rings = { query, channel };
  }

  private imageRequirements(width: number, height: number, drmFormat: number): void {
    if (!this.rings) throw new ContextError('GET_IMAGE_REQUIREMENTS before INIT');
    const layout = imageLayout(width, height, drmFormat);
    if (typeof layout === 'string') throw new ContextError(`GET_IMAGE_REQUIREMENTS: ${layout}`);
    const id = this.items.requirements(`${width}x${height}:${drmFormat >>> 0}`, layout);
    const out = new Uint8Array(P.REQS.BYTES), v = new DataView(out.buffer);
    for (let i = 0; i < 4; i++) {
      v.setUint32(P.REQS.STRIDES + 4 * i, layout.strides[i], true);
      v.setUint32(P.REQS.OFFSETS + 4 * i, layout.offsets[i], true);
    }
    v.setBigUint64(P.REQS.MODIFIER, 0n, true); // DRM_FORMAT_MOD_LINEAR
    v.setBigUint64(P.REQS.SIZE, BigInt(layout.size), true);
    v.setUint32(P.REQS.BLOB_ID, id, true);
    v.setUint32(P.REQS.MAP_INFO, P.MAP_CACHE_CACHED, true);
    v.setInt32(P.REQS.MEMORY_IDX, -1, true);
    v.setInt32(P.REQS.PHYSICAL_DEVICE_IDX, -1, true);
    this.writeRing(this.ring(this.rings.query, P.REQS.BYTES, 'query ring'), out);
  }

  private send(c: Uint8Array, v: DataView): void {
    need(c, P.SEND_RECEIVE.BYTES, 'SEND');
    const count = v.getUint32(P.SEND_RECEIVE.NUM_IDENTIFIERS, true), size = v.getUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, true);
    if (count > P.MAX_IDENTIFIERS) throw new ContextError(`SEND with ${count} identifiers (max ${P.MAX_IDENTIFIERS})`);
    if (size > c.length - P.SEND_RECEIVE.BYTES) throw new ContextError(`SEND of ${size} bytes in a command of ${c.length}`);
    const channel = this.channel;
    if (!channel) throw new ContextError('SEND without a channel');
    const fds: number[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const id = v.getUint32(P.SEND_RECEIVE.IDENTIFIERS + 4 * i, true), type = v.getUint32(P.SEND_RECEIVE.TYPES + 4 * i, true);
        if (type === P.IdType.VIRTGPU_BLOB) fds.push(this.blobFd(id));
        else if (type === P.IdType.READ_PIPE) fds.push(this.readPipe(id));
        else throw new ContextError(`SEND: identifier type ${type} cannot be sent`);
      }
    } catch (e) {
      for (const fd of fds) this.n.close(fd);
      throw e;
    }
    channel.send(c.subarray(P.SEND_RECEIVE.BYTES, P.SEND_RECEIVE.BYTES + size), fds);
    this.arm(); // a new read pipe is watched like the rest
  }

  /** A dup of an attached host blob's memfd, for the compositor (a wl_shm pool). */
  private blobFd(id: number): number {
    const res = this.env.resource(id);
    if (!res) throw new ContextError(`SEND: resource ${id} is not attached to this context`);
    if (res.fd < 0) throw new ContextError(`SEND: resource ${id} has no host memory to share`);
    const fd = this.n.dup(res.fd);
    if (fd < 0) throw new ContextError(`SEND: cannot dup resource ${id}: ${errnoName(fd)}`);
    return fd;
  }

  /** A new pipe under the id the guest predicted; returns the write end, for the compositor. */
  private readPipe(id: number): number {
    const expected = this.items.peekReadPipeId();
    if (id !== expected) throw new ContextError(`SEND: read pipe id 0x${id.toString(16)}, the next is 0x${expected.toString(16)}`);
    const ends = new Int32Array(2);
    const r = this.n.pipeCreate(ends, PIPE_CAPACITY);
    if (r < 0) throw new ContextError(`SEND: cannot make a pipe: ${errnoName(r)}`);
    // The compositor's client writes the other end as it likes: blocking, as pipes normally are.
    this.n.setNonBlocking(ends[1], false);
    try {
      this.items.addFd({ kind: 'read-pipe', fd: ends[0], watcher: null });
    } catch (e) {
      this.n.close(ends[1]);
      throw e;
    }
    return ends[1];
  }

  private write(c: Uint8Array, v: DataView): void {
    need(c, P.READ_WRITE.BYTES, 'WRITE');
    const id = v.getUint32(P.READ_WRITE.IDENTIFIER, true), hangUp = v.getUint32(P.READ_WRITE.HANG_UP, true) !== 0;
    const size = v.getUint32(P.READ_WRITE.OPAQUE_DATA_SIZE, true);
    if (size > c.length - P.READ_WRITE.BYTES) throw new ContextError(`WRITE of ${size} bytes in a command of ${c.length}`);
    const data = c.subarray(P.READ_WRITE.BYTES, P.READ_WRITE.BYTES + size);
    const it = this.items.get(id);
    if (it?.kind === 'write-pipe') this.pipeWrite(id, it, data, hangUp);
    else if (it?.kind === 'event') {
      if (size !== 8 && !(size === 0 && hangUp)) throw new ContextError(`WRITE of ${size} bytes to eventfd ${id} (8, or 0 with hang_up)`);
      if (size === 8) {
        const value = v.getBigUint64(P.READ_WRITE.BYTES, true);
        if (value === 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ContextError(`WRITE of ${value} to eventfd ${id}`);
        const r = this.n.eventfdWrite(it.fd, Number(value));
        if (r < 0) this.env.guest('event', `eventfd ${id}: write failed: ${errnoName(r)}`);
      }
      if (hangUp) this.items.drop(id);
    } else throw new ContextError(`WRITE: ${id} is ${it ? `a ${it.kind}` : 'no identifier'}, not a write pipe or eventfd`);
  }

  private pipeWrite(id: number, p: WritePipe, data: Uint8Array, hangUp: boolean): void {
    if (p.hangUp) throw new ContextError(`WRITE to pipe ${id} after its hang-up`);
    p.hangUp = hangUp;
    let rest = data;
    if (p.queue.length === 0 && rest.length > 0) {
      const r = this.n.write(p.fd, rest, 0, rest.length);
      if (r === -this.n.EPIPE) {
        this.env.guest('pipe', `pipe ${id}: the reader is gone; ${rest.length} bytes dropped`);
        this.items.drop(id);
        return;
      }
      if (r < 0 && r !== -this.n.EAGAIN) throw new ContextError(`WRITE to pipe ${id} failed: ${errnoName(r)}`);
      rest = rest.subarray(Math.max(r, 0));
    }
    if (rest.length > 0) {
      if (this.pipeQueued + rest.length > MAX_PIPE_QUEUED) throw new ContextError(`pipe readers are not reading (${this.pipeQueued} bytes queued)`);
      p.queue.push(rest.slice());
      p.queued += rest.length;
      this.pipeQueued += rest.length;
    }
    if (p.queue.length > 0) this.watchWritable(id, p);
    else if (p.hangUp) this.items.drop(id);
  }

  private watchWritable(id: number, p: WritePipe): void {
    p.watcher ??= this.watcher(p.fd, 'a pipe', () => this.flushPipe(id, p));
    const r = p.watcher.start(this.n.WRITABLE);
    if (r < 0) throw new ContextError(`cannot watch pipe ${id}: ${errnoName(r)}`);
  }

  private flushPipe(id: number, p: WritePipe): void {
    while (p.queue.length > 0) {
      const b = p.queue[0];
      const r = this.n.write(p.fd, b, 0, b.length);
      if (r === -this.n.EAGAIN) return;
      if (r < 0) {
        this.env.guest('pipe', `pipe ${id}: ${errnoName(r)}; ${p.queued} bytes dropped`);
        this.pipeQueued -= p.queued;
        this.items.drop(id);
        return;
      }
      p.queued -= r;
      this.pipeQueued -= r;
      if (r === b.length) p.queue.shift();
      else p.queue[0] = b.subarray(r);
    }
    p.watcher?.stop();
    if (p.hangUp) this.items.drop(id);
  }

  // --- events into the channel ring ---

  /** Watch every event source while a channel fence waits, none otherwise. */
  private arm(): void {
    if (this.dead || !this.channel) return;
    const on = this.channelFences.length > 0;
    this.channel.wantRead(on);
    for (const [id, it] of this.items.watchable()) {
      if (!on) {
        it.watcher?.stop();
        continue;
      }
      it.watcher ??= this.watcher(it.fd, it.kind, () => (it.kind === 'read-pipe' ? this.onPipe(id, it) : this.onEvent(id, it)));
      const r = it.watcher.start(this.n.READABLE);
      if (r < 0) throw new ContextError(`cannot watch ${it.kind} ${id}: ${errnoName(r)}`);
    }
  }

  private onCompositor(): void {
    if (this.channelFences.length === 0) return this.arm();
    const ring = this.ring(this.rings!.channel, MIN_CHANNEL_RING, 'channel ring');
    const fds = this.fdsIn;
    const len = this.channel!.receive(this.receiveBuf, Math.min(P.MAX_RECEIVE_DATA, ring.size - P.SEND_RECEIVE.BYTES), fds);
    if (len === -this.n.EAGAIN) return;
    if (len === 0) throw new ContextError('the compositor closed the connection');
    if (len < 0) throw new ContextError(`receiving from the compositor failed: ${errnoName(len)}`);
    const count = fds[0];
    if (count > P.MAX_IDENTIFIERS) {
      for (let i = 0; i < count; i++) this.n.close(fds[1 + i]);
      throw new ContextError(`the compositor sent more than ${P.MAX_IDENTIFIERS} fds in one message`);
    }
    const h = this.header;
    h.fill(0);
    const v = new DataView(h.buffer);
    for (let i = 0; i < count; i++) {
      let entry: [number, number, number];
      try {
        entry = this.identify(fds[1 + i]);
      } catch (e) {
        for (let j = i + 1; j < count; j++) this.n.close(fds[1 + j]);
        throw e;
      }
      v.setUint32(P.SEND_RECEIVE.IDENTIFIERS + 4 * i, entry[0], true);
      v.setUint32(P.SEND_RECEIVE.TYPES + 4 * i, entry[1], true);
      v.setUint32(P.SEND_RECEIVE.SIZES + 4 * i, entry[2], true);
    }
    h[P.HDR.CMD] = P.Cmd.RECEIVE;
    v.setUint16(P.HDR.CMD_SIZE, Math.min(0xffff, P.SEND_RECEIVE.BYTES + len), true);
    v.setUint32(P.SEND_RECEIVE.NUM_IDENTIFIERS, count, true);
    v.setUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, len, true);
    this.writeRing(ring, h, this.receiveBuf.subarray(0, len));
    this.delivered();
  }

  /** An fd the compositor sent, as [identifier, type, size]; the table owns it from here. */
  private identify(fd: number): [number, number, number] {
    const kind = this.n.describeFd(fd, this.fdInfo);
    if (kind === FdKind.FILE) {
      const size = this.fdInfo[0];
      if (size > 0xffffffff) {
        this.n.close(fd);
        throw new ContextError(`the compositor sent ${size} bytes of memory (max 4 GiB - 1)`);
      }
      return [this.items.addFd({ kind: 'memory', fd, size, writable: this.fdInfo[1] === 2 /* O_RDWR */ }), P.IdType.VIRTGPU_BLOB, size];
    }
    if (kind === FdKind.PIPE && this.fdInfo[1] === 1 /* O_WRONLY */) {
      // The compositor passed its end on: writes here must never block the worker.
      this.n.setNonBlocking(fd, true);
      return [this.items.addFd({ kind: 'write-pipe', fd, queue: [], queued: 0, hangUp: false, watcher: null }), P.IdType.WRITE_PIPE, 0];
    }
    if (kind === FdKind.EVENTFD) return [this.items.addFd({ kind: 'event', fd, watched: false, watcher: null }), P.IdType.EVENT, 0];
    this.n.close(fd);
    throw new ContextError(kind < 0 ? `an fd from the compositor: ${errnoName(kind)}` : `the compositor sent an fd of kind ${kind} (not memory, a pipe's write end or an eventfd)`);
  }

  private onPipe(id: number, p: ReadPipe): void {
    if (this.channelFences.length === 0) return this.arm();
    const ring = this.ring(this.rings!.channel, MIN_CHANNEL_RING, 'channel ring');
    const len = this.n.read(p.fd, this.readBuf, 0, Math.min(MAX_READ_DATA, ring.size - P.READ_WRITE.BYTES));
    if (len === -this.n.EAGAIN) return;
    if (len < 0) throw new ContextError(`reading pipe ${id} failed: ${errnoName(len)}`);
    this.writeRing(ring, readHeader(id, len, len === 0), this.readBuf.subarray(0, len));
    if (len === 0) this.items.drop(id); // end of file: the guest saw hang_up
    this.delivered();
  }

  private onEvent(id: number, e: EventItem): void {
    if (this.channelFences.length === 0) return this.arm();
    // Another reader of the eventfd may have taken the count since the poll said readable.
    if ((this.n.pollFd(e.fd, this.n.POLLIN, 0) & this.n.POLLIN) === 0) return;
    const value = this.n.eventfdRead(e.fd);
    if (value === -this.n.EAGAIN) return;
    if (value < 0) throw new ContextError(`reading eventfd ${id} failed: ${errnoName(value)}`);
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, BigInt(value), true);
    this.writeRing(this.ring(this.rings!.channel, MIN_CHANNEL_RING, 'channel ring'), readHeader(id, 8, false), data);
    this.delivered();
  }

  /** An event is in the channel ring: complete the fence that waited for it. */
  private delivered(): void {
    const fence = this.channelFences.shift()!;
    this.env.signal(P.CHANNEL_RING, fence);
    if (this.channelFences.length === 0) this.arm();
  }

  // --- helpers ---

  /** The attached guest-memory resource `id`, at least `bytes` long. */
  private ring(id: number, bytes: number, what: string): AttachedResource {
    const r = this.env.resource(id);
    if (!r) throw new ContextError(`${what} ${id} is not attached to this context`);
    if (r.guest.length === 0) throw new ContextError(`${what} ${id} has no guest memory`);
    if (r.size < bytes) throw new ContextError(`${what} ${id} has ${r.size} bytes, needs ${bytes}`);
    return r;
  }

  /** Write `parts` one after the other from the start of the ring, across its segments. */
  private writeRing(r: AttachedResource, ...parts: Uint8Array[]): void {
    let seg = 0, segOff = 0;
    for (const part of parts) {
      for (let done = 0; done < part.length;) {
        const s = r.guest[seg];
        if (!s) throw new ContextError(`ring ${r.id} is too small`);
        const n = Math.min(s.length - segOff, part.length - done);
        s.set(part.subarray(done, done + n), segOff);
        done += n;
        segOff += n;
        if (segOff === s.length) {
          seg++;
          segOff = 0;
        }
      }
    }
  }

  private watcher(fd: number, what: string, onReady: () => void) {
    const w = this.n.watch(fd, (events) => this.guarded(() => {
      if (events < 0) throw new ContextError(`polling ${what} failed: ${errnoName(events)}`);
      onReady();
    }));
    if (typeof w === 'number') throw new ContextError(`cannot watch ${what}: ${errnoName(w)}`);
    return w;
  }

  /** Run an event-loop callback; what it throws ends this context (the framework reports it lost). */
  private guarded(fn: () => void): void {
    if (this.dead) return;
    try {
      fn();
    } catch (e) {
      this.failWith(e as Error);
    }
  }

  private failWith(e: Error): void {
    if (this.dead) return;
    this.env.fail(e instanceof ContextError ? e.message : `internal error: ${e?.stack ?? e}`);
  }
}

function need(c: Uint8Array, bytes: number, what: string): void {
  if (c.length < bytes) throw new ContextError(`${what} of ${c.length} bytes (needs ${bytes})`);
}

function readHeader(id: number, len: number, hangUp: boolean): Uint8Array {
  const h = new Uint8Array(P.READ_WRITE.BYTES), v = new DataView(h.buffer);
  h[P.HDR.CMD] = P.Cmd.READ;
  v.setUint16(P.HDR.CMD_SIZE, P.READ_WRITE.BYTES + len, true);
  v.setUint32(P.READ_WRITE.IDENTIFIER, id, true);
  v.setUint32(P.READ_WRITE.HANG_UP, hangUp ? 1 : 0, true);
  v.setUint32(P.READ_WRITE.OPAQUE_DATA_SIZE, len, true);
  return h;
}
