/**
 * The complete guest virtio-gpu driver: GpuDriver2d plus capsets, 3D contexts and blobs.
 */
import { GpuCmd, GPU_HDR_SIZE } from './constants.js';
import { ScatterBuffer, writeU64At } from './guest-memory.js';
import type { GuestRange } from './guest-memory.js';
import { CONTROL } from './gpu-submit.js';
import { RespKind, RESP_SIZE, encResourceOnly, writeRect } from './gpu-protocol.js';
import type {
  GpuResponse, SubmitOptions, CapsetInfoResponse, CapsetResponse, MapInfoResponse, Create3dParams,
  Transfer3dParams, SetScanoutBlobParams,
} from './gpu-protocol.js';
import { GpuDriver2d, withSplit, writeEntries } from './gpu-driver-2d.js';
import type { AttachResponse, BackingOptions } from './gpu-driver-2d.js';

export interface BlobParams {
  resourceId: number; blobMem: number; blobFlags: number; size: number; blobId?: number | bigint;
  /** Guest pages (BLOB_MEM_GUEST / HOST3D_GUEST): a buffer, explicit ranges, or true to allocate `size` bytes. */
  backing?: ScatterBuffer | readonly GuestRange[] | true;
}

export class GpuDriver extends GpuDriver2d {
  // --- capsets, 3D --------------------------------------------------------------------------------

  getCapsetInfo(index: number, opts?: SubmitOptions): Promise<CapsetInfoResponse> {
    return this.run(CONTROL, GpuCmd.GET_CAPSET_INFO, opts, 32, RESP_SIZE.CAPSET_INFO, RespKind.CAPSET_INFO, (dv, o) => encResourceOnly(dv, o, index)) as Promise<CapsetInfoResponse>;
  }

  getCapset(capsetId: number, version: number, maxSize: number, opts?: SubmitOptions): Promise<CapsetResponse> {
    return this.run(CONTROL, GpuCmd.GET_CAPSET, opts, 32, GPU_HDR_SIZE + maxSize, RespKind.CAPSET, (dv, o) => {
      dv.setUint32(o + 24, capsetId, true);
      dv.setUint32(o + 28, version, true);
      return 32;
    }) as Promise<CapsetResponse>;
  }

  /** ctx_id travels in the header. */
  ctxCreate(ctxId: number, opts?: SubmitOptions & { name?: string; contextInit?: number }): Promise<GpuResponse> {
    const name = new TextEncoder().encode(opts?.name ?? '').subarray(0, 64);
    return this.run(CONTROL, GpuCmd.CTX_CREATE, { ...opts, ctxId }, 96, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => {
      dv.setUint32(o + 24, name.length, true);
      dv.setUint32(o + 28, opts?.contextInit ?? 0, true);
      this.ram.bytes.fill(0, o + 32, o + 96);
      this.ram.bytes.set(name, o + 32);
      return 96;
    });
  }

