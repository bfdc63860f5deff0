// Split virtqueue, device side: walks descriptor chains with every guest-controlled field checked
// (indexes, loops, indirect tables, addresses, lengths, readable/writable order), keeps the writable
// segments of each in-flight chain in a slot, and publishes used elements.
import {
  QSTATE, QSTATE_SIZE, MAX_QUEUES, SCRATCH, INDIRECT_COPY, INDIRECT_COPY_DESCS, REC, CHAIN, CHAIN_MAX_SEGS, REQ, REQ_SIZE, RESP, RESP_SIZE,
  SLOTS, SLOT_SIZE, MAX_SLOTS, SLOT_MAX_WSEGS, FREE,
  R_STATUS, R_SLOT, R_HEAD, R_QUEUE, R_RLEN, R_WLEN, R_NSEGS, R_NREAD, R_AVAIL_POS, R_AVAIL_SEEN,
  POP_EMPTY, POP_CHAIN, POP_NO_SLOT, POP_BROKEN,
  E_DESC_INDEX, E_CHAIN_LOOP, E_ADDRESS, E_ORDER, E_INDIRECT, E_TOO_LONG, E_TOO_MANY_SEGS,
  B_AVAIL_JUMP, B_HEAD_INDEX, X_TOO_MANY, Q_BAD_SIZE, Q_BAD_ALIGN, Q_BAD_ADDR,
} from './layout';
import { findChunk, chunkStart, chunkLen, translateInto } from './memory-table';
import { guest_read, guest_write, guest_load16, guest_store16 } from './guest';

// Descriptor flags (virtio 1.x §2.7.5).
@inline const F_NEXT: u16 = 1;
@inline const F_WRITE: u16 = 2;
@inline const F_INDIRECT: u16 = 4;
@inline const MAX_QUEUE_SIZE: u32 = 32768;

// Queue state fields (byte offsets inside a QSTATE entry).
@inline const Q_SIZE = 0;
@inline const Q_DESC_CHUNK = 4;
@inline const Q_DESC_OFF = 8;
@inline const Q_AVAIL_CHUNK = 12;
@inline const Q_AVAIL_OFF = 16;
@inline const Q_USED_CHUNK = 20;
@inline const Q_USED_OFF = 24;
@inline const Q_LAST_AVAIL = 28;
@inline const Q_USED_IDX = 32;
@inline const Q_FLAGS = 36;
@inline const Q_SIGNALLED = 40;
@inline const Q_BROKEN = 44;
/** avail.idx as last read: chains before it are known to be there without reading it again. */
@inline const Q_AVAIL_SHADOW = 48;

@inline const QF_READY: u32 = 1;
@inline const QF_EVENT_IDX: u32 = 2;
@inline const QF_INDIRECT: u32 = 4;
@inline const QF_SIGNALLED_VALID: u32 = 8;

// Slot fields.
@inline const S_HEAD = 0;
@inline const S_QUEUE = 4;
@inline const S_NWSEGS = 8;
@inline const S_BUSY = 12;
@inline const S_SEGS = 16;

let freeTop: i32 = -1;

/** A locked read-modify-write on shared memory: a full barrier on x86-64 (what smp_mb() does). */
@inline function fullBarrier(): void {
  atomic.add<u32>(SCRATCH + 60, 0);
} // -1: free stack not initialised yet

@inline function qs(q: i32): usize {
  return QSTATE + <usize>q * QSTATE_SIZE;
}

@inline function slotAddr(slot: i32): usize {
  return SLOTS + <usize>slot * SLOT_SIZE;
}

function slotsInit(): void {
  for (let i = 0; i < MAX_SLOTS; i++) {
    store<u16>(FREE + (<usize>i << 1), <u16>(MAX_SLOTS - 1 - i));
    store<u32>(slotAddr(i), 0, S_BUSY);
  }
  freeTop = MAX_SLOTS;
}

function slotAlloc(): i32 {
  if (freeTop < 0) slotsInit();
  if (freeTop == 0) return -1;
  freeTop--;
  const s = <i32>load<u16>(FREE + (<usize>freeTop << 1));
  store<u32>(slotAddr(s), 1, S_BUSY);
  return s;
}

