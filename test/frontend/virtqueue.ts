/**
 * Driver side of a split virtqueue (virtio 1.x, protocols.md §1) living in GuestRam: what the
 * guest's virtio driver does. Descriptor bookkeeping uses shadow arrays, so a backend that
 * scribbles over the descriptor table cannot corrupt our free list.
 *
 * Hot path (addPair / kick / popUsedId) allocates nothing. Raw accessors let tests build broken
 * rings (loops, bad indexes, bad addresses, avail index jumps).
 */
import { native, check, watchFd } from '../../src/native.js';
import type { FdWatcher, NativeAddon } from '../../src/native.js';
import { GuestRam, readU64At } from './guest-memory.js';
import { VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT, VRING_USED_F_NO_NOTIFY, VRING_AVAIL_F_NO_INTERRUPT, fullFence, writeDescAt } from './vring.js';
import type { RawDesc, AddOptions, UsedElem } from './vring.js';
import type { GuestRange } from './guest-memory.js';

export * from './vring.js';

const INDIRECT_SLOTS = 16;

interface Waiter { count: number; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout | null }

export class DriverQueue {
  readonly descGpa: number;
  readonly availGpa: number;
  readonly usedGpa: number;
  /** Our ends of the kick / call / err eventfds (the backend gets the same eventfds). */
  readonly kickFd: number;
  readonly callFd: number;
  readonly errFd: number;
  /** Set from the negotiated features (VhostUserFrontend.start does it). */
  eventIdx = false;
  indirectNegotiated = false;
  /** Kick even when the device suppressed notifications. */
  alwaysKick = false;
  /** Called on every call-eventfd interrupt, before waiters are checked (GpuDriver drains here). */
  onInterrupt: (() => void) | null = null;
  /** Length of the element returned by the last popUsedId(). */
  lastUsedLen = 0;
  kicks = 0;
  kicksSuppressed = 0;
  interrupts = 0;

  private readonly addon: NativeAddon = native();
  private readonly dv: DataView;
  private readonly descOff: number;
  private readonly availOff: number;
  private readonly usedOff: number;
  private readonly block: number;
  private readonly indirectArea: number;
  private readonly nextShadow: Uint16Array;
  private readonly chainCount: Uint16Array;
  private readonly inflight: Uint8Array;
  private readonly dynIndirect = new Map<number, number>();
  private freeHead = 0;
  private numFree: number;
  private availShadow = 0;
  private lastKickAvail = 0;
  private lastUsed = 0;
  private readonly watcher: FdWatcher;
  private waiters: Waiter[] = [];
  private closed = false;

  constructor(readonly ram: GuestRam, readonly index: number, readonly size: number) {
    if (size < 1 || size > 32768 || (size & (size - 1)) !== 0) {
      throw new RangeError(`queue size must be a power of two in [1, 32768], got ${size}`);
    }
    const availAt = 16 * size;
    const usedAt = alignUp(availAt + 6 + 2 * size, 4096);
    const total = usedAt + 6 + 8 * size;
    this.block = ram.alloc(total, 4096);
    ram.fill(this.block, total, 0);
    this.descGpa = this.block;
    this.availGpa = this.block + availAt;
    this.usedGpa = this.block + usedAt;
    this.dv = ram.view;
    this.descOff = ram.offsetOf(this.descGpa, 16 * size);
    this.availOff = ram.offsetOf(this.availGpa, 6 + 2 * size);
    this.usedOff = ram.offsetOf(this.usedGpa, 6 + 8 * size);
    this.indirectArea = ram.alloc(size * INDIRECT_SLOTS * 16, 4096);
    this.nextShadow = new Uint16Array(size);
    this.chainCount = new Uint16Array(size);
    this.inflight = new Uint8Array(size);
    this.numFree = size;
    for (let i = 0; i < size; i++) this.nextShadow[i] = (i + 1) % size;
    this.kickFd = check('eventfd(kick)', this.addon.eventfd(0, true));
    this.callFd = check('eventfd(call)', this.addon.eventfd(0, true));
    this.errFd = check('eventfd(err)', this.addon.eventfd(0, true));
    this.watcher = watchFd('watch call eventfd', this.callFd, (ev) => this.onCall(ev));
    this.watcher.start(this.addon.READABLE);
  }

  /** Ring addresses as QEMU virtual addresses (for SET_VRING_ADDR). */
  userAddrs(): { desc: number; avail: number; used: number } {
    return { desc: this.ram.userAddrOf(this.descGpa), avail: this.ram.userAddrOf(this.availGpa), used: this.ram.userAddrOf(this.usedGpa) };
  }

