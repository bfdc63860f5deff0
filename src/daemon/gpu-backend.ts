/**
 * Composition of one device instance for a vhost-user session: a codec and a VirtQueue per queue,
 * the GPU device, and the display port. Everything 2D runs here on the coordinator thread.
 */
import { log } from '../log.js';
import { native } from '../native.js';
import type { VhostUserBackend, RingLayout } from '../transport/backend.js';
import type { GuestMemory } from '../transport/guest-memory.js';
import type { SharedMemoryRegion } from '../transport/shared-memory.js';
import { Codec } from '../queues/codec.js';
import { VirtQueue } from '../queues/virtqueue.js';
import { GpuDevice } from '../device/gpu-device.js';
import { NO_HOST_VISIBLE_REGION, SHM_ID_HOST_VISIBLE } from '../device/host-visible.js';
import type { GuestAccess } from '../device/backing.js';
import { DisplayChannel } from '../display/display-channel.js';
import { DisplayPort } from '../display/display-port.js';
import type { VirglService } from '../renderers/virgl/service.js';
import type { OfferedCapset } from '../device/contexts.js';
import type { WorkerContexts } from '../renderers/worker-context/host.js';

export const CONTROL_QUEUE = 0;
export const CURSOR_QUEUE = 1;

export interface GpuBackendOptions {
  maxHostMemory: number;
  /** virglrenderer's render server in virglrenderer mode (shared by the sessions). */
  virgl?: VirglService | null;
  /** Capsets of worker-run context types (cross-domain) and their pool (shared by the sessions). */
  workerCapsets?: readonly OfferedCapset[];
  workers?: WorkerContexts | null;
  maxContexts?: number;
  /** Size of the host-visible region asked of a front-end with SHMEM (0 or absent: none). */
  hostVisibleSize?: number;
  /** Busy-poll a queue this long after answering before sleeping until the next kick (0 or absent: never). */
  pollUs?: number;
}

export class GpuBackend implements VhostUserBackend {
  readonly numQueues = 2;
  // One codec per queue: a command waiting on the display keeps its decoded record while the
  // cursor queue goes on.
  private readonly codecs = [Codec.create(), Codec.create()];
  private readonly queues: (VirtQueue | null)[] = [null, null];
  private readonly port = new DisplayPort();
  private readonly device: GpuDevice;
  private readonly pollUs: number;
  private memory: GuestMemory | null = null;
  /** Whether the control queue ever ran with the current device state. */
  private deviceUsed = false;

  constructor(opts: GpuBackendOptions) {
    const self = this;
    this.pollUs = opts.pollUs ?? 0;
    const access: GuestAccess = {
      get generation() {
        return self.memory?.generation ?? -1;
      },
      translate: (gpa, len, each) => this.codecs[CONTROL_QUEUE].translate(gpa, len, each),
      chunkHost: (chunk) => this.memory!.chunks[chunk].host,
      mappings: () => this.memory?.mappings() ?? [],
    };
    this.device = new GpuDevice({
      maxHostMemory: opts.maxHostMemory, display: this.port, memory: access, virgl: opts.virgl,
      workerCapsets: opts.workerCapsets, workers: opts.workers, maxContexts: opts.maxContexts,
      hostVisibleSize: opts.hostVisibleSize,
    });
  }

  deviceFeatures(): bigint {
    return this.device.features();
  }

  setAckedFeatures(features: bigint): void {
    this.device.setAckedFeatures(features);
  }

  config(): Uint8Array {
    return this.device.config();
  }

  setConfig(_offset: number, _data: Uint8Array): boolean {
    // QEMU writes its whole virtio_gpu_config at offset 0 when the guest clears events
    // (vhost_user_gpu_set_config), and keeps the display events itself: nothing here changes.
    // The rest is read-only to the guest, so a write elsewhere changes nothing either.
    return true;
  }

  memoryChanged(mem: GuestMemory): void {
    this.memory = mem;
    for (const c of this.codecs) c.setMemory(mem);
    this.device.memoryChanged();
  }

  startQueue(i: number, layout: RingLayout, notify: () => void, broken: (reason: string) => void): string | null {
    const codec = this.codecs[i];
    const handler = i === CONTROL_QUEUE
      ? { responds: true, execute: (c: Codec, q: VirtQueue) => this.device.control(c, q) }
      : { responds: false, execute: (c: Codec) => (this.device.cursor(c), 0) };
    // Display messages of a batch leave in one write, before the guest hears of the batch.
    const flushThenNotify = () => {
      this.port.flush();
      notify();
    };
    const q = new VirtQueue(i, codec, handler, flushThenNotify, broken, this.pollUs);
    const err = q.start(layout);
    if (err) return err;
    this.queues[i] = q;
    if (i === CONTROL_QUEUE) {
      // A control ring starting from scratch (avail and used both at 0) means a new driver (guest
      // reboot): QEMU does not reset vhost-user devices, so drop the old driver's resources here.
      // A paused-and-resumed VM restarts at its saved non-zero indexes and keeps them.
      if (layout.lastAvail === 0 && codec.usedIdx(i) === 0 && this.deviceUsed) {
        log.info('control queue restarted from index 0: new driver, device state reset');
        this.device.reset();
      }
      this.deviceUsed = true;
    }
    return null;
  }

  stopQueue(i: number): number {
    const q = this.queues[i];
    this.queues[i] = null;
    return q ? q.stop() : 0;
  }

  kick(i: number): void {
    this.queues[i]?.process();
  }

  setDisplaySocket(fd: number): void {
    let channel: DisplayChannel;
    try {
      channel = new DisplayChannel(fd);
    } catch (e) {
      native().close(fd);
      throw e;
    }
    channel.onDrained = (id, x, y, width, height) => this.device.refreshScanout(id, { x, y, width, height });
    this.port.attach(channel);
    channel.init().catch((e) => log.warn(`display: setup failed: ${(e as Error).message}`));
  }

  sharedMemorySizes(): readonly number[] {
    return this.device.sharedMemorySizes();
  }

  setSharedMemory(regions: ReadonlyMap<number, SharedMemoryRegion>): void {
    this.device.setHostVisible(regions.get(SHM_ID_HOST_VISIBLE) ?? NO_HOST_VISIBLE_REGION);
  }

  reset(): void {
    this.device.reset();
    this.deviceUsed = false;
  }

  close(): void {
    for (let i = 0; i < this.queues.length; i++) this.stopQueue(i);
    this.device.reset();
    this.port.attach(null);
    this.memory = null;
  }
}
