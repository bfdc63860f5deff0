// The device's context registry with real worker contexts (the probe context type): CTX_CREATE
// routing by capset id, limits, per-ring fenced answers through a real VirtQueue, and a lost
// context failing alone while 2D and other contexts go on.
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { Codec } from '../../src/queues/codec.js';
import { VirtQueue } from '../../src/queues/virtqueue.js';
import { GpuDevice } from '../../src/device/gpu-device.js';
import { Cmd, Resp, GpuFeature, FLAG_FENCE, FLAG_INFO_RING_IDX } from '../../src/device/protocol.js';
import { Format } from '../../src/device/formats.js';
import { WorkerContexts } from '../../src/renderers/worker-context/host.js';
import { MockRam, MockRing, request, submitAndWait } from './mock-ring.js';
import { PROBE } from './probe-context.js';

const PROBE_CAPSET = 5;
const data = Uint8Array.of(1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
const ALL = (1n << BigInt(GpuFeature.VIRGL)) | (1n << BigInt(GpuFeature.CONTEXT_INIT)) | (1n << BigInt(GpuFeature.EDID));

describe('device: worker contexts', () => {
  let ram: MockRam, ring: MockRing, codec: Codec, q: VirtQueue, dev: GpuDevice, pool: WorkerContexts;
  let next = 0;

  function setup(maxContexts = 4, features = ALL): void {
    ram = new MockRam(0x1_0000_0000n, [8 << 20]);
    ring = new MockRing(ram, 256);
    codec = Codec.create();
    pool = new WorkerContexts(maxContexts);
    const display = { displayInfo: async () => null, edid: async () => null, hasScanout: () => false, scanout() {}, update: () => true, cursorUpdate() {}, cursorMove() {}, cursorHide() {} };
    dev = new GpuDevice({
      maxHostMemory: 512 << 20,
      display,
      memory: { generation: 1, translate: (g, l, e) => codec.translate(g, l, e), chunkHost: (c) => ram.chunks[c].host, mappings: () => [] },
      workerCapsets: [{ id: PROBE_CAPSET, name: 'probe', maxVersion: 0, maxSize: data.length, data, runner: PROBE }],
      workers: pool,
      maxContexts,
    });
    dev.setAckedFeatures(features);
    q = new VirtQueue(0, codec, { responds: true, execute: (c, queue) => dev.control(c, queue) }, () => {}, () => {});
    codec.setMemory(ram.asGuestMemory());
    expect(q.start({ size: ring.size, desc: ring.desc, avail: ring.avail, used: ring.used, lastAvail: 0, eventIdx: false, indirect: true })).toBeNull();
    next = 0;
  }

  afterEach(async () => {
    dev.reset();
    await pool.close();
  });

  /** Queue one command; resolves with the response type once its chain is used. */
  async function send(req: Uint8Array): Promise<number> {
    const resp = await submitAndWait(ring, q, req, (next++ * 2) % ring.size);
    return new DataView(resp.buffer, resp.byteOffset).getUint32(0, true);
  }
  const pending = async (p: Promise<number>) => Promise.race([p, new Promise<string>((r) => setTimeout(() => r('pending'), 150))]);

  const create = (ctx: number, capset = PROBE_CAPSET) => send(request(Cmd.CTX_CREATE, [4, capset, 0x626f7270, ...new Array(15).fill(0)], { ctx }));
  const submit = (ctx: number, s: string, opts: { flags?: number; fence?: bigint; ring?: number } = {}) => {
    const b = new TextEncoder().encode(s);
    const words = [b.length, 0];
    const req = new Uint8Array(24 + 8 + b.length);
    req.set(request(Cmd.SUBMIT_3D, words, { ctx, ...opts }));
    req.set(b, 32);
    return send(req);
  };
  const fenced = (ring: number, fence: bigint) => ({ flags: FLAG_FENCE | FLAG_INFO_RING_IDX, fence, ring });

  it('offers the capset and routes CTX_CREATE by capset id', async () => {
    setup();
    expect(dev.features() & ALL).toBe(ALL);
    expect(new DataView(dev.config().buffer).getUint32(12, true)).toBe(1);
    expect(await send(request(Cmd.GET_CAPSET_INFO, [0, 0]))).toBe(Resp.OK_CAPSET_INFO);
    expect(await send(request(Cmd.GET_CAPSET_INFO, [1, 0]))).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await send(request(Cmd.GET_CAPSET, [PROBE_CAPSET, 0]))).toBe(Resp.OK_CAPSET);
    expect(await create(1)).toBe(Resp.OK_NODATA);
    expect(await create(1)).toBe(Resp.ERR_INVALID_CONTEXT_ID);
    expect(await create(0)).toBe(Resp.ERR_INVALID_CONTEXT_ID);
    expect(await create(2, 77)).toBe(Resp.ERR_INVALID_PARAMETER);
    expect(await create(3, 0)).toBe(Resp.OK_NODATA); // default type: the first capset offered
    expect(await submit(9, 'signal')).toBe(Resp.ERR_INVALID_CONTEXT_ID);
    expect(await send(request(Cmd.CTX_ATTACH_RESOURCE, [42, 0], { ctx: 1 }))).toBe(Resp.ERR_INVALID_RESOURCE_ID);
    expect(await send(request(Cmd.CTX_DESTROY, [], { ctx: 1 }))).toBe(Resp.OK_NODATA);
    expect(await submit(1, 'signal')).toBe(Resp.ERR_INVALID_CONTEXT_ID);
    expect(await create(1)).toBe(Resp.OK_NODATA); // the id is free again
  });

  it('refuses context commands without VIRGL negotiated', async () => {
    setup(4, 1n << BigInt(GpuFeature.EDID));
    expect(await create(1)).toBe(Resp.ERR_UNSPEC);
  });

  it('answers global-timeline fences without waiting for a held ring, ring fences after their ring', async () => {
    setup();
    await create(1);
    const held = submit(1, 'nop', fenced(1, 10n));
    const held2 = submit(1, 'nop', fenced(1, 11n));
    expect(await submit(1, 'nop', { flags: FLAG_FENCE, fence: 12n })).toBe(Resp.OK_NODATA);
    expect(await submit(1, 'nop', fenced(0, 13n))).toBe(Resp.OK_NODATA);
    expect(await pending(held)).toBe('pending');
    expect(await submit(1, 'signal')).toBe(Resp.OK_NODATA);
    expect(await held).toBe(Resp.OK_NODATA);
    expect(await pending(held2)).toBe('pending');
    await submit(1, 'signal');
    expect(await held2).toBe(Resp.OK_NODATA);
  });

  it('holds ring 1 answers until the context signals them', async () => {
    setup();
    await create(1);
    const a = submit(1, 'signal', fenced(2, 1n));
    const b = send(request(Cmd.CTX_DETACH_RESOURCE, [0, 0], { ctx: 1, ...fenced(1, 5n) }));
    expect(await a).toBe(Resp.OK_NODATA);
    expect(await pending(b)).toBe('pending');
    expect(await submit(1, 'signal')).toBe(Resp.OK_NODATA);
    expect(await b).toBe(Resp.ERR_INVALID_RESOURCE_ID); // refused, but answered only after its fence
    expect(await submit(1, 'nop', fenced(64, 6n))).toBe(Resp.ERR_INVALID_PARAMETER); // ring_idx > 63
  });

  it('fails only the lost context: its commands get ERR_UNSPEC, others and 2D go on', async () => {
    setup();
    await create(1);
    await create(2);
    const f = submit(1, 'nop', fenced(1, 3n));
    expect(await submit(1, 'throw')).toBe(Resp.OK_NODATA); // unfenced: answered before the worker runs it
    expect(await f).toBe(Resp.ERR_UNSPEC);
    expect(await submit(1, 'signal')).toBe(Resp.ERR_UNSPEC);
    expect(await submit(1, 'signal', fenced(0, 4n))).toBe(Resp.ERR_UNSPEC);
    expect(await submit(2, 'signal', fenced(0, 1n))).toBe(Resp.OK_NODATA);
    expect(await send(request(Cmd.RESOURCE_CREATE_2D, [1, Format.B8G8R8X8_UNORM, 16, 16]))).toBe(Resp.OK_NODATA);
    expect(await send(request(Cmd.CTX_DESTROY, [], { ctx: 1 }))).toBe(Resp.OK_NODATA);
  });

  it('a killed worker is reported lost; the guest gets errors, not threads, when it creates contexts in a loop', async () => {
    setup(3);
    await create(1);
    dev.contextRegistry!.workerContext(1)!.kill();
    await new Promise((r) => setTimeout(r, 100));
    expect(await submit(1, 'signal', fenced(0, 1n))).toBe(Resp.ERR_UNSPEC);
    const answers: number[] = [];
    for (let id = 2; id < 40; id++) answers.push(await create(id));
    expect(answers.filter((a) => a === Resp.OK_NODATA)).toHaveLength(2); // 3 in all, the lost one counts until destroyed
    expect(new Set(answers.slice(2))).toEqual(new Set([Resp.ERR_OUT_OF_MEMORY]));
    expect(pool.count).toBeLessThanOrEqual(3);
  });
});