function slotFree(s: i32): void {
  store<u32>(slotAddr(s), 0, S_BUSY);
  store<u16>(FREE + (<usize>freeTop << 1), <u16>s);
  freeTop++;
}

/** Locate [gpa, gpa+len) inside a single chunk; returns the chunk or -1. */
function singleChunk(gpa: u64, len: u64): i32 {
  const c = findChunk(gpa);
  if (c < 0) return -1;
  if (len > chunkLen(c) - (gpa - chunkStart(c))) return -1;
  return c;
}

/**
 * Configure queue q. Each ring part must lie inside one chunk (they are contiguous in the
 * front-end's address space). features: bit0 EVENT_IDX, bit1 INDIRECT_DESC.
 * Reads used.idx from the ring, so a reconnecting front-end resumes where the ring is.
 */
export function vq_setup(q: i32, size: u32, desc: u64, avail: u64, used: u64, features: i32, lastAvail: u32): i32 {
  if (<u32>q >= <u32>MAX_QUEUES) return Q_BAD_SIZE;
  if (freeTop < 0) slotsInit();
  const s = qs(q);
  store<u32>(s, 0, Q_FLAGS);
  if (size == 0 || size > MAX_QUEUE_SIZE || (size & (size - 1)) != 0) return Q_BAD_SIZE;
  if ((desc & 15) != 0 || (avail & 1) != 0 || (used & 3) != 0) return Q_BAD_ALIGN;
  const dc = singleChunk(desc, <u64>size * 16);
  const ac = singleChunk(avail, 6 + <u64>size * 2);
  const uc = singleChunk(used, 6 + <u64>size * 8);
  if (dc < 0 || ac < 0 || uc < 0) return Q_BAD_ADDR;
  store<u32>(s, size, Q_SIZE);
  store<i32>(s, dc, Q_DESC_CHUNK);
  store<u32>(s, <u32>(desc - chunkStart(dc)), Q_DESC_OFF);
  store<i32>(s, ac, Q_AVAIL_CHUNK);
  store<u32>(s, <u32>(avail - chunkStart(ac)), Q_AVAIL_OFF);
  store<i32>(s, uc, Q_USED_CHUNK);
  const usedOff = <u32>(used - chunkStart(uc));
  store<u32>(s, usedOff, Q_USED_OFF);
  store<u32>(s, lastAvail & 0xffff, Q_LAST_AVAIL);
  store<u32>(s, lastAvail & 0xffff, Q_AVAIL_SHADOW);
  store<u32>(s, guest_load16(uc, usedOff + 2), Q_USED_IDX);
  store<u32>(s, 0, Q_BROKEN);
  let flags = QF_READY;
  if (features & 1) flags |= QF_EVENT_IDX;
  if (features & 2) flags |= QF_INDIRECT;
  store<u32>(s, flags, Q_FLAGS);
  return 0;
}

/** Forget queue q (stop): its in-flight slots are released. */
export function vq_reset(q: i32): void {
  if (<u32>q >= <u32>MAX_QUEUES) return;
  store<u32>(qs(q), 0, Q_FLAGS);
  if (freeTop < 0) return;
  for (let i = 0; i < MAX_SLOTS; i++) {
    const a = slotAddr(i);
    if (load<u32>(a, S_BUSY) != 0 && load<i32>(a, S_QUEUE) == q) slotFree(i);
  }
}

export function vq_last_avail(q: i32): u32 {
  return load<u32>(qs(q), Q_LAST_AVAIL);
}

export function vq_used_idx(q: i32): u32 {
  return load<u32>(qs(q), Q_USED_IDX);
}

export function vq_broken(q: i32): i32 {
  return load<i32>(qs(q), Q_BROKEN);
}

export function vq_ready(q: i32): bool {
  return <u32>q < <u32>MAX_QUEUES && (load<u32>(qs(q), Q_FLAGS) & QF_READY) != 0;
}

