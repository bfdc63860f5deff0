/**
 * Daemon lifecycle: one backend per vhost-user connection, clean exit on SIGTERM/SIGINT, and exit
 * 0 when an inherited --fd connection closes (the front-end owns our lifetime then).
 */
import { log } from '../log.js';
import type { Options } from '../cli/options.js';
import type { VirglCapsetName } from '../renderers/virgl/component.js';
import { VirglService } from '../renderers/virgl/service.js';
import { CAPSETS, workerType } from '../renderers/capsets.js';
import { WorkerContexts } from '../renderers/worker-context/host.js';
import type { OfferedCapset } from '../device/contexts.js';
import { GpuBackend } from './gpu-backend.js';
import { listen, serveFd, type Server } from './server.js';

/** How long an exit waits for the virgl render server to shut down. */
const EXIT_GRACE_MS = 5000;

/** Start virglrenderer (virglrenderer mode); throws one clear message if it cannot. */
export async function startVirgl(opts: Pick<Options, 'capsets' | 'virglFlags' | 'maxRendererMemory'>): Promise<VirglService> {
  const capsets = CAPSETS.filter((r) => r.runner === 'virgl' && opts.capsets.includes(r.name)).map((r) => r.name as VirglCapsetName);
  const c = await VirglService.start({
    capsets,
    flags: opts.virglFlags,
    maxMemoryBytes: opts.maxRendererMemory,
    // For a virglrenderer outside the loader's path (and tests of a missing one).
    libraryPath: process.env.VHOST_GPU_VIRGL_LIBRARY || null,
  });
  if (c.capsets().length === 0) {
    await c.close();
    throw new Error(`virglrenderer serves none of the capsets ${capsets.join(', ')}`);
  }
  return c;
}

/** The capsets of --capset whose contexts run one per worker, in --capset order. */
export function workerCapsets(opts: Pick<Options, 'capsets' | 'waylandSocket'>): OfferedCapset[] {
  const out: OfferedCapset[] = [];
  for (const name of opts.capsets) {
    const row = CAPSETS.find((r) => r.name === name);
    if (row?.runner !== 'worker') continue;
    const data = row.data();
    out.push({ id: row.id, name: row.name, maxVersion: row.maxVersion, maxSize: data.length, data, runner: workerType(row, opts) });
  }
  return out;
}

export function startDaemon(opts: Options, virgl: VirglService | null = null): Server {
  const capsets = workerCapsets(opts);
  const workers = capsets.length > 0 ? new WorkerContexts(opts.maxContexts) : null;
  const makeBackend = () => new GpuBackend({
    maxHostMemory: opts.maxHostMemory, hostVisibleSize: opts.hostVisibleSize, virgl, workerCapsets: capsets, workers, maxContexts: opts.maxContexts,
    pollUs: opts.pollUs,
  });
  // Let the render server finish (virgl_renderer_cleanup) rather than kill it under load.
  const exit = () => {
    const bounded = new Promise<void>((resolve) => setTimeout(resolve, EXIT_GRACE_MS).unref());
    void Promise.race([virgl?.close(), bounded]).finally(() => process.exit(0));
  };
  const server = opts.fd !== undefined
    ? serveFd(opts.fd, makeBackend, exit)
    : listen(opts.socketPath!, makeBackend);
  const stop = (signal: string) => {
    log.info(`${signal}: exiting`);
    server.close();
    exit();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGHUP', () => stop('SIGHUP'));
  const names = [...(virgl?.capsets().map((c) => c.name) ?? []), ...capsets.map((c) => c.name)];
  const caps = names.length > 0 ? `, capsets ${names.join(',')}` : '';
  log.info(`vhost-gpu ${opts.gpuMode} mode${caps}, host memory cap ${opts.maxHostMemory} bytes`);
  return server;
}
