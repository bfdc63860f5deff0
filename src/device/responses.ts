/** The header of (possibly deferred) answers, built from request fields captured earlier. */
import type { Codec } from '../queues/codec.js';
import { HDR_SIZE, FLAG_FENCE, FLAG_INFO_RING_IDX } from './protocol.js';

/** Write a response header (fence and ring echoed from the request fields) and return its length. */
export function header(codec: Codec, type: number, reqFlags: number, fenceLo: number, fenceHi: number, ctx: number, ring: number): number {
  const v = codec.respView;
  const flags = reqFlags & (FLAG_FENCE | FLAG_INFO_RING_IDX);
  v.setUint32(0, type, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, flags & FLAG_FENCE ? fenceLo : 0, true);
  v.setUint32(12, flags & FLAG_FENCE ? fenceHi : 0, true);
  v.setUint32(16, ctx, true);
  v.setUint32(20, flags & FLAG_INFO_RING_IDX ? ring & 0xff : 0, true);
  return HDR_SIZE;
}
