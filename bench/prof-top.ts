/**
 * Top self-time functions of V8 CPU profiles (node --cpu-prof), summed over the given files:
 *
 *   node dist/bench/prof-top.js [--top N] /tmp/prof/*.cpuprofile
 *
 * Self time of a sample is the time to the next sample (timeDeltas), as DevTools counts it.
 * Percentages are of the busy time (everything but "(idle)").
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

export interface Row { name: string; where: string; selfMs: number }

export function selfTimes(files: readonly string[]): { rows: Row[]; totalMs: number; idleMs: number } {
  const byKey = new Map<string, Row>();
  let totalMs = 0, idleMs = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as CpuProfile;
    const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
    for (let i = 0; i < p.samples.length; i++) {
      const ms = (p.timeDeltas[i + 1] ?? 0) / 1000;
      const cf = frames.get(p.samples[i]!);
      if (!cf) continue;
      totalMs += ms;
      const name = cf.functionName || '(anonymous)';
      if (name === '(idle)') { idleMs += ms; continue; }
      const where = cf.url ? `${shorten(cf.url)}:${cf.lineNumber + 1}` : '';
      const key = `${name}@${where}`;
      const row = byKey.get(key) ?? { name, where, selfMs: 0 };
      row.selfMs += ms;
      byKey.set(key, row);
    }
  }
  return { rows: [...byKey.values()].sort((a, b) => b.selfMs - a.selfMs), totalMs, idleMs };
}

function shorten(url: string): string {
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.startsWith('/') ? relative(process.cwd(), path) : path;
}

function main(): void {
  const args = process.argv.slice(2);
  let top = 25;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--top') top = Number(args[++i]);
    else files.push(args[i]!);
  }
  if (files.length === 0 || !(top > 0)) {
    console.error('usage: node dist/bench/prof-top.js [--top N] FILE.cpuprofile...');
    process.exitCode = 1;
    return;
  }
  const { rows, totalMs, idleMs } = selfTimes(files);
  const busy = totalMs - idleMs;
  console.log(`${files.length} profile(s): ${totalMs.toFixed(0)} ms sampled, ${idleMs.toFixed(0)} ms idle, ${busy.toFixed(0)} ms busy\n`);
  console.log('| self ms | % busy | function | where |\n|--:|--:|---|---|');
  for (const r of rows.slice(0, top)) {
    console.log(`| ${r.selfMs.toFixed(1)} | ${((100 * r.selfMs) / busy).toFixed(1)} | ${r.name} | ${r.where} |`);
  }
}

main();
