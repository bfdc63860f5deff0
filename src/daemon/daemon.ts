/**
 * Daemon lifecycle: one backend per vhost-user connection, clean exit on SIGTERM/SIGINT, and exit
 * 0 when an inherited --fd connection closes (the front-end owns our lifetime then).
 */
import { log } from '../log.js';
import type { Options } from '../cli/options.js';
import { VirglComponent, type VirglCapsetName } from '../renderers/virgl/component.js';
import { GpuBackend } from './gpu-backend.js';
import { listen, serveFd, type Server } from './server.js';

/** Start virglrenderer (virglrenderer mode); throws one clear message if it cannot. */
export async function startVirgl(opts: Pick<Options, 'capsets' | 'virglFlags'>): Promise<VirglComponent> {
  const c = await VirglComponent.start({
    capsets: opts.capsets as VirglCapsetName[],
    flags: opts.virglFlags,
    // For a virglrenderer outside the loader's path (and tests of a missing one).
    libraryPath: process.env.VHOST_GPU_VIRGL_LIBRARY || null,
    onLost: (e) => {
      log.error(`virglrenderer worker lost: ${e.message}; exiting`);
      process.exit(1);
    },
  });
  if (c.capsets().length === 0) {
    await c.close();
    throw new Error(`virglrenderer serves none of the capsets ${opts.capsets.join(', ')}`);
  }
  return c;
}

export function startDaemon(opts: Options, virgl: VirglComponent | null = null): Server {
  const makeBackend = () => new GpuBackend({ maxHostMemory: opts.maxHostMemory, virgl });
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
  const caps = virgl ? `, capsets ${virgl.capsets().map((c) => c.name).join(',')}` : '';
  log.info(`vhost-gpu ${opts.gpuMode} mode${caps}, host memory cap ${opts.maxHostMemory} bytes`);
  return server;
}