function markBroken(s: usize, reason: i32): i32 {
  store<i32>(s, reason, Q_BROKEN);
  return POP_BROKEN;
}

/**
 * Take the next available chain of queue q. On POP_CHAIN the record holds the chain's slot, head
 * and lengths, R_STATUS < 0 if the chain itself is malformed, and the readable bytes (up to
 * REQ_SIZE) are copied to REQ.
 */
export function vq_pop(q: i32): i32 {
  if (!vq_ready(q)) return POP_EMPTY;
  const s = qs(q);
  if (load<i32>(s, Q_BROKEN) != 0) return POP_BROKEN;
  const size = load<u32>(s, Q_SIZE);
  const ac = load<i32>(s, Q_AVAIL_CHUNK);
  const ao = load<u32>(s, Q_AVAIL_OFF);
  const last = load<u32>(s, Q_LAST_AVAIL);
  let availIdx = load<u32>(s, Q_AVAIL_SHADOW);
  if (availIdx == last) {
    availIdx = guest_load16(ac, ao + 2);
    const pending = (availIdx - last) & 0xffff;
    if (pending == 0) return POP_EMPTY;
    if (pending > size) return markBroken(s, B_AVAIL_JUMP);
    store<u32>(s, availIdx, Q_AVAIL_SHADOW);
  }
  const head = guest_load16(ac, ao + 4 + ((last & (size - 1)) << 1));
  if (head >= size) return markBroken(s, B_HEAD_INDEX);
  const slot = slotAlloc();
  if (slot < 0) return POP_NO_SLOT;
  store<u32>(s, (last + 1) & 0xffff, Q_LAST_AVAIL);

  const sa = slotAddr(slot);
  store<u32>(sa, head, S_HEAD);
  store<i32>(sa, q, S_QUEUE);
  store<u32>(sa, 0, S_NWSEGS);
  store<i32>(REC + (<usize>R_SLOT << 2), slot);
  store<i32>(REC + (<usize>R_HEAD << 2), head);
  store<i32>(REC + (<usize>R_QUEUE << 2), q);
  store<u32>(REC + (<usize>R_AVAIL_POS << 2), last);
  store<u32>(REC + (<usize>R_AVAIL_SEEN << 2), availIdx);

  const status = walk(s, size, head);
  store<i32>(REC + (<usize>R_STATUS << 2), status);
  if (status < 0) {
    store<i32>(REC + (<usize>R_RLEN << 2), 0);
    store<i32>(REC + (<usize>R_WLEN << 2), 0);
    store<i32>(REC + (<usize>R_NSEGS << 2), 0);
    store<i32>(REC + (<usize>R_NREAD << 2), 0);
    store<u32>(sa, 0, S_NWSEGS);
    return POP_CHAIN;
  }
  keepWritable(sa);
  copyReadable();
  return POP_CHAIN;
}

