/**
 * vhost-gpu benchmark: `npm run bench`, or `node dist/bench/run.js [options]`.
 *
 * Starts each back-end itself (a fresh process per scenario and repeat), drives it with the test
 * frontend (test/frontend/: QEMU's vhost-user side, the guest driver and QEMU's display socket),
 * alternates the back-ends step by step within each repeat to cancel machine drift, and reports ops/s, latency,
 * CPU and peak RSS per scenario, ratios of the first back-end ("ours") to the last ("reference"),
 * the driver's own cost (the null device) and the machine's limits, measured in the same run.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { SCENARIOS, selectScenarios } from './scenarios.js';
import type { Scenario, Prepared } from './scenarios.js';
import { NULL_NAME, defaultBackends, peakRssKiB, processCpuMs, splitCommand, startLive } from './backends.js';
import type { BackendSpec, Live } from './backends.js';
import { Samples, figures, summarize } from './stats.js';
import type { RunFigures } from './stats.js';
import { machineInfo, measureEventfdRoundTrip, measureMemcpy } from './machine.js';
import { num, ratioOf, renderMachine, renderScenario, renderSummary } from './report.js';
import type { BackendResult, Report } from './report.js';

interface RunOptions { repeats: number; durationMs: number; warmupMs: number; sliceMs: number; timeoutMs: number; spinUs: number; echoStderr: boolean }

/** Steps measured at least, however short the duration (smoke runs). */
const MIN_STEPS = 3;

const argv = yargs(hideBin(process.argv))
  .scriptName('bench')
  .usage('node dist/bench/run.js [options]\n\nBenchmark vhost-user-gpu back-ends with the test frontend.\n' +
    'Default back-ends: ours (node bin/vhost-gpu.js) and the reference (/usr/lib/qemu/vhost-user-gpu), plus the null device.')
  .option('backend-cmd', { type: 'string', array: true, describe: 'Back-end command line with {socket} (repeatable). The first is "ours", the last the "reference" for ratios. `node` means this node.' })
  .option('backend-name', { type: 'string', array: true, describe: 'Names for the --backend-cmd entries, in order' })
  .option('null', { type: 'boolean', default: true, describe: 'Also run the null device (the driver\'s own cost); --no-null to skip' })
  .option('scenario', { alias: 's', type: 'string', describe: `Comma-separated ids or names (default all): ${SCENARIOS.map((s) => `${s.id}=${s.name}`).join(', ')}; a = a1,a2` })
  .option('repeats', { alias: 'r', type: 'number', default: 5, describe: 'Runs per back-end and scenario (alternated)' })
  .option('duration-ms', { alias: 'd', type: 'number', default: 1000, describe: 'Measured time per run' })
  .option('warmup-ms', { type: 'number', default: 300, describe: 'Unmeasured steps before each run (JIT, caches)' })
  .option('slice-ms', { type: 'number', default: 100, describe: 'Back-ends take turns in slices of this much measured time (0: every step)' })
  .option('timeout-ms', { type: 'number', default: 10_000, describe: 'A step that takes longer fails the run' })
  .option('spin-us', { type: 'number', default: 0, describe: 'The driver polls the used ring this long after each kick before it sleeps on the call eventfd (a busy-polling guest; 0: it sleeps at once)' })
  .option('limits', { type: 'boolean', default: true, describe: 'Measure memcpy and eventfd limits; --no-limits to skip' })
  .option('json', { type: 'string', describe: 'Write the report (with every run) as JSON to this file' })
  .option('markdown', { type: 'string', describe: 'Write the report as markdown to this file' })
  .option('echo-stderr', { type: 'boolean', default: false, describe: 'Mirror the back-ends\' stderr' })
  .option('list', { type: 'boolean', default: false, describe: 'List the scenarios and exit' })
  .check((a) => {
    if (!Number.isInteger(a.repeats) || a.repeats < 1) throw new Error('--repeats must be a positive integer');
    if (!(a['duration-ms'] > 0)) throw new Error('--duration-ms must be positive');
    if (!(a['warmup-ms'] >= 0)) throw new Error('--warmup-ms must be >= 0');
    if (!(a['slice-ms'] >= 0)) throw new Error('--slice-ms must be >= 0');
    if (!(a['spin-us'] >= 0)) throw new Error('--spin-us must be >= 0');
    if ((a['backend-name']?.length ?? 0) > (a['backend-cmd']?.length ?? 0)) throw new Error('more --backend-name than --backend-cmd');
    return true;
  })
  .strict()
  .help()
  .alias('help', 'h')
  .wrap(110)
  .parseSync();

