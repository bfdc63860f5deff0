// A cross-domain context through the whole device against weston: the capset as --capset
// cross-domain offers it (GET_CAPSET_INFO / GET_CAPSET), CTX_CREATE with capset 5, rings that are
// guest memory resources attached with CTX_ATTACH_RESOURCE, SUBMIT_3D streams, and POLLs whose
// ring-1 fence is answered through the control queue only once weston sent something.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { Codec } from '../../src/queues/codec.js';
import { VirtQueue } from '../../src/queues/virtqueue.js';
import { GpuDevice } from '../../src/device/gpu-device.js';
import { Cmd, Resp, GpuFeature, FLAG_FENCE, FLAG_INFO_RING_IDX } from '../../src/device/protocol.js';
import { Format } from '../../src/device/formats.js';
import { WorkerContexts } from '../../src/renderers/worker-context/host.js';
import { workerCapsets } from '../../src/daemon/daemon.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { MockRam, MockRing, request } from '../unit/mock-ring.js';
import { command, sendCommand } from './cross-domain-guest.js';
import { Args, EventStream, WL, concat, message } from './wayland-wire.js';
import { Weston } from './weston.js';

const FEATURES = (1n << BigInt(GpuFeature.VIRGL)) | (1n << BigInt(GpuFeature.CONTEXT_INIT));
const CTX = 3, QUERY = 11, CHANNEL = 12;

