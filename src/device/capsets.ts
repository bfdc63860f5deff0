/** GET_CAPSET_INFO and GET_CAPSET over the capsets the device offers (every renderer's). */
import type { Codec } from '../queues/codec.js';
import { R_CTX, R_FENCE_HI, R_FENCE_LO, R_FLAGS, R_RING, R_WLEN } from '../queues/layout.js';
import { GpuError } from './errors.js';
import { Resp, HDR_SIZE, CAPSET_INFO_SIZE } from './protocol.js';
import { header } from './responses.js';

export interface Capset {
  readonly id: number;
  readonly maxVersion: number;
  readonly maxSize: number;
  readonly data: Uint8Array;
  /** What GET_CAPSET sends instead when the guest has a host-visible region (if it differs). */
  readonly hostVisibleData?: Uint8Array;
}

export function capsetInfo(codec: Codec, capsets: readonly Capset[], index: number): number {
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

export function capsetData(codec: Codec, capsets: readonly Capset[], id: number, version: number, hostVisible: boolean): number {
  const cap = capsets.find((c) => c.id === id);
  if (!cap) throw new GpuError('param', `capset ${id} is not offered`);
  if (version > cap.maxVersion) throw new GpuError('param', `capset ${id} version ${version} > ${cap.maxVersion}`);
  const data = hostVisible ? cap.hostVisibleData ?? cap.data : cap.data;
  const len = HDR_SIZE + data.length;
  if (len > codec.respCapacity || len > (codec.rec[R_WLEN] >>> 0)) throw new GpuError('unspec', `capset response of ${len} bytes does not fit`);
  const r = codec.rec;
  header(codec, Resp.OK_CAPSET, r[R_FLAGS], r[R_FENCE_LO], r[R_FENCE_HI], r[R_CTX], r[R_RING]);
  codec.resp.set(data, HDR_SIZE);
  return len;
}
