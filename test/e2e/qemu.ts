// End-to-end harness: boots the guest from build-guest.sh in QEMU (TCG) with a
// vhost-user-gpu-pci device served by an external backend process, waits for
// the guest's serial marker, grabs a QMP screendump (a VNC capture for the
// in-process GL device, see RunGuestOptions.display) and tears everything down.
// Node APIs only, so the same harness drives the C reference backend and ours.
//
// Three guest images: '2d' (default; paints a pattern into /dev/fb0), '3d'
// (virgl: runs kmscube on the guest's Mesa, see guest-init-3d.sh) and 'shmem'
// (blob-map maps a cross-domain host3d blob and trades a pattern with the
// host, see guest-init-shmem.sh), plus 'wayland' (wayland-proxy carries
// wayland-info and a wl_shm client to the host's weston over a cross-domain
// channel, see guest-init-wayland.sh). Three device set-ups: 'vhost-user' (default;
// an external backend process), 'in-process-gl' (QEMU's own virtio-gpu-gl-pci
// with virglrenderer, rendering with the host's Mesa llvmpipe through
// egl-headless: the 3D reference) and 'vhost-user-test-device' (QEMU 11.1's
// generic vhost-user-test-device-pci, which maps the backend's SHMEM regions
// into the guest; no console, so no screenshot).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath } from '../../src/package-path.js';
import { promisify } from 'node:util';
import { vncCapture } from './vnc.js';

// The scripts live in the source tree (also when this file runs compiled, from dist/ for bench:3d).
const here = packagePath('test/e2e');
const execFileP = promisify(execFile);

export const QEMU_BIN = process.env.E2E_QEMU ?? 'qemu-system-x86_64';
/**
 * The generic vhost-user device as a virtio-gpu (virtio-id 16, control + cursor
 * queue). config_size=16: without it the guest reads a zeroed config space
 * (no scanouts) instead of asking the backend.
 */
export const TEST_DEVICE = 'vhost-user-test-device-pci,chardev=vgpu,virtio-id=16,num_vqs=2,config_size=16';
export const REFERENCE_BACKEND = ['/usr/lib/qemu/vhost-user-gpu', '--socket-path', '{socket}'];
/** Printed by guest-init.sh once the pattern is in /dev/fb0. */
export const PATTERN_MARKER = 'E2E: pattern written';
/** Printed by guest-init-3d.sh once kmscube has reported and renders on in the background. */
export const GL_DONE_MARKER = 'E2E: gl done';
/** Printed by guest-init-shmem.sh once blob-map has succeeded, just before it powers off. */
export const SHMEM_DONE_MARKER = 'E2E: blob-map done';
/** Printed by wayland-proxy's shm client once weston has presented its buffer; the window then stays. */
export const WAYLAND_SHOWN_MARKER = /E2E: wayland-shm shown (\d+)x(\d+)[^\n]*/;
/** Printed by guest-init.sh on any failure; no point waiting any longer. */
export const FAIL_MARKER = /E2E: FAIL[^\n]*/;
/**
 * QEMU -display for GL device models without a host GPU. egl-headless insists
 * on a render node; given /dev/null, Mesa's GBM fails to identify it and falls
 * back to its software (swrast) screen, so virglrenderer renders with llvmpipe.
 * Plain `-display egl-headless` fails here: there is no /dev/dri/renderD* at all.
 */
export const GL_HEADLESS_DISPLAY = 'egl-headless,rendernode=/dev/null';
// fbcon=map:9 maps every console to a framebuffer that never exists, so fbcon
// never takes over fb0 and cannot draw text or a cursor over the pattern.
// panic=-1 (+ QEMU -no-reboot) turns a guest panic into a prompt QEMU exit.
export const DEFAULT_APPEND =
  'console=ttyS0 quiet panic=-1 rdinit=/init fbcon=map:9 vt.global_cursor_default=0';

export interface Screenshot {
  width: number;
  height: number;
  /** Packed 8-bit RGB, row-major, no padding. */
  rgb: Uint8Array;
}

