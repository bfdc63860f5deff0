/**
 * Worker entry of a context that runs on its own thread (piscina task module; loaded compiled
 * from dist/). One long-lived task per context: it loads the context type's module, waits on the
 * command eventfd, executes the command ring in order and writes fence signals and blob answers
 * back. A ContextError (or any exception) ends the context: LOST is reported, the context is
 * destroyed and the task ends; other contexts live on their own workers and are not touched.
 */
import { pathToFileURL } from 'node:url';
import { errnoName, native, type FdWatcher, type NativeAddon } from '../../native.js';
import { log } from '../../log.js';
import { SabRing } from '../sab-ring.js';
import { RingWriter } from '../virgl/ring-writer.js';
import { ContextError, type AttachedResource, type ContextEnv, type ContextFactory, type WorkerContext } from './context-api.js';
import * as P from './protocol.js';

/** Messages executed per wake-up before yielding to the event loop (the context's own fds). */
const DRAIN_BUDGET = 1024;

export interface WorkerContextResult {
  readonly ok: boolean;
  readonly reason?: string;
}

export default async function contextWorker(init: P.WorkerContextInit): Promise<WorkerContextResult> {
  const mod = (await import(pathToFileURL(init.module).href)) as { default: ContextFactory };
  if (typeof mod.default !== 'function') throw new Error(`${init.module} exports no context factory`);
  return new ContextLoop(native(), init, mod.default).run();
}

/** Per ring: fences given to the context, oldest first, as [guest fence id, sequence]. */
type FenceQueue = Array<[bigint, number]>;

class ContextLoop implements ContextEnv {
  readonly ctxId: number;
  readonly capsetId: number;
  readonly name: string;
  readonly options: Readonly<Record<string, string>>;
  private readonly cmd: SabRing;
  private readonly ctl: Int32Array;
  private readonly out: RingWriter;
  private readonly resources = new Map<number, AttachedResource>();
  private readonly fences: FenceQueue[] = Array.from({ length: P.MAX_RINGS + 1 }, () => []);
  private ctx: WorkerContext | null = null;
  private watcher: FdWatcher | null = null;
  /** The watcher's own dup of the command eventfd (closed with the watcher). */
  private commandFd = -1;
  private settle: ((r: WorkerContextResult) => void) | null = null;
  private finished = false;

  constructor(private readonly n: NativeAddon, private readonly init: P.WorkerContextInit, private readonly factory: ContextFactory) {
    this.ctxId = init.ctxId;
    this.capsetId = init.capsetId;
    this.name = init.name;
    this.options = init.options;
    this.cmd = new SabRing(init.commandRing);
    this.ctl = new Int32Array(init.control, 0, P.CTL.WORDS);
    this.out = new RingWriter(new SabRing(init.completionRing), this.ctl, P.CTL.CPL_SPACE_WANTED);
  }

  run(): Promise<WorkerContextResult> {
    return new Promise((resolve) => {
      this.settle = resolve;
      this.guarded(() => {
        this.ctx = this.factory(this);
        // Our own dup, owned by the watcher: the coordinator closes its fd when the task settles,
        // which for a dying worker is before this thread's loop is done with the handle.
        const fd = this.n.dup(this.init.commandFd);
        if (fd < 0) throw new Error(`cannot dup the command eventfd: ${errnoName(fd)}`);
        const w = this.n.watch(fd, (events) => this.guarded(() => {
          if (events < 0) throw new Error(`polling the command eventfd failed: ${errnoName(events)}`);
          this.onCommands();
        }), true);
        if (typeof w === 'number') {
          this.n.close(fd);
          throw new Error(`cannot watch the command eventfd: ${errnoName(w)}`);
        }
        this.commandFd = fd;
        this.watcher = w;
        const rc = w.start(this.n.READABLE);
        if (rc < 0) throw new Error(`cannot watch the command eventfd: ${errnoName(rc)}`);
        this.onCommands(); // commands enqueued before we watched
      });
    });
  }

