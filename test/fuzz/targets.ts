/** The fuzz targets by name (the CLI's --target and the test's short runs). */
import { CodecTarget } from './codec-target.js';
import { VhostUserTarget } from './vhost-user-target.js';
import { DeviceTarget } from './device-target.js';
import type { FuzzTarget } from './target.js';

export const TARGETS: Record<string, () => FuzzTarget> = {
  codec: () => new CodecTarget(),
  'vhost-user': () => new VhostUserTarget(),
  device: () => new DeviceTarget('2d'),
  virgl: () => new DeviceTarget('virgl'),
};
export const targetNames = Object.keys(TARGETS);
