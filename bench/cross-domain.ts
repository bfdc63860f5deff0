/**
 * Cross-domain benchmark: Wayland traffic through cross-domain contexts (each on its own worker)
 * to a real weston (headless, pixman), against the same client speaking to weston directly on its
 * socket from this thread (what a host-native client pays). The traffic is wl_display.sync: one
 * SEND, and a RECEIVE with wl_callback.done + delete_id back.
 *
 * - round trip: one sync at a time through one context (POLL, fence, RECEIVE), median and p99;
 * - messages/s: syncs with up to WINDOW in flight, through 1, 2, 4, 8 contexts at once;
 * - host3d blobs/s: GET_IMAGE_REQUIREMENTS + RESOURCE_CREATE_BLOB of a 256x256 XRGB image.
 *
 *   npm run bench:cross-domain [-- --seconds 3 --json FILE]
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { native, check } from '../src/native.js';
import { WorkerContexts } from '../src/renderers/worker-context/host.js';
import { CrossDomainGuest } from '../test/integration/cross-domain-guest.js';
import { Args, EventStream, WL, message } from '../test/integration/wayland-wire.js';
import { Weston } from '../test/integration/weston.js';
import { machineInfo } from './machine.js';
import { percentile } from './stats.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('bench-cross-domain')
  .option('seconds', { type: 'number', default: 3, describe: 'Seconds per measurement' })
  .option('json', { type: 'string', describe: 'Write the figures as JSON to this file' })
  .strict()
  .help()
  .parseSync();

const WINDOW = 32;
const XR24 = 0x34325258;
const n = native();

/** wl_display.sync ids, reused once the compositor's delete_id frees them. */
class SyncIds {
  private next = 2;
  private readonly free: number[] = [];
  take(): number {
    return this.free.pop() ?? this.next++;
  }
  release(id: number): void {
    this.free.push(id);
  }
}

/** Where the syncs go: a cross-domain context, or weston's socket directly. */
interface Transport {
  send(bytes: Uint8Array): void;
  /** The next bytes from the compositor. */
  receive(): Promise<Uint8Array>;
}

function viaContext(guest: CrossDomainGuest): Transport {
  return {
    send: (b) => guest.send(b),
    receive: async () => {
      const e = await guest.poll();
      if (e.cmd !== 'receive') throw new Error(`unexpected ${e.cmd}`);
      return e.data;
    },
  };
}

function direct(path: string): Transport & { close(): void } {
  const fd = check('connect to weston', n.connectUnix(path, true));
  const buf = new Uint8Array(4096), fds = new Int32Array(2);
  const w = n.watch(fd, () => wake?.());
  if (typeof w === 'number') throw new Error(`watch ${w}`);
  let wake: (() => void) | null = null;
  return {
    send: (b) => {
      if (n.sendMsg(fd, [b], null) !== b.length) throw new Error('short send to weston');
    },
    receive: async () => {
      for (;;) {
        const r = n.recvMsg(fd, buf, 0, buf.length, fds);
        if (r > 0) return buf.slice(0, r);
        if (r !== -n.EAGAIN) throw new Error(`recv from weston: ${r}`);
        await new Promise<void>((resolve) => {
          wake = () => {
            w.stop();
            wake = null;
            resolve();
          };
          w.start(n.READABLE);
        });
      }
    },
    close: () => {
      w.close();
      n.close(fd);
    },
  };
}

/** Syncs with up to `window` in flight for `seconds`: completed count and round trip of each (ms). */
async function syncs(t: Transport, window: number, seconds: number): Promise<{ count: number; rtt: number[] }> {
  const ids = new SyncIds(), stream = new EventStream(), sentAt = new Map<number, number>(), rtt: number[] = [];
  const end = performance.now() + seconds * 1000;
  let count = 0;
  const issue = () => {
    const id = ids.take();
    sentAt.set(id, performance.now());
    t.send(message(WL.DISPLAY, WL.display.sync, [{ u: id }]));
  };
  for (let i = 0; i < window; i++) issue();
  while (sentAt.size > 0) {
    for (const e of stream.feed(await t.receive())) {
      if (e.obj === WL.DISPLAY && e.opcode === WL.display.evDeleteId) ids.release(new Args(e.body).u());
      else if (e.opcode === WL.callback.evDone && sentAt.has(e.obj)) {
        rtt.push(performance.now() - sentAt.get(e.obj)!);
        sentAt.delete(e.obj);
        count++;
        if (performance.now() < end) issue();
      } else if (e.obj === WL.DISPLAY && e.opcode === WL.display.evError) throw new Error('wl_display.error');
    }
  }
  return { count, rtt };
}

