/**
 * Keeps the benchmark from rotting: every scenario, very briefly, against our daemon, QEMU's C
 * back-end (when installed) and the null device, through the real CLI (dist/bench/run.js, built
 * by `npm test`). Asserts only that figures are produced and positive, never timings.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath } from '../../src/package-path.js';
import { SCENARIOS } from '../../bench/scenarios.js';
import type { Report } from '../../bench/report.js';

const REFERENCE = '/usr/lib/qemu/vhost-user-gpu';
const RUN = packagePath('dist/bench/run.js');

describe('bench smoke', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-bench-smoke-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // Mandatory: `npm test` builds dist/ first and CI installs the C reference.
  it('runs every scenario against every back-end and reports positive figures', async () => {
    expect(existsSync(RUN), `${RUN} missing: run npm run build`).toBe(true);
    expect(existsSync(REFERENCE), `${REFERENCE} missing: install qemu-system-gui`).toBe(true);
    const json = join(dir, 'report.json');
    const backends = [`node ${packagePath('bin/vhost-gpu.js')} --socket-path {socket}`, `${REFERENCE} --socket-path {socket}`];
    const args = [RUN, '--repeats', '1', '--duration-ms', '30', '--warmup-ms', '10', '--json', json,
      ...backends.flatMap((b) => ['--backend-cmd', b])];
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, args, { timeout: 110_000, maxBuffer: 16 << 20 }, (err, out, errOut) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout: out, stderr: errOut });
      });
    });
    expect(code, `bench exited ${code}\n${stderr}\n${stdout.slice(-4000)}`).toBe(0);
    expect(stdout).toContain('## Summary');

    const report = JSON.parse(readFileSync(json, 'utf8')) as Report;
    const names = report.backends.map((b) => b.name);
    expect(names).toEqual(existsSync(REFERENCE) ? ['ours', 'reference', 'null device'] : ['ours', 'null device']);
    expect(report.scenarios.map((s) => s.id)).toEqual(SCENARIOS.map((s) => s.id));
    for (const s of report.scenarios) {
      for (const b of s.backends) {
        const where = `${s.id} ${s.name} / ${b.name}`;
        expect(b.errors, where).toEqual([]);
        expect(b.runs.length, where).toBe(1);
        const r = b.runs[0]!;
        expect(r.opsPerSec, where).toBeGreaterThan(0);
        expect(r.p50Us, where).toBeGreaterThan(0);
        expect(r.p99Us, where).toBeGreaterThanOrEqual(r.p50Us);
        expect(r.driverCpuUsPerOp, where).toBeGreaterThanOrEqual(0);
        if (s.id === 'a2' || s.id === 'c' || s.id === 'd') expect(r.mbPerSec, where).toBeGreaterThan(0);
        if (b.name !== 'null device') {
          expect(r.peakRssKiB, where).toBeGreaterThan(0);
          expect(r.backendCpuUsPerOp, where).toBeGreaterThanOrEqual(0);
        }
      }
      if (existsSync(REFERENCE)) expect(s.ratio?.opsPerSec, s.id).toBeGreaterThan(0);
    }
    expect(report.limits!.memcpy.medianUs).toBeGreaterThan(0);
    expect(report.limits!.eventfd).toHaveLength(2);
    for (const e of report.limits!.eventfd) expect(e.p50Us).toBeGreaterThan(0);
  }, 120_000);

  it('runs the cross-domain bench against weston and reports positive figures', async () => {
    const json = join(dir, 'cross-domain.json');
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [packagePath('dist/bench/cross-domain.js'), '--seconds', '0.2', '--json', json], { timeout: 60_000 }, (err, _out, errOut) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr: errOut });
      });
    });
    expect(code, stderr).toBe(0);
    const r = JSON.parse(readFileSync(json, 'utf8'));
    expect(r.cores).toBeGreaterThan(0);
    expect(r.roundTripMs.context.median).toBeGreaterThan(0);
    expect(r.syncsPerSecond.scaling.map((s: { contexts: number }) => s.contexts)).toEqual([1, 2, 4, 8]);
    for (const s of r.syncsPerSecond.scaling) expect(s.perSecond).toBeGreaterThan(0);
    expect(r.blobsPerSecond).toBeGreaterThan(0);
  }, 70_000);
});
