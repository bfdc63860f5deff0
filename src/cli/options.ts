/**
 * Command-line options. Names follow QEMU's backend conventions (docs/interop/vhost-user.rst,
 * "Backend program conventions") and rust-vmm's vhost-device-gpu where they overlap.
 */
import yargs from 'yargs';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { CAPSETS, capsetRow, defaultCapsets, defaultWaylandSocket, type GpuMode } from '../renderers/capsets.js';

export const GPU_MODES = ['2d', 'virglrenderer'] as const satisfies readonly GpuMode[];
export type { GpuMode };

export interface Options {
  socketPath?: string;
  fd?: number;
  printCapabilities: boolean;
  gpuMode: GpuMode;
  capsets: string[];
  maxHostMemory: number;
  /** Resident memory virglrenderer's render server may use (bytes; 0: no limit). */
  maxRendererMemory: number;
  /** Bytes of the host-visible shared memory region (MAP_BLOB) asked of the front-end; 0: none. */
  hostVisibleSize: number;
  /** Contexts of every type at once (CTX_CREATE beyond is refused). */
  maxContexts: number;
  /** µs a queue busy-polls for the next command after answering (0: sleep until the kick). */
  pollUs: number;
  /** The Wayland compositor socket cross-domain contexts connect to ('' if none could be formed). */
  waylandSocket: string;
  logLevel: LogLevel;
  /** virgl_renderer_init flags (virglrenderer mode). */
  virglFlags: number;
  /** --render-node: accepted for QEMU's C backend compatibility (see README). */
  renderNode?: string;
}

/** Capset names available per GPU mode (the capset table's rows). */
export function capsetsOf(mode: GpuMode): string[] {
  return CAPSETS.filter((r) => r.modes.includes(mode)).map((r) => r.name);
}

const MAX_CONTEXTS_LIMIT = 1024;

// virgl_renderer_init flags (virglrenderer.h), as src/native.ts's VirglFlags.
const USE_EGL = 1 << 0, THREAD_SYNC = 1 << 1, USE_GLX = 1 << 2, USE_SURFACELESS = 1 << 3, USE_GLES = 1 << 4;

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "1073741824", "512M", "1G", "1GiB" -> bytes; throws on anything else, naming `option`. */
export function parseSize(text: string, option = '--max-host-memory'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`${option}: cannot parse size "${text}" (e.g. 1G, 512M, 1073741824)`);
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  if (bytes < 1 << 20) throw new Error(`${option}: ${text} is below the 1 MiB minimum`);
  if (!Number.isSafeInteger(bytes)) throw new Error(`${option}: ${text} is too large`);
  return bytes;
}

const MAX_HOST_VISIBLE = 2 ** 40;

/** A size as parseSize, or 0 for "0", "0M", ...: the "none" of size options that allow it. */
function parseSizeOrNone(text: string, option: string): number {
  return /^0+\s*([kmgt]?)(?:i?b)?$/i.test(text.trim()) ? 0 : parseSize(text, option);
}

/** --poll-us: whole µs, at most 10 ms (longer would hold the event loop). */
export function parsePollUs(us: number): number {
  if (!Number.isInteger(us) || us < 0 || us > 10_000) throw new Error(`--poll-us: ${us} is not a whole number of µs from 0 to 10000`);
  return us;
}

/**
 * --host-visible-size: 0 for no region, else a power of two from 1 MiB to 1 TiB (a PCI BAR is a
 * power of two; the guest driver places blobs in it page by page).
 */
export function parseHostVisibleSize(text: string): number {
  const bytes = parseSizeOrNone(text, '--host-visible-size');
  if (bytes === 0) return 0;
  if (bytes > MAX_HOST_VISIBLE || !Number.isInteger(Math.log2(bytes))) {
    throw new Error(`--host-visible-size: ${text} is not a power of two from 1M to 1T (or 0 for none)`);
  }
  return bytes;
}

