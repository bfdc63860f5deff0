/**
 * Wire layout between the coordinator (component.ts) and the virgl render server, a child process
 * (render-server.ts): the command ring (coordinator -> server), the completion ring (server ->
 * coordinator), both SabRing in the shared channel (channel.ts), plus a small control block.
 * Written once here; both sides use only these names.
 *
 * Every message payload starts with {op u32 @0, tag u32 @4}; fields follow at the named byte
 * offsets (little-endian, all u32 unless noted). Payloads start 4-byte aligned in the ring, so a
 * SUBMIT's command bytes at SUBMIT.DATA are 4-byte aligned and go to virglrenderer in place.
 * `tag` is the coordinator's serial number for the command; RESULT and ERROR completions echo it.
 */

import type { LogLevel } from '../../log.js';

/** Message header, common to both rings. */
export const HDR = { OP: 0, TAG: 4, SIZE: 8 } as const;

/** Command ops (coordinator -> server). */
export const Cmd = {
  CREATE_CONTEXT: 1,
  DESTROY_CONTEXT: 2,
  CTX_ATTACH: 3,
  CTX_DETACH: 4,
  CREATE_RESOURCE: 5,
  UNREF_RESOURCE: 6,
  ATTACH_BACKING: 7,
  DETACH_BACKING: 8,
  TRANSFER_WRITE: 9,
  TRANSFER_READ: 10,
  SUBMIT: 11,
  FENCE: 12,
  READBACK: 13,
  SHUTDOWN: 14,
  SHARE_MEMORY: 15,
  UNSHARE_MEMORY: 16,
} as const;
export type CmdOp = (typeof Cmd)[keyof typeof Cmd];

/** FAILED_OP of an ERROR raised while starting (e.g. a capset that could not be read). */
export const STARTUP = 0;

/** Completion ops (server -> coordinator). */
export const Cpl = {
  /** One per requested capset with size > 0, before READY. */
  CAPSET: 1,
  READY: 2,
  FENCE_SIGNALLED: 3,
  /** A fence could not be created: that one fence will never signal. */
  FENCE_FAILED: 4,
  /** A context was destroyed: its fences up to a horizon will never signal. */
  FENCES_DROPPED: 5,
  READBACK_DONE: 6,
  /** A message the server could not execute (short, unknown op) or a startup failure. */
  ERROR: 7,
  /** What virglrenderer returned for a command (every op but FENCE, READBACK and SHUTDOWN). */
  RESULT: 8,
} as const;

/** Flag bit in SUBMIT/ATTACH_BACKING: another chunk of the same command follows. */
export const FLAG_MORE = 1;
/** Flag bit in SUBMIT: the producer failed while filling; drop this chunk and those before it. */
export const FLAG_ABORT = 2;

/** Longest context name passed on (virtio debug_name is 64 bytes). */
export const MAX_NAME_BYTES = 64;

// --- command layouts (SIZE = fixed part; variable data follows at the last offset) ---

/** CREATE_CONTEXT: name is UTF-8, NAME_LEN bytes (<= MAX_NAME_BYTES). */
export const CREATE_CONTEXT = { CTX: 8, CAPSET: 12, NAME_LEN: 16, NAME: 20, SIZE: 20 } as const;
/** DESTROY_CONTEXT: HORIZON = the newest context fence seq (low/high u32) issued before it. */
export const DESTROY_CONTEXT = { CTX: 8, HORIZON_LO: 12, HORIZON_HI: 16, SIZE: 20 } as const;
/** CTX_ATTACH / CTX_DETACH. */
export const CTX_RESOURCE = { CTX: 8, RES: 12, SIZE: 16 } as const;
/** CREATE_RESOURCE: 11 u32 = handle, target, format, bind, width, height, depth, array_size, last_level, nr_samples, flags. */
export const CREATE_RESOURCE = { ARGS: 8, ARG_COUNT: 11, SIZE: 8 + 44 } as const;
/** UNREF_RESOURCE / DETACH_BACKING. */
export const RESOURCE = { RES: 8, SIZE: 12 } as const;
/** ATTACH_BACKING: COUNT pairs of f64 [hostAddr, len] at SEGS (16 bytes each); chunked with FLAG_MORE. */
export const ATTACH_BACKING = { RES: 8, FLAGS: 12, COUNT: 16, SEGS: 20, SIZE: 20, SEG_BYTES: 16 } as const;
/** TRANSFER_WRITE / TRANSFER_READ: BOX = x, y, z, w, h, d; OFFSET is f64 (byte offset in the backing). */
export const TRANSFER = { RES: 8, CTX: 12, LEVEL: 16, STRIDE: 20, LAYER_STRIDE: 24, BOX: 28, OFFSET: 52, SIZE: 60 } as const;
/** SUBMIT: LEN command bytes at DATA (multiple of 4); chunked with FLAG_MORE. */
export const SUBMIT = { CTX: 8, FLAGS: 12, LEN: 16, DATA: 20, SIZE: 20 } as const;
/**
 * SHARE_MEMORY: the mapping [ADDR, ADDR+LEN) of the coordinator (f64s) may hold backings; its fd
 * was sent over the memory socket (one fd, one byte) before this message was enqueued.
 */
