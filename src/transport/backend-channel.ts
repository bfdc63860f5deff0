/**
 * The back-end request channel (SET_BACKEND_REQ_FD): a socket on which we send requests to the
 * front-end (SHMEM_MAP / SHMEM_UNMAP) and, with REPLY_ACK negotiated, read its u64 status replies.
 * Replies come in request order, so pending requests form a FIFO. A front-end that answers out of
 * step, sends garbage, closes the socket or stays silent past the timeout fails the channel: every
 * pending and later request is rejected (and logged), nothing waits forever, nothing is retried.
 */
import { native, watchFd, type FdWatcher } from '../native.js';
import { log } from '../log.js';
import { FLAG_NEED_REPLY, FLAG_REPLY, HDR_SIZE, VERSION } from './messages.js';
import { frame, sendAll } from './wire.js';

/** A front-end that does not answer a request in this time is considered gone. */
export const BACKEND_REPLY_TIMEOUT_MS = 5000;
/** Requests awaiting a reply at once; beyond it requests are refused (bounded memory). */
export const MAX_PENDING = 1024;
const REPLY_SIZE = HDR_SIZE + 8;

interface Pending {
  readonly request: number;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

export class BackendChannel {
  private readonly watcher: FdWatcher;
  private readonly pending: Pending[] = [];
  private readonly reply = new Uint8Array(REPLY_SIZE);
  private replyLen = 0;
  private readonly fdsIn = new Int32Array(9);
  private timer: NodeJS.Timeout | null = null;
  private failure: string | null = null;

  /** Takes ownership of fd. replyAck: REPLY_ACK was negotiated, so every request is answered. */
  constructor(private fd: number, private readonly replyAck: boolean) {
    native().setNonBlocking(fd, true);
    try {
      this.watcher = watchFd('watch the back-end request channel', fd, (ev) => (ev < 0 ? this.fail(`poll error ${ev}`) : this.onReadable()));
    } catch (e) {
      native().close(fd);
      throw e;
    }
    this.watcher.start(native().READABLE);
  }

  get failed(): string | null {
    return this.failure;
  }

  /**
   * Send a request with its payload (and fds, which stay the caller's). Resolves when the
   * front-end acknowledged it with status 0 (at once without REPLY_ACK); rejects with the reason.
   */
  request(request: number, body: Uint8Array, fds: readonly number[]): Promise<void> {
    if (this.failure !== null) return Promise.reject(new Error(`back-end channel failed earlier: ${this.failure}`));
    if (this.pending.length >= MAX_PENDING) return Promise.reject(new Error(`${MAX_PENDING} back-end requests already wait for the front-end`));
    const err = sendAll(this.fd, frame(request, VERSION | (this.replyAck ? FLAG_NEED_REPLY : 0), body), fds);
    if (err !== null) {
      this.fail(err);
      return Promise.reject(new Error(err));
    }
    if (!this.replyAck) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ request, resolve, reject });
      if (!this.timer) this.rearm();
    });
  }

  /** The session is over or the front-end set a new channel: reject what is pending, close the fd. */
  close(why: string): void {
    if (this.failure === null) this.failure = why;
    this.rejectAll(why);
    this.watcher.close();
    if (this.fd >= 0) native().close(this.fd);
    this.fd = -1;
  }

  private onReadable(): void {
    const n = native();
    while (this.failure === null) {
      const got = n.recvMsg(this.fd, this.reply, this.replyLen, REPLY_SIZE - this.replyLen, this.fdsIn);
      for (let i = 1; i <= this.fdsIn[0]; i++) n.close(this.fdsIn[i]); // no reply carries fds
      if (got === -n.EAGAIN) return;
      if (got === 0) return this.fail('the front-end closed it');
      if (got < 0) return this.fail(`read error ${got}`);
      this.replyLen += got;
      if (this.replyLen === REPLY_SIZE) {
        this.replyLen = 0;
        this.onReply();
      }
    }
  }

  private onReply(): void {
    const v = new DataView(this.reply.buffer);
    const request = v.getUint32(0, true), flags = v.getUint32(4, true), size = v.getUint32(8, true);
    const head = this.pending[0];
    if (!head) return this.fail(`a reply to request ${request} that nothing waits for`);
    if ((flags & 0x3) !== VERSION || !(flags & FLAG_REPLY) || size !== 8 || request !== head.request) {
      return this.fail(`a malformed reply (request ${request}, flags 0x${flags.toString(16)}, size ${size}; expected a reply to ${head.request})`);
    }
    this.pending.shift();
    const status = v.getBigUint64(HDR_SIZE, true);
    if (status === 0n) head.resolve();
    else head.reject(new Error(`the front-end refused it (status ${status})`));
    this.rearm();
  }

  private rearm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = this.pending.length > 0
      ? setTimeout(() => this.fail(`no reply within ${BACKEND_REPLY_TIMEOUT_MS} ms`), BACKEND_REPLY_TIMEOUT_MS)
      : null;
  }

  private fail(why: string): void {
    if (this.failure !== null) return;
    this.failure = why;
    log.error(`vhost-user: back-end channel: ${why}; its requests fail from now on`);
    this.rejectAll(why);
    this.watcher.stop();
  }

  private rejectAll(why: string): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const p of this.pending.splice(0)) p.reject(new Error(`back-end channel: ${why}`));
  }
}
