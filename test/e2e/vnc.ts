// Minimal RFB (VNC) client that fetches one full frame from QEMU's VNC server
// on a unix socket. Needed because QMP screendump refuses GL scanouts ("no
// surface" for virgl textures and dmabufs), while egl-headless reads every GL
// frame back into the console surface that the VNC server serves.
// Speaks RFB 3.8 with security "None", asks for 32-bit true colour and the Raw
// encoding (plus DesktopSize), and returns once every pixel has been received.
import { connect, type Socket } from 'node:net';

export interface RgbImage {
  width: number;
  height: number;
  /** Packed 8-bit RGB, row-major, no padding. */
  rgb: Uint8Array;
}

const RAW = 0;
const DESKTOP_SIZE = -223;

/** Reads exact byte counts from a socket, whatever the chunking. */
class Reader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(sock: Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      this.wake?.();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      this.wake?.();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('VNC connection closed')));
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  async u8(): Promise<number> {
    return (await this.read(1)).readUInt8(0);
  }
  async u16(): Promise<number> {
    return (await this.read(2)).readUInt16BE(0);
  }
  async u32(): Promise<number> {
    return (await this.read(4)).readUInt32BE(0);
  }
}

/** Connects to QEMU's `-vnc unix:PATH` and returns the current screen. */
export async function vncCapture(path: string): Promise<RgbImage> {
  const sock = connect(path);
  try {
    const rd = new Reader(sock);
    const version = (await rd.read(12)).toString('latin1');
    if (!/^RFB 003\.00[78]\n$/.test(version)) throw new Error(`unexpected RFB version ${JSON.stringify(version)}`);
    sock.write('RFB 003.008\n');

    const nTypes = await rd.u8();
    if (nTypes === 0) throw new Error(`VNC refused: ${(await rd.read(await rd.u32())).toString()}`);
    const types = [...(await rd.read(nTypes))];
    if (!types.includes(1)) throw new Error(`VNC offers no "None" security (types ${types.join(',')})`);
    sock.write(Buffer.from([1]));
    if ((await rd.u32()) !== 0) throw new Error(`VNC security failed: ${(await rd.read(await rd.u32())).toString()}`);

    sock.write(Buffer.from([1])); // ClientInit: shared, leave other clients alone
    let width = await rd.u16();
    let height = await rd.u16();
    await rd.read(16); // the server's pixel format; replaced below
    await rd.read(await rd.u32()); // desktop name

    // SetPixelFormat: 32 bpp, depth 24, little endian, true colour, 8 bits per
    // channel at shifts 16/8/0, so each pixel arrives as bytes B, G, R, X.
    const pf = Buffer.alloc(20);
    pf.writeUInt8(0, 0);
    pf.set([32, 24, 0, 1], 4);
    pf.writeUInt16BE(255, 8);
    pf.writeUInt16BE(255, 10);
    pf.writeUInt16BE(255, 12);
    pf.set([16, 8, 0], 14);
    const enc = Buffer.alloc(12);
    enc.writeUInt8(2, 0);
    enc.writeUInt16BE(2, 2);
    enc.writeInt32BE(RAW, 4);
    enc.writeInt32BE(DESKTOP_SIZE, 8);
    sock.write(Buffer.concat([pf, enc]));

    const requestFull = () => {
      const req = Buffer.alloc(10);
      req.writeUInt8(3, 0); // FramebufferUpdateRequest, incremental = 0
      req.writeUInt16BE(width, 6);
      req.writeUInt16BE(height, 8);
      sock.write(req);
    };
    let rgb = new Uint8Array(width * height * 3);
    let seen = new Uint8Array(width * height);
    let missing = width * height;
    requestFull();

    while (missing > 0) {
      const type = await rd.u8();
      if (type === 0) {
        // FramebufferUpdate
        await rd.read(1);
        const nRects = await rd.u16();
        for (let r = 0; r < nRects; r++) {
          const hdr = await rd.read(12);
          const x = hdr.readUInt16BE(0);
          const y = hdr.readUInt16BE(2);
          const w = hdr.readUInt16BE(4);
          const h = hdr.readUInt16BE(6);
          const encoding = hdr.readInt32BE(8);
          if (encoding === DESKTOP_SIZE) {
            width = w;
            height = h;
            rgb = new Uint8Array(width * height * 3);
            seen = new Uint8Array(width * height);
            missing = width * height;
            continue;
          }
          if (encoding !== RAW) throw new Error(`VNC sent encoding ${encoding}, which was not asked for`);
          if (x + w > width || y + h > height) throw new Error(`VNC rect ${w}x${h}+${x}+${y} outside ${width}x${height}`);
          const px = await rd.read(w * h * 4);
          for (let row = 0; row < h; row++) {
            for (let col = 0; col < w; col++) {
              const s = (row * w + col) * 4;
              const p = (y + row) * width + x + col;
              rgb[p * 3] = px[s + 2]!;
              rgb[p * 3 + 1] = px[s + 1]!;
              rgb[p * 3 + 2] = px[s]!;
              if (!seen[p]) {
                seen[p] = 1;
                missing--;
              }
            }
          }
        }
        // A full request is normally answered in one update; ask again if
        // not (e.g. after a DesktopSize change).
        if (missing > 0) requestFull();
      } else if (type === 1) {
        // SetColourMapEntries: unused with true colour; skip it.
        await rd.read(3);
        await rd.read((await rd.u16()) * 6);
      } else if (type === 2) {
        // Bell: no payload.
      } else if (type === 3) {
        // ServerCutText
        await rd.read(3);
        await rd.read(await rd.u32());
      } else {
        throw new Error(`unknown VNC server message type ${type}`);
      }
    }
    return { width, height, rgb };
  } finally {
    sock.destroy();
  }
}
