/**
 * Short fixed-seed runs of every fuzz target (test/fuzz/, `npm run fuzz` for long runs), and a
 * replay of every saved reproducer in test/fuzz/regressions/.
 */
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TARGETS } from '../fuzz/targets.js';
import type { Finding } from '../fuzz/target.js';
import { packagePath } from '../../src/package-path.js';

const SEED = 20261207;
/** Seconds per target: enough for tens of thousands of inputs, short enough for every `npm test`. */
const SECONDS: Record<string, number> = { codec: 3, 'vhost-user': 4, device: 4, virgl: 6 };

const describeFindings = (f: Finding[]) => f.map((x) => `${x.kind}: ${x.message}`).join('\n');

describe('fuzz targets, short fixed-seed runs', () => {
  for (const [name, make] of Object.entries(TARGETS)) {
    it(`${name}: no crash, hang, leak or broken invariant`, async () => {
      const report = await make().run({ seconds: SECONDS[name] ?? 3, seed: SEED });
      expect(report.inputs).toBeGreaterThan(1000);
      expect(report.findings, describeFindings(report.findings)).toEqual([]);
    }, 120_000);
  }
});

describe('fuzz regressions', () => {
  const dir = packagePath('test/fuzz/regressions');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  it.each(files.length ? files : ['(none yet)'])('%s no longer produces a finding', async (file) => {
    if (!file.endsWith('.json')) return;
    const saved = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { target: string; reproducer: unknown };
    const make = TARGETS[saved.target];
    expect(make, `unknown target ${saved.target}`).toBeDefined();
    const findings = await make!().replay(saved.reproducer);
    expect(findings, describeFindings(findings)).toEqual([]);
  }, 120_000);
});
