/**
 * Typed loader for the native addon (native/). The addon does only what JS cannot: unix sockets
 * with fd passing, mmap, memfd, eventfd, fd readiness on the libuv loop, and the renderer
 * libraries loaded at run time (virglrenderer).
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

/** Result of virglLoad(). */
export type VirglLoadResult =
  | {
      readonly ok: true;
      /** The file actually loaded (symlinks resolved). */
      readonly path: string;
      /**
       * virglrenderer has no version call: this is the file's version suffix (libtool numbering),
       * e.g. "1.7.7" for release 0.10.4 (Debian 12). null if it cannot be told.
       */
      readonly version: string | null;
      /** Optional/newer entry points present, by C name (e.g. "virgl_renderer_context_create_fence"). */
      readonly optional: readonly string[];
    }
  | { readonly ok: false; readonly error: string };

/** virgl_renderer_resource_get_info(). */
export interface VirglResourceInfo {
  /** virgl (Gallium) format number; the virtio formats are a subset. */
  readonly format: number;
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  /** Bit 0: Y_0_TOP. */
  readonly flags: number;
  /** Bytes per row of level 0 (tightly packed). */
  readonly stride: number;
  /** GL texture name in virglrenderer's context. */
  readonly texId: number;
  /** DRM fourcc (0 if none). */
  readonly drmFourcc: number;
}

/** virgl_renderer_init flags (virglrenderer.h; 1<<5..1<<10 are "unstable" in 0.10.4). */
export const VirglFlags = {
  USE_EGL: 1 << 0,
  THREAD_SYNC: 1 << 1,
  USE_GLX: 1 << 2,
  USE_SURFACELESS: 1 << 3,
  USE_GLES: 1 << 4,
  USE_EXTERNAL_BLOB: 1 << 5,
  VENUS: 1 << 6,
  NO_VIRGL: 1 << 7,
  ASYNC_FENCE_CB: 1 << 8,
  RENDER_SERVER: 1 << 9,
  DRM: 1 << 10,
} as const;

/** describeFd() kinds. */
export const FdKind = { FILE: 1, PIPE: 2, EVENTFD: 3, SOCKET: 4, OTHER: 5 } as const;

/** ringIdx that virglTakeFences() reports for global (ctx 0, write_fence) fences. */
export const VIRGL_GLOBAL_RING = 0xffffffff;

export interface NativeAddon {
  // --- unix sockets ---
  /** socket+bind+listen (non-blocking, unlinks a stale socket file first). fd or -errno. */
  listenUnix(path: string, backlog: number): number;
  /** accept4 on a (non-blocking) listening socket. fd (non-blocking) or -errno (-EAGAIN when none pending). */
  acceptUnix(listenFd: number): number;
  /**
   * Connect; the fd is left blocking unless `nonBlocking` (then the connect never waits either:
   * -EAGAIN when the listener's backlog is full). fd or -errno.
   */
  connectUnix(path: string, nonBlocking?: boolean): number;
  /** AF_UNIX SOCK_STREAM socketpair: [fd0, fd1], or a negative errno number. */
  socketPair(): [number, number] | number;
  /**
   * recvmsg into buf[off, off+len) with SCM_RIGHTS. Returns bytes read (0 = EOF) or -errno.
   * fdsOut[0] receives the number of fds received, fdsOut[1..] the fds (fdsOut.length - 1 at
   * most; extra fds and truncated control data are closed, never leaked).
   */
  recvMsg(fd: number, buf: Uint8Array, off: number, len: number, fdsOut: Int32Array): number;
  /** sendmsg gathering all `bufs` (writev-style), with optional SCM_RIGHTS fds (at most 28, else -EINVAL); MSG_NOSIGNAL. bytes sent or -errno. */
  sendMsg(fd: number, bufs: readonly Uint8Array[], fds: readonly number[] | null): number;
  /** read(2) into buf[off, off+len): bytes or -errno. */
  read(fd: number, buf: Uint8Array, off: number, len: number): number;
  /** write(2) of buf[off, off+len): bytes or -errno. */
  write(fd: number, buf: Uint8Array, off: number, len: number): number;
  /**
   * What kind of file an fd is (for fds a peer sent): a FdKind, or -errno. out[0] = size of a
   * regular file (memfd, shm), out[1] = its access mode (O_RDONLY 0 / O_WRONLY 1 / O_RDWR 2).
   */
  describeFd(fd: number, out: Float64Array): number;
  /** poll(2) one fd: revents (0 on timeout) or -errno. timeoutMs -1 waits forever. */
  pollFd(fd: number, events: number, timeoutMs: number): number;
  setNonBlocking(fd: number, on: boolean): number;
  /** Grow a socket's send buffer (SO_SNDBUFFORCE, else SO_SNDBUF): the size in effect, or -errno. */
  setSendBuffer(fd: number, bytes: number): number;
  close(fd: number): number;
  /** dup(2) with CLOEXEC: fd or -errno. */
  dup(fd: number): number;