/** Walk the chain at head into CHAIN; fills R_NSEGS/R_NREAD/R_RLEN/R_WLEN. 0 or an E_* code. */
function walk(s: usize, size: u32, head: u32): i32 {
  let tableChunk = load<i32>(s, Q_DESC_CHUNK);
  let tableOff = load<u32>(s, Q_DESC_OFF);
  let tableSize = size;
  let ttl = size;
  let indirect = false;
  const indirectOk = (load<u32>(s, Q_FLAGS) & QF_INDIRECT) != 0;
  let idx = head;
  let nsegs = 0;
  let nread = 0;
  let rlen: u64 = 0;
  let wlen: u64 = 0;
  let seenWrite = false;
  while (true) {
    if (idx >= tableSize) return E_DESC_INDEX;
    if (ttl == 0) return E_CHAIN_LOOP;
    ttl--;
    // A small indirect table was read whole (one snapshot, one call); anything else per descriptor.
    let d = INDIRECT_COPY + (<usize>idx << 4);
    if (!indirect || tableSize > INDIRECT_COPY_DESCS) {
      guest_read(tableChunk, tableOff + (idx << 4), SCRATCH, 16);
      d = SCRATCH;
    }
    const addr = load<u64>(d);
    const len = load<u32>(d, 8);
    const flags = load<u16>(d, 12);
    const next = <u32>load<u16>(d, 14);
    if (flags & F_INDIRECT) {
      // One level only, never together with NEXT, a whole number of descriptors (virtio §2.7.5.3).
      if (indirect || !indirectOk || (flags & F_NEXT) != 0) return E_INDIRECT;
      if (len == 0 || (len & 15) != 0 || (len >> 4) > MAX_QUEUE_SIZE) return E_INDIRECT;
      const c = singleChunk(addr, <u64>len);
      if (c < 0) return E_INDIRECT;
      tableChunk = c;
      tableOff = <u32>(addr - chunkStart(c));
      tableSize = len >> 4;
      ttl = tableSize;
      indirect = true;
      idx = 0;
      if (tableSize <= INDIRECT_COPY_DESCS) guest_read(tableChunk, tableOff, INDIRECT_COPY, len);
      continue;
    }
    const write = (flags & F_WRITE) != 0;
    if (!write && seenWrite) return E_ORDER;
    if (write) {
      seenWrite = true;
      wlen += len;
    } else {
      rlen += len;
    }
    if (rlen + wlen > 0xffffffff) return E_TOO_LONG;
    const n = translateInto(addr, <u64>len, CHAIN, nsegs, CHAIN_MAX_SEGS);
    if (n < 0) return n == X_TOO_MANY ? E_TOO_MANY_SEGS : E_ADDRESS;
    nsegs = n;
    if (!write) nread = nsegs;
    if ((flags & F_NEXT) == 0) break;
    idx = next;
  }
  store<i32>(REC + (<usize>R_NSEGS << 2), nsegs);
  store<i32>(REC + (<usize>R_NREAD << 2), nread);
  store<i32>(REC + (<usize>R_RLEN << 2), <i32>rlen);
  store<i32>(REC + (<usize>R_WLEN << 2), <i32>wlen);
  return 0;
}

/** Keep the writable segments (at most SLOT_MAX_WSEGS; the capacity shrinks to what is kept). */
function keepWritable(sa: usize): void {
  const nsegs = load<i32>(REC + (<usize>R_NSEGS << 2));
  const nread = load<i32>(REC + (<usize>R_NREAD << 2));
  let kept = 0;
  let cap: u32 = 0;
  for (let i = nread; i < nsegs && kept < SLOT_MAX_WSEGS; i++) {
    const src = CHAIN + <usize>i * 12;
    memory.copy(sa + S_SEGS + <usize>kept * 12, src, 12);
    cap += load<u32>(src, 8);
    kept++;
  }
  store<u32>(sa, kept, S_NWSEGS);
  store<u32>(REC + (<usize>R_WLEN << 2), cap);
}

/** Copy the first REQ_SIZE readable bytes into REQ. */
function copyReadable(): void {
  const nread = load<i32>(REC + (<usize>R_NREAD << 2));
  let at: u32 = 0;
  for (let i = 0; i < nread && at < REQ_SIZE; i++) {
    const seg = CHAIN + <usize>i * 12;
    let n = load<u32>(seg, 8);
    if (n > REQ_SIZE - at) n = REQ_SIZE - at;
    guest_read(load<i32>(seg), load<u32>(seg, 4), REQ + at, n);
    at += n;
  }
}

/**
 * Copy readable bytes [from, from+len) of the current chain to dst in linear memory; returns the
 * number copied (less at the end of the readable data).
 */
export function chain_read(from: u32, dst: usize, len: u32): u32 {
  const nread = load<i32>(REC + (<usize>R_NREAD << 2));
  let pos: u32 = 0;
  let done: u32 = 0;
  for (let i = 0; i < nread && done < len; i++) {
    const seg = CHAIN + <usize>i * 12;
    const slen = load<u32>(seg, 8);
    if (from + done < pos + slen) {
      const inSeg = from + done - pos;
      let n = slen - inSeg;
      if (n > len - done) n = len - done;
      guest_read(load<i32>(seg), load<u32>(seg, 4) + inSeg, dst + done, n);
      done += n;
    }
    pos += slen;
  }
  return done;
}

