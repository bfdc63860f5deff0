// Cross-domain contexts against a real compositor: Debian's weston (headless, pixman) on the host.
// The test plays the guest proxy: raw Wayland requests through SEND, events back through RECEIVE,
// and checks them against what the host's own wayland-info and weston-screenshooter see.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { native } from '../../src/native.js';
import { WorkerContexts } from '../../src/renderers/worker-context/host.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { CrossDomainGuest } from './cross-domain-guest.js';
import { WaylandGuestClient, fillPattern, patternColor, showShmBuffer, type Global } from './wayland-guest-client.js';
import { Weston, findPattern } from './weston.js';

const XR24 = 0x34325258;
const byName = (gs: Global[]) => [...gs].sort((a, b) => a.name - b.name);

describe('cross-domain with weston', () => {
  let weston: Weston;
  let pool: WorkerContexts;

  beforeAll(async () => {
    weston = await Weston.start(320, 240);
  });
  afterAll(async () => {
    await weston?.stop();
  });
  afterEach(async () => {
    await pool?.close();
  });

  async function globalsOf(ctxId: number): Promise<Global[]> {
    const guest = new CrossDomainGuest(pool, ctxId, weston.socket);
    try {
      expect(await guest.init()).toBe(0);
      const { globals } = await new WaylandGuestClient(guest).globals();
      return byName(globals);
    } finally {
      await guest.destroy();
    }
  }

  it('passes wl_display.get_registry through: the guest sees the globals the host\'s wayland-info lists', async () => {
    pool = new WorkerContexts(4);
    const host = byName(await weston.hostGlobals());
    expect(host.map((g) => g.iface)).toContain('wl_shm');
    expect(await globalsOf(1)).toEqual(host);
  });

  it('gives N contexts in parallel the same answers as one at a time', async () => {
    pool = new WorkerContexts(8);
    const serial: Global[][] = [];
    for (let id = 1; id <= 4; id++) serial.push(await globalsOf(id));
    const parallel = await Promise.all([5, 6, 7, 8].map((id) => globalsOf(id)));
    expect(parallel).toEqual(serial);
    expect(new Set(serial.map((g) => JSON.stringify(g))).size).toBe(1);
  });

  it('shows a wl_shm buffer made from a host3d blob in weston\'s screenshot', async () => {
    pool = new WorkerContexts(2);
    const n = native();
    const guest = new CrossDomainGuest(pool, 1, weston.socket);
    try {
      expect(await guest.init()).toBe(0);
      // The pool's memory: image requirements, a host3d blob the context makes, written through its memfd.
      const W = 64, H = 48;
      const reqs = await guest.imageRequirements(W, H, XR24);
      expect(reqs.strides[0]).toBeGreaterThanOrEqual(W * 4);
      expect(reqs.size % 4096).toBe(0);
      const blob = await guest.host.createBlob(BigInt(reqs.blobId), reqs.size, 1);
      expect(blob.mapInfo).toBe(P.MAP_CACHE_CACHED);
      const map = n.mmap(blob.fd, blob.size, 0);
      if (typeof map === 'number') throw new Error(`mmap ${map}`);
      fillPattern(new DataView(n.view(map.addr, 0, blob.size) as ArrayBuffer), W, H, reqs.strides[0]);
      guest.host.attach(10, null, blob.fd, blob.size); // the device attaches the blob resource to the context
      n.close(blob.fd);

      await showShmBuffer(new WaylandGuestClient(guest), { id: 10, type: P.IdType.VIRTGPU_BLOB }, reqs.size, W, H, reqs.strides[0]);
      const shot = await weston.screenshot();
      expect([shot.width, shot.height]).toEqual([320, 240]);
      expect(findPattern(shot, W, H, patternColor), 'the buffer is on the output, every pixel').toMatchObject({ wrong: 0 });
      n.unmap(map.addr);
    } finally {
      await guest.destroy();
    }
  });
});
