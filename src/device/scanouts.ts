/**
 * Scanouts: which resource rectangle each of the 16 outputs shows, and pushing flushed pixels of a
 * resource to every scanout showing it, in scanout coordinates and x8r8g8b8.
 */
import type { DisplaySink } from './display-sink.js';
import { GpuError } from './errors.js';
import { swizzleOf } from './formats.js';
import type { PixelStore } from './pixel-store.js';
import { MAX_SCANOUTS } from './protocol.js';

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** What a scanout shows: a 2D resource, or a blob's framebuffer (see blob.ts). */
export interface ScanoutSource {
  readonly width: number;
  readonly height: number;
  readonly format: number;
  /** The pixels, width x height, rows of `width` pixels. */
  readonly store: PixelStore;
  /** Scanouts showing this source (bit i = scanout i). */
  scanoutMask: number;
}

interface Scanout extends Rect {
  resource: ScanoutSource | null;
}

/** Throws ERR_INVALID_PARAMETER unless rect lies inside width x height (no wrap: doubles). */
export function checkRectInside(what: string, r: Rect, width: number, height: number): void {
  if (r.x + r.width > width || r.y + r.height > height) {
    throw new GpuError('param', `${what} rect ${r.width}x${r.height}+${r.x}+${r.y} exceeds ${width}x${height}`);
  }
}

export class Scanouts {
  private readonly outs: Scanout[] = Array.from({ length: MAX_SCANOUTS }, () => ({ resource: null, x: 0, y: 0, width: 0, height: 0 }));

  /**
   * onUnshown: a source stopped being shown on its last scanout (blob framebuffers are then released).
   * claim: scanout id is about to show one of our sources, or nothing: a renderer that shows its own
   * resources (virgl) forgets what it showed there, and says whether it showed anything.
   */
  constructor(
    private readonly display: DisplaySink,
    private readonly onUnshown: (src: ScanoutSource) => void = () => {},
    private readonly claim: (id: number) => boolean = () => false,
  ) {}

  static checkId(id: number): void {
    if (id >= MAX_SCANOUTS) throw new GpuError('scanout', `scanout ${id} out of range (0..${MAX_SCANOUTS - 1})`);
  }

  /** What scanout id shows (null: disabled). */
  shown(id: number): ScanoutSource | null {
    return this.outs[id]?.resource ?? null;
  }

  set(id: number, res: ScanoutSource, r: Rect): void {
    Scanouts.checkId(id);
    if (r.width === 0 || r.height === 0) throw new GpuError('param', `empty scanout rect ${r.width}x${r.height}`);
    checkRectInside('scanout', r, res.width, res.height);
    this.claim(id); // what the renderer showed there is gone, so this one is new to the display
    const s = this.outs[id];
    const old = s.resource;
    const sizeChanged = s.resource === null || s.width !== r.width || s.height !== r.height;
    const changed = sizeChanged || s.resource !== res || s.x !== r.x || s.y !== r.y;
    Object.assign(s, { resource: res, x: r.x, y: r.y, width: r.width, height: r.height });
    res.scanoutMask |= 1 << id;
    if (old && old !== res) this.hide(id, old);
    if (sizeChanged) this.display.scanout(id, r.width, r.height);
    // Like QEMU's in-process device, a newly shown resource is visible at once, not after the next flush.
    if (changed) this.flushOne(id, res, r);
  }

  disable(id: number): void {
    Scanouts.checkId(id);
    const elsewhere = this.claim(id);
    if (this.release(id) || elsewhere) this.display.scanout(id, 0, 0);
  }

  private hide(id: number, src: ScanoutSource): void {
    src.scanoutMask &= ~(1 << id);
    if (src.scanoutMask === 0) this.onUnshown(src);
  }

  /** Disable every scanout showing res (before it is destroyed). */
  detachResource(res: ScanoutSource): void {
    for (let id = 0; id < MAX_SCANOUTS; id++) if (res.scanoutMask & (1 << id)) this.disable(id);
  }

  /** Send rect r of res to every scanout showing it. */
  flush(res: ScanoutSource, r: Rect): void {
    if (res.scanoutMask === 0) return;
    for (let id = 0; id < MAX_SCANOUTS; id++) {
      if (res.scanoutMask & (1 << id)) this.flushOne(id, res, r);
    }
  }

  /** Send rect r of scanout id again (in scanout coordinates), e.g. after the display dropped it. */
  refresh(id: number, r: Rect): void {
    const s = this.outs[id];
    if (s?.resource) this.flushOne(id, s.resource, { x: s.x + r.x, y: s.y + r.y, width: r.width, height: r.height });
  }

  /** Send the part of rect r (resource coordinates) that scanout id shows. */
  private flushOne(id: number, res: ScanoutSource, r: Rect): void {
    const s = this.outs[id];
    const x0 = Math.max(r.x, s.x), y0 = Math.max(r.y, s.y);
    const x1 = Math.min(r.x + r.width, s.x + s.width), y1 = Math.min(r.y + r.height, s.y + s.height);
    if (x1 <= x0 || y1 <= y0) return;
    this.display.update(id, x0 - s.x, y0 - s.y, x1 - x0, y1 - y0, {
      store: res.store, pitch: res.width, x: x0, y: y0, swizzle: swizzleOf(res.format),
    });
  }

  /** Forget what scanout id shows without telling the display (a renderer's resource shows there now); whether it showed anything. */
  release(id: number): boolean {
    const s = this.outs[id];
    const old = s.resource;
    Object.assign(s, { resource: null, x: 0, y: 0, width: 0, height: 0 });
    if (old) this.hide(id, old);
    return old !== null;
  }

  reset(): void {
    for (let id = 0; id < MAX_SCANOUTS; id++) this.release(id);
  }
}