async function contexts(pool: WorkerContexts, weston: Weston, count: number, firstId: number): Promise<CrossDomainGuest[]> {
  const gs = Array.from({ length: count }, (_, i) => new CrossDomainGuest(pool, firstId + i, weston.socket));
  for (const g of gs) if ((await g.init()) !== 0) throw new Error('INIT failed');
  return gs;
}

async function main(): Promise<void> {
  const weston = await Weston.start(320, 240);
  const pool = new WorkerContexts(16);
  const secs = argv.seconds;
  const figures: Record<string, unknown> = { machine: machineInfo(), cores: cpus().length, seconds: secs, window: WINDOW };
  try {
    // Round trip, one at a time.
    const d = direct(weston.socket);
    const directRtt = (await syncs(d, 1, secs)).rtt;
    const directRate = (await syncs(d, WINDOW, secs)).count / secs;
    d.close();
    const [one] = await contexts(pool, weston, 1, 1);
    const ctxRtt = (await syncs(viaContext(one), 1, secs)).rtt;
    await one.destroy();

    // Throughput, N contexts in parallel on their own workers.
    const scaling: Array<{ contexts: number; perSecond: number }> = [];
    let nextId = 10;
    for (const k of [1, 2, 4, 8]) {
      const gs = await contexts(pool, weston, k, nextId);
      nextId += k;
      const done = await Promise.all(gs.map((g) => syncs(viaContext(g), WINDOW, secs)));
      scaling.push({ contexts: k, perSecond: done.reduce((s, r) => s + r.count, 0) / secs });
      await Promise.all(gs.map((g) => g.destroy()));
    }

    // Host3d blobs from image requirements.
    const [b] = await contexts(pool, weston, 1, 100);
    let blobs = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < secs * 1000) {
      const reqs = await b.imageRequirements(256, 256, XR24);
      const blob = await b.host.createBlob(BigInt(reqs.blobId), reqs.size, 1);
      n.close(blob.fd);
      blobs++;
    }
    const blobRate = blobs / ((performance.now() - t0) / 1000);
    await b.destroy();

    const sorted = (a: number[]) => Float64Array.from(a).sort();
    const med = (a: number[]) => percentile(sorted(a), 50), p99 = (a: number[]) => percentile(sorted(a), 99);
    console.log(`\n## Cross-domain: wl_display.sync through weston ${'(headless, pixman)'}, ${cpus().length} cores, ${secs} s per figure\n`);
    console.log('| round trip (one in flight) | median ms | p99 ms |');
    console.log('|---|--:|--:|');
    console.log(`| direct client on weston's socket | ${med(directRtt).toFixed(3)} | ${p99(directRtt).toFixed(3)} |`);
    console.log(`| through one cross-domain context | ${med(ctxRtt).toFixed(3)} | ${p99(ctxRtt).toFixed(3)} |`);
    console.log(`\n| messages/s (syncs, ${WINDOW} in flight per client) | syncs/s | vs direct |`);
    console.log('|---|--:|--:|');
    console.log(`| direct client, 1 connection | ${directRate.toFixed(0)} | 1.00x |`);
    for (const s of scaling) console.log(`| ${s.contexts} cross-domain context${s.contexts > 1 ? 's' : ''} | ${s.perSecond.toFixed(0)} | ${(s.perSecond / directRate).toFixed(2)}x |`);
    console.log(`\nhost3d blobs (GET_IMAGE_REQUIREMENTS + CREATE_BLOB, 256x256 XRGB): ${blobRate.toFixed(0)}/s`);
    console.log('RESOURCE_MAP_BLOB / UNMAP_BLOB per second: npm run bench:blob-map');
    Object.assign(figures, {
      roundTripMs: { direct: { median: med(directRtt), p99: p99(directRtt) }, context: { median: med(ctxRtt), p99: p99(ctxRtt) } },
      syncsPerSecond: { direct: directRate, scaling }, blobsPerSecond: blobRate,
    });
    if (argv.json) writeFileSync(argv.json, JSON.stringify(figures, null, 2));
  } finally {
    await pool.close();
    await weston.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