  // --- ContextEnv ---

  resource(id: number): AttachedResource | undefined {
    return this.resources.get(id);
  }

  signal(ringIdx: number, fenceId: bigint): void {
    const q = this.fences[ringIdx];
    if (!q) throw new RangeError(`signal: ring ${ringIdx} out of range`);
    const at = q.findIndex(([id]) => id === fenceId);
    if (at < 0) return; // already signalled together with a later one
    const seq = q[at][1];
    q.splice(0, at + 1);
    this.complete(P.SIGNALLED.BYTES, (v, o) => {
      v.setUint32(o + P.OP, P.Cpl.SIGNALLED, true);
      v.setUint32(o + P.SIGNALLED.RING, ringIdx, true);
      v.setUint32(o + P.SIGNALLED.SEQ, seq, true);
    });
  }

  fail(reason: string): void {
    this.end(reason);
  }

  guest(key: string, message: string): void {
    log.guest(`ctx-${key}`, `context ${this.ctxId}: ${message}`);
  }

  // --- the loop ---

  /** Run `fn`; any exception ends the context (reported lost), never the worker's other duties. */
  private guarded(fn: () => void): void {
    if (this.finished) return;
    try {
      fn();
    } catch (e) {
      const reason = e instanceof ContextError ? e.message : `internal error: ${(e as Error)?.stack ?? e}`;
      this.end(reason);
    }
  }

  private onCommands(): void {
    // Concurrency: clear the doorbell before draining; a command committed after our last peek
    // rings it again.
    this.n.eventfdRead(this.commandFd);
    let budget = DRAIN_BUDGET;
    for (let m = this.cmd.peek(); m && !this.finished; m = this.cmd.peek()) {
      this.execute(m[0], m[1]);
      if (this.finished) return;
      this.cmd.release();
      if (--budget === 0) {
        setImmediate(() => this.guarded(() => this.onCommands()));
        break;
      }
    }
    if (Atomics.exchange(this.ctl, P.CTL.CMD_SPACE_WANTED, 0) !== 0) this.doorbell();
    if (this.out.backlog.messages > 0 && this.out.flush()) this.doorbell();
  }