  get freeCount(): number { return this.numFree; }
  /** Next avail index the driver will publish (free-running u16). */
  get availIdx(): number { return this.availShadow; }
  /** Used index consumed so far by the driver. */
  get lastUsedIdx(): number { return this.lastUsed; }

  // --- adding buffers -------------------------------------------------------------------------

  /** One readable + (optional, wLen > 0) one writable descriptor. Allocation-free. Returns the head. */
  addPair(rGpa: number, rLen: number, wGpa: number, wLen: number): number {
    const count = wLen > 0 ? 2 : 1;
    if (this.numFree < count) throw new RangeError(`queue ${this.index}: no free descriptors`);
    const head = this.freeHead;
    if (count === 2) {
      const second = this.nextShadow[head]!;
      this.freeHead = this.nextShadow[second]!;
      this.putDesc(head, rGpa, rLen, VRING_DESC_F_NEXT, second);
      this.putDesc(second, wGpa, wLen, VRING_DESC_F_WRITE, 0);
    } else {
      this.freeHead = this.nextShadow[head]!;
      this.putDesc(head, rGpa, rLen, 0, 0);
    }
    this.numFree -= count;
    this.chainCount[head] = count;
    this.inflight[head] = 1;
    this.publish(head);
    return head;
  }

  /** addPair through a one-descriptor indirect table (needs INDIRECT_DESC). Allocation-free. */
  addPairIndirect(rGpa: number, rLen: number, wGpa: number, wLen: number): number {
    if (this.numFree < 1) throw new RangeError(`queue ${this.index}: no free descriptors`);
    const head = this.freeHead;
    const table = this.indirectArea + head * INDIRECT_SLOTS * 16;
    const tOff = this.ram.offsetOf(table, 32);
    const n = wLen > 0 ? 2 : 1;
    writeDescAt(this.dv, tOff, rGpa, rLen, n === 2 ? VRING_DESC_F_NEXT : 0, n === 2 ? 1 : 0);
    if (n === 2) writeDescAt(this.dv, tOff + 16, wGpa, wLen, VRING_DESC_F_WRITE, 0);
    this.freeHead = this.nextShadow[head]!;
    this.numFree -= 1;
    this.putDesc(head, table, n * 16, VRING_DESC_F_INDIRECT, 0);
    this.chainCount[head] = 1;
    this.inflight[head] = 1;
    this.publish(head);
    return head;
  }

  /** Readable buffers then writable buffers, as a direct chain or one indirect table. */
  add(readable: readonly GuestRange[], writable: readonly GuestRange[], opts?: AddOptions): number {
    const total = readable.length + writable.length;
    if (total === 0) throw new RangeError('a chain needs at least one buffer');
    if (opts?.indirect) {
      if (this.numFree < 1) throw new RangeError(`queue ${this.index}: no free descriptors`);
      const head = this.freeHead;
      let table = this.indirectArea + head * INDIRECT_SLOTS * 16;
      if (total > INDIRECT_SLOTS) { table = this.ram.alloc(total * 16, 16); this.dynIndirect.set(head, table); }
      const tOff = this.ram.offsetOf(table, total * 16);
      for (let i = 0; i < total; i++) {
        const b = i < readable.length ? readable[i]! : writable[i - readable.length]!;
        const flags = (i < readable.length ? 0 : VRING_DESC_F_WRITE) | (i < total - 1 ? VRING_DESC_F_NEXT : 0);
        writeDescAt(this.dv, tOff + i * 16, b.gpa, b.len, flags, i < total - 1 ? i + 1 : 0);
      }
      this.freeHead = this.nextShadow[head]!;
      this.numFree -= 1;
      this.putDesc(head, table, total * 16, VRING_DESC_F_INDIRECT, 0);
      this.chainCount[head] = 1;
      this.inflight[head] = 1;
      this.publish(head);
      return head;
    }
    if (this.numFree < total) throw new RangeError(`queue ${this.index}: ${total} descriptors needed, ${this.numFree} free`);
    const head = this.freeHead;
    let i = head;
    for (let k = 0; k < total; k++) {
      const b = k < readable.length ? readable[k]! : writable[k - readable.length]!;
      const next = this.nextShadow[i]!;
      const flags = (k < readable.length ? 0 : VRING_DESC_F_WRITE) | (k < total - 1 ? VRING_DESC_F_NEXT : 0);
      this.putDesc(i, b.gpa, b.len, flags, k < total - 1 ? next : 0);
      if (k === total - 1) this.freeHead = next;
      i = next;
    }
    this.numFree -= total;
    this.chainCount[head] = total;
    this.inflight[head] = 1;
    this.publish(head);
    return head;
  }

