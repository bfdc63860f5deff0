// 3D guest (kmscube on Mesa's virtio_gpu driver) against our daemon in --gpu-mode virglrenderer,
// through QEMU's vhost-user-gpu-pci, of QEMU 10 and of QEMU 11.1. Scanouts go out as SCANOUT +
// UPDATE (readback), so QMP screendump can capture them.
import { describe, expect, it } from 'vitest';
import { colourStats, parseGlReport, runGuest, setupQemu11 } from './qemu.js';
import { packagePath } from '../../src/package-path.js';

const qemus: [string, (() => Promise<string>) | undefined][] = [['QEMU 10', undefined], ['QEMU 11.1', setupQemu11]];

describe.each(qemus)('e2e 3D guest: %s vhost-user-gpu-pci served by vhost-gpu --gpu-mode virglrenderer', (qemuName, qemu) => {
  it(
    'reports a virgl renderer and renders frames with kmscube',
    async () => {
      const run = await runGuest({
        guest: '3d',
        device: 'vhost-user',
        qemuBin: qemu ? await qemu() : undefined,
        backendCmd: [process.execPath, packagePath('bin/vhost-gpu.js'), '--gpu-mode', 'virglrenderer', '--socket-path={socket}'],
        timeoutMs: 170_000,
        screenshotUntil: (shot) => colourStats(shot).distinct >= 100,
      });
      const context = `\n--- serial ---\n${run.serialLog}\n--- qemu stderr ---\n${run.qemuStderr}`;
      expect(run.serialLog, context).toMatch(/\[drm\] features: \+virgl/);
      const gl = parseGlReport(run.serialLog);
      expect(gl, context).not.toBeNull();
      expect(gl!.renderer, context).toMatch(/virgl/);
      expect(gl!.frames, context).toBeGreaterThan(0);
      // The scanout shows kmscube's grey clear colour behind a shaded cube.
      const stats = colourStats(run.screenshot);
      expect(stats.distinct).toBeGreaterThanOrEqual(100);
      expect(stats.dominantShare).toBeLessThan(0.99);
      for (let i = 0; i < 3; i++) expect(Math.abs(stats.dominant[i]! - 128)).toBeLessThanOrEqual(2);
      if (process.env.SHOW_BACKEND_STDERR) console.error(run.backendStderr);
      console.log(`[3d vhost-gpu, ${qemuName}] GL_RENDERER "${gl!.renderer}": ${gl!.frames} frames in ${gl!.secs} s = ${gl!.fps} fps; screenshot ${JSON.stringify(colourStats(run.screenshot))}`);
    },
    200_000,
  );
});