export function parseOptions(argv: string[], version: string): Options {
  const parsed = yargs(argv)
    .scriptName('vhost-gpu')
    .usage('$0 [options]\n\nvirtio-gpu device backend for QEMU\'s -device vhost-user-gpu-pci.')
    .option('socket-path', { alias: 's', type: 'string', describe: 'Listen for the vhost-user front-end on this UNIX socket' })
    .option('fd', { type: 'number', describe: 'Use this inherited, already connected vhost-user socket' })
    .option('print-capabilities', { type: 'boolean', default: false, describe: 'Print the backend capabilities as JSON and exit' })
    .option('gpu-mode', { alias: 'g', type: 'string', choices: GPU_MODES as unknown as string[], describe: 'Renderer (default 2d; virglrenderer with --virgl)' })
    .option('virgl', { type: 'boolean', default: false, describe: 'Same as --gpu-mode virglrenderer (QEMU C backend\'s flag, passed by libvirt for accel3d)' })
    .option('capset', { alias: 'c', type: 'string', describe: 'Comma-separated capsets to offer (none exist in 2d mode)' })
    .option('use-egl', { type: 'boolean', describe: 'virglrenderer: use EGL (default unless --use-glx)' })
    .option('use-gles', { type: 'boolean', default: false, describe: 'virglrenderer: use GLES instead of desktop GL' })
    .option('use-surfaceless', { type: 'boolean', describe: 'virglrenderer: EGL surfaceless platform (default with EGL)' })
    .option('use-glx', { type: 'boolean', default: false, describe: 'virglrenderer: use GLX (X display needed)' })
    .option('render-node', { type: 'string', describe: 'virglrenderer: DRM render node (accepted; EGL picks its device)' })
    .option('max-host-memory', { type: 'string', default: '1G', describe: 'Cap on host memory for guest resources and contexts (e.g. 512M, 2G)' })
    .option('max-renderer-memory', { type: 'string', default: '4G', describe: 'virglrenderer: resident memory its render server process may use; over it, it is restarted (0: no limit)' })
    .option('host-visible-size', { type: 'string', default: '1G', describe: 'Size of the host-visible shared memory region for mapped blobs (power of two; 0: none; needs a front-end with SHMEM)' })
    .option('max-contexts', { type: 'number', default: 64, describe: 'Most 3D contexts at once (each cross-domain context is a thread)' })
    .option('poll-us', { type: 'number', default: 50, describe: 'After answering, poll a queue this many µs for the next command before sleeping until a kick (0: never; like QEMU\'s iothread poll-max-ns)' })
    .option('wayland-socket', { type: 'string', describe: 'Wayland compositor socket for cross-domain (default $XDG_RUNTIME_DIR/$WAYLAND_DISPLAY)' })
    .option('log-level', { type: 'string', choices: LOG_LEVELS, default: 'info', describe: 'Log verbosity (stderr)' })
    .version(version)
    .alias('version', 'V')
    .help()
    .alias('help', 'h')
    .strict()
    .wrap(100)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseSync();

  const opts: Options = {
    socketPath: parsed['socket-path'],
    fd: parsed.fd,
    printCapabilities: parsed['print-capabilities'] as boolean,
    gpuMode: (parsed['gpu-mode'] ?? (parsed.virgl ? 'virglrenderer' : '2d')) as GpuMode,
    capsets: parsed.capset ? String(parsed.capset).split(',').map((s) => s.trim()).filter(Boolean) : [],
    maxHostMemory: parseSize(String(parsed['max-host-memory'])),
    maxRendererMemory: parseSizeOrNone(String(parsed['max-renderer-memory']), '--max-renderer-memory'),
    hostVisibleSize: parseHostVisibleSize(String(parsed['host-visible-size'])),
    maxContexts: parsed['max-contexts'] as number,
    pollUs: parsePollUs(parsed['poll-us'] as number),
    waylandSocket: parsed['wayland-socket'] ?? defaultWaylandSocket(process.env) ?? '',
    logLevel: parsed['log-level'] as LogLevel,
    virglFlags: virglFlags(parsed['use-egl'] as boolean | undefined, parsed['use-surfaceless'] as boolean | undefined, parsed['use-gles'] as boolean, parsed['use-glx'] as boolean),
    renderNode: parsed['render-node'],
  };
  if (parsed.virgl && opts.gpuMode !== 'virglrenderer') throw new Error(`--virgl contradicts --gpu-mode ${opts.gpuMode}`);
  if (opts.capsets.length === 0) opts.capsets = defaultCapsets(opts.gpuMode);
  if (opts.printCapabilities) return opts; // QEMU's convention: ignore other options
  if (opts.socketPath !== undefined && opts.fd !== undefined) throw new Error('--socket-path and --fd are mutually exclusive');
  if (opts.socketPath === undefined && opts.fd === undefined) throw new Error('one of --socket-path or --fd is required');
  if (opts.socketPath === '') throw new Error('--socket-path: empty path');
  if (opts.fd !== undefined && (!Number.isInteger(opts.fd) || opts.fd < 0)) throw new Error(`--fd: "${opts.fd}" is not a file descriptor`);
  if (!Number.isInteger(opts.maxContexts) || opts.maxContexts < 1 || opts.maxContexts > MAX_CONTEXTS_LIMIT) {
    throw new Error(`--max-contexts: "${parsed['max-contexts']}" is not a whole number from 1 to ${MAX_CONTEXTS_LIMIT}`);
  }
  const allowed = capsetsOf(opts.gpuMode);
  for (const c of opts.capsets) {
    if (!allowed.includes(c)) {
      const where = capsetRow(c) ? ` in gpu-mode ${opts.gpuMode}` : '';
      throw new Error(`--capset: "${c}" is not available${where} (available: ${allowed.join(', ')})`);
    }
  }
  if (new Set(opts.capsets).size !== opts.capsets.length) throw new Error(`--capset: "${opts.capsets.join(',')}" names a capset twice`);
  if (opts.capsets.includes('cross-domain') && opts.waylandSocket === '') {
    throw new Error('--capset cross-domain needs a Wayland socket: set --wayland-socket PATH (or XDG_RUNTIME_DIR)');
  }
  return opts;
}

/** Init flags from vhost-device-gpu's --use-* flags; THREAD_SYNC always (the component needs it). */
function virglFlags(egl: boolean | undefined, surfaceless: boolean | undefined, gles: boolean, glx: boolean): number {
  if (glx && egl) throw new Error('--use-glx and --use-egl are mutually exclusive');
  let f = THREAD_SYNC;
  if (glx) f |= USE_GLX;
  else {
    f |= USE_EGL;
    if (surfaceless !== false) f |= USE_SURFACELESS;
  }
  if (gles) f |= USE_GLES;
  return f;
}

/** QEMU's --print-capabilities JSON: only what really works (virgl only if virglrenderer started here). */
export function capabilities(virglWorks: boolean): { type: 'gpu'; features: string[] } {
  return { type: 'gpu', features: virglWorks ? ['virgl', 'render-node'] : [] };
}
