/**
 * The vhost-user session (src/transport/session.ts with the real GpuBackend, in this process)
 * over random message streams on a socketpair: plausible handshakes with perturbed values, random
 * requests and sizes, random fds (memfds, eventfds, pipes, sockets), kicks on the rings it set up,
 * truncated and oversized messages, and disconnects at any point.
 *
 * Invariants: nothing throws out of the session (an uncaught exception or an internal "failed:"
 * error is a finding), a session ends when its peer goes, fds come back to the baseline after
 * each session, RSS stays bounded, and a fresh session still answers a valid handshake.
 */
import { native, type MapHandle } from '../../src/native.js';
import { log } from '../../src/log.js';
import { Session } from '../../src/transport/session.js';
import { GpuBackend } from '../../src/daemon/gpu-backend.js';
import { Req, HDR_SIZE, VERSION, FLAG_NEED_REPLY, FLAG_REPLY, MAX_PAYLOAD } from '../../src/transport/messages.js';
import { frame } from '../../src/transport/wire.js';
import { fdCount } from '../frontend/connection-cycles.js';
import { Rng } from './rng.js';
import { MAX_FINDINGS, b64, rssMiB, unb64, type Finding, type FuzzReport, type FuzzRunOptions, type FuzzTarget } from './target.js';

const MiB = 1 << 20;
const RAM_SIZE = MiB;
/** The fake front-end addresses of the RAM (userspace_addr in the mem table). */
const UADDR = 0x7f00_0000_0000n;
const GPA = 0x1_0000_0000n;
const REQUESTS = Object.values(Req) as number[];
/** What a message is: request, flags, payload and the kinds of fds it carries. */
interface Message {
  request: number; flags: number; payload: Uint8Array; fds: FdKind[];
  /** Send only this many bytes, then disconnect. */
  truncate?: number;
  /** A size field other than the payload's length. */
  claim?: number;
}
type FdKind = 'memfd' | 'eventfd' | 'pipe' | 'socket' | 'devnull';

/** The fds one session's messages draw from (our copies; the kernel dups what is sent). */
class FdPool {
  readonly memfd: number;
  readonly ram: MapHandle;
  readonly eventfds: number[] = [];
  private readonly others: number[] = [];
  private readonly byKind: Record<FdKind, number[]>;

  constructor(r: Rng) {
    const n = native();
    this.memfd = n.memfdCreate('fuzz-ram', RAM_SIZE);
    const map = n.mmap(this.memfd, RAM_SIZE, 0);
    if (typeof map === 'number') throw new Error(`mmap: ${map}`);
    this.ram = map;
    // Garbage rings: kicks make the device walk them.
    const view = n.view(map.addr, 0, 64 * 1024);
    if (typeof view !== 'number') r.fill(new Uint8Array(view), 0, 4096);
    for (let i = 0; i < 3; i++) this.eventfds.push(n.eventfd(0, true));
    const pipe = new Int32Array(2);
    n.pipeCreate(pipe, 4096);
    const pair = n.socketPair();
    const sock = typeof pair === 'number' ? [] : pair;
    this.others.push(pipe[0]!, pipe[1]!, ...sock);
    const devnull = n.dup(0);
    this.others.push(devnull);
    this.byKind = { memfd: [this.memfd], eventfd: this.eventfds, pipe: [pipe[1]!], socket: sock.slice(0, 1), devnull: [devnull] };
  }

  fd(kind: FdKind): number {
    return this.byKind[kind][0] ?? this.memfd;
  }

  close(): void {
    const n = native();
    n.unmap(this.ram.addr);
    for (const fd of [this.memfd, ...this.eventfds, ...this.others]) if (fd >= 0) n.close(fd);
  }
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
}

function words(...w: (number | bigint)[]): Uint8Array {
  const b = new Uint8Array(w.reduce<number>((s, x) => s + (typeof x === 'bigint' ? 8 : 4), 0));
  const v = new DataView(b.buffer);
  let at = 0;
  for (const x of w) {
    if (typeof x === 'bigint') { v.setBigUint64(at, BigInt.asUintN(64, x), true); at += 8; } else { v.setUint32(at, x >>> 0, true); at += 4; }
  }
  return b;
}

