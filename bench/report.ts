/** The report: one model, rendered as markdown tables (readable in a terminal too) and as JSON. */
import type { MachineInfo, MemcpyLimit, EventfdLimit } from './machine.js';
import type { RunFigures, Summary, FigureKey } from './stats.js';

export interface BackendResult {
  name: string;
  runs: RunFigures[];
  errors: string[];
  warnings: string[];
  summary: Summary;
}

export interface ScenarioResult {
  id: string;
  name: string;
  title: string;
  op: string;
  step: string;
  backends: BackendResult[];
  /** ours / reference, on the medians; null when either has no figures. */
  ratio: Partial<Record<FigureKey, number>> | null;
}

export interface Report {
  machine: MachineInfo;
  config: { repeats: number; durationMs: number; warmupMs: number; sliceMs: number; spinUs: number; command: string };
  /** 1-minute load average before and after the run (other work on the machine shows here). */
  load: number[];
  backends: { name: string; cmd: string; role: string }[];
  ours: string | null;
  reference: string | null;
  nullDevice: string | null;
  /** eventfd is measured twice: before and after the scenarios. */
  limits: { memcpy: MemcpyLimit; eventfd: EventfdLimit[] } | null;
  scenarios: ScenarioResult[];
}

const RATIO_KEYS: FigureKey[] = ['opsPerSec', 'p50Us', 'p99Us', 'mbPerSec', 'backendCpuUsPerOp', 'peakRssKiB'];

export function ratioOf(ours: BackendResult | undefined, ref: BackendResult | undefined): ScenarioResult['ratio'] {
  if (!ours || !ref || ours.runs.length === 0 || ref.runs.length === 0) return null;
  const r: Partial<Record<FigureKey, number>> = {};
  for (const k of RATIO_KEYS) {
    const v = ours.summary[k].median / ref.summary[k].median;
    if (Number.isFinite(v)) r[k] = v;
  }
  return r;
}

// --- formatting -----------------------------------------------------------------------------------

/** 3 significant digits, thousands separators, no exponent. */
export function num(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : `${v.toFixed(2)}x`;
}

const mib = (kib: number) => kib / 1024;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
  const sep = `|${w.map((n, i) => (i === 0 ? '-'.repeat(n + 2) : `${'-'.repeat(n + 1)}:`)).join('|')}|`;
  return [line(head), sep, ...rows.map(line)].join('\n');
}

/** The detailed table of one scenario (printed as soon as it is done). */
export function renderScenario(s: ScenarioResult, r: Report): string {
  const rows = s.backends.map((b) => {
    const m = b.summary;
    if (b.runs.length === 0) return [b.name, 'error', '', '', '', '', '', '', '', ''];
    return [
      b.name + (b.errors.length ? ` (${b.errors.length} failed)` : ''),
      num(m.opsPerSec.median), num(m.opsPerSec.min),
      `${num(m.p50Us.median)} (${num(m.p50Us.min)})`, `${num(m.p99Us.median)} (${num(m.p99Us.min)})`,
      num(m.mbPerSec.median), num(m.backendCpuUsPerOp.median), num(m.driverCpuUsPerOp.median),
      num(mib(m.peakRssKiB.max)), `${b.runs.length}`,
    ];
  });
  const out = [
    `### ${s.id} ${s.name}: ${s.title}`,
    '',
    `op = ${s.op}; latency sample = ${s.step}.`,
    '',
    table(['backend', 'ops/s med', 'ops/s min', 'p50 µs med (min)', 'p99 µs med (min)', 'MB/s med', 'backend CPU µs/op', 'driver CPU µs/op', 'peak RSS MiB', 'runs'], rows),
  ];
  if (s.ratio && r.ours && r.reference) {
    const q = s.ratio;
    out.push('', `${r.ours} / ${r.reference}: ops/s ${ratio(q.opsPerSec)}, p50 ${ratio(q.p50Us)}, p99 ${ratio(q.p99Us)}, ` +
      `back-end CPU per op ${ratio(q.backendCpuUsPerOp)}, peak RSS ${ratio(q.peakRssKiB)}`);
  }
  for (const b of s.backends) {
    for (const [what, list] of [['failed', b.errors], ['warning', b.warnings]] as const) {
      for (const [msg, n] of countDistinct(list)) {
        const lines = msg.trimEnd().split('\n');
        out.push('', `**${b.name} ${what}${n > 1 ? ` (${n} runs)` : ''}:** ${lines[0]}`);
        if (lines.length > 1) out.push('', '```', ...lines.slice(-6), '```');
      }
    }
  }
  return out.join('\n');
}

function countDistinct(list: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of list) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

export function renderMachine(r: Report): string {
  const m = r.machine;
  return [
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}; Node ${m.node}; ${m.qemu}; vhost-gpu ${m.revision}; ${m.date}.`,
    `Run: ${r.config.repeats} repeats x ${r.config.durationMs} ms measured (+${r.config.warmupMs} ms warm-up) per back-end and scenario, ` +
      'a fresh back-end process per run; each repeat sweeps every scenario; within a repeat all back-ends are connected ' +
      `at once and take turns (A B A B …) of ${r.config.sliceMs} ms of steps. ` +
      (r.config.spinUs > 0
        ? `Driver: busy-polling (spins on the used ring up to ${r.config.spinUs} µs after a kick, interrupts suppressed, then sleeps on the call eventfd). `
        : 'Driver: blocking (sleeps on the call eventfd after a kick). ') +
      `Load average (1 min) ${r.load.map((l) => l.toFixed(2)).join(' before, ')}${r.load.length > 1 ? ' after' : ' before'}.`,
    ...r.backends.map((b) => `- ${b.name}${b.role === b.name ? '' : ` (${b.role})`}: \`${b.cmd}\``),
  ].join('\n');
}

