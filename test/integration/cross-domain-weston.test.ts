// Cross-domain contexts against a real compositor: Debian's weston (headless, pixman) on the host.
// The test plays the guest proxy: raw Wayland requests through SEND, events back through RECEIVE,
// and checks them against what the host's own wayland-info and weston-screenshooter see.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { native } from '../../src/native.js';
import { WorkerContexts } from '../../src/renderers/worker-context/host.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { CrossDomainGuest } from './cross-domain-guest.js';
import { WaylandGuestClient, type Global } from './wayland-guest-client.js';
import { WL, message, concat, Args } from './wayland-wire.js';
import { Weston } from './weston.js';

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
    const wl = new WaylandGuestClient(guest);
    try {
      expect(await guest.init()).toBe(0);
      const { registry, globals } = await wl.globals();
      const g = (iface: string) => globals.find((x) => x.iface === iface)!;
      const compositor = wl.bind(registry, g('wl_compositor'), 4);
      const shm = wl.bind(registry, g('wl_shm'), 1);
      const wm = wl.bind(registry, g('xdg_wm_base'), 1);

      // The pool's memory: image requirements, a host3d blob the context makes, written through its memfd.
      const W = 64, H = 48;
      const reqs = await guest.imageRequirements(W, H, XR24);
      expect(reqs.strides[0]).toBeGreaterThanOrEqual(W * 4);
      expect(reqs.size % 4096).toBe(0);
      const blob = await guest.host.createBlob(BigInt(reqs.blobId), reqs.size, 1);
      expect(blob.mapInfo).toBe(P.MAP_CACHE_CACHED);
      const map = n.mmap(blob.fd, blob.size, 0);
      if (typeof map === 'number') throw new Error(`mmap ${map}`);
      const px = new DataView(n.view(map.addr, 0, blob.size) as ArrayBuffer);
      const color = (x: number, y: number) => (0x5a << 16) | ((x * 4) << 8) | (y * 5); // R 0x5a, G = 4x, B = 5y
      // X = 0xff: weston copies the X byte into its output, and the screenshooter reads it as alpha.
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) px.setUint32(y * reqs.strides[0] + x * 4, (0xff000000 | color(x, y)) >>> 0, true);
      guest.host.attach(10, null, blob.fd, blob.size); // the device attaches the blob resource to the context
      n.close(blob.fd);

      const pool_ = wl.newId(), buffer = wl.newId(), surface = wl.newId(), xdgSurface = wl.newId(), toplevel = wl.newId();
      wl.request(shm, WL.shm.createPool, [{ u: pool_ }, { fd: true }, { i: reqs.size }], [{ id: 10, type: P.IdType.VIRTGPU_BLOB }]);
      guest.send(concat([
        message(pool_, WL.shmPool.createBuffer, [{ u: buffer }, { i: 0 }, { i: W }, { i: H }, { i: reqs.strides[0] }, { u: WL.SHM_XRGB8888 }]),
        message(compositor, WL.compositor.createSurface, [{ u: surface }]),
        message(wm, WL.xdgWmBase.getXdgSurface, [{ u: xdgSurface }, { u: surface }]),
        message(xdgSurface, WL.xdgSurface.getToplevel, [{ u: toplevel }]),
        message(surface, WL.surface.commit),
      ]));
      let serial = -1;
      while (serial < 0) {
        const e = await wl.next();
        if (e.obj === xdgSurface && e.opcode === WL.xdgSurface.evConfigure) serial = new Args(e.body).u();
        if (e.obj === wm && e.opcode === WL.xdgWmBase.evPing) wl.request(wm, WL.xdgWmBase.pong, [{ u: new Args(e.body).u() }]);
      }
      const frame = wl.newId();
      guest.send(concat([
        message(xdgSurface, WL.xdgSurface.ackConfigure, [{ u: serial }]),
        message(surface, WL.surface.attach, [{ u: buffer }, { i: 0 }, { i: 0 }]),
        message(surface, WL.surface.damage, [{ i: 0 }, { i: 0 }, { i: W }, { i: H }]),
        message(surface, WL.surface.frame, [{ u: frame }]),
        message(surface, WL.surface.commit),
      ]));
      for (;;) {
        const e = await wl.next();
        if (e.obj === frame && e.opcode === WL.callback.evDone) break;
      }

      const shot = await weston.screenshot();
      expect([shot.width, shot.height]).toEqual([320, 240]);
      const at = (x: number, y: number) => {
        const i = (y * shot.width + x) * 4;
        return (shot.rgba[i] << 16) | (shot.rgba[i + 1] << 8) | shot.rgba[i + 2];
      };
      let origin: [number, number] | null = null;
      for (let y = 0; y < shot.height && !origin; y++) for (let x = 0; x < shot.width; x++) if (at(x, y) === color(0, 0)) { origin = [x, y]; break; }
      expect(origin, 'the buffer\'s first pixel is somewhere on the output').not.toBeNull();
      const [ox, oy] = origin!;
      let wrong = 0;
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (at(ox + x, oy + y) !== color(x, y)) wrong++;
      expect(wrong).toBe(0);
      n.unmap(map.addr);
    } finally {
      await guest.destroy();
    }
  });
});