/** Generates message streams: mostly a handshake in order with perturbations, then random traffic. */
class StreamGen {
  constructor(private readonly r: Rng) {}

  private flags(): number {
    const r = this.r;
    if (r.chance(0.02)) return r.u32();
    return VERSION | (r.chance(0.5) ? FLAG_NEED_REPLY : 0);
  }

  private index(): number {
    return this.r.chance(0.9) ? this.r.below(2) : this.r.edgy();
  }

  private ringAddr(): bigint {
    const r = this.r;
    if (r.chance(0.1)) return BigInt(r.edgy()) << BigInt(r.below(33));
    return UADDR + BigInt(r.chance(0.8) ? 0x1000 * r.below(16) : r.below(RAM_SIZE + 8192));
  }

  private region(): Uint8Array {
    const r = this.r;
    const size = r.chance(0.85) ? BigInt(RAM_SIZE) : BigInt(r.edgy()) << BigInt(r.below(33));
    const off = r.chance(0.9) ? 0n : BigInt(r.edgy());
    const gpa = r.chance(0.9) ? GPA : BigInt(r.edgy()) << BigInt(r.below(40));
    const uaddr = r.chance(0.95) ? UADDR : BigInt(r.u32()) << 16n;
    return words(gpa, size, uaddr, off);
  }

  /** A message for request with a payload of the right shape and perturbed values. */
  shaped(request: number): Message {
    const r = this.r, m: Message = { request, flags: this.flags(), payload: new Uint8Array(0), fds: [] };
    switch (request) {
      case Req.SET_FEATURES: m.payload = u64(r.chance(0.8) ? (1n << 32n) | (1n << 30n) | (1n << 29n) | (1n << 28n) | BigInt(r.below(32)) : BigInt(r.u32()) << 32n | BigInt(r.u32())); break;
      case Req.SET_PROTOCOL_FEATURES: m.payload = u64(r.chance(0.8) ? BigInt(r.u32() & 0x41_a629) : BigInt(r.u32()) << 32n | BigInt(r.u32())); break;
      case Req.SET_STATUS: m.payload = u64(BigInt(r.chance(0.9) ? r.pick([0, 1, 3, 7, 11, 15, 0x40, 0x80]) : r.edgy())); break;
      case Req.RESET_OWNER: m.payload = r.chance(0.5) ? u64(0n) : new Uint8Array(0); break;
      case Req.SET_MEM_TABLE: {
        const n = r.chance(0.9) ? 1 + r.below(2) : r.below(10);
        const parts = [words(n, 0)];
        for (let i = 0; i < Math.min(n, 9); i++) parts.push(this.region());
        m.payload = Buffer.concat(parts);
        m.fds = Array.from({ length: r.chance(0.9) ? n : r.below(9) }, () => (r.chance(0.9) ? 'memfd' : r.pick<FdKind>(['eventfd', 'pipe', 'devnull'])));
        break;
      }
      case Req.ADD_MEM_REG: case Req.REM_MEM_REG:
        m.payload = Buffer.concat([u64(0n), this.region()]);
        m.fds = r.chance(0.9) ? ['memfd'] : [];
        break;
      case Req.SET_VRING_NUM: case Req.SET_VRING_BASE: case Req.GET_VRING_BASE: case Req.SET_VRING_ENABLE: case Req.VRING_KICK:
        m.payload = words(this.index(), request === Req.SET_VRING_NUM ? (r.chance(0.8) ? 2 ** r.below(16) : r.edgy()) : request === Req.SET_VRING_ENABLE ? r.below(3) : r.edgy());
        break;
      case Req.SET_VRING_ADDR:
        m.payload = words(this.index(), r.chance(0.9) ? 0 : r.u32(), this.ringAddr(), this.ringAddr(), this.ringAddr(), r.chance(0.9) ? 0n : BigInt(r.u32()));
        break;
      case Req.SET_VRING_KICK: case Req.SET_VRING_CALL: case Req.SET_VRING_ERR: {
        const noFd = r.chance(0.1);
        m.payload = u64(BigInt(this.index() & (r.chance(0.95) ? 0xff : 0xffffffff)) | (noFd ? 0x100n : 0n));
        m.fds = noFd && r.chance(0.9) ? [] : [r.chance(0.9) ? 'eventfd' : r.pick<FdKind>(['memfd', 'pipe', 'socket'])];
        break;
      }
      case Req.GET_CONFIG: case Req.SET_CONFIG: {
        const size = r.chance(0.8) ? r.pick([4, 8, 16, 24]) : r.below(300);
        const body = new Uint8Array(Math.min(size, 256));
        r.fill(body);
        m.payload = Buffer.concat([words(r.chance(0.8) ? r.pick([0, 4, 8, 12]) : r.edgy(), size, r.chance(0.9) ? 0 : r.u32()), body]);
        break;
      }
      case Req.GPU_SET_SOCKET: case Req.SET_BACKEND_REQ_FD:
        m.fds = r.chance(0.9) ? ['socket'] : [];
        break;
      default: break;
    }
    return m;
  }

