/**
 * The daemon's lifecycle under load (issue #9 §5): 1,000 front-ends coming and going (before,
 * during and after the handshake, mid-message, mid-frame) leave its fd count flat and it still
 * answers; SIGTERM with 1080p frames in flight exits 0 and removes the socket; in --fd mode (as
 * libvirt starts it) it exits 0 when the front-end closes the socket, whatever it was doing.
 * `npm run bench:lifecycle` runs the same cycles and prints RSS.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startBackend, connectFrontend, BackendProcess, runCycle, cyclePlan, seededRandom, fdCount, fdTargets, queueFullFrames,
  DisplayMsg, FRAME_W, FRAME_H, CYCLE_KINDS,
} from '../frontend/index.js';
import type { FrontendSession, ConnectOptions } from '../frontend/index.js';
import { native } from '../../src/native.js';
import { packagePath } from '../../src/package-path.js';

const BIN = packagePath('bin/vhost-gpu.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-lifecycle-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function listening(gpuMode = '2d'): Promise<BackendProcess> {
  const b = await startBackend([process.execPath, BIN, '--socket-path={socket}', '--log-level=warn', `--gpu-mode=${gpuMode}`], join(tempDir(), 'gpu.sock'));
  cleanups.push(async () => { await b.stop(); });
  return b;
}

/** A daemon in --fd mode on one end of a socketpair; the other end is its front-end. */
function fdMode(): BackendProcess {
  const pair = native().socketPair();
  if (typeof pair === 'number') throw new Error(`socketpair: ${pair}`);
  const [ours, theirs] = pair;
  const proc = spawn(process.execPath, [BIN, '--fd', '3', '--log-level=warn'], { stdio: ['ignore', 'ignore', 'pipe', theirs] });
  native().close(theirs);
  const b = new BackendProcess(proc, '', false);
  b.setConnection(ours);
  cleanups.push(async () => { await b.stop(); });
  return b;
}

const FRAME_SESSION: ConnectOptions = {
  ram: { size: 16 << 20 },
  controlSize: 256,
  display: { displays: [{ width: FRAME_W, height: FRAME_H, enabled: true }], surfaces: false, recordEvents: false },
};

/**
 * A session with a 1080p scanout and `frames` full frames queued, once the first frame's UPDATE
 * arrived and while the last is not done.
 */
async function framesInFlight(target: string | BackendProcess, frames: number): Promise<FrontendSession> {
  const s = await connectFrontend(target, FRAME_SESSION);
  cleanups.push(() => s.close());
  const before = s.display.count(DisplayMsg.UPDATE);
  const { done } = await queueFullFrames(s, frames, 20_000);
  let finished = false;
  done.then(() => { finished = true; }, () => {}); // the daemon goes away before the batch completes
  for (let i = 0; i < 1000 && s.display.count(DisplayMsg.UPDATE) === before; i++) await sleep(1);
  expect(s.display.count(DisplayMsg.UPDATE)).toBeGreaterThan(before);
  expect(finished, 'all frames were done before the daemon could be interrupted').toBe(false);
  return s;
}

/** The daemon's exit, or null if it is still running after ms. */
async function exitWithin(b: BackendProcess, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([b.exited, new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), ms); })]);
  clearTimeout(timer);
  return r;
}

/** The daemon answers GET_DISPLAY_INFO on a new session, which is then stopped and closed. */
async function answers(socketPath: string): Promise<void> {
  const s = await connectFrontend(socketPath, { ram: { size: 4 << 20 }, controlSize: 64 });
  try {
    expect((await s.driver.getDisplayInfo({ timeoutMs: 5000 })).ok).toBe(true);
    await s.frontend.stop([s.control, s.cursor]);
  } finally {
    s.close();
  }
}

/** The daemon's fd count once it stopped changing (it ends a session on its own time). */
async function settledFds(pid: number, atMost: number): Promise<number> {
  let n = fdCount(pid);
  for (let i = 0; i < 100 && n > atMost; i++) {
    await sleep(20);
    n = fdCount(pid);
  }
  return n;
}

describe('connect/disconnect cycles', () => {
  it('1,000 front-ends of every kind leave the fd count flat, and the daemon still answers', async () => {
    const b = await listening();
    const pid = b.proc.pid!;
    native().close(b.takeConnection()!);
    await answers(b.socketPath);
    const before = await settledFds(pid, 0);
    const rng = seededRandom(9);
    const plan = cyclePlan(1000, rng);
    for (const k of CYCLE_KINDS) expect(plan).toContain(k);
    for (let i = 0; i < plan.length; i++) {
      try {
        await runCycle(plan[i]!, b.socketPath, rng);
      } catch (e) {
        throw new Error(`cycle ${i} (${plan[i]}): ${(e as Error).message}\n--- daemon stderr ---\n${b.stderr().slice(-3000)}`);
      }
    }
    await answers(b.socketPath);
    // A few fds of slack: a session may be in its last turn of the event loop.
    const after = await settledFds(pid, before);
    expect(after, `fds before ${before}, after: ${fdTargets(pid).join(' ')}`).toBeLessThanOrEqual(before + 2);
    expect(b.running).toBe(true);
    // Every hang-up was an ordinary end of a session, never an exception.
    expect(b.stderr()).not.toMatch(/\n\s+at /);
  }, 120_000);
});

describe('signals and --fd', () => {
  it.each(['2d', 'virglrenderer'])('exits 0 on SIGTERM with 1080p frames in flight, removing the socket, without hanging (--gpu-mode %s)', async (mode) => {
    for (const frames of [4, 32]) {
      const b = await listening(mode);
      await framesInFlight(b, frames);
      b.proc.kill('SIGTERM');
      const exit = await exitWithin(b, 5000);
      expect(exit, 'the daemon did not exit within 5 s of SIGTERM').not.toBeNull();
      expect(exit).toMatchObject({ code: 0, signal: null });
      expect(existsSync(b.socketPath)).toBe(false);
    }
  });

  it('exits 0 on SIGTERM between sessions and during a half-written message', async () => {
    const b = await listening();
    native().close(b.takeConnection()!);
    const fd = native().connectUnix(b.socketPath);
    expect(native().sendMsg(fd, [new Uint8Array([1, 0, 0, 0, 1, 0])], null)).toBe(6);
    await sleep(50);
    b.proc.kill('SIGTERM');
    expect(await exitWithin(b, 5000)).toMatchObject({ code: 0, signal: null });
    native().close(fd);
    expect(existsSync(b.socketPath)).toBe(false);
  });

  it('--fd: exits 0 when the front-end closes the socket with 1080p frames in flight', async () => {
    const b = fdMode();
    const s = await framesInFlight(b, 32);
    s.close();
    const exit = await exitWithin(b, 5000);
    expect(exit, 'the daemon did not exit within 5 s of the hang-up').not.toBeNull();
    expect(exit).toMatchObject({ code: 0, signal: null });
  });

  it('--fd: exits 0 when the front-end closes the socket in the middle of a message, and on SIGTERM', async () => {
    const b = fdMode();
    const fd = b.takeConnection()!;
    expect(native().sendMsg(fd, [new Uint8Array([5, 0, 0, 0, 1, 0, 0, 0, 40, 0, 0, 0, 1, 0])], null)).toBe(14);
    await sleep(50);
    native().close(fd);
    expect(await exitWithin(b, 5000)).toMatchObject({ code: 0, signal: null });

    const c = fdMode();
    await framesInFlight(c, 8);
    c.proc.kill('SIGTERM');
    expect(await exitWithin(c, 5000)).toMatchObject({ code: 0, signal: null });
  });
});
