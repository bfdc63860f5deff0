/**
 * Benchmark scenarios. Each prepares its resources on a fresh session, then exposes one `step`:
 * a unit of work that queues commands with CommandBatch (no promise or allocation per command),
 * kicks once per queue, and resolves when every command has completed AND everything the step
 * must produce on the display (UPDATE bytes, CURSOR_UPDATEs) has arrived at the DisplayPeer.
 * The runner times steps (latency) and counts operations (throughput); one step is in flight at
 * a time (closed loop), as a guest waiting on its own commands would be.
 */
import { DisplayMsg, GpuFormat, gpuRespName } from '../test/frontend/index.js';
import type {
  GpuDriver, DisplayPeer, DriverQueue, GuestRam, BatchResult, GpuResponse, HeaderOptions, GuestRange,
} from '../test/frontend/index.js';

/** What a scenario needs: a FrontendSession, or the null device's equivalent. */
export interface BenchSession {
  driver: GpuDriver;
  display: DisplayPeer;
  control: DriverQueue;
  cursor: DriverQueue;
  ram: GuestRam;
}

export interface Prepared {
  /** One step; rejects if a command fails or the display does not get what it should. */
  step(): Promise<void>;
  /** Operations completed by one step. */
  opsPerStep: number;
  /** Pixel bytes one step moves (for MB/s); 0 when not meaningful. */
  bytesPerStep: number;
}

export interface Scenario {
  /** Short id for --scenario (a1, a2, b, …). */
  id: string;
  name: string;
  title: string;
  /** What one operation is (ops/s counts these). */
  op: string;
  /** What one latency sample covers. */
  step: string;
  prepare(s: BenchSession, timeoutMs: number): Promise<Prepared>;
}

export const FRAME_W = 1920;
export const FRAME_H = 1080;
/** What the DisplayPeer reports as the only display (GET_DISPLAY_INFO). */
export const DISPLAYS = [{ width: FRAME_W, height: FRAME_H, enabled: true }];
/** Guest RAM per session: the 1080p backing with 4 KiB scattered pages takes 16 MiB. */
export const RAM_SIZE = 128 * 1024 * 1024;
/** Guest page size used for every backing (scattered, as a guest's shmem pages are). */
const PAGE = 4096;
const FENCE: HeaderOptions = { fence: true };

function check(r: BatchResult, what: string): void {
  if (r.errors > 0) throw new Error(`${what}: ${r.errors}/${r.count} commands failed (first: ${gpuRespName(r.firstErrorType)})`);
}

async function ok(p: Promise<GpuResponse>, what: string): Promise<void> {
  const r = await p;
  if (!r.ok) throw new Error(`${what} failed: ${gpuRespName(r.type)}`);
}

/** A resource with a scattered, filled guest backing (set up with the promise API: not timed). */
async function makeResource(s: BenchSession, id: number, format: number, w: number, h: number): Promise<void> {
  await ok(s.driver.resourceCreate2d(id, format, w, h), `RESOURCE_CREATE_2D ${w}x${h}`);
  const r = await s.driver.attachBacking(id, w * h * 4, { chunk: PAGE });
  if (!r.ok) throw new Error(`RESOURCE_ATTACH_BACKING failed: ${gpuRespName(r.type)}`);
  r.backing.fill(0x5a);
}

/**
 * Waits for display counters (updateBytes, or a message count) through DisplayPeer.onHandled:
 * no event objects are recorded.
 */
class DisplayWait {
  private type = 0;
  private target = 0;
  private resolve: (() => void) | null = null;
  private reject: ((e: Error) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly d: DisplayPeer, private readonly timeoutMs: number) {
    d.onHandled = () => { if (this.resolve && this.value() >= this.target) this.settle(null); };
  }

  /** Until DisplayPeer.updateBytes >= n. */
  updateBytes(n: number): Promise<void> { return this.wait(0, n); }
  /** Until count(type) >= n. */
  count(type: number, n: number): Promise<void> { return this.wait(type, n); }

  private value(): number { return this.type === 0 ? this.d.updateBytes : this.d.count(this.type); }

  private wait(type: number, n: number): Promise<void> {
    this.type = type;
    this.target = n;
    if (this.value() >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.timer = setTimeout(() => {
        const what = type === 0 ? 'UPDATE bytes' : `display message ${type}`;
        this.settle(new Error(`display: ${what} ${this.value()}/${n} within ${this.timeoutMs} ms (${this.d.describeCounts()})`));
      }, this.timeoutMs);
    });
  }

  private settle(err: Error | null): void {
    const { resolve, reject } = this;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.resolve = this.reject = null;
    if (err) reject?.(err); else resolve?.();
  }
}

