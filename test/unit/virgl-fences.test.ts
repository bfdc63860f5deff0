import { describe, expect, it } from 'vitest';
import { FenceTimelines } from '../../src/renderers/virgl/fences.js';
import * as P from '../../src/renderers/virgl/protocol.js';

/** Settle order of a set of fence promises. */
async function order(entries: Array<[string, Promise<number>]>): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = [];
  await Promise.all(entries.map(([name, p]) => p.then((s) => out.push([name, s]))));
  return out;
}

describe('FenceTimelines', () => {
  it('a signal completes every fence up to it on that timeline only', async () => {
    const t = new FenceTimelines();
    const a1 = t.add(1), a2 = t.add(1), b1 = t.add(2), g1 = t.add(0), a3 = t.add(1);
    expect([a1.seq, a2.seq, b1.seq, a3.seq]).toEqual([1, 2, 3, 4]); // one counter for all contexts
    expect(g1.seq).toBe(1);
    t.signalled(1, a2.seq);
    t.signalled(0, 1);
    t.signalled(2, b1.seq);
    t.signalled(1, a3.seq);
    expect(await order([['a1', a1.done], ['a2', a2.done], ['b1', b1.done], ['g1', g1.done], ['a3', a3.done]]))
      .toEqual([['a1', 0], ['a2', 0], ['b1', 0], ['g1', 0], ['a3', 0]]);
    t.signalled(9, 100); // unknown timeline: ignored
  });

  it('a failed fence fails alone; a destroyed context drops its fences up to the horizon', async () => {
    const t = new FenceTimelines();
    const a1 = t.add(1), a2 = t.add(1);
    t.failed(1, a2.seq, -22);
    const horizon = t.horizon;
    const later = t.add(1); // the id reused after the destroy was enqueued
    t.dropped(1, horizon, -125);
    t.signalled(1, later.seq);
    expect(await Promise.all([a1.done, a2.done, later.done])).toEqual([-125, -22, 0]);
  });

  it('global ids are 32-bit: they wrap, skip 0 and still compare in order', async () => {
    const t = new FenceTimelines();
    (t as unknown as { globalSeq: number }).globalSeq = 0xfffffffe;
    const f = [t.add(0), t.add(0), t.add(0)];
    expect(f.map((x) => x.seq)).toEqual([0xffffffff, 1, 2]);
    t.signalled(0, 1); // after the wrap: covers 0xffffffff too
    const settled: number[] = [];
    f.forEach((x, i) => x.done.then(() => settled.push(i)));
    await new Promise((r) => setTimeout(r, 0));
    expect(settled).toEqual([0, 1]);
    t.settleAll(-19);
    expect(await f[2].done).toBe(-19);
  });
});

describe('virgl ring protocol', () => {
  const layouts = Object.entries(P).filter(([, v]) => typeof v === 'object' && v !== null && 'SIZE' in v) as Array<[string, Record<string, number>]>;

  it.each(layouts)('%s: fields are 4-byte aligned, after the header, inside the fixed size', (_name, layout) => {
    for (const [field, off] of Object.entries(layout)) {
      if (['SIZE', 'ARG_COUNT', 'SEG_BYTES'].includes(field)) continue;
      expect(off % 4, field).toBe(0);
      if (layout !== P.HDR) expect(off, field).toBeGreaterThanOrEqual(P.HDR.SIZE);
      expect(off, field).toBeLessThanOrEqual(layout.SIZE);
    }
  });

  it('op codes are distinct and named', () => {
    expect(new Set(Object.values(P.Cmd)).size).toBe(Object.keys(P.Cmd).length);
    expect(new Set(Object.values(P.Cpl)).size).toBe(Object.keys(P.Cpl).length);
    expect(P.cmdName(P.Cmd.SUBMIT)).toBe('SUBMIT');
    expect(P.cmdName(P.STARTUP)).toBe('STARTUP');
    expect(P.cmdName(99)).toBe('op 99');
  });

  it('u64 sequence numbers survive the split into two u32', () => {
    for (const s of [0, 1, 0xffffffff, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) expect(P.seqJoin(P.seqLo(s), P.seqHi(s))).toBe(s);
  });
});
