/**
 * 3D benchmark: the guest's GL program (Debian's kmscube on Mesa's virtio_gpu driver, the 3D e2e
 * image) through our daemon in --gpu-mode virglrenderer (vhost-user-gpu-pci), against QEMU's own
 * in-process device (-device virtio-gpu-gl-pci -display egl-headless,rendernode=/dev/null; QEMU's
 * vhost-user C backend cannot run headless: it asserts on the first SET_SCANOUT). Both run on the
 * same image, alternated, and report kmscube's frames per second.
 *
 *   npm run bench:3d [-- --repeats 3 --frames 600 --json FILE]
 */
import { writeFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { DEFAULT_APPEND, parseGlReport, runGuest } from '../test/e2e/qemu.js';
import { packagePath } from '../src/package-path.js';
import { median, min, max } from './stats.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('bench-3d')
  .option('repeats', { alias: 'r', type: 'number', default: 3, describe: 'Guest boots per configuration (alternated)' })
  .option('frames', { type: 'number', default: 600, describe: 'kmscube frames per run' })
  .option('json', { type: 'string', describe: 'Write the figures as JSON to this file' })
  .strict()
  .help()
  .parseSync();

type Config = 'vhost-gpu (virglrenderer, vhost-user)' | 'QEMU in-process virtio-gpu-gl';
const CONFIGS: Config[] = ['vhost-gpu (virglrenderer, vhost-user)', 'QEMU in-process virtio-gpu-gl'];
const OURS = [process.execPath, packagePath('bin/vhost-gpu.js'), '--gpu-mode', 'virglrenderer', '--socket-path={socket}'];

async function once(config: Config): Promise<number> {
  const run = await runGuest({
    guest: '3d',
    ...(config === CONFIGS[0] ? { device: 'vhost-user' as const, backendCmd: OURS } : { device: 'in-process-gl' as const }),
    append: `${DEFAULT_APPEND} e2e.frames=${argv.frames}`,
    timeoutMs: 240_000,
  });
  const gl = parseGlReport(run.serialLog);
  if (!gl || !/virgl/.test(gl.renderer)) throw new Error(`${config}: no GL report\n${run.serialLog.slice(-2000)}`);
  return gl.fps;
}

async function main(): Promise<void> {
  const fps = Object.fromEntries(CONFIGS.map((c) => [c, [] as number[]])) as Record<Config, number[]>;
  for (let r = 1; r <= argv.repeats; r++) {
    for (const c of CONFIGS) {
      const f = await once(c);
      fps[c].push(f);
      console.error(`[bench 3d] ${c} [${r}/${argv.repeats}]: ${f.toFixed(1)} fps`);
    }
  }
  const ours = median(fps[CONFIGS[0]]), ref = median(fps[CONFIGS[1]]);
  console.log(`\n## 3D: kmscube (${argv.frames} frames, 1280x800, guest Mesa virtio_gpu, host llvmpipe), fps over ${argv.repeats} boots\n`);
  console.log('| configuration | fps median | min | max |');
  console.log('|---|--:|--:|--:|');
  for (const c of CONFIGS) console.log(`| ${c} | ${median(fps[c]).toFixed(1)} | ${min(fps[c]).toFixed(1)} | ${max(fps[c]).toFixed(1)} |`);
  console.log(`\nours / QEMU in-process: ${(ours / ref).toFixed(2)}x`);
  if (argv.json) writeFileSync(argv.json, JSON.stringify({ frames: argv.frames, fps, ratio: ours / ref }, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