const BATCH = 64;

export const SCENARIOS: readonly Scenario[] = [
  {
    id: 'a1', name: 'display-info-x64', title: '64 GET_DISPLAY_INFO per kick',
    op: 'command', step: 'kick of 64 commands → 64 used buffers',
    async prepare(s, timeoutMs) {
      const batch = s.driver.batch({ indirect: true });
      return {
        opsPerStep: BATCH, bytesPerStep: 0,
        async step() {
          for (let i = 0; i < BATCH; i++) batch.getDisplayInfo();
          check(await batch.submit(timeoutMs), 'GET_DISPLAY_INFO');
        },
      };
    },
  },
  {
    id: 'a2', name: 'transfer-64x64-x64', title: '64 TRANSFER_TO_HOST_2D of 64x64 per kick (8x8 tiles of a 512x512 resource)',
    op: 'command', step: 'kick of 64 commands → 64 used buffers',
    async prepare(s, timeoutMs) {
      await makeResource(s, 1, GpuFormat.B8G8R8X8_UNORM, 512, 512);
      const batch = s.driver.batch({ indirect: true });
      return {
        opsPerStep: BATCH, bytesPerStep: BATCH * 64 * 64 * 4,
        async step() {
          for (let i = 0; i < BATCH; i++) {
            const x = (i & 7) * 64, y = (i >> 3) * 64;
            batch.transferToHost2d(1, x, y, 64, 64, (y * 512 + x) * 4);
          }
          check(await batch.submit(timeoutMs), 'TRANSFER_TO_HOST_2D');
        },
      };
    },
  },
  {
    id: 'b', name: 'roundtrip', title: 'single-command round trip: one TRANSFER_TO_HOST_2D 64x64, kick, wait',
    op: 'command', step: 'one command: kick → used buffer',
    async prepare(s, timeoutMs) {
      return roundTripPrep(s, timeoutMs, undefined, 'TRANSFER_TO_HOST_2D');
    },
  },
  {
    id: 'c', name: 'frame-1080p', title: `${FRAME_W}x${FRAME_H} B8G8R8X8 full frame: TRANSFER_TO_HOST_2D + RESOURCE_FLUSH, UPDATE received`,
    op: 'frame', step: 'frame: kick → both used buffers AND the whole UPDATE at the display',
    async prepare(s, timeoutMs) {
      return framePrep(s, timeoutMs, () => [0, 0, FRAME_W, FRAME_H]);
    },
  },
  {
    id: 'd', name: 'damage-256', title: '256x256 damage per frame (moving over the 1080p scanout): transfer + flush, UPDATE received',
    op: 'frame', step: 'frame: kick → both used buffers AND the UPDATE at the display',
    async prepare(s, timeoutMs) {
      let k = 0;
      return framePrep(s, timeoutMs, () => {
        const x = (k % 7) * 256, y = (Math.floor(k / 7) % 4) * 256;
        k++;
        return [x, y, 256, 256];
      });
    },
  },
  {
    id: 'e', name: 'fence-roundtrip', title: 'FLAG_FENCE round trip: one fenced TRANSFER_TO_HOST_2D 64x64, kick, wait',
    op: 'fenced command', step: 'one fenced command: kick → used buffer',
    async prepare(s, timeoutMs) {
      return roundTripPrep(s, timeoutMs, FENCE, 'fenced TRANSFER_TO_HOST_2D');
    },
  },
  {
    id: 'f', name: 'resource-churn', title: 'resource churn: RESOURCE_CREATE_2D 256x256 + ATTACH_BACKING (16 x 16 KiB) + UNREF, 16 cycles per kick',
    op: 'create+attach+unref cycle', step: 'kick of 16 cycles (48 commands)',
    async prepare(s, timeoutMs) {
      const CYCLES = 16;
      const entries: readonly GuestRange[] = s.ram.allocScattered(256 * 256 * 4, 16384).entries;
      const batch = s.driver.batch({ indirect: true });
      return {
        opsPerStep: CYCLES, bytesPerStep: 0,
        async step() {
          for (let i = 0; i < CYCLES; i++) {
            const id = 100 + i;
            batch.resourceCreate2d(id, GpuFormat.B8G8R8X8_UNORM, 256, 256).resourceAttachBacking(id, entries).resourceUnref(id);
          }
          check(await batch.submit(timeoutMs), 'resource churn');
        },
      };
    },
  },
  {
    id: 'g', name: 'cursor', title: 'UPDATE_CURSOR with a 64x64 cursor resource, 16 per kick (the whole cursor queue), CURSOR_UPDATE received',
    op: 'cursor update', step: 'kick of 16 → 16 used buffers AND 16 CURSOR_UPDATEs at the display',
    async prepare(s, timeoutMs) {
      const N = 16;
      if (s.cursor.size < N) throw new Error(`cursor queue of ${s.cursor.size} < ${N}`);
      await makeResource(s, 2, GpuFormat.B8G8R8A8_UNORM, 64, 64);
      await ok(s.driver.transferToHost2d(2, 0, 0, 64, 64), 'cursor TRANSFER_TO_HOST_2D');
      const wait = new DisplayWait(s.display, timeoutMs);
      const batch = s.driver.batch(); // one descriptor per command, as Linux does (no response buffer)
      let expected = s.display.count(DisplayMsg.CURSOR_UPDATE);
      let k = 0;
      return {
        opsPerStep: N, bytesPerStep: 0,
        async step() {
          for (let i = 0; i < N; i++, k++) batch.updateCursor(0, (k * 7) % FRAME_W, (k * 3) % FRAME_H, 2, k & 15, k & 15);
          expected += N;
          check(await batch.submit(timeoutMs), 'UPDATE_CURSOR');
          await wait.count(DisplayMsg.CURSOR_UPDATE, expected);
        },
      };
    },
  },
];

