/**
 * Coordinator side of the virgl renderer. A child process, the render server (render-server.ts),
 * owns virglrenderer (process-global, bound to one thread), so that the library crashing on a
 * hostile stream cannot take the daemon down; this class starts it, shares the memory backings
 * live in with it, reads its completions and settles fences and readbacks. The command methods
 * are in commands.ts.
 *
 * Fences and readbacks resolve with a status instead of rejecting (0, or a negative errno when it
 * will never happen), so a caller without a handler cannot bring the daemon down with an
 * unhandled rejection. A server that dies marks the component lost: everything pending settles
 * with -ENODEV, resources are released, and later calls are no-ops.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { errorMessage, log } from '../../log.js';
import { check, errnoName, native, VirglFlags, watchFd, type FdWatcher } from '../../native.js';
import { packagePath } from '../../package-path.js';
import { SabRing } from '../sab-ring.js';
import { Channel } from './channel.js';
import { ENODEV, VirglCommands } from './commands.js';
import { RingWriter } from './ring-writer.js';
import * as P from './protocol.js';

export type { VirglCapsetName } from './protocol.js';
export type { ReadbackRect, ReadbackTarget } from './commands.js';

const ECANCELED = -125;
const DEFAULT_FLAGS = VirglFlags.USE_EGL | VirglFlags.USE_SURFACELESS | VirglFlags.THREAD_SYNC;
const MIN_COMMAND_RING = 1024, MIN_COMPLETION_RING = 4096; // a virgl2 capset (1376 B) must fit
/** How long close() lets the server finish SHUTDOWN before killing it. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** How often the server's resident memory is compared with maxMemoryBytes. */
const MEMORY_CHECK_MS = 250;

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
  /** Bytes of the readback buffer shared with the server (scanout and cursor images); default 16 MiB. */
  readonly readbackBytes?: number;
  /** A command failed in virglrenderer; default: a rate-limited warning. */
  readonly onError?: (e: VirglOpError) => void;
  /**
   * Resident memory the server may use (bytes; 0 or absent: no limit). Over it, the server is
   * killed (and the service starts a new one): GL objects a guest creates inside its command
   * streams are not resources the device can count, so this is what bounds them.
   */
  readonly maxMemoryBytes?: number;
  /** The server died; everything pending was settled with -ENODEV. Default: logged only. */
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
  private child: ChildProcess | null = null;
  /** Settles when the server process is gone, with the result line it printed (null if none). */
  private exited: Promise<P.VirglServerResult | null> = Promise.resolve(null);
  private state: 'starting' | 'running' | 'closing' | 'closed' = 'starting';
  private lostError: Error | null = null;
  private readonly caps: VirglCapset[] = [];
  private onReady: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private memoryTimer: NodeJS.Timeout | null = null;
  /** Why we killed the server, for the loss report. */
  private killedFor: string | null = null;

  private constructor(
    private readonly opts: VirglStartOptions,
    private readonly config: P.VirglServerConfig,
    private readonly channel: Channel,
    /** serverMemory is the server's end of the memory socket: closed here once the server has it. */
    private readonly fds: { readonly commands: number; readonly completions: number; readonly memory: number; serverMemory: number },
  ) {
    const ctl = new Int32Array(channel.control, 0, P.CTL.WORDS);
    super(native(), new RingWriter(new SabRing(channel.commandRing), ctl, P.CTL.CMD_SPACE_WANTED), fds.commands, fds.memory);
    this.ctl = ctl;
    this.cpl = new SabRing(channel.completionRing);
    this.watcher = watchFd('watch virgl completion eventfd', fds.completions, (events) => {
      if (events < 0) log.error(`virgl: polling the completion eventfd failed: ${errnoName(events)}`);
      else this.onCompletions();
    });
    const rc = this.watcher.start(this.n.READABLE);
    if (rc < 0) {
      this.watcher.close();
      check('watch virgl completion eventfd', rc);
    }
  }

  /** Start the render server, load and initialise virglrenderer; resolves once its capsets are known. */
  static async start(opts: VirglStartOptions): Promise<VirglComponent> {
    const config: P.VirglServerConfig = {
      commandRingBytes: opts.commandRingBytes ?? 2 << 20,
      completionRingBytes: opts.completionRingBytes ?? 64 << 10,
      readbackBytes: opts.readbackBytes ?? 16 << 20,
      flags: opts.flags ?? DEFAULT_FLAGS,
      capsets: opts.capsets.map((name) => P.VIRGL_CAPSETS[name]),
      libraryPath: opts.libraryPath ?? null,
      logLevel: log.level,
    };
    if (config.commandRingBytes < MIN_COMMAND_RING) throw new RangeError(`options.commandRingBytes must be >= ${MIN_COMMAND_RING}`);
    if (config.completionRingBytes < MIN_COMPLETION_RING) throw new RangeError(`options.completionRingBytes must be >= ${MIN_COMPLETION_RING}`);
    const n = native();
    const opened: number[] = [];
    const open = (what: string, fd: number) => {
      check(what, fd);
      opened.push(fd);
      return fd;
    };
    let c: VirglComponent;
    let channel: Channel | null = null;
    try {
      const commands = open('eventfd (virgl commands)', n.eventfd(0, true));
      const completions = open('eventfd (virgl completions)', n.eventfd(0, true));
      const pair = n.socketPair();
      if (typeof pair === 'number') check('socketpair (virgl memory)', pair);
      const [memory, serverMemory] = pair as [number, number];
      opened.push(memory, serverMemory);
      check('virgl memory socket', n.setNonBlocking(memory, true)); // a stuck server must not block us
      channel = Channel.create(config);
      c = new VirglComponent(opts, config, channel, { commands, completions, memory, serverMemory });
    } catch (e) {
      for (const fd of opened) n.close(fd);
      channel?.close();
      throw e;
    }
    await c.launch();
    return c;
  }

  private async launch(): Promise<void> {
    const fd = P.SERVER_FD;
    const stdio: (number | 'pipe' | 'inherit')[] = ['pipe', 'pipe', 'inherit'];
    stdio[fd.CHANNEL] = this.channel.fd;
    stdio[fd.COMMANDS] = this.fds.commands;
    stdio[fd.COMPLETIONS] = this.fds.completions;
    stdio[fd.MEMORY] = this.fds.serverMemory;
    let startError: string | null = null;
    const ready = new Promise<void>((resolve) => (this.onReady = resolve));
    const child = spawn(process.execPath, [packagePath('dist/src/renderers/virgl/render-server.js'), JSON.stringify(this.config)], { stdio });
    this.child = child;
    // The server has its own copy now; with ours closed, a dead server's socket refuses fds at once.
    this.n.close(this.fds.serverMemory);
    this.fds.serverMemory = -1;
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-65536))); // the result is at the end
    child.stdin!.on('error', () => {}); // EPIPE once the server is gone: its exit is handled below
    this.exited = new Promise((resolve) => {
      child.once('error', (e) => {
        startError = `virgl render server: cannot start ${process.execPath}: ${e.message}`;
        resolve(null);
      });
      child.once('close', (code, signal) => {
        const r = P.parseServerResult(out); // null: no result line, it crashed
        if (r && !r.ok) startError = r.error;
        if (this.state === 'running') {
          const how = this.killedFor ?? (signal ? `killed by ${signal}` : `exit code ${code}`);
          this.lose(new Error(r && !r.ok ? r.error : `virgl render server (pid ${child.pid}) ended without SHUTDOWN (${how})`));
        }
        resolve(r);
      });
    });
    // Concurrency: READY arrives through the completion ring; a failed load/init ends the server
    // without READY. Whichever comes first decides.
    await Promise.race([ready, this.exited]);
    if (this.onReady === null) {
      this.state = 'running';
      this.watchMemory();
      return;
    }
    this.state = 'closing';
    await this.release();
    throw new Error(startError ?? 'virglrenderer: the render server ended before it was ready');
  }

  /** The capsets requested at start that this virglrenderer serves (size > 0). */
  capsets(): readonly VirglCapset[] {
    return this.caps;
  }

  /** True once the server died; every later call is a no-op (tag 0, status -ENODEV). */
  get lost(): boolean {
    return this.lostError !== null;
  }

  /** Where READBACK writes: shared with the server. */
  get readbackBuffer(): ArrayBuffer {
    return this.channel.readback;
  }

  /** The render server's process id (null before it started or once it is gone). */
  get pid(): number | null {
    return this.serverAlive ? this.child!.pid ?? null : null;
  }

  /** The server process was started and has not ended. */
  private get serverAlive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  protected override get accepting(): boolean {
    return this.state === 'running';
  }

  protected override get fdOpen(): boolean {
    return this.state === 'running' || this.state === 'closing';
  }

  /** Shut the server down (virgl_renderer_cleanup, then it exits) and release everything. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'closing';
      this.enqueueShutdown();
      // Concurrency: the completion watcher keeps running, so a backlog still drains into the
      // ring and SHUTDOWN reaches the server; it exits after virgl_renderer_cleanup.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_TIMEOUT_MS)));
      await Promise.race([this.exited, timeout]);
      clearTimeout(timer);
      this.onCompletions(); // fences the server reported on its way out
    }
    this.state = 'closing';
    this.settleAll(ENODEV);
    await this.release();
  }

  private watchMemory(): void {
    const limit = this.opts.maxMemoryBytes ?? 0;
    const pid = this.child?.pid;
    if (limit <= 0 || pid === undefined) return;
    this.memoryTimer = setInterval(() => {
      const rss = residentBytes(pid);
      if (rss === null || rss <= limit || this.state !== 'running') return;
      const MiB = (b: number) => Math.round(b / 2 ** 20);
      this.killedFor = `killed: it used ${MiB(rss)} MiB, the limit is ${MiB(limit)} MiB (--max-renderer-memory)`;
      this.child?.kill('SIGKILL');
    }, MEMORY_CHECK_MS).unref();
  }

  /** Kill the server if it is still there, stop watching, close the fds and the channel. */
  private async release(): Promise<void> {
    if (this.memoryTimer) clearInterval(this.memoryTimer);
    this.memoryTimer = null;
    if (this.serverAlive) {
      this.child!.kill('SIGKILL');
      await this.exited;
    }
    this.watcher.close();
    for (const fd of [this.fds.commands, this.fds.completions, this.fds.memory, this.fds.serverMemory]) if (fd >= 0) this.n.close(fd);
    this.channel.close();
    this.out.discard();
    this.state = 'closed';
  }

  private lose(e: Error): void {
    this.lostError = e;
    this.state = 'closing'; // no SHUTDOWN: nobody is left to read it
    log.error(`virglrenderer lost: ${e.message}; every virgl context is gone`);
    void this.close(); // settles everything pending with -ENODEV, then releases
    try {
      this.opts.onLost?.(e);
    } catch (err) {
      log.error(`virgl onLost handler threw: ${errorMessage(err)}`);
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
    this.n.eventfdRead(this.fds.completions);
    for (let m = this.cpl.peek(); m; m = this.cpl.peek()) {
      this.handle(m[0], m[1]);
      this.cpl.release();
    }
    // The server queued completions for lack of space: we just made some.
    if (Atomics.exchange(this.ctl, P.CTL.CPL_SPACE_WANTED, 0) !== 0) this.doorbell();
    // The server released command space: move our backlog in.
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
      log.error(`virgl onError handler threw: ${errorMessage(err)}`);
    }
  }
}

/** VmRSS of a process in bytes, or null if it is gone. */
function residentBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
