// vhost-gpu codec: split-virtqueue walking and virtio-gpu request decoding over shared memory.
// Only numbers cross the boundary; results land in fixed areas (layout.ts) read by src/queues/.
import {
  AREA_BASE, AREA_END, REC, REC_WORDS, REQ, REQ_SIZE, RESP, RESP_SIZE, CHAIN, ENTRIES, MAX_ENTRIES,
  XLATE, XLATE_MAX_SEGS, MAX_CHUNKS, MAX_SLOTS,
} from './layout';
import { translateInto } from './memory-table';

export { mem_clear, mem_add, mem_chunk_count } from './memory-table';
export {
  vq_setup, vq_reset, vq_pop, vq_push, vq_need_notify, vq_arm, vq_last_avail, vq_used_idx, vq_broken,
  vq_ready,
} from './virtqueue';
export { decode, requestSize } from './commands';

/** Translate [gpa, gpa+len) into segments at XLATE; returns the count or a negative X_* code. */
export function translate(gpa: u64, len: u64): i32 {
  return translateInto(gpa, len, XLATE, 0, XLATE_MAX_SEGS);
}


/** Layout query for the TypeScript side, which checks it against its own constants at start. */
export function layout(what: i32): i32 {
  switch (what) {
    case 0: return <i32>REC;
    case 1: return REC_WORDS;
    case 2: return <i32>REQ;
    case 3: return <i32>REQ_SIZE;
    case 4: return <i32>RESP;
    case 5: return <i32>RESP_SIZE;
    case 6: return <i32>CHAIN;
    case 7: return <i32>ENTRIES;
    case 8: return <i32>MAX_ENTRIES;
    case 9: return <i32>XLATE;
    case 10: return XLATE_MAX_SEGS;
    case 11: return MAX_CHUNKS;
    case 12: return MAX_SLOTS;
    case 13: return <i32>AREA_END;
    case 14: return <i32>(__heap_base <= AREA_BASE); // static data must end below the fixed areas
  }
  return -1;
}
