/**
 * What a vhost-user session needs from the device it serves (rust-vmm's VhostUserBackend, in
 * small). The session owns the socket, memory table and ring fds; the backend owns the queues.
 */
import type { GuestMemory } from './guest-memory.js';
import type { SharedMemoryRegion } from './shared-memory.js';

/** A ring's layout in guest-physical addresses, ready for the queue layer. */
export interface RingLayout {
  size: number;
  desc: bigint;
  avail: bigint;
  used: bigint;
  /** Next avail index to process (SET_VRING_BASE, or where GET_VRING_BASE stopped). */
  lastAvail: number;
  eventIdx: boolean;
  indirect: boolean;
}

export interface VhostUserBackend {
  readonly numQueues: number;
  /** Device feature bits (without the ring and vhost-user bits the session adds). */
  deviceFeatures(): bigint;
  /** Protocol features the backend needs beyond the session's own (e.g. none). */
  setAckedFeatures(features: bigint): void;
  /** The device's configuration space. */
  config(): Uint8Array;
  /** A front-end write to configuration space: accepted or not. */
  setConfig(offset: number, data: Uint8Array): boolean;
  /** The memory table changed (all queues are stopped while this runs). */
  memoryChanged(mem: GuestMemory): void;
  /** Start queue i; returns an error text, or null when running. */
  startQueue(i: number, layout: RingLayout, notify: () => void, broken: (reason: string) => void): string | null;
  /** Stop queue i and return the next avail index to process. */
  stopQueue(i: number): number;
  /** The driver kicked queue i. */
  kick(i: number): void;
  /** The display socket (GPU_SET_SOCKET); the backend owns the fd from now on. */
  setDisplaySocket(fd: number): void;
  /**
   * Sizes of the device's VIRTIO shared memory regions, indexed by shmid (0: no such region).
   * With any non-zero size the session offers SHMEM (and the back-end channel it needs).
   */
  sharedMemorySizes(): readonly number[];
  /**
   * The front-end now maps into these regions for us (by shmid), or stopped doing so (an empty
   * map: channel gone, device reset, session over). Mappings made into earlier regions are gone:
   * the front-end removes them itself.
   */
  setSharedMemory(regions: ReadonlyMap<number, SharedMemoryRegion>): void;
  /** Reset device state (resources, scanouts...) but keep the session. */
  reset(): void;
  /** The session is over: release everything. */
  close(): void;
}
