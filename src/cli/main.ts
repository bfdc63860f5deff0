/**
 * vhost-gpu entry point: parse options, then serve until the front-end goes (--fd) or a signal
 * arrives. Bad options exit 1 with one clear line, as libvirt expects of a backend.
 */
import { readFileSync } from 'node:fs';
import { packagePath } from '../package-path.js';
import { log } from '../log.js';
import { parseOptions, capabilities, type Options } from './options.js';
import { startDaemon, startVirgl } from '../daemon/daemon.js';

function version(): string {
  return (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
}

/** Whether virglrenderer loads and initialises here (for --print-capabilities). */
async function virglWorks(opts: Options): Promise<boolean> {
  try {
    const c = await startVirgl({ ...opts, capsets: ['virgl', 'virgl2'] });
    const ok = c.capsets().length > 0;
    await c.close();
    return ok;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2), version());
  } catch (e) {
    process.stderr.write(`vhost-gpu: ${(e as Error).message}\nTry 'vhost-gpu --help' for more information.\n`);
    process.exit(1);
  }
  if (opts.printCapabilities) {
    log.setLevel('error');
    process.stdout.write(`${JSON.stringify(capabilities(await virglWorks(opts)), null, 2)}\n`);
    process.exit(0);
  }
  log.setLevel(opts.logLevel);
  try {
    // The renderer starts before we listen: a missing or broken virglrenderer is one error line.
    const virgl = opts.gpuMode === 'virglrenderer' ? await startVirgl(opts) : null;
    startDaemon(opts, virgl);
  } catch (e) {
    log.error((e as Error).message);
    process.exit(1);
  }
}

void main();
