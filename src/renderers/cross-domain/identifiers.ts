/**
 * The identifiers a cross-domain context hands the guest: image requirements (GET_IMAGE_REQUIREMENTS,
 * kept for later blobs), and the fds the compositor sent (memory to create a blob from, pipes'
 * write ends, eventfds) or the host made (pipes whose read end the host READs). Every fd here is
 * owned by the table: removing an entry or clear() closes it. Bounded: a compositor that sends fds
 * the guest never consumes ends the context, it does not grow the table.
 */
import type { FdWatcher, NativeAddon } from '../../native.js';
import { ContextError } from '../worker-context/context-api.js';
import type { ImageLayout } from './image-layout.js';
import { PIPE_READ_START } from './protocol.js';

/** Entries holding an fd, at most (requirements hold none). */
export const MAX_FD_ITEMS = 256;
export const MAX_REQUIREMENTS = 1024;
/** Descriptor ids stay below the read-pipe range (rutabaga keeps other ranges above 0x40000000). */
const DESCRIPTOR_ID_END = 0x40000000;

export interface Requirements {
  readonly kind: 'requirements';
  readonly layout: ImageLayout;
}
/** Shared memory the compositor sent (a keymap, a pool): a blob may be made of it once. */
export interface MemoryItem {
  readonly kind: 'memory';
  readonly fd: number;
  readonly size: number;
  /** Opened read-write (a mapping of it can be writable, as MAP_BLOB's are). */
  readonly writable: boolean;
}
/** A pipe's write end from the compositor; the guest WRITEs, queued while the pipe is full. */
export interface WritePipe {
  readonly kind: 'write-pipe';
  readonly fd: number;
  readonly queue: Uint8Array[];
  queued: number;
  hangUp: boolean;
  watcher: FdWatcher | null;
}
/** The read end of a pipe whose write end went to the compositor; READ events carry its data. */
export interface ReadPipe {
  readonly kind: 'read-pipe';
  readonly fd: number;
  watcher: FdWatcher | null;
}
/** An eventfd from the compositor: WRITE adds to it; once watched (READ_CREATE_EVENT) its counter arrives as READ. */
export interface EventItem {
  readonly kind: 'event';
  readonly fd: number;
  watched: boolean;
  watcher: FdWatcher | null;
}

export type Item = Requirements | MemoryItem | WritePipe | ReadPipe | EventItem;
type FdItem = Exclude<Item, Requirements>;

export class Identifiers {
  private readonly items = new Map<number, Item>();
  /** Requirement ids by layout request, so a guest asking the same again gets the same id. */
  private readonly byRequest = new Map<string, number>();
  private lastDescriptorId = 0;
  private lastReadPipeId = PIPE_READ_START;
  private fdItems = 0;

  constructor(private readonly n: NativeAddon) {}

  get(id: number): Item | undefined {
    return this.items.get(id);
  }

  /** Items that can be watched for READ events. */
  *watchable(): IterableIterator<[number, ReadPipe | EventItem]> {
    for (const [id, it] of this.items) {
      if (it.kind === 'read-pipe' || (it.kind === 'event' && it.watched)) yield [id, it];
    }
  }

  *writePipes(): IterableIterator<WritePipe> {
    for (const it of this.items.values()) if (it.kind === 'write-pipe') yield it;
  }

  /** The id of the requirements for this request, new or the one handed out before. */
  requirements(key: string, layout: ImageLayout): number {
    const known = this.byRequest.get(key);
    if (known !== undefined) return known;
    if (this.byRequest.size >= MAX_REQUIREMENTS) throw new ContextError(`more than ${MAX_REQUIREMENTS} different image requirements`);
    const id = this.nextDescriptorId();
    this.items.set(id, { kind: 'requirements', layout });
    this.byRequest.set(key, id);
    return id;
  }

  /** Take ownership of `item`'s fd under a new id. The fd is closed if the table is full. */
  addFd(item: FdItem): number {
    if (this.fdItems >= MAX_FD_ITEMS) {
      this.n.close(item.fd);
      throw new ContextError(`${MAX_FD_ITEMS} identifiers hold fds the guest has not consumed`);
    }
    const id = item.kind === 'read-pipe' ? this.nextReadPipeId() : this.nextDescriptorId();
    this.items.set(id, item);
    this.fdItems++;
    return id;
  }

  /** The id the next read pipe gets (the guest predicts it). */
  peekReadPipeId(): number {
    return this.lastReadPipeId >= 0xffffffff ? PIPE_READ_START + 1 : this.lastReadPipeId + 1;
  }

  /** Remove an fd item; its fd is the caller's now (closed with `close`). */
  take(id: number): FdItem | undefined {
    const it = this.items.get(id);
    if (!it || it.kind === 'requirements') return undefined;
    this.items.delete(id);
    this.fdItems--;
    if ('watcher' in it) it.watcher?.close();
    return it;
  }

  /** Remove an fd item and close its fd. */
  drop(id: number): void {
    const it = this.take(id);
    if (it) this.n.close(it.fd);
  }

  /** Close every fd and forget everything. */
  clear(): void {
    for (const id of [...this.items.keys()]) this.drop(id);
    this.items.clear();
    this.byRequest.clear();
  }

  private nextDescriptorId(): number {
    for (let tries = 0; tries < DESCRIPTOR_ID_END; tries++) {
      this.lastDescriptorId = this.lastDescriptorId + 1 >= DESCRIPTOR_ID_END ? 1 : this.lastDescriptorId + 1;
      if (!this.items.has(this.lastDescriptorId)) return this.lastDescriptorId;
    }
    throw new ContextError('no identifier left'); // unreachable with the bounds above
  }

  private nextReadPipeId(): number {
    this.lastReadPipeId = this.peekReadPipeId();
    // A pipe still open under a wrapped-around id would be shadowed: refuse instead.
    if (this.items.has(this.lastReadPipeId)) throw new ContextError(`read pipe id 0x${this.lastReadPipeId.toString(16)} is still in use`);
    return this.lastReadPipeId;
  }
}
