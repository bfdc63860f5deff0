// Cross-domain contexts against a compositor the test controls (a unix socket server here, fds
// passed with SCM_RIGHTS): every kind of fd the compositor can send turned into identifiers and
// back, pipes both ways, eventfds, one event per channel fence under a flood, and hostile input
// from either side ending only the context concerned, without leaking fds.
import { mkdtempSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { native } from '../../src/native.js';
import { WorkerContexts } from '../../src/renderers/worker-context/host.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { CrossDomainGuest, command, sendCommand, QUERY_RES, CHANNEL_RES } from './cross-domain-guest.js';

const n = native();
const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);
const fdCount = () => readdirSync('/proc/self/fd').length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const settledWithin = <T>(p: Promise<T>, ms: number) => Promise.race([p, sleep(ms).then(() => 'pending' as const)]);

/** The compositor's side of the socket, driven from the test's event loop without blocking it. */
class FakeCompositor {
  readonly path: string;
  private readonly lfd: number;
  private readonly conns: number[] = [];

  constructor(dir: string) {
    this.path = join(dir, 'wayland-fake');
    this.lfd = n.listenUnix(this.path, 16);
    if (this.lfd < 0) throw new Error(`listen: ${this.lfd}`);
  }

  async accept(): Promise<number> {
    for (const t0 = Date.now(); Date.now() - t0 < 5000; await sleep(2)) {
      const fd = n.acceptUnix(this.lfd);
      if (fd >= 0) {
        this.conns.push(fd);
        return fd;
      }
    }
    throw new Error('nobody connected');
  }

  send(conn: number, data: Uint8Array, fds: number[] = []): number {
    return n.sendMsg(conn, [data], fds.length ? fds : null);
  }

  async recv(conn: number, len = 65536): Promise<{ data: Uint8Array; fds: number[] }> {
    const buf = new Uint8Array(len), fdsOut = new Int32Array(30);
    for (const t0 = Date.now(); Date.now() - t0 < 5000; await sleep(2)) {
      const r = n.recvMsg(conn, buf, 0, len, fdsOut);
      if (r === -n.EAGAIN) continue;
      if (r < 0) throw new Error(`recv: ${r}`);
      return { data: buf.slice(0, r), fds: [...fdsOut.subarray(1, 1 + fdsOut[0])] };
    }
    throw new Error('nothing received');
  }

  close(): void {
    for (const fd of this.conns) n.close(fd);
    n.close(this.lfd);
  }
}

/** Read a pipe (non-blocking) until EOF, within a deadline. */
async function readAll(fd: number): Promise<string> {
  n.setNonBlocking(fd, true);
  const buf = new Uint8Array(4096), parts: string[] = [];
  for (const t0 = Date.now(); Date.now() - t0 < 5000; await sleep(2)) {
    const r = n.read(fd, buf, 0, buf.length);
    if (r === 0) return parts.join('');
    if (r > 0) parts.push(str(buf.subarray(0, r)));
  }
  throw new Error('no EOF');
}