  /** Anything: a random request number, size and bytes. */
  random(): Message {
    const r = this.r;
    const payload = new Uint8Array(r.chance(0.9) ? r.below(64) : r.below(MAX_PAYLOAD + 1));
    r.fill(payload, 0, Math.min(payload.length, 64));
    const fds = Array.from({ length: r.chance(0.8) ? 0 : r.below(9) }, () => r.pick<FdKind>(['memfd', 'eventfd', 'pipe', 'socket', 'devnull']));
    return { request: r.chance(0.8) ? r.pick(REQUESTS) : r.edgy(), flags: this.flags(), payload, fds };
  }

  /** One session's stream. */
  stream(): Message[] {
    const r = this.r, out: Message[] = [];
    const handshake = [
      Req.GET_FEATURES, Req.SET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.SET_PROTOCOL_FEATURES, Req.GET_QUEUE_NUM,
      Req.GET_MAX_MEM_SLOTS, Req.SET_BACKEND_REQ_FD, Req.GET_SHMEM_CONFIG, Req.SET_OWNER, Req.SET_MEM_TABLE, Req.GPU_SET_SOCKET,
      ...[0, 1].flatMap(() => [Req.SET_VRING_NUM, Req.SET_VRING_BASE, Req.SET_VRING_ADDR, Req.SET_VRING_KICK, Req.SET_VRING_CALL, Req.SET_VRING_ENABLE]),
      Req.SET_STATUS, Req.GET_CONFIG,
    ];
    for (const req of handshake) {
      if (r.chance(0.05)) continue;
      out.push(this.shaped(req));
      if (r.chance(0.03)) out.push(this.random());
    }
    for (let n = r.below(r.chance(0.2) ? 400 : 60); n > 0; n--) {
      out.push(r.chance(0.7) ? this.shaped(r.pick(REQUESTS)) : this.random());
    }
    if (r.chance(0.05)) out.push({ request: Req.GET_FEATURES, flags: VERSION, payload: new Uint8Array(0), fds: [], truncate: r.below(HDR_SIZE) });
    if (r.chance(0.03)) out.push({ request: Req.SET_FEATURES, flags: VERSION, payload: new Uint8Array(0), claim: MAX_PAYLOAD + 1 + r.below(1 << 20), fds: [] });
    return out;
  }
}

function encode(m: Message): Uint8Array {
  const b = frame(m.request >>> 0, m.flags >>> 0, m.payload);
  if (m.claim !== undefined) new DataView(b.buffer).setUint32(8, m.claim, true);
  return m.truncate !== undefined ? b.subarray(0, m.truncate) : b;
}

const openFds = (): number => fdCount(process.pid);
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Errors the session and the queues log only for exceptions nothing anticipated. */
const INTERNAL_ERROR = /vhost-user: \S+ failed: |command failed: |Uncaught|TypeError|RangeError|ReferenceError/;

export class VhostUserTarget implements FuzzTarget {
  readonly name = 'vhost-user';
  private internal: string[] = [];

