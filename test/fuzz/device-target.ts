/**
 * The device behind a real daemon process (bin/vhost-gpu.js, 2D or --gpu-mode virglrenderer),
 * driven through the test frontend with random command sequences: every command type with
 * structured, colliding ids and edge-case sizes, random bytes, fences, both queues. The daemon
 * runs in a child process, so a crash of the daemon is a finding, not the fuzzer's death; so is
 * a crash of virglrenderer, which the daemon survives (its render server is restarted).
 *
 * Invariants: every batch is answered in time, the daemon and its render server stay alive, their
 * fds and RSS stay bounded, and the daemon still answers GET_DISPLAY_INFO properly.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, connectFrontend, fdCount, memoryKiB, GpuCmd, GpuResp, GPU_FLAG_FENCE, GPU_FLAG_INFO_RING_IDX } from '../frontend/index.js';
import type { BackendProcess, FrontendSession } from '../frontend/index.js';
import { packagePath } from '../../src/package-path.js';
import { Rng } from './rng.js';
import { MAX_FINDINGS, b64, unb64, type Finding, type FuzzReport, type FuzzRunOptions, type FuzzTarget } from './target.js';

const MiB = 1 << 20;
const BATCH = 24;
const BATCH_TIMEOUT_MS = 10_000;
/** Batches kept as the reproducer of a finding: since the daemon started, up to this many. */
const HISTORY = 8192;
// Creation, backing and transfers appear more often, so later commands find resources to act on.
const CMDS_2D = [
  GpuCmd.RESOURCE_CREATE_2D, GpuCmd.RESOURCE_CREATE_2D, GpuCmd.RESOURCE_ATTACH_BACKING, GpuCmd.RESOURCE_ATTACH_BACKING,
  GpuCmd.TRANSFER_TO_HOST_2D, GpuCmd.TRANSFER_TO_HOST_2D, GpuCmd.SET_SCANOUT, GpuCmd.RESOURCE_FLUSH,
  GpuCmd.GET_DISPLAY_INFO, GpuCmd.RESOURCE_CREATE_2D, GpuCmd.RESOURCE_UNREF, GpuCmd.SET_SCANOUT, GpuCmd.RESOURCE_FLUSH,
  GpuCmd.TRANSFER_TO_HOST_2D, GpuCmd.RESOURCE_ATTACH_BACKING, GpuCmd.RESOURCE_DETACH_BACKING, GpuCmd.GET_CAPSET_INFO,
  GpuCmd.GET_CAPSET, GpuCmd.GET_EDID, GpuCmd.RESOURCE_ASSIGN_UUID, GpuCmd.RESOURCE_CREATE_BLOB, GpuCmd.SET_SCANOUT_BLOB,
  GpuCmd.RESOURCE_MAP_BLOB, GpuCmd.RESOURCE_UNMAP_BLOB, GpuCmd.CTX_CREATE, GpuCmd.CTX_DESTROY,
];
const CMDS_3D = [
  GpuCmd.CTX_CREATE, GpuCmd.CTX_ATTACH_RESOURCE, GpuCmd.RESOURCE_CREATE_3D, GpuCmd.SUBMIT_3D, GpuCmd.SUBMIT_3D, GpuCmd.TRANSFER_TO_HOST_3D,
  GpuCmd.CTX_CREATE, GpuCmd.CTX_DESTROY, GpuCmd.CTX_ATTACH_RESOURCE, GpuCmd.CTX_DETACH_RESOURCE, GpuCmd.RESOURCE_CREATE_3D,
  GpuCmd.TRANSFER_TO_HOST_3D, GpuCmd.TRANSFER_FROM_HOST_3D, GpuCmd.SUBMIT_3D,
];
const FORMATS = [1, 2, 3, 4, 67, 68, 121, 134];

interface Command { bytes: Uint8Array; respLen: number; cursor: boolean }

class CommandGen {
  /** Guest pages commands may name as backing (inside the frontend's RAM). */
  constructor(private readonly r: Rng, private readonly scratch: number, private readonly scratchLen: number, private readonly virgl: boolean) {}

  private id(): number { return this.r.chance(0.95) ? 1 + this.r.below(5) : this.r.edgy(); }
  private ctx(): number { return this.r.chance(0.95) ? 1 + this.r.below(3) : this.r.edgy(); }
  private dim(): number { return this.r.chance(0.8) ? 1 + this.r.below(128) : this.r.edgy(); }
  private small(): number { return this.r.chance(0.8) ? this.r.below(64) : this.r.edgy(); }