describe('cross-domain channel', () => {
  let dir: string, comp: FakeCompositor, pool: WorkerContexts;
  let fdsBefore = 0;

  beforeEach(() => {
    fdsBefore = fdCount();
    dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-cd-'));
    comp = new FakeCompositor(dir);
    pool = new WorkerContexts(4);
  });
  afterEach(async () => {
    await pool.close();
    comp.close();
    rmSync(dir, { recursive: true, force: true });
    // Every fd the contexts made, received or dup'ed is closed (idle workers are gone with the pool).
    expect(fdCount() - fdsBefore).toBeLessThanOrEqual(1);
  });

  async function connected(ctxId: number): Promise<{ guest: CrossDomainGuest; conn: number }> {
    const guest = new CrossDomainGuest(pool, ctxId, comp.path);
    expect(await guest.init()).toBe(0);
    return { guest, conn: await comp.accept() };
  }

  it('turns memory, pipe write ends and eventfds from the compositor into identifiers and back', async () => {
    const { guest, conn } = await connected(1);
    const mem = n.memfdCreate('keymap', 5000), ends = new Int32Array(2), ev = n.eventfd(0, true);
    n.pipeCreate(ends, 4096);
    n.write(mem, text('xkb_keymap {'), 0, 12);
    const polled = guest.poll();
    expect(await settledWithin(polled, 100)).toBe('pending'); // nothing came yet: the fence waits
    comp.send(conn, text('event bytes'), [mem, ends[1], ev]);
    n.close(mem);
    n.close(ends[1]);
    const e = await polled;
    if (e.cmd !== 'receive') throw new Error(e.cmd);
    expect(str(e.data)).toBe('event bytes');
    expect(e.ids.map((x) => [x.type, x.size])).toEqual([[P.IdType.VIRTGPU_BLOB, 5000], [P.IdType.WRITE_PIPE, 0], [P.IdType.EVENT, 0]]);
    const [memId, pipeId, evId] = e.ids.map((x) => x.id);

    // The memory becomes a blob once, covering its last page at most (a copy: it ends inside a page).
    await expect(guest.host.createBlob(BigInt(memId), 12288, 1)).rejects.toThrow(/refused/);
    const blob = await guest.host.createBlob(BigInt(memId), 8192, 1);
    expect(n.fdSize(blob.fd)).toBe(8192); // whole pages, for MAP_BLOB
    const map = n.mmap(blob.fd, 4096, 0);
    if (typeof map === 'number') throw new Error(`mmap ${map}`);
    expect(str(new Uint8Array(n.view(map.addr, 0, 12) as ArrayBuffer))).toBe('xkb_keymap {');
    n.unmap(map.addr);
    n.close(blob.fd);
    await expect(guest.host.createBlob(BigInt(memId), 8192, 1)).rejects.toThrow(/refused/);
    await expect(guest.host.createBlob(BigInt(pipeId), 4096, 1)).rejects.toThrow(/refused/);

    // Whole pages of read-write memory are shared as they are: later writes show through.
    const pool = n.memfdCreate('pool', 8192);
    const polled2 = guest.poll();
    comp.send(conn, text('pool'), [pool]);
    const e2 = await polled2;
    if (e2.cmd !== 'receive') throw new Error(e2.cmd);
    const shared = await guest.host.createBlob(BigInt(e2.ids[0].id), 8192, 1);
    const smap = n.mmap(shared.fd, 8192, 0);
    if (typeof smap === 'number') throw new Error(`mmap ${smap}`);
    writeSync(pool, 'drawn later', 0, 'latin1');
    expect(str(new Uint8Array(n.view(smap.addr, 0, 11) as ArrayBuffer))).toBe('drawn later');
    n.unmap(smap.addr);
    n.close(shared.fd);
    n.close(pool);

    // WRITE goes into the pipe; hang-up closes it.
    guest.write(pipeId, text('clipboard '));
    guest.write(pipeId, text('contents'), true);
    expect(await readAll(ends[0])).toBe('clipboard contents');
    n.close(ends[0]);

    // The eventfd: WRITE adds to it; once watched, its count arrives as READ.
    const eight = new Uint8Array(8);
    new DataView(eight.buffer).setBigUint64(0, 3n, true);
    guest.write(evId, eight);
    await guest.fence(P.QUERY_RING);
    expect(n.eventfdRead(ev)).toBe(3);
    guest.watchEvent(evId);
    const next = guest.poll();
    n.eventfdWrite(ev, 7);
    const r = await next;
    expect(r.cmd === 'read' && [r.id, r.hangUp, new DataView(r.data.buffer).getBigUint64(0, true)]).toEqual([evId, false, 7n]);
    n.close(ev);
    expect(guest.host.lost).toBeNull();
    await guest.destroy();
  });

  it('READ pipes: the compositor gets a write end, its data comes back as READ until hang-up', async () => {
    const { guest, conn } = await connected(1);
    const id = guest.readPipeId();
    guest.send(text('data_offer.receive'), [{ id, type: P.IdType.READ_PIPE }]);
    const got = await comp.recv(conn);
    expect([str(got.data), got.fds.length]).toEqual(['data_offer.receive', 1]);
    n.write(got.fds[0], text('selection text'), 0, 14);
    n.close(got.fds[0]);
    let data = '';
    for (;;) {
      const e = await guest.poll();
      if (e.cmd !== 'read' || e.id !== id) throw new Error(`unexpected ${e.cmd}`);
      data += str(e.data);
      if (e.hangUp) break;
    }
    expect(data).toBe('selection text');
    await guest.destroy();
  });

  it('reads nothing while no channel fence waits, then one message per fence, in order (a flooding compositor)', async () => {
    const { guest, conn } = await connected(1);
    const total = 256 << 10;
    const flood = new Uint8Array(total).map((_, i) => (i * 7 + (i >> 10)) & 0xff);
    let sent = 0;
    while (sent < total) {
      const r = comp.send(conn, flood.subarray(sent, Math.min(total, sent + 8192)));
      if (r === -n.EAGAIN) break; // the socket is full: nobody reads it
      if (r < 0) throw new Error(`send ${r}`);
      sent += r;
    }
    expect(sent).toBeLessThan(total);
    await sleep(100);
    const out: Uint8Array[] = [];
    let got = 0;
    for (let polls = 0; got < total; polls++) {
      const e = await guest.poll();
      if (e.cmd !== 'receive') throw new Error(e.cmd);
      expect(e.data.length).toBeLessThanOrEqual(P.MAX_RECEIVE_DATA);
      out.push(e.data);
      got += e.data.length;
      while (sent < total) { // the compositor gets room again as the guest reads
        const r = comp.send(conn, flood.subarray(sent, Math.min(total, sent + 8192)));
        if (r < 0) break;
        sent += r;
      }
    }
    const joined = new Uint8Array(got);
    out.reduce((at, p) => (joined.set(p, at), at + p.length), 0);
    expect(joined).toEqual(flood);
    await guest.destroy();
  });

  // Each case ends the victim context with a reason; a second context on the same compositor goes on.
  const hostile: Array<[string, RegExp, (g: CrossDomainGuest, conn: number) => void | Promise<void>]> = [
    ['SEND of a resource not attached', /resource 77 is not attached/, (g) => g.send(text('x'), [{ id: 77, type: P.IdType.VIRTGPU_BLOB }])],
    ['SEND of a guest-memory resource as a blob', /has no host memory/, (g) => g.send(text('x'), [{ id: CHANNEL_RES, type: P.IdType.VIRTGPU_BLOB }])],
    ['SEND with a wrong read pipe id', /read pipe id/, (g) => g.send(text('x'), [{ id: P.PIPE_READ_START + 5, type: P.IdType.READ_PIPE }])],
    ['SEND of an unknown identifier type', /type 9 cannot be sent/, (g) => g.send(text('x'), [{ id: 1, type: 9 }])],
    ['SEND with more than 28 identifiers', /29 identifiers/, (g) => {
      const c = sendCommand(text('x'), []);
      new DataView(c.buffer).setUint32(P.SEND_RECEIVE.NUM_IDENTIFIERS, 29, true);
      g.submit(c);
    }],
    ['SEND data past the command', /SEND of 9999 bytes/, (g) => {
      const c = sendCommand(text('x'), []);
      new DataView(c.buffer).setUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, 9999, true);
      g.submit(c);
    }],
    ['a cmd_size of 0', /cmd_size 0/, (g) => g.submit(new Uint8Array(8).fill(0).map((_, i) => (i === 0 ? P.Cmd.POLL : 0)))],
    ['a cmd_size past the stream', /cmd_size 64/, (g) => {
      const c = command(P.Cmd.POLL, 8);
      new DataView(c.bytes.buffer).setUint16(P.HDR.CMD_SIZE, 64, true);
      g.submit(c.bytes);
    }],
    ['an unknown command', /unknown cross-domain command 99/, (g) => g.submit(command(99, 8).bytes)],
    ['a RECEIVE from the guest', /unknown cross-domain command 5/, (g) => g.submit(command(P.Cmd.RECEIVE, P.SEND_RECEIVE.BYTES).bytes)],
    ['INIT twice', /INIT twice/, (g) => void g.init()],
    ['a fence on ring 2', /ring 2/, (g) => void g.fence(2)],
    ['WRITE to an unknown identifier', /1234 is no identifier/, (g) => g.write(1234, text('x'))],
    ['READ_CREATE_EVENT of something that is no eventfd', /4321 is no identifier, not an eventfd/, (g) => g.watchEvent(4321)],
    ['a WRITE of 3 bytes to an eventfd', /WRITE of 3 bytes to eventfd/, async (g, conn) => {
      const ev = n.eventfd(0, true);
      const polled = g.poll();
      comp.send(conn, text('e'), [ev]);
      n.close(ev);
      const e = await polled;
      if (e.cmd === 'receive') g.write(e.ids[0].id, text('abc'));
    }],
    ['GET_IMAGE_REQUIREMENTS for an unknown format', /no linear layout/, (g) => void g.imageRequirements(64, 64, 0x12345678).catch(() => {})],
    ['GET_IMAGE_REQUIREMENTS for a huge image', /outside 1\.\.16384/, (g) => void g.imageRequirements(100000, 64, 0x34325258).catch(() => {})],
    ['a compositor that hangs up', /closed the connection/, (g, conn) => {
      n.close(conn);
      void g.poll().catch(() => {});
    }],
    ['a compositor that sends a socket', /fd of kind 4/, (g, conn) => {
      const [a, b] = n.socketPair() as [number, number];
      comp.send(conn, text('x'), [a]);
      n.close(a);
      n.close(b);
      void g.poll().catch(() => {});
    }],
    ['a compositor that does not read', /not reading/, (g) => {
      const chunk = new Uint8Array(60000);
      for (let i = 0; i < 40; i++) g.send(chunk);
    }],
    ['a compositor that sends fds the guest never consumes', /identifiers hold fds/, async (g, conn) => {
      for (let m = 0; m < 10; m++) {
        const fds = Array.from({ length: 28 }, () => n.memfdCreate('flood', 4096));
        comp.send(conn, text('m'), fds);
        for (const fd of fds) n.close(fd);
        try {
          await g.poll();
        } catch {
          return; // the context is gone
        }
      }
    }],
  ];

  for (const [what, reason, act] of hostile) {
    it(`ends only the context that gets ${what}`, async () => {
      const victim = await connected(1), other = await connected(2);
      await act(victim.guest, victim.conn);
      expect(await victim.guest.lost).toMatch(reason);
      const e = other.guest.poll();
      comp.send(other.conn, text('still here'));
      const got = await e;
      expect(got.cmd === 'receive' && str(got.data)).toBe('still here');
      expect(other.guest.host.lost).toBeNull();
      await victim.guest.destroy();
      await other.guest.destroy();
    });
  }

  it('refuses rings that are missing or too small, other channel types and a missing compositor at INIT', async () => {
    const a = new CrossDomainGuest(pool, 1, comp.path, 1024);
    void a.init();
    expect(await a.lost).toMatch(/channel ring 2 has 1024 bytes, needs 4096/);
    const b = new CrossDomainGuest(pool, 2, comp.path);
    void b.init(P.CHANNEL_TYPE_WAYLAND, 9, CHANNEL_RES);
    expect(await b.lost).toMatch(/query ring 9 is not attached/);
    const c = new CrossDomainGuest(pool, 3, comp.path);
    void c.init(7, QUERY_RES, CHANNEL_RES);
    expect(await c.lost).toMatch(/channel type 7/);
    const d = new CrossDomainGuest(pool, 4, join(dir, 'no-compositor-here'));
    void d.init();
    expect(await d.lost).toMatch(/cannot connect to the Wayland compositor .* ENOENT/);
    await Promise.all([a, b, c, d].map((g) => g.destroy()));
  });
});
