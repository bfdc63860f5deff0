/**
 * `npm run fuzz -- --seconds N [--target NAME] [--seed S]`: run the fuzz targets (each for N
 * seconds, or N split over all of them), print figures, write reproducers of findings to
 * test/fuzz/findings/, exit 1 when anything was found.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { packagePath } from '../../src/package-path.js';
import { TARGETS, targetNames } from './targets.js';
import type { Finding, FuzzReport } from './target.js';
import { minimize } from './minimize.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('npm run fuzz --')
  .option('seconds', { type: 'number', default: 60, describe: 'time per target' })
  .option('target', { type: 'string', choices: targetNames, describe: 'one target (default: all)' })
  .option('seed', { type: 'number', describe: 'PRNG seed (default: from the clock; printed)' })
  .option('replay', { type: 'string', describe: 'replay one reproducer file and print its findings' })
  .option('minimize', { type: 'string', describe: 'shrink a reproducer file (lists only); writes FILE.min.json' })
  .strict()
  .parseSync();

if (argv.replay || argv.minimize) {
  const file = (argv.replay ?? argv.minimize)!;
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { target: string; kind: Finding['kind']; message: string; reproducer: unknown };
  const make = TARGETS[saved.target];
  if (!make) throw new Error(`${file}: unknown target ${saved.target}`);
  if (argv.replay) {
    const found = await make().replay(saved.reproducer);
    for (const f of found) console.log(`${f.kind}: ${f.message}`);
    console.log(`${found.length} findings`);
    process.exit(found.length > 0 ? 1 : 0);
  }
  if (!Array.isArray(saved.reproducer)) throw new Error(`${file}: only list reproducers can be minimized`);
  const small = await minimize(saved.reproducer, saved.kind, (items) => make().replay(items), (l) => console.log(`  ${l}`));
  const out = file.replace(/\.json$/, '') + '.min.json';
  writeFileSync(out, JSON.stringify({ ...saved, reproducer: small }));
  console.log(`${saved.reproducer.length} -> ${small.length} items: ${out}`);
  process.exit(0);
}

const seed = (argv.seed ?? Date.now()) >>> 0;
const chosen = argv.target ? [argv.target] : targetNames;
console.log(`fuzz: seed ${seed}, ${argv.seconds} s per target, ${availableParallelism()} cores`);

const reports: FuzzReport[] = [];
for (const name of chosen) {
  const target = TARGETS[name]!();
  const report = await target.run({ seconds: argv.seconds, seed, progress: (l) => console.log(`  ${l}`) });
  reports.push(report);
  const rate = report.inputs / report.seconds;
  console.log(`${name}: ${report.inputs} ${report.unit} in ${report.seconds.toFixed(1)} s (${Math.round(rate)}/s), ` +
    `RSS ${report.rssStartMiB.toFixed(0)} -> peak ${report.rssPeakMiB.toFixed(0)} MiB, ${report.findings.length} findings`);
  for (const n of report.notes) console.log(`  ${n}`);
  if (report.findings.length > 0) {
    const dir = packagePath('test/fuzz/findings');
    mkdirSync(dir, { recursive: true });
    report.findings.forEach((f, i) => {
      console.log(`  FINDING ${f.kind}: ${f.message}`);
      if (f.reproducer !== undefined) {
        const file = join(dir, `${name}-${seed}-${i}.json`);
        writeFileSync(file, JSON.stringify({ target: name, kind: f.kind, message: f.message, reproducer: f.reproducer }));
        console.log(`    reproducer: ${file} (move it to test/fuzz/regressions/ once fixed)`);
      }
    });
  }
}
process.exit(reports.some((r) => r.findings.length > 0) ? 1 : 0);
