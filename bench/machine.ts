/** The machine: what it is, and two limits measured in the same run as the scenarios. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { Worker } from 'node:worker_threads';
import { native, check } from '../src/native.js';
import { packagePath } from '../src/package-path.js';
import { Samples, percentile } from './stats.js';
import type { EchoData } from './worker.js';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memGiB: number;
  kernel: string;
  node: string;
  qemu: string;
  /** `git describe --always --dirty` of this checkout (what "ours" was built from). */
  revision: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1]!.trim();
  } catch { /* keep os.cpus() */ }
  return {
    cpu,
    cores: cpus().length,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    qemu: qemuVersion(),
    revision: firstLine('git', ['-C', packagePath('.'), 'describe', '--always', '--dirty']) ?? 'unknown',
    date: new Date().toISOString(),
  };
}

function qemuVersion(): string {
  const v = firstLine('qemu-system-x86_64', ['--version']);
  if (v) return v;
  const pkg = firstLine('dpkg-query', ['-W', '-f=${Version}', 'qemu-system-common']);
  return pkg ? `QEMU ${pkg}` : 'QEMU unknown';
}

function firstLine(cmd: string, args: string[]): string | null {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    return out.split('\n')[0]!.trim() || null;
  } catch {
    return null;
  }
}

export interface MemcpyLimit {
  bytes: number;
  /** Buffer.copy of a 1920x1080x4 frame (8,294,400 bytes), µs. */
  medianUs: number;
  minUs: number;
  gbPerSec: number;
  /** 1e6 / medianUs: frames per second if a frame cost one copy and nothing else. */
  copiesPerSec: number;
}

/** memcpy of a 1080p BGRA frame between two pre-faulted Buffers. */
export function measureMemcpy(copies = 60): MemcpyLimit {
  const bytes = 1920 * 1080 * 4;
  const src = Buffer.alloc(bytes, 0x5a);
  const dst = Buffer.alloc(bytes, 0);
  for (let i = 0; i < 5; i++) src.copy(dst);
  const s = new Samples(copies);
  for (let i = 0; i < copies; i++) {
    const t = performance.now();
    src.copy(dst);
    s.push(performance.now() - t);
  }
  const sorted = s.sorted();
  const medianUs = percentile(sorted, 50) * 1000;
  return { bytes, medianUs, minUs: sorted[0]! * 1000, gbPerSec: bytes / (medianUs * 1000), copiesPerSec: 1e6 / medianUs };
}

export interface EventfdLimit {
  method: string;
  roundTrips: number;
  p10Us: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  perSec: number;
}

/**
 * Round trip between this thread and a worker thread over two native eventfds, each side waiting
 * with uv_poll (the addon's watch()): main writes `ping`, the worker's loop wakes, reads it and
 * writes `pong`, main's loop wakes and reads it. This is the wake-up path a kick and a call take.
 */
export async function measureEventfdRoundTrip(durationMs = 500): Promise<EventfdLimit> {
  const addon = native();
  const ping = check('eventfd', addon.eventfd(0, true));
  const pong = check('eventfd', addon.eventfd(0, true));
  const data: EchoData = { role: 'eventfd-echo', ping, pong };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: data });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => { worker.once('message', () => resolve()); worker.once('error', reject); });
    const samples = new Samples(1 << 16);
    const warmup = 2000;
    let n = 0;
    const start = performance.now();
    let t0 = 0;
    await new Promise<void>((resolve, reject) => {
      const w = addon.watch(pong, (ev) => {
        if (ev < 0) { w2.close(); reject(new Error(`poll: errno ${-ev}`)); return; }
        addon.eventfdRead(pong);
        const now = performance.now();
        if (n++ >= warmup) samples.push(now - t0);
        if (now - start > durationMs && samples.length > 1000) { w2.close(); resolve(); return; }
        t0 = performance.now();
        addon.eventfdWrite(ping, 1);
      });
      if (typeof w === 'number') { reject(new Error(`watch: errno ${-w}`)); return; }
      const w2 = w;
      w2.start(addon.READABLE);
      t0 = performance.now();
      addon.eventfdWrite(ping, 1);
    });
    const sorted = samples.sorted();
    const p50 = percentile(sorted, 50);
    return {
      method: 'native eventfd + uv_poll (addon watch()) between the main thread and a worker_thread',
      roundTrips: samples.length, p10Us: percentile(sorted, 10) * 1000, p50Us: p50 * 1000, p90Us: percentile(sorted, 90) * 1000, p99Us: percentile(sorted, 99) * 1000, perSec: 1000 / p50,
    };
  } finally {
    worker.postMessage('stop');
    await exited;
    addon.close(ping);
    addon.close(pong);
  }
}
