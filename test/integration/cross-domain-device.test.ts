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
import { command, initCommand, sendCommand } from './cross-domain-guest.js';
import { Args, EventStream, WL, concat, message } from './wayland-wire.js';
import { WaylandGuestClient, fillPattern, patternColor, showShmBuffer, type CrossDomainChannel } from './wayland-guest-client.js';
import { Weston, findPattern } from './weston.js';
import { native } from '../../src/native.js';
import type { HostVisibleRegion } from '../../src/device/host-visible.js';
import type { ChannelEvent, Identifier } from './cross-domain-guest.js';

const FEATURES = (1n << BigInt(GpuFeature.VIRGL)) | (1n << BigInt(GpuFeature.CONTEXT_INIT)) | (1n << BigInt(GpuFeature.RESOURCE_BLOB));
const BLOB_MEM_GUEST = 1, BLOB_MEM_HOST3D = 2, BLOB_MAPPABLE = 1, BLOB_SHAREABLE = 2;
const XR24 = 0x34325258;

/** The front-end's host-visible region, as QEMU's SHMEM maps it: each mapping an mmap of the blob's fd. */
class MmapRegion implements HostVisibleRegion {
  readonly views = new Map<number, { addr: bigint; view: DataView }>();
  constructor(readonly size: number) {}
  async map(offset: number, length: number, fd: number, fdOffset: number): Promise<void> {
    const m = native().mmap(fd, length, fdOffset);
    if (typeof m === 'number') throw new Error(`mmap ${m}`);
    this.views.set(offset, { addr: m.addr, view: new DataView(native().view(m.addr, 0, length) as ArrayBuffer) });
  }
  async unmap(offset: number): Promise<void> {
    native().unmap(this.views.get(offset)!.addr);
    this.views.delete(offset);
  }
}
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
      memory: { generation: 1, translate: (g, l, e) => codec.translate(g, l, e), chunkHost: (c) => ram.chunks[c].host, mappings: () => [] },
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

  /** A RESOURCE_CREATE_BLOB request: guest memory on one fresh page, or host memory from CTX. */
  async function createBlob(id: number, mem: number, blobId: number, size: number): Promise<{ type: number; page: bigint }> {
    const page = ram.alloc(size, 4096);
    const words = [id, mem, BLOB_MAPPABLE | BLOB_SHAREABLE, mem === BLOB_MEM_GUEST ? 1 : 0, blobId, 0, size, 0];
    if (mem === BLOB_MEM_GUEST) words.push(Number(page & 0xffffffffn), Number(page >> 32n), size, 0);
    return { type: await type(request(Cmd.RESOURCE_CREATE_BLOB, words, { ctx: CTX })), page };
  }

  /** The guest proxy's side, through the device: SEND as SUBMIT_3D, POLL with a fence on ring 1. */
  function deviceChannel(channelPage: bigint): CrossDomainChannel {
    return {
      send: (data: Uint8Array, ids: Identifier[] = []) => void submit(sendCommand(data, ids)),
      poll: async (): Promise<ChannelEvent> => {
        const t = await submit(command(P.Cmd.POLL, P.HDR.BYTES).bytes, onRing(P.CHANNEL_RING));
        if (t !== Resp.OK_NODATA) throw new Error(`POLL answered 0x${t.toString(16)}`);
        const r = ram.read(channelPage, 4096), v = new DataView(r.buffer, r.byteOffset);
        if (r[0] !== P.Cmd.RECEIVE) throw new Error(`channel ring holds ${r[0]}`);
        const count = v.getUint32(P.SEND_RECEIVE.NUM_IDENTIFIERS, true), size = v.getUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, true);
        const ids = Array.from({ length: count }, (_, i) => ({ id: v.getUint32(P.SEND_RECEIVE.IDENTIFIERS + 4 * i, true), type: v.getUint32(P.SEND_RECEIVE.TYPES + 4 * i, true) }));
        return { cmd: 'receive', data: r.slice(P.SEND_RECEIVE.BYTES, P.SEND_RECEIVE.BYTES + size), ids };
      },
    };
  }

  it('shows a wl_shm buffer the guest made as RESOURCE_CREATE_BLOB HOST3D, mapped with MAP_BLOB and written there', async () => {
    setup();
    const region = new MmapRegion(64 << 20);
    dev.setHostVisible(region);
    expect(await type(request(Cmd.CTX_CREATE, [4, 5, 0x7373_6f72, ...new Array(15).fill(0)], { ctx: CTX }))).toBe(Resp.OK_NODATA);
    // The rings as Linux guests make them: guest blobs, attached to the context.
    const query = await createBlob(QUERY, BLOB_MEM_GUEST, 0, 4096), channel = await createBlob(CHANNEL, BLOB_MEM_GUEST, 0, 4096);
    expect([query.type, channel.type]).toEqual([Resp.OK_NODATA, Resp.OK_NODATA]);
    for (const id of [QUERY, CHANNEL]) expect(await type(request(Cmd.CTX_ATTACH_RESOURCE, [id, 0], { ctx: CTX }))).toBe(Resp.OK_NODATA);
    const init = initCommand(QUERY, CHANNEL);
    expect(await submit(init, onRing(P.QUERY_RING))).toBe(Resp.OK_NODATA);

    const W = 64, H = 40;
    const req = command(P.Cmd.GET_IMAGE_REQUIREMENTS, P.GET_REQS.BYTES);
    req.v.setUint32(P.GET_REQS.WIDTH, W, true);
    req.v.setUint32(P.GET_REQS.HEIGHT, H, true);
    req.v.setUint32(P.GET_REQS.DRM_FORMAT, XR24, true);
    expect(await submit(req.bytes, onRing(P.QUERY_RING))).toBe(Resp.OK_NODATA);
    const q = ram.read(query.page, P.REQS.BYTES), qv = new DataView(q.buffer, q.byteOffset);
    const stride = qv.getUint32(P.REQS.STRIDES, true), size = Number(qv.getBigUint64(P.REQS.SIZE, true)), blobId = qv.getUint32(P.REQS.BLOB_ID, true);

    const POOL = 30;
    expect((await createBlob(POOL, BLOB_MEM_HOST3D, blobId, size)).type).toBe(Resp.OK_NODATA);
    expect((await createBlob(31, BLOB_MEM_HOST3D, blobId, size + 4096)).type).toBe(Resp.ERR_INVALID_PARAMETER); // not the size required
    expect((await createBlob(32, BLOB_MEM_HOST3D, 999, size)).type).toBe(Resp.ERR_INVALID_PARAMETER); // no such identifier
    expect(await type(request(Cmd.CTX_ATTACH_RESOURCE, [POOL, 0], { ctx: CTX }))).toBe(Resp.OK_NODATA);
    const mapped = await send(request(Cmd.RESOURCE_MAP_BLOB, [POOL, 0, 0x10000, 0]));
    expect([mapped.type, new DataView(mapped.resp.buffer, mapped.resp.byteOffset).getUint32(24, true)]).toEqual([Resp.OK_MAP_INFO, P.MAP_CACHE_CACHED]);
    fillPattern(region.views.get(0x10000)!.view, W, H, stride); // the guest writes through its mapping

    await showShmBuffer(new WaylandGuestClient(deviceChannel(channel.page)), { id: POOL, type: P.IdType.VIRTGPU_BLOB }, size, W, H, stride);
    expect(findPattern(await weston.screenshot(), W, H, patternColor), 'the buffer is on the output, every pixel').toMatchObject({ wrong: 0 });
    expect(await type(request(Cmd.RESOURCE_UNMAP_BLOB, [POOL, 0]))).toBe(Resp.OK_NODATA);
    expect(region.views.size).toBe(0);
    expect(await type(request(Cmd.CTX_DESTROY, [], { ctx: CTX }))).toBe(Resp.OK_NODATA);
  });

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
    const init = initCommand(QUERY, CHANNEL);
    expect(await submit(init, onRing(P.QUERY_RING))).toBe(Resp.OK_NODATA);

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
