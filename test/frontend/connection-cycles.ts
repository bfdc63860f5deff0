/**
 * Connect/disconnect cycles of a front-end against one back-end, the ways QEMU (or something that
 * only claims to be QEMU) comes and goes: gone before the handshake, gone in the middle of a
 * vhost-user message (with fds in flight), gone after a handshake without stopping the rings,
 * and gone in the middle of a batch of 1080p frames. Plus what the back-end process holds
 * (/proc/<pid>/fd and status), for the lifecycle test and bench.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { native, check } from '../../src/native.js';
import { connectFrontend } from './index.js';
import type { FrontendSession } from './index.js';
import type { BatchResult } from './gpu-batch.js';
import { VhostUserRequest, VHOST_USER_VERSION, VHOST_USER_FLAG_NEED_REPLY, GpuFormat } from './constants.js';

export const CYCLE_KINDS = [
  /** connect, close */
  'bare',
  /** connect, 6 bytes of a header, close */
  'half-header',
  /** connect, a SET_MEM_TABLE header and half its payload with the region's memfd, close */
  'half-payload',
  /** the whole bring-up, one command answered, GET_VRING_BASE on both rings, close */
  'handshake-stop',
  /** the whole bring-up, resources created, then half a message and close without stopping */
  'handshake-abandoned',
  /** the whole bring-up, a 1080p scanout, a batch of full-frame TRANSFER/FLUSH in flight, close */
  'mid-frame',
] as const;
export type CycleKind = (typeof CYCLE_KINDS)[number];

export const FRAME_W = 1920;
export const FRAME_H = 1080;
const FRAME_BYTES = FRAME_W * FRAME_H * 4;
/** Frames queued before the front-end goes away in a 'mid-frame' cycle. */
const FRAMES_IN_FLIGHT = 4;
const REGION_SIZE = 32;

/** A vhost-user header as it goes on the wire (for messages built or cut by hand). */
export function rawHeader(request: number, flags: number, size: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  return b;
}

function send(fd: number, bytes: Uint8Array, fds: number[] | null = null): void {
  const r = native().sendMsg(fd, [bytes], fds);
  if (r !== bytes.length) throw new Error(`send: ${r}`);
}

/** Half of a SET_MEM_TABLE with one region, its memfd riding on the first bytes. */
function sendHalfMemTable(fd: number): void {
  const mem = check('memfd', native().memfdCreate('cycle-region', 1 << 20));
  try {
    const payload = new Uint8Array(8 + REGION_SIZE);
    const v = new DataView(payload.buffer);
    v.setUint32(0, 1, true);
    v.setBigUint64(8, 0x1_0000_0000n, true);
    v.setBigUint64(16, 1n << 20n, true);
    send(fd, rawHeader(VhostUserRequest.SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY, payload.length), [mem]);
    send(fd, payload.subarray(0, 20));
  } finally {
    native().close(mem);
  }
}

async function handshake(socketPath: string, display?: { width: number; height: number }): Promise<FrontendSession> {
  return connectFrontend(socketPath, {
    ram: { size: display ? 16 << 20 : 4 << 20, name: 'cycle-ram' },
    controlSize: 64,
    cursorSize: 16,
    display: { displays: display ? [{ ...display, enabled: true }] : undefined, surfaces: false, recordEvents: false },
    vringErr: true,
    timeoutMs: 5000,
  });
}

/**
 * One cycle against the listening socket. Resolves once the front-end side is closed (the
 * back-end notices on its own time). `rng` picks the moment a 'mid-frame' cycle hangs up.
 */
