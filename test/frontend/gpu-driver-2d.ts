/**
 * The guest's virtio-gpu driver, 2D part: one method per command (protocols.md §4), each
 * resolving with the decoded response (error responses resolve too: check `type`/`ok`). Tracks
 * the resources it created and their backing so tests can write pixels into guest pages and
 * read them back. GpuDriver (gpu-driver.ts) adds capsets, 3D and blobs.
 */
import { GpuCmd, GpuFormat, GPU_HDR_SIZE } from './constants.js';
import { GuestRam, ScatterBuffer, writeU64At } from './guest-memory.js';
import type { GuestRange } from './guest-memory.js';
import { DriverQueue } from './virtqueue.js';
import { GpuSubmitter, CONTROL, CURSOR } from './gpu-submit.js';
import type { Slot, SubmitterOptions } from './gpu-submit.js';
import { CommandBatch } from './gpu-batch.js';
import {
  RespKind, RESP_SIZE, encCreate2d, encCursor, encFlush, encResourceOnly, encSetScanout, encTransfer2d,
} from './gpu-protocol.js';
import type { GpuResponse, SubmitOptions, DisplayInfoResponse, EdidResponse, UuidResponse, RawResponse } from './gpu-protocol.js';

export interface ResourceInfo { id: number; width: number; height: number; format: number; backing: ScatterBuffer | null }

export interface BackingOptions extends SubmitOptions {
  /** Entry size when the driver allocates the backing (default 4096: one entry per page, scattered). */
  chunk?: number;
}

export interface AttachResponse extends GpuResponse { backing: ScatterBuffer }

export type Encode = (dv: DataView, off: number) => number;

export class GpuDriver2d extends GpuSubmitter {
  readonly resources = new Map<number, ResourceInfo>();
  private lastCursorResource = 0;

  constructor(ram: GuestRam, control: DriverQueue, cursor: DriverQueue, opts: SubmitterOptions = {}) {
    super(ram, control, cursor, opts);
  }

  /** A reusable batch (allocation-free queueing, one kick, one wait); see CommandBatch for `indirect`. */
  batch(opts?: { indirect?: boolean }): CommandBatch { return new CommandBatch(this, this.cursorResponses, opts?.indirect ?? false); }

  // --- 2D ---------------------------------------------------------------------------------------

  getDisplayInfo(opts?: SubmitOptions): Promise<DisplayInfoResponse> {
    return this.run(CONTROL, GpuCmd.GET_DISPLAY_INFO, opts, GPU_HDR_SIZE, RESP_SIZE.DISPLAY_INFO, RespKind.DISPLAY_INFO, () => GPU_HDR_SIZE) as Promise<DisplayInfoResponse>;
  }

  getEdid(scanoutId: number, opts?: SubmitOptions): Promise<EdidResponse> {
    return this.run(CONTROL, GpuCmd.GET_EDID, opts, 32, RESP_SIZE.EDID, RespKind.EDID, (dv, o) => encResourceOnly(dv, o, scanoutId)) as Promise<EdidResponse>;
  }