/** Everything after the per-scenario tables: summary, driver cost, limits, legend. */
export function renderSummary(r: Report): string {
  const out: string[] = [];
  const names = r.backends.map((b) => b.name);
  const get = (s: ScenarioResult, n: string) => s.backends.find((b) => b.name === n);
  const pick = (s: ScenarioResult, n: string, k: FigureKey, agg: 'median' | 'max' = 'median') => {
    const b = get(s, n);
    return b && b.runs.length ? b.summary[k][agg] : NaN;
  };
  const hasRatio = r.ours !== null && r.reference !== null;
  const ratioHead = hasRatio ? [`${r.ours}/${r.reference}`] : [];

  out.push('## Summary (medians over repeats)', '');
  for (const [title, key, unit] of [['Throughput', 'opsPerSec', 'ops/s'], ['Latency p50', 'p50Us', 'µs'], ['Latency p99', 'p99Us', 'µs']] as const) {
    out.push(`**${title}** (${unit})`, '');
    out.push(table(['scenario', ...names, ...ratioHead], r.scenarios.map((s) => [
      `${s.id} ${s.name}`, ...names.map((n) => num(pick(s, n, key))), ...(hasRatio ? [ratio(s.ratio?.[key])] : []),
    ])), '');
  }
  const frames = r.scenarios.filter((s) => s.backends.some((b) => Number.isFinite(b.summary.mbPerSec.median)));
  if (frames.length) {
    out.push('**Pixel throughput** (MB/s, 10^6 bytes)', '');
    out.push(table(['scenario', ...names, ...ratioHead], frames.map((s) => [
      `${s.id} ${s.name}`, ...names.map((n) => num(pick(s, n, 'mbPerSec'))), ...(hasRatio ? [ratio(s.ratio?.mbPerSec)] : []),
    ])), '');
  }
  const procs = r.backends.filter((b) => b.role !== 'null device').map((b) => b.name);
  out.push('**Back-end CPU per operation** (µs, user + sys of the back-end process, all threads; /proc/PID/stat, 10 ms ticks)', '');
  out.push(table(['scenario', ...procs, ...ratioHead], r.scenarios.map((s) => [
    `${s.id} ${s.name}`, ...procs.map((n) => num(pick(s, n, 'backendCpuUsPerOp'))), ...(hasRatio ? [ratio(s.ratio?.backendCpuUsPerOp)] : []),
  ])), '');
  out.push('**Peak RSS** (MiB, VmHWM of the back-end process at the end of each run; max over repeats)', '');
  out.push(table(['scenario', ...procs], r.scenarios.map((s) => [
    `${s.id} ${s.name}`, ...procs.map((n) => num(mib(pick(s, n, 'peakRssKiB', 'max')))),
  ])), '');

  out.push('## The driver\'s own cost', '');
  out.push('**Driver CPU per operation** (µs of this bench process, user + sys, while driving each back-end)', '');
  out.push(table(['scenario', ...names], r.scenarios.map((s) => [`${s.id} ${s.name}`, ...names.map((n) => num(pick(s, n, 'driverCpuUsPerOp')))])), '');
  if (r.nullDevice) {
    out.push(`"${r.nullDevice}" is the same driver, rings, display peer and scenarios against a device in a worker thread ` +
      'of the bench process that answers every command at once and writes display messages of the right size from a ' +
      'zero buffer (no pixel copies, no vhost-user). Its ops/s are the most this harness can measure on this machine; ' +
      'its CPU per op includes that worker thread. A back-end close to it is limited by the harness, not by itself.', '');
  }
  if (r.limits) {
    const m = r.limits.memcpy;
    out.push('## Machine limits (same run)', '');
    out.push(table(['limit', 'median', 'spread', 'rate'], [
      [`memcpy of a 1080p frame (${m.bytes.toLocaleString('en-US')} B, Buffer.copy)`, `${num(m.medianUs)} µs`, `min ${num(m.minUs)} µs`, `${num(m.gbPerSec)} GB/s = ${num(m.copiesPerSec)} frames/s`],
      ...r.limits.eventfd.map((e, i) => [
        `eventfd round trip between two threads, ${i === 0 ? 'before' : 'after'} the scenarios`,
        `${num(e.p50Us)} µs`, `p10 ${num(e.p10Us)}, p90 ${num(e.p90Us)}, p99 ${num(e.p99Us)} µs`, `${num(e.perSec)} /s`,
      ]),
    ]), '');
    if (r.limits.eventfd[0]) out.push(`eventfd: ${r.limits.eventfd[0].method}.`, '');
    out.push('A full frame copied at every step costs 3 frame copies end to end: guest pages → resource (the transfer), ' +
      'resource → socket (the kernel, on send) and socket → display (the kernel, on receive); building the UPDATE in a buffer ' +
      'first adds one. A back-end that hands its pages to the socket by reference (vmsplice) skips the second.', '');
  }
  out.push('## Legend', '',
    '- ops/s: operations per second of the time spent in a back-end\'s own steps in one run (closed loop: one step in flight); med/min over repeats.',
    '- p50/p99: latency percentiles of the steps of one run (a step = one kick and everything it waits for); med (min) over repeats.',
    `- ratios are ${r.ours ?? 'first'} / ${r.reference ?? 'last'} of the medians: above 1x on ops/s and MB/s means ${r.ours ?? 'first'} is faster; ` +
      'below 1x on latency, CPU and RSS means it is faster / leaner.',
    '- A real back-end run includes its negotiation and the scenario\'s setup in the process, not in the figures; warm-up steps are not measured.');
  return out.join('\n');
}
