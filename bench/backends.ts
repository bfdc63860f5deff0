/**
 * Back-ends under test: a command line with `{socket}`, started fresh (one process per scenario
 * and repeat: QEMU's C back-end serves one connection only, and a fresh process is fairer to ours
 * too), connected through the test frontend; plus the in-process null device.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBackend, connectFrontend } from '../test/frontend/index.js';
import type { ConnectOptions } from '../test/frontend/index.js';
import { packagePath } from '../src/package-path.js';
import { startNullDevice } from './null-device.js';
import { DISPLAYS, RAM_SIZE } from './scenarios.js';
import type { BenchSession } from './scenarios.js';

export const REFERENCE_BIN = '/usr/lib/qemu/vhost-user-gpu';
export const NULL_NAME = 'null device';

export interface BackendSpec {
  name: string;
  /** argv; null for the in-process null device. */
  argv: string[] | null;
}

/** A live session plus what the runner reads from the back-end process. */
export interface Live {
  session: BenchSession;
  pid: number | null;
  /** null while the back-end is healthy, else what went wrong. */
  health(): string | null;
  /** Disconnect and stop; resolves with a warning if the back-end did not end cleanly. */
  close(): Promise<string | null>;
}

export function defaultBackends(): BackendSpec[] {
  return [
    { name: 'ours', argv: [process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path', '{socket}'] },
    { name: 'reference', argv: [REFERENCE_BIN, '--socket-path', '{socket}'] },
  ];
}

/** Split a command line like a shell would for simple cases: whitespace, '…' and "…" quoting, \ escapes. */
export function splitCommand(cmd: string): string[] {
  const out: string[] = [];
  let cur = '', has = false, quote: '"' | "'" | null = null;
  for (let i = 0; i < cmd.length; i++) {
    const c = cmd[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < cmd.length) cur += cmd[++i];
      else cur += c;
    } else if (c === '"' || c === "'") { quote = c; has = true; }
    else if (c === '\\' && i + 1 < cmd.length) { cur += cmd[++i]; has = true; }
    else if (/\s/.test(c)) { if (has || cur) out.push(cur); cur = ''; has = false; }
    else cur += c;
  }
  if (quote) throw new Error(`unterminated ${quote} in command: ${cmd}`);
  if (has || cur) out.push(cur);
  if (out.length === 0) throw new Error('empty back-end command');
  if (!out.some((a) => a.includes('{socket}'))) throw new Error(`back-end command has no {socket}: ${cmd}`);
  // `node …` means this node, so a bench run under another PATH compares the same runtime.
  if (out[0] === 'node') out[0] = process.execPath;
  return out;
}

/** The test frontend's setup; spinUs: the driver's busy-polling of the used ring (0: it sleeps at once). */
export function connectOptions(spinUs: number): ConnectOptions {
  return {
    ram: { size: RAM_SIZE, name: 'bench-guest-ram' },
    controlSize: 256,
    cursorSize: 16,
    // No surface compositing or event objects: the display side only counts (its copy would be
    // the driver's cost, not the back-end's).
    display: { displays: DISPLAYS, surfaces: false, recordEvents: false },
    driver: { timeoutMs: 10_000, spinUs },
  };
}

let seq = 0;

export async function startLive(spec: BackendSpec, dir: string, echoStderr: boolean, spinUs: number): Promise<Live> {
  const opts = connectOptions(spinUs);
  if (!spec.argv) {
    const dev = await startNullDevice({
      ramSize: RAM_SIZE, controlSize: opts.controlSize!, cursorSize: opts.cursorSize!,
      display: opts.display!, driver: opts.driver!,
    });
    return {
      session: dev.session, pid: null,
      health: () => (dev.errors.length ? dev.errors.join('; ') : null),
      async close() { await dev.close(); return dev.errors.length ? dev.errors.join('; ') : null; },
    };
  }
  const backend = await startBackend(spec.argv, join(dir, `b${seq++}.sock`), { timeoutMs: 15_000, echoStderr });
  let session;
  try {
    session = await connectFrontend(backend, opts);
  } catch (e) {
    const exit = await backend.stop();
    throw new Error(`${(e as Error).message}\n--- ${spec.name} stderr ---\n${tail(exit.stderr)}`);
  }
  const s = session;
  return {
    session: s,
    pid: backend.proc.pid ?? null,
    health: () => (backend.running ? null : `${spec.name} exited (code ${backend.exit?.code}, signal ${backend.exit?.signal})\n${tail(backend.stderr())}`),
    async close() {
      s.close();
      const exit = await backend.stop();
      // The C back-end exits 0 when the connection drops; ours exits 0 on SIGTERM.
      if ((exit.code !== null && exit.code !== 0) || (exit.signal !== null && exit.signal !== 'SIGTERM')) {
        return `${spec.name} ended with code ${exit.code}, signal ${exit.signal}\n${tail(exit.stderr)}`;
      }
      return null;
    },
  };
}

function tail(s: string, lines = 15): string {
  return s.trimEnd().split('\n').slice(-lines).join('\n');
}

/** user + system CPU of a whole process (all threads), ms; NaN if unreadable. */
export function processCpuMs(pid: number | null): number {
  if (pid === null) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after the comm field.
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** VmHWM (peak resident set) of a process, KiB; NaN if unreadable. */
export function peakRssKiB(pid: number | null): number {
  if (pid === null) return NaN;
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** sysconf(_SC_CLK_TCK): 100 on every Linux architecture Node supports. */
const CLK_TCK = 100;