/** Round trips (b, e): one TRANSFER_TO_HOST_2D of a 64x64 resource per kick, with `header` options. */
async function roundTripPrep(s: BenchSession, timeoutMs: number, header: HeaderOptions | undefined, what: string): Promise<Prepared> {
  await makeResource(s, 1, GpuFormat.B8G8R8X8_UNORM, 64, 64);
  const batch = s.driver.batch({ indirect: true });
  return {
    opsPerStep: 1, bytesPerStep: 0,
    async step() {
      batch.transferToHost2d(1, 0, 0, 64, 64, 0, header);
      check(await batch.submit(timeoutMs), what);
    },
  };
}

/** 1080p resource on scanout 0; each step transfers + flushes rect() and waits for its UPDATE bytes. */
async function framePrep(s: BenchSession, timeoutMs: number, rect: () => [number, number, number, number]): Promise<Prepared> {
  await makeResource(s, 1, GpuFormat.B8G8R8X8_UNORM, FRAME_W, FRAME_H);
  await ok(s.driver.transferToHost2d(1, 0, 0, FRAME_W, FRAME_H), 'initial TRANSFER_TO_HOST_2D');
  await ok(s.driver.setScanout(0, 1, 0, 0, FRAME_W, FRAME_H), 'SET_SCANOUT');
  const wait = new DisplayWait(s.display, timeoutMs);
  const batch = s.driver.batch({ indirect: true });
  let expected = s.display.updateBytes;
  const [, , w0, h0] = rect();
  return {
    opsPerStep: 1, bytesPerStep: w0 * h0 * 4,
    async step() {
      const [x, y, w, h] = rect();
      batch.transferToHost2d(1, x, y, w, h, (y * FRAME_W + x) * 4).resourceFlush(1, x, y, w, h);
      expected += w * h * 4;
      check(await batch.submit(timeoutMs), 'TRANSFER_TO_HOST_2D + RESOURCE_FLUSH');
      await wait.updateBytes(expected);
    },
  };
}

/** Scenarios named by a comma list of ids or names (all when empty). */
export function selectScenarios(list: string | undefined): Scenario[] {
  if (!list) return [...SCENARIOS];
  const out: Scenario[] = [];
  for (const want of list.split(',').map((w) => w.trim()).filter(Boolean)) {
    // 'a' selects a1 and a2.
    const hit = SCENARIOS.filter((sc) => sc.id === want || sc.name === want || (want.length === 1 && sc.id.startsWith(want)));
    if (hit.length === 0) throw new Error(`unknown scenario '${want}' (known: ${SCENARIOS.map((sc) => `${sc.id}=${sc.name}`).join(', ')})`);
    for (const h of hit) if (!out.includes(h)) out.push(h);
  }
  return out;
}
