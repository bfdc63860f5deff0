/**
 * Command streams that crash virglrenderer 0.10.4 inside virgl_renderer_submit_cmd (found by
 * `npm run fuzz -- --target virgl`): the render server refuses them with an error response, and
 * neither it nor the daemon dies.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { GpuResp } from '../frontend/index.js';
import { useDaemon } from './daemon-fixture.js';

const MiB = 1024 * 1024;
const PIPE_BUFFER = 0, R8_UNORM = 64, BIND_CONSTANT_BUFFER = 1 << 6;
/** VIRGL_CCMD_GET_MEMORY_INFO (50): one dword, the handle of the resource the info is written to. */
const getMemoryInfo = (res: number) => new Uint8Array(Uint32Array.from([(50 | (1 << 16)) >>> 0, res]).buffer);

describe('--gpu-mode virglrenderer: streams that would crash the library', () => {
  const d = useDaemon('virgl-guard', ['--gpu-mode', 'virglrenderer'], { ram: { size: 64 * MiB }, features: { virgl: true, contextInit: true } });

  beforeAll(async () => {
    expect((await d.s.driver.ctxCreate(1, { name: 'guard' })).type).toBe(GpuResp.OK_NODATA);
  });

  const create = async (resourceId: number, width: number, backingBytes: number) => {
    expect((await d.s.driver.resourceCreate3d({ resourceId, target: PIPE_BUFFER, format: R8_UNORM, bind: BIND_CONSTANT_BUFFER, width, height: 1 })).type).toBe(GpuResp.OK_NODATA);
    if (backingBytes > 0) expect((await d.s.driver.attachBacking(resourceId, backingBytes)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.s.driver.ctxAttach(1, resourceId)).type).toBe(GpuResp.OK_NODATA);
  };

  it('refuses GET_MEMORY_INFO into a resource without backing, and goes on', async () => {
    await create(10, 4096, 0);
    const r = await d.s.driver.submit3d(1, getMemoryInfo(10));
    expect(r.type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(d.backend.running).toBe(true);
    expect((await d.s.driver.getDisplayInfo()).type).toBe(GpuResp.OK_DISPLAY_INFO);
  });

  it('refuses GET_MEMORY_INFO into a backing smaller than the info', async () => {
    await create(11, 16, 16);
    expect((await d.s.driver.submit3d(1, getMemoryInfo(11))).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(d.backend.running).toBe(true);
  });

  it('passes GET_MEMORY_INFO into a resource with enough backing', async () => {
    await create(12, 4096, 4096);
    expect((await d.s.driver.submit3d(1, getMemoryInfo(12))).type).toBe(GpuResp.OK_NODATA);
    expect(d.backend.running).toBe(true);
  });

  it('refuses it inside a longer stream too, after other commands', async () => {
    const nop = (n: number) => [0 | (n << 16), ...Array<number>(n).fill(0)];
    const words = [...nop(2), ...nop(0), (50 | (1 << 16)) >>> 0, 10];
    expect((await d.s.driver.submit3d(1, new Uint8Array(Uint32Array.from(words).buffer))).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect(d.backend.running).toBe(true);
  });

  it('refuses SET_SHADER_IMAGES naming a format past the format table (the library indexes it unchecked)', async () => {
    await create(13, 4096, 4096);
    // shader type 3 (fragment... any), start slot 4, one image: format, access, offset, size, handle.
    const images = (format: number) => new Uint8Array(Uint32Array.from([(35 | (7 << 16)) >>> 0, 3, 4, format, 0x41508649, 0, 3, 13]).buffer);
    expect((await d.s.driver.submit3d(1, images(0xdeaf9985))).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect((await d.s.driver.submit3d(1, images(481))).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
    expect((await d.s.driver.submit3d(1, images(R8_UNORM))).type).toBe(GpuResp.OK_NODATA);
    expect(d.backend.running).toBe(true);
    expect(d.backend.stderr()).not.toMatch(/virglrenderer lost/);
  });
});
