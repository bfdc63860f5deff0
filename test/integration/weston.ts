// Debian's weston on the host for the cross-domain tests: the headless backend with the pixman
// renderer and the desktop shell, its own XDG_RUNTIME_DIR, --debug for the screenshooter protocol.
// Also the host's own view of it: wayland-info's globals and weston-screenshooter's PNG.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inflateSync } from 'node:zlib';
import type { Global } from './wayland-guest-client.js';

const run = promisify(execFile);

export class Weston {
  readonly dir: string;
  readonly socket: string;
  private readonly proc: ChildProcess;
  private log = '';

  private constructor(readonly width: number, readonly height: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-weston-'));
    chmodSync(this.dir, 0o700); // libwayland refuses a runtime dir others can read
    this.socket = join(this.dir, 'wayland-test');
    // No animations and a plain background: a screenshot shows exactly the buffers committed.
    const config = join(this.dir, 'weston.ini');
    writeFileSync(config, '[shell]\nanimation=none\nstartup-animation=none\nfocus-animation=none\nclose-animation=none\n'
      + 'panel-position=none\nbackground-color=0xff203040\n');
    this.proc = spawn('weston', ['--backend=headless-backend.so', '--use-pixman', '--socket=wayland-test', '--idle-time=0',
      '--debug', `--config=${config}`, `--width=${width}`, `--height=${height}`], {
      env: { ...process.env, XDG_RUNTIME_DIR: this.dir, WAYLAND_DISPLAY: '' },
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => (this.log = (this.log + b.toString()).slice(-8000));
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
  }

  static async start(width = 320, height = 240): Promise<Weston> {
    const w = new Weston(width, height);
    const t0 = Date.now();
    while (!existsSync(w.socket)) {
      if (w.proc.exitCode !== null || Date.now() - t0 > 15000) {
        const log = w.log;
        await w.stop();
        throw new Error(`weston did not come up:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return w;
  }

  private get clientEnv(): NodeJS.ProcessEnv {
    return { ...process.env, XDG_RUNTIME_DIR: this.dir, WAYLAND_DISPLAY: 'wayland-test' };
  }

  /** The globals as the host's wayland-info lists them. */
  async hostGlobals(): Promise<Global[]> {
    const { stdout } = await run('wayland-info', [], { env: this.clientEnv, timeout: 10000 });
    return parseWaylandInfo(stdout);
  }

  /** A screenshot of the output with weston-screenshooter: RGBA rows, top first. */
  async screenshot(): Promise<{ width: number; height: number; rgba: Uint8Array }> {
    for (const f of readdirSync(this.dir)) if (f.endsWith('.png')) rmSync(join(this.dir, f));
    await run('weston-screenshooter', [], { env: this.clientEnv, cwd: this.dir, timeout: 10000 });
    const png = readdirSync(this.dir).find((f) => f.endsWith('.png'));
    if (!png) throw new Error(`weston-screenshooter wrote no PNG:\n${this.log}`);
    return decodePng(readFileSync(join(this.dir, png)));
  }

  get output(): string {
    return this.log;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null) {
      const gone = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
      if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The globals in wayland-info's output ("interface: 'wl_shm', version: 1, name: 10" lines). */
export function parseWaylandInfo(text: string): Global[] {
  const out: Global[] = [];
  for (const m of text.matchAll(/^interface: '([^']+)',\s+version:\s+(\d+), name:\s+(\d+)/gm)) {
    out.push({ iface: m[1], version: Number(m[2]), name: Number(m[3]) });
  }
  return out;
}

/** An 8-bit RGB or RGBA, non-interlaced PNG (what cairo writes) as RGBA. */
export function decodePng(file: Buffer): { width: number; height: number; rgba: Uint8Array } {
  let at = 8, width = 0, height = 0, colorType = 0;
  const idat: Buffer[] = [];
  while (at < file.length) {
    const len = file.readUInt32BE(at), type = file.toString('latin1', at + 4, at + 8);
    const data = file.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      colorType = data[9];
      if (data[8] !== 8 || data[12] !== 0 || (colorType !== 2 && colorType !== 6)) throw new Error(`PNG depth ${data[8]} color type ${colorType} interlace ${data[12]}`);
    } else if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const bpp = colorType === 6 ? 4 : 3, stride = width * bpp;
  const img = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = img.subarray(y * stride, (y + 1) * stride), prev = y > 0 ? img.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? row[x - bpp] : 0, b = prev ? prev[x] : 0, c = prev && x >= bpp ? prev[x - bpp] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) {
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[x] = (src[x] + p) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba.set(img.subarray(i * bpp, i * bpp + 3), i * 4);
    rgba[i * 4 + 3] = bpp === 4 ? img[i * 4 + 3] : 255;
  }
  return { width, height, rgba };
}

/**
 * Where the width x height pattern (`color(x, y)`, RGB) is in a screenshot, found by its first
 * pixel, and how many of its pixels differ there; null if its first pixel is nowhere.
 */
export function findPattern(shot: { width: number; height: number; rgba: Uint8Array }, width: number, height: number,
  color: (x: number, y: number) => number): { x: number; y: number; wrong: number } | null {
  const at = (x: number, y: number) => {
    if (x >= shot.width || y >= shot.height) return -1;
    const i = (y * shot.width + x) * 4;
    return (shot.rgba[i] << 16) | (shot.rgba[i + 1] << 8) | shot.rgba[i + 2];
  };
  for (let oy = 0; oy < shot.height; oy++) {
    for (let ox = 0; ox < shot.width; ox++) {
      if (at(ox, oy) !== color(0, 0)) continue;
      let wrong = 0;
      for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (at(ox + x, oy + y) !== color(x, y)) wrong++;
      return { x: ox, y: oy, wrong };
    }
  }
  return null;
}