export async function runCycle(kind: CycleKind, socketPath: string, rng: () => number = Math.random): Promise<void> {
  if (kind === 'bare' || kind === 'half-header' || kind === 'half-payload') {
    const fd = check(`connect ${socketPath}`, native().connectUnix(socketPath));
    try {
      if (kind === 'half-header') send(fd, rawHeader(VhostUserRequest.GET_FEATURES, VHOST_USER_VERSION, 0).subarray(0, 6));
      if (kind === 'half-payload') sendHalfMemTable(fd);
    } finally {
      native().close(fd);
    }
    return;
  }
  const s = await handshake(socketPath, kind === 'mid-frame' ? { width: FRAME_W, height: FRAME_H } : undefined);
  try {
    if (kind === 'handshake-stop') {
      const r = await s.driver.getDisplayInfo();
      if (!r.ok) throw new Error(`GET_DISPLAY_INFO answered 0x${r.type.toString(16)}`);
      await s.frontend.stop([s.control, s.cursor]);
    } else if (kind === 'handshake-abandoned') {
      for (let id = 1; id <= 4; id++) await s.driver.resourceCreate2d(id, GpuFormat.B8G8R8X8_UNORM, 64, 64);
      sendHalfMemTable(s.frontend.channel.fd);
    } else {
      await midFrame(s, rng);
    }
  } finally {
    s.close();
  }
}

async function midFrame(s: FrontendSession, rng: () => number): Promise<void> {
  // The batch dies with the connection; its rejection is expected.
  (await queueFullFrames(s, FRAMES_IN_FLIGHT)).done.catch(() => {});
  // Hang up at once or after a little of the batch ran.
  const wait = Math.floor(rng() * 3);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

/**
 * Show a 1920x1080 resource on scanout 0 (the session's RAM needs 8 MiB free and its display a
 * 1080p mode), then queue and kick `frames` full-frame TRANSFER_TO_HOST_2D + RESOURCE_FLUSH
 * without waiting: `done` is the batch's completion.
 */
export async function queueFullFrames(s: FrontendSession, frames: number, timeoutMs?: number): Promise<{ done: Promise<BatchResult> }> {
  const d = s.driver;
  const backing = s.ram.alloc(FRAME_BYTES, 4096);
  s.ram.fill(backing, FRAME_BYTES, 0x5a);
  const steps = [
    await d.resourceCreate2d(1, GpuFormat.B8G8R8X8_UNORM, FRAME_W, FRAME_H),
    await d.attachBacking(1, [{ gpa: backing, len: FRAME_BYTES }]),
    await d.setScanout(0, 1, 0, 0, FRAME_W, FRAME_H),
  ];
  const bad = steps.find((r) => !r.ok);
  if (bad) throw new Error(`1080p scanout setup answered 0x${bad.type.toString(16)}`);
  const batch = d.batch();
  for (let i = 0; i < frames; i++) batch.transferToHost2d(1, 0, 0, FRAME_W, FRAME_H, 0).resourceFlush(1, 0, 0, FRAME_W, FRAME_H);
  return { done: batch.submit(timeoutMs) };
}

/** A deterministic mix of n cycles: mostly cheap ones, every kind present. */
export function cyclePlan(n: number, rng: () => number): CycleKind[] {
  // Weights: the cheap kinds make up the count, the handshakes and frames the variety.
  const weights: [CycleKind, number][] = [
    ['bare', 30], ['half-header', 20], ['half-payload', 20], ['handshake-stop', 15], ['handshake-abandoned', 10], ['mid-frame', 5],
  ];
  const total = weights.reduce((a, [, w]) => a + w, 0);
  const plan: CycleKind[] = CYCLE_KINDS.slice(0, Math.min(n, CYCLE_KINDS.length));
  while (plan.length < n) {
    let r = rng() * total;
    const k = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'bare';
    plan.push(k);
  }
  return plan;
}

/** A small seeded generator (mulberry32), so a plan can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Open fds of a process. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What each fd of a process points at (for a leak report). */
export function fdTargets(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((f) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${f}`);
    } catch {
      return '?'; // closed meanwhile
    }
  });
}

/** Current and peak resident set of a process, KiB (VmRSS, VmHWM). */
export function memoryKiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/** Number of memory mappings of a process (guest RAM mappings that outlived their session show here). */
export function mappingCount(pid: number): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.length > 0).length;
}
