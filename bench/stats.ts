/** Latency samples, percentiles and the per-backend summary over repeats. */

/** A growable array of latency samples (ms), allocation-free while it has room. */
export class Samples {
  private buf: Float64Array;
  length = 0;

  constructor(capacity = 4096) { this.buf = new Float64Array(capacity); }

  push(v: number): void {
    if (this.length === this.buf.length) {
      const grown = new Float64Array(this.buf.length * 2);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf[this.length++] = v;
  }

  clear(): void { this.length = 0; }

  /** Sorted copy of the samples. */
  sorted(): Float64Array { return this.buf.slice(0, this.length).sort(); }
}

/** Nearest-rank percentile (p in [0, 100]) of sorted values; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function min(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x));
  return v.length ? Math.min(...v) : NaN;
}

export function max(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x));
  return v.length ? Math.max(...v) : NaN;
}

/** Figures of one measured run (one backend process, one scenario, one repeat). */
export interface RunFigures {
  /** Operations per second (what an operation is depends on the scenario). */
  opsPerSec: number;
  /** Latency of one step (a kick and everything it waits for), µs. */
  p50Us: number;
  p99Us: number;
  /** Payload MB/s (10^6 bytes) where the scenario moves pixels, else NaN. */
  mbPerSec: number;
  /** Back-end process CPU time (user + sys, all threads) per operation, µs; NaN when unknown. */
  backendCpuUsPerOp: number;
  /** This (bench) process's CPU time per operation, µs: the driver's own cost. */
  driverCpuUsPerOp: number;
  /** VmHWM of the back-end process at the end of the run, KiB; NaN when unknown. */
  peakRssKiB: number;
  steps: number;
  ops: number;
  elapsedMs: number;
}

export type FigureKey = 'opsPerSec' | 'p50Us' | 'p99Us' | 'mbPerSec' | 'backendCpuUsPerOp' | 'driverCpuUsPerOp' | 'peakRssKiB';

export interface Spread { median: number; min: number; max: number }

export type Summary = Record<FigureKey, Spread> & { runs: number; errors: string[] };

const KEYS: FigureKey[] = ['opsPerSec', 'p50Us', 'p99Us', 'mbPerSec', 'backendCpuUsPerOp', 'driverCpuUsPerOp', 'peakRssKiB'];

export function summarize(runs: readonly RunFigures[], errors: readonly string[] = []): Summary {
  const out = { runs: runs.length, errors: [...errors] } as Summary;
  for (const k of KEYS) {
    const v = runs.map((r) => r[k]);
    out[k] = { median: median(v), min: min(v), max: max(v) };
  }
  return out;
}

/** Figures of one run from its raw measurements. */
export function figures(samples: Samples, ops: number, elapsedMs: number, bytes: number,
  backendCpuMs: number, driverCpuMs: number, peakRssKiB: number): RunFigures {
  const s = samples.sorted();
  const secs = elapsedMs / 1000;
  return {
    opsPerSec: ops / secs,
    p50Us: percentile(s, 50) * 1000,
    p99Us: percentile(s, 99) * 1000,
    mbPerSec: bytes > 0 ? bytes / 1e6 / secs : NaN,
    backendCpuUsPerOp: ops > 0 ? (backendCpuMs * 1000) / ops : NaN,
    driverCpuUsPerOp: ops > 0 ? (driverCpuMs * 1000) / ops : NaN,
    peakRssKiB,
    steps: samples.length,
    ops,
    elapsedMs,
  };
}
