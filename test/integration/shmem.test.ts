/**
 * Blob mapping through vhost-user SHMEM, with the test frontend playing QEMU 11.1's
 * vhost-user-test-device-pci (SHMEM, BACKEND_REQ, BACKEND_SEND_FD, REPLY_ACK; GET_SHMEM_CONFIG;
 * SHMEM_MAP / SHMEM_UNMAP answered and really mmapped) against the daemon in 2D mode with a
 * cross-domain context making the host memory (GET_IMAGE_REQUIREMENTS, then a HOST3D blob):
 * the mapping is visible both ways through the front-end's view of the region, bad offsets and
 * overlaps are refused before anything is sent, a refusing or hostile front-end gets errors
 * rather than a hang, and unref / reset leave no mapping and no memfd behind.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startBackend, connectFrontend, fdTargets, GpuResp, ProtocolFeature, BackendRequest, BlobMem, BlobFlag, bit,
} from '../frontend/index.js';
import type { BackendProcess, FrontendSession } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { CrossDomainHostBlobs } from './cross-domain-host-blobs.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CTX = 7, QUERY = 100;
const SHM_ID_HOST_VISIBLE = 1;
/** virgl_caps_v2.capability_bits and its VIRGL_CAP_ARB_BUFFER_STORAGE bit (virgl_hw.h). */
const VIRGL2 = 2, CAPABILITY_BITS = 392, CAP_ARB_BUFFER_STORAGE = 0x8000_0000;

/** The GPU modes the mapping tests run in: host blobs of a cross-domain context, beside virglrenderer or not. */
const MODES = [
  { mode: '2D', args: ['--capset', 'cross-domain'] },
  { mode: 'virglrenderer', args: ['--gpu-mode', 'virglrenderer', '--capset', 'virgl,virgl2,cross-domain'] },
] as const;

function daemon(dir: string, extra: readonly string[] = [], mode: readonly string[] = MODES[0].args): Promise<BackendProcess> {
  return startBackend([
    process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}',
    ...mode, '--wayland-socket', join(dir, 'no-compositor'), ...extra,
  ], join(dir, 'gpu.sock'));
}

async function connect(backend: BackendProcess, shmem = true): Promise<FrontendSession> {
  return connectFrontend(backend, {
    ram: { size: 32 * MiB },
    shmem,
    features: { eventIdx: true, indirect: true, virgl: true, resourceBlob: true, contextInit: true },
  });
}

class HostBlobs extends CrossDomainHostBlobs {
  constructor(s: FrontendSession) {
    super(s, CTX, QUERY);
  }
}

const memfds = (pid: number) => fdTargets(pid).filter((t) => t.startsWith('/memfd:cross-domain-image')).length;

