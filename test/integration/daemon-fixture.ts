/**
 * One vhost-gpu daemon (and optionally one connected test-frontend session) per describe block:
 * started in beforeAll in its own temporary directory, stopped and removed in afterAll.
 */
import { afterAll, beforeAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, connectFrontend } from '../frontend/index.js';
import type { BackendProcess, ConnectOptions, FrontendSession } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';

export interface DaemonFixture {
  readonly backend: BackendProcess;
  /** The session connected in beforeAll (only with `connect`). */
  readonly s: FrontendSession;
  /** Close the session and connect a new one (what a front-end does after a disconnect). */
  reconnect(opts: ConnectOptions): Promise<FrontendSession>;
}

/** `args` go to bin/vhost-gpu.js after `--socket-path`; with `connect`, a session is brought up with these options. */
export function useDaemon(name: string, args: readonly string[], connect?: ConnectOptions): DaemonFixture {
  let dir = '', backend: BackendProcess | null = null, s: FrontendSession | null = null;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `vhost-gpu-${name}-`));
    backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', ...args], join(dir, 'gpu.sock'));
    if (connect) s = await connectFrontend(backend, connect);
  });
  afterAll(async () => {
    s?.close();
    await backend?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const need = <T>(v: T | null, what: string): T => {
    if (v === null) throw new Error(`useDaemon(${name}): no ${what} (outside the describe block's tests?)`);
    return v;
  };
  return {
    get backend() { return need(backend, 'daemon'); },
    get s() { return need(s, 'session'); },
    async reconnect(opts) {
      s?.close();
      s = null;
      s = await connectFrontend(need(backend, 'daemon'), opts);
      return s;
    },
  };
}
