/**
 * Coordinator side of contexts that run one per worker thread. WorkerContexts (the "component")
 * owns the piscina pool and the limits; WorkerContextHost is one context: its command ring and
 * doorbell to the worker, the completion ring it watches, and the fences and blob requests
 * waiting for answers. The coordinator never blocks on a worker: a full command ring queues
 * (bounded), a dead worker settles everything pending and marks the context lost.
 */
import { Piscina } from 'piscina';
import { errorMessage, log } from '../../log.js';
import { check, errnoName, native, watchFd, type FdWatcher, type NativeAddon } from '../../native.js';
import { packagePath } from '../../package-path.js';
import { SabRing } from '../sab-ring.js';
import { RingWriter } from '../virgl/ring-writer.js';
import type { HostBlob } from './context-api.js';
import type { WorkerContextResult } from './worker.js';
import * as P from './protocol.js';

export const ENODEV = -19;
const COMMAND_RING = 1 << 20;
const COMPLETION_RING = 64 << 10;
/** Commands queued beside a full ring, at most (then SUBMIT is refused). */
const MAX_BACKLOG = 4 << 20;
/** Host memory charged per context: its rings, the bounded backlog and the thread's own heap. */
export const CONTEXT_CHARGE = COMMAND_RING + COMPLETION_RING + MAX_BACKLOG + (8 << 20);
/** How long a destroyed context's worker may take to finish before it is terminated. */
const DESTROY_TIMEOUT_MS = 2000;

/** A context type run on workers: the module with its factory, and its options. */
export interface WorkerContextType {
  readonly name: string;
  /** Absolute path of the compiled module whose default export is the ContextFactory. */
  readonly module: string;
  readonly options: Readonly<Record<string, string>>;
}

/** Thrown for requests a context cannot take (too large, backlog full); the device answers with it. */
export class ContextRefusal extends Error {
  constructor(readonly kind: 'param' | 'oom' | 'unspec', message: string) {
    super(message);
  }
}

/** The pool of context workers: one long-lived task, on its own worker, per context. */
export class WorkerContexts {
  private pool: Piscina | null = null;
  private readonly live = new Set<WorkerContextHost>();

  constructor(private readonly maxContexts: number) {}

  get count(): number {
    return this.live.size;
  }

  /** Start a context on a worker of its own. Throws ContextRefusal when the limit is reached. */
  start(type: WorkerContextType, ctxId: number, capsetId: number, name: string, onLost: (reason: string) => void): WorkerContextHost {
    if (this.live.size >= this.maxContexts) throw new ContextRefusal('oom', `${this.live.size} worker contexts already run (--max-contexts ${this.maxContexts})`);
    // Created on first use so a daemon without such contexts starts no thread machinery.
    this.pool ??= this.makePool();
    const host = new WorkerContextHost(this.pool, type, ctxId, capsetId, name, onLost, () => this.live.delete(host));
    this.live.add(host);
    return host;
  }

  private makePool(): Piscina {
    const pool = new Piscina({
      filename: packagePath('dist/src/renderers/worker-context/worker.js'),
      minThreads: 0,
      // One task per worker and never more tasks than workers: a context never waits in a queue.
      maxThreads: this.maxContexts,
      concurrentTasksPerWorker: 1,
      idleTimeout: 1000,
      atomics: 'disabled', // the task lives on the worker's event loop
    });
    pool.on('error', (e: unknown) => log.error(`context worker pool: ${errorMessage(e)}`));
    return pool;
  }

  /** Destroy every context and stop the pool. */
  async close(): Promise<void> {
    const ended = [...this.live].map((h) => h.destroy());
    await Promise.all(ended);
    const pool = this.pool;
    this.pool = null;
    if (pool) await pool.destroy();
  }
}

interface PendingFence {
  readonly seq: number;
  readonly resolve: (status: number) => void;
}

