/**
 * Daemon lifecycle: one backend per vhost-user connection, clean exit on SIGTERM/SIGINT, and exit
 * 0 when an inherited --fd connection closes (the front-end owns our lifetime then).
 */
import { log } from '../log.js';
import type { Options } from '../cli/options.js';
import { GpuBackend } from './gpu-backend.js';
import { listen, serveFd, type Server } from './server.js';

export function startDaemon(opts: Options): Server {
  const makeBackend = () => new GpuBackend({ maxHostMemory: opts.maxHostMemory });
  const server = opts.fd !== undefined
    ? serveFd(opts.fd, makeBackend, () => process.exit(0))
    : listen(opts.socketPath!, makeBackend);
  const stop = (signal: string) => {
    log.info(`${signal}: exiting`);
    server.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGHUP', () => stop('SIGHUP'));
  log.info(`vhost-gpu ${opts.gpuMode} mode, host memory cap ${opts.maxHostMemory} bytes`);
  return server;
}
