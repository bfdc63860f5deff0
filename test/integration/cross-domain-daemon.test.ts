// The daemon as QEMU starts it with `--capset cross-domain --wayland-socket PATH`, driven through
// the test frontend (vhost-user, guest RAM, virtqueues): the capset offered, a cross-domain
// context whose rings are guest blobs, and a Wayland registry roundtrip to weston through it.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, connectFrontend, BlobMem, BlobFlag, GpuResp } from '../frontend/index.js';
import type { BackendProcess, FrontendSession, GpuResponse } from '../frontend/index.js';
import type { ScatterBuffer } from '../frontend/guest-memory.js';
import { packagePath } from '../../src/package-path.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { command, initCommand, sendCommand, type ChannelEvent, type Identifier } from './cross-domain-guest.js';
import { WaylandGuestClient, type Global } from './wayland-guest-client.js';
import { Weston } from './weston.js';

const MiB = 1024 * 1024;
const CTX = 1, QUERY = 1, CHANNEL = 2;

describe('cross-domain through the daemon (test frontend)', () => {
  let dir: string, weston: Weston, backend: BackendProcess, s: FrontendSession;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-cd-daemon-'));
    weston = await Weston.start(320, 240);
    backend = await startBackend([process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}',
      '--capset', 'cross-domain', '--wayland-socket', weston.socket], join(dir, 'gpu.sock'));
    s = await connectFrontend(backend, {
      ram: { size: 64 * MiB },
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
    const info = await s.driver.getCapsetInfo(0);
    expect(info).toMatchObject({ capsetId: 5, maxVersion: 0, maxSize: P.CAPS.BYTES });
    const caps = await s.driver.getCapset(5, 0, P.CAPS.BYTES);
    expect(caps.data).toEqual(P.capabilities());
  });

  it('carries a Wayland registry roundtrip to weston: the guest gets what wayland-info lists', async () => {
    const d = s.driver;
    await ok('CTX_CREATE', d.ctxCreate(CTX, { contextInit: 5, name: 'sommelier' }));
    const rings: ScatterBuffer[] = [];
    for (const id of [QUERY, CHANNEL]) {
      const r = await d.createBlob({ resourceId: id, blobMem: BlobMem.GUEST, blobFlags: BlobFlag.USE_MAPPABLE, size: 4096, backing: true });
      expect(r.type).toBe(GpuResp.OK_NODATA);
      rings.push((r as GpuResponse & { backing: ScatterBuffer }).backing);
      await ok('CTX_ATTACH_RESOURCE', d.ctxAttach(CTX, id));
    }
    const init = initCommand(QUERY, CHANNEL);
    await ok('INIT', d.submit3d(CTX, init, { fence: true, ringIdx: P.QUERY_RING }));

    const channel = {
      send: (data: Uint8Array, ids: Identifier[] = []) => void d.submit3d(CTX, sendCommand(data, ids)),
      poll: async (): Promise<ChannelEvent> => {
        await ok('POLL', d.submit3d(CTX, command(P.Cmd.POLL, P.HDR.BYTES).bytes, { fence: true, ringIdx: P.CHANNEL_RING, timeoutMs: 10000 }));
        const r = rings[1].read(0, 4096), v = new DataView(r.buffer, r.byteOffset);
        if (r[0] !== P.Cmd.RECEIVE) throw new Error(`channel ring holds ${r[0]}`);
        return { cmd: 'receive', data: r.slice(P.SEND_RECEIVE.BYTES, P.SEND_RECEIVE.BYTES + v.getUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, true)), ids: [] };
      },
    };
    const { globals } = await new WaylandGuestClient(channel).globals();
    const byName = (gs: Global[]) => [...gs].sort((a, b) => a.name - b.name);
    expect(byName(globals)).toEqual(byName(await weston.hostGlobals()));
    await ok('CTX_DESTROY', d.ctxDestroy(CTX));
  });
});