describe('cross-domain through the device', () => {
  let weston: Weston, ram: MockRam, ring: MockRing, codec: Codec, q: VirtQueue, dev: GpuDevice, pool: WorkerContexts;
  let next = 0;

  beforeAll(async () => {
    weston = await Weston.start(320, 240);
  });
  afterAll(async () => {
    await weston?.stop();
  });
  afterEach(async () => {
    dev.reset();
    await pool.close();
  });

  function setup(): void {
    ram = new MockRam(0x1_0000_0000n, [8 << 20]);
    ring = new MockRing(ram, 256);
    codec = Codec.create();
    pool = new WorkerContexts(4);
    const display = { displayInfo: async () => null, edid: async () => null, hasScanout: () => false, scanout() {}, update: () => true, cursorUpdate() {}, cursorMove() {}, cursorHide() {} };
    dev = new GpuDevice({
      maxHostMemory: 512 << 20,
      display,
      memory: { generation: 1, translate: (g, l, e) => codec.translate(g, l, e), chunkHost: (c) => ram.chunks[c].host },
      workerCapsets: workerCapsets({ capsets: ['cross-domain'], waylandSocket: weston.socket }),
      workers: pool,
      maxContexts: 4,
    });
    dev.setAckedFeatures(FEATURES);
    q = new VirtQueue(0, codec, { responds: true, execute: (c, queue) => dev.control(c, queue) }, () => {}, () => {});
    codec.setMemory(ram.asGuestMemory());
    expect(q.start({ size: ring.size, desc: ring.desc, avail: ring.avail, used: ring.used, lastAvail: 0, eventIdx: false, indirect: true })).toBeNull();
    next = 0;
  }

  /** Queue one command; resolves with its response once the device used the chain. */
  function send(req: Uint8Array, respLen = 64): Promise<{ type: number; resp: Uint8Array }> {
    const r = ram.alloc(req.length, 8), w = ram.alloc(respLen, 8);
    ram.write(r, req);
    const head = (next++ * 2) % ring.size;
    ring.addChain([{ addr: r, len: req.length }, { addr: w, len: respLen, write: true }], head);
    q.process();
    return new Promise((resolve, reject) => {
      const t0 = Date.now();
      const poll = () => {
        const used = ring.usedIdx();
        for (let i = 0; i < used; i++) if (ring.usedElem(i).id === head && ring.ram.u32(w) !== 0) return resolve({ type: ring.ram.u32(w), resp: ram.read(w, respLen) });
        if (Date.now() - t0 > 10000) return reject(new Error('no answer'));
        setTimeout(poll, 1);
      };
      poll();
    });
  }
  const type = async (req: Uint8Array) => (await send(req)).type;

  /** A 4096-byte guest-memory resource (a 2D resource with one page of backing), attached to CTX. */
  async function ringResource(id: number): Promise<bigint> {
    expect(await type(request(Cmd.RESOURCE_CREATE_2D, [id, Format.B8G8R8X8_UNORM, 1024, 1]))).toBe(Resp.OK_NODATA);
    const page = ram.alloc(4096, 4096);
    expect(await type(request(Cmd.RESOURCE_ATTACH_BACKING, [id, 1, Number(page & 0xffffffffn), Number(page >> 32n), 4096, 0]))).toBe(Resp.OK_NODATA);
    expect(await type(request(Cmd.CTX_ATTACH_RESOURCE, [id, 0], { ctx: CTX }))).toBe(Resp.OK_NODATA);
    return page;
  }

  function submit(stream: Uint8Array, opts: { flags?: number; fence?: bigint; ring?: number } = {}): Promise<number> {
    const req = new Uint8Array(32 + stream.length);
    req.set(request(Cmd.SUBMIT_3D, [stream.length, 0], { ctx: CTX, ...opts }));
    req.set(stream, 32);
    return type(req);
  }
  let fenceId = 1n;
  const onRing = (ringIdx: number) => ({ flags: FLAG_FENCE | FLAG_INFO_RING_IDX, fence: fenceId++, ring: ringIdx });

  it('offers the capabilities, and carries a Wayland registry roundtrip through SUBMIT_3D and ring-1 fences', async () => {
    setup();
    const info = await send(request(Cmd.GET_CAPSET_INFO, [0, 0]));
    const iv = new DataView(info.resp.buffer, info.resp.byteOffset);
    expect([info.type, iv.getUint32(24, true), iv.getUint32(28, true), iv.getUint32(32, true)]).toEqual([Resp.OK_CAPSET_INFO, 5, 0, P.CAPS.BYTES]);
    const caps = await send(request(Cmd.GET_CAPSET, [5, 0]));
    expect(caps.type).toBe(Resp.OK_CAPSET);
    expect(caps.resp.subarray(24, 24 + P.CAPS.BYTES)).toEqual(P.capabilities());

    expect(await type(request(Cmd.CTX_CREATE, [4, 5, 0x7373_6f72, ...new Array(15).fill(0)], { ctx: CTX }))).toBe(Resp.OK_NODATA);
    await ringResource(QUERY);
    const channelPage = await ringResource(CHANNEL);
    const init = command(P.Cmd.INIT, P.INIT.BYTES);
    init.v.setUint32(P.INIT.QUERY_RING_ID, QUERY, true);
    init.v.setUint32(P.INIT.CHANNEL_RING_ID, CHANNEL, true);
    init.v.setUint32(P.INIT.CHANNEL_TYPE, P.CHANNEL_TYPE_WAYLAND, true);
    expect(await submit(init.bytes, onRing(P.QUERY_RING))).toBe(Resp.OK_NODATA);

    expect(await submit(sendCommand(concat([message(WL.DISPLAY, WL.display.getRegistry, [{ u: 2 }]), message(WL.DISPLAY, WL.display.sync, [{ u: 3 }])]), []))).toBe(Resp.OK_NODATA);
    const stream = new EventStream(), globals: string[] = [];
    let done = false;
    while (!done) {
      expect(await submit(command(P.Cmd.POLL, P.HDR.BYTES).bytes, onRing(P.CHANNEL_RING))).toBe(Resp.OK_NODATA);
      const r = ram.read(channelPage, 4096), v = new DataView(r.buffer, r.byteOffset);
      expect(r[0]).toBe(P.Cmd.RECEIVE);
      const size = v.getUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, true);
      for (const e of stream.feed(r.slice(P.SEND_RECEIVE.BYTES, P.SEND_RECEIVE.BYTES + size))) {
        if (e.obj === 2 && e.opcode === WL.registry.evGlobal) {
          const a = new Args(e.body);
          a.u();
          globals.push(`${a.s()} v${a.u()}`);
        }
        if (e.obj === 3 && e.opcode === WL.callback.evDone) done = true;
      }
    }
    expect(globals.sort()).toEqual((await weston.hostGlobals()).map((g) => `${g.iface} v${g.version}`).sort());

    // A fence on a ring cross-domain does not have ends the context, and only it: 2D goes on.
    expect(await submit(command(P.Cmd.POLL, P.HDR.BYTES).bytes, onRing(5))).toBe(Resp.ERR_UNSPEC);
    expect(await submit(command(P.Cmd.POLL, P.HDR.BYTES).bytes, onRing(P.QUERY_RING))).toBe(Resp.ERR_UNSPEC);
    expect(await type(request(Cmd.RESOURCE_CREATE_2D, [20, Format.B8G8R8X8_UNORM, 16, 16]))).toBe(Resp.OK_NODATA);
    expect(await type(request(Cmd.CTX_DESTROY, [], { ctx: CTX }))).toBe(Resp.OK_NODATA);
  });
});
