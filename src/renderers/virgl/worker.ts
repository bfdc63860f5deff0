/**
 * The virgl worker (piscina task module; loaded compiled from dist/). virglrenderer is a
 * process-global GL state machine bound to the thread that initialised it, so this one long-lived
 * task owns every virgl context: it waits on the command eventfd, executes the command ring in
 * order (worker-executor.ts) and writes completions back. With THREAD_SYNC, virglrenderer's poll
 * fd turns readable when fences retire; without it, fences are polled on a short timer.
 */
import { errnoName, native, VIRGL_GLOBAL_RING, type FdWatcher, type NativeAddon } from '../../native.js';
import { log } from '../../log.js';
import { SabRing } from '../sab-ring.js';
import { RingWriter } from './ring-writer.js';
import { CompletionWriter } from './worker-completions.js';
import { CommandExecutor, type FenceHooks } from './worker-executor.js';
import * as P from './protocol.js';

const EINVAL = -22;
/** Messages executed per wake-up before yielding to the event loop, so fences keep retiring. */
const DRAIN_BUDGET = 2048;
/** Without a poll fd (no THREAD_SYNC), how often to poll while fences are outstanding. */
const FENCE_POLL_MS = 1;
/** How long a context destroy waits for outstanding fences to retire. */
const QUIESCE_MS = 1000;

export default async function virglWorker(init: P.VirglWorkerInit): Promise<P.VirglWorkerResult> {
  const n = native();
  const lib = n.virglLoad(init.libraryPath);
  if (!lib.ok) return { ok: false, error: `virglrenderer: cannot load ${init.libraryPath ?? 'libvirglrenderer.so.1'}: ${lib.error}` };
  const rc = n.virglInit(init.flags);
  if (rc < 0) {
    const why = rc === -5 ? ' (virglrenderer refused: no usable EGL/GL display?)' : rc === -16 ? ' (already initialised in this process)' : '';
    return { ok: false, error: `virglrenderer: init with flags 0x${(init.flags >>> 0).toString(16)} failed: ${errnoName(rc)}${why}` };
  }
  return new VirglWorker(n, init).run();
}

