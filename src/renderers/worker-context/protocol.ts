/**
 * Messages between the coordinator and a context's worker (one SabRing each way, eventfd
 * doorbells). Every message starts with its op (u32); fields are little-endian u32 at the byte
 * offsets below. 64-bit values are split into LO/HI words.
 */

/** Coordinator -> worker. */
export const Cmd = {
  /** A resource attached (or, for an attached id, its guest memory moved). */
  ATTACH: 1,
  DETACH: 2,
  SUBMIT: 3,
  FENCE: 4,
  CREATE_BLOB: 5,
  /** End the context: the task returns after WorkerContext.destroy(). */
  DESTROY: 6,
} as const;

/** Worker -> coordinator. */
export const Cpl = {
  /** Every fence of `ring` up to sequence `seq` is done. */
  SIGNALLED: 1,
  /** The answer to CREATE_BLOB `tag`. */
  BLOB: 2,
  /** The context failed; a UTF-8 reason follows. The task ends after it. */
  LOST: 3,
} as const;

export const OP = 0;

/** ATTACH: resId, fd (the worker's own dup, or -1), size, nsegs, then nsegs x {addr lo, addr hi, len}. */
export const ATTACH = { RES: 4, FD: 8, SIZE_LO: 12, SIZE_HI: 16, NSEGS: 20, SEGS: 24, SEG_BYTES: 12 } as const;
export const DETACH = { RES: 4, BYTES: 8 } as const;
/** SUBMIT: len, then the command stream. */
export const SUBMIT = { LEN: 4, DATA: 8 } as const;
/** FENCE: ring (0..63, or GLOBAL_RING), the coordinator's sequence number, the guest's fence id. */
export const FENCE = { RING: 4, SEQ: 8, ID_LO: 12, ID_HI: 16, BYTES: 20 } as const;
export const CREATE_BLOB = { TAG: 4, ID_LO: 8, ID_HI: 12, SIZE_LO: 16, SIZE_HI: 20, FLAGS: 24, BYTES: 28 } as const;
export const DESTROY_BYTES = 4;

export const SIGNALLED = { RING: 4, SEQ: 8, BYTES: 12 } as const;
/** BLOB: tag, status (0 or -errno), fd, size, map_info. */
export const BLOB = { TAG: 4, STATUS: 8, FD: 12, SIZE_LO: 16, SIZE_HI: 20, MAP_INFO: 24, BYTES: 28 } as const;
export const LOST = { LEN: 4, TEXT: 8 } as const;

/**
 * Ring index of fences on the device's global timeline (no FLAG_INFO_RING_IDX): they follow
 * everything the context was given before, on every ring.
 */
export const GLOBAL_RING = 64;
export const MAX_RINGS = 64;

/** Control words shared by both sides (Int32Array over `control`). */
export const CTL = {
  /** The coordinator waits for command ring space (the worker signals after releasing). */
  CMD_SPACE_WANTED: 0,
  /** The worker waits for completion ring space. */
  CPL_SPACE_WANTED: 1,
  WORDS: 16,
} as const;

/** What the coordinator hands the worker task (structured-cloned; SABs shared). */
export interface WorkerContextInit {
  /** Absolute path of the context type's module (its default export is a ContextFactory). */
  readonly module: string;
  readonly ctxId: number;
  readonly capsetId: number;
  readonly name: string;
  readonly options: Readonly<Record<string, string>>;
  readonly commandRing: SharedArrayBuffer;
  readonly completionRing: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  /** eventfds: the coordinator signals commandFd, the worker completionFd. */
  readonly commandFd: number;
  readonly completionFd: number;
}

export const lo32 = (v: number | bigint): number => Number(BigInt(v) & 0xffffffffn);
export const hi32 = (v: number | bigint): number => Number((BigInt(v) >> 32n) & 0xffffffffn);
/** Join u32 halves of a size (below 2^53). */
export const join53 = (lo: number, hi: number): number => hi * 2 ** 32 + lo;