  private gpa(): bigint {
    const r = this.r;
    if (r.chance(0.9)) return BigInt(this.scratch + 4096 * r.below(this.scratchLen / 4096));
    return BigInt(r.edgy()) << BigInt(r.below(40));
  }

  private entries(n: number): number[] {
    const w: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = this.gpa();
      w.push(Number(a & 0xffffffffn), Number(a >> 32n), this.r.chance(0.9) ? 4096 * (1 + this.r.below(4)) : this.r.edgy(), 0);
    }
    return w;
  }

  private args(type: number): number[] {
    const r = this.r;
    switch (type) {
      case GpuCmd.RESOURCE_CREATE_2D: return [this.id(), r.chance(0.9) ? r.pick(FORMATS) : r.edgy(), this.dim(), this.dim()];
      case GpuCmd.RESOURCE_UNREF: case GpuCmd.RESOURCE_DETACH_BACKING: case GpuCmd.RESOURCE_ASSIGN_UUID: case GpuCmd.RESOURCE_UNMAP_BLOB: return [this.id(), 0];
      case GpuCmd.SET_SCANOUT: return [this.small(), this.small(), this.dim(), this.dim(), r.chance(0.9) ? r.below(2) : r.edgy(), this.id()];
      case GpuCmd.RESOURCE_FLUSH: return [this.small(), this.small(), this.dim(), this.dim(), this.id(), 0];
      case GpuCmd.TRANSFER_TO_HOST_2D: return [this.small(), this.small(), this.dim(), this.dim(), r.edgy(), r.chance(0.9) ? 0 : r.u32(), this.id(), 0];
      case GpuCmd.RESOURCE_ATTACH_BACKING: {
        const n = r.chance(0.9) ? 1 + r.below(8) : r.edgy();
        return [this.id(), n, ...this.entries(Math.min(n, 64) - (r.chance(0.1) ? 1 : 0))];
      }
      case GpuCmd.GET_CAPSET_INFO: return [this.small(), 0];
      case GpuCmd.GET_CAPSET: return [this.small(), this.small()];
      case GpuCmd.GET_EDID: return [this.small(), 0];
      case GpuCmd.RESOURCE_CREATE_BLOB: {
        const n = r.below(4);
        return [this.id(), r.chance(0.9) ? 1 + r.below(3) : r.edgy(), r.below(8), n, r.below(4), 0, r.chance(0.8) ? 4096 * n : r.edgy(), 0, ...this.entries(n)];
      }
      case GpuCmd.SET_SCANOUT_BLOB: return [this.small(), this.small(), this.dim(), this.dim(), r.below(2), this.id(), this.dim(), this.dim(), r.chance(0.9) ? r.pick(FORMATS) : r.edgy(), 0, r.edgy(), r.edgy(), r.edgy(), r.edgy(), r.edgy(), r.edgy(), r.edgy(), r.edgy()];
      case GpuCmd.RESOURCE_MAP_BLOB: return [this.id(), 0, r.edgy(), 0];
      case GpuCmd.CTX_CREATE: return [r.below(80), r.chance(0.8) ? r.below(6) : r.edgy(), ...Array.from({ length: 16 }, () => 0x41414141)];
      case GpuCmd.CTX_DESTROY: return [];
      case GpuCmd.CTX_ATTACH_RESOURCE: case GpuCmd.CTX_DETACH_RESOURCE: return [this.id(), 0];
      case GpuCmd.RESOURCE_CREATE_3D:
        return [this.id(), r.chance(0.8) ? r.below(9) : r.edgy(), r.chance(0.8) ? r.pick(FORMATS) : r.edgy(), r.chance(0.8) ? r.pick([2, 8, 10, 0x100]) : r.edgy(),
          this.dim(), this.dim(), r.chance(0.8) ? 1 : r.edgy(), r.chance(0.8) ? 1 : r.edgy(), r.chance(0.8) ? 0 : r.edgy(), r.chance(0.8) ? 0 : r.edgy(), 0, 0];
      case GpuCmd.TRANSFER_TO_HOST_3D: case GpuCmd.TRANSFER_FROM_HOST_3D:
        return [this.small(), this.small(), this.small(), this.dim(), this.dim(), r.chance(0.8) ? 1 : r.edgy(), r.edgy(), r.chance(0.9) ? 0 : r.u32(), this.id(), r.chance(0.8) ? 0 : r.edgy(), r.edgy(), r.edgy()];
      case GpuCmd.SUBMIT_3D: {
        const words = this.virglStream();
        return [4 * words.length - (r.chance(0.05) ? r.below(8) : 0), 0, ...words];
      }
      case GpuCmd.UPDATE_CURSOR: case GpuCmd.MOVE_CURSOR: return [this.small(), this.small(), this.small(), 0, this.id(), this.small(), this.small(), 0];
      default: return Array.from({ length: r.below(16) }, () => r.edgy());
    }
  }

  /** A virgl command stream: headers (cmd | obj << 8 | len << 16) with random bodies. */
  private virglStream(): number[] {
    const r = this.r, w: number[] = [];
    for (let k = r.below(6); k > 0; k--) {
      const len = r.chance(0.9) ? r.below(12) : r.edgy() & 0xffff;
      w.push((r.below(64) | (r.below(32) << 8) | (len << 16)) >>> 0);
      for (let i = 0; i < Math.min(len, 24); i++) w.push(r.chance(0.5) ? r.below(8) : r.edgy());
    }
    return w;
  }

  next(): Command {
    const r = this.r;
    const cursor = r.chance(0.05);
    const type = cursor ? r.pick([GpuCmd.UPDATE_CURSOR, GpuCmd.MOVE_CURSOR])
      : r.chance(0.05) ? r.edgy() : this.virgl && r.chance(0.5) ? r.pick(CMDS_3D) : r.pick(CMDS_2D);
    const words = this.args(type);
    const bytes = new Uint8Array(24 + 4 * words.length);
    const v = new DataView(bytes.buffer);
    v.setUint32(0, type >>> 0, true);
    v.setUint32(4, r.chance(0.3) ? GPU_FLAG_FENCE | (r.chance(0.3) ? GPU_FLAG_INFO_RING_IDX : 0) : r.chance(0.02) ? r.u32() : 0, true);
    v.setBigUint64(8, BigInt(r.u32()), true);
    v.setUint32(16, this.ctx(), true);
    v.setUint8(20, r.chance(0.9) ? r.below(3) : r.u32() & 0xff);
    words.forEach((x, i) => v.setUint32(24 + 4 * i, x >>> 0, true));
    if (r.chance(0.03)) r.fill(bytes, 24); // garbage after a valid header
    const cut = r.chance(0.03) ? r.below(bytes.length) : bytes.length; // truncated request
    const respLen = r.chance(0.9) ? 1100 : r.pick([0, 8, 23, 24, 25]);
    return { bytes: bytes.subarray(0, cut), respLen, cursor };
  }
}

