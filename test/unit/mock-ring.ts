/**
 * A driver-side split ring in plain memory for codec tests (like vm-virtio's mock.rs): guest RAM
 * is an ArrayBuffer split into chunks, the codec sees it through a GuestMemory-shaped object.
 */
import { Codec } from '../../src/queues/codec.js';
import { memfdMapping } from '../frontend/guest-memory.js';
import { makeChunk, type GuestMemory, type Chunk } from '../../src/transport/guest-memory.js';

export { memfdMapping };

export const F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;

export class MockRam {
  readonly chunks: Chunk[] = [];
  private next: bigint;

  /** RAM of `sizes` bytes per chunk, contiguous from `base`. */
  constructor(readonly base = 0x1_0000_0000n, sizes: number[] = [1 << 20]) {
    let at = base;
    for (const len of sizes) {
      // Real mappings (memfd + mmap), as the daemon has: the addon's bulk copies check them.
      const { map, ab } = memfdMapping('mock-ram', len);
      this.chunks.push(makeChunk(at, Number(map.addr), ab));
      at += BigInt(len);
    }
    this.next = base;
  }

  get end(): bigint {
    const last = this.chunks[this.chunks.length - 1];
    return last.gpa + BigInt(last.len);
  }

  asGuestMemory(): GuestMemory {
    return { chunks: this.chunks, generation: 1 } as unknown as GuestMemory;
  }

  alloc(len: number, align = 16): bigint {
    const a = BigInt(align);
    this.next = ((this.next + a - 1n) / a) * a;
    const at = this.next;
    this.next += BigInt(len);
    return at;
  }

  /** Move the allocator to gpa (to place buffers across a chunk boundary). */
  seek(gpa: bigint): void {
    this.next = gpa;
  }

  private locate(gpa: bigint): [Chunk, number] {
    for (const c of this.chunks) if (gpa >= c.gpa && gpa < c.gpa + BigInt(c.len)) return [c, Number(gpa - c.gpa)];
    throw new Error(`gpa 0x${gpa.toString(16)} outside mock RAM`);
  }

  write(gpa: bigint, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const [c, o] = this.locate(gpa + BigInt(i));
      c.bytes[o] = data[i];
    }
  }

  read(gpa: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const [c, o] = this.locate(gpa + BigInt(i));
      out[i] = c.bytes[o];
    }
    return out;
  }

  u16(gpa: bigint, v?: number): number {
    const [c, o] = this.locate(gpa);
    if (v !== undefined) c.view.setUint16(o, v, true);
    return c.view.getUint16(o, true);
  }

  u32(gpa: bigint, v?: number): number {
    const [c, o] = this.locate(gpa);
    if (v !== undefined) c.view.setUint32(o, v, true);
    return c.view.getUint32(o, true);
  }
}

export interface Desc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

export class MockRing {
  readonly desc: bigint;
  readonly avail: bigint;
  readonly used: bigint;
  availIdx = 0;
  usedSeen = 0;

  constructor(readonly ram: MockRam, readonly size = 16) {
    this.desc = ram.alloc(16 * size, 16);
    this.avail = ram.alloc(6 + 2 * size, 2);
    this.used = ram.alloc(6 + 8 * size, 4);
  }

  setDesc(i: number, d: Desc, table = this.desc): void {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, d.addr, true);
    v.setUint32(8, d.len, true);
    v.setUint16(12, d.flags, true);
    v.setUint16(14, d.next, true);
    this.ram.write(table + BigInt(i * 16), b);
  }

  /** Chain descriptors 0..n-1 of `bufs` starting at index `first`, and make it available. */
  addChain(bufs: { addr: bigint; len: number; write?: boolean }[], first = 0): number {
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.setDesc(first + k, { addr: b.addr, len: b.len, flags: (b.write ? F_WRITE : 0) | (last ? 0 : F_NEXT), next: first + k + 1 });
    });
    this.publish(first);
    return first;
  }

  publish(head: number): void {
    this.ram.u16(this.avail + BigInt(4 + 2 * (this.availIdx % this.size)), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.ram.u16(this.avail + 2n, this.availIdx);
  }

  usedIdx(): number {
    return this.ram.u16(this.used + 2n);
  }

  usedElem(i: number): { id: number; len: number } {
    const at = this.used + BigInt(4 + 8 * (i % this.size));
    return { id: this.ram.u32(at), len: this.ram.u32(at + 4n) };
  }

  setup(codec: Codec, q = 0, features = { eventIdx: false, indirect: true }): number {
    codec.setMemory(this.ram.asGuestMemory());
    return codec.setupQueue(q, this.size, this.desc, this.avail, this.used, (features.eventIdx ? 1 : 0) | (features.indirect ? 2 : 0), 0);
  }
}

/** A virtio-gpu request: 24-byte header then u32 words. */
export function request(type: number, words: number[] = [], opts: { flags?: number; fence?: bigint; ctx?: number; ring?: number } = {}): Uint8Array {
  const b = new Uint8Array(24 + words.length * 4);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, opts.flags ?? 0, true);
  v.setBigUint64(8, opts.fence ?? 0n, true);
  v.setUint32(16, opts.ctx ?? 0, true);
  v.setUint8(20, opts.ring ?? 0);
  words.forEach((w, i) => v.setUint32(24 + i * 4, w >>> 0, true));
  return b;
}

/**
 * Queue one control command on `ring` (head `head`, a 64-byte response buffer), let `q` process it
 * and resolve with the response bytes once the device used the chain (it may answer later).
 */
export function submitAndWait(ring: MockRing, q: { process(): void }, req: Uint8Array, head: number): Promise<Uint8Array> {
  const ram = ring.ram;
  const r = ram.alloc(req.length, 8), w = ram.alloc(64, 8);
  ram.write(r, req);
  ring.addChain([{ addr: r, len: req.length }, { addr: w, len: 64, write: true }], head);
  q.process();
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = () => {
      const n = ring.usedIdx();
      for (let i = 0; i < n; i++) {
        const u = ring.usedElem(i);
        if (u.id === head && ram.u32(w) !== 0) return resolve(ram.read(w, u.len));
      }
      if (Date.now() - t0 > 5000) return reject(new Error(`no answer to 0x${new DataView(req.buffer, req.byteOffset).getUint32(0, true).toString(16)}`));
      setTimeout(poll, 2);
    };
    poll();
  });
}
