// The daemon as QEMU starts it with `--capset cross-domain --wayland-socket PATH`, in 2D mode and
// beside virglrenderer, driven through the test frontend (vhost-user, guest RAM, virtqueues): the
// capset offered, a cross-domain context whose rings are guest blobs, and a Wayland registry
// roundtrip to weston through it, and a wl_shm pool (a HOST3D blob the guest maps and writes)
// shown on weston's output.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, connectFrontend, BlobMem, BlobFlag, GpuResp } from '../frontend/index.js';
import type { BackendProcess, FrontendSession, GpuResponse } from '../frontend/index.js';
import type { ScatterBuffer } from '../frontend/guest-memory.js';
import { packagePath } from '../../src/package-path.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { command, imageRequirementsCommand, initCommand, parseRequirements, sendCommand, type ChannelEvent, type Identifier } from './cross-domain-guest.js';
import { XR24 } from './cross-domain-host-blobs.js';
import { WaylandGuestClient, fillPattern, patternColor, showShmBuffer, type Global } from './wayland-guest-client.js';
import { Weston, findPattern } from './weston.js';

const MiB = 1024 * 1024;
const CTX = 1, QUERY = 1, CHANNEL = 2;
const SHM_ID_HOST_VISIBLE = 1;
const MODES = [
  { mode: '2D', args: ['--capset', 'cross-domain'], index: 0 },
  { mode: 'virglrenderer', args: ['--gpu-mode', 'virglrenderer', '--capset', 'virgl,virgl2,cross-domain'], index: 2 },
] as const;

describe.each(MODES)('cross-domain through the daemon (test frontend), $mode mode', ({ args, index }) => {
  let dir: string, weston: Weston, backend: BackendProcess, s: FrontendSession;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-cd-daemon-'));
    weston = await Weston.start(320, 240);
    backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}',
      ...args, '--wayland-socket', weston.socket], join(dir, 'gpu.sock'));
    s = await connectFrontend(backend, {
      ram: { size: 64 * MiB },
      shmem: true, // QEMU 11.1's vhost-user-test-device-pci: the host-visible region for the pool
      features: { eventIdx: true, indirect: true, virgl: true, contextInit: true, resourceBlob: true },
    });
  });
  afterAll(async () => {
    s?.close();
    await backend?.stop();
    await weston?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const ok = async (what: string, p: Promise<GpuResponse>) => {
    const r = await p;
    if (r.type !== GpuResp.OK_NODATA) throw new Error(`${what} answered 0x${r.type.toString(16)}`);
    return r;
  };

  it('offers capset 5 with the cross-domain capabilities', async () => {
    const info = await s.driver.getCapsetInfo(index);
    expect(info).toMatchObject({ capsetId: 5, maxVersion: 0, maxSize: P.CAPS.BYTES });
    const caps = await s.driver.getCapset(5, 0, P.CAPS.BYTES);
    expect(caps.data).toEqual(P.capabilities());
  });

  /** A cross-domain context with guest-blob query and channel rings (ids ctx*10+1, +2), INIT done. */
  async function openChannel(ctx: number) {
    const d = s.driver;
    await ok('CTX_CREATE', d.ctxCreate(ctx, { contextInit: 5, name: 'sommelier' }));
    const rings: ScatterBuffer[] = [];
    const [query, chan] = [ctx * 10 + QUERY, ctx * 10 + CHANNEL];
    for (const id of [query, chan]) {
      const r = await d.createBlob({ resourceId: id, blobMem: BlobMem.GUEST, blobFlags: BlobFlag.USE_MAPPABLE, size: 4096, backing: true });
      expect(r.type).toBe(GpuResp.OK_NODATA);
      rings.push((r as GpuResponse & { backing: ScatterBuffer }).backing);
      await ok('CTX_ATTACH_RESOURCE', d.ctxAttach(ctx, id));
    }
    await ok('INIT', d.submit3d(ctx, initCommand(query, chan), { fence: true, ringIdx: P.QUERY_RING }));
    const channel = {
      send: (data: Uint8Array, ids: Identifier[] = []) => void d.submit3d(ctx, sendCommand(data, ids)),
      poll: async (): Promise<ChannelEvent> => {
        await ok('POLL', d.submit3d(ctx, command(P.Cmd.POLL, P.HDR.BYTES).bytes, { fence: true, ringIdx: P.CHANNEL_RING, timeoutMs: 10000 }));
        const r = rings[1].read(0, 4096), v = new DataView(r.buffer, r.byteOffset);
        if (r[0] !== P.Cmd.RECEIVE) throw new Error(`channel ring holds ${r[0]}`);
        return { cmd: 'receive', data: r.slice(P.SEND_RECEIVE.BYTES, P.SEND_RECEIVE.BYTES + v.getUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, true)), ids: [] };
      },
    };
    return { channel, queryRing: rings[0] };
  }

  it('carries a Wayland registry roundtrip to weston: the guest gets what wayland-info lists', async () => {
    const { channel } = await openChannel(CTX);
    const { globals } = await new WaylandGuestClient(channel).globals();
    const byName = (gs: Global[]) => [...gs].sort((a, b) => a.name - b.name);
    expect(byName(globals)).toEqual(byName(await weston.hostGlobals()));
    await ok('CTX_DESTROY', s.driver.ctxDestroy(CTX));
  });

  it("shows a wl_shm pool the guest wrote through its host-visible mapping in weston's screenshot", async () => {
    const d = s.driver, ctx = 2, pool = 30, W = 64, H = 48;
    const { channel, queryRing } = await openChannel(ctx);
    // The pool's memory as a guest proxy makes it: image requirements, a HOST3D blob, MAP_BLOB.
    await ok('GET_IMAGE_REQUIREMENTS', d.submit3d(ctx, imageRequirementsCommand(W, H, XR24), { fence: true, ringIdx: P.QUERY_RING }));
    const q = queryRing.read(0, P.REQS.BYTES);
    const reqs = parseRequirements(new DataView(q.buffer, q.byteOffset, q.length));
    await ok('RESOURCE_CREATE_BLOB', d.createBlob({ resourceId: pool, blobMem: BlobMem.HOST3D, blobFlags: BlobFlag.USE_MAPPABLE, size: reqs.size, blobId: reqs.blobId }, { ctxId: ctx }));
    expect((await d.mapBlob(pool, 0)).type).toBe(GpuResp.OK_MAP_INFO);
    const pixels = new Uint8Array(reqs.size);
    fillPattern(new DataView(pixels.buffer), W, H, reqs.strides[0]);
    s.frontend.shmem.write(SHM_ID_HOST_VISIBLE, 0, pixels); // the guest's stores through the BAR
    await ok('CTX_ATTACH_RESOURCE', d.ctxAttach(ctx, pool));
    await showShmBuffer(new WaylandGuestClient(channel), { id: pool, type: P.IdType.VIRTGPU_BLOB }, reqs.size, W, H, reqs.strides[0]);
    const shot = await weston.screenshot();
    expect(findPattern(shot, W, H, patternColor), 'the buffer is on the output, every pixel').toMatchObject({ wrong: 0 });
    expect((await d.unmapBlob(pool)).type).toBe(GpuResp.OK_NODATA);
    await ok('CTX_DESTROY', d.ctxDestroy(ctx));
    await ok('RESOURCE_UNREF', d.resourceUnref(pool));
    expect(backend.running).toBe(true);
  });
});
