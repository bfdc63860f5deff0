/**
 * Coordinator side of the virgl renderer. One piscina worker (worker.ts) owns virglrenderer
 * (process-global, bound to one thread); this class starts it, reads its completions and settles
 * fences and readbacks. The command methods are in commands.ts.
 *
 * Fences and readbacks resolve with a status instead of rejecting (0, or a negative errno when it
 * will never happen), so a caller without a handler cannot bring the daemon down with an
 * unhandled rejection. A worker that dies marks the component lost: everything pending settles
 * with -ENODEV, resources are released, and later calls are no-ops.
 */
import { Piscina } from 'piscina';
import { log } from '../../log.js';
import { check, errnoName, native, VirglFlags, watchFd, type FdWatcher } from '../../native.js';
import { packagePath } from '../../package-path.js';
import { SabRing } from '../sab-ring.js';
import { ENODEV, VirglCommands } from './commands.js';
import { RingWriter } from './ring-writer.js';
import * as P from './protocol.js';

export type { VirglCapsetName } from './protocol.js';
export type { ReadbackRect, ReadbackTarget } from './commands.js';

const ECANCELED = -125;
const DEFAULT_FLAGS = VirglFlags.USE_EGL | VirglFlags.USE_SURFACELESS | VirglFlags.THREAD_SYNC;
const MIN_COMMAND_RING = 1024, MIN_COMPLETION_RING = 4096; // a virgl2 capset (1376 B) must fit
/** How long close() lets the worker finish SHUTDOWN before terminating it. */
const SHUTDOWN_TIMEOUT_MS = 10_000;

export interface VirglStartOptions {
  readonly capsets: readonly P.VirglCapsetName[];
  /** virgl_renderer_init flags; default USE_EGL | USE_SURFACELESS | THREAD_SYNC. */
  readonly flags?: number;
  /** Default: libvirglrenderer.so.1 from the loader path. */
  readonly libraryPath?: string | null;
  /** Command ring data bytes (power of two >= 1024); default 2 MiB. */
  readonly commandRingBytes?: number;
  /** Completion ring data bytes (power of two >= 4096); default 64 KiB. */
  readonly completionRingBytes?: number;
  /** Readback target shared with the worker; default a new 16 MiB buffer. */
  readonly readbackBuffer?: SharedArrayBuffer;
  /** A command failed in virglrenderer; default: a rate-limited warning. */
  readonly onError?: (e: VirglOpError) => void;
  /** The worker died; everything pending was settled with -ENODEV. Default: logged only. */
  readonly onLost?: (e: Error) => void;
}

export interface VirglCapset {
  readonly id: number;
  readonly name: P.VirglCapsetName;
  readonly maxVersion: number;
  readonly maxSize: number;
  readonly data: Uint8Array;
}

export interface VirglOpError {
  /** Command name (protocol.ts Cmd). */
  readonly op: string;
  /** The tag the enqueue method returned. */
  readonly tag: number;
  /** Negative errno. */
  readonly status: number;
  /** The context and resource ids involved (0 if none). */
  readonly ctxId: number;
  readonly resId: number;
}