  private execute(at: number, len: number): void {
    const v = this.cmd.view;
    const u32 = (off: number) => v.getUint32(at + off, true);
    const ctx = this.ctx!;
    switch (u32(P.OP)) {
      case P.Cmd.ATTACH: {
        const id = u32(P.ATTACH.RES), nsegs = u32(P.ATTACH.NSEGS);
        const guest: Uint8Array[] = [];
        let size = 0;
        for (let i = 0; i < nsegs; i++) {
          const s = at + P.ATTACH.SEGS + i * P.ATTACH.SEG_BYTES;
          const addr = BigInt(v.getUint32(s + 4, true)) << 32n | BigInt(v.getUint32(s, true));
          const segLen = v.getUint32(s + 8, true);
          const ab = this.n.view(addr, 0, segLen);
          if (typeof ab === 'number') throw new Error(`resource ${id}: guest memory segment not mapped (${errnoName(ab)})`);
          guest.push(new Uint8Array(ab));
          size += segLen;
        }
        const fd = v.getInt32(at + P.ATTACH.FD, true);
        const old = this.resources.get(id);
        if (old && old.fd >= 0 && old.fd !== fd) this.n.close(old.fd);
        const res: AttachedResource = { id, guest, fd, size: fd >= 0 ? P.join53(u32(P.ATTACH.SIZE_LO), u32(P.ATTACH.SIZE_HI)) : size };
        this.resources.set(id, res);
        if (!old) ctx.attached?.(res);
        break;
      }
      case P.Cmd.DETACH: {
        const res = this.resources.get(u32(P.DETACH.RES));
        if (!res) break;
        ctx.detached?.(res);
        this.resources.delete(res.id);
        if (res.fd >= 0) this.n.close(res.fd);
        break;
      }
      case P.Cmd.SUBMIT: {
        const n = Math.min(u32(P.SUBMIT.LEN), len - P.SUBMIT.DATA);
        ctx.submit(this.cmd.bytes.subarray(at + P.SUBMIT.DATA, at + P.SUBMIT.DATA + n));
        break;
      }
      case P.Cmd.FENCE: {
        const ring = u32(P.FENCE.RING), seq = u32(P.FENCE.SEQ);
        const id = BigInt(u32(P.FENCE.ID_HI)) << 32n | BigInt(u32(P.FENCE.ID_LO));
        this.fences[ring].push([id, seq]);
        // A global fence follows everything before it; the context's rings are its only work.
        if (ring === P.GLOBAL_RING) this.signal(ring, id);
        else ctx.fence(ring, id);
        break;
      }
      case P.Cmd.CREATE_BLOB: {
        const tag = u32(P.CREATE_BLOB.TAG);
        const blobId = BigInt(u32(P.CREATE_BLOB.ID_HI)) << 32n | BigInt(u32(P.CREATE_BLOB.ID_LO));
        let blob: { fd: number; size: number; mapInfo: number } | null = null, status = 0;
        try {
          blob = ctx.createBlob(blobId, P.join53(u32(P.CREATE_BLOB.SIZE_LO), u32(P.CREATE_BLOB.SIZE_HI)), u32(P.CREATE_BLOB.FLAGS));
        } catch (e) {
          if (!(e instanceof ContextError)) throw e;
          this.guest('blob', e.message);
          status = -22;
        }
        this.complete(P.BLOB.BYTES, (w, o) => {
          w.setUint32(o + P.OP, P.Cpl.BLOB, true);
          w.setUint32(o + P.BLOB.TAG, tag, true);
          w.setInt32(o + P.BLOB.STATUS, status, true);
          w.setInt32(o + P.BLOB.FD, blob ? blob.fd : -1, true);
          w.setUint32(o + P.BLOB.SIZE_LO, blob ? P.lo32(blob.size) : 0, true);
          w.setUint32(o + P.BLOB.SIZE_HI, blob ? P.hi32(blob.size) : 0, true);
          w.setUint32(o + P.BLOB.MAP_INFO, blob ? blob.mapInfo : 0, true);
        });
        break;
      }
      case P.Cmd.DESTROY:
        this.finish({ ok: true });
        break;
      default:
        throw new Error(`unknown command op ${u32(P.OP)}`);
    }
  }

  /** Report the context lost and end the task. */
  private end(reason: string): void {
    if (this.finished) return;
    const text = new TextEncoder().encode(reason.slice(0, 512));
    this.complete(P.LOST.TEXT + text.length, (v, o, bytes) => {
      v.setUint32(o + P.OP, P.Cpl.LOST, true);
      v.setUint32(o + P.LOST.LEN, text.length, true);
      bytes.set(text, o + P.LOST.TEXT);
    });
    this.finish({ ok: false, reason });
  }

  private finish(result: WorkerContextResult): void {
    this.finished = true;
    this.watcher?.close();
    try {
      this.ctx?.destroy();
    } catch (e) {
      log.error(`context ${this.ctxId}: destroy threw: ${(e as Error)?.stack ?? e}`);
    }
    for (const r of this.resources.values()) if (r.fd >= 0) this.n.close(r.fd);
    this.resources.clear();
    this.settle?.(result);
  }

  private complete(size: number, fill: (v: DataView, at: number, bytes: Uint8Array) => void): void {
    const at = this.out.begin(size);
    fill(this.out.view, at, this.out.bytes);
    this.out.end();
    this.doorbell();
  }

  private doorbell(): void {
    this.n.eventfdWrite(this.init.completionFd, 1);
  }
}