/** Resident set size (MiB) and open fds of a process. */
/**
 * RSS of the daemon and of its children (virglrenderer's render server, which the daemon itself
 * keeps under RENDERER_LIMIT), and the fds of all of them.
 */
function procStats(pid: number): { rssMiB: number; childRssMiB: number; fds: number } {
  let child = 0, fds = fdCount(pid);
  for (const p of childPids(pid)) {
    try {
      child += memoryKiB(p).rss;
      fds += fdCount(p);
    } catch {
      // a child that just exited
    }
  }
  return { rssMiB: memoryKiB(pid).rss / 1024, childRssMiB: child / 1024, fds };
}

/** --max-contexts of the virgl-mode daemon: its cross-domain contexts are worker threads, ~7 fds each. */
const MAX_CONTEXTS = 8;
const FDS_PER_WORKER_CONTEXT = 8;

/** --max-renderer-memory of the daemon under test: a server past it is killed, and that is a finding. */
const RENDERER_LIMIT = '1G';

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export class DeviceTarget implements FuzzTarget {
  readonly name: string;

  constructor(private readonly mode: '2d' | 'virgl') {
    this.name = mode === '2d' ? 'device' : 'virgl';
  }

  /** Open fds past the start that are not a leak: what a run can hold at once (contexts' threads, their blobs). */
  private get fdSlack(): number {
    return 64 + (this.mode === 'virgl' ? MAX_CONTEXTS * FDS_PER_WORKER_CONTEXT : 0);
  }

  private async start(dir: string): Promise<{ backend: BackendProcess; s: FrontendSession; scratch: number }> {
    const args = [process.execPath, packagePath('bin/vhost-gpu.js'), '--socket-path={socket}', '--max-host-memory', '256M', '--log-level', 'error'];
    // virgl mode also offers cross-domain (no compositor behind it) and a host-visible region, so
    // blobs of both kinds and virgl's resources meet in one id space and on the scanouts.
    if (this.mode === 'virgl') {
      args.push('--gpu-mode', 'virglrenderer', '--max-renderer-memory', RENDERER_LIMIT,
        '--capset', 'virgl,virgl2,cross-domain', '--wayland-socket', join(dir, 'no-compositor'), '--max-contexts', String(MAX_CONTEXTS));
    }
    const backend = await startBackend(args, join(dir, 'gpu.sock'));
    try {
      const s = await connectFrontend(backend, {
        ram: { size: 64 * MiB }, timeoutMs: 10_000, shmem: this.mode === 'virgl',
        features: this.mode === 'virgl'
          ? { virgl: true, contextInit: true, edid: true, resourceBlob: true, resourceUuid: true }
          : { edid: true, resourceBlob: true, resourceUuid: true },
        driver: { timeoutMs: BATCH_TIMEOUT_MS, cursorResponses: true },
      });
      return { backend, s, scratch: s.ram.alloc(4 * MiB, 4096) };
    } catch (e) {
      await backend.stop();
      throw e;
    }
  }

  async run(o: FuzzRunOptions): Promise<FuzzReport> {
    const r = new Rng(o.seed);
    const dir = mkdtempSync(join(tmpdir(), `vhost-gpu-fuzz-${this.name}-`));
    const findings: Finding[] = [];
    const record = (f: Finding) => {
      if (f.kind === 'leak' && findings.some((x) => x.kind === 'leak')) return; // once per run is enough
      if (findings.length < MAX_FINDINGS) findings.push(f);
      o.progress?.(`${this.name}: ${f.kind}: ${f.message.split('\n')[0]}`);
    };
    let { backend, s, scratch } = await this.start(dir);
    let gen = new CommandGen(r, scratch, 4 * MiB, this.mode === 'virgl');
    const first = procStats(backend.proc.pid!);
    let rssPeak = first.rssMiB, childPeak = first.childRssMiB, commands = 0, restarts = 0, errors = 0;
    const history: Command[][] = [];
    const start = performance.now(), deadline = start + o.seconds * 1000;
    let lastProgress = start;
    try {
      while (performance.now() < deadline && (o.maxInputs === undefined || commands < o.maxInputs)) {
        const cmds = Array.from({ length: BATCH }, () => gen.next());
        history.push(cmds);
        if (history.length > HISTORY) history.shift();
        const problem = await this.batch(s, backend, cmds);
        commands += cmds.length;
        if (problem === null) {
          // fine
        } else if (typeof problem === 'number') {
          errors += problem;
        } else {
          record({ ...problem, reproducer: history.flat().map(serialise) });
          // Start over with a fresh daemon: the finding is recorded, the run goes on.
          s.close();
          await backend.stop(2000).catch(() => undefined);
          ({ backend, s, scratch } = await this.start(dir));
          gen = new CommandGen(r, scratch, 4 * MiB, this.mode === 'virgl');
          history.length = 0;
          restarts++;
          continue;
        }
        if (history.length % 8 === 0) {
          const st = procStats(backend.proc.pid!);
          rssPeak = Math.max(rssPeak, st.rssMiB);
          childPeak = Math.max(childPeak, st.childRssMiB);
          if (st.rssMiB > first.rssMiB + 512) record({ kind: 'leak', message: `daemon RSS ${st.rssMiB.toFixed(0)} MiB (started at ${first.rssMiB.toFixed(0)})` });
          if (st.fds > first.fds + this.fdSlack) record({ kind: 'leak', message: `daemon has ${st.fds} fds open (started with ${first.fds})` });
        }
        if (performance.now() - lastProgress > 5000) {
          lastProgress = performance.now();
          const st = procStats(backend.proc.pid!);
          const child = this.mode === 'virgl' ? `, render server ${st.childRssMiB.toFixed(0)} MiB` : '';
          o.progress?.(`${this.name}: ${commands} commands, ${((lastProgress - start) / 1000).toFixed(0)} s, daemon RSS ${st.rssMiB.toFixed(0)} MiB${child}`);
        }
      }
      const h = await this.health(s);
      if (h) record(h);
    } finally {
      s.close();
      const exit = await backend.stop(5000).catch(() => null);
      if (exit && exit.code !== 0 && findings.length === 0) record({ kind: 'crash', message: `daemon exit ${exit.code}/${exit.signal} at the end\n${exit.stderr.slice(-2000)}` });
      rmSync(dir, { recursive: true, force: true });
    }
    return {
      target: this.name, inputs: commands, unit: 'commands', seconds: (performance.now() - start) / 1000, findings,
      rssStartMiB: first.rssMiB, rssPeakMiB: rssPeak,
      notes: [
        `RSS is the daemon process's; fds are its and its children's; ${errors} error responses; ${restarts} daemon restarts after findings`,
        ...(this.mode === 'virgl' ? [`render server RSS ${first.childRssMiB.toFixed(0)} -> peak ${childPeak.toFixed(0)} MiB (the daemon kills it past ${RENDERER_LIMIT})`] : []),
      ],
    };
  }

  /** null: all answered; a number: how many were errors; a Finding otherwise. */
  private async batch(s: FrontendSession, backend: BackendProcess, cmds: Command[]): Promise<Finding | number | null> {
    const b = s.driver.batch();
    try {
      for (const c of cmds) b.raw(c.bytes, c.respLen, c.cursor ? 'cursor' : 'control');
    } catch (e) {
      // No room on a queue: chains of earlier batches were never returned.
      return { kind: 'hang', message: `${(e as Error).message} (chains of earlier batches never returned)` };
    }
    try {
      const res = await b.submit(BATCH_TIMEOUT_MS);
      if (!backend.running) return died(backend);
      const lost = /virglrenderer lost: .*/.exec(backend.stderr());
      if (lost) return { kind: 'crash', message: `the render server died (the daemon lived on): ${lost[0]}` };
      return res.errors;
    } catch (e) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (!backend.running) return died(backend);
      const sent = cmds.map((c, i) => {
        const v = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength);
        return `#${i}:` + (c.bytes.length >= 24 ? `0x${v.getUint32(0, true).toString(16)}/f${v.getUint32(4, true)}/ctx${v.getUint32(16, true)}/r${v.getUint8(20)}` : `short${c.bytes.length}`);
      });
      return { kind: 'hang', message: `${(e as Error).message} (batch: ${sent.join(' ')})\n${backend.stderr().slice(-2000)}` };
    }
  }

  private async health(s: FrontendSession): Promise<Finding | null> {
    try {
      const info = await s.driver.getDisplayInfo({ timeoutMs: 5000 });
      return info.type === GpuResp.OK_DISPLAY_INFO ? null : { kind: 'invariant', message: `GET_DISPLAY_INFO answered 0x${info.type.toString(16)}` };
    } catch (e) {
      return { kind: 'hang', message: `GET_DISPLAY_INFO: ${(e as Error).message}` };
    }
  }

  async replay(rep: unknown): Promise<Finding[]> {
    const cmds = (rep as { bytes: string; respLen: number; cursor: boolean }[]).map((c) => ({ ...c, bytes: unb64(c.bytes) }));
    const dir = mkdtempSync(join(tmpdir(), `vhost-gpu-replay-${this.name}-`));
    const { backend, s } = await this.start(dir);
    const out: Finding[] = [];
    try {
      for (let i = 0; i < cmds.length; i += BATCH) {
        const p = await this.batch(s, backend, cmds.slice(i, i + BATCH));
        if (p !== null && typeof p !== 'number') { out.push(p); break; }
      }
      if (out.length === 0) {
        const h = await this.health(s);
        if (h) out.push(h);
      }
    } finally {
      s.close();
      await backend.stop(5000).catch(() => null);
      rmSync(dir, { recursive: true, force: true });
    }
    return out;
  }
}

async function died(backend: BackendProcess): Promise<Finding> {
  const exit = await backend.exited;
  return { kind: 'crash', message: `the daemon died (exit code ${exit.code}, signal ${exit.signal})\n${exit.stderr.slice(-3000)}` };
}

function serialise(c: Command): unknown {
  return { bytes: b64(c.bytes), respLen: c.respLen, cursor: c.cursor };
}
