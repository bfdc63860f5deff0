// Fixed memory layout of the codec inside its shared linear memory, and the status codes it
// returns. The codec never allocates: every buffer below has a fixed address and size.
// src/queues/layout.ts mirrors these numbers for the TypeScript side; test/unit/codec.test.ts
// checks that both agree through the exported `layout_*` functions.

// --- areas (byte addresses) ---
@inline export const AREA_BASE: usize = 0x10000;
/** Decoded command record: REC_WORDS little-endian i32 slots (see REC_* indexes). */
@inline export const REC: usize = AREA_BASE;
@inline export const REC_WORDS: i32 = 64;
/** Guest memory chunk table: MAX_CHUNKS x {gpa u64, len u64}. */
@inline export const CHUNKS: usize = REC + 256;
@inline export const MAX_CHUNKS: i32 = 256;
/** Per-queue state: MAX_QUEUES x QSTATE_SIZE bytes. */
@inline export const QSTATE: usize = CHUNKS + 16 * 256;
@inline export const MAX_QUEUES: i32 = 2;
@inline export const QSTATE_SIZE: usize = 64;
/** Scratch for one descriptor or one used element. */
@inline export const SCRATCH: usize = QSTATE + 64 * 2;
/** Copy of the current indirect table when it has at most INDIRECT_COPY_DESCS descriptors. */
@inline export const INDIRECT_COPY: usize = 0x11400;
@inline export const INDIRECT_COPY_DESCS: u32 = 64;
/** Request bytes: the first REQ_SIZE readable bytes of the current chain. */
@inline export const REQ: usize = 0x12000;
@inline export const REQ_SIZE: u32 = 4096;
/** Response bytes, written by the device and scattered into the chain by vq_push. */
@inline export const RESP: usize = 0x13000;
@inline export const RESP_SIZE: u32 = 0x10000;
/** Segments of the current chain: CHAIN_MAX_SEGS x {chunk u32, off u32, len u32}. */
@inline export const CHAIN: usize = 0x23000;
@inline export const CHAIN_MAX_SEGS: i32 = 4096;
/** Decoded mem_entry list of ATTACH_BACKING / CREATE_BLOB: MAX_ENTRIES x {gpa u64, len u32, pad u32}. */
@inline export const ENTRIES: usize = 0x30000;
@inline export const MAX_ENTRIES: u32 = 16384;
/** In-flight chains: head and writable segments, kept until the response is pushed. */
@inline export const SLOTS: usize = 0x70000;
@inline export const MAX_SLOTS: i32 = 1024;
@inline export const SLOT_SIZE: usize = 16 + 12 * 16;
@inline export const SLOT_MAX_WSEGS: i32 = 16;
/** Free-slot stack (u16 indexes) and its depth. */
@inline export const FREE: usize = SLOTS + SLOT_SIZE * 1024;
/** Segments produced by translate() for the TypeScript side. */
@inline export const XLATE: usize = FREE + 2 * 1024 + 16;
@inline export const XLATE_MAX_SEGS: i32 = 4096;
@inline export const AREA_END: usize = XLATE + 12 * 4096;

// --- record slots (i32 indexes into REC) ---
@inline export const R_STATUS: i32 = 0;   // 0 ok, <0 chain error (return len 0), >0 command error: virtio-gpu error type to answer
@inline export const R_SLOT: i32 = 1;
@inline export const R_HEAD: i32 = 2;
@inline export const R_QUEUE: i32 = 3;
@inline export const R_RLEN: i32 = 4;     // readable bytes in the chain
@inline export const R_WLEN: i32 = 5;     // writable bytes in the chain (response capacity)
@inline export const R_TYPE: i32 = 6;
@inline export const R_FLAGS: i32 = 7;
@inline export const R_FENCE_LO: i32 = 8;
@inline export const R_FENCE_HI: i32 = 9;
@inline export const R_CTX: i32 = 10;
@inline export const R_RING: i32 = 11;
@inline export const R_NENTRIES: i32 = 12; // decoded mem entries in ENTRIES
@inline export const R_NSEGS: i32 = 13;    // segments of the chain in CHAIN (readable first)
@inline export const R_NREAD: i32 = 14;    // of which readable
@inline export const R_AVAIL_POS: i32 = 15; // this chain's avail position (free-running u16)
@inline export const R_AVAIL_SEEN: i32 = 16; // avail.idx read when this chain was popped
@inline export const R_ARGS: i32 = 17;     // request words after the 24-byte header, from here on
@inline export const R_MAX_ARGS: i32 = 47;

// --- vq_pop results ---
@inline export const POP_EMPTY: i32 = 0;
@inline export const POP_CHAIN: i32 = 1;
@inline export const POP_NO_SLOT: i32 = 2;
@inline export const POP_BROKEN: i32 = -1;

// --- chain errors (R_STATUS < 0): the chain is returned with used len 0 ---
@inline export const E_DESC_INDEX: i32 = -1;       // next / head index out of range
@inline export const E_CHAIN_LOOP: i32 = -2;       // longer than the queue: a loop
@inline export const E_ADDRESS: i32 = -3;          // buffer outside guest memory
@inline export const E_ORDER: i32 = -4;            // readable descriptor after a writable one
@inline export const E_INDIRECT: i32 = -5;         // bad indirect table (nested, misaligned, NEXT set, not negotiated)
@inline export const E_TOO_LONG: i32 = -6;         // total length > 4 GiB
@inline export const E_TOO_MANY_SEGS: i32 = -7;    // more segments than the codec keeps
@inline export const E_NO_WRITABLE: i32 = -8;      // request without room for a response header

// --- broken-ring reasons (vq_broken) ---
@inline export const B_AVAIL_JUMP: i32 = 1;        // avail.idx moved by more than the queue size
@inline export const B_HEAD_INDEX: i32 = 2;        // avail.ring entry >= queue size

// --- translate / setup errors ---
@inline export const X_ADDRESS: i32 = -1;
@inline export const X_OVERFLOW: i32 = -2;
@inline export const X_TOO_MANY: i32 = -3;
@inline export const Q_BAD_SIZE: i32 = -10;
@inline export const Q_BAD_ALIGN: i32 = -11;
@inline export const Q_BAD_ADDR: i32 = -12;

// --- virtio-gpu response types used by the decoder ---
@inline export const RESP_ERR_UNSPEC: i32 = 0x1200;
@inline export const RESP_ERR_INVALID_PARAMETER: i32 = 0x1205;
@inline export const RESP_ERR_OUT_OF_MEMORY: i32 = 0x1201;