  async run(o: FuzzRunOptions): Promise<FuzzReport> {
    const r = new Rng(o.seed);
    const gen = new StreamGen(r);
    const findings: Finding[] = [];
    let messages = 0, sessions = 0;
    const record = (f: Finding) => {
      if (findings.length < MAX_FINDINGS) findings.push(f);
      o.progress?.(`vhost-user: ${f.kind}: ${f.message.split('\n')[0]}`);
    };
    const restore = this.captureLog();
    try {
      const rssStart = rssMiB();
      let rssPeak = rssStart;
      // Warm up (the first session loads the codec and the addon), then take the fd baseline.
      await this.health();
      const baseline = openFds();
      const start = performance.now(), deadline = start + o.seconds * 1000;
      let lastProgress = start;
      while (performance.now() < deadline && (o.maxInputs === undefined || messages < o.maxInputs)) {
        const stream = gen.stream();
        const problem = await this.episode(stream, r);
        messages += stream.length;
        sessions++;
        for (const line of this.internal.splice(0)) record({ kind: 'crash', message: `internal error: ${line}`, reproducer: serialise(stream) });
        if (problem) record({ ...problem, reproducer: serialise(stream) });
        if (sessions % 64 === 0) {
          const fds = openFds();
          if (fds > baseline + 2) record({ kind: 'leak', message: `${fds - baseline} fds more than at the start after ${sessions} sessions` });
          rssPeak = Math.max(rssPeak, rssMiB());
          if (rssPeak - rssStart > 512) record({ kind: 'leak', message: `RSS grew from ${rssStart.toFixed(0)} to ${rssPeak.toFixed(0)} MiB` });
          const h = await this.health();
          if (h) record(h);
        }
        if (performance.now() - lastProgress > 5000) {
          lastProgress = performance.now();
          o.progress?.(`vhost-user: ${messages} messages, ${sessions} sessions, ${((lastProgress - start) / 1000).toFixed(0)} s`);
        }
      }
      const h = await this.health();
      if (h) record(h);
      const fds = openFds();
      if (fds > baseline + 2) record({ kind: 'leak', message: `${fds - baseline} fds more than at the start` });
      rssPeak = Math.max(rssPeak, rssMiB());
      return {
        target: this.name, inputs: messages, unit: 'messages', seconds: (performance.now() - start) / 1000, findings,
        rssStartMiB: rssStart, rssPeakMiB: rssPeak, notes: [`${sessions} sessions; open fds ${baseline} at the start, ${fds} at the end`],
      };
    } finally {
      restore();
    }
  }

  async replay(rep: unknown): Promise<Finding[]> {
    const stream = deserialise(rep);
    const restore = this.captureLog();
    try {
      const f = await this.episode(stream, new Rng(1));
      const out: Finding[] = this.internal.splice(0).map((l) => ({ kind: 'crash' as const, message: l }));
      if (f) out.push(f);
      return out;
    } finally {
      restore();
    }
  }

  /** Swallow the daemon's log (a million refusals), keeping lines that reveal an unanticipated exception. */
  private captureLog(): () => void {
    const write = process.stderr.write.bind(process.stderr);
    log.setLevel('error');
    process.stderr.write = ((chunk: string | Uint8Array) => {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      if (INTERNAL_ERROR.test(s) && this.internal.length < 100) this.internal.push(s.trim());
      return true;
    }) as typeof process.stderr.write;
    const onUncaught = (e: unknown) => { this.internal.push(`uncaught: ${(e as Error)?.stack ?? e}`); };
    process.on('uncaughtException', onUncaught);
    return () => {
      process.stderr.write = write;
      process.off('uncaughtException', onUncaught);
      log.setLevel('info');
    };
  }

