/**
 * The driver's own cost: the same GpuDriver / DriverQueue / DisplayPeer objects the real runs use,
 * wired (without vhost-user) to a device in a worker thread of this process that does no work
 * (bench/worker.ts, 'null-device'). Its figures are the ceiling this harness can measure on this
 * machine: the driver's JS, the eventfd + uv_poll hops, and the kernel copies of display messages.
 */
import { Worker } from 'node:worker_threads';
import { native } from '../src/native.js';
import { GuestRam, DriverQueue, DisplayPeer, GpuDriver } from '../test/frontend/index.js';
import type { DisplayPeerOptions, SubmitterOptions } from '../test/frontend/index.js';
import type { NullDeviceData } from './worker.js';
import type { BenchSession } from './scenarios.js';

export interface NullDevice {
  session: BenchSession;
  /** Errors the device reported (a malformed chain would be a driver bug). */
  errors: string[];
  close(): Promise<void>;
}

export interface NullDeviceOptions {
  ramSize: number;
  controlSize: number;
  cursorSize: number;
  display: DisplayPeerOptions;
  driver: SubmitterOptions;
}

export async function startNullDevice(o: NullDeviceOptions): Promise<NullDevice> {
  const ram = new GuestRam({ size: o.ramSize, name: 'bench-null-ram' });
  const control = new DriverQueue(ram, 0, o.controlSize);
  const cursor = new DriverQueue(ram, 1, o.cursorSize);
  // What the real back-ends negotiate with the test frontend.
  for (const q of [control, cursor]) { q.eventIdx = true; q.indirectNegotiated = true; }
  const { peer: display, backendFd } = DisplayPeer.pair(o.display);
  const driver = new GpuDriver(ram, control, cursor, o.driver);
  const data: NullDeviceData = {
    role: 'null-device',
    memfd: ram.fd,
    ramSize: ram.size,
    gpaBase: ram.regions[0]!.gpa,
    queues: [control, cursor].map((q) => ({
      size: q.size,
      descOff: ram.offsetOf(q.descGpa),
      availOff: ram.offsetOf(q.availGpa),
      usedOff: ram.offsetOf(q.usedGpa),
      kickFd: q.kickFd,
      callFd: q.callFd,
    })),
    displayFd: backendFd,
    displays: (o.display.displays ?? [{ width: 1024, height: 768 }]).map((m) => ({ width: m.width, height: m.height })),
  };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: data });
  const errors: string[] = [];
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`null device exited (code ${code}) before it was ready`)));
      worker.on('message', (m: unknown) => {
        if (m === 'ready') resolve();
        else if (m && typeof m === 'object' && 'error' in m) errors.push(String((m as { error: unknown }).error));
      });
    });
  } catch (e) {
    await worker.terminate();
    native().close(backendFd); // never handed over
    close();
    throw e;
  }
  worker.removeAllListeners('error');
  worker.on('error', (e) => errors.push(String(e)));

  function close(): void {
    driver.closeSubmitter();
    display.close();
    control.close();
    cursor.close();
    ram.close();
  }

  return {
    session: { driver, display, control, cursor, ram },
    errors,
    async close() {
      // The device may be blocked writing to the display: keep the peer reading until it is gone.
      worker.postMessage('stop');
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
      close();
    },
  };
}