class VirglWorker implements FenceHooks {
  private readonly cmd: SabRing;
  private readonly ctl: Int32Array;
  private readonly out: CompletionWriter;
  private readonly exec: CommandExecutor;
  private readonly watchers: FdWatcher[] = [];
  private readonly pollFd: number;
  private stopped = false;
  private settle: ((r: P.VirglWorkerResult) => void) | null = null;
  private fail: ((e: unknown) => void) | null = null;
  // Newest created / signalled seq per timeline (0 = global): fences are out where they differ.
  private readonly createdSeq = new Map<number, number>();
  private readonly signalledSeq = new Map<number, number>();
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly n: NativeAddon, private readonly init: P.VirglWorkerInit) {
    this.cmd = new SabRing(init.commandRing);
    this.ctl = new Int32Array(init.control, 0, P.CTL.WORDS);
    const ring = new RingWriter(new SabRing(init.completionRing), this.ctl, P.CTL.CPL_SPACE_WANTED);
    this.out = new CompletionWriter(n, ring, init.completionFd);
    this.exec = new CommandExecutor(n, this.cmd, this.out, new Uint8Array(init.readbackBuffer), this);
    this.pollFd = n.virglPollFd();
  }

  run(): Promise<P.VirglWorkerResult> {
    return new Promise((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
      this.guarded(() => {
        this.sendCapsets();
        this.watch(this.init.commandFd, () => this.onCommands());
        if (this.pollFd >= 0) this.watch(this.pollFd, () => this.collect());
        this.onCommands(); // commands enqueued before we started watching
      });
    });
  }

  private watch(fd: number, cb: () => void): void {
    const w = this.n.watch(fd, (events) =>
      this.guarded(() => {
        if (events < 0) throw new Error(`virgl worker: polling fd ${fd} failed: ${errnoName(events)}`);
        cb();
      }));
    if (typeof w === 'number') throw new Error(`virgl worker: cannot watch fd ${fd}: ${errnoName(w)}`);
    this.watchers.push(w);
    const rc = w.start(this.n.READABLE);
    if (rc < 0) throw new Error(`virgl worker: cannot watch fd ${fd}: ${errnoName(rc)}`);
  }

  /** Run a handler, then signal its completions. Only a bug throws here: it ends the task. */
  private guarded(fn: () => void): void {
    if (this.stopped) return;
    try {
      fn();
      this.out.signal();
    } catch (e) {
      this.stop();
      this.fail?.(e);
    }
  }

  private stop(): void {
    this.stopped = true;
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.n.virglCleanup();
  }

  private sendCapsets(): void {
    let count = 0;
    for (const id of this.init.capsets) {
      const [maxVersion, maxSize] = this.n.virglGetCapset(id);
      if (maxSize <= 0) continue;
      const data = new Uint8Array(maxSize);
      const len = this.n.virglFillCaps(id, maxVersion, data);
      if (len < 0 || P.CAPSET.DATA + len > this.out.maxMessage) {
        this.out.error(P.STARTUP, 0, len < 0 ? len : EINVAL, id, 0); // capset left out
        continue;
      }
      const at = this.out.begin(P.Cpl.CAPSET, 0, P.CAPSET.DATA + len);
      const v = this.out.view;
      v.setUint32(at + P.CAPSET.ID, id, true);
      v.setUint32(at + P.CAPSET.MAX_VERSION, maxVersion, true);
      v.setUint32(at + P.CAPSET.MAX_SIZE, maxSize, true);
      v.setUint32(at + P.CAPSET.DATA_LEN, len, true);
      this.out.bytes.set(data.subarray(0, len), at + P.CAPSET.DATA);
      this.out.end();
      count++;
    }
    const at = this.out.begin(P.Cpl.READY, 0, P.READY.SIZE);
    this.out.view.setUint32(at + P.READY.COUNT, count, true);
    this.out.end();
  }

  private onCommands(): void {
    // Concurrency: clear the eventfd before draining. A commit after our last peek is followed by
    // another eventfdWrite, so it wakes us again; nothing is left unseen.
    this.n.eventfdRead(this.init.commandFd);
    let budget = DRAIN_BUDGET;
    for (let m = this.cmd.peek(); m; m = this.cmd.peek()) {
      const shutdown = this.exec.execute(m[0], m[1]);
      this.cmd.release();
      if (shutdown) return this.shutdown();
      if (--budget === 0) {
        // The coordinator can refill as fast as we drain: let fence polls run, then continue.
        this.n.eventfdWrite(this.init.commandFd, 1);
        break;
      }
    }
    // We released command space: wake the coordinator if it queued commands for lack of it.
    if (Atomics.exchange(this.ctl, P.CTL.CMD_SPACE_WANTED, 0) !== 0) this.out.wake();
  }

  private shutdown(): void {
    this.collect(); // report what already retired; later fences settle as -ENODEV
    this.out.signal();
    this.stop();
    this.settle?.({ ok: true });
  }

  // --- fences (FenceHooks) ---

  /** virgl_renderer_poll retires fences (and drains the poll fd); report them. */
  collect(): void {
    this.n.virglPoll();
    const t = this.n.virglTakeFences();
    for (let i = 0; i < t.length; i += 3) {
      const ctx = Number(t[i + 1]) === VIRGL_GLOBAL_RING ? 0 : Number(t[i]);
      const seq = Number(t[i + 2]);
      this.out.fenceEvent(P.Cpl.FENCE_SIGNALLED, 0, ctx, seq);
      this.signalledSeq.set(ctx, seq);
    }
  }

  created(ctx: number, seq: number): void {
    this.createdSeq.set(ctx, seq);
    if (this.pollFd < 0) this.schedulePoll();
  }

  quiesce(): void {
    const deadline = performance.now() + QUIESCE_MS;
    for (;;) {
      this.collect();
      if (!this.outstanding()) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        log.guest('virgl-quiesce', 'virgl worker: fences still outstanding after 1 s, destroying the context anyway');
        return;
      }
      if (this.pollFd >= 0) this.n.pollFd(this.pollFd, this.n.POLLIN, Math.ceil(left));
      else Atomics.wait(this.sleeper, 0, 0, FENCE_POLL_MS);
    }
  }

  private outstanding(): boolean {
    for (const [ctx, seq] of this.createdSeq) if (this.signalledSeq.get(ctx) !== seq) return true;
    return false;
  }

  forget(ctx: number): void {
    this.createdSeq.delete(ctx);
    this.signalledSeq.delete(ctx);
  }

  /** Fallback without THREAD_SYNC: poll on a short timer while any timeline has fences out. */
  private schedulePoll(): void {
    if (this.pollTimer) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.guarded(() => {
        this.collect();
        if (this.outstanding()) this.schedulePoll();
      });
    }, FENCE_POLL_MS);
  }
}
