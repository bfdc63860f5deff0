/**
 * virtio-gpu request encoding and response decoding (protocols.md §4; all little-endian).
 * Encoders write straight into guest RAM through a DataView and allocate nothing.
 */
import { GPU_FLAG_FENCE, GPU_FLAG_INFO_RING_IDX, GPU_MAX_SCANOUTS } from './constants.js';
import { writeU64At } from './guest-memory.js';

/** Control-header options accepted by every command. */
export interface HeaderOptions {
  /** Set VIRTIO_GPU_FLAG_FENCE; without fenceId the driver picks the next id of its own counter. */
  fence?: boolean;
  /** Fence id (implies fence). */
  fenceId?: number | bigint;
  ctxId?: number;
  /** Sets VIRTIO_GPU_FLAG_INFO_RING_IDX with this ring index. */
  ringIdx?: number;
  /** Raw header flags, overriding what fence/ringIdx imply. */
  flags?: number;
}

/** How a command travels, plus header options. */
export interface SubmitOptions extends HeaderOptions {
  /** One indirect descriptor table instead of a chain (needs INDIRECT_DESC). */
  indirect?: boolean;
  /** Split the request into several readable descriptors at these byte offsets. */
  splitAt?: readonly number[];
  /** Size of the device-writable buffer (default: the response size; 0 = none). */
  respLen?: number;
  /** Reject if no completion arrives in time (default: the driver's timeoutMs). */
  timeoutMs?: number;
  /** Send on the other queue than the command's own (misrouting tests). */
  queue?: 'control' | 'cursor';
}

export interface GpuResponse {
  /** Response type (0 if the device wrote no header). */
  type: number;
  flags: number;
  fenceId: bigint;
  ctxId: number;
  ringIdx: number;
  /** used.len reported by the device. */
  usedLen: number;
  /** type is one of the OK_* codes. */
  ok: boolean;
}

export interface DisplayInfoEntry { x: number; y: number; width: number; height: number; enabled: boolean; flags: number }
export interface DisplayInfoResponse extends GpuResponse { displays: DisplayInfoEntry[] }
export interface EdidResponse extends GpuResponse { size: number; edid: Uint8Array }
export interface CapsetInfoResponse extends GpuResponse { capsetId: number; maxVersion: number; maxSize: number }
export interface CapsetResponse extends GpuResponse { data: Uint8Array }
export interface UuidResponse extends GpuResponse { uuid: Uint8Array }
export interface MapInfoResponse extends GpuResponse { mapInfo: number }
/** submitRaw: the bytes the device wrote (min(usedLen, writable size)). */
export interface RawResponse extends GpuResponse { bytes: Uint8Array }

export interface Box3d { x: number; y: number; z: number; w: number; h: number; d: number }

export interface Create3dParams {
  resourceId: number; target: number; format: number; bind: number;
  width: number; height: number; depth?: number; arraySize?: number; lastLevel?: number;
  nrSamples?: number; flags?: number;
}

export interface Transfer3dParams {
  resourceId: number; box: Box3d; offset?: number; level?: number; stride?: number; layerStride?: number;
}

export interface SetScanoutBlobParams {
  scanoutId: number; resourceId: number; x?: number; y?: number; width: number; height: number;
  format: number; strides?: readonly number[]; offsets?: readonly number[];
  /** Visible rect (default 0,0,width,height). */
  rectWidth?: number; rectHeight?: number;
}

/** Response decoding, selected by a number so a slot needs no closure. */
export const RespKind = { NODATA: 0, DISPLAY_INFO: 1, EDID: 2, CAPSET_INFO: 3, CAPSET: 4, UUID: 5, MAP_INFO: 6, RAW: 7 } as const;
export type RespKind = (typeof RespKind)[keyof typeof RespKind];

/** Response sizes (header included). */
export const RESP_SIZE = { NODATA: 24, DISPLAY_INFO: 408, EDID: 1056, CAPSET_INFO: 40, UUID: 40, MAP_INFO: 32 } as const;

export function writeHeader(dv: DataView, off: number, type: number, fenceId: number | bigint, opts: HeaderOptions | undefined): void {
  let flags = 0;
  if (opts) {
    if (opts.fence || opts.fenceId !== undefined) flags |= GPU_FLAG_FENCE;
    if (opts.ringIdx !== undefined) flags |= GPU_FLAG_INFO_RING_IDX;
    if (opts.flags !== undefined) flags = opts.flags;
  }
  dv.setUint32(off, type, true);
  dv.setUint32(off + 4, flags, true);
  if (typeof fenceId === 'bigint') dv.setBigUint64(off + 8, BigInt.asUintN(64, fenceId), true);
  else writeU64At(dv, off + 8, fenceId);
  dv.setUint32(off + 16, opts?.ctxId ?? 0, true);
  dv.setUint32(off + 20, (opts?.ringIdx ?? 0) & 0xff, true); // ring_idx u8 + 3 padding bytes
}