  ctxDestroy(ctxId: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.CTX_DESTROY, { ...opts, ctxId }, GPU_HDR_SIZE, RESP_SIZE.NODATA, RespKind.NODATA, () => GPU_HDR_SIZE);
  }

  ctxAttach(ctxId: number, resourceId: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.CTX_ATTACH_RESOURCE, { ...opts, ctxId }, 32, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encResourceOnly(dv, o, resourceId));
  }

  ctxDetach(ctxId: number, resourceId: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.CTX_DETACH_RESOURCE, { ...opts, ctxId }, 32, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encResourceOnly(dv, o, resourceId));
  }

  resourceCreate3d(p: Create3dParams, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_CREATE_3D, opts, 72, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => {
      const v = [p.resourceId, p.target, p.format, p.bind, p.width, p.height, p.depth ?? 1, p.arraySize ?? 1, p.lastLevel ?? 0, p.nrSamples ?? 0, p.flags ?? 0, 0];
      v.forEach((x, i) => dv.setUint32(o + 24 + 4 * i, x, true));
      return 72;
    });
  }

  transferToHost3d(p: Transfer3dParams, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.TRANSFER_TO_HOST_3D, opts, 72, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encTransfer3d(dv, o, p));
  }

  transferFromHost3d(p: Transfer3dParams, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.TRANSFER_FROM_HOST_3D, opts, 72, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encTransfer3d(dv, o, p));
  }

  /** The command stream travels in its own descriptor (as Linux does) unless opts.splitAt says otherwise. */
  submit3d(ctxId: number, cmds: Uint8Array, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.SUBMIT_3D, withSplit({ ...opts, ctxId }, 32), 32 + cmds.length, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => {
      dv.setUint32(o + 24, cmds.length, true);
      dv.setUint32(o + 28, 0, true);
      this.ram.bytes.set(cmds, o + 32);
      return 32 + cmds.length;
    });
  }

  // --- blobs ------------------------------------------------------------------------------------

  async createBlob(p: BlobParams, opts?: BackingOptions): Promise<AttachResponse | GpuResponse> {
    let buf: ScatterBuffer | null = null;
    if (p.backing === true) buf = this.ram.allocScattered(p.size, opts?.chunk ?? 4096);
    else if (p.backing instanceof ScatterBuffer) buf = p.backing;
    else if (p.backing) buf = new ScatterBuffer(this.ram, p.backing as GuestRange[], []);
    const entries = buf?.entries ?? [];
    const r = await this.run(CONTROL, GpuCmd.RESOURCE_CREATE_BLOB, entries.length > 0 ? withSplit(opts, 56) : opts, 56 + 16 * entries.length, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => {
      dv.setUint32(o + 24, p.resourceId, true);
      dv.setUint32(o + 28, p.blobMem, true);
      dv.setUint32(o + 32, p.blobFlags, true);
      dv.setUint32(o + 36, entries.length, true);
      if (typeof p.blobId === 'bigint') dv.setBigUint64(o + 40, p.blobId, true); else writeU64At(dv, o + 40, p.blobId ?? 0);
      writeU64At(dv, o + 48, p.size);
      writeEntries(dv, o + 56, entries);
      return 56 + 16 * entries.length;
    }, (rr) => { if (rr.ok) this.resources.set(p.resourceId, { id: p.resourceId, width: 0, height: 0, format: 0, backing: buf }); });
    return buf ? { ...r, backing: buf } : r;
  }

  setScanoutBlob(p: SetScanoutBlobParams, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.SET_SCANOUT_BLOB, opts, 96, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => {
      writeRect(dv, o + 24, p.x ?? 0, p.y ?? 0, p.rectWidth ?? p.width, p.rectHeight ?? p.height);
      const v = [p.scanoutId, p.resourceId, p.width, p.height, p.format, 0];
      v.forEach((x, i) => dv.setUint32(o + 40 + 4 * i, x, true));
      for (let i = 0; i < 4; i++) {
        dv.setUint32(o + 64 + 4 * i, p.strides?.[i] ?? (i === 0 ? p.width * 4 : 0), true);
        dv.setUint32(o + 80 + 4 * i, p.offsets?.[i] ?? 0, true);
      }
      return 96;
    });
  }

  mapBlob(resourceId: number, offset: number, opts?: SubmitOptions): Promise<MapInfoResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_MAP_BLOB, opts, 40, RESP_SIZE.MAP_INFO, RespKind.MAP_INFO, (dv, o) => {
      encResourceOnly(dv, o, resourceId);
      writeU64At(dv, o + 32, offset);
      return 40;
    }) as Promise<MapInfoResponse>;
  }

  unmapBlob(resourceId: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_UNMAP_BLOB, opts, 32, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encResourceOnly(dv, o, resourceId));
  }
}

function encTransfer3d(dv: DataView, o: number, p: Transfer3dParams): number {
  const b = p.box;
  [b.x, b.y, b.z, b.w, b.h, b.d].forEach((x, i) => dv.setUint32(o + 24 + 4 * i, x, true));
  writeU64At(dv, o + 48, p.offset ?? 0);
  dv.setUint32(o + 56, p.resourceId, true);
  dv.setUint32(o + 60, p.level ?? 0, true);
  dv.setUint32(o + 64, p.stride ?? 0, true);
  dv.setUint32(o + 68, p.layerStride ?? 0, true);
  return 72;
}