/**
 * Complete a chain: scatter RESP[0, len) into its writable segments, publish the used element
 * and release the slot. Returns the bytes written (used.len).
 */
export function vq_push(q: i32, slot: i32, len: u32): u32 {
  if (<u32>slot >= <u32>MAX_SLOTS) return 0;
  const sa = slotAddr(slot);
  if (load<u32>(sa, S_BUSY) == 0 || load<i32>(sa, S_QUEUE) != q) return 0;
  if (len > RESP_SIZE) len = RESP_SIZE;
  const nw = load<u32>(sa, S_NWSEGS);
  let done: u32 = 0;
  for (let i: u32 = 0; i < nw && done < len; i++) {
    const seg = sa + S_SEGS + <usize>i * 12;
    let n = load<u32>(seg, 8);
    if (n > len - done) n = len - done;
    guest_write(load<i32>(seg), load<u32>(seg, 4), RESP + done, n);
    done += n;
  }
  const head = load<u32>(sa, S_HEAD);
  slotFree(slot);
  const s = qs(q);
  if ((load<u32>(s, Q_FLAGS) & QF_READY) == 0) return done;
  const size = load<u32>(s, Q_SIZE);
  const uc = load<i32>(s, Q_USED_CHUNK);
  const uo = load<u32>(s, Q_USED_OFF);
  const usedIdx = load<u32>(s, Q_USED_IDX);
  store<u32>(SCRATCH, head);
  store<u32>(SCRATCH, done, 4);
  guest_write(uc, uo + 4 + ((usedIdx & (size - 1)) << 3), SCRATCH, 8);
  // The element is written before the index moves (x86-64 keeps store order; see queues/guest-access.ts).
  const next = (usedIdx + 1) & 0xffff;
  guest_store16(uc, uo + 2, next);
  store<u32>(s, next, Q_USED_IDX);
  return done;
}

/** Whether the driver wants an interrupt for the used entries published since the last call. */
export function vq_need_notify(q: i32): bool {
  const s = qs(q);
  const flags = load<u32>(s, Q_FLAGS);
  if ((flags & QF_READY) == 0) return false;
  fullBarrier(); // used.idx was stored; the driver's used_event / flags must be read after it
  const ac = load<i32>(s, Q_AVAIL_CHUNK);
  const ao = load<u32>(s, Q_AVAIL_OFF);
  if ((flags & QF_EVENT_IDX) == 0) return (guest_load16(ac, ao) & 1) == 0;
  const size = load<u32>(s, Q_SIZE);
  const now = load<u32>(s, Q_USED_IDX);
  const old = load<u32>(s, Q_SIGNALLED);
  store<u32>(s, now, Q_SIGNALLED);
  if ((flags & QF_SIGNALLED_VALID) == 0) {
    store<u32>(s, flags | QF_SIGNALLED_VALID, Q_FLAGS);
    return true;
  }
  const usedEvent = guest_load16(ac, ao + 4 + (size << 1));
  // vring_need_event: notify when used_event lies in (old, now].
  return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
}

/**
 * Before sleeping: with EVENT_IDX ask to be kicked at the next avail index. Returns true if
 * buffers arrived meanwhile (then process again instead of sleeping, or a kick could be lost).
 */
export function vq_arm(q: i32): bool {
  if (!vq_ready(q)) return false;
  const s = qs(q);
  const size = load<u32>(s, Q_SIZE);
  const last = load<u32>(s, Q_LAST_AVAIL);
  if (load<u32>(s, Q_FLAGS) & QF_EVENT_IDX) {
    guest_store16(load<i32>(s, Q_USED_CHUNK), load<u32>(s, Q_USED_OFF) + 4 + (size << 3), last);
    // Store avail_event, then load avail.idx: x86 may reorder a store with a later load.
    fullBarrier();
  }
  return guest_load16(load<i32>(s, Q_AVAIL_CHUNK), load<u32>(s, Q_AVAIL_OFF) + 2) != last;
}