export const SHARE_MEMORY = { ID: 8, ADDR: 12, LEN: 20, SIZE: 28 } as const;
/** UNSHARE_MEMORY: share ID is no longer needed for new backings. */
export const UNSHARE_MEMORY = { ID: 8, SIZE: 12 } as const;
/** FENCE: CTX 0 = global timeline (32-bit SEQ_LO only), else the context's ring-0 timeline. */
export const FENCE = { CTX: 8, SEQ_LO: 12, SEQ_HI: 16, SIZE: 20 } as const;
/**
 * READBACK: rectangle of a 4-byte-per-pixel resource into the shared readback buffer at
 * DST_OFFSET, rows DST_STRIDE apart; FLIP_Y = 1 writes the rows bottom-up. The tag identifies it.
 */
export const READBACK = { RES: 8, X: 12, Y: 16, W: 20, H: 24, FLIP_Y: 28, DST_OFFSET: 32, DST_STRIDE: 36, SIZE: 40 } as const;

// --- completion layouts ---

/** CAPSET: DATA_LEN bytes of capset data at DATA. */
export const CAPSET = { ID: 8, MAX_VERSION: 12, MAX_SIZE: 16, DATA_LEN: 20, DATA: 24, SIZE: 24 } as const;
/** READY: COUNT = number of CAPSET messages sent before it. */
export const READY = { COUNT: 8, SIZE: 12 } as const;
/** FENCE_SIGNALLED: every fence <= SEQ on timeline CTX has signalled (virglrenderer merges). */
export const FENCE_SIGNALLED = { CTX: 8, SEQ_LO: 12, SEQ_HI: 16, SIZE: 20 } as const;
/** FENCE_FAILED: fence SEQ on CTX was refused (STATUS = -errno). */
export const FENCE_FAILED = { CTX: 8, SEQ_LO: 12, SEQ_HI: 16, STATUS: 20, SIZE: 24 } as const;
/** FENCES_DROPPED: context CTX is gone; its fences with seq <= SEQ (the horizon) never signal. */
export const FENCES_DROPPED = FENCE_SIGNALLED;
/** READBACK_DONE: tag = the READBACK's tag; STATUS 0 or -errno. */
export const READBACK_DONE = { STATUS: 8, SIZE: 12 } as const;
/** ERROR: command FAILED_OP (tag in HDR.TAG) returned STATUS; A/B = its first two ids (ctx/res). */
export const ERROR = { FAILED_OP: 8, STATUS: 12, A: 16, B: 20, SIZE: 24 } as const;
/**
 * RESULT: command OP (tag in HDR.TAG) returned STATUS (0 or -errno); A/B as in ERROR. A command
 * sent in chunks (FLAG_MORE) has one RESULT, after its last chunk (or the chunk that failed).
 */
export const RESULT = ERROR;

// --- control block (Int32Array over the first bytes of the channel) ---

/**
 * Each flag says "the producer of that ring found it full and waits for space": the consumer,
 * after releasing messages, clears the flag and signals the producer's eventfd. The producer sets
 * the flag and then tries once more before giving up, so a release that raced with it is seen.
 */
export const CTL = { CMD_SPACE_WANTED: 0, CPL_SPACE_WANTED: 1, WORDS: 4 } as const;

/** Capset ids served by virglrenderer's virgl contexts. */
export const VIRGL_CAPSETS = { virgl: 1, virgl2: 2 } as const;
export type VirglCapsetName = keyof typeof VIRGL_CAPSETS;

/**
 * The render server's fds: the coordinator passes them as these fd numbers (spawn stdio), so the
 * server finds them without a handshake.
 */
export const SERVER_FD = {
  /** The channel memfd (channel.ts). */
  CHANNEL: 3,
  /** The coordinator signals this eventfd after committing commands. */
  COMMANDS: 4,
  /** The server signals this eventfd after committing completions (or releasing command space). */
  COMPLETIONS: 5,
  /** Unix socket carrying the fds of SHARE_MEMORY. */
  MEMORY: 6,
} as const;

/** The render server's settings, passed as JSON in its argv. */
export interface VirglServerConfig {
  readonly commandRingBytes: number;
  readonly completionRingBytes: number;
  readonly readbackBytes: number;
  readonly flags: number;
  readonly capsets: readonly number[];
  /** null = libvirglrenderer.so.1 from the loader path. */
  readonly libraryPath: string | null;
  readonly logLevel: LogLevel;
}

/** How the server ended (its last stdout line): ok after SHUTDOWN, or why it could not start. */
export type VirglServerResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** The result line's prefix (a library may print to stdout too). */
const RESULT_PREFIX = 'vhost-gpu-virgl-result ';

export function formatServerResult(r: VirglServerResult): string {
  return `\n${RESULT_PREFIX}${JSON.stringify(r)}\n`;
}

/** The result in the server's stdout, or null if it printed none. */
export function parseServerResult(stdout: string): VirglServerResult | null {
  const at = stdout.lastIndexOf(RESULT_PREFIX);
  if (at < 0) return null;
  try {
    const r = JSON.parse(stdout.slice(at + RESULT_PREFIX.length).split('\n')[0]) as VirglServerResult;
    return r.ok === true || (r.ok === false && typeof r.error === 'string') ? r : null;
  } catch {
    return null;
  }
}

/** Name of a command op, for log lines. */
export function cmdName(op: number): string {
  if (op === STARTUP) return 'STARTUP';
  for (const [name, value] of Object.entries(Cmd)) if (value === op) return name;
  return `op ${op}`;
}

/** u64 sequence numbers travel as two u32 (JS numbers stay below 2^53). */
export const seqLo = (seq: number): number => seq >>> 0;
export const seqHi = (seq: number): number => Math.floor(seq / 0x1_0000_0000) >>> 0;
export const seqJoin = (lo: number, hi: number): number => hi * 0x1_0000_0000 + lo;
