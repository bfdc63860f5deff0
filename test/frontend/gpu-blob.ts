/**
 * What Linux's virtio_gpu driver does with dumb buffers once RESOURCE_BLOB is negotiated: each
 * framebuffer is a guest blob (BLOB_MEM_GUEST, SHAREABLE) on scattered pages, shown with
 * SET_SCANOUT_BLOB and updated by TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the damage.
 */
import { BlobFlag, BlobMem, GpuFormat } from './constants.js';
import type { GpuDriver } from './gpu-driver.js';
import type { GpuResponse } from './gpu-protocol.js';
import type { ScatterBuffer } from './guest-memory.js';

export interface DumbBlob {
  resourceId: number;
  width: number;
  height: number;
  /** Bytes per row in the blob. */
  stride: number;
  backing: ScatterBuffer;
}

function ok(what: string, r: GpuResponse): void {
  if (!r.ok) throw new Error(`${what} answered 0x${r.type.toString(16)}`);
}

/** Create a width x height guest blob (rows of `stride` bytes, default tight) on scattered pages. */
export async function createDumbBlob(driver: GpuDriver, resourceId: number, width: number, height: number, stride = width * 4): Promise<DumbBlob> {
  const size = Math.ceil((stride * height) / 4096) * 4096;
  const r = await driver.createBlob({ resourceId, blobMem: BlobMem.GUEST, blobFlags: BlobFlag.USE_SHAREABLE, size, backing: true });
  ok('RESOURCE_CREATE_BLOB', r);
  return { resourceId, width, height, stride, backing: (r as GpuResponse & { backing: ScatterBuffer }).backing };
}

/** Write u32 pixels (little-endian words) at (x, y) of the blob's framebuffer. */
export function writeBlobPixels(b: DumbBlob, x: number, y: number, w: number, h: number, px: Uint32Array): void {
  const bytes = new Uint8Array(px.buffer, px.byteOffset, px.byteLength);
  for (let r = 0; r < h; r++) b.backing.write((y + r) * b.stride + x * 4, bytes.subarray(r * w * 4, (r + 1) * w * 4));
}

/** Show the blob on a scanout (SET_SCANOUT_BLOB, the whole framebuffer, B8G8R8X8 unless told). */
export async function scanoutDumbBlob(driver: GpuDriver, b: DumbBlob, scanoutId = 0, format: number = GpuFormat.B8G8R8X8_UNORM): Promise<void> {
  ok('SET_SCANOUT_BLOB', await driver.setScanoutBlob({ scanoutId, resourceId: b.resourceId, width: b.width, height: b.height, format, strides: [b.stride] }));
}

/** The damage path of a page flip: TRANSFER_TO_HOST_2D then RESOURCE_FLUSH of the rectangle. */
export async function flushDumbBlob(driver: GpuDriver, b: DumbBlob, x: number, y: number, w: number, h: number): Promise<void> {
  ok('TRANSFER_TO_HOST_2D', await driver.transferToHost2d(b.resourceId, x, y, w, h, { offset: y * b.stride + x * 4 }));
  ok('RESOURCE_FLUSH', await driver.resourceFlush(b.resourceId, x, y, w, h));
}
