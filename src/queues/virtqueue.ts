/**
 * Runs one virtqueue: on a kick, pop and decode every available chain through the codec, hand
 * it to the handler, push the response and notify once per batch. Commands run strictly in order;
 * one that waits (a display round trip) pauses the queue without blocking the event loop.
 */
import { log } from '../log.js';
import { Codec } from './codec.js';
import type { RingLayout } from '../transport/backend.js';
import { POP_BROKEN, POP_CHAIN, POP_EMPTY, R_SLOT, R_STATUS, CHAIN_ERRORS, BROKEN_REASONS, SETUP_ERRORS } from './layout.js';

/**
 * A handler's answer meaning "I will complete this chain later" (a fenced 3D command): the queue
 * goes on; the handler calls the completer it got from VirtQueue.defer().
 */
export const DEFERRED = -1;

/** Completes one deferred chain: `write` builds the response in codec.resp right before the push. */
export type Completer = (write: (codec: Codec) => number) => void;

/** Chains processed per turn of the event loop. */
const BATCH_BUDGET = 1024;
/** Deferred responses are headers, or headers and a map_info (OK_MAP_INFO). */
const DEFERRED_RESP_MAX = 32;

export interface QueueHandler {
  /** Whether chains on this queue carry a response (control queue) or not (cursor queue). */
  readonly responds: boolean;
  /**
   * Execute the decoded command; return the response length, a promise of it (pauses the
   * queue), or DEFERRED after taking a completer with queue.defer().
   */
  execute(codec: Codec, queue: VirtQueue): number | Promise<number>;
}


export class VirtQueue {
  private waiting = false;
  private stopped = true;
  /** Bumped on start/stop so a command still waiting from before is dropped, not pushed. */
  private generation = 0;

  constructor(
    readonly index: number,
    readonly codec: Codec,
    private readonly handler: QueueHandler,
    private readonly notify: () => void,
    private readonly onBroken: (reason: string) => void,
    /** After answering, look for the next chain this long before sleeping until a kick (0: sleep at once). */
    private readonly pollUs = 0,
  ) {}

  /** Start processing with this ring layout (guest-physical addresses). Returns an error text or null. */
  start(cfg: RingLayout): string | null {
    const features = (cfg.eventIdx ? 1 : 0) | (cfg.indirect ? 2 : 0);
    const rc = this.codec.setupQueue(this.index, cfg.size, cfg.desc, cfg.avail, cfg.used, features, cfg.lastAvail);
    if (rc < 0) return SETUP_ERRORS[rc] ?? `setup error ${rc}`;
    this.stopped = false;
    this.waiting = false;
    this.generation++;
    return null;
  }

  /** Stop: returns the next avail index to process (GET_VRING_BASE). */
  stop(): number {
    const last = this.codec.lastAvail(this.index);
    this.stopped = true;
    this.waiting = false;
    this.generation++;
    this.codec.resetQueue(this.index);
    return last;
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Process everything available. Safe to call at any time (spurious kicks are fine). */
  process(): void {
    if (this.stopped || this.waiting) return;
    const { codec, index: q } = this;
    let pushed = 0;
    for (let budget = BATCH_BUDGET; ; budget--) {
      if (budget === 0) {
        // A guest refilling the ring as fast as we drain it must not starve the other queue,
        // the display socket or the vhost-user socket: continue after the event loop had a turn.
        setImmediate(() => this.process());
        break;
      }
      let r = codec.pop(q);
      if (r === POP_EMPTY && pushed > 0) {
        // Answer what is done before waiting for more; then, polling, the next command is
        // taken without the guest's kick and our wake-up (notifications stay off meanwhile).
        if (codec.needNotify(q)) this.notify();
        pushed = 0;
        if (this.pollUs > 0) r = this.pollPop();
      }
      if (r === POP_EMPTY) {
        if (codec.arm(q)) continue; // buffers arrived while arming: a kick may not come
        break;
      }
      if (r === POP_BROKEN) {
        this.broken();
        break;
      }
      if (r !== POP_CHAIN) break; // POP_NO_SLOT: resumes when in-flight chains complete
      const slot = codec.rec[R_SLOT];
      // A malformed chain (from pop) or one without room for a response (from decode): len 0.
      if (codec.rec[R_STATUS] === 0) codec.decode(this.handler.responds);
      if (codec.rec[R_STATUS] < 0) {
        log.guest(`chain-${q}`, `queue ${q}: ${CHAIN_ERRORS[codec.rec[R_STATUS]] ?? 'bad chain'}; returned with len 0`);
        codec.push(q, slot, 0);
        pushed++;
        continue;
      }
      const len = this.handler.execute(codec, this);
      if (len === DEFERRED) continue;
      if (typeof len === 'number') {
        codec.push(q, slot, len);
        pushed++;
        continue;
      }
      this.waiting = true;
      const gen = this.generation;
      len.then(
        (n) => this.finishWaiting(gen, slot, n),
        (e) => {
          log.error(`queue ${q}: command failed: ${(e as Error)?.stack ?? e}`);
          this.finishWaiting(gen, slot, 0);
        },
      );
      break;
    }
    if (pushed > 0 && codec.needNotify(q)) this.notify();
  }

  /**
   * A completer for the chain being executed (call from execute only). Completions may come in
   * any order; one arriving after the ring was stopped is dropped. codec.resp may hold the
   * response of a paused command not pushed yet, so the bytes the writer overwrites (at most
   * respMax) are restored.
   */
  defer(respMax = DEFERRED_RESP_MAX): Completer {
    const slot = this.codec.rec[R_SLOT], gen = this.generation;
    const keep = Math.max(respMax, DEFERRED_RESP_MAX);
    return (write) => {
      if (gen !== this.generation) return;
      const saved = this.codec.resp.slice(0, keep);
      const len = write(this.codec);
      this.codec.push(this.index, slot, len);
      this.codec.resp.set(saved);
      // Fences signalled together complete in the same microtask run: one notify for them all.
      if (!this.afterCompletionsQueued) {
        this.afterCompletionsQueued = true;
        queueMicrotask(this.afterCompletions);
      }
    };
  }

  private afterCompletionsQueued = false;
  private readonly afterCompletions = (): void => {
    this.afterCompletionsQueued = false;
    if (this.stopped) return;
    if (this.codec.needNotify(this.index)) this.notify();
    if (!this.waiting) this.process(); // a chain may have waited for a free slot
  };

  private finishWaiting(gen: number, slot: number, len: number): void {
    if (gen !== this.generation) return; // the ring was stopped meanwhile: its slot is gone
    this.waiting = false;
    this.codec.push(this.index, slot, len);
    if (this.codec.needNotify(this.index)) this.notify();
    this.process();
  }

  /** Busy-poll the avail ring for up to pollUs. */
  private pollPop(): number {
    const { codec, index: q } = this;
    const end = performance.now() + this.pollUs / 1000;
    do {
      const r = codec.pop(q);
      if (r !== POP_EMPTY) return r;
    } while (performance.now() < end);
    return POP_EMPTY;
  }

  private broken(): void {
    const reason = BROKEN_REASONS[this.codec.broken(this.index)] ?? 'corrupt ring';
    log.error(`queue ${this.index}: ${reason}; device needs reset`);
    this.stopped = true;
    this.onBroken(reason);
  }
}