export function writeRect(dv: DataView, off: number, x: number, y: number, w: number, h: number): void {
  dv.setUint32(off, x, true);
  dv.setUint32(off + 4, y, true);
  dv.setUint32(off + 8, w, true);
  dv.setUint32(off + 12, h, true);
}

/** Decode a response at RAM offset `off` of `bytes`/`dv` (writable buffer of `cap` bytes). */
export function decodeResponse(kind: RespKind, bytes: Uint8Array, dv: DataView, off: number, cap: number, usedLen: number): GpuResponse {
  const has = Math.min(cap, usedLen);
  const hdr = has >= 24 || cap >= 24; // the header area was zeroed before submission
  const type = hdr ? dv.getUint32(off, true) : 0;
  const base: GpuResponse = {
    type,
    flags: hdr ? dv.getUint32(off + 4, true) : 0,
    fenceId: hdr ? dv.getBigUint64(off + 8, true) : 0n,
    ctxId: hdr ? dv.getUint32(off + 16, true) : 0,
    ringIdx: hdr ? bytes[off + 20]! : 0,
    usedLen,
    ok: type >= 0x1100 && type < 0x1200,
  };
  const u32 = (at: number) => (at + 4 <= cap ? dv.getUint32(off + at, true) : 0);
  switch (kind) {
    case RespKind.DISPLAY_INFO: {
      const displays: DisplayInfoEntry[] = [];
      for (let i = 0; i < GPU_MAX_SCANOUTS; i++) {
        const o = 24 + 24 * i;
        displays.push({ x: u32(o), y: u32(o + 4), width: u32(o + 8), height: u32(o + 12), enabled: u32(o + 16) !== 0, flags: u32(o + 20) });
      }
      return { ...base, displays } as DisplayInfoResponse;
    }
    case RespKind.EDID: {
      const size = u32(24);
      return { ...base, size, edid: bytes.slice(off + 32, off + 32 + Math.min(size, 1024, Math.max(0, cap - 32))) } as EdidResponse;
    }
    case RespKind.CAPSET_INFO:
      return { ...base, capsetId: u32(24), maxVersion: u32(28), maxSize: u32(32) } as CapsetInfoResponse;
    case RespKind.CAPSET:
      return { ...base, data: bytes.slice(off + 24, off + Math.max(24, has)) } as CapsetResponse;
    case RespKind.UUID:
      return { ...base, uuid: bytes.slice(off + 24, off + 40) } as UuidResponse;
    case RespKind.MAP_INFO:
      return { ...base, mapInfo: u32(24) } as MapInfoResponse;
    case RespKind.RAW:
      return { ...base, bytes: bytes.slice(off, off + has) } as RawResponse;
    default:
      return base;
  }
}

// --- fixed-size request bodies (after the header at `off`); every byte is written, slots are reused ---

export function encCreate2d(dv: DataView, off: number, resourceId: number, format: number, width: number, height: number): number {
  dv.setUint32(off + 24, resourceId, true);
  dv.setUint32(off + 28, format, true);
  dv.setUint32(off + 32, width, true);
  dv.setUint32(off + 36, height, true);
  return 40;
}

/** resource_unref, detach_backing, assign_uuid, unmap_blob: resource_id + padding. */
export function encResourceOnly(dv: DataView, off: number, resourceId: number): number {
  dv.setUint32(off + 24, resourceId, true);
  dv.setUint32(off + 28, 0, true);
  return 32;
}

export function encSetScanout(dv: DataView, off: number, scanoutId: number, resourceId: number, x: number, y: number, w: number, h: number): number {
  writeRect(dv, off + 24, x, y, w, h);
  dv.setUint32(off + 40, scanoutId, true);
  dv.setUint32(off + 44, resourceId, true);
  return 48;
}

export function encFlush(dv: DataView, off: number, resourceId: number, x: number, y: number, w: number, h: number): number {
  writeRect(dv, off + 24, x, y, w, h);
  dv.setUint32(off + 40, resourceId, true);
  dv.setUint32(off + 44, 0, true);
  return 48;
}

export function encTransfer2d(dv: DataView, off: number, resourceId: number, x: number, y: number, w: number, h: number, offset: number): number {
  writeRect(dv, off + 24, x, y, w, h);
  writeU64At(dv, off + 40, offset);
  dv.setUint32(off + 48, resourceId, true);
  dv.setUint32(off + 52, 0, true);
  return 56;
}

/** update_cursor / move_cursor. */
export function encCursor(dv: DataView, off: number, scanoutId: number, x: number, y: number, resourceId: number, hotX: number, hotY: number): number {
  dv.setUint32(off + 24, scanoutId, true);
  dv.setUint32(off + 28, x, true);
  dv.setUint32(off + 32, y, true);
  dv.setUint32(off + 36, 0, true);
  dv.setUint32(off + 40, resourceId, true);
  dv.setUint32(off + 44, hotX, true);
  dv.setUint32(off + 48, hotY, true);
  dv.setUint32(off + 52, 0, true);
  return 56;
}