describe.each(MODES)('blob mapping through vhost-user SHMEM (the test frontend as QEMU 11.1), $mode mode', ({ mode, args }) => {
  let dir: string;
  let backend: BackendProcess;
  let s: FrontendSession;
  let blobs: HostBlobs;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-shmem-'));
    backend = await daemon(dir, [], args);
  });
  afterAll(async () => {
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    s = await connect(backend);
    blobs = new HostBlobs(s);
    await blobs.init();
  });
  afterEach(() => s?.close());

  it('negotiates SHMEM with the back-end channel and announces the 1G host-visible region as shmid 1', () => {
    const st = s.started!;
    for (const f of [ProtocolFeature.SHMEM, ProtocolFeature.BACKEND_REQ, ProtocolFeature.BACKEND_SEND_FD, ProtocolFeature.REPLY_ACK]) {
      expect(st.offeredProtocolFeatures & bit(f)).not.toBe(0n);
      expect(st.protocolFeatures & bit(f)).not.toBe(0n);
    }
    expect(s.frontend.shmem.sizes[SHM_ID_HOST_VISIBLE]).toBe(GiB);
    expect(s.frontend.shmem.sizes.filter((x) => x > 0)).toHaveLength(1);
  });

  it('maps a host blob at the guest offset: the guest and the host memory see each other', async () => {
    const size = await blobs.create(1, 64, 64);
    const offset = 16 * MiB;
    const r = await s.driver.mapBlob(1, offset);
    expect(r.type).toBe(GpuResp.OK_MAP_INFO);
    expect(r.mapInfo).toBe(P.MAP_CACHE_CACHED);
    const shm = s.frontend.shmem;
    expect(shm.mappings).toHaveLength(1);
    expect(shm.mappings[0]).toMatchObject({ shmid: SHM_ID_HOST_VISIBLE, offset, length: Math.ceil(size / 4096) * 4096, writable: true, fdOffset: 0 });
    // The guest writes through the BAR; a second mapping of the same memory (the daemon's own
    // memfd, which a scanout or the compositor reads) sees it, and the other way round.
    shm.write(SHM_ID_HOST_VISIBLE, offset + 100, Uint8Array.of(1, 2, 3, 4));
    const again = await s.driver.unmapBlob(1);
    expect(again.type).toBe(GpuResp.OK_NODATA);
    expect(shm.mappings).toHaveLength(0);
    expect((await s.driver.mapBlob(1, 2 * offset)).type).toBe(GpuResp.OK_MAP_INFO);
    expect([...shm.read(SHM_ID_HOST_VISIBLE, 2 * offset + 100, 4)]).toEqual([1, 2, 3, 4]);
    expect(shm.events.slice(-3)).toEqual([
      `map 1 0x${offset.toString(16)}+0x${(shm.mappings[0].length).toString(16)} ok`,
      `unmap 1 0x${offset.toString(16)}+0x${(shm.mappings[0].length).toString(16)} ok`,
      `map 1 0x${(2 * offset).toString(16)}+0x${(shm.mappings[0].length).toString(16)} ok`,
    ]);
    expect((await s.driver.resourceUnref(1)).type).toBe(GpuResp.OK_NODATA);
  });

  it('refuses bad offsets, overlaps, double maps and unknown ids before asking the front-end', async () => {
    await blobs.create(2, 64, 64); // 16 KiB
    await blobs.create(3, 64, 64);
    const sent = () => s.frontend.backendRequests.length;
    const before = sent();
    const d = s.driver;
    expect((await d.mapBlob(2, 100)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // not page-aligned
    expect((await d.mapBlob(2, GiB)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // past the region
    expect((await d.mapBlob(2, GiB - 4096)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // runs past its end
    expect((await d.mapBlob(2, 2 ** 52)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // huge
    expect((await d.mapBlob(999, 0)).type).toBe(GpuResp.ERR_INVALID_RESOURCE_ID);
    expect((await d.mapBlob(QUERY, 0)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // guest memory, no host memory
    expect((await d.unmapBlob(2)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // not mapped
    expect(sent()).toBe(before);
    expect((await d.mapBlob(2, 0)).type).toBe(GpuResp.OK_MAP_INFO);
    expect((await d.mapBlob(2, 1 * MiB)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // already mapped
    expect((await d.mapBlob(3, 4096)).type).toBe(GpuResp.ERR_INVALID_PARAMETER); // overlaps blob 2
    expect((await d.mapBlob(3, GiB - 16384)).type).toBe(GpuResp.OK_MAP_INFO); // the region's last pages
    expect(sent()).toBe(before + 2);
    expect(s.frontend.shmem.mappings.map((m) => m.offset).sort((a, b) => a - b)).toEqual([0, GiB - 16384]);
    expect((await d.resourceUnref(2)).type).toBe(GpuResp.OK_NODATA);
    expect((await d.resourceUnref(3)).type).toBe(GpuResp.OK_NODATA);
  });

  it('a front-end that refuses the map gets the command answered ERR_UNSPEC, and the blob stays unmapped', async () => {
    await blobs.create(4, 32, 32);
    s.frontend.shmem.refuseAll = true;
    expect((await s.driver.mapBlob(4, 0)).type).toBe(GpuResp.ERR_UNSPEC);
    expect(s.frontend.shmem.events.at(-1)).toMatch(/^map 1 0x0\+0x\w+ refused/);
    s.frontend.shmem.refuseAll = false;
    expect((await s.driver.mapBlob(4, 0)).type).toBe(GpuResp.OK_MAP_INFO); // the range was given back
    expect(s.frontend.shmem.mappings).toHaveLength(1);
  });

  it('fenced MAP_BLOB and UNMAP_BLOB answer in order on their ring', async () => {
    await blobs.create(5, 32, 32);
    const d = s.driver;
    const [m, u] = await Promise.all([
      d.mapBlob(5, 8 * MiB, { ctxId: CTX, fenceId: 500, ringIdx: 0 }),
      d.unmapBlob(5, { ctxId: CTX, fenceId: 501, ringIdx: 0 }),
    ]);
    expect([m.type, u.type]).toEqual([GpuResp.OK_MAP_INFO, GpuResp.OK_NODATA]);
    expect(s.frontend.shmem.mappings).toHaveLength(0);
  });

  it('RESOURCE_UNREF of a mapped blob unmaps it and then frees its memfd', async () => {
    const pid = backend.proc.pid!;
    const base = memfds(pid);
    await blobs.create(6, 64, 64);
    expect((await s.driver.mapBlob(6, 0)).type).toBe(GpuResp.OK_MAP_INFO);
    expect(memfds(pid)).toBe(base + 1);
    expect((await s.driver.resourceUnref(6)).type).toBe(GpuResp.OK_NODATA);
    await waitFor(() => s.frontend.shmem.mappings.length === 0 && memfds(pid) === base);
    expect(s.frontend.shmem.events.at(-1)).toMatch(/^unmap 1 0x0\+0x\w+ ok$/);
  });

  it('RESET_DEVICE: the front-end drops the mappings itself, and no unmap follows for them', async () => {
    await blobs.create(7, 64, 64);
    expect((await s.driver.mapBlob(7, 0)).type).toBe(GpuResp.OK_MAP_INFO);
    const before = s.frontend.backendRequests.length;
    await s.frontend.resetDevice();
    await new Promise((r) => setTimeout(r, 100));
    // No unmap for a mapping the front-end no longer has.
    expect(s.frontend.backendRequests.slice(before).filter((m) => m.request === BackendRequest.SHMEM_UNMAP)).toHaveLength(0);
    expect(s.frontend.shmem.mappings).toHaveLength(0);
  });
});

describe('virgl capsets with a host-visible region', () => {
  let dir: string;
  let backend: BackendProcess;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-shmem3-'));
    backend = await daemon(dir, [], MODES[1].args);
  });
  afterAll(async () => {
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const bufferStorage = async (s: FrontendSession) => {
    const caps = await s.driver.getCapset(VIRGL2, 2, 2048);
    return new DataView(caps.data.buffer, caps.data.byteOffset).getUint32(CAPABILITY_BITS, true) & CAP_ARB_BUFFER_STORAGE;
  };

  it('without ARB_buffer_storage (Mesa would make mapped virgl blobs of such buffers); virgl contexts make no host blobs', async () => {
    const s = await connect(backend);
    try {
      expect(await bufferStorage(s)).toBe(0);
      expect((await s.driver.ctxCreate(20, { contextInit: VIRGL2 })).type).toBe(GpuResp.OK_NODATA);
      const r = await s.driver.createBlob({ resourceId: 21, blobMem: BlobMem.HOST3D, blobFlags: BlobFlag.USE_MAPPABLE, size: 65536, blobId: 1 }, { ctxId: 20 });
      expect(r.type).toBe(GpuResp.ERR_INVALID_PARAMETER);
      await waitFor(() => /context 20 is a virgl context: host blobs come from the other context types/.test(backend.stderr()));
    } finally {
      s.close();
    }
  });

  it("without SHMEM (QEMU 10's vhost-user-gpu-pci) the capset is virglrenderer's own", async () => {
    const s = await connect(backend, false);
    try {
      expect(await bufferStorage(s)).not.toBe(0);
    } finally {
      s.close();
    }
  });
});

describe('SHMEM edge cases', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-shmem2-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--host-visible-size 0 offers no SHMEM; MAP_BLOB is then refused, the rest of blob works', async () => {
    const backend = await daemon(dir, ['--host-visible-size', '0']);
    try {
      const s = await connect(backend);
      try {
        expect(s.started!.offeredProtocolFeatures & bit(ProtocolFeature.SHMEM)).toBe(0n);
        expect(s.started!.offeredProtocolFeatures & bit(ProtocolFeature.BACKEND_REQ)).toBe(0n);
        const b = new HostBlobs(s);
        await b.init();
        await b.create(1, 16, 16);
        expect((await s.driver.mapBlob(1, 0)).type).toBe(GpuResp.ERR_UNSPEC);
        // GET_SHMEM_CONFIG without SHMEM negotiated: refused, the session goes on.
        await expect(s.frontend.getShmemConfig()).rejects.toThrow();
      } finally {
        s.close();
      }
    } finally {
      await backend.stop();
    }
  });

  it('--host-visible-size 4M announces 4 MiB; a map past it is refused', async () => {
    const backend = await daemon(dir, ['--host-visible-size', '4M']);
    try {
      const s = await connect(backend);
      try {
        expect(s.frontend.shmem.sizes[SHM_ID_HOST_VISIBLE]).toBe(4 * MiB);
        const b = new HostBlobs(s);
        await b.init();
        await b.create(1, 64, 64);
        expect((await s.driver.mapBlob(1, 4 * MiB)).type).toBe(GpuResp.ERR_INVALID_PARAMETER);
        expect((await s.driver.mapBlob(1, 4 * MiB - 16384)).type).toBe(GpuResp.OK_MAP_INFO);
      } finally {
        s.close();
      }
    } finally {
      await backend.stop();
    }
  });

  describe('a hostile front-end on the back-end channel', () => {
    let backend: BackendProcess;
    beforeAll(async () => { backend = await daemon(dir); });
    afterAll(async () => { await backend?.stop(); });

    async function mapWith(mode: 'garbage' | 'silent' | 'closed'): Promise<{ s: FrontendSession; first: number; later: number }> {
      const s = await connect(backend);
      const b = new HostBlobs(s);
      await b.init();
      await b.create(1, 16, 16);
      await b.create(2, 16, 16);
      if (mode === 'closed') s.frontend.closeBackendChannel();
      else s.frontend.backendReplies = mode;
      const first = (await s.driver.mapBlob(1, 0, { timeoutMs: 15000 })).type;
      const later = (await s.driver.mapBlob(2, MiB, { timeoutMs: 15000 })).type;
      return { s, first, later };
    }

    for (const mode of ['garbage', 'silent', 'closed'] as const) {
      it(`${mode} replies: MAP_BLOB answered ERR_UNSPEC, later maps too, the daemon serves on`, async () => {
        const { s, first, later } = await mapWith(mode);
        try {
          expect([first, later]).toEqual([GpuResp.ERR_UNSPEC, GpuResp.ERR_UNSPEC]);
          expect((await s.driver.getDisplayInfo()).type).toBe(GpuResp.OK_DISPLAY_INFO);
        } finally {
          s.close();
        }
        // A new connection gets a working channel again.
        const t = await connect(backend);
        try {
          const b = new HostBlobs(t);
          await b.init();
          await b.create(1, 16, 16);
          expect((await t.driver.mapBlob(1, 0)).type).toBe(GpuResp.OK_MAP_INFO);
        } finally {
          t.close();
        }
        expect(backend.running).toBe(true);
      }, 30_000);
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
