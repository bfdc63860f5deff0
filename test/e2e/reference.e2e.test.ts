// Sanity baseline for the e2e harness: the guest against QEMU's own C backend
// (/usr/lib/qemu/vhost-user-gpu, 2D path, no virgl). If this fails, the
// harness or the environment is broken, not our daemon.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkFourBands, parseFbInfo, REFERENCE_BACKEND, runGuest } from './qemu.js';

const haveReference = existsSync(REFERENCE_BACKEND[0]!);

describe.skipIf(!haveReference)('e2e: C reference vhost-user-gpu backend', () => {
  it(
    'boots, brings up virtio_gpu fb0 and shows the four-band pattern',
    async () => {
      const run = await runGuest({
        backendCmd: REFERENCE_BACKEND,
        timeoutMs: 150_000,
        screenshotUntil: (shot) => checkFourBands(shot).ok,
      });
      const context = `\n--- serial ---\n${run.serialLog}\n--- backend stderr ---\n${run.backendStderr}`;

      // The driver initialised (relayed from dmesg by the guest's init).
      expect(run.serialLog, context).toMatch(/\[drm\] Initialized virtio_gpu/);
      expect(run.serialLog, context).toMatch(/fb0: virtio_?gpu ?drmfb frame buffer device/);
      const fb = parseFbInfo(run.serialLog);
      expect(fb, context).not.toBeNull();
      expect(fb!.bpp).toBe(32);
      expect(run.serialLog).toContain('E2E: modeset done');
      expect(run.serialLog).toContain('E2E: pattern written');
      expect(run.serialLog).not.toContain('E2E: FAIL');

      // The screendump is the scanout QEMU received from the backend.
      expect(run.backendAliveAtScreendump, context).toBe(true);
      expect([run.screenshot.width, run.screenshot.height]).toEqual([fb!.width, fb!.height]);
      const bands = checkFourBands(run.screenshot);
      expect(bands.problems, context).toEqual([]);
    },
    180_000,
  );
});
