/**
 * virglrenderer runs in a render server child process of the daemon. These tests crash it (a
 * SIGSEGV, what a library bug on a hostile stream does) and check that the daemon lives on, the
 * commands in flight are answered with errors, a new server is started, and the guest's ids
 * work again: a 2D console resource shows its next upload, a new context renders.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';
import { readFileSync } from 'node:fs';
import { DisplayMsg, GpuResp } from '../frontend/index.js';
import { ramRegions } from '../frontend/vhost-user-start.js';
import { useDaemon } from './daemon-fixture.js';
import { clear, tex2dCreate, B8G8R8A8, Y_0_TOP } from '../unit/virgl-helpers.js';

const MiB = 1024 * 1024;
const W = 32, H = 16;
const box = (w: number, h: number) => ({ x: 0, y: 0, z: 0, w, h, d: 1 });

/** Pids of the daemon's render servers (its child processes titled vhost-gpu-virgl). */
function renderServers(daemonPid: number): number[] {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-P', String(daemonPid), '-x', 'vhost-gpu-virgl'], { encoding: 'utf8' });
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return out.split('\n').filter(Boolean).map(Number);
}

async function until<T>(what: string, fn: () => Promise<T | null> | T | null, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('virgl render server crash', () => {
  const d = useDaemon('virgl-crash', ['--gpu-mode', 'virglrenderer'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });

  it('survives a SIGSEGV of the render server, restarts it and serves the same ids again', async () => {
    const daemon = d.backend.proc.pid!;
    const first = await until('the render server', () => renderServers(daemon)[0] ?? null);
    // A console-like 2D resource on scanout 0, and a 3D context with a texture.
    const CON = 20;
    expect((await d.s.driver.resourceCreate2d(CON, B8G8R8A8, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.attachBacking(CON)).type).toBe(GpuResp.OK_NODATA);
    d.s.driver.fillPixels(CON, () => 0xff0000ff);
    expect((await d.s.driver.transferToHost2d(CON, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.setScanout(0, CON, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceFlush(CON, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    await d.s.display.waitFor(DisplayMsg.UPDATE);
    expect(d.s.display.pixel(0, 1, 1) & 0xffffff).toBe(0x0000ff);
    expect((await d.s.driver.ctxCreate(1, { name: 'victim' })).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceCreate3d(tex2dCreate(10, W, H, Y_0_TOP))).type).toBe(GpuResp.OK_NODATA);
    const att = await d.s.driver.attachBacking(10, W * H * 4);
    expect((await d.s.driver.ctxAttach(1, 10)).type).toBe(GpuResp.OK_NODATA);

    process.kill(first, 'SIGSEGV');
    await until('the crash to be noticed', () => (/virglrenderer lost: .*killed by SIGSEGV/.test(d.backend.stderr()) ? true : null));
    const second = await until('a new render server', () => renderServers(daemon).find((p) => p !== first) ?? null);
    expect(second).not.toBe(first);
    expect(d.backend.running).toBe(true);
    await until('the restart log line', () => (/render server restarted/.test(d.backend.stderr()) ? true : null));

    // The same ids work on the new server: the console's next upload is shown...
    d.s.driver.fillPixels(CON, () => 0xff00ff00);
    expect((await d.s.driver.transferToHost2d(CON, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceFlush(CON, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    await until('the new frame', () => ((d.s.display.pixel(0, 1, 1) & 0xffffff) === 0x00ff00 ? true : null));
    // ...and context 1 with texture 10 (attached again) renders.
    expect((await d.s.driver.submit3d(1, clear(10, [1, 0, 0, 1]))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.transferFromHost3d({ resourceId: 10, box: box(W, H), stride: W * 4 }, { ctxId: 1, fenceId: 7 })).type).toBe(GpuResp.OK_NODATA);
    expect([...att.backing.read(0, 4)]).toEqual([0, 0, 255, 255]); // BGRA red
    expect((await d.s.driver.ctxCreate(2)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxDestroy(2)).type).toBe(GpuResp.OK_NODATA);
    expect(d.backend.running).toBe(true);
  });

  it('answers the commands in flight when the server dies with errors, never OK, and never hangs', async () => {
    const daemon = d.backend.proc.pid!;
    const pid = await until('the render server', () => renderServers(daemon)[0] ?? null);
    const BIG = 30, S = 1024;
    expect((await d.s.driver.resourceCreate3d(tex2dCreate(BIG, S, S, Y_0_TOP))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, BIG)).type).toBe(GpuResp.OK_NODATA);
    const inFlight = Array.from({ length: 32 }, (_, i) => d.s.driver.submit3d(1, clear(BIG, [i / 32, 0, 1, 1]), { fenceId: 100 + i, timeoutMs: 10_000 }));
    process.kill(pid, 'SIGSEGV');
    const rs = await Promise.all(inFlight);
    // Fences signal in order: what finished before the crash is OK, everything after it an error.
    const types = rs.map((r) => r.type);
    const firstError = types.indexOf(GpuResp.ERR_UNSPEC);
    expect(firstError, 'the last of 32 1024x1024 clears cannot have finished before the kill').toBeGreaterThanOrEqual(0);
    expect(types.slice(0, firstError).every((t) => t === GpuResp.OK_NODATA)).toBe(true);
    expect(types.slice(firstError).every((t) => t === GpuResp.ERR_UNSPEC)).toBe(true);
    await until('a new render server', () => renderServers(daemon).find((p) => p !== pid) ?? null);
    await until('the context to work again', async () => ((await d.s.driver.submit3d(1, clear(BIG, [0, 1, 0, 1]), { fenceId: 200 })).type === GpuResp.OK_NODATA ? true : null));
    expect(d.backend.running).toBe(true);
  });
});

describe('virgl render server and guest memory', () => {
  const d = useDaemon('virgl-shares', ['--gpu-mode', 'virglrenderer'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });

  it('runs under its seccomp filter once serving, rendering as before', async () => {
    const server = await until('the render server', () => renderServers(d.backend.proc.pid!)[0] ?? null);
    const status = readFileSync(`/proc/${server}/status`, 'utf8');
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m); // SECCOMP_MODE_FILTER
    // Every thread, not only the one that installed it (TSYNC).
    const { readdirSync } = await import('node:fs');
    for (const tid of readdirSync(`/proc/${server}/task`)) {
      expect(readFileSync(`/proc/${server}/task/${tid}/status`, 'utf8'), `thread ${tid}`).toMatch(/^Seccomp:\s+2$/m);
    }
    expect(d.backend.stderr()).not.toMatch(/seccomp filter not installed/);
  });

  it('maps each memory table once: old tables are unmapped once the backings moved to the new one', async () => {
    const server = await until('the render server', () => renderServers(d.backend.proc.pid!)[0] ?? null);
    const memfdMaps = () => readFileSync(`/proc/${server}/maps`, 'utf8').split('\n').filter((l) => l.includes('/memfd:') && !l.includes('virgl-channel')).length;
    expect((await d.s.driver.ctxCreate(1)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceCreate3d(tex2dCreate(10, W, H, Y_0_TOP))).type).toBe(GpuResp.OK_NODATA);
    const att = await d.s.driver.attachBacking(10, W * H * 4);
    expect((await d.s.driver.ctxAttach(1, 10)).type).toBe(GpuResp.OK_NODATA);
    const once = memfdMaps();
    expect(once).toBeGreaterThan(0);
    for (let i = 0; i < 30; i++) await d.s.frontend.setMemTable(ramRegions(d.s.ram));
    expect((await d.s.driver.submit3d(1, clear(10, [0, 1, 0, 1]))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.transferFromHost3d({ resourceId: 10, box: box(W, H), stride: W * 4 }, { ctxId: 1, fenceId: 3 })).type).toBe(GpuResp.OK_NODATA);
    expect([...att.backing.read(0, 4)]).toEqual([0, 255, 0, 255]);
    expect(memfdMaps()).toBe(once);
  });
});

describe('virgl render server memory limit', () => {
  const d = useDaemon('virgl-memory', ['--gpu-mode', 'virglrenderer', '--max-renderer-memory', '300M', '--max-host-memory', '2G'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });

  it('restarts a server that grows past --max-renderer-memory; the daemon stays small and alive', async () => {
    const daemon = d.backend.proc.pid!;
    const first = await until('the render server', () => renderServers(daemon)[0] ?? null);
    expect((await d.s.driver.ctxCreate(1)).type).toBe(GpuResp.OK_NODATA);
    // 2048x2048 BGRA textures, 16 MiB each once cleared: 24 of them are past 300 MiB.
    const S = 2048;
    const answers: number[] = [];
    for (let i = 0; i < 24 && renderServers(daemon).includes(first); i++) {
      answers.push((await d.s.driver.resourceCreate3d(tex2dCreate(100 + i, S, S, Y_0_TOP))).type);
      answers.push((await d.s.driver.ctxAttach(1, 100 + i)).type);
      answers.push((await d.s.driver.submit3d(1, clear(100 + i, [1, 1, 1, 1]), { fenceId: 1000 + i, timeoutMs: 10_000 })).type);
    }
    await until('the kill', () => (/virglrenderer lost: .*used \d+ MiB, the limit is 300 MiB \(--max-renderer-memory\)/.test(d.backend.stderr()) ? true : null));
    await until('a new render server', () => renderServers(daemon).find((p) => p !== first) ?? null);
    expect(d.backend.running).toBe(true);
    // After the kill: errors (a create the dead server never did is forgotten, so its attach names no resource).
    for (const t of answers) expect([GpuResp.OK_NODATA, GpuResp.ERR_UNSPEC, GpuResp.ERR_INVALID_RESOURCE_ID]).toContain(t);
    expect(answers).toContain(GpuResp.ERR_UNSPEC);
  });
});

describe('virgl render server lifetime', () => {
  it('ends when the daemon is killed: no orphan keeps the GL state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-virgl-orphan-'));
    const backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', '--gpu-mode', 'virglrenderer'], join(dir, 'gpu.sock'));
    try {
      const server = await until('the render server', () => renderServers(backend.proc.pid!)[0] ?? null);
      backend.proc.kill('SIGKILL');
      await backend.exited;
      const alive = () => {
        try {
          process.kill(server, 0);
          return true;
        } catch {
          return false;
        }
      };
      await until('the render server to exit', () => (alive() ? null : true), 10_000);
    } finally {
      await backend.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