  /**
   * Raw chain for malformed-ring tests: takes descs.length free descriptors, writes them exactly
   * as given (next defaults to the following descriptor of this chain) and publishes the head
   * unless publish is false. Returns the descriptor indexes used (head first).
   */
  addRawChain(descs: readonly RawDesc[], publish = true): number[] {
    if (descs.length === 0 || this.numFree < descs.length) throw new RangeError('not enough free descriptors');
    const idx: number[] = [];
    let i = this.freeHead;
    for (let k = 0; k < descs.length; k++) { idx.push(i); i = this.nextShadow[i]!; }
    this.freeHead = i;
    this.numFree -= descs.length;
    for (let k = 0; k < descs.length; k++) {
      const d = descs[k]!;
      this.nextShadow[idx[k]!] = k + 1 < idx.length ? idx[k + 1]! : 0;
      this.putDesc(idx[k]!, d.addr, d.len, d.flags, d.next ?? (k + 1 < idx.length ? idx[k + 1]! : 0));
    }
    this.chainCount[idx[0]!] = descs.length;
    this.inflight[idx[0]!] = 1;
    if (publish) this.publish(idx[0]!);
    return idx;
  }

  /** Put `head` in the next avail slot and move avail.idx. */
  publish(head: number): void {
    this.dv.setUint16(this.availOff + 4 + 2 * (this.availShadow & (this.size - 1)), head, true);
    this.availShadow = (this.availShadow + 1) & 0xffff;
    // x86 keeps store order; the ring entry is visible before the index.
    this.dv.setUint16(this.availOff + 2, this.availShadow, true);
  }

  /** Notify the device unless it suppressed notifications (used.flags / avail_event). Returns whether it kicked. */
  kick(force = false): boolean {
    fullFence(); // avail.idx must be visible before we read the device's suppression state
    const now = this.availShadow;
    const old = this.lastKickAvail;
    this.lastKickAvail = now;
    let need: boolean;
    if (this.eventIdx) {
      const ev = this.dv.getUint16(this.usedOff + 4 + 8 * this.size, true);
      need = ((now - ev - 1) & 0xffff) < ((now - old) & 0xffff);
    } else {
      need = (this.dv.getUint16(this.usedOff, true) & VRING_USED_F_NO_NOTIFY) === 0 && now !== old;
    }
    if (need || force || this.alwaysKick) {
      this.addon.eventfdWrite(this.kickFd, 1);
      this.kicks++;
      return true;
    }
    this.kicksSuppressed++;
    return false;
  }

  // --- used ring ------------------------------------------------------------------------------

  usedIdx(): number { return this.dv.getUint16(this.usedOff + 2, true); }
  /** Used entries not consumed yet. */
  pendingUsed(): number { return (this.usedIdx() - this.lastUsed) & 0xffff; }

  /** Next used element's id (lastUsedLen gets its len), or -1. Frees the chain it names. Allocation-free. */
  popUsedId(): number {
    if (this.usedIdx() === this.lastUsed) return -1;
    const at = this.usedOff + 4 + 8 * (this.lastUsed & (this.size - 1));
    const id = this.dv.getUint32(at, true);
    this.lastUsedLen = this.dv.getUint32(at + 4, true);
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    if (id < this.size && this.inflight[id] === 1) this.freeChain(id);
    return id;
  }

  popUsed(): UsedElem | null {
    const id = this.popUsedId();
    return id < 0 ? null : { id, len: this.lastUsedLen };
  }

  /**
   * Ask for an interrupt once `count` more entries (beyond those consumed) are used: with
   * EVENT_IDX by writing used_event. Returns true if they are already there (no wait needed).
   */
  armInterrupt(count = 1): boolean {
    if (this.eventIdx) {
      this.dv.setUint16(this.availOff + 4 + 2 * this.size, (this.lastUsed + count - 1) & 0xffff, true);
      fullFence(); // used_event store before re-reading used.idx, or a completion can slip by
    }
    return this.pendingUsed() >= count;
  }

  /**
   * Ask the device not to interrupt (a driver that polls the used ring meanwhile, as Linux's
   * virtqueue_disable_cb): with EVENT_IDX used_event is put half the index space behind, so
   * vring_need_event stays false; without it VRING_AVAIL_F_NO_INTERRUPT is set. armInterrupt and
   * allowInterrupts undo it.
   */
  suppressInterrupts(): void {
    if (this.eventIdx) this.dv.setUint16(this.availOff + 4 + 2 * this.size, (this.lastUsed + 0x8000) & 0xffff, true);
    else this.dv.setUint16(this.availOff, this.dv.getUint16(this.availOff, true) | VRING_AVAIL_F_NO_INTERRUPT, true);
  }

