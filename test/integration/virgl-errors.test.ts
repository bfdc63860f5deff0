/**
 * --gpu-mode virglrenderer: every command virglrenderer would refuse is answered with an error,
 * fenced or not. Transfers outside their resource or backing and unknown formats are refused on
 * the coordinator (the library never sees them: no "failed" line from it); what only the library
 * can refuse is answered with its result.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { GpuResp } from '../frontend/index.js';
import type { Transfer3dParams } from '../frontend/gpu-protocol.js';
import { useDaemon } from './daemon-fixture.js';
import { bytesOf, clear, hdr, tex2dCreate, BIND_RT_SAMPLER, B8G8R8A8 } from '../unit/virgl-helpers.js';

const MiB = 1024 * 1024;
const W = 32, H = 16;
const TEX = 10, VOL = 11, LOOSE = 12;
const VOL_W = 8, VOL_H = 8, VOL_D = 4; // PIPE_TEXTURE_3D with two levels: level 1 is 4x4x2
const PIPE_TEXTURE_3D = 3;
/** How the daemon logs a command virglrenderer refused. */
const LIBRARY_REFUSED = /virgl \w+ \(ctx \d+, resource \d+\) failed/;

const create = (id: number, w: number, h: number, more: { target?: number; depth?: number; lastLevel?: number; bind?: number; format?: number } = {}) =>
  ({ ...tex2dCreate(id, w, h, 0), ...more });
const box = (w: number, h: number, d = 1, x = 0, y = 0, z = 0) => ({ x, y, z, w, h, d });
/** Long enough for the daemon's stderr of the commands so far to have reached us. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

/** Transfers virglrenderer refuses; the coordinator must refuse them first. */
const OUTSIDE: Array<[string, Transfer3dParams]> = [
  ['x + w beyond the width', { resourceId: TEX, box: box(W, 1, 1, 1) }],
  ['y + h beyond the height', { resourceId: TEX, box: box(1, H, 1, 0, 1) }],
  ['z + d beyond the depth', { resourceId: VOL, box: box(1, 1, VOL_D, 0, 0, 1) }],
  ['x + w wrapping at 2^32', { resourceId: TEX, box: box(2, 1, 1, 0xffff_ffff) }],
  ['y + h wrapping at 2^32', { resourceId: TEX, box: box(1, 0x20, 1, 0, 0xffff_fff0) }],
  ['a level beyond last_level', { resourceId: TEX, box: box(1, 1), level: 1 }],
  ['a box beyond a smaller level', { resourceId: VOL, box: box(VOL_W / 2 + 1, 1), level: 1 }],
  ['an offset at the end of the backing', { resourceId: TEX, box: box(1, 1), offset: W * H * 4 }],
  ['an offset past the end of the backing', { resourceId: TEX, box: box(1, 1), offset: 2 ** 32 }],
  ['rows that run past the end from the offset', { resourceId: TEX, box: box(W, H), offset: 4 }],
  ['a stride of 2^31', { resourceId: TEX, box: box(W, 2), stride: 2 ** 31 }],
  ['a stride below a row of the box', { resourceId: TEX, box: box(W, 2), stride: W * 4 - 4 }],
];

