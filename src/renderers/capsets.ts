/**
 * The capset table: every context type the daemon knows, by virtio-gpu capset id. It drives
 * --capset (names and which gpu-mode offers them), GET_CAPSET_INFO / GET_CAPSET (through the
 * capsets the device is given) and the context registry's choice of runner. Adding a context type
 * is one folder under renderers/ and one row here.
 */
import { packagePath } from '../package-path.js';
import type { WorkerContextType } from './worker-context/host.js';
import { capabilities as crossDomainCapabilities } from './cross-domain/protocol.js';

export type GpuMode = '2d' | 'virglrenderer';

interface CapsetRowBase {
  readonly name: string;
  readonly id: number;
  /** gpu-modes in which the capset can be offered. */
  readonly modes: readonly GpuMode[];
}

/** Served by virglrenderer (its render server process owns every virgl context; capset data comes from the library). */
interface RendererRow extends CapsetRowBase {
  readonly runner: 'virgl';
}

/** One context per worker thread, from the module at `module` (a ContextFactory). */
interface WorkerRow extends CapsetRowBase {
  readonly runner: 'worker';
  readonly module: string;
  readonly maxVersion: number;
  /** The capset bytes GET_CAPSET returns. */
  readonly data: () => Uint8Array;
  /** Options of this context type from the daemon's settings. */
  readonly options: (s: CapsetSettings) => Record<string, string>;
}

export type CapsetRow = RendererRow | WorkerRow;

/** Daemon settings a context type may need. */
export interface CapsetSettings {
  readonly waylandSocket: string;
}

const ALL_MODES: readonly GpuMode[] = ['2d', 'virglrenderer'];

export const CAPSETS: readonly CapsetRow[] = [
  { name: 'virgl', id: 1, modes: ['virglrenderer'], runner: 'virgl' },
  { name: 'virgl2', id: 2, modes: ['virglrenderer'], runner: 'virgl' },
  {
    name: 'cross-domain', id: 5, modes: ALL_MODES, runner: 'worker',
    module: 'dist/src/renderers/cross-domain/context.js', maxVersion: 0, data: crossDomainCapabilities,
    options: (s) => ({ waylandSocket: s.waylandSocket }),
  },
];

export function capsetRow(name: string): CapsetRow | undefined {
  return CAPSETS.find((r) => r.name === name);
}

/** Capset names offered in a gpu-mode when --capset is not given. */
export function defaultCapsets(mode: GpuMode): string[] {
  return mode === 'virglrenderer' ? ['virgl', 'virgl2'] : [];
}

/** The worker context type of a worker row, with its options resolved. */
export function workerType(row: WorkerRow, s: CapsetSettings): WorkerContextType {
  return { name: row.name, module: packagePath(row.module), options: row.options(s) };
}

/**
 * libwayland's rule for the compositor socket: $WAYLAND_DISPLAY (default wayland-0), absolute as
 * is, else inside $XDG_RUNTIME_DIR. Null when it cannot be formed (no XDG_RUNTIME_DIR).
 */
export function defaultWaylandSocket(env: NodeJS.ProcessEnv): string | null {
  const display = env.WAYLAND_DISPLAY || 'wayland-0';
  if (display.startsWith('/')) return display;
  return env.XDG_RUNTIME_DIR ? `${env.XDG_RUNTIME_DIR}/${display}` : null;
}
