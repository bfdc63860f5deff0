/**
 * The connection of one cross-domain context to the host compositor: a non-blocking unix stream
 * socket carrying bytes and SCM_RIGHTS fds both ways, watched on the worker's event loop. Sends
 * go out at once; what the socket does not take is queued (bounded) with its fds and flushed when
 * it becomes writable. Receiving is the context's business (one message per channel fence), so
 * reading is watched only while the context wants it.
 */
import { errnoName, watchFd, type FdWatcher, type NativeAddon } from '../../native.js';
import { ContextError } from '../worker-context/context-api.js';

/** Bytes queued for a compositor that does not read, at most; then the context fails. */
export const MAX_QUEUED = 1 << 20;

interface Pending {
  readonly bytes: Uint8Array;
  /** fds to go with the first byte of `bytes`; the channel owns them until they are sent. */
  fds: number[] | null;
}

export class Channel {
  private readonly fd: number;
  private readonly watcher: FdWatcher;
  private readonly queue: Pending[] = [];
  private queued = 0;
  private reading = false;
  private closed = false;

  /**
   * Connect to the compositor at `path`. `onReadable` runs when the socket has data (or EOF)
   * while reading is wanted; `onError` when a queued send fails later (a ContextError).
   */
  constructor(private readonly n: NativeAddon, path: string, private readonly onReadable: () => void,
    private readonly onError: (e: Error) => void) {
    const fd = n.connectUnix(path, true);
    if (fd < 0) throw new ContextError(`cannot connect to the Wayland compositor at ${path}: ${errnoName(fd)}`);
    this.fd = fd;
    try {
      this.watcher = watchFd('watch the compositor socket', fd, (ev) => this.onEvents(ev));
    } catch (e) {
      n.close(fd);
      throw e;
    }
  }

  /** Whether the socket is watched for incoming data. */
  wantRead(on: boolean): void {
    if (this.reading === on || this.closed) return;
    this.reading = on;
    this.rearm();
  }

  /**
   * Send `bytes` with `fds` (owned by the channel from here on: closed once sent, or at close()).
   * Throws ContextError when the compositor is gone or lets too much pile up.
   */
  send(bytes: Uint8Array, fds: number[]): void {
    if (this.closed) {
      this.closeFds(fds);
      throw new ContextError('the compositor connection is closed');
    }
    if (bytes.length === 0) {
      this.closeFds(fds);
      if (fds.length > 0) throw new ContextError('SEND of fds without data');
      return;
    }
    if (this.queued + bytes.length > MAX_QUEUED) {
      this.closeFds(fds);
      throw new ContextError(`the compositor is not reading (${this.queued} bytes queued)`);
    }
    let rest = bytes, pendingFds: number[] | null = fds.length > 0 ? fds : null;
    if (this.queue.length === 0) {
      const r = this.n.sendMsg(this.fd, [bytes], pendingFds);
      if (r < 0 && r !== -this.n.EAGAIN) {
        if (pendingFds) this.closeFds(pendingFds);
        throw new ContextError(`sending to the compositor failed: ${errnoName(r)}`);
      }
      if (r > 0 && pendingFds) {
        this.closeFds(pendingFds); // they went with the first byte
        pendingFds = null;
      }
      rest = bytes.subarray(Math.max(r, 0));
      if (rest.length === 0) return;
    }
    // Copy: the bytes are a view of the command ring, which moves on.
    this.queue.push({ bytes: rest.slice(), fds: pendingFds });
    this.queued += rest.length;
    this.flush();
    if (this.queue.length > 0) this.rearm();
  }

  /** recvmsg into buf[0, len): bytes (0 = compositor gone) or -errno; fdsOut as for NativeAddon.recvMsg. */
  receive(buf: Uint8Array, len: number, fdsOut: Int32Array): number {
    return this.n.recvMsg(this.fd, buf, 0, len, fdsOut);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    for (const p of this.queue) if (p.fds) this.closeFds(p.fds);
    this.queue.length = 0;
    this.queued = 0;
    this.n.close(this.fd);
  }

  private onEvents(events: number): void {
    if (this.closed) return;
    try {
      if (events < 0) throw new ContextError(`polling the compositor socket failed: ${errnoName(events)}`);
      if (events & this.n.WRITABLE) {
        this.flush();
        if (this.queue.length === 0) this.rearm();
      }
      if (events & this.n.READABLE && this.reading) this.onReadable();
    } catch (e) {
      this.onError(e as Error);
    }
  }

  /** Send what the socket takes now. Throws ContextError if the compositor is gone. */
  private flush(): void {
    while (this.queue.length > 0) {
      const p = this.queue[0];
      const r = this.n.sendMsg(this.fd, [p.bytes], p.fds);
      if (r === -this.n.EAGAIN) return;
      if (r < 0) throw new ContextError(`sending to the compositor failed: ${errnoName(r)}`);
      // fds travel with the first byte: once anything was sent they are the compositor's copies.
      if (p.fds) {
        this.closeFds(p.fds);
        p.fds = null;
      }
      this.queued -= r;
      if (r === p.bytes.length) this.queue.shift();
      else {
        this.queue[0] = { bytes: p.bytes.subarray(r), fds: null };
        return;
      }
    }
  }

  private rearm(): void {
    const events = (this.reading ? this.n.READABLE : 0) | (this.queue.length > 0 ? this.n.WRITABLE : 0);
    if (events === 0) this.watcher.stop();
    else {
      const r = this.watcher.start(events);
      if (r < 0) throw new ContextError(`cannot watch the compositor socket: ${errnoName(r)}`);
    }
  }

  private closeFds(fds: number[]): void {
    for (const fd of fds) this.n.close(fd);
  }
}
