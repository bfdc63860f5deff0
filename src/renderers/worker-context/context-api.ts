/**
 * The contract between the worker-context framework and a context type that runs one context per
 * worker thread (cross-domain now, gfxstream next). The framework (worker.ts on the worker,
 * host.ts on the coordinator) owns the rings, doorbells, fence bookkeeping and loss reporting; a
 * context type implements WorkerContext and exports a ContextFactory as its module's `default`.
 * Everything here runs on the context's own worker thread, on that worker's event loop.
 */

/** A resource attached to the context (CTX_ATTACH_RESOURCE), as the worker sees it. */
export interface AttachedResource {
  readonly id: number;
  /**
   * The resource's guest memory, segment by segment in resource order (guest blobs, 2D backing):
   * views over guest RAM, valid until the resource is detached. Empty for host-only resources.
   */
  readonly guest: readonly Uint8Array[];
  /** The resource's host memory (host3d blobs): an fd the worker owns a dup of, or -1. */
  readonly fd: number;
  /** Bytes of the resource (blob size; for guest memory the sum of the segments). */
  readonly size: number;
}

/** Host memory a context made for RESOURCE_CREATE_BLOB (BLOB_MEM_HOST3D / HOST3D_GUEST). */
export interface HostBlob {
  /** An fd (memfd) whose ownership passes to the device with this answer. */
  readonly fd: number;
  readonly size: number;
  /** virtio-gpu map_info cache type (VIRTIO_GPU_MAP_CACHE_*), for RESOURCE_MAP_BLOB. */
  readonly mapInfo: number;
}

/** A failure the guest caused that ends this context (answered with an error, reported lost). */
export class ContextError extends Error {}

/** What the framework gives a context. */
export interface ContextEnv {
  readonly ctxId: number;
  /** The capset id the guest created the context with (CONTEXT_INIT). */
  readonly capsetId: number;
  /** The debug name from CTX_CREATE. */
  readonly name: string;
  /** Options of the context type, from the daemon's command line (e.g. the Wayland socket path). */
  readonly options: Readonly<Record<string, string>>;
  /** A resource attached to this context, or undefined. */
  resource(id: number): AttachedResource | undefined;
  /**
   * Fence `fenceId` on ring `ringIdx` is done. Fences of one ring must be signalled in the order
   * the context was given them (fence()); signalling one signals every earlier one of that ring.
   */
  signal(ringIdx: number, fenceId: bigint): void;
  /** End this context from inside (peer gone, hostile input noticed asynchronously). */
  fail(reason: string): void;
  /** Rate-limited log line about something the guest did (the daemon's log.guest). */
  guest(key: string, message: string): void;
}

export interface WorkerContext {
  /**
   * One SUBMIT_3D command stream (a view valid only during the call). Throwing ContextError ends
   * the context; any other exception too, but is logged as a bug.
   */
  submit(stream: Uint8Array): void;
  /**
   * A fenced command on ring `ringIdx` (0..63) follows everything submitted before it: call
   * env.signal(ringIdx, fenceId) when the ring's work up to here is done (at once, if nothing
   * of the ring is outstanding).
   */
  fence(ringIdx: number, fenceId: bigint): void;
  /** RESOURCE_CREATE_BLOB with BLOB_MEM_HOST3D(_GUEST) on this context. Throws ContextError to refuse. */
  createBlob(blobId: bigint, size: number, flags: number): HostBlob;
  /** A resource was attached / is about to be detached (optional). */
  attached?(res: AttachedResource): void;
  detached?(res: AttachedResource): void;
  /** CTX_DESTROY or loss: close everything (sockets, pipes, fds, watchers). Must not throw. */
  destroy(): void;
}

export type ContextFactory = (env: ContextEnv) => WorkerContext;
