/**
 * --gpu-mode virglrenderer end to end through the test frontend: our daemon on the real
 * virglrenderer (EGL surfaceless, llvmpipe here). Capsets, contexts, a texture cleared by a virgl
 * command stream, read back with a fence, fence timelines, id validation, and scanout by readback.
 */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ramRegions } from '../frontend/vhost-user-start.js';
import { DisplayMsg, GpuResp, GPU_FLAG_FENCE } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';
import { useDaemon } from './daemon-fixture.js';
import { clear, tex2dCreate, BGRA, B8G8R8A8, Y_0_TOP } from '../unit/virgl-helpers.js';

const MiB = 1024 * 1024;
const BIN = packagePath('bin/vhost-gpu.js');
const CAPSET_VIRGL = 1, CAPSET_VIRGL2 = 2;
const W = 32, H = 16;

const create3d = (id: number, w = W, h = H, flags = Y_0_TOP) => tex2dCreate(id, w, h, flags);
const box = (w: number, h: number) => ({ x: 0, y: 0, z: 0, w, h, d: 1 });

describe('--gpu-mode virglrenderer', () => {
  const d = useDaemon('virgl', ['--gpu-mode', 'virglrenderer'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true, edid: true, resourceUuid: true } });

  it('offers VIRGL and CONTEXT_INIT and two capsets', () => {
    expect(d.backend.stderr()).toMatch(/virglrenderer mode, capsets virgl,virgl2/);
    const st = d.s.started!;
    expect(st.features & (1n << 32n | 0x11n)).toBe(1n << 32n | 0x11n);
    expect(st.config!.numCapsets).toBe(2);
  });

  it('answers capset info and data for virgl and virgl2', async () => {
    const infos = [await d.s.driver.getCapsetInfo(0), await d.s.driver.getCapsetInfo(1)];
    expect(infos.map((i) => i.capsetId)).toEqual([CAPSET_VIRGL, CAPSET_VIRGL2]);
    for (const i of infos) {
      expect(i.type).toBe(GpuResp.OK_CAPSET_INFO);
      expect(i.maxSize).toBeGreaterThan(0);
      const data = await d.s.driver.getCapset(i.capsetId, i.maxVersion, i.maxSize);
      expect(data.type).toBe(GpuResp.OK_CAPSET);
      expect(data.data.length).toBe(i.maxSize);
      expect(new DataView(data.data.buffer, data.data.byteOffset).getUint32(0, true)).toBeGreaterThan(0); // max_version
    }
    expect((await d.s.driver.getCapsetInfo(2)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect((await d.s.driver.getCapset(7, 0, 64)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
  });

  it('clears a 3D texture with a command stream and reads it back with a fence', async () => {
    expect((await d.s.driver.ctxCreate(1, { name: 'test' })).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceCreate3d(create3d(10))).type).toBe(GpuResp.OK_NODATA);
    const att = await d.s.driver.attachBacking(10, W * H * 4);
    expect(att.type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, 10)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.submit3d(1, clear(10, [1, 0.5, 0, 1]))).type).toBe(GpuResp.OK_NODATA);
    const r = await d.s.driver.transferFromHost3d({ resourceId: 10, box: box(W, H), stride: W * 4 }, { ctxId: 1, fenceId: 5 });
    expect(r).toMatchObject({ type: GpuResp.OK_NODATA, fenceId: 5n });
    expect(r.flags & GPU_FLAG_FENCE).toBe(GPU_FLAG_FENCE);
    const px = att.backing.read(0, W * H * 4);
    const want = BGRA(1, 0.5, 0);
    for (const i of [0, W * H / 2, W * H - 1]) expect([...px.subarray(4 * i, 4 * i + 4)]).toEqual(want);
  });

  it('signals fences on the global and a per-context timeline in order', async () => {
    const order: string[] = [];
    const track = (name: string, p: Promise<{ type: number; fenceId: bigint; ringIdx: number }>) => p.then((r) => (order.push(name), r));
    const cmds = clear(10, [0, 0, 1, 1]);
    const all = await Promise.all([
      track('g1', d.s.driver.submit3d(1, cmds, { fenceId: 20 })),
      track('c1', d.s.driver.submit3d(1, cmds, { fenceId: 1, ringIdx: 0 })),
      track('g2', d.s.driver.transferFromHost3d({ resourceId: 10, box: box(W, H), stride: W * 4 }, { ctxId: 1, fenceId: 21 })),
      track('c2', d.s.driver.submit3d(1, cmds, { fenceId: 2, ringIdx: 0 })),
    ]);
    for (const r of all) expect(r.type).toBe(GpuResp.OK_NODATA);
    expect(all.map((r) => r.fenceId)).toEqual([20n, 1n, 21n, 2n]);
    expect(all[1].ringIdx).toBe(0);
    expect(order.indexOf('g1')).toBeLessThan(order.indexOf('g2'));
    expect(order.indexOf('c1')).toBeLessThan(order.indexOf('c2'));
  });

  it('completes a context\'s fences when another context is destroyed while they are in flight', async () => {
    // virglrenderer 0.10.4 loses the fence its sync thread waits on (or crashes) when any context
    // is destroyed meanwhile; the worker lets fences retire before it destroys a context.
    const BIG = 30, S = 1024;
    expect((await d.s.driver.resourceCreate3d(create3d(BIG, S, S))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, BIG)).type).toBe(GpuResp.OK_NODATA);
    for (let round = 0; round < 20; round++) {
      expect((await d.s.driver.ctxCreate(2)).type).toBe(GpuResp.OK_NODATA);
      const fenced = [0, 1, 2, 3].map((i) => d.s.driver.submit3d(1, clear(BIG, [i / 4, 0, 1, 1]), { fenceId: 1000 + round * 8 + 2 * i, ringIdx: 0, timeoutMs: 3000 }));
      fenced.push(d.s.driver.submit3d(1, clear(BIG, [0, 1, 0, 1]), { fenceId: 1001 + round * 8, timeoutMs: 3000 })); // global timeline
      const destroyed = d.s.driver.ctxDestroy(2, { timeoutMs: 3000 });
      const rs = await Promise.all([...fenced, destroyed]);
      for (const r of rs) expect(r.type, `round ${round}`).toBe(GpuResp.OK_NODATA);
    }
    expect(d.backend.running).toBe(true);
  });

  it('refuses unknown ids and an oversized submit with the right codes', async () => {
    expect((await d.s.driver.submit3d(99, clear(10, [0, 0, 0, 1]))).type).toBe(GpuResp.ERR_INVALID_CONTEXT_ID);
    expect((await d.s.driver.ctxAttach(1, 999)).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await d.s.driver.ctxAttach(42, 10)).type).toBe(GpuResp.ERR_INVALID_CONTEXT_ID);
    expect((await d.s.driver.ctxDestroy(42)).type).toBe(GpuResp.ERR_INVALID_CONTEXT_ID);
    expect((await d.s.driver.transferFromHost3d({ resourceId: 999, box: box(1, 1) }, { ctxId: 1 })).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await d.s.driver.resourceCreate3d(create3d(10))).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await d.s.driver.resourceCreate3d({ ...create3d(11), width: 0 })).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect((await d.s.driver.ctxCreate(1)).type).toBe(GpuResp.ERR_INVALID_CONTEXT_ID);
    expect((await d.s.driver.ctxCreate(3, { contextInit: 5 })).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    // A fenced refusal still carries its fence id (answered after the work before it).
    expect(await d.s.driver.submit3d(99, clear(10, [0, 0, 0, 1]), { fenceId: 60, ringIdx: 2 })).toMatchObject({ type: GpuResp.ERR_INVALID_CONTEXT_ID, fenceId: 60n });
    expect(await d.s.driver.ctxAttach(1, 999, { fenceId: 61 })).toMatchObject({ type: GpuResp.ERR_INVALID_RESOURCE_ID, fenceId: 61n });
    const big = new Uint8Array(4 * MiB + 4);
    expect((await d.s.driver.submit3d(1, big)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
  });

  it('shows a cleared texture on a scanout by readback', async () => {
    const id = 12;
    // A 2D resource in virgl mode is a render target too; a bottom-up 3D one is flipped on readback.
    expect((await d.s.driver.resourceCreate3d(create3d(id, W, H, 0))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, id)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.submit3d(1, clear(id, [0, 1, 0, 1]))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.setScanout(0, id, 0, 0, W, H)).type).toBe(GpuResp.OK_NODATA);
    expect(await d.s.display.waitFor(DisplayMsg.SCANOUT)).toMatchObject({ scanoutId: 0, width: W, height: H });
    expect((await d.s.driver.resourceFlush(id, 0, 0, W, H, { fenceId: 30 })).type).toBe(GpuResp.OK_NODATA);
    expect(await d.s.display.waitFor(DisplayMsg.UPDATE)).toMatchObject({ scanoutId: 0, x: 0, y: 0, width: W, height: H });
    expect(d.s.display.pixel(0, 0, 0) & 0xffffff).toBe(0x00ff00);
    expect(d.s.display.pixel(0, W - 1, H - 1) & 0xffffff).toBe(0x00ff00);
    expect((await d.s.driver.resourceCreate2d(13, B8G8R8A8, W, H)).type).toBe(GpuResp.OK_NODATA);
    const u = await d.s.driver.assignUuid(13);
    expect(u.type).toBe(GpuResp.OK_RESOURCE_UUID);
    expect((await d.s.driver.assignUuid(13)).uuid).toEqual(u.uuid);
    expect((await d.s.driver.resourceUnref(id)).type).toBe(GpuResp.OK_NODATA);
  });

  it('shows a 2D resource uploaded with TRANSFER_TO_HOST_2D, and uses it as the cursor', async () => {
    const id = 20, C = 64;
    expect((await d.s.driver.resourceCreate2d(id, B8G8R8A8, C, C)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.attachBacking(id)).type).toBe(GpuResp.OK_NODATA);
    d.s.driver.fillPixels(id, (x, y) => (0xff000000 | (x << 16) | (y << 8)) >>> 0);
    expect((await d.s.driver.transferToHost2d(id, 0, 0, C, C, { fenceId: 50 })).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.setScanout(0, id, 0, 0, C, C)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceFlush(id, 8, 4, 16, 16)).type).toBe(GpuResp.OK_NODATA);
    expect(await d.s.display.waitFor(DisplayMsg.UPDATE, (e) => e.width === 16)).toMatchObject({ x: 8, y: 4, height: 16 });
    expect(d.s.display.pixel(0, 10, 7)).toBe(0xff0a0700);
    await d.s.driver.updateCursor(0, 5, 6, id, 1, 2);
    const cur = await d.s.display.waitFor(DisplayMsg.CURSOR_UPDATE);
    const img = new DataView(cur.image!.buffer, cur.image!.byteOffset);
    expect(img.getUint32((3 * C + 9) * 4, true)).toBe(0xff090300);
    expect((await d.s.driver.setScanout(0, 0, 0, 0, 0, 0)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceUnref(id)).type).toBe(GpuResp.OK_NODATA);
  });

  it('had no virglrenderer operation refused so far (every id was checked first)', () => {
    expect(d.backend.stderr()).not.toMatch(/virgl \w+ \(ctx \d+, resource \d+\) failed/);
  });

  it('destroys contexts and resources and reuses their ids', async () => {
    expect((await d.s.driver.resourceUnref(10)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxDestroy(1)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.submit3d(1, clear(10, [0, 0, 0, 1]))).type).toBe(GpuResp.ERR_INVALID_CONTEXT_ID);
    expect((await d.s.driver.ctxCreate(1, { contextInit: CAPSET_VIRGL2 })).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceCreate3d(create3d(10))).type).toBe(GpuResp.OK_NODATA);
    const att = await d.s.driver.attachBacking(10, W * H * 4);
    expect((await d.s.driver.ctxAttach(1, 10)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.submit3d(1, clear(10, [0, 0, 1, 1]))).type).toBe(GpuResp.OK_NODATA);
    const r = await d.s.driver.transferFromHost3d({ resourceId: 10, box: box(W, H), stride: W * 4 }, { ctxId: 1, fenceId: 40, ringIdx: 1 });
    expect(r.type).toBe(GpuResp.OK_NODATA);
    expect([...att.backing.read(0, 4)]).toEqual(BGRA(0, 0, 1));
    // A new memory table maps guest RAM at new host addresses: the backing follows.
    await d.s.frontend.setMemTable(ramRegions(d.s.ram));
    expect((await d.s.driver.submit3d(1, clear(10, [1, 0, 0, 1]))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.transferFromHost3d({ resourceId: 10, box: box(W, H), stride: W * 4 }, { ctxId: 1, fenceId: 41, ringIdx: 1 })).type).toBe(GpuResp.OK_NODATA);
    expect([...att.backing.read(4 * (W * H - 1), 4)]).toEqual(BGRA(1, 0, 0));
  });

  it('drops a session\'s contexts and resources when it disconnects: the next one reuses the ids', async () => {
    await d.reconnect({ ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });
    expect((await d.s.driver.ctxCreate(1)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceCreate3d(create3d(10))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, 10)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.submit3d(1, clear(10, [0, 1, 1, 1]), { fenceId: 1 })).type).toBe(GpuResp.OK_NODATA);
  });

  it('had no virglrenderer operation refused at the end either', () => {
    expect(d.backend.stderr()).not.toMatch(/virgl \w+ \(ctx \d+, resource \d+\) failed/);
  });
});

