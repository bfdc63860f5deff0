// The Wayland wire format, as much as the cross-domain tests speak: requests built from typed
// arguments, events cut out of a byte stream (which arrives in arbitrary pieces). A message is
// object id (u32), then size << 16 | opcode (u32), then 32-bit aligned arguments.

export type Arg = { u: number } | { i: number } | { s: string } | { fd: true };

export function message(obj: number, opcode: number, args: Arg[] = []): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const a of args) {
    if ('fd' in a) continue; // fds travel beside the bytes
    if ('s' in a) {
      const text = new TextEncoder().encode(a.s);
      const b = new Uint8Array(4 + Math.ceil((text.length + 1) / 4) * 4);
      new DataView(b.buffer).setUint32(0, text.length + 1, true);
      b.set(text, 4);
      parts.push(b);
    } else {
      const b = new Uint8Array(4);
      if ('u' in a) new DataView(b.buffer).setUint32(0, a.u >>> 0, true);
      else new DataView(b.buffer).setInt32(0, a.i, true);
      parts.push(b);
    }
  }
  const size = 8 + parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size), v = new DataView(out.buffer);
  v.setUint32(0, obj, true);
  v.setUint32(4, (size << 16) | opcode, true);
  let at = 8;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface WireEvent {
  readonly obj: number;
  readonly opcode: number;
  readonly body: DataView;
}

/** Reads arguments of an event body in order. */
export class Args {
  private at = 0;
  constructor(private readonly v: DataView) {}
  u(): number {
    const x = this.v.getUint32(this.at, true);
    this.at += 4;
    return x;
  }
  i(): number {
    const x = this.v.getInt32(this.at, true);
    this.at += 4;
    return x;
  }
  s(): string {
    const len = this.u();
    const bytes = new Uint8Array(this.v.buffer, this.v.byteOffset + this.at, Math.max(0, len - 1));
    this.at += Math.ceil(len / 4) * 4;
    return new TextDecoder().decode(bytes);
  }
}

/** Cuts whole events out of the bytes fed to it. */
export class EventStream {
  private buf: Uint8Array<ArrayBufferLike> = new Uint8Array(0);

  feed(bytes: Uint8Array): WireEvent[] {
    this.buf = concat([this.buf, bytes]);
    const out: WireEvent[] = [];
    let at = 0;
    while (this.buf.length - at >= 8) {
      const v = new DataView(this.buf.buffer, this.buf.byteOffset + at);
      const word = v.getUint32(4, true), size = word >>> 16;
      if (size < 8) throw new Error(`event of size ${size}`);
      if (this.buf.length - at < size) break;
      out.push({ obj: v.getUint32(0, true), opcode: word & 0xffff, body: new DataView(this.buf.buffer.slice(this.buf.byteOffset + at + 8, this.buf.byteOffset + at + size)) });
      at += size;
    }
    this.buf = this.buf.slice(at);
    return out;
  }
}

/** Wayland's own opcodes the tests use. */
export const WL = {
  DISPLAY: 1,
  display: { sync: 0, getRegistry: 1, evError: 0, evDeleteId: 1 },
  registry: { bind: 0, evGlobal: 0 },
  callback: { evDone: 0 },
  compositor: { createSurface: 0 },
  shm: { createPool: 0, evFormat: 0 },
  shmPool: { createBuffer: 0 },
  surface: { attach: 1, damage: 2, frame: 3, commit: 6 },
  xdgWmBase: { getXdgSurface: 2, pong: 3, evPing: 0 },
  xdgSurface: { getToplevel: 1, ackConfigure: 4, evConfigure: 0 },
  SHM_XRGB8888: 1,
} as const;
