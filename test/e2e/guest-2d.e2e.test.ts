// End to end with the real thing: QEMU 10 (TCG) boots a Linux guest whose virtio_gpu driver
// drives a vhost-user-gpu backend; the guest writes four colour bands to /dev/fb0 and QMP
// screendump must show them. The same guest runs against QEMU's C backend as a sanity baseline
// (if that fails, the harness or the machine is broken, not our daemon), and against ours with
// QEMU 11.1 (its vhost-user-gpu-pci reads a longer config struct). Never skipped: CI installs
// QEMU, QEMU 11.1 (scripts/setup-qemu-11.sh) and the guest kernel (.ci/run).
import { describe, expect, it } from 'vitest';
import { checkFourBands, parseFbInfo, REFERENCE_BACKEND, runGuest, setupQemu11 } from './qemu.js';
import { packagePath } from '../../src/package-path.js';

const OURS = [process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path', '{socket}'];

/** [name, backend, the QEMU binary (undefined: QEMU 10, the default)] */
const backends: [string, string[], (() => Promise<string>) | undefined][] = [
  ['QEMU C reference (/usr/lib/qemu/vhost-user-gpu)', REFERENCE_BACKEND, undefined],
  ['vhost-gpu (ours)', OURS, undefined],
  ['vhost-gpu (ours) under QEMU 11.1', OURS, setupQemu11],
];

describe.each(backends)('e2e 2D guest: %s', (_name, backendCmd, qemu) => {
  it(
    'boots, brings up virtio_gpu fb0 and shows the four-band pattern',
    async () => {
      const run = await runGuest({
        backendCmd,
        qemuBin: qemu ? await qemu() : undefined,
        timeoutMs: 150_000,
        screenshotUntil: (shot) => checkFourBands(shot).ok,
      });
      const context = `\n--- serial ---\n${run.serialLog}\n--- backend stderr ---\n${run.backendStderr}`;

      // The driver initialised (relayed from dmesg by the guest's init).
      expect(run.serialLog, context).toMatch(/\[drm\] Initialized virtio_gpu/);
      expect(run.serialLog, context).toMatch(/fb0: virtio_?gpu ?drmfb frame buffer device/);
      // Ours offers RESOURCE_BLOB, but the vhost-user-gpu-pci of QEMU 10 and 11.1 takes the guest's
      // features from its own flags (virtio_gpu_base_get_features; no `blob` property on that
      // device), so the guest never sees it and its dumb buffers stay 2D resources. When a QEMU
      // passes it on, this fails: the guest then scans out guest blobs (SET_SCANOUT_BLOB), tested
      // through the test frontend in test/integration/blob.test.ts.
      expect(run.serialLog, context).toMatch(/\[drm\] features: .*-resource_blob/);
      const fb = parseFbInfo(run.serialLog);
      expect(fb, context).not.toBeNull();
      expect(fb!.bpp).toBe(32);
      expect(run.serialLog, context).toContain('E2E: modeset done');
      expect(run.serialLog, context).toContain('E2E: pattern written');
      expect(run.serialLog, context).not.toContain('E2E: FAIL');

      // The screendump is the scanout QEMU received from the backend.
      expect(run.backendAliveAtScreendump, context).toBe(true);
      expect([run.screenshot.width, run.screenshot.height], context).toEqual([fb!.width, fb!.height]);
      expect(checkFourBands(run.screenshot).problems, context).toEqual([]);
    },
    180_000,
  );
});