export type GuestImage = '2d' | '3d' | 'shmem' | 'wayland';
export type GpuDevice = 'vhost-user' | 'in-process-gl' | 'vhost-user-test-device';

/** What a SerialHook's run gets. */
export interface SerialHookContext {
  serialLog: string;
  /** The marker's match (for a string marker: just that string). */
  match: RegExpExecArray;
  /** The backend's pid, while it runs (undefined for 'in-process-gl'). */
  backendPid: number | undefined;
}

/** Host-side work the guest waits for: run once, when its marker first shows up on the serial console. */
export interface SerialHook {
  marker: string | RegExp;
  /**
   * Awaited before the serial log is followed further (the guest and QEMU keep
   * running meanwhile), within the run's timeout. A throw fails the run, with
   * every log in the error.
   */
  run: (ctx: SerialHookContext) => void | Promise<void>;
}

export interface RunGuestOptions {
  /** Which image build-guest.sh makes. Default '2d'. */
  guest?: GuestImage;
  /**
   * 'vhost-user' (default): vhost-user-gpu-pci served by backendCmd.
   * 'in-process-gl': QEMU's own virtio-gpu-gl-pci (virgl), no backend process.
   * 'vhost-user-test-device': TEST_DEVICE served by backendCmd (QEMU 11.1 or
   * newer, see qemuBin); it has no console, so there is no screenshot.
   */
  device?: GpuDevice;
  /** Backend argv, required unless 'in-process-gl'; every "{socket}" is replaced by the vhost-user socket path. */
  backendCmd?: string[];
  /** The QEMU binary. Default QEMU_BIN. */
  qemuBin?: string;
  /**
   * QEMU -display. Default 'none' for 'vhost-user', GL_HEADLESS_DISPLAY for
   * 'in-process-gl' (which needs a GL display; a virgl vhost-user backend
   * would too).
   *
   * Capture: 'in-process-gl' is read over VNC, because QMP screendump refuses
   * GL scanouts ("no surface") while egl-headless copies each GL frame into the
   * surface the VNC server serves. 'vhost-user' always uses screendump: QEMU
   * rejects a VNC display on a vhost-user-gpu console ("The console requires
   * display DMABUF support"), so dmabuf scanouts from a vhost-user backend
   * cannot be captured by this harness yet.
   */
  display?: string;
  /** Whole run budget: build, boot, marker and screendump. Default 120 s. */
  timeoutMs?: number;
  /**
   * Serial output that means "ready for the screendump". Default:
   * PATTERN_MARKER (2d), GL_DONE_MARKER (3d), SHMEM_DONE_MARKER (shmem),
   * WAYLAND_SHOWN_MARKER (wayland).
   */
  marker?: string | RegExp;
  /** Host-side steps the guest waits for before it prints the marker. */
  onSerial?: SerialHook[];
  /**
   * After the marker (and the screenshot, if any), wait for QEMU to exit by
   * itself: the guest powers off, and -no-reboot ends QEMU. GuestRun.qemuExit
   * then tells how it went.
   */
  waitForPowerOff?: boolean;
  /** Kernel command line. */
  append?: string;
  backendEnv?: NodeJS.ProcessEnv;
  backendCwd?: string;
  /** Appended to the QEMU command line. */
  extraQemuArgs?: string[];
  /**
   * Guest RAM, shared with the backend through a memfd. Default 512 (2d),
   * 1024 (3d: its ~220 MB initramfs is held twice while the kernel unpacks it).
   */
  memMiB?: number;
  /**
   * The guest's write to /dev/fb0 reaches the screen asynchronously (fbdev
   * damage worker -> backend -> QEMU console), so the screendump is retried
   * until this returns true or the timeout hits. Default: take one shot.
   */
  screenshotUntil?: (shot: Screenshot) => boolean;
  /** Keep the temp dir (logs, sockets, screendumps) for debugging. Also E2E_KEEP_TMP=1. */
  keepTmp?: boolean;
}

