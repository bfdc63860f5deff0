/**
 * Lifecycle bench: `npm run bench:lifecycle [-- --cycles N --seed S]`. Starts one daemon, runs N
 * connect/disconnect cycles against it (test/frontend/connection-cycles.ts: bare connects, half
 * messages, handshakes with and without a stop, hang-ups in the middle of 1080p frames) and
 * prints the daemon's fds, mappings and RSS (before, after, peak) with the cycle rate. The same
 * for the C backend is not possible: it serves one connection and exits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import {
  startBackend, connectFrontend, runCycle, cyclePlan, seededRandom, fdCount, fdTargets, memoryKiB, mappingCount, CYCLE_KINDS,
} from '../test/frontend/index.js';
import type { CycleKind } from '../test/frontend/index.js';
import { packagePath } from '../src/package-path.js';
import { native } from '../src/native.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('bench:lifecycle')
  .option('cycles', { alias: 'n', type: 'number', default: 1000, describe: 'Connect/disconnect cycles' })
  .option('seed', { type: 'number', default: 1, describe: 'Seed of the cycle mix' })
  .option('kind', { type: 'string', choices: CYCLE_KINDS as unknown as string[], describe: 'Only this kind of cycle (default: the mix)' })
  .option('gpu-mode', { type: 'string', default: '2d', describe: 'The daemon\'s --gpu-mode (2d, virglrenderer)' })
  .option('settle-ms', { type: 'number', default: 3000, describe: 'How long to wait for the fd count to come back after the cycles' })
  .strict()
  .parseSync();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The daemon answers a command on a fresh session (and the session is stopped and closed). */
async function alive(socketPath: string): Promise<void> {
  const s = await connectFrontend(socketPath, { ram: { size: 4 << 20 }, controlSize: 64 });
  try {
    const r = await s.driver.getDisplayInfo({ timeoutMs: 5000 });
    if (!r.ok) throw new Error(`GET_DISPLAY_INFO answered 0x${r.type.toString(16)}`);
    await s.frontend.stop([s.control, s.cursor]);
  } finally {
    s.close();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-lifecycle-'));
  const socketPath = join(dir, 'gpu.sock');
  const backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', '--log-level=warn', `--gpu-mode=${argv['gpu-mode']}`], socketPath);
  const pid = backend.proc.pid!;
  try {
    const probe = backend.takeConnection(); // the readiness probe: a bare cycle of its own
    if (probe !== null) native().close(probe);
    await alive(socketPath);
    const before = { fds: fdCount(pid), maps: mappingCount(pid), ...memoryKiB(pid) };
    const rng = seededRandom(argv.seed);
    const plan: CycleKind[] = argv.kind ? Array(argv.cycles).fill(argv.kind) : cyclePlan(argv.cycles, rng);
    const counts = new Map<CycleKind, number>();
    let peakFds = before.fds, peakRss = before.rss;
    const t0 = performance.now();
    for (let i = 0; i < plan.length; i++) {
      await runCycle(plan[i]!, socketPath, rng).catch((e) => { throw new Error(`cycle ${i} (${plan[i]}): ${(e as Error).message}\n--- daemon stderr ---\n${backend.stderr().slice(-3000)}`); });
      counts.set(plan[i]!, (counts.get(plan[i]!) ?? 0) + 1);
      if (i % 10 === 0) {
        peakFds = Math.max(peakFds, fdCount(pid));
        peakRss = Math.max(peakRss, memoryKiB(pid).rss);
      }
    }
    const elapsed = performance.now() - t0;
    await alive(socketPath);
    // The daemon ends each session on its own time: give the fd count a moment to come back.
    const settleEnd = Date.now() + argv['settle-ms'];
    while (fdCount(pid) > before.fds && Date.now() < settleEnd) await sleep(50);
    const after = { fds: fdCount(pid), maps: mappingCount(pid), ...memoryKiB(pid) };
    const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
    console.log(`vhost-gpu lifecycle (--gpu-mode ${argv['gpu-mode']}): ${plan.length} cycles in ${(elapsed / 1000).toFixed(1)} s (${(plan.length / (elapsed / 1000)).toFixed(0)}/s), seed ${argv.seed}`);
    console.log(`  mix: ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    console.log('| daemon | before | after | peak |');
    console.log('|---|---|---|---|');
    console.log(`| open fds | ${before.fds} | ${after.fds} | ${peakFds} (sampled) |`);
    console.log(`| memory mappings | ${before.maps} | ${after.maps} | |`);
    console.log(`| RSS | ${mib(before.rss)} | ${mib(after.rss)} | ${mib(Math.max(after.peak, peakRss))} (VmHWM) |`);
    if (after.fds > before.fds) console.log(`fds now: ${fdTargets(pid).join(' ')}`);
  } finally {
    const exit = await backend.stop();
    rmSync(dir, { recursive: true, force: true });
    if (exit.code !== 0) {
      console.error(`daemon exit: code ${exit.code}, signal ${exit.signal}\n${exit.stderr.slice(-4000)}`);
      process.exitCode = 1;
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
