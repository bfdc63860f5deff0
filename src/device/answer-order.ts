/**
 * Answers of fenced commands leave in order per fence timeline: the guest treats the answer to
 * fence N as "every fence up to N on this timeline is done", so a later answer must never
 * overtake an earlier one of the same timeline (a flush waiting for the display, a context's
 * slower ring). Timelines: 0 is the global one (no FLAG_INFO_RING_IDX); a context's ring r is
 * timeline(ctx, r); virgl orders a whole context as one (ring WHOLE_CONTEXT).
 */
import { log } from '../log.js';

export const GLOBAL_TIMELINE = 0;
export const WHOLE_CONTEXT = 64;

export function timeline(ctxId: number, ring: number): number {
  return ctxId * (WHOLE_CONTEXT + 1) + ring;
}

export class AnswerOrder {
  private readonly last = new Map<number, Promise<void>>();

  /** Whether an answer on `t` is still waiting (then a new one must queue behind it). */
  busy(t: number): boolean {
    return this.last.has(t);
  }

  /** Call `answer` with what `ready` resolved to, after every earlier answer on timeline `t`. */
  after<T>(t: number, ready: Promise<T>, answer: (value: T) => void): void {
    const prev = this.last.get(t);
    const done = (prev ? Promise.all([ready, prev]).then(([v]) => v) : ready).then(answer)
      .catch((e: unknown) => log.error(`answering a fenced command failed: ${(e as Error)?.stack ?? e}`));
    this.last.set(t, done);
    void done.finally(() => {
      if (this.last.get(t) === done) this.last.delete(t);
    });
  }

  clear(): void {
    this.last.clear();
  }
}