  // --- sandbox ---
  /**
   * Install the render server's seccomp filter on every thread of the process (no exec, opens,
   * sockets, ptrace, signals to others, file system changes; EPERM). 0 or -errno. Irreversible.
   */
  sandbox(): number;
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
  /**
   * Gather rows from scattered guest memory: row r is bytes [srcOff + r*srcStride, +rowBytes) of
   * the buffer formed by `segs` ([hostAddr, len] pairs inside live mappings, pinned while copying),
   * written to dst at dstOff + r*dstStride. 0, -EINVAL (ranges) or -EFAULT (a segment not mapped).
   */
  gatherRows(dst: Uint8Array, dstOff: number, dstStride: number, rowBytes: number, rows: number,
    segs: Float64Array, srcOff: number, srcStride: number): number;
  /** Copy len bytes between two views (memmove): for large bulk copies. 0 or -EINVAL on a bad range. */
  copy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): number;

  // --- fd readiness on the libuv loop of the calling thread ---
  /**
   * Watch fd with uv_poll; cb runs on this thread's event loop. -errno if libuv refuses the fd (a
   * file epoll cannot watch, or one already watched). Stop/close the watcher before closing the fd,
   * or pass ownFd: the watcher then closes fd itself once its handle is closed (by close(), or when
   * the thread's environment is torn down), so the fd outlives every use libuv makes of it.
   */
  watch(fd: number, cb: (events: number) => void, ownFd?: boolean): FdWatcher | number;

  // --- zero-copy writes (native/src/zerocopy.cc) ---
  /**
   * Zeroed, page-aligned anonymous memory (pages allocated on first touch), freed when the
   * ArrayBuffer is garbage-collected. Only this memory may be lent to the kernel by vmspliceIn:
   * its pages are never reused while referenced. ArrayBuffer, or -errno.
   */
  allocPages(size: number): ArrayBuffer | number;
  /**
   * Give an allocPages buffer's pages back to the system now (madvise DONTNEED), not at garbage
   * collection; it reads as zeros afterwards. 0, or -errno (-EFAULT if not allocPages memory).
   */
  discardPages(buffer: ArrayBuffer): number;
  /** A non-blocking pipe; out = [read end, write end]. Its capacity in bytes, or -errno. */
  pipeCreate(out: Int32Array, capacity: number): number;
  /**
   * vmsplice: the pipe takes references to the pages of `parts`, in order (allocPages memory only,
   * else -EFAULT; at most 512 parts). Bytes taken (up to the pipe's free room), or -errno
   * (-EAGAIN when full).
   */
  vmspliceIn(pipeWrite: number, parts: readonly Uint8Array[]): number;
  /** splice up to len bytes from the pipe into fd (non-blocking): bytes moved, or -errno. */
  spliceOut(pipeRead: number, fd: number, len: number): number;
  /** SIOCOUTQ: 0 when the peer has read everything written to the socket; > 0 otherwise; or -errno. */
  unsentBytes(fd: number): number;

  // --- virglrenderer (native/src/virgl.cc) ---
  // The library is process-global and bound to the thread that called virglInit(): every other
  // call must come from that thread (-EPERM otherwise; -ENODEV before init/after cleanup). Results
  // are 0 / positive or -errno (virglrenderer's own codes are normalised to negative). Ids are u32;
  // 0 is refused where virtio says it is invalid. A virgl context that decodes a malformed command
  // stream may be marked "in error" by virglrenderer and then silently ignore later submits.

  /**
   * dlopen(path ?? "libvirglrenderer.so.1") and resolve the required entry points. Once loaded, later
   * calls return the same result (the library is never unloaded) and ignore `path`.
   */
  virglLoad(path: string | null): VirglLoadResult;
  /**
   * virgl_renderer_init(cookie, flags, callbacks v3 with write_fence + write_context_fence; GL
   * callbacks NULL, so virglrenderer makes its own EGL context). Here (no /dev/dri) use
   * USE_EGL | USE_SURFACELESS [| USE_GLES]. -EBUSY if already initialised (one per process),
   * -ENODEV if not loaded, -EIO when virglrenderer refuses (it says only -1: e.g. no EGL display).
   * If the owning thread's JS environment is torn down without virglCleanup(), cleanup runs then.
   */
  virglInit(flags: number): number;
  /** virgl_renderer_cleanup(); drops all contexts/resources and releases attached iovecs. 0 or -errno. */
  virglCleanup(): number;
  /** [maxVersion, maxSize] of a capset; [0, 0] if unknown (or not initialised / wrong thread). */
  virglGetCapset(set: number): [maxVersion: number, maxSize: number];
  /** Fill `out` (>= maxSize bytes) with the capset: maxSize, or -EINVAL (unknown set/version, small buffer). */
  virglFillCaps(set: number, version: number, out: Uint8Array): number;
  /**
   * Create context ctxId (>= 1). capsetId 0 → context_create (virgl), else
   * context_create_with_flags(capsetId & 0xff) (-ENOSYS if the library lacks it). `name` is
   * truncated to 64 bytes. Note virglrenderer returns 0 for an id that already exists with the
   * same capset.
   */
  virglContextCreate(ctxId: number, capsetId: number, name: string): number;
  virglContextDestroy(ctxId: number): number;
  /** Make a resource visible to a context (CTX_ATTACH_RESOURCE). 0 or -EINVAL (ids). */
  virglCtxAttachResource(ctxId: number, resId: number): number;
  virglCtxDetachResource(ctxId: number, resId: number): number;
  /**
   * Submit a virgl command stream to a context. cmds.byteLength must be a multiple of 4 (copied to
   * an aligned buffer if cmds is not 4-byte aligned); at most 64 MiB. virglrenderer returns
   * -EINVAL for some malformed streams and 0 for others (then the context may be "in error").
   */
  virglSubmit(ctxId: number, cmds: Uint8Array): number;
  /**
   * virgl_renderer_resource_create without iovecs. args (11 u32): handle, target, format, bind,
   * width, height, depth, array_size, last_level, nr_samples, flags (bit 0 Y_0_TOP). -EEXIST if the
   * id is live (virglrenderer itself would answer 0), -EINVAL for what virglrenderer refuses
   * (unknown format, size above the GL limits, ...).
   */
  virglResourceCreate(args: Uint32Array): number;
  /** Detaches (and frees) the backing if any, then unrefs. 0, or -EINVAL for an unknown id. */
  virglResourceUnref(resId: number): number;
  /**
   * Attach backing: iov = [addr0, len0, addr1, len1, ...] absolute host addresses, each range
   * inside one live mapping made by mmap() (else -EFAULT), lengths > 0, at most 16384 entries.
   * virglrenderer keeps the iovec array: the addon owns it and pins the mappings (an unmap()
   * meanwhile defers the munmap) until virglDetachIov/virglResourceUnref/virglCleanup.
   * -EBUSY if a backing is already attached; -EINVAL if virglrenderer refuses (unknown resource).
   */
  virglAttachIov(resId: number, iov: BigUint64Array): number;
  /** Detach and release the backing. -EINVAL if none is attached. */
  virglDetachIov(resId: number): number;
  /**
   * TRANSFER_TO_HOST_3D 1:1 (transfer_write_iov with iov NULL: from the attached backing;
   * -EINVAL if none). box = [x, y, z, w, h, d]; offset = byte offset in the backing of the box
   * origin. ctxId 0 = no context (as QEMU does for 2D).
   */
  virglTransferWrite(resId: number, ctxId: number, level: number, stride: number, layerStride: number, box: Uint32Array, offset: number): number;
  /** TRANSFER_FROM_HOST_3D 1:1 (into the attached backing). Same arguments as virglTransferWrite. */
  virglTransferRead(resId: number, ctxId: number, level: number, stride: number, layerStride: number, box: Uint32Array, offset: number): number;
  /**
   * Read rectangle box = [x, y, 0, w, h, 1] of level 0 of a 4-byte-per-pixel (scanout format)
   * resource into dst: pixel (x, y) at dst[0], rows dstStride apart, bytes in the format's
   * memory order (B8G8R8A8: B, G, R, A). Rows come in transfer order: row r is what a guest
   * TRANSFER_FROM_HOST_3D would put in row r of its backing (so for QEMU-style 2D resources,
   * Y_0_TOP + TRANSFER_TO_HOST_2D, row 0 is the top). GPU rendering (blit/draw y) lands in row
   * height-1-y of a Y_0_TOP resource and in row y of one without the flag: show Y_0_TOP resources
   * as is and flip the others (QEMU's rule for scanout textures).
   * 0, or -EINVAL for a box outside the resource, a non-scanout format, a short dst or stride.
   */
  virglReadback(resId: number, box: Uint32Array, dst: Uint8Array, dstStride: number): number;
  /** virgl_renderer_resource_get_info, or -errno (-EINVAL: unknown resource). */
  virglResourceGetInfo(resId: number): VirglResourceInfo | number;
  /**
   * Global (ctx 0 timeline) fence: fenceId is 32-bit (virglrenderer's limit); reported by
   * virglTakeFences() as (0, VIRGL_GLOBAL_RING, fenceId) once everything submitted before it is
   * done. One poll reports only the newest retired id: treat it as "every fence <= id is done".
   */
  virglCreateFence(fenceId: number, ctxId: number): number;
  /**
   * Per-context fence on (ctxId, ringIdx < 64); flags: 1 = MERGEABLE. Reported as
   * (ctxId, ringIdx, fenceId). -ENOSYS if the library lacks it. virglrenderer 0.10.4 accepts
   * only ring 0 for virgl contexts (-EINVAL otherwise).
   */
  virglContextCreateFence(ctxId: number, flags: number, ringIdx: number, fenceId: bigint): number;
  /**
   * virgl_renderer_poll(): retire finished fences (their callbacks run inside this call, on this
   * thread, without THREAD_SYNC). A no-op when not initialised / from another thread.
   */
  virglPoll(): void;
  /** virgl_renderer_context_poll(ctxId) (non-virgl context types). 0, or -ENOSYS if missing. */
  virglContextPoll(ctxId: number): number;
  /**
   * virgl_renderer_get_poll_fd(): an fd (owned by virglrenderer: do not close) that becomes
   * readable when virglPoll() has work, or -ENOENT when there is none (without THREAD_SYNC:
   * then call virglPoll() on a timer while fences are pending).
   */
  virglPollFd(): number;
  /**
   * Fences signalled since the last call, as (ctxId, ringIdx, fenceId) triples, in signal order.
   * Callable from any thread (the queue has its own lock).
   */
  virglTakeFences(): BigUint64Array;

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
  readonly ENOMEM: number;
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
    1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM',
    13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 24: 'EMFILE',
    32: 'EPIPE', 38: 'ENOSYS', 98: 'EADDRINUSE', 104: 'ECONNRESET', 107: 'ENOTCONN',
    111: 'ECONNREFUSED',
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