export class WorkerContextHost {
  private readonly n: NativeAddon = native();
  private readonly out: RingWriter;
  private readonly cpl: SabRing;
  private readonly ctl: Int32Array;
  private readonly commandFd: number;
  private readonly completionFd: number;
  private readonly watcher: FdWatcher;
  private readonly abort = new AbortController();
  private readonly task: Promise<void>;
  /** Per ring (GLOBAL_RING last), fences waiting for SIGNALLED, oldest first. */
  private readonly fences: PendingFence[][] = Array.from({ length: P.MAX_RINGS + 1 }, () => []);
  private readonly blobs = new Map<number, { resolve: (b: HostBlob) => void; reject: (e: Error) => void }>();
  /** fds dup'ed for the worker: it closes them, unless it died without running its cleanup. */
  private readonly workerFds = new Map<number, number>();
  private seq = 0;
  private tag = 0;
  private lostReason: string | null = null;
  private destroyed: Promise<void> | null = null;
  private ended = false;

  constructor(pool: Piscina, type: WorkerContextType, readonly ctxId: number, capsetId: number, name: string,
    private readonly onLost: (reason: string) => void, private readonly onGone: () => void) {
    const n = this.n;
    this.commandFd = check('eventfd (context commands)', n.eventfd(0, true));
    const completionFd = n.eventfd(0, true);
    if (completionFd < 0) {
      n.close(this.commandFd);
      check('eventfd (context completions)', completionFd);
    }
    this.completionFd = completionFd;
    const init: P.WorkerContextInit = {
      module: type.module, ctxId, capsetId, name, options: type.options,
      commandRing: SabRing.allocate(COMMAND_RING),
      completionRing: SabRing.allocate(COMPLETION_RING),
      control: new SharedArrayBuffer(4 * P.CTL.WORDS),
      commandFd: this.commandFd,
      completionFd,
    };
    this.ctl = new Int32Array(init.control, 0, P.CTL.WORDS);
    this.out = new RingWriter(new SabRing(init.commandRing), this.ctl, P.CTL.CMD_SPACE_WANTED);
    this.cpl = new SabRing(init.completionRing);
    this.watcher = watchFd('watch a context completion eventfd', completionFd, (ev) => {
      if (ev < 0) this.lose(`polling its completion eventfd failed: ${errnoName(ev)}`);
      else this.onCompletions();
    });
    this.watcher.start(n.READABLE);
    this.task = (pool.run(init, { signal: this.abort.signal }) as Promise<WorkerContextResult>).then(
      (r) => this.taskEnded(r.ok ? null : r.reason ?? 'ended', true),
      (e: unknown) => this.taskEnded(`worker died: ${errorMessage(e)}`, false),
    );
  }

  /** Why the context is lost, or null while it works. */
  get lost(): string | null {
    return this.lostReason;
  }

  /** Attach a resource: its guest memory ([hostAddr, len] pairs) and/or host memory fd (dup'ed for the worker). */
  attach(resId: number, segs: Float64Array | null, fd: number, size: number): void {
    if (!this.usable()) return;
    const nsegs = segs ? segs.length / 2 : 0;
    const bytes = P.ATTACH.SEGS + nsegs * P.ATTACH.SEG_BYTES;
    if (bytes > this.out.maxMessage) throw new ContextRefusal('param', `resource ${resId} has ${nsegs} segments, too many to attach to a context`);
    let dup = -1;
    if (fd >= 0) {
      dup = check('dup a resource fd for its context', this.n.dup(fd));
      this.workerFds.set(resId, dup); // on re-attach the worker closes its older dup itself
    }
    this.send(bytes, (v, o) => {
      v.setUint32(o + P.OP, P.Cmd.ATTACH, true);
      v.setUint32(o + P.ATTACH.RES, resId, true);
      v.setInt32(o + P.ATTACH.FD, dup, true);
      v.setUint32(o + P.ATTACH.SIZE_LO, P.lo32(size), true);
      v.setUint32(o + P.ATTACH.SIZE_HI, P.hi32(size), true);
      v.setUint32(o + P.ATTACH.NSEGS, nsegs, true);
      for (let i = 0; i < nsegs; i++) {
        const s = o + P.ATTACH.SEGS + i * P.ATTACH.SEG_BYTES, addr = segs![2 * i];
        v.setUint32(s, addr % 2 ** 32, true);
        v.setUint32(s + 4, Math.floor(addr / 2 ** 32), true);
        v.setUint32(s + 8, segs![2 * i + 1], true);
      }
    });
  }