  /** Undo suppressInterrupts and ask for the next used entry (true if it is already there). */
  allowInterrupts(): boolean {
    if (!this.eventIdx) this.dv.setUint16(this.availOff, this.dv.getUint16(this.availOff, true) & ~VRING_AVAIL_F_NO_INTERRUPT, true);
    return this.armInterrupt(1);
  }

  /** Resolves once at least `count` unconsumed used entries exist (waits on the call eventfd). */
  waitUsed(timeoutMs = 5000, count = 1): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`queue ${this.index} is closed`));
    if (this.armInterrupt(count)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { count, resolve, reject, timer: null };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`queue ${this.index}: no used buffer within ${timeoutMs} ms (used.idx ${this.usedIdx()}, consumed ${this.lastUsed}, avail ${this.availShadow})`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private onCall(events: number): void {
    if (this.closed || events < 0) return;
    this.addon.eventfdRead(this.callFd); // clear first, so a later completion re-arms readiness
    this.interrupts++;
    this.onInterrupt?.();
    for (;;) {
      if (this.waiters.length === 0) return;
      let min = Infinity;
      const keep: Waiter[] = [];
      for (const w of this.waiters) {
        if (this.pendingUsed() >= w.count) { if (w.timer) clearTimeout(w.timer); w.resolve(); }
        else { keep.push(w); min = Math.min(min, w.count); }
      }
      this.waiters = keep;
      if (keep.length === 0 || !this.armInterrupt(min)) return;
    }
  }

  private freeChain(head: number): void {
    const n = this.chainCount[head]!;
    let tail = head;
    for (let k = 1; k < n; k++) tail = this.nextShadow[tail]!;
    this.nextShadow[tail] = this.freeHead;
    this.freeHead = head;
    this.numFree += n;
    this.inflight[head] = 0;
    const dyn = this.dynIndirect.get(head);
    if (dyn !== undefined) { this.dynIndirect.delete(head); this.ram.free(dyn); }
  }

  // --- raw access for malformed-ring tests ----------------------------------------------------

  writeDesc(i: number, addr: number | bigint, len: number, flags: number, next: number): void {
    writeDescAt(this.dv, this.descOff + 16 * i, addr, len, flags, next);
  }

  readDesc(i: number): RawDesc {
    const o = this.descOff + 16 * i;
    return { addr: readU64At(this.dv, o), len: this.dv.getUint32(o + 8, true), flags: this.dv.getUint16(o + 12, true), next: this.dv.getUint16(o + 14, true) };
  }

  /** Write avail.idx directly (e.g. jump past the ring size). The shadow follows. */
  setAvailIdx(idx: number): void {
    this.availShadow = idx & 0xffff;
    this.dv.setUint16(this.availOff + 2, this.availShadow, true);
  }

  /** Write avail.ring[slot] directly. */
  setAvailRing(slot: number, head: number): void {
    this.dv.setUint16(this.availOff + 4 + 2 * (slot & (this.size - 1)), head, true);
  }

  setAvailFlags(flags: number): void { this.dv.setUint16(this.availOff, flags, true); }
  setUsedEvent(v: number): void { this.dv.setUint16(this.availOff + 4 + 2 * this.size, v & 0xffff, true); }
  usedFlags(): number { return this.dv.getUint16(this.usedOff, true); }
  availEvent(): number { return this.dv.getUint16(this.usedOff + 4 + 8 * this.size, true); }
  readUsedElem(slot: number): UsedElem {
    const at = this.usedOff + 4 + 8 * (slot & (this.size - 1));
    return { id: this.dv.getUint32(at, true), len: this.dv.getUint32(at + 4, true) };
  }

  /** Forget all in-flight buffers and zero the rings (after RESET_DEVICE or a reconnect). */
  reset(): void {
    this.ram.fill(this.block, this.usedGpa + 6 + 8 * this.size - this.block, 0);
    for (const gpa of this.dynIndirect.values()) this.ram.free(gpa);
    this.dynIndirect.clear();
    for (let i = 0; i < this.size; i++) this.nextShadow[i] = (i + 1) % this.size;
    this.inflight.fill(0);
    this.freeHead = 0;
    this.numFree = this.size;
    this.availShadow = this.lastKickAvail = this.lastUsed = 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    for (const fd of [this.kickFd, this.callFd, this.errFd]) this.addon.close(fd);
    for (const w of this.waiters) { if (w.timer) clearTimeout(w.timer); w.reject(new Error(`queue ${this.index} closed`)); }
    this.waiters = [];
  }

  private putDesc(i: number, addr: number | bigint, len: number, flags: number, next: number): void {
    writeDescAt(this.dv, this.descOff + 16 * i, addr, len, flags, next);
  }
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