export class VirglComponent extends VirglCommands {
  private readonly cpl: SabRing;
  private readonly ctl: Int32Array;
  private readonly watcher: FdWatcher;
  private pool: Piscina | null = null;
  private task: Promise<void> = Promise.resolve();
  private state: 'starting' | 'running' | 'closing' | 'closed' = 'starting';
  private lostError: Error | null = null;
  private readonly caps: VirglCapset[] = [];
  private onReady: (() => void) | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly opts: VirglStartOptions,
    private readonly init: P.VirglWorkerInit,
  ) {
    const ctl = new Int32Array(init.control, 0, P.CTL.WORDS);
    super(native(), new RingWriter(new SabRing(init.commandRing), ctl, P.CTL.CMD_SPACE_WANTED), init.commandFd);
    this.ctl = ctl;
    this.cpl = new SabRing(init.completionRing);
    this.watcher = watchFd('watch virgl completion eventfd', init.completionFd, (events) => {
      if (events < 0) log.error(`virgl: polling the completion eventfd failed: ${errnoName(events)}`);
      else this.onCompletions();
    });
    const rc = this.watcher.start(this.n.READABLE);
    if (rc < 0) {
      this.watcher.close();
      check('watch virgl completion eventfd', rc);
    }
  }

  /** Start the worker, load and initialise virglrenderer; resolves once its capsets are known. */
  static async start(opts: VirglStartOptions): Promise<VirglComponent> {
    const cmdBytes = opts.commandRingBytes ?? 2 << 20;
    const cplBytes = opts.completionRingBytes ?? 64 << 10;
    if (cmdBytes < MIN_COMMAND_RING) throw new RangeError(`options.commandRingBytes must be >= ${MIN_COMMAND_RING}`);
    if (cplBytes < MIN_COMPLETION_RING) throw new RangeError(`options.completionRingBytes must be >= ${MIN_COMPLETION_RING}`);
    const n = native();
    const commandFd = check('eventfd (virgl commands)', n.eventfd(0, true));
    const completionFd = n.eventfd(0, true);
    if (completionFd < 0) {
      n.close(commandFd);
      check('eventfd (virgl completions)', completionFd);
    }
    let c: VirglComponent;
    try {
      c = new VirglComponent(opts, {
        commandRing: new SabRing(cmdBytes).sab,
        completionRing: new SabRing(cplBytes).sab,
        control: new SharedArrayBuffer(4 * P.CTL.WORDS),
        readbackBuffer: opts.readbackBuffer ?? new SharedArrayBuffer(16 << 20),
        commandFd,
        completionFd,
        flags: opts.flags ?? DEFAULT_FLAGS,
        capsets: opts.capsets.map((name) => P.VIRGL_CAPSETS[name]),
        libraryPath: opts.libraryPath ?? null,
      });
    } catch (e) {
      n.close(commandFd);
      n.close(completionFd);
      throw e;
    }
    await c.launch();
    return c;
  }

  private async launch(): Promise<void> {
    const pool = new Piscina({
      filename: packagePath('dist/src/renderers/virgl/worker.js'),
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      atomics: 'disabled', // the task lives for the whole session on the worker's event loop
    });
    // An 'error' event without a listener would throw on the coordinator.
    pool.on('error', (e: unknown) => log.error(`virgl worker pool: ${describe(e)}`));
    this.pool = pool;
    let startError: string | null = null;
    const ready = new Promise<void>((resolve) => (this.onReady = resolve));
    this.task = (pool.run(this.init) as Promise<P.VirglWorkerResult>).then(
      (r) => {
        if (!r.ok) startError = r.error;
        else if (this.state === 'running') this.lose(new Error('virgl worker ended without SHUTDOWN'));
      },
      (e: unknown) => {
        if (this.state === 'starting') startError = `virglrenderer: worker failed while starting: ${describe(e)}`;
        else if (this.state === 'running') this.lose(e instanceof Error ? e : new Error(describe(e)));
      },
    );
    // Concurrency: READY arrives through the completion ring; a failed load/init ends the task
    // without READY. Whichever comes first decides.
    await Promise.race([ready, this.task]);
    if (this.onReady === null) {
      this.state = 'running';
      return;
    }
    this.state = 'closing';
    await this.release();
    throw new Error(startError ?? 'virglrenderer: worker ended before it was ready');
  }

  /** The capsets requested at start that this virglrenderer serves (size > 0). */
  capsets(): readonly VirglCapset[] {
    return this.caps;
  }

  /** True once the worker died; every later call is a no-op (tag 0, status -ENODEV). */
  get lost(): boolean {
    return this.lostError !== null;
  }

  get readbackBuffer(): SharedArrayBuffer {
    return this.init.readbackBuffer;
  }

  protected override get accepting(): boolean {
    return this.state === 'running';
  }

  protected override get fdOpen(): boolean {
    return this.state === 'running' || this.state === 'closing';
  }

  /** Shut the worker down (virgl_renderer_cleanup) and release everything. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'closing';
      this.enqueueShutdown();
      // Concurrency: the completion watcher keeps running, so a backlog still drains into the
      // ring and SHUTDOWN reaches the worker; the task resolves after virgl_renderer_cleanup.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_TIMEOUT_MS)));
      await Promise.race([this.task, timeout]);
      clearTimeout(timer);
      this.onCompletions(); // fences the worker reported on its way out
    }
    this.state = 'closing';
    this.settleAll(ENODEV);
    await this.release();
  }

  /** Terminate the pool, stop watching, close the eventfds (the worker no longer uses them). */
  private async release(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (pool) await pool.destroy();
    this.watcher.close();
    this.n.close(this.init.commandFd);
    this.n.close(this.init.completionFd);
    this.out.discard();
    this.state = 'closed';
  }

  private lose(e: Error): void {
    this.lostError = e;
    this.state = 'closing'; // no SHUTDOWN: nobody is left to read it
    log.error(`virglrenderer worker lost: ${e.message}; every virgl context is gone`);
    void this.close(); // settles everything pending with -ENODEV, then releases
    try {
      this.opts.onLost?.(e);
    } catch (err) {
      log.error(`virgl onLost handler threw: ${describe(err)}`);
    }
  }

  private settleAll(status: number): void {
    this.fences.settleAll(status);
    for (const r of this.readbacks.values()) r(status);
    this.readbacks.clear();
    for (const r of this.results.values()) r(status);
    this.results.clear();
  }

  private onCompletions(): void {
    if (this.state === 'closed') return;
    // Concurrency: clear the eventfd before draining; a completion committed after our last peek
    // comes with another eventfdWrite and wakes us again.
    this.n.eventfdRead(this.init.completionFd);
    for (let m = this.cpl.peek(); m; m = this.cpl.peek()) {
      this.handle(m[0], m[1]);
      this.cpl.release();
    }
    // The worker queued completions for lack of space: we just made some.
    if (Atomics.exchange(this.ctl, P.CTL.CPL_SPACE_WANTED, 0) !== 0) this.doorbell();
    // The worker released command space: move our backlog in.
    if (this.out.backlog.messages > 0 && this.out.flush()) this.doorbell();
  }

  private handle(at: number, len: number): void {
    const v = this.cpl.view;
    const u32 = (off: number) => v.getUint32(at + off, true);
    const seq = (lo: number, hi: number) => P.seqJoin(u32(lo), u32(hi));
    const op = u32(P.HDR.OP);
    const tag = u32(P.HDR.TAG);
    switch (op) {
      case P.Cpl.CAPSET: {
        const id = u32(P.CAPSET.ID);
        const dataLen = Math.min(u32(P.CAPSET.DATA_LEN), len - P.CAPSET.DATA);
        const data = this.cpl.bytes.slice(at + P.CAPSET.DATA, at + P.CAPSET.DATA + dataLen);
        const name = id === P.VIRGL_CAPSETS.virgl ? 'virgl' : 'virgl2';
        this.caps.push({ id, name, maxVersion: u32(P.CAPSET.MAX_VERSION), maxSize: u32(P.CAPSET.MAX_SIZE), data });
        break;
      }
      case P.Cpl.READY:
        this.onReady?.();
        this.onReady = null;
        break;
      case P.Cpl.FENCE_SIGNALLED:
        this.fences.signalled(u32(P.FENCE_SIGNALLED.CTX), seq(P.FENCE_SIGNALLED.SEQ_LO, P.FENCE_SIGNALLED.SEQ_HI));
        break;
      case P.Cpl.FENCE_FAILED: {
        const ctxId = u32(P.FENCE_FAILED.CTX);
        const status = v.getInt32(at + P.FENCE_FAILED.STATUS, true);
        this.fences.failed(ctxId, seq(P.FENCE_FAILED.SEQ_LO, P.FENCE_FAILED.SEQ_HI), status);
        this.reportError({ op: 'FENCE', tag, status, ctxId, resId: 0 });
        break;
      }
      case P.Cpl.FENCES_DROPPED:
        this.fences.dropped(u32(P.FENCES_DROPPED.CTX), seq(P.FENCES_DROPPED.SEQ_LO, P.FENCES_DROPPED.SEQ_HI), ECANCELED);
        break;
      case P.Cpl.READBACK_DONE: {
        const r = this.readbacks.get(tag);
        this.readbacks.delete(tag);
        r?.(v.getInt32(at + P.READBACK_DONE.STATUS, true));
        break;
      }
      case P.Cpl.RESULT: {
        const status = v.getInt32(at + P.RESULT.STATUS, true);
        const r = this.results.get(tag);
        this.results.delete(tag);
        r?.(status);
        if (status < 0) {
          this.reportError({ op: P.cmdName(u32(P.RESULT.FAILED_OP)), tag, status, ctxId: u32(P.RESULT.A), resId: u32(P.RESULT.B) });
        }
        break;
      }
      case P.Cpl.ERROR:
        this.reportError({
          op: P.cmdName(u32(P.ERROR.FAILED_OP)),
          tag,
          status: v.getInt32(at + P.ERROR.STATUS, true),
          ctxId: u32(P.ERROR.A),
          resId: u32(P.ERROR.B),
        });
        break;
      default:
        log.error(`virgl: unknown completion op ${op}`);
    }
  }

  private reportError(e: VirglOpError): void {
    if (!this.opts.onError) {
      log.guest('virgl-op', `virgl ${e.op} (ctx ${e.ctxId}, resource ${e.resId}) failed: ${errnoName(e.status)}`);
      return;
    }
    try {
      this.opts.onError(e);
    } catch (err) {
      log.error(`virgl onError handler threw: ${describe(err)}`);
    }
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
