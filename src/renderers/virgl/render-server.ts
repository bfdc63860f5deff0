/**
 * The virgl render server: a child process of the daemon that owns virglrenderer, so that a crash
 * of the library (or of Mesa under it) on a hostile command stream ends this process only. The
 * coordinator sees it die, reports every virgl context lost and keeps 2D and the other contexts
 * running (component.ts). virglrenderer is process-global and bound to the thread that initialised
 * it, so this one process owns every virgl context: it waits on the command eventfd, executes
 * the command ring in order (server-executor.ts) and writes completions back. With THREAD_SYNC,
 * virglrenderer's poll fd turns readable when fences retire; without it, fences are polled on a
 * short timer.
 *
 * Started as `node render-server.js <config JSON>` with the fds of protocol.ts SERVER_FD; it
 * prints a VirglServerResult line on stdout when it ends, and exits when its stdin closes (the
 * coordinator died).
 */
import { errnoName, native, VIRGL_GLOBAL_RING, type FdWatcher, type NativeAddon } from '../../native.js';
import { errorMessage, log } from '../../log.js';
import { SabRing } from '../sab-ring.js';
import { Channel } from './channel.js';
import { RingWriter } from './ring-writer.js';
import { CompletionWriter } from './server-completions.js';
import { CommandExecutor, type FenceHooks } from './server-executor.js';
import { ServerMemory } from './server-memory.js';
import * as P from './protocol.js';

const EINVAL = -22;
/** Messages executed per wake-up before yielding to the event loop, so fences keep retiring. */
const DRAIN_BUDGET = 2048;
/** Without a poll fd (no THREAD_SYNC), how often to poll while fences are outstanding. */
const FENCE_POLL_MS = 1;
/** How long a context destroy waits for outstanding fences to retire. */
const QUIESCE_MS = 1000;

async function main(): Promise<void> {
  process.title = 'vhost-gpu-virgl';
  const config = JSON.parse(process.argv[2] ?? '{}') as P.VirglServerConfig;
  log.setLevel(config.logLevel);
  log.setName(process.title);
  // The coordinator holds the other end of stdin: EOF means it is gone, and so are we.
  process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
  let result: P.VirglServerResult;
  try {
    result = await serve(config);
  } catch (e) {
    result = { ok: false, error: `virgl render server: ${errorMessage(e)}` };
  }
  process.stdout.write(P.formatServerResult(result), () => process.exit(0));
}

async function serve(config: P.VirglServerConfig): Promise<P.VirglServerResult> {
  const n = native();
  const lib = n.virglLoad(config.libraryPath);
  if (!lib.ok) return { ok: false, error: `virglrenderer: cannot load ${config.libraryPath ?? 'libvirglrenderer.so.1'}: ${lib.error}` };
  const rc = n.virglInit(config.flags);
  if (rc < 0) {
    const why = rc === -5 ? ' (virglrenderer refused: no usable EGL/GL display?)' : '';
    return { ok: false, error: `virglrenderer: init with flags 0x${(config.flags >>> 0).toString(16)} failed: ${errnoName(rc)}${why}` };
  }
  const channel = Channel.map(P.SERVER_FD.CHANNEL, config);
  // From here on the server only serves: a library bug a hostile stream exploits cannot reach
  // beyond this process (no exec, opens, sockets; native/src/sandbox.cc).
  const sandboxed = n.sandbox();
  if (sandboxed < 0) log.warn(`virgl render server: seccomp filter not installed (${errnoName(sandboxed)}); the server runs unconfined`);
  return new VirglServer(n, config, channel).run();
}

class VirglServer implements FenceHooks {
  private readonly cmd: SabRing;
  private readonly ctl: Int32Array;
  private readonly out: CompletionWriter;
  private readonly exec: CommandExecutor;
  private readonly watchers: FdWatcher[] = [];
  private readonly pollFd: number;
  private stopped = false;
  private settle: ((r: P.VirglServerResult) => void) | null = null;
  private fail: ((e: unknown) => void) | null = null;
  // Newest created / signalled seq per timeline (0 = global): fences are out where they differ.
  private readonly createdSeq = new Map<number, number>();
  private readonly signalledSeq = new Map<number, number>();
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly n: NativeAddon, private readonly config: P.VirglServerConfig, channel: Channel) {
    this.cmd = new SabRing(channel.commandRing);
    this.ctl = new Int32Array(channel.control, 0, P.CTL.WORDS);
    const ring = new RingWriter(new SabRing(channel.completionRing), this.ctl, P.CTL.CPL_SPACE_WANTED);
    this.out = new CompletionWriter(n, ring, P.SERVER_FD.COMPLETIONS);
    const memory = new ServerMemory(P.SERVER_FD.MEMORY);
    this.exec = new CommandExecutor(n, this.cmd, this.out, new Uint8Array(channel.readback), this, memory);
    this.pollFd = n.virglPollFd();
  }

  run(): Promise<P.VirglServerResult> {
    return new Promise((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
      this.guarded(() => {
        this.sendCapsets();
        this.watch(P.SERVER_FD.COMMANDS, () => this.onCommands());
        if (this.pollFd >= 0) this.watch(this.pollFd, () => this.collect());
        this.onCommands(); // commands enqueued before we started watching
      });
    });
  }

  private watch(fd: number, cb: () => void): void {
    const w = this.n.watch(fd, (events) =>
      this.guarded(() => {
        if (events < 0) throw new Error(`polling fd ${fd} failed: ${errnoName(events)}`);
        cb();
      }));
    if (typeof w === 'number') throw new Error(`cannot watch fd ${fd}: ${errnoName(w)}`);
    this.watchers.push(w);
    const rc = w.start(this.n.READABLE);
    if (rc < 0) throw new Error(`cannot watch fd ${fd}: ${errnoName(rc)}`);
  }

  /** Run a handler, then signal its completions. Only a bug throws here: it ends the server. */
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
    for (const id of this.config.capsets) {
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
    this.n.eventfdRead(P.SERVER_FD.COMMANDS);
    let budget = DRAIN_BUDGET;
    for (let m = this.cmd.peek(); m; m = this.cmd.peek()) {
      const shutdown = this.exec.execute(m[0], m[1]);
      this.cmd.release();
      if (shutdown) return this.shutdown();
      if (--budget === 0) {
        // The coordinator can refill as fast as we drain: let fence polls run, then continue.
        this.n.eventfdWrite(P.SERVER_FD.COMMANDS, 1);
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
        log.guest('virgl-quiesce', 'virgl render server: fences still outstanding after 1 s, destroying the context anyway');
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

void main();
