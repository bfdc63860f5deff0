/**
 * Typed loader for the native addon (native/). The addon does only what JS cannot: unix sockets
 * with fd passing, mmap, memfd, eventfd and fd readiness on the libuv loop.
 *
 * Conventions: every function is synchronous and never throws for an OS error; it returns a
 * negative errno instead (e.g. -11 for EAGAIN). It throws a TypeError only for wrong argument
 * types (a programming error). All fds are created O_CLOEXEC.
 */
import { createRequire } from 'node:module';
import { packagePath } from './package-path.js';

export interface FdWatcher {
  /** Start (or change) watching for `events` (READABLE | WRITABLE); the callback gets the ready set, or a negative errno. 0 or -errno. */
  start(events: number): number;
  stop(): void;
  /** Stops and releases the libuv handle. The fd itself is not closed. Idempotent. */
  close(): void;
}

export interface MapHandle {
  /** Address of the mapping; usable with view() from any thread that loaded the addon. */
  readonly addr: bigint;
  readonly size: number;
}

export interface NativeAddon {
  // --- unix sockets ---
  /** socket+bind+listen (non-blocking, unlinks a stale socket file first). fd or -errno. */
  listenUnix(path: string, backlog: number): number;
  /** accept4 on a (non-blocking) listening socket. fd (non-blocking) or -errno (-EAGAIN when none pending). */
  acceptUnix(listenFd: number): number;
  /** Blocking connect; the returned fd is left blocking. fd or -errno. */
  connectUnix(path: string): number;
  /** AF_UNIX SOCK_STREAM socketpair: [fd0, fd1], or a negative errno number. */
  socketPair(): [number, number] | number;
  /**
   * recvmsg into buf[off, off+len) with SCM_RIGHTS. Returns bytes read (0 = EOF) or -errno.
   * fdsOut[0] receives the number of fds received, fdsOut[1..] the fds (fdsOut.length - 1 at
   * most; extra fds and truncated control data are closed, never leaked).
   */
  recvMsg(fd: number, buf: Uint8Array, off: number, len: number, fdsOut: Int32Array): number;
  /** sendmsg gathering all `bufs` (writev-style), with optional SCM_RIGHTS fds; MSG_NOSIGNAL. bytes sent or -errno. */
  sendMsg(fd: number, bufs: readonly Uint8Array[], fds: readonly number[] | null): number;
  /** read(2) into buf[off, off+len): bytes or -errno. */
  read(fd: number, buf: Uint8Array, off: number, len: number): number;
  /** poll(2) one fd: revents (0 on timeout) or -errno. timeoutMs -1 waits forever. */
  pollFd(fd: number, events: number, timeoutMs: number): number;
  setNonBlocking(fd: number, on: boolean): number;
  close(fd: number): number;
  /** dup(2) with CLOEXEC: fd or -errno. */
  dup(fd: number): number;

  // --- eventfd ---
  /** eventfd(initval, EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)): fd or -errno. */
  eventfd(initval: number, nonBlocking: boolean): number;
  /** Read the 8-byte counter: value (>= 1) or -errno (-EAGAIN when zero and non-blocking). */
  eventfdRead(fd: number): number;
  /** Add `value` to the counter: 0 or -errno. */
  eventfdWrite(fd: number, value: number): number;

  // --- memory ---
  /** memfd_create(name, MFD_CLOEXEC) + ftruncate(size): fd or -errno. */
  memfdCreate(name: string, size: number): number;
  /** Size of the file behind fd (fstat st_size), or -errno. */
  fdSize(fd: number): number;
  /** mmap(NULL, size, READ|WRITE, MAP_SHARED, fd, offset). A handle, or -errno. */
  mmap(fd: number, size: number, offset: number): MapHandle | number;
  /**
   * An external ArrayBuffer over [addr+offset, addr+offset+len) of a live mapping (len <= 1 GiB).
   * Each view keeps the mapping alive: munmap happens only after unmap() AND every view was
   * garbage-collected, so a stale view can never fault. Returns -EINVAL if the range is not inside
   * a live mapping made by mmap().
   */
  view(addr: bigint, offset: number, len: number): ArrayBuffer | number;
  /** Drop the mapping's own reference (see view). 0 or -errno (-EINVAL if unknown or already unmapped). */
  unmap(addr: bigint): number;
  /** Copy len bytes between two views (memmove): for large bulk copies. 0 or -EINVAL on a bad range. */
  copy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): number;

  // --- fd readiness on the libuv loop of the calling thread ---
  /**
   * Watch fd with uv_poll; cb runs on this thread's event loop. -errno if libuv refuses the fd (a
   * file epoll cannot watch, or one already watched). Stop/close the watcher before closing the fd.
   */
  watch(fd: number, cb: (events: number) => void): FdWatcher | number;

  readonly READABLE: number; // = UV_READABLE
  readonly WRITABLE: number; // = UV_WRITABLE
  readonly POLLIN: number;
  readonly POLLOUT: number;
  readonly POLLHUP: number;
  readonly POLLERR: number;
  readonly EAGAIN: number;
  readonly EINTR: number;
  readonly EINVAL: number;
  readonly EPIPE: number;
}

let loaded: NativeAddon | undefined;

/** The addon, loaded once per thread. */
export function native(): NativeAddon {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    loaded = require(packagePath('native/build/Release/vhost_gpu_native.node')) as NativeAddon;
  }
  return loaded;
}

/** Human-readable name for a negative errno returned by the addon. */
export function errnoName(code: number): string {
  const names: Record<number, string> = {
    1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES',
    14: 'EFAULT', 17: 'EEXIST', 22: 'EINVAL', 24: 'EMFILE', 32: 'EPIPE', 98: 'EADDRINUSE',
    104: 'ECONNRESET', 107: 'ENOTCONN', 111: 'ECONNREFUSED',
  };
  return names[-code] ?? `errno ${-code}`;
}

/** Error for a failed native step: names the step, like vhost's map_err variants. */
export class NativeError extends Error {
  constructor(readonly step: string, readonly errno: number) {
    super(`${step} failed: ${errnoName(errno)}`);
  }
}

/** A watcher, or a NativeError naming the step. */
export function watchFd(step: string, fd: number, cb: (events: number) => void): FdWatcher {
  const w = native().watch(fd, cb);
  if (typeof w === 'number') throw new NativeError(step, w);
  return w;
}

/** Unwrap a native fd/number result, throwing a NativeError that names the step. */
export function check(step: string, result: number): number {
  if (result < 0) throw new NativeError(step, result);
  return result;
}
