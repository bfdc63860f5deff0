/** What every fuzz target reports, and how a run is given its budget. */
export interface FuzzRunOptions {
  seconds: number;
  seed: number;
  /** Stop after this many inputs even if time is left (fixed-seed test runs). */
  maxInputs?: number;
  /** Progress lines (the CLI prints them; tests pass a no-op). */
  progress?: (line: string) => void;
}

export interface Finding {
  /** crash: an exception escaped / the daemon died; hang: no answer in time; leak: fds or memory grew; invariant: a wrong effect. */
  kind: 'crash' | 'hang' | 'leak' | 'invariant';
  message: string;
  /** Self-contained input that reproduces it (a JSON value the target's replay() accepts). */
  reproducer?: unknown;
}

export interface FuzzReport {
  target: string;
  inputs: number;
  /** What one input is, for the printed figures. */
  unit: string;
  seconds: number;
  findings: Finding[];
  /** Resident set size of the process under test at the start and its peak, MiB. */
  rssStartMiB: number;
  rssPeakMiB: number;
  notes: string[];
}

export interface FuzzTarget {
  readonly name: string;
  run(o: FuzzRunOptions): Promise<FuzzReport>;
  /** Run one saved reproducer; resolves to the findings it still produces (none once fixed). */
  replay(reproducer: unknown): Promise<Finding[]>;
}

/** Findings kept per run: the first ones tell the story; the rest only add to the count. */
export const MAX_FINDINGS = 20;

export function rssMiB(): number {
  return process.memoryUsage.rss() / (1 << 20);
}

export const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
export const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
