// The worker-context framework with real piscina workers: one context per worker, fences per
// ring in order, blobs, attached guest memory, and every way a worker can die (throw, exit, an
// exception outside the framework, termination, a hang at destroy) failing only its context.
import { readdirSync } from 'node:fs';
import { describe, it, expect, afterEach } from 'vitest';
import { native } from '../../src/native.js';
import { WorkerContexts, ENODEV, type WorkerContextHost } from '../../src/renderers/worker-context/host.js';
import { PROBE } from './probe-context.js';
import { GLOBAL_RING } from '../../src/renderers/worker-context/protocol.js';
import { memfdMapping } from './mock-ring.js';


const text = (s: string) => new TextEncoder().encode(s);
const fdCount = () => readdirSync('/proc/self/fd').length;
const settledWithin = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);

function submit(h: WorkerContextHost, s: string): void {
  const b = text(s);
  h.submit(b.length, (dst, off, len) => dst.set(b.subarray(0, len), off));
}

/** Resolves with the reason once the context is reported lost. */
function start(pool: WorkerContexts, ctxId: number): { host: WorkerContextHost; lost: Promise<string> } {
  let onLost!: (r: string) => void;
  const lost = new Promise<string>((r) => (onLost = r));
  return { host: pool.start(PROBE, ctxId, 5, `ctx${ctxId}`, onLost), lost };
}

describe('worker contexts', () => {
  let pool: WorkerContexts;
  afterEach(async () => {
    await pool?.close();
  });

  it('completes fences per ring in order, holding ring 1 until the context signals it', async () => {
    pool = new WorkerContexts(4);
    const { host } = start(pool, 1);
    const order: string[] = [];
    const a = host.fence(1, 10n).then((s) => order.push(`r1:10=${s}`));
    const b = host.fence(1, 11n).then((s) => order.push(`r1:11=${s}`));
    await host.fence(0, 12n).then((s) => order.push(`r0:12=${s}`));
    await host.fence(GLOBAL_RING, 13n).then((s) => order.push(`g:13=${s}`));
    expect(await settledWithin(a, 100)).toBe('pending');
    submit(host, 'signal');
    await a;
    expect(await settledWithin(b, 100)).toBe('pending');
    submit(host, 'signal');
    await b;
    expect(order).toEqual(['r0:12=0', 'g:13=0', 'r1:10=0', 'r1:11=0']);
  });

  it('hands attached guest memory to the worker and makes host blobs there', async () => {
    pool = new WorkerContexts(4);
    const { host } = start(pool, 1);
    const { map, ab } = memfdMapping('ctx-guest', 8192);
    host.attach(7, Float64Array.of(Number(map.addr) + 4096, 4096), -1, 4096);
    submit(host, 'write 7 hello from the worker');
    await host.fence(0, 1n);
    expect(new TextDecoder().decode(new Uint8Array(ab, 4096, 21))).toBe('hello from the worker');
    const blob = await host.createBlob(2n, 65536, 1);
    expect([blob.size, blob.mapInfo, native().fdSize(blob.fd)]).toEqual([65536, 1, 65536]);
    native().close(blob.fd);
    await expect(host.createBlob(0n, 4096, 1)).rejects.toThrow(/refused/);
    expect(host.lost).toBeNull(); // a refused blob is an error answer, not a lost context
    native().unmap(map.addr);
  });

  for (const how of ['throw', 'exit', 'async-throw', 'kill'] as const) {
    it(`reports only the context whose worker ${how === 'kill' ? 'is terminated' : `does "${how}"`} lost`, async () => {
      pool = new WorkerContexts(4);
      const victim = start(pool, 1), other = start(pool, 2);
      const held = victim.host.fence(1, 5n);
      if (how === 'kill') victim.host.kill();
      else submit(victim.host, how);
      expect(await victim.lost).toMatch(how === 'throw' ? /asked to fail/ : /./);
      expect(await held).toBe(ENODEV); // its fences complete
      expect(await victim.host.fence(0, 6n)).toBe(ENODEV);
      expect(() => submit(victim.host, 'signal')).toThrow(/lost/);
      const f = other.host.fence(1, 1n);
      submit(other.host, 'signal');
      expect(await f).toBe(0);
      expect(other.host.lost).toBeNull();
    });
  }

  it('terminates a worker that does not finish after destroy', async () => {
    pool = new WorkerContexts(2);
    const { host } = start(pool, 1);
    await host.fence(0, 1n); // the worker is up
    submit(host, 'hang');
    const t0 = Date.now();
    await host.destroy();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    expect(host.lost).not.toBeNull();
  });

  it('refuses contexts beyond the limit and takes new ones once old ones are gone', async () => {
    pool = new WorkerContexts(2);
    const a = start(pool, 1);
    start(pool, 2);
    expect(() => start(pool, 3)).toThrow(/--max-contexts 2/);
    await a.host.destroy();
    const c = start(pool, 3);
    expect(await c.host.fence(0, 1n)).toBe(0);
  });

  it('leaves no fds behind after many contexts came and went', async () => {
    // Idle worker threads hold their own event-loop fds: count with the pool gone.
    const before = fdCount();
    pool = new WorkerContexts(8);
    for (let round = 0; round < 5; round++) {
      const hosts = [1, 2, 3, 4].map((id) => start(pool, id).host);
      const fd = native().memfdCreate('blob', 4096);
      for (const h of hosts) h.attach(9, null, fd, 4096);
      native().close(fd);
      await Promise.all(hosts.map((h) => h.fence(0, 1n)));
      hosts[0].kill(); // one dies without cleaning up: the coordinator closes its dups
      await Promise.all(hosts.map((h) => h.destroy()));
    }
    await pool.close();
    expect(fdCount() - before).toBeLessThanOrEqual(1);
  });
});
