/** Responses of virgl mode: the header of (possibly deferred) answers, and the capset replies. */
import type { Codec } from '../queues/codec.js';
import { R_CTX, R_FENCE_HI, R_FENCE_LO, R_FLAGS, R_RING, R_WLEN } from '../queues/layout.js';
import type { VirglCapset } from '../renderers/virgl/component.js';
import { GpuError } from './errors.js';
import { Resp, HDR_SIZE, FLAG_FENCE, FLAG_INFO_RING_IDX, CAPSET_INFO_SIZE } from './protocol.js';

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

export function capsetInfo(codec: Codec, capsets: readonly VirglCapset[], index: number): number {
  const cap = capsets[index];
  if (!cap) throw new GpuError('param', `capset index ${index} out of range (${capsets.length} capsets)`);
  const r = codec.rec;
  header(codec, Resp.OK_CAPSET_INFO, r[R_FLAGS], r[R_FENCE_LO], r[R_FENCE_HI], r[R_CTX], r[R_RING]);
  const v = codec.respView;
  v.setUint32(HDR_SIZE, cap.id, true);
  v.setUint32(HDR_SIZE + 4, cap.maxVersion, true);
  v.setUint32(HDR_SIZE + 8, cap.maxSize, true);
  v.setUint32(HDR_SIZE + 12, 0, true);
  return CAPSET_INFO_SIZE;
}

export function capsetData(codec: Codec, capsets: readonly VirglCapset[], id: number, version: number): number {
  const cap = capsets.find((c) => c.id === id);
  if (!cap) throw new GpuError('param', `capset ${id} is not offered`);
  if (version > cap.maxVersion) throw new GpuError('param', `capset ${id} version ${version} > ${cap.maxVersion}`);
  const len = HDR_SIZE + cap.data.length;
  if (len > codec.respCapacity || len > (codec.rec[R_WLEN] >>> 0)) throw new GpuError('unspec', `capset response of ${len} bytes does not fit`);
  const r = codec.rec;
  header(codec, Resp.OK_CAPSET, r[R_FLAGS], r[R_FENCE_LO], r[R_FENCE_HI], r[R_CTX], r[R_RING]);
  codec.resp.set(cap.data, HDR_SIZE);
  return len;
}
