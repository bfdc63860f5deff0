/**
 * One vhost-gpu daemon (and optionally one connected test-frontend session) per describe block:
 * started in beforeAll in its own temporary directory, stopped and removed in afterAll.
 */
import { afterAll, beforeAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, connectFrontend } from '../frontend/index.js';
import type { BackendExit, BackendProcess, ConnectOptions, FrontendSession } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';

export interface DaemonFixture {
  readonly dir: string;
  readonly backend: BackendProcess;
  /** The session connected in beforeAll (only with `connect`). */
  readonly s: FrontendSession;
  /** The daemon's exit, once afterAll stopped it. */
  readonly exit: BackendExit | null;
  /** Close the session and connect a new one (what a front-end does after a disconnect). */
  reconnect(opts: ConnectOptions): Promise<FrontendSession>;
}

/**
 * `args` go to bin/vhost-gpu.js after `--socket-path`; `connect` (a function when it depends on
 * something else set up first) brings a session up with these options.
 */
export function useDaemon(name: string, args: readonly string[], connect?: ConnectOptions | (() => ConnectOptions)): DaemonFixture {
  let dir = '', backend: BackendProcess | null = null, s: FrontendSession | null = null, exit: BackendExit | null = null;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `vhost-gpu-${name}-`));
    backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', ...args], join(dir, 'gpu.sock'));
    if (connect) s = await connectFrontend(backend, typeof connect === 'function' ? connect() : connect);
  });
  afterAll(async () => {
    s?.close();
    exit = (await backend?.stop()) ?? null;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const need = <T>(v: T | null, what: string): T => {
    if (v === null) throw new Error(`useDaemon(${name}): no ${what} (outside the describe block's tests?)`);
    return v;
  };
  return {
    get dir() { return dir; },
    get backend() { return need(backend, 'daemon'); },
    get s() { return need(s, 'session'); },
    get exit() { return exit; },
    async reconnect(opts) {
      s?.close();
      s = null;
      s = await connectFrontend(need(backend, 'daemon'), opts);
      return s;
    },
  };
}
