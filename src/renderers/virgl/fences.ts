/**
 * Coordinator-side fence timelines. Each virgl context has one timeline (virglrenderer 0.10.4
 * accepts only ring 0 for virgl contexts, so the device maps its (ctx, ring_idx) timelines onto
 * these), plus the global one (ctx 0). Waiters resolve in creation order per timeline.
 */

/** Fences of one timeline, oldest first. */
interface Timeline {
  seqs: number[];
  waiters: Array<(status: number) => void>;
}

export class FenceTimelines {
  private globalSeq = 0; // 32-bit in virglrenderer: wraps, skipping 0
  // One counter for all contexts, so a context id reused after DESTROY never meets an old seq.
  private ctxSeq = 0;
  private readonly timelines = new Map<number, Timeline>();

  /** Newest sequence number given to any context fence. */
  get horizon(): number {
    return this.ctxSeq;
  }

  /** Register a new fence on ctxId's timeline (0 = global): its sequence number and its result. */
  add(ctxId: number): { seq: number; done: Promise<number> } {
    const seq = ctxId === 0 ? (this.globalSeq = (this.globalSeq + 1) >>> 0 || 1) : ++this.ctxSeq;
    let t = this.timelines.get(ctxId);
    if (!t) this.timelines.set(ctxId, (t = { seqs: [], waiters: [] }));
    const timeline = t;
    const done = new Promise<number>((resolve) => timeline.waiters.push(resolve));
    timeline.seqs.push(seq);
    return { seq, done };
  }

  /** virglrenderer reports only the newest retired fence: every fence up to it is done. */
  signalled(ctxId: number, seq: number): void {
    const t = this.timelines.get(ctxId);
    if (!t) return;
    let i = 0;
    if (ctxId === 0) {
      // Global ids wrap at 2^32: compare by distance (far fewer than 2^31 are ever in flight).
      while (i < t.seqs.length && ((seq - t.seqs[i]) >>> 0) < 0x8000_0000) i++;
    } else {
      while (i < t.seqs.length && t.seqs[i] <= seq) i++;
    }
    settle(t, 0, i, 0);
  }

  /** One fence was refused by virglrenderer: only that one fails. */
  failed(ctxId: number, seq: number, status: number): void {
    const t = this.timelines.get(ctxId);
    const i = t ? t.seqs.indexOf(seq) : -1;
    if (t && i >= 0) settle(t, i, i + 1, status);
  }

  /** The context was destroyed: its fences up to `horizon` will never signal. */
  dropped(ctxId: number, horizon: number, status: number): void {
    const t = this.timelines.get(ctxId);
    if (!t) return;
    let i = 0;
    while (i < t.seqs.length && t.seqs[i] <= horizon) i++;
    settle(t, 0, i, status);
    if (t.seqs.length === 0) this.timelines.delete(ctxId);
  }

  /** Settle every waiting fence (the renderer is gone). */
  settleAll(status: number): void {
    for (const t of this.timelines.values()) for (const w of t.waiters) w(status);
    this.timelines.clear();
  }
}

/** Resolve waiters [from, to) of a timeline with status, in order. */
function settle(t: Timeline, from: number, to: number, status: number): void {
  if (to <= from) return;
  const waiters = t.waiters.splice(from, to - from);
  t.seqs.splice(from, to - from);
  for (const w of waiters) w(status);
}