/** Back-ends alive right now (stopped on SIGINT/SIGTERM). */
const alive = new Set<Live>();

async function main(): Promise<number> {
  if (argv.list) {
    for (const s of SCENARIOS) console.log(`${s.id.padEnd(3)} ${s.name.padEnd(20)} ${s.title}\n    op = ${s.op}; latency = ${s.step}`);
    return 0;
  }
  const scenarios = selectScenarios(argv.scenario);
  const cmds = argv['backend-cmd'] ?? [];
  const specs: BackendSpec[] = cmds.length === 0 ? defaultBackends() : cmds.map((c, i) => ({
    name: argv['backend-name']?.[i] ?? (i === 0 ? 'ours' : i === cmds.length - 1 ? 'reference' : `backend ${i + 1}`),
    argv: splitCommand(c),
  }));
  const real = specs.length;
  if (argv.null) specs.push({ name: NULL_NAME, argv: null });
  if (new Set(specs.map((s) => s.name)).size !== specs.length) throw new Error('back-end names must be distinct');
  const opts: RunOptions = {
    repeats: argv.repeats, durationMs: argv['duration-ms'], warmupMs: argv['warmup-ms'], sliceMs: argv['slice-ms'], timeoutMs: argv['timeout-ms'], spinUs: argv['spin-us'], echoStderr: argv['echo-stderr'],
  };
  const report: Report = {
    machine: machineInfo(),
    config: {
      repeats: opts.repeats, durationMs: opts.durationMs, warmupMs: opts.warmupMs, sliceMs: opts.sliceMs, spinUs: opts.spinUs,
      command: process.argv.slice(2).join(' '),
    },
    backends: specs.map((s, i) => ({
      name: s.name, cmd: s.argv ? s.argv.join(' ') : '(in-process worker thread)',
      role: !s.argv ? 'null device' : real === 1 ? 'measured' : i === 0 ? 'ours' : i === real - 1 ? 'reference' : 'compared',
    })),
    ours: real >= 2 ? specs[0]!.name : null,
    reference: real >= 2 ? specs[real - 1]!.name : null,
    nullDevice: argv.null ? NULL_NAME : null,
    load: [loadavg()[0]!],
    limits: null,
    scenarios: [],
  };
  console.log(`# vhost-gpu benchmark\n\n${renderMachine(report)}\n`);

  if (argv.limits) {
    progress('machine limits: memcpy, eventfd round trip');
    report.limits = { memcpy: measureMemcpy(), eventfd: [await measureEventfdRoundTrip()] };
  }

  const dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-bench-'));
  let failures = 0;
  const results = scenarios.map(() => specs.map((s): BackendResult => ({ name: s.name, runs: [], errors: [], warnings: [], summary: summarize([]) })));
  try {
    // Repeat-major order: each repeat sweeps every scenario (and alternates the back-ends step by
    // step, see runRepeat), so slow drifts of the machine spread over all of them alike.
    for (let rep = 0; rep < opts.repeats; rep++) {
      for (let k = 0; k < scenarios.length; k++) {
        const sc = scenarios[k]!;
        const outcomes = await runRepeat(specs, sc, dir, opts);
        outcomes.forEach((o, i) => {
          const res = results[k]![i]!;
          const tag = `${sc.id} ${sc.name} [${rep + 1}/${opts.repeats}] ${specs[i]!.name}`;
          if (o.warning) res.warnings.push(o.warning);
          if (o.fig) {
            res.runs.push(o.fig);
            progress(`${tag}: ${num(o.fig.opsPerSec)} ops/s, p50 ${num(o.fig.p50Us)} µs`);
          } else {
            failures++;
            res.errors.push(o.error ?? 'no figures');
            progress(`${tag}: FAILED ${o.error}`);
          }
        });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('## Scenarios\n');
  scenarios.forEach((sc, k) => {
    const rs = results[k]!;
    for (const r of rs) r.summary = summarize(r.runs, r.errors);
    const ours = report.ours ? rs.find((r) => r.name === report.ours) : undefined;
    const ref = report.reference ? rs.find((r) => r.name === report.reference) : undefined;
    const done = { id: sc.id, name: sc.name, title: sc.title, op: sc.op, step: sc.step, backends: rs, ratio: ratioOf(ours, ref) };
    report.scenarios.push(done);
    console.log(`${renderScenario(done, report)}\n`);
  });
  if (report.limits) {
    progress('machine limits: eventfd round trip again');
    try {
      report.limits.eventfd.push(await measureEventfdRoundTrip());
    } catch (e) {
      failures++;
      progress(`eventfd round trip FAILED: ${(e as Error).message}`);
    }
  }
  report.load.push(loadavg()[0]!);
  const summary = renderSummary(report);
  console.log(summary);
  if (argv.json) writeFileSync(argv.json, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  if (argv.markdown) {
    writeFileSync(argv.markdown, [`# vhost-gpu benchmark`, '', renderMachine(report), '', '## Scenarios', '',
      ...report.scenarios.map((s) => `${renderScenario(s, report)}\n`), summary, ''].join('\n'));
  }
  return failures > 0 ? 1 : 0;
}

interface Outcome { fig?: RunFigures; error?: string; warning?: string | null }

interface Contender {
  live: Live | null;
  prep: Prepared | null;
  samples: Samples;
  measuredMs: number;
  steps: number;
  driverCpuUs: number;
  backendCpu0: number;
  out: Outcome;
}

const pool: Samples[] = [];

/**
 * One repeat of one scenario: a fresh process (or null device) per back-end, all connected at
 * once; each is prepared and warmed up, then they take turns (A B A B …, `sliceMs` of steps per
 * turn) until each has `durationMs` of measured steps. The machine's state (the hypervisor's
 * idle/wake behaviour, which flips between ~10 µs and ~100 µs wake-ups here; other load) thus
 * changes under all of them alike, while a slice keeps a back-end's caches warm as in a
 * continuous run. A back-end's ops/s counts the time spent in its own steps.
 */
async function runRepeat(specs: readonly BackendSpec[], sc: Scenario, dir: string, o: RunOptions): Promise<Outcome[]> {
  const cs: Contender[] = specs.map((_s, i) => ({
    live: null, prep: null, samples: (pool[i] ??= new Samples(1 << 16)), measuredMs: 0, steps: 0, driverCpuUs: 0, backendCpu0: NaN, out: {},
  }));
  cs.forEach((c) => c.samples.clear());
  const fail = (c: Contender, e: unknown) => {
    const why = c.live?.health();
    c.out.error = `${(e as Error).message}${why ? `\n${why}` : ''}`;
    c.prep = null;
  };
  try {
    for (let i = 0; i < specs.length; i++) {
      const c = cs[i]!;
      try {
        c.live = await startLive(specs[i]!, dir, o.echoStderr, o.spinUs);
        alive.add(c.live);
        c.prep = await sc.prepare(c.live.session, o.timeoutMs);
      } catch (e) { fail(c, e); }
    }
    for (const c of cs) {
      if (!c.prep) continue;
      try {
        const warmEnd = performance.now() + o.warmupMs;
        do await c.prep.step(); while (performance.now() < warmEnd);
      } catch (e) { fail(c, e); }
    }
    for (const c of cs) c.backendCpu0 = processCpuMs(c.live?.pid ?? null);
    const done = (c: Contender) => !c.prep || (c.measuredMs >= o.durationMs && c.steps >= MIN_STEPS);
    for (let more = true; more;) {
      more = false;
      for (const c of cs) {
        if (done(c)) continue;
        more = true;
        const sliceEnd = performance.now() + o.sliceMs;
        do {
          try {
            // CPU is read outside the timed window, so getrusage is not in the latency.
            const cpu0 = process.cpuUsage();
            const t0 = performance.now();
            await c.prep!.step();
            const dt = performance.now() - t0;
            const cpu = process.cpuUsage(cpu0);
            c.samples.push(dt);
            c.measuredMs += dt;
            c.steps++;
            c.driverCpuUs += cpu.user + cpu.system;
          } catch (e) { fail(c, e); }
        } while (!done(c) && performance.now() < sliceEnd);
      }
    }
    for (const c of cs) {
      if (!c.prep || !c.live) continue;
      const bad = c.live.health();
      if (bad) { fail(c, new Error(bad)); continue; }
      const p = c.prep;
      c.out.fig = figures(c.samples, c.steps * p.opsPerStep, c.measuredMs, c.steps * p.bytesPerStep,
        processCpuMs(c.live.pid) - c.backendCpu0, c.driverCpuUs / 1000, peakRssKiB(c.live.pid));
    }
  } finally {
    for (const c of cs) {
      if (!c.live) continue;
      c.out.warning = await c.live.close().catch((e: unknown) => (e as Error).message);
      alive.delete(c.live);
    }
  }
  return cs.map((c) => c.out);
}

function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg.split('\n')[0]}\n`);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    // Our daemon keeps serving after a disconnect: never leave one behind.
    const all = [...alive];
    alive.clear();
    void Promise.allSettled(all.map((l) => l.close())).finally(() => process.exit(130));
  });
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 2;
});