  resourceCreate2d(resourceId: number, format: number, width: number, height: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_CREATE_2D, opts, 40, RESP_SIZE.NODATA, RespKind.NODATA,
      (dv, o) => encCreate2d(dv, o, resourceId, format, width, height),
      (r) => { if (r.ok) this.resources.set(resourceId, { id: resourceId, width, height, format, backing: null }); });
  }

  /** Also frees the tracked backing once the device answers OK. */
  resourceUnref(resourceId: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_UNREF, opts, 32, RESP_SIZE.NODATA, RespKind.NODATA,
      (dv, o) => encResourceOnly(dv, o, resourceId),
      (r) => { if (r.ok) { this.resources.get(resourceId)?.backing?.free(); this.resources.delete(resourceId); } });
  }

  setScanout(scanoutId: number, resourceId: number, x: number, y: number, w: number, h: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.SET_SCANOUT, opts, 48, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encSetScanout(dv, o, scanoutId, resourceId, x, y, w, h));
  }

  resourceFlush(resourceId: number, x: number, y: number, w: number, h: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_FLUSH, opts, 48, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encFlush(dv, o, resourceId, x, y, w, h));
  }

  /** offset defaults to the byte offset of (x, y) in a tightly packed backing of the tracked resource. */
  transferToHost2d(resourceId: number, x: number, y: number, w: number, h: number, opts?: SubmitOptions & { offset?: number }): Promise<GpuResponse> {
    const offset = opts?.offset ?? (y * (this.resources.get(resourceId)?.width ?? 0) + x) * 4;
    return this.run(CONTROL, GpuCmd.TRANSFER_TO_HOST_2D, opts, 56, RESP_SIZE.NODATA, RespKind.NODATA, (dv, o) => encTransfer2d(dv, o, resourceId, x, y, w, h, offset));
  }

  /**
   * Attach guest pages: a byte count (allocated here, `chunk`-sized scattered entries; default a
   * width*height*4 buffer of the tracked resource), a ScatterBuffer, or explicit ranges. Like
   * Linux, the entries travel in their own descriptor unless opts.splitAt says otherwise.
   */
  async attachBacking(resourceId: number, backing?: number | ScatterBuffer | readonly GuestRange[], opts?: BackingOptions): Promise<AttachResponse> {
    const res = this.resources.get(resourceId);
    let buf: ScatterBuffer;
    if (backing instanceof ScatterBuffer) buf = backing;
    else if (Array.isArray(backing)) buf = new ScatterBuffer(this.ram, backing as GuestRange[], []);
    else {
      const size = (backing as number | undefined) ?? (res ? res.width * res.height * 4 : 0);
      if (size <= 0) throw new RangeError(`attachBacking: no size for resource ${resourceId}`);
      buf = this.ram.allocScattered(size, opts?.chunk ?? 4096);
    }
    const entries = buf.entries;
    const r = await this.run(CONTROL, GpuCmd.RESOURCE_ATTACH_BACKING, withSplit(opts, 32), 32 + 16 * entries.length, RESP_SIZE.NODATA, RespKind.NODATA,
      (dv, o) => {
        dv.setUint32(o + 24, resourceId, true);
        dv.setUint32(o + 28, entries.length, true);
        writeEntries(dv, o + 32, entries);
        return 32 + 16 * entries.length;
      },
      (rr) => { if (rr.ok && res) res.backing = buf; });
    return { ...r, backing: buf };
  }

  /** Frees the tracked backing once the device answers OK. */
  detachBacking(resourceId: number, opts?: SubmitOptions): Promise<GpuResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_DETACH_BACKING, opts, 32, RESP_SIZE.NODATA, RespKind.NODATA,
      (dv, o) => encResourceOnly(dv, o, resourceId),
      (r) => { const res = this.resources.get(resourceId); if (r.ok && res?.backing) { res.backing.free(); res.backing = null; } });
  }

  assignUuid(resourceId: number, opts?: SubmitOptions): Promise<UuidResponse> {
    return this.run(CONTROL, GpuCmd.RESOURCE_ASSIGN_UUID, opts, 32, RESP_SIZE.UUID, RespKind.UUID, (dv, o) => encResourceOnly(dv, o, resourceId)) as Promise<UuidResponse>;
  }

  // --- cursor -----------------------------------------------------------------------------------

  updateCursor(scanoutId: number, x: number, y: number, resourceId: number, hotX = 0, hotY = 0, opts?: SubmitOptions): Promise<GpuResponse> {
    this.lastCursorResource = resourceId;
    return this.run(CURSOR, GpuCmd.UPDATE_CURSOR, opts, 56, this.cursorResponses ? RESP_SIZE.NODATA : 0, RespKind.NODATA,
      (dv, o) => encCursor(dv, o, scanoutId, x, y, resourceId, hotX, hotY));
  }

  /** resource_id defaults to the last cursor resource, as the Linux driver leaves it in place. */
  moveCursor(scanoutId: number, x: number, y: number, opts?: SubmitOptions & { resourceId?: number }): Promise<GpuResponse> {
    const rid = opts?.resourceId ?? this.lastCursorResource;
    return this.run(CURSOR, GpuCmd.MOVE_CURSOR, opts, 56, this.cursorResponses ? RESP_SIZE.NODATA : 0, RespKind.NODATA,
      (dv, o) => encCursor(dv, o, scanoutId, x, y, rid, 0, 0));
  }

  // --- raw and pixels ---------------------------------------------------------------------------

  /** Any request bytes (header included, sent as they are) with a writable buffer of writableLen bytes. */
  submitRaw(bytes: Uint8Array, writableLen: number, opts?: SubmitOptions & { queueIndex?: 0 | 1 }): Promise<RawResponse> {
    return this.run(opts?.queueIndex ?? CONTROL, 0, opts, Math.max(bytes.length, 1), writableLen, RespKind.RAW, (_dv, o) => {
      this.ram.bytes.set(bytes, o);
      return bytes.length;
    }) as Promise<RawResponse>;
  }

  /** Write pixels (u32 per pixel, host = little-endian order) into the tracked backing at (x, y). */
  writePixels(resourceId: number, x: number, y: number, w: number, h: number, pixels: Uint32Array): void {
    const { res, backing } = this.tracked(resourceId);
    const bytes = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
    for (let r = 0; r < h; r++) backing.write(((y + r) * res.width + x) * 4, bytes.subarray(r * w * 4, (r + 1) * w * 4));
  }

  /** Fill the whole backing from fn(x, y) → u32 pixel; returns the pixels written. */
  fillPixels(resourceId: number, fn: (x: number, y: number) => number): Uint32Array {
    const { res } = this.tracked(resourceId);
    const px = new Uint32Array(res.width * res.height);
    for (let y = 0; y < res.height; y++) for (let x = 0; x < res.width; x++) px[y * res.width + x] = fn(x, y) >>> 0;
    this.writePixels(resourceId, 0, 0, res.width, res.height, px);
    return px;
  }

  /**
   * Create a w x h B8G8R8X8 resource with a test pattern, transfer it and show it on scanout 0.
   * Throws if the device refuses a step. Returns the pixels shown.
   */
  async showPattern(resourceId: number, w: number, h: number): Promise<Uint32Array> {
    const step = async (what: string, p: Promise<GpuResponse>) => {
      const r = await p;
      if (!r.ok) throw new Error(`showPattern: ${what} answered ${r.type.toString(16)}`);
    };
    await step('RESOURCE_CREATE_2D', this.resourceCreate2d(resourceId, GpuFormat.B8G8R8X8_UNORM, w, h));
    await step('RESOURCE_ATTACH_BACKING', this.attachBacking(resourceId));
    const px = this.fillPixels(resourceId, (x, y) => ((x * 7 + y * 13) & 0xffffff) | 0xff000000);
    await step('TRANSFER_TO_HOST_2D', this.transferToHost2d(resourceId, 0, 0, w, h));
    await step('SET_SCANOUT', this.setScanout(0, resourceId, 0, 0, w, h));
    return px;
  }

  readPixels(resourceId: number): Uint32Array {
    const { res, backing } = this.tracked(resourceId);
    const b = backing.read(0, res.width * res.height * 4);
    return new Uint32Array(b.buffer, b.byteOffset, res.width * res.height);
  }

  private tracked(resourceId: number): { res: ResourceInfo; backing: ScatterBuffer } {
    const res = this.resources.get(resourceId);
    if (!res?.backing) throw new RangeError(`resource ${resourceId} has no tracked backing`);
    return { res, backing: res.backing };
  }

  /** Prepare (now if there is room), encode, enqueue, kick. */
  protected run(own: number, type: number, opts: SubmitOptions | undefined, reqBytes: number, respCap: number, kind: RespKind,
    encode: Encode, after: ((r: GpuResponse) => void) | null = null): Promise<GpuResponse> {
    const which = this.route(own, opts);
    const cap = opts?.respLen ?? respCap;
    const go = (s: Slot) => {
      let len: number;
      try { len = encode(this.ram.view, s.reqOff); } catch (e) { this.unprepare(which, s); throw e; }
      return this.finish(which, s, len, kind, opts, after);
    };
    const s = this.tryPrepare(which, type, opts, reqBytes, cap, this.descsNeeded(cap, opts));
    return s ? go(s) : this.prepare(which, type, opts, reqBytes, cap).then(go);
  }
}

/** Unless the caller chose a layout, put the bytes from `at` on in their own descriptor (as Linux does). */
export function withSplit(opts: SubmitOptions | undefined, at: number): SubmitOptions {
  return opts?.splitAt || opts?.indirect ? opts : { ...opts, splitAt: [at] };
}

export function writeEntries(dv: DataView, off: number, entries: readonly GuestRange[]): void {
  for (let i = 0; i < entries.length; i++) {
    writeU64At(dv, off + 16 * i, entries[i]!.gpa);
    dv.setUint32(off + 16 * i + 8, entries[i]!.len, true);
    dv.setUint32(off + 16 * i + 12, 0, true);
  }
}