  /** One session: send the stream in bursts, draining replies; then disconnect and expect the session to end. */
  private async episode(stream: Message[], r: Rng): Promise<Finding | null> {
    const n = native();
    const { ours, session, ended } = openSession();
    const pool = new FdPool(r);
    const sink = new Uint8Array(65536), fdsIn = new Int32Array(9);
    const drain = () => {
      for (;;) {
        const got = n.recvMsg(ours, sink, 0, sink.length, fdsIn);
        for (let i = 1; i <= fdsIn[0]!; i++) n.close(fdsIn[i]!);
        if (got <= 0) return;
      }
    };
    try {
      for (let i = 0; i < stream.length && !ended(); i++) {
        const m = stream[i]!;
        const bytes = encode(m);
        const fds = m.fds.map((k) => pool.fd(k));
        let sent = 0;
        for (let tries = 0; sent < bytes.length && tries < 100 && !ended(); tries++) {
          const w = n.sendMsg(ours, [bytes.subarray(sent)], sent === 0 && fds.length ? fds : null);
          if (w === -n.EAGAIN) { drain(); await tick(); continue; }
          if (w < 0) break; // the session closed its end
          sent += w;
        }
        if (m.truncate !== undefined) break; // the rest never comes: disconnect mid-message
        if (r.chance(0.05)) for (const e of pool.eventfds) n.eventfdWrite(e, 1); // kicks
        if (i % 16 === 15) { await tick(); drain(); }
      }
      await tick();
      drain();
    } finally {
      n.close(ours);
      pool.close();
    }
    for (let i = 0; i < 200 && !ended(); i++) await tick();
    if (!ended()) {
      session.close('fuzzer: session did not end');
      return { kind: 'hang', message: 'the session did not end after its front-end disconnected' };
    }
    return null;
  }

  /** A fresh session answers GET_FEATURES, GET_PROTOCOL_FEATURES and GET_QUEUE_NUM in order. */
  private async health(): Promise<Finding | null> {
    const n = native();
    const { ours, session, ended } = openSession();
    try {
      const msgs = [Req.GET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.GET_QUEUE_NUM].map((request) => encode({ request, flags: VERSION, payload: new Uint8Array(0), fds: [] }));
      n.sendMsg(ours, msgs, null);
      const want = 3 * (HDR_SIZE + 8), got = new Uint8Array(want), fdsIn = new Int32Array(9);
      let have = 0;
      for (let i = 0; i < 1000 && have < want; i++) {
        const k = n.recvMsg(ours, got, have, want - have, fdsIn);
        if (k > 0) have += k;
        else await tick();
      }
      if (have < want) return { kind: 'hang', message: `a fresh session answered ${have} of ${want} bytes of a valid handshake` };
      const v = new DataView(got.buffer);
      const features = v.getBigUint64(HDR_SIZE, true), queues = v.getBigUint64(2 * (HDR_SIZE + 8) + HDR_SIZE, true);
      if (!(v.getUint32(4, true) & FLAG_REPLY) || !(features & (1n << 32n)) || queues !== 2n) {
        return { kind: 'invariant', message: `a fresh session answered the handshake wrongly (features 0x${features.toString(16)}, queues ${queues})` };
      }
      return null;
    } finally {
      n.close(ours);
      for (let i = 0; i < 100 && !ended(); i++) await tick();
      if (!ended()) session.close('fuzzer');
    }
  }
}

/** A session with the daemon's 2D GpuBackend on one end of a socketpair; ours is non-blocking. */
function openSession(): { ours: number; session: Session; ended: () => boolean } {
  const n = native();
  const pair = n.socketPair();
  if (typeof pair === 'number') throw new Error(`socketpair: ${pair}`);
  const [ours, theirs] = pair;
  n.setNonBlocking(ours, true);
  let gone = false;
  const backend = new GpuBackend({ maxHostMemory: 64 * MiB, hostVisibleSize: 1 << 30, virgl: null, workerCapsets: [], workers: null, maxContexts: 4 });
  const session = new Session(theirs, backend, () => { gone = true; });
  return { ours, session, ended: () => gone };
}

function serialise(stream: Message[]): unknown {
  return stream.map((m) => ({ request: m.request, flags: m.flags, payload: b64(m.payload), fds: m.fds, truncate: m.truncate, claim: m.claim }));
}

function deserialise(rep: unknown): Message[] {
  return (rep as { request: number; flags: number; payload: string; fds: FdKind[]; truncate?: number; claim?: number }[])
    .map((m) => ({ ...m, payload: unb64(m.payload) }));
}
