// Guest-physical memory table: the only place that turns a guest address into (chunk, offset).
// The TypeScript side maps each vhost-user region and splits it into chunks of at most 1 GiB
// (one external ArrayBuffer each); chunk i here is chunk i there.
import { CHUNKS, MAX_CHUNKS, X_ADDRESS, X_OVERFLOW, X_TOO_MANY } from './layout';

let chunkCount: i32 = 0;
let lastHit: i32 = 0;

export function mem_clear(): void {
  chunkCount = 0;
  lastHit = 0;
}

/** Append chunk `index` (must equal the current count). Returns 0, or -1 when full or malformed. */
export function mem_add(index: i32, gpa: u64, len: u64): i32 {
  if (index != chunkCount || index >= MAX_CHUNKS || len == 0 || gpa + len < gpa) return -1;
  const e = CHUNKS + (<usize>index << 4);
  store<u64>(e, gpa);
  store<u64>(e, len, 8);
  chunkCount++;
  return 0;
}

export function mem_chunk_count(): i32 {
  return chunkCount;
}

/** Chunk holding `gpa`, or -1. */
export function findChunk(gpa: u64): i32 {
  let e = CHUNKS + (<usize>lastHit << 4);
  if (lastHit < chunkCount && gpa - load<u64>(e) < load<u64>(e, 8)) return lastHit;
  for (let i = 0; i < chunkCount; i++) {
    e = CHUNKS + (<usize>i << 4);
    // Unsigned wrap makes this one compare: gpa >= start && gpa < start + len.
    if (gpa - load<u64>(e) < load<u64>(e, 8)) {
      lastHit = i;
      return i;
    }
  }
  return -1;
}

export function chunkStart(c: i32): u64 {
  return load<u64>(CHUNKS + (<usize>c << 4));
}

export function chunkLen(c: i32): u64 {
  return load<u64>(CHUNKS + (<usize>c << 4), 8);
}

/**
 * Split [gpa, gpa+len) into segments {chunk u32, off u32, len u32} written at out[count..max).
 * Returns the new count, or a negative X_* code. A zero length adds nothing.
 */
export function translateInto(gpa: u64, len: u64, out: usize, count: i32, max: i32): i32 {
  if (gpa + len < gpa) return X_OVERFLOW;
  while (len > 0) {
    const c = findChunk(gpa);
    if (c < 0) return X_ADDRESS;
    const off = gpa - chunkStart(c);
    const room = chunkLen(c) - off;
    const n = len < room ? len : room;
    if (count >= max) return X_TOO_MANY;
    const s = out + <usize>count * 12;
    store<u32>(s, <u32>c);
    store<u32>(s, <u32>off, 4);
    store<u32>(s, <u32>n, 8);
    count++;
    gpa += n;
    len -= n;
  }
  return count;
}

/** True if [gpa, gpa+len) lies entirely inside guest memory (possibly across chunks). */
export function rangeValid(gpa: u64, len: u64): bool {
  if (gpa + len < gpa) return false;
  while (len > 0) {
    const c = findChunk(gpa);
    if (c < 0) return false;
    const room = chunkLen(c) - (gpa - chunkStart(c));
    if (len <= room) return true;
    gpa += room;
    len -= room;
  }
  return true;
}
