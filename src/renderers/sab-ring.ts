/**
 * Single-producer single-consumer message ring over shared memory (a SharedArrayBuffer between
 * threads, or an addon view of a shared memfd between processes), for commands from the
 * coordinator to a renderer worker and completions back. Messages are written in place
 * (reserve -> fill -> commit) and read in place (peek -> use -> release), so payloads such as
 * SUBMIT_3D command streams are copied once, from guest memory into the ring.
 *
 * Layout (all little-endian i32; the same numbers are readable from AssemblyScript):
 *   [HEAD] bytes ever committed by the producer (u32, wraps)
 *   [TAIL] bytes ever released by the consumer (u32, wraps)
 *   [CAP]  data capacity in bytes (power of two)
 *   data at byte DATA_OFFSET: messages {u32 length, payload padded to 4 bytes}; a length of
 *   WRAP means "continue at data offset 0".
 * Waiting is not the ring's business: the owner signals an eventfd after commit.
 */

export const HEAD = 0;
export const TAIL = 1;
export const CAP = 2;
export const DATA_OFFSET = 64; // header padded to its own cache line
const WRAP = 0xffffffff;

export class SabRing {
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  private readonly ctl: Int32Array;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  private readonly cap: number;
  private readonly mask: number;
  // Producer/consumer local positions (only one side uses each).
  private reservedAt = -1;
  private reservedLen = 0;
  private peekedLen = 0;

  /** A zeroed SharedArrayBuffer for a ring of `capacity` data bytes (power of two), to share with a worker. */
  static allocate(capacity: number): SharedArrayBuffer {
    return new SharedArrayBuffer(DATA_OFFSET + checkCapacity(capacity));
  }

  /**
   * A new ring with `capacity` data bytes (power of two) in a new SharedArrayBuffer, or a view of
   * the ring in `buffer`. A zeroed buffer is formatted as an empty ring of all its bytes past the
   * header (byteLength - DATA_OFFSET must then be a power of two).
   */
  constructor(capacityOrBuffer: number | SharedArrayBuffer | ArrayBuffer) {
    this.buffer = typeof capacityOrBuffer === 'number' ? SabRing.allocate(capacityOrBuffer) : capacityOrBuffer;
    this.ctl = new Int32Array(this.buffer, 0, 16);
    if (Atomics.load(this.ctl, CAP) === 0) Atomics.store(this.ctl, CAP, checkCapacity(this.buffer.byteLength - DATA_OFFSET));
    this.cap = Atomics.load(this.ctl, CAP);
    if (this.cap + DATA_OFFSET > this.buffer.byteLength) throw new RangeError(`ring capacity ${this.cap} exceeds its buffer`);
    this.mask = this.cap - 1;
    this.bytes = new Uint8Array(this.buffer, DATA_OFFSET, this.cap);
    this.view = new DataView(this.buffer, DATA_OFFSET, this.cap);
  }

  /** Largest payload a message can have. */
  get maxMessage(): number {
    return this.cap / 2 - 8;
  }

  /**
   * Producer: room for a `len`-byte payload, contiguous. Returns its byte offset in `bytes`, or
   * -1 if the ring is too full now (try again after the consumer released).
   */
  reserve(len: number): number {
    if (len > this.maxMessage) throw new RangeError(`message of ${len} bytes exceeds ${this.maxMessage}`);
    const head = Atomics.load(this.ctl, HEAD) >>> 0;
    const tail = Atomics.load(this.ctl, TAIL) >>> 0;
    const used = (head - tail) >>> 0;
    const size = 4 + ((len + 3) & ~3);
    let at = head & this.mask;
    let skip = 0;
    if (at + size > this.cap) {
      skip = this.cap - at; // the wrap marker fills the rest of the buffer
      at = 0;
    }
    if (used + skip + size > this.cap) return -1;
    if (skip) this.view.setUint32(this.cap - skip, WRAP, true);
    this.view.setUint32(at, len, true);
    this.reservedAt = at;
    this.reservedLen = skip + size;
    return at + 4;
  }

  /** Producer: publish the message reserved last. */
  commit(): void {
    if (this.reservedAt < 0) throw new Error('commit without reserve');
    Atomics.add(this.ctl, HEAD, this.reservedLen);
    this.reservedAt = -1;
  }

  /** Producer: reserve, copy, commit. False if the ring is full. */
  push(payload: Uint8Array): boolean {
    const at = this.reserve(payload.length);
    if (at < 0) return false;
    this.bytes.set(payload, at);
    this.commit();
    return true;
  }

  /** Consumer: the next message as [offset, length] in `bytes`, or null if none. */
  peek(): [number, number] | null {
    const head = Atomics.load(this.ctl, HEAD) >>> 0;
    let tail = Atomics.load(this.ctl, TAIL) >>> 0;
    if (head === tail) return null;
    let at = tail & this.mask;
    let len = this.view.getUint32(at, true);
    let skip = 0;
    if (len === WRAP) {
      skip = this.cap - at;
      tail = (tail + skip) >>> 0;
      at = 0;
      len = this.view.getUint32(0, true);
    }
    this.peekedLen = skip + 4 + ((len + 3) & ~3);
    return [at + 4, len];
  }

  /** Consumer: done with the message returned by the last peek(). */
  release(): void {
    if (this.peekedLen === 0) throw new Error('release without peek');
    Atomics.add(this.ctl, TAIL, this.peekedLen);
    this.peekedLen = 0;
  }

  /** Bytes waiting for the consumer. */
  get pending(): number {
    return (Atomics.load(this.ctl, HEAD) - Atomics.load(this.ctl, TAIL)) >>> 0;
  }
}

function checkCapacity(cap: number): number {
  if (cap < 64 || (cap & (cap - 1)) !== 0) throw new RangeError(`ring capacity ${cap} must be a power of two >= 64`);
  return cap;
}
