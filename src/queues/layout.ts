// Mirror of assembly/layout.ts for the TypeScript side. Codec.create() checks the addresses
// against the module's own `layout()` answers, so a mismatch fails at start, not silently.

export const REC_WORDS = 64;
export const R_STATUS = 0;
export const R_SLOT = 1;
export const R_HEAD = 2;
export const R_QUEUE = 3;
export const R_RLEN = 4;
export const R_WLEN = 5;
export const R_TYPE = 6;
export const R_FLAGS = 7;
export const R_FENCE_LO = 8;
export const R_FENCE_HI = 9;
export const R_CTX = 10;
export const R_RING = 11;
export const R_NENTRIES = 12;
export const R_NSEGS = 13;
export const R_NREAD = 14;
export const R_AVAIL_POS = 15;
export const R_AVAIL_SEEN = 16;
export const R_ARGS = 17;

export const POP_EMPTY = 0;
export const POP_CHAIN = 1;
export const POP_NO_SLOT = 2;
export const POP_BROKEN = -1;

/** Chain errors (R_STATUS < 0): the chain is returned with used len 0. */
export const CHAIN_ERRORS: Record<number, string> = {
  [-1]: 'descriptor index out of range',
  [-2]: 'descriptor chain loops (longer than the queue)',
  [-3]: 'buffer outside guest memory',
  [-4]: 'readable descriptor after a writable one',
  [-5]: 'bad indirect descriptor table',
  [-6]: 'chain longer than 4 GiB',
  [-7]: 'chain has too many segments',
  [-8]: 'no writable buffer large enough for a response header',
};

export const BROKEN_REASONS: Record<number, string> = {
  1: 'avail index moved by more than the queue size',
  2: 'avail ring entry out of range',
};

export const SETUP_ERRORS: Record<number, string> = {
  [-10]: 'bad queue size',
  [-11]: 'misaligned ring address',
  [-12]: 'ring outside guest memory',
};

export const X_ADDRESS = -1;
export const X_OVERFLOW = -2;
export const X_TOO_MANY = -3;

/** Byte size of one segment {chunk u32, off u32, len u32}. */
export const SEG_SIZE = 12;