  detach(resId: number): void {
    if (!this.usable()) return;
    this.workerFds.delete(resId); // the worker closes its dup on DETACH
    this.send(P.DETACH.BYTES, (v, o) => {
      v.setUint32(o + P.OP, P.Cmd.DETACH, true);
      v.setUint32(o + P.DETACH.RES, resId, true);
    });
  }

  /** Largest SUBMIT_3D stream a context takes in one message. */
  get maxSubmit(): number {
    return this.out.maxMessage - P.SUBMIT.DATA;
  }

  /** Queue a command stream; `copy` fills it straight into the ring (or the backlog buffer). */
  submit(size: number, copy: (dst: Uint8Array, dstOff: number, len: number) => void): void {
    if (!this.usable()) throw new ContextRefusal('unspec', `context ${this.ctxId} is lost: ${this.lostReason}`);
    if (size > this.maxSubmit) throw new ContextRefusal('param', `SUBMIT_3D of ${size} bytes (max ${this.maxSubmit} for this context)`);
    if (this.out.backlog.bytes > MAX_BACKLOG) throw new ContextRefusal('oom', `context ${this.ctxId} is ${this.out.backlog.bytes} bytes behind`);
    this.send(P.SUBMIT.DATA + size, (v, o, bytes) => {
      v.setUint32(o + P.OP, P.Cmd.SUBMIT, true);
      v.setUint32(o + P.SUBMIT.LEN, size, true);
      copy(bytes, o + P.SUBMIT.DATA, size);
    });
  }

  /**
   * A fence on `ring` (0..63, or GLOBAL_RING) after everything sent so far: resolves with 0 when
   * the context signalled it, or a negative errno when it never will (context lost or destroyed).
   */
  fence(ring: number, fenceId: bigint): Promise<number> {
    if (!this.usable()) return Promise.resolve(ENODEV);
    const seq = this.seq = (this.seq + 1) >>> 0;
    return new Promise((resolve) => {
      this.fences[ring].push({ seq, resolve });
      this.send(P.FENCE.BYTES, (v, o) => {
        v.setUint32(o + P.OP, P.Cmd.FENCE, true);
        v.setUint32(o + P.FENCE.RING, ring, true);
        v.setUint32(o + P.FENCE.SEQ, seq, true);
        v.setUint32(o + P.FENCE.ID_LO, P.lo32(fenceId), true);
        v.setUint32(o + P.FENCE.ID_HI, P.hi32(fenceId), true);
      });
    });
  }

  /** Host memory for RESOURCE_CREATE_BLOB (HOST3D): the worker makes it; the fd is then ours. */
  createBlob(blobId: bigint, size: number, flags: number): Promise<HostBlob> {
    if (!this.usable()) return Promise.reject(new ContextRefusal('unspec', `context ${this.ctxId} is lost: ${this.lostReason}`));
    const tag = this.tag = (this.tag + 1) >>> 0;
    return new Promise((resolve, reject) => {
      this.blobs.set(tag, { resolve, reject });
      this.send(P.CREATE_BLOB.BYTES, (v, o) => {
        v.setUint32(o + P.OP, P.Cmd.CREATE_BLOB, true);
        v.setUint32(o + P.CREATE_BLOB.TAG, tag, true);
        v.setUint32(o + P.CREATE_BLOB.ID_LO, P.lo32(blobId), true);
        v.setUint32(o + P.CREATE_BLOB.ID_HI, P.hi32(blobId), true);
        v.setUint32(o + P.CREATE_BLOB.SIZE_LO, P.lo32(size), true);
        v.setUint32(o + P.CREATE_BLOB.SIZE_HI, P.hi32(size), true);
        v.setUint32(o + P.CREATE_BLOB.FLAGS, flags, true);
      });
    });
  }

