// 3D reference: the virgl guest (build-guest.sh --3d: kmscube on the guest's Mesa virtio_gpu
// driver) against QEMU's own in-process virtio-gpu-gl-pci, which decodes with virglrenderer and
// renders with the host's Mesa llvmpipe behind egl-headless. No daemon of ours is involved: this
// proves the image, the harness and the machine can do 3D at all, and its fps is the baseline the
// 3D benchmark compares our daemon with (same image, same frames).
import { describe, expect, it } from 'vitest';
import { colourStats, parseGlReport, runGuest, type Screenshot } from './qemu.js';

/** kmscube's glClearColor(0.5, 0.5, 0.5, 1.0), as 8-bit RGB. */
const KMSCUBE_BACKGROUND = [128, 128, 128] as const;

/** A frame from kmscube: mostly its grey background, plus a smooth-shaded cube (many colours). */
function looksRendered(shot: Screenshot): boolean {
  const s = colourStats(shot);
  return s.distinct >= 100 && s.dominantShare < 0.99 && s.dominantShare > 0.3;
}

describe('e2e 3D guest: QEMU in-process virtio-gpu-gl-pci (virglrenderer + llvmpipe)', () => {
  it(
    'reports a virgl renderer, renders frames with kmscube and shows them on the scanout',
    async () => {
      const run = await runGuest({
        guest: '3d',
        device: 'in-process-gl',
        timeoutMs: 150_000,
        screenshotUntil: looksRendered,
      });
      const context = `\n--- serial ---\n${run.serialLog}\n--- qemu stderr ---\n${run.qemuStderr}`;

      // The host offered virgl and the guest's DRM device came up.
      expect(run.serialLog, context).toMatch(/\[drm\] features: \+virgl/);
      expect(run.serialLog, context).toMatch(/\[drm\] Initialized virtio_gpu/);
      expect(run.serialLog, context).toContain('E2E: dri ready');
      expect(run.serialLog, context).not.toContain('E2E: FAIL');

      // kmscube ran on virgl (not on a software fallback inside the guest) and finished its frames.
      const gl = parseGlReport(run.serialLog);
      expect(gl, context).not.toBeNull();
      expect(gl!.renderer, context).toMatch(/virgl/);
      expect(gl!.frames, context).toBeGreaterThan(0);
      expect(gl!.fps, context).toBeGreaterThan(0);
      console.log(
        `[3d reference] GL_RENDERER "${gl!.renderer}": ${gl!.frames} frames in ${gl!.secs} s = ${gl!.fps} fps` +
          ` (boot to "gl done" ${(run.bootMs / 1000).toFixed(1)} s, run ${(run.totalMs / 1000).toFixed(1)} s)`,
      );

      // The scanout shows a rendered frame: kmscube's grey clear colour behind a shaded cube.
      const stats = colourStats(run.screenshot);
      const summary = `${run.capture} ${run.screenshot.width}x${run.screenshot.height}: ${JSON.stringify(stats)}`;
      expect(stats.distinct, summary + context).toBeGreaterThanOrEqual(100);
      expect(stats.dominantShare, summary).toBeLessThan(0.99);
      for (let i = 0; i < 3; i++) {
        expect(Math.abs(stats.dominant[i]! - KMSCUBE_BACKGROUND[i]), summary).toBeLessThanOrEqual(2);
      }
    },
    180_000,
  );
});
