/**
 * Spawn a vhost-user-gpu back-end process and wait until it accepts a connection.
 *
 * QEMU's C back-end accepts exactly one connection and then closes its listening socket, so the
 * readiness probe cannot be a throwaway connection: the connection that proves readiness is kept
 * and handed to connectFrontend().
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { native } from '../../src/native.js';

export interface BackendExit { code: number | null; signal: NodeJS.Signals | null; stderr: string }

export interface StartBackendOptions {
  /** How long to wait for the socket. Default 10000 ms. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Mirror the back-end's stderr to ours as it arrives. */
  echoStderr?: boolean;
}

const MAX_CAPTURE = 1 << 20;
const ECONNREFUSED = 111;
const ENOENT = 2;

export class BackendProcess {
  readonly exited: Promise<BackendExit>;
  exit: BackendExit | null = null;
  private err = '';
  private out = '';
  private connFd: number | null = null;

  constructor(readonly proc: ChildProcess, readonly socketPath: string, echo: boolean) {
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (this.err.length < MAX_CAPTURE) this.err += d;
      if (echo) process.stderr.write(d);
    });
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => { if (this.out.length < MAX_CAPTURE) this.out += d; });
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        // Let the pipes drain so the last stderr lines are included.
        setImmediate(() => resolve((this.exit = { code, signal, stderr: this.err })));
      });
      proc.once('error', (e) => resolve((this.exit = { code: null, signal: null, stderr: `${this.err}\nspawn failed: ${e.message}` })));
    });
  }

  get running(): boolean { return this.exit === null; }
  stderr(): string { return this.err; }
  stdout(): string { return this.out; }

  /** The connected socket made while waiting for readiness (once; null afterwards). */
  takeConnection(): number | null {
    const fd = this.connFd;
    this.connFd = null;
    return fd;
  }

  /** @internal */
  setConnection(fd: number): void { this.connFd = fd; }

  /** SIGTERM, then SIGKILL after timeoutMs; resolves with the exit status and captured stderr. */
  async stop(timeoutMs = 5000): Promise<BackendExit> {
    const fd = this.takeConnection();
    if (fd !== null) native().close(fd);
    if (this.exit) return this.exit;
    this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => { this.proc.kill('SIGKILL'); resolve(); }, timeoutMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }
}

/**
 * Spawn `cmd` (each `{socket}` in it replaced by socketPath), wait for the socket file to appear
 * (inotify via fs.watch, no polling) and connect to it.
 */
export async function startBackend(cmd: readonly string[], socketPath: string, opts: StartBackendOptions = {}): Promise<BackendProcess> {
  if (cmd.length === 0) throw new TypeError('cmd must name a program');
  const args = cmd.slice(1).map((a) => a.split('{socket}').join(socketPath));
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const dir = dirname(socketPath);
  const name = basename(socketPath);
  // Watch before spawning so the creation cannot slip between the check and the watch.
  let onAppear: () => void = () => {};
  const watcher = watch(dir, (_ev, file) => { if (file === null || file === name) onAppear(); });
  const proc = spawn(cmd[0]!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const backend = new BackendProcess(proc, socketPath, opts.echoStderr ?? false);
  const deadline = Date.now() + timeoutMs;
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const fail = (why: string) => {
        done = true;
        reject(new Error(`${cmd.join(' ')}: ${why}\n--- stderr ---\n${backend.stderr()}`));
      };
      let attempts = 0;
      timer = setTimeout(() => fail(`socket ${socketPath} not ready within ${timeoutMs} ms ` +
        `(${existsSync(socketPath) ? `the file exists; ${attempts} connection attempts refused` : 'no socket file'})`), timeoutMs);
      void backend.exited.then((e) => fail(`exited before accepting a connection (code ${e.code}, signal ${e.signal})`));
      let retrying = false;
      const tryConnect = (): void => {
        if (!backend.running || done) return;
        const fd = native().connectUnix(socketPath);
        if (fd >= 0) { done = true; backend.setConnection(fd); resolve(); return; }
        if (fd !== -ECONNREFUSED && fd !== -ENOENT) { fail(`connect failed: errno ${-fd}`); return; }
        // The file exists between bind() and listen(), and no directory event marks listen(): retry,
        // immediately at first, then every few ms (a loaded machine may deschedule the back-end in
        // between). Without the file, wait for the next directory event.
        if (!existsSync(socketPath) || Date.now() >= deadline) return;
        attempts++;
        retrying = true;
        const again = () => { retrying = false; tryConnect(); };
        if (attempts < 200) setImmediate(again); else setTimeout(again, Math.min(10, attempts - 199));
      };
      const onEvent = (): void => { if (!retrying) tryConnect(); };
      onAppear = onEvent;
      if (existsSync(socketPath)) tryConnect();
    });
  } catch (e) {
    await backend.stop();
    throw e;
  } finally {
    clearTimeout(timer);
    watcher.close();
  }
  return backend;
}
