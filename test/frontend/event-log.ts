/**
 * Typed event streams for tests: per-type FIFO queues that waiters consume, plus "wait until a
 * counter reaches n". Events that arrive before anyone waits are kept (bounded), because a
 * message caused by a command can arrive before or after the command's completion.
 */
export interface LoggedEvent { type: number }

interface Waiter<E> { type: number; pred: ((e: E) => boolean) | undefined; resolve: (e: E) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
interface CountWaiter { type: number; n: number; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

export class EventLog<E extends LoggedEvent> {
  /** Events dropped because a queue exceeded maxQueued. */
  dropped = 0;
  private readonly queues = new Map<number, E[]>();
  private waiters: Waiter<E>[] = [];
  private countWaiters: CountWaiter[] = [];
  private failed: Error | null = null;

  /**
   * @param count current counter for a type (for waitForCount)
   * @param describe context appended to timeout messages
   */
  constructor(private readonly maxQueued: number, private readonly count: (type: number) => number,
    private readonly describe: () => string = () => '') {}

  /** The next event of `type` matching `pred`; consumes it and every older event of that type. */
  waitFor(type: number, pred: ((e: E) => boolean) | undefined, timeoutMs: number): Promise<E> {
    const q = this.queues.get(type);
    if (q) {
      const i = pred ? q.findIndex(pred) : q.length > 0 ? 0 : -1;
      if (i >= 0) { const e = q[i]!; q.splice(0, i + 1); return Promise.resolve(e); }
      q.length = 0;
    }
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const w: Waiter<E> = {
        type, pred, resolve, reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`no event ${type} within ${timeoutMs} ms ${this.describe()}`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** Resolves once count(type) >= n. */
  waitForCount(type: number, n: number, timeoutMs: number): Promise<void> {
    if (this.count(type) >= n) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const w: CountWaiter = {
        type, n, resolve, reject,
        timer: setTimeout(() => {
          this.countWaiters = this.countWaiters.filter((x) => x !== w);
          reject(new Error(`event ${type}: ${this.count(type)}/${n} within ${timeoutMs} ms ${this.describe()}`));
        }, timeoutMs),
      };
      this.countWaiters.push(w);
    });
  }

  take(type: number): E | undefined { return this.queues.get(type)?.shift(); }
  pending(type: number): readonly E[] { return this.queues.get(type) ?? []; }
  clear(): void { this.queues.clear(); }

  /** Hand an event to the first matching waiter, or queue it. */
  push(e: E): void {
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i]!;
      if (w.type === e.type && (!w.pred || w.pred(e))) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(e);
        return;
      }
    }
    let q = this.queues.get(e.type);
    if (!q) this.queues.set(e.type, (q = []));
    q.push(e);
    if (q.length > this.maxQueued) { q.shift(); this.dropped++; }
  }

  /** Call after a counter moved. */
  counted(): void {
    if (this.countWaiters.length === 0) return;
    this.countWaiters = this.countWaiters.filter((w) => {
      if (this.count(w.type) < w.n) return true;
      clearTimeout(w.timer);
      w.resolve();
      return false;
    });
  }

  /** Reject every waiter now and later (the source is gone). */
  fail(err: Error): void {
    this.failed = err;
    for (const w of [...this.waiters, ...this.countWaiters]) { clearTimeout(w.timer); w.reject(err); }
    this.waiters = [];
    this.countWaiters = [];
  }
}