describe('--gpu-mode virglrenderer refusals', () => {
  const d = useDaemon('virgl-errors', ['--gpu-mode', 'virglrenderer'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });
  let fenceId = 100;

  beforeAll(async () => {
    expect((await d.s.driver.ctxCreate(1, { name: 'errors' })).type).toBe(GpuResp.OK_NODATA);
    for (const r of [create(TEX, W, H), create(VOL, VOL_W, VOL_H, { target: PIPE_TEXTURE_3D, depth: VOL_D, lastLevel: 1 }), create(LOOSE, W, H)]) {
      expect((await d.s.driver.resourceCreate3d(r)).type).toBe(GpuResp.OK_NODATA);
      expect((await d.s.driver.attachBacking(r.resourceId, r.width * r.height * r.depth * 4)).type).toBe(GpuResp.OK_NODATA);
    }
    expect((await d.s.driver.ctxAttach(1, TEX)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, VOL)).type).toBe(GpuResp.OK_NODATA);
  });

  it('answers valid transfers and a valid create OK, fenced or not', async () => {
    const valid: Transfer3dParams[] = [
      { resourceId: TEX, box: box(W, H), stride: W * 4 },
      { resourceId: TEX, box: box(1, 1), offset: W * H * 4 - 4 },
      { resourceId: VOL, box: box(VOL_W / 2, VOL_H / 2, VOL_D / 2), level: 1 },
      { resourceId: VOL, box: box(VOL_W, VOL_H, VOL_D), stride: VOL_W * 4, layerStride: VOL_W * VOL_H * 4 },
    ];
    for (const p of valid) {
      for (const dir of ['transferToHost3d', 'transferFromHost3d'] as const) {
        expect((await d.s.driver[dir](p, { ctxId: 1 })).type, `${dir} ${JSON.stringify(p)}`).toBe(GpuResp.OK_NODATA);
        const id = fenceId++;
        expect(await d.s.driver[dir](p, { ctxId: 1, fenceId: id })).toMatchObject({ type: GpuResp.OK_NODATA, fenceId: BigInt(id) });
      }
    }
    expect((await d.s.driver.resourceCreate3d(create(20, W, H))).type).toBe(GpuResp.OK_NODATA);
    expect(await d.s.driver.resourceCreate3d(create(21, W, H), { fenceId: fenceId++ })).toMatchObject({ type: GpuResp.OK_NODATA });
  });

  it.each(OUTSIDE)('refuses a transfer with %s, both directions, fenced or not', async (_name, p) => {
    for (const dir of ['transferToHost3d', 'transferFromHost3d'] as const) {
      expect((await d.s.driver[dir](p, { ctxId: 1 })).type, dir).toBe(GpuResp.ERR_INVALID_PARAMETER);
      const id = fenceId++;
      expect(await d.s.driver[dir](p, { ctxId: 1, fenceId: id }), dir).toMatchObject({ type: GpuResp.ERR_INVALID_PARAMETER, fenceId: BigInt(id) });
    }
    await settle();
    expect(d.backend.stderr(), 'refused by the library, not the coordinator').not.toMatch(LIBRARY_REFUSED);
  });

  it('refuses a transfer in a context the resource is not attached to', async () => {
    const p = { resourceId: LOOSE, box: box(1, 1) };
    expect((await d.s.driver.transferToHost3d(p, { ctxId: 1 })).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect(await d.s.driver.transferFromHost3d(p, { ctxId: 1, fenceId: fenceId++ })).toMatchObject({ type: GpuResp.ERR_INVALID_RESOURCE_ID });
    // Without a context (as QEMU's 2D path) the resource is found.
    expect((await d.s.driver.transferToHost3d(p)).type).toBe(GpuResp.OK_NODATA);
  });

  it('refuses a resource of an unknown format, fenced or not, and the id stays free', async () => {
    expect((await d.s.driver.resourceCreate3d(create(30, W, H, { format: 9999 }))).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await d.s.driver.resourceCreate3d(create(30, W, H, { format: 9999 }), { fenceId: fenceId++ })).toMatchObject({ type: GpuResp.ERR_INVALID_PARAMETER });
    expect((await d.s.driver.resourceCreate3d(create(30, W, H))).type).toBe(GpuResp.OK_NODATA);
  });

  it('asked virglrenderer nothing it refused so far', async () => {
    await settle();
    expect(d.backend.stderr()).not.toMatch(LIBRARY_REFUSED);
  });

  it('answers what only virglrenderer refuses with its result, fenced or not', async () => {
    // A texture with buffer bind flags: only the library knows its rules for binds and targets.
    const bad = create(40, W, H, { bind: 0 });
    expect((await d.s.driver.resourceCreate3d(bad)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    const id = fenceId++;
    expect(await d.s.driver.resourceCreate3d(bad, { fenceId: id })).toMatchObject({ type: GpuResp.ERR_INVALID_PARAMETER, fenceId: BigInt(id) });
    // The refused resource was forgotten: its id can be created again.
    expect((await d.s.driver.resourceCreate3d(create(40, W, H, { bind: BIND_RT_SAMPLER, format: B8G8R8A8 }))).type).toBe(GpuResp.OK_NODATA);
    // A command stream virglrenderer refuses, in a context of its own (it is then "in error").
    expect((await d.s.driver.ctxCreate(2, { name: 'bad stream' })).type).toBe(GpuResp.OK_NODATA);
    const junk = bytesOf([hdr(0xff, 0, 0)]);
    expect((await d.s.driver.submit3d(2, junk)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(await d.s.driver.submit3d(2, junk, { fenceId: fenceId++ })).toMatchObject({ type: GpuResp.ERR_INVALID_PARAMETER });
    await settle();
    expect(d.backend.stderr()).toMatch(LIBRARY_REFUSED);
    // A good stream elsewhere is still answered OK.
    expect((await d.s.driver.submit3d(1, clear(TEX, [0, 0, 1, 1]))).type).toBe(GpuResp.OK_NODATA);
    expect(await d.s.driver.submit3d(1, clear(TEX, [0, 1, 0, 1]), { fenceId: fenceId++ })).toMatchObject({ type: GpuResp.OK_NODATA });
  });
});