export interface GuestRun {
  serialLog: string;
  /** null for 'vhost-user-test-device' (capture 'none'). */
  screenshot: Screenshot | null;
  /**
   * How the screenshot was taken: 'vnc' for 'in-process-gl', 'none' for
   * 'vhost-user-test-device', else 'screendump' (see RunGuestOptions.display).
   */
  capture: 'screendump' | 'vnc' | 'none';
  /** Empty for 'in-process-gl'. */
  backendStderr: string;
  backendStdout: string;
  qemuStderr: string;
  /** Whether the backend was still running when the screendump was taken (always true for 'in-process-gl'). */
  backendAliveAtScreendump: boolean;
  /** With waitForPowerOff: how QEMU ended by itself. Otherwise null (the harness stopped it). */
  qemuExit: { code: number | null; signal: NodeJS.Signals | null } | null;
  qemuArgs: string[];
  /** Milliseconds from QEMU start to the marker, and for the whole run. */
  bootMs: number;
  totalMs: number;
}

/** Thrown on any failure; carries every log so the test output explains it. */
export class GuestRunError extends Error {
  constructor(
    reason: string,
    readonly serialLog: string,
    readonly backendStderr: string,
    readonly qemuStderr: string,
  ) {
    super(
      `${reason}\n` +
        section('serial log (tail)', serialLog) +
        section('backend stderr (tail)', backendStderr) +
        section('qemu stderr (tail)', qemuStderr),
    );
    this.name = 'GuestRunError';
  }
}

