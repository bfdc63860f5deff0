/**
 * Command-line options. Names follow QEMU's backend conventions (docs/interop/vhost-user.rst,
 * "Backend program conventions") and rust-vmm's vhost-device-gpu where they overlap.
 */
import yargs from 'yargs';
import { LOG_LEVELS, type LogLevel } from '../log.js';

export const GPU_MODES = ['2d'] as const;
export type GpuMode = (typeof GPU_MODES)[number];

export interface Options {
  socketPath?: string;
  fd?: number;
  printCapabilities: boolean;
  gpuMode: GpuMode;
  capsets: string[];
  maxHostMemory: number;
  logLevel: LogLevel;
}

/** Capset names per GPU mode; 2D has none. */
export const CAPSETS_BY_MODE: Record<GpuMode, readonly string[]> = { '2d': [] };

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "1073741824", "512M", "1G", "1GiB" -> bytes; throws on anything else. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`--max-host-memory: cannot parse size "${text}" (e.g. 1G, 512M, 1073741824)`);
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  if (bytes < 1 << 20) throw new Error(`--max-host-memory: ${text} is below the 1 MiB minimum`);
  if (!Number.isSafeInteger(bytes)) throw new Error(`--max-host-memory: ${text} is too large`);
  return bytes;
}

export function parseOptions(argv: string[], version: string): Options {
  const parsed = yargs(argv)
    .scriptName('vhost-gpu')
    .usage('$0 [options]\n\nvirtio-gpu device backend for QEMU\'s -device vhost-user-gpu-pci.')
    .option('socket-path', { alias: 's', type: 'string', describe: 'Listen for the vhost-user front-end on this UNIX socket' })
    .option('fd', { type: 'number', describe: 'Use this inherited, already connected vhost-user socket' })
    .option('print-capabilities', { type: 'boolean', default: false, describe: 'Print the backend capabilities as JSON and exit' })
    .option('gpu-mode', { alias: 'g', type: 'string', choices: GPU_MODES as unknown as string[], default: '2d', describe: 'Renderer' })
    .option('capset', { alias: 'c', type: 'string', describe: 'Comma-separated capsets to offer (none exist in 2d mode)' })
    .option('max-host-memory', { type: 'string', default: '1G', describe: 'Cap on host memory for guest resources (e.g. 512M, 2G)' })
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
    gpuMode: parsed['gpu-mode'] as GpuMode,
    capsets: parsed.capset ? String(parsed.capset).split(',').map((s) => s.trim()).filter(Boolean) : [],
    maxHostMemory: parseSize(String(parsed['max-host-memory'])),
    logLevel: parsed['log-level'] as LogLevel,
  };
  if (opts.printCapabilities) return opts; // QEMU's convention: ignore other options
  if (opts.socketPath !== undefined && opts.fd !== undefined) throw new Error('--socket-path and --fd are mutually exclusive');
  if (opts.socketPath === undefined && opts.fd === undefined) throw new Error('one of --socket-path or --fd is required');
  if (opts.socketPath === '') throw new Error('--socket-path: empty path');
  if (opts.fd !== undefined && (!Number.isInteger(opts.fd) || opts.fd < 0)) throw new Error(`--fd: "${opts.fd}" is not a file descriptor`);
  const allowed = CAPSETS_BY_MODE[opts.gpuMode];
  for (const c of opts.capsets) {
    if (!allowed.includes(c)) {
      throw new Error(`--capset: "${c}" is not available in gpu-mode ${opts.gpuMode} (available: ${allowed.join(', ') || 'none'})`);
    }
  }
  return opts;
}

/** QEMU's --print-capabilities JSON: only what really works. */
export function capabilities(): { type: 'gpu'; features: string[] } {
  return { type: 'gpu', features: [] };
}
