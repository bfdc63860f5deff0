/**
 * Blob mapping bench: `npm run bench:blob-map [-- --seconds 3 --blobs 64]`. One daemon (2D mode,
 * cross-domain making the host memory), the test frontend playing QEMU 11.1's SHMEM side (each
 * SHMEM_MAP a real mmap of the memfd, acknowledged over the back-end channel), and a guest that
 * maps and unmaps HOST3D blobs in the host-visible region:
 * - one at a time: RESOURCE_MAP_BLOB, wait, RESOURCE_UNMAP_BLOB, wait (a map/unmap round trip);
 * - batched: MAP_BLOB of every blob at once, then UNMAP_BLOB of every blob at once.
 * No other back-end maps blobs over vhost-user (QEMU's C backend has no blob support), so there is
 * no reference column.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { startBackend, connectFrontend, GpuResp } from '../test/frontend/index.js';
import { CrossDomainHostBlobs } from '../test/integration/cross-domain-host-blobs.js';
import { packagePath } from '../src/package-path.js';
import { machineInfo } from './machine.js';
import { percentile } from './stats.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('bench:blob-map')
  .option('seconds', { type: 'number', default: 3, describe: 'Seconds per figure' })
  .option('blobs', { type: 'number', default: 64, describe: 'Blobs (64x64 XRGB, 16 KiB each) in the batched figure' })
  .strict()
  .parseSync();

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-bench-map-'));
  const backend = await startBackend([
    process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', '--log-level', 'error',
    '--capset', 'cross-domain', '--wayland-socket', join(dir, 'unused'),
  ], join(dir, 'gpu.sock'));
  try {
    const s = await connectFrontend(backend, {
      ram: { size: 64 << 20 }, shmem: true,
      features: { eventIdx: true, indirect: true, virgl: true, resourceBlob: true, contextInit: true },
    });
    const blobs = new CrossDomainHostBlobs(s, 1, 1000);
    await blobs.init();
    const n = argv.blobs;
    let size = 0;
    for (let i = 0; i < n; i++) size = await blobs.create(i + 1, 64, 64);
    const slot = Math.ceil(size / 4096) * 4096;
    const d = s.driver;
    const expectType = (t: number, want: number, what: string) => {
      if (t !== want) throw new Error(`${what} answered 0x${t.toString(16)}`);
    };

    // One at a time.
    const rtt: number[] = [];
    let t0 = performance.now();
    while (performance.now() - t0 < argv.seconds * 1000) {
      const a = performance.now();
      expectType((await d.mapBlob(1, 0)).type, GpuResp.OK_MAP_INFO, 'MAP_BLOB');
      expectType((await d.unmapBlob(1)).type, GpuResp.OK_NODATA, 'UNMAP_BLOB');
      rtt.push((performance.now() - a) * 1000);
    }
    const serial = rtt.length / ((performance.now() - t0) / 1000);

    // Batched: every blob mapped at once, then unmapped at once.
    let pairs = 0;
    t0 = performance.now();
    while (performance.now() - t0 < argv.seconds * 1000) {
      const maps = await Promise.all(Array.from({ length: n }, (_, i) => d.mapBlob(i + 1, i * slot)));
      maps.forEach((m) => expectType(m.type, GpuResp.OK_MAP_INFO, 'MAP_BLOB'));
      const unmaps = await Promise.all(Array.from({ length: n }, (_, i) => d.unmapBlob(i + 1)));
      unmaps.forEach((u) => expectType(u.type, GpuResp.OK_NODATA, 'UNMAP_BLOB'));
      pairs += n;
    }
    const batched = pairs / ((performance.now() - t0) / 1000);
    s.close();

    const m = machineInfo();
    const sorted = Float64Array.from(rtt).sort();
    console.log(`\n## Blob mapping over vhost-user SHMEM (test frontend as QEMU 11.1), ${m.cores} cores, ${argv.seconds} s per figure\n`);
    console.log('| scenario | map+unmap pairs/s | p50 µs | p99 µs |');
    console.log('|---|--:|--:|--:|');
    console.log(`| one at a time (MAP, wait, UNMAP, wait) | ${serial.toFixed(0)} | ${percentile(sorted, 50).toFixed(1)} | ${percentile(sorted, 99).toFixed(1)} |`);
    console.log(`| ${n} blobs of ${size} bytes mapped, then unmapped, at once | ${batched.toFixed(0)} | | |`);
  } finally {
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