function section(title: string, text: string): string {
  const tail = text.length > 6000 ? '…' + text.slice(-6000) : text;
  return `--- ${title} ---\n${tail.trimEnd() || '(empty)'}\n`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects if p has not settled by the deadline (e.g. QEMU's main loop is stuck). */
async function beforeDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out`)), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

const DEFAULT_MARKERS: Record<GuestImage, string | RegExp> = {
  '2d': PATTERN_MARKER, '3d': GL_DONE_MARKER, shmem: SHMEM_DONE_MARKER, wayland: WAYLAND_SHOWN_MARKER,
};

const guestPromises = new Map<GuestImage, Promise<{ kernel: string; initrd: string }>>();

/** Runs build-guest.sh once per process and image (it is a no-op when cached). */
export function buildGuest(guest: GuestImage = '2d'): Promise<{ kernel: string; initrd: string }> {
  let guestPromise = guestPromises.get(guest);
  if (guestPromise) return guestPromise;
  guestPromise = (async () => {
    const flag = guest === '2d' ? [] : [`--${guest}`];
    const { stdout } = await execFileP('bash', [join(here, 'build-guest.sh'), ...flag], {
      // The 3D image copies ~220 MB; allow for a slow disk.
      timeout: guest === '3d' ? 300_000 : 120_000,
      maxBuffer: 1 << 20,
    });
    const dir = stdout.trim().split('\n').pop() ?? '';
    const kernel = join(dir, 'vmlinuz');
    const initrd = join(dir, 'initramfs.cpio');
    if (!existsSync(kernel) || !existsSync(initrd)) {
      throw new Error(`build-guest.sh printed "${dir}", which has no vmlinuz/initramfs.cpio`);
    }
    return { kernel, initrd };
  })();
  guestPromises.set(guest, guestPromise);
  guestPromise.catch(() => guestPromises.delete(guest)); // allow a retry
  return guestPromise;
}

let qemu11Promise: Promise<string> | undefined;

/**
 * QEMU 11.1 (needed for 'vhost-user-test-device'): the wrapper that
 * scripts/setup-qemu-11.sh prints, run once per process (a no-op when
 * test/e2e/.cache/qemu-11 is set up; else it fetches ~160 MB from Debian sid).
 * E2E_QEMU11 names another binary instead.
 */
export function setupQemu11(): Promise<string> {
  if (process.env.E2E_QEMU11) return Promise.resolve(process.env.E2E_QEMU11);
  qemu11Promise ??= (async () => {
    const { stdout } = await execFileP('bash', [packagePath('scripts/setup-qemu-11.sh')], {
      timeout: 600_000,
      maxBuffer: 1 << 20,
    });
    const bin = stdout.trim().split('\n').pop() ?? '';
    if (!existsSync(bin)) throw new Error(`setup-qemu-11.sh printed "${bin}", which does not exist`);
    return bin;
  })();
  qemu11Promise.catch(() => (qemu11Promise = undefined)); // allow a retry
  return qemu11Promise;
}

/** A child process with its output captured and its exit remembered. */
class Proc {
  stdout = '';
  stderr = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  spawnError: Error | null = null;
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;

  constructor(
    readonly name: string,
    argv: string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string },
  ) {
    // detached: own process group, so teardown also reaches anything the
    // command spawned (e.g. a shell wrapper around the real backend).
    this.child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.stderr += `\n[harness] failed to start ${argv[0]}: ${err.message}\n`;
        this.spawnError = err;
        this.exit ??= { code: null, signal: null };
        resolve();
      });
      // 'close' (not 'exit'): stdout/stderr are fully drained by then.
      this.child.on('close', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
    live.add(this);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  describeExit(): string {
    if (!this.exit) return `${this.name} is running`;
    if (this.spawnError) return `${this.name} failed to start (${this.spawnError.message})`;
    return this.exit.signal
      ? `${this.name} was killed by ${this.exit.signal}`
      : `${this.name} exited with code ${this.exit.code}`;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exit || this.pid === undefined) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        this.child.kill(sig);
      } catch {
        /* already gone */
      }
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within graceMs. */
  async stop(graceMs = 3000): Promise<void> {
    this.signal('SIGTERM');
    const timer = sleep(graceMs).then(() => 'timeout' as const);
    if ((await Promise.race([this.exited.then(() => 'done' as const), timer])) === 'timeout') {
      this.signal('SIGKILL');
      await this.exited;
    }
    live.delete(this);
  }
}

// Last resort if the test runner exits mid-run: do not leave QEMU behind.
const live = new Set<Proc>();
process.once('exit', () => {
  for (const p of live) p.signal('SIGKILL');
});

/** Minimal QMP client: one JSON object per line over a unix socket. */
class Qmp {
  private buf = '';
  private nextId = 1;
  private waiters = new Map<string, (msg: Record<string, unknown>) => void>();
  private greeting!: Promise<void>;
  private closed: Error | null = null;

  private constructor(private readonly sock: Socket) {}

  static async open(path: string, deadline: number): Promise<Qmp> {
    for (;;) {
      try {
        const sock = connect(path);
        await once(sock, 'connect');
        const qmp = new Qmp(sock);
        qmp.listen();
        try {
          await beforeDeadline(qmp.greeting, deadline, 'QMP greeting');
          await beforeDeadline(qmp.execute('qmp_capabilities'), deadline, 'qmp_capabilities');
        } catch (err) {
          qmp.close();
          throw err;
        }
        return qmp;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`QMP connect to ${path}: ${String(err)}`);
        await sleep(100);
      }
    }
  }

  private listen(): void {
    let greeted!: () => void;
    let notGreeted!: (err: Error) => void;
    this.greeting = new Promise((resolve, reject) => {
      greeted = resolve;
      notGreeted = reject;
    });
    this.sock.setEncoding('utf8');
    this.sock.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('QMP' in msg) greeted();
        else if ('id' in msg) this.waiters.get(String(msg.id))?.(msg);
        // Asynchronous events ({"event": ...}) are not needed here.
      }
    });
    const fail = (err: Error) => {
      this.closed = err;
      notGreeted(err); // no-op once greeted
      for (const w of this.waiters.values()) w({ error: { desc: err.message } });
      this.waiters.clear();
    };
    this.sock.on('error', fail);
    this.sock.on('close', () => fail(new Error('QMP socket closed')));
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) throw this.closed;
    const id = String(this.nextId++);
    const reply = new Promise<Record<string, unknown>>((r) => this.waiters.set(id, r));
    this.sock.write(JSON.stringify({ execute: command, arguments: args, id }) + '\n');
    const msg = await reply;
    this.waiters.delete(id);
    if ('error' in msg) throw new Error(`QMP ${command}: ${JSON.stringify(msg.error)}`);
    return msg.return;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Parses binary PPM (P6, maxval 255), which is what QEMU's screendump writes by default. */
export function parsePpm(data: Uint8Array): Screenshot {
  let pos = 0;
  const token = (): string => {
    // Skip whitespace and '#' comments between header fields.
    for (;;) {
      while (pos < data.length && /\s/.test(String.fromCharCode(data[pos]!))) pos++;
      if (data[pos] !== 0x23) break;
      while (pos < data.length && data[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < data.length && !/\s/.test(String.fromCharCode(data[pos]!))) pos++;
    return String.fromCharCode(...data.subarray(start, pos));
  };
  const magic = token();
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  pos++; // exactly one whitespace byte before the raster
  if (magic !== 'P6' || !(width > 0) || !(height > 0) || maxval !== 255) {
    throw new Error(`unsupported PPM header: ${magic} ${width} ${height} ${maxval}`);
  }
  const size = width * height * 3;
  if (data.length - pos < size) {
    throw new Error(`PPM truncated: ${data.length - pos} raster bytes, want ${size}`);
  }
  return { width, height, rgb: data.slice(pos, pos + size) };
}

export type Rgb = readonly [number, number, number];
/** The bands guest-init.sh paints, left to right. */
export const BANDS: readonly { name: string; rgb: Rgb }[] = [
  { name: 'red', rgb: [255, 0, 0] },
  { name: 'green', rgb: [0, 255, 0] },
  { name: 'blue', rgb: [0, 0, 255] },
  { name: 'white', rgb: [255, 255, 255] },
];

export function pixelAt(shot: Screenshot, x: number, y: number): Rgb {
  const i = (y * shot.width + x) * 3;
  return [shot.rgb[i]!, shot.rgb[i + 1]!, shot.rgb[i + 2]!];
}

/** Band index at column x, with the guest's split: width/4 each, remainder to the last. */
export function bandAt(x: number, width: number): number {
  return Math.min(3, Math.floor(x / Math.floor(width / 4)));
}

export interface BandCheck {
  ok: boolean;
  /** Human-readable mismatches (the first few), empty when ok. */
  problems: string[];
  mismatchedPixels: number;
}

/**
 * Checks the four-band pattern exactly: the centre of each band at the top,
 * middle and bottom (reported by name), and then every pixel of the image, so
 * stray console text, a cursor or an off-by-one band edge also fails.
 */
export function checkFourBands(shot: Screenshot): BandCheck {
  const problems: string[] = [];
  const { width, height } = shot;
  if (width < 8 || height < 2) {
    return { ok: false, problems: [`screenshot too small: ${width}x${height}`], mismatchedPixels: width * height };
  }
  const bw = Math.floor(width / 4);
  const fmt = (c: Rgb) => `rgb(${c.join(',')})`;
  for (let b = 0; b < 4; b++) {
    const x0 = b * bw;
    const x1 = b === 3 ? width : x0 + bw;
    const x = Math.floor((x0 + x1) / 2);
    for (const y of [0, Math.floor(height / 2), height - 1]) {
      const got = pixelAt(shot, x, y);
      const want = BANDS[b]!.rgb;
      if (got.some((v, i) => v !== want[i])) {
        problems.push(`${BANDS[b]!.name} band centre (${x},${y}) is ${fmt(got)}, want ${fmt(want)}`);
      }
    }
  }
  let mismatchedPixels = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const want = BANDS[bandAt(x, width)]!.rgb;
      const i = (y * width + x) * 3;
      if (shot.rgb[i] !== want[0] || shot.rgb[i + 1] !== want[1] || shot.rgb[i + 2] !== want[2]) {
        if (++mismatchedPixels <= 5) {
          problems.push(`pixel (${x},${y}) is ${fmt(pixelAt(shot, x, y))}, want ${fmt(want)}`);
        }
      }
    }
  }
  if (mismatchedPixels > 0) problems.push(`${mismatchedPixels} of ${width * height} pixels differ`);
  return { ok: problems.length === 0, problems, mismatchedPixels };
}

export interface GlReport {
  /** GL_RENDERER as kmscube printed it, e.g. "virgl (LLVMPIPE (LLVM 15.0.6, 256 bits))". */
  renderer: string;
  /** Frames kmscube timed (it starts the clock at the second frame), the time and their rate. */
  frames: number;
  secs: number;
  fps: number;
}

/** The 3D guest's "E2E: GL_RENDERER: ..." and "E2E: gl frames=N secs=S fps=F" lines, if both are present. */
export function parseGlReport(serialLog: string): GlReport | null {
  const r = /E2E: GL_RENDERER: ([^\n]*)/.exec(serialLog);
  const f = /E2E: gl frames=(\d+) secs=([\d.]+) fps=([\d.]+)/.exec(serialLog);
  return r && f ? { renderer: r[1]!.trim(), frames: +f[1]!, secs: +f[2]!, fps: +f[3]! } : null;
}

export interface ColourStats {
  /** Number of distinct RGB values. */
  distinct: number;
  /** The most common colour and the share of pixels that have it (0..1). */
  dominant: Rgb;
  dominantShare: number;
}

/** Colour statistics of a screenshot, to tell a rendered scene from a blank or single-colour screen. */
export function colourStats(shot: Screenshot): ColourStats {
  const counts = new Map<number, number>();
  const { rgb } = shot;
  for (let i = 0; i + 2 < rgb.length; i += 3) {
    const key = (rgb[i]! << 16) | (rgb[i + 1]! << 8) | rgb[i + 2]!;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  let best = 0;
  let bestCount = 0;
  for (const [key, n] of counts) {
    if (n > bestCount) {
      best = key;
      bestCount = n;
    }
  }
  const pixels = Math.max(1, shot.width * shot.height);
  return {
    distinct: counts.size,
    dominant: [(best >> 16) & 255, (best >> 8) & 255, best & 255],
    dominantShare: bestCount / pixels,
  };
}

/** "E2E: fb0 ready WxH bpp=32 stride=N" from the serial log, if present. */
export function parseFbInfo(serialLog: string): { width: number; height: number; bpp: number; stride: number } | null {
  const m = /E2E: fb0 ready (\d+)x(\d+) bpp=(\d+) stride=(\d+)/.exec(serialLog);
  return m ? { width: +m[1]!, height: +m[2]!, bpp: +m[3]!, stride: +m[4]! } : null;
}

async function waitForSocket(path: string, backend: Proc, deadline: number): Promise<void> {
  for (;;) {
    try {
      if ((await stat(path)).isSocket()) return;
    } catch {
      /* not there yet */
    }
    if (backend.exit) throw new Error(`${backend.describeExit()} before creating ${path}`);
    if (Date.now() > deadline) throw new Error(`backend did not create ${path} in time`);
    await sleep(50);
  }
}

/** The marker's first match in log, or null. */
function matchMarker(marker: string | RegExp, log: string): RegExpExecArray | null {
  if (typeof marker !== 'string') return new RegExp(marker.source, marker.flags.replace('g', '')).exec(log);
  const at = log.indexOf(marker);
  if (at < 0) return null;
  const m = [marker] as unknown as RegExpExecArray;
  m.index = at;
  m.input = log;
  return m;
}

/** Boots the guest (against backendCmd unless 'in-process-gl') and returns its serial log and a screenshot. */
export function runGuest(
  opts: RunGuestOptions & { device: 'vhost-user-test-device' },
): Promise<GuestRun & { screenshot: null }>;
export function runGuest(
  opts: RunGuestOptions & { device?: 'vhost-user' | 'in-process-gl' },
): Promise<GuestRun & { screenshot: Screenshot }>;
export async function runGuest(opts: RunGuestOptions): Promise<GuestRun> {
  const started = Date.now();
  const deadline = started + (opts.timeoutMs ?? 120_000);
  const keepTmp = opts.keepTmp ?? process.env.E2E_KEEP_TMP === '1';
  const image = opts.guest ?? '2d';
  const device = opts.device ?? 'vhost-user';
  const external = device !== 'in-process-gl';
  if (external && !opts.backendCmd?.length) {
    throw new Error(`runGuest: device '${device}' needs backendCmd`);
  }
  const display = opts.display ?? (device === 'in-process-gl' ? GL_HEADLESS_DISPLAY : 'none');
  const capture = device === 'in-process-gl' ? 'vnc' : device === 'vhost-user-test-device' ? 'none' : 'screendump';
  const qemuBin = opts.qemuBin ?? QEMU_BIN;
  const mem = opts.memMiB ?? (image === '3d' ? 1024 : 512);
  // Short path: unix socket paths are limited to ~107 bytes.
  const tmp = await mkdtemp(join(tmpdir(), 'vgpu-e2e-'));
  const sock = join(tmp, 'gpu.sock');
  const qmpSock = join(tmp, 'qmp.sock');
  const vncSock = join(tmp, 'vnc.sock');
  const serialPath = join(tmp, 'serial.log');

  let backend: Proc | undefined;
  let qemu: Proc | undefined;
  let qmp: Qmp | undefined;
  let serialLog = '';
  const readSerial = async () => {
    serialLog = await readFile(serialPath, 'utf8').catch(() => serialLog);
    return serialLog;
  };
  const teardown = async () => {
    qmp?.close();
    // QEMU first: it is the vhost-user client, so the backend then sees a
    // clean disconnect rather than a peer vanishing mid-request.
    await qemu?.stop();
    await backend?.stop();
  };

  try {
    const guest = await buildGuest(image);

    if (external) {
      const backendArgv = opts.backendCmd!.map((a) => a.replaceAll('{socket}', sock));
      backend = new Proc('backend', backendArgv, { env: opts.backendEnv, cwd: opts.backendCwd });
      await waitForSocket(sock, backend, Math.min(deadline, Date.now() + 30_000));
    }

    // vhost-user: the backend maps guest RAM, so RAM must be a shareable fd
    // (memfd, share=on) and be the NUMA node's memory so all of it is shared.
    // The in-process device gets the same memory set-up, so that runs of the
    // two device kinds differ in the device only.
    const gpuArgs =
      device === 'vhost-user'
        ? ['-chardev', `socket,id=vgpu,path=${sock}`, '-device', 'vhost-user-gpu-pci,chardev=vgpu']
        : device === 'vhost-user-test-device'
          ? ['-chardev', `socket,id=vgpu,path=${sock}`, '-device', TEST_DEVICE]
          : ['-device', 'virtio-gpu-gl-pci'];
    const qemuArgs = [
      '-machine', 'q35,accel=tcg',
      '-m', `${mem}M`,
      '-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
      '-numa', 'node,memdev=mem',
      '-nodefaults', '-no-user-config',
      '-display', display,
      ...(capture === 'vnc' ? ['-vnc', `unix:${vncSock}`] : []),
      '-no-reboot',
      '-serial', `file:${serialPath}`,
      '-kernel', guest.kernel,
      '-initrd', guest.initrd,
      '-append', opts.append ?? DEFAULT_APPEND,
      ...gpuArgs,
      '-qmp', `unix:${qmpSock},server=on,wait=off`,
      ...(opts.extraQemuArgs ?? []),
    ];
    const qemuStarted = Date.now();
    qemu = new Proc('qemu', [qemuBin, ...qemuArgs], {});

    // Follow the serial log until the marker, a guest failure, or a death,
    // running each hook as its marker shows up.
    const marker =
      opts.marker ?? DEFAULT_MARKERS[image];
    const hooks = (opts.onSerial ?? []).map((hook) => ({ hook, fired: false }));
    for (;;) {
      // Exits first: once QEMU has gone, the log read after it is complete.
      const qemuGone = qemu.exit !== null;
      const backendGone = backend?.exit != null;
      const log = await readSerial();
      const f = FAIL_MARKER.exec(log);
      if (f) throw new Error(`guest reported failure: ${f[0]}`);
      for (const h of hooks) {
        const match = h.fired ? null : matchMarker(h.hook.marker, log);
        if (!match) continue;
        h.fired = true;
        const what = `host step at serial marker ${String(h.hook.marker)}`;
        try {
          const ctx = { serialLog: log, match, backendPid: backend?.exit ? undefined : backend?.pid };
          await beforeDeadline(Promise.resolve().then(() => h.hook.run(ctx)), deadline, what);
        } catch (err) {
          throw new Error(`${what} failed: ${(err as Error).message}`);
        }
      }
      if (matchMarker(marker, log)) break;
      if (qemuGone) throw new Error(`${qemu.describeExit()} before the marker`);
      if (backendGone) throw new Error(`${backend!.describeExit()} before the marker`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for serial marker ${String(marker)}`);
      await sleep(100);
    }
    const bootMs = Date.now() - qemuStarted;

    if (capture === 'screendump') qmp = await Qmp.open(qmpSock, deadline);
    let screenshot: Screenshot | null = null;
    let backendAliveAtScreendump = !backend?.exit;
    for (let n = 0; capture !== 'none'; n++) {
      const file = join(tmp, `screendump-${n}.ppm`);
      backendAliveAtScreendump = !backend?.exit;
      try {
        if (qmp) {
          await beforeDeadline(qmp.execute('screendump', { filename: file }), deadline, 'QMP screendump');
          screenshot = parsePpm(await readFile(file));
        } else {
          screenshot = await beforeDeadline(vncCapture(vncSock), deadline, 'VNC capture');
        }
      } catch (err) {
        throw new Error(`${capture} failed: ${(err as Error).message}`);
      }
      if (!opts.screenshotUntil || opts.screenshotUntil(screenshot)) break;
      await sleep(250);
      // Out of time or a process died: the caller judges the last shot.
      if (qemu.exit || backend?.exit || Date.now() > deadline - 5000) break;
    }
    let qemuExit: GuestRun['qemuExit'] = null;
    if (opts.waitForPowerOff) {
      await beforeDeadline(qemu.exited, deadline, 'guest power-off (QEMU exit)');
      qemuExit = qemu.exit;
    }
    await readSerial();
    const result: GuestRun = {
      serialLog,
      screenshot,
      capture,
      backendStderr: backend?.stderr ?? '',
      backendStdout: backend?.stdout ?? '',
      qemuStderr: qemu.stderr,
      backendAliveAtScreendump,
      qemuExit,
      qemuArgs: [qemuBin, ...qemuArgs],
      bootMs,
      totalMs: Date.now() - started,
    };
    await teardown();
    return result;
  } catch (err) {
    // Stop everything first so the logs in the error are complete (a crashing
    // backend's last words, QEMU's complaint about the disconnect).
    const states = [qemu, backend].filter((p) => p).map((p) => p!.describeExit());
    await teardown();
    await readSerial();
    throw new GuestRunError(
      `${(err as Error).message}${keepTmp ? ` (kept ${tmp})` : ''}` +
        (states.length ? `\nat failure: ${states.join('; ')}` : ''),
      serialLog,
      backend?.stderr ?? '',
      qemu?.stderr ?? '',
    );
  } finally {
    await teardown(); // no-op unless something above threw mid-teardown
    if (!keepTmp) await rm(tmp, { recursive: true, force: true });
  }
}