describe('--gpu-mode virglrenderer: SIGTERM while fenced 3D work is in flight', () => {
  const d = useDaemon('virgl-sigterm', ['--gpu-mode', 'virglrenderer'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });

  it('shuts virglrenderer down and exits 0', async () => {
    const BIG = 5, S = 1024;
    expect((await d.s.driver.ctxCreate(1)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.resourceCreate3d(create3d(BIG, S, S))).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, BIG)).type).toBe(GpuResp.OK_NODATA);
    const inFlight = Array.from({ length: 64 }, (_, i) =>
      d.s.driver.submit3d(1, clear(BIG, [i / 64, 0, 0, 1]), { fenceId: i + 1, ringIdx: 0 }).catch(() => null));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const exit = await d.backend.stop();
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.stderr).toMatch(/SIGTERM: exiting/);
    d.s.close();
    await Promise.all(inFlight);
  });
});

describe('--print-capabilities', () => {
  it('lists virgl and render-node when virglrenderer initialises here', () => {
    const r = spawnSync(process.execPath, [BIN, '--print-capabilities'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ type: 'gpu', features: ['virgl', 'render-node'] });
  });

  it('exits 1 with one clear line when virglrenderer cannot be loaded', () => {
    const r = spawnSync(process.execPath, [BIN, '--gpu-mode', 'virglrenderer', '--socket-path', join(tmpdir(), 'never.sock')], {
      encoding: 'utf8', timeout: 20_000, env: { ...process.env, VHOST_GPU_VIRGL_LIBRARY: '/nonexistent/libvirglrenderer.so.1' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/virglrenderer: cannot load/);
  });
});