  /** CTX_DESTROY: ask the worker to finish; terminate it if it does not in time. Idempotent. */
  destroy(): Promise<void> {
    if (this.destroyed) return this.destroyed;
    if (!this.ended && this.lostReason === null) {
      this.send(P.DESTROY_BYTES, (v, o) => v.setUint32(o + P.OP, P.Cmd.DESTROY, true));
    }
    this.lostReason ??= 'destroyed';
    this.settleAll();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(() => {
      log.warn(`context ${this.ctxId}: worker did not finish within ${DESTROY_TIMEOUT_MS} ms; terminated`);
      this.abort.abort();
      resolve();
    }, DESTROY_TIMEOUT_MS)));
    this.destroyed = Promise.race([this.task, timeout]).then(() => clearTimeout(timer));
    return this.destroyed;
  }

  /** Terminate the worker now (tests; a context that must go regardless). */
  kill(): void {
    this.abort.abort();
  }

  private usable(): boolean {
    return this.lostReason === null && !this.ended;
  }

  private send(size: number, fill: (v: DataView, at: number, bytes: Uint8Array) => void): void {
    const at = this.out.begin(size);
    fill(this.out.view, at, this.out.bytes);
    if (this.out.end()) this.n.eventfdWrite(this.commandFd, 1);
  }

  private onCompletions(): void {
    if (this.ended) return;
    this.n.eventfdRead(this.completionFd);
    for (let m = this.cpl.peek(); m; m = this.cpl.peek()) {
      this.handle(m[0], m[1]);
      this.cpl.release();
    }
    if (Atomics.exchange(this.ctl, P.CTL.CPL_SPACE_WANTED, 0) !== 0) this.n.eventfdWrite(this.commandFd, 1);
    if (this.out.backlog.messages > 0 && this.out.flush()) this.n.eventfdWrite(this.commandFd, 1);
  }

  private handle(at: number, len: number): void {
    const v = this.cpl.view;
    const u32 = (off: number) => v.getUint32(at + off, true);
    switch (u32(P.OP)) {
      case P.Cpl.SIGNALLED: {
        const q = this.fences[u32(P.SIGNALLED.RING)];
        const seq = u32(P.SIGNALLED.SEQ);
        const upTo = q ? q.findIndex((f) => f.seq === seq) : -1;
        if (upTo < 0) break;
        for (const f of q.splice(0, upTo + 1)) f.resolve(0);
        break;
      }
      case P.Cpl.BLOB: {
        const tag = u32(P.BLOB.TAG), status = v.getInt32(at + P.BLOB.STATUS, true);
        const waiter = this.blobs.get(tag);
        this.blobs.delete(tag);
        const fd = v.getInt32(at + P.BLOB.FD, true);
        if (!waiter) {
          if (fd >= 0) this.n.close(fd);
        } else if (status < 0 || fd < 0) {
          waiter.reject(new ContextRefusal('param', `context ${this.ctxId} refused the blob`));
        } else {
          waiter.resolve({ fd, size: P.join53(u32(P.BLOB.SIZE_LO), u32(P.BLOB.SIZE_HI)), mapInfo: u32(P.BLOB.MAP_INFO) });
        }
        break;
      }
      case P.Cpl.LOST: {
        const n = Math.min(u32(P.LOST.LEN), len - P.LOST.TEXT);
        this.lose(new TextDecoder().decode(this.cpl.bytes.slice(at + P.LOST.TEXT, at + P.LOST.TEXT + n)));
        break;
      }
      default:
        this.lose(`unknown completion op ${u32(P.OP)}`);
    }
  }

  private lose(reason: string): void {
    if (this.lostReason !== null) return;
    this.lostReason = reason;
    log.warn(`context ${this.ctxId} lost: ${reason}`);
    this.settleAll();
    try {
      this.onLost(reason);
    } catch (e) {
      log.error(`context ${this.ctxId}: onLost threw: ${errorMessage(e)}`);
    }
  }

  /** Every fence completes (with ENODEV), every blob request fails: nothing waits for a dead worker. */
  private settleAll(): void {
    for (const q of this.fences) for (const f of q.splice(0)) f.resolve(ENODEV);
    for (const b of this.blobs.values()) b.reject(new ContextRefusal('unspec', `context ${this.ctxId} is gone`));
    this.blobs.clear();
  }

  private taskEnded(reason: string | null, cleanedUp: boolean): void {
    if (!cleanedUp) for (const fd of this.workerFds.values()) this.n.close(fd);
    this.workerFds.clear();
    if (reason !== null && this.lostReason === null) this.lose(reason);
    else if (this.lostReason === null) this.lose('worker ended');
    // Blob fds the worker answered after we stopped listening.
    this.onCompletions();
    this.ended = true;
    this.watcher.close();
    this.n.close(this.commandFd);
    this.n.close(this.completionFd);
    this.out.discard();
    this.onGone();
  }
}
