/**
 * vhost-gpu entry point: parse options, then serve until the front-end goes (--fd) or a signal
 * arrives. Bad options exit 1 with one clear line, as libvirt expects of a backend.
 */
import { readFileSync } from 'node:fs';
import { packagePath } from '../package-path.js';
import { log } from '../log.js';
import { parseOptions, capabilities, type Options } from './options.js';
import { startDaemon } from '../daemon/daemon.js';

function version(): string {
  return (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
}

function main(): void {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2), version());
  } catch (e) {
    process.stderr.write(`vhost-gpu: ${(e as Error).message}\nTry 'vhost-gpu --help' for more information.\n`);
    process.exit(1);
  }
  if (opts.printCapabilities) {
    process.stdout.write(`${JSON.stringify(capabilities(), null, 2)}\n`);
    return;
  }
  log.setLevel(opts.logLevel);
  try {
    startDaemon(opts);
  } catch (e) {
    log.error((e as Error).message);
    process.exit(1);
  }
}

main();
