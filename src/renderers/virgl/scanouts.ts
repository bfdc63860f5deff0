/**
 * Scanouts and cursor of virgl resources. The pixels live in virglrenderer, so a flush reads the
 * flushed rect back into the component's shared readback buffer (bottom-up resources flipped) and
 * sends the display an update straight from that buffer.
 */
import type { VirglComponent } from './component.js';
import type { Backing } from '../../device/backing.js';
import type { DisplaySink } from '../../device/display-sink.js';
import { GpuError } from '../../device/errors.js';
import { isSupportedFormat, swizzleOf } from '../../device/formats.js';
import { CURSOR_SIZE, MAX_SCANOUTS } from '../../device/protocol.js';
import { checkRectInside, Scanouts } from '../../device/scanouts.js';
import { cursorImage, PixelStore } from '../../device/pixel-store.js';
import { log } from '../../log.js';

export interface VirglResource {
  /** RESOURCE_CREATE_3D's arguments as given to the library (to create it again on a new server). */
  readonly args: readonly number[];
  readonly id: number;
  readonly format: number;
  readonly width: number;
  readonly height: number;
  /** RESOURCE_FLAG_Y_0_TOP: row 0 is the top row (otherwise GL's bottom-up order). */
  readonly yTop: boolean;
  readonly target: number;
  readonly depth: number;
  readonly arraySize: number;
  readonly lastLevel: number;
  backing: Backing | null;
  readonly charge: number;
  uuid: Uint8Array | null;
}

interface Out {
  res: VirglResource | null;
  x: number;
  y: number;
  width: number;
  height: number;
}

export class VirglScanouts {
  private readonly outs: Out[] = Array.from({ length: MAX_SCANOUTS }, () => ({ res: null, x: 0, y: 0, width: 0, height: 0 }));
  private words: Uint32Array;
  /** What the display is sent from: readback bands are copied here (the next readback reuses the buffer). */
  private sendStore: PixelStore | null = null;
  private cursorImage: PixelStore | null = null;
  /** Readbacks share one buffer region: they run one after another. */
  private busy: Promise<unknown> = Promise.resolve();

  /**
   * claim: this scanout shows a virgl resource now, or nothing: the device forgets the blob it
   * showed there (whether it showed one), so one scanout never has two sources.
   */
  constructor(private component: VirglComponent, private readonly display: DisplaySink, private readonly claim: (id: number) => boolean = () => false) {
    this.words = new Uint32Array(component.readbackBuffer);
  }

  /** Read back from another render server from now on (the last one died). */
  use(component: VirglComponent): void {
    this.component = component;
    this.words = new Uint32Array(component.readbackBuffer);
  }

  set(id: number, res: VirglResource | null, x: number, y: number, width: number, height: number): void {
    Scanouts.checkId(id);
    const s = this.outs[id];
    if (!res) {
      const elsewhere = this.claim(id);
      if (this.release(id) || elsewhere) this.display.scanout(id, 0, 0);
      return;
    }
    if (!isSupportedFormat(res.format)) throw new GpuError('param', `resource ${res.id}: format ${res.format} cannot be shown`);
    if (width === 0 || height === 0) throw new GpuError('param', `empty scanout rect ${width}x${height}`);
    checkRectInside('scanout', { x, y, width, height }, res.width, res.height);
    this.claim(id);
    const sizeChanged = s.res === null || s.width !== width || s.height !== height;
    Object.assign(s, { res, x, y, width, height });
    if (sizeChanged) this.display.scanout(id, width, height);
  }

  detach(res: VirglResource): void {
    for (let id = 0; id < MAX_SCANOUTS; id++) if (this.outs[id].res === res) this.set(id, null, 0, 0, 0, 0);
  }

  /** Read rect back and send it to every scanout showing res; resolves when the updates are out. */
  flush(res: VirglResource, x: number, y: number, width: number, height: number): Promise<number> | null {
    checkRectInside('flush', { x, y, width, height }, res.width, res.height);
    const shown = this.outs.some((s) => s.res === res);
    if (!shown || width === 0 || height === 0) return null;
    // Never rejects (a failure is -errno), so a fenced flush is always answered.
    const run = this.busy.then(() => this.readAndSend(res, x, y, width, height)).catch((e: unknown) => {
      log.error(`virgl: flush of resource ${res.id}: ${(e as Error)?.stack ?? e}`);
      return -5;
    });
    this.busy = run;
    return run;
  }

  private async readAndSend(res: VirglResource, x: number, y: number, width: number, height: number): Promise<number> {
    const pitch = width * 4;
    const band = Math.floor(this.words.byteLength / pitch);
    if (band === 0) return 0;
    const swizzle = swizzleOf(res.format);
    for (let y0 = y; y0 < y + height; y0 += band) {
      const h = Math.min(band, y + height - y0);
      // Bottom-up resources: ask for the mirrored rows, flipped into top-down order.
      const ry = res.yTop ? y0 : res.height - y0 - h;
      const rc = await this.component.readback(res.id, { x, y: ry, width, height: h }, !res.yTop, { offset: 0, stride: pitch });
      if (rc < 0) {
        log.warn(`virgl: readback of resource ${res.id} failed (${rc})`);
        return rc;
      }
      // The next readback reuses the shared buffer: the display gets a copy, in a store it can
      // send by page reference (a new one while it still reads the previous band).
      const store = (this.sendStore = this.sendStore?.forWrite(true) ?? new PixelStore(this.words.byteLength));
      store.words.set(this.words.subarray(0, width * h));
      for (let id = 0; id < MAX_SCANOUTS; id++) {
        const s = this.outs[id];
        if (s.res !== res) continue;
        const x0 = Math.max(x, s.x), y1 = Math.max(y0, s.y);
        const x1 = Math.min(x + width, s.x + s.width), y2 = Math.min(y0 + h, s.y + s.height);
        if (x1 <= x0 || y2 <= y1) continue;
        this.display.update(id, x0 - s.x, y1 - s.y, x1 - x0, y2 - y1, { store, pitch: width, x: x0 - x, y: y1 - y0, swizzle });
      }
    }
    return 0;
  }

  /** UPDATE_CURSOR from a 64x64 virgl resource, read back (the cursor queue does not wait for it). */
  cursor(res: VirglResource, scanout: number, x: number, y: number, hotX: number, hotY: number): void {
    if (res.width !== CURSOR_SIZE || res.height !== CURSOR_SIZE || !isSupportedFormat(res.format)) {
      log.guest('cursor-update', `cursor: resource ${res.id} is not a 64x64 image`);
      return;
    }
    const run = this.busy.then(async () => {
      const rc = await this.component.readback(res.id, { x: 0, y: 0, width: CURSOR_SIZE, height: CURSOR_SIZE }, !res.yTop, { offset: 0, stride: CURSOR_SIZE * 4 });
      if (rc < 0) return;
      this.cursorImage = cursorImage(this.cursorImage, swizzleOf(res.format), this.words);
      this.display.cursorUpdate(scanout, x, y, hotX, hotY, this.cursorImage);
    }).catch((e: unknown) => log.error(`virgl: cursor from resource ${res.id}: ${(e as Error)?.stack ?? e}`));
    this.busy = run;
  }

  /** Forget what scanout id shows without telling the display (one of the device's blobs shows there now); whether it showed one. */
  release(id: number): boolean {
    const s = this.outs[id];
    const was = s.res !== null;
    Object.assign(s, { res: null, x: 0, y: 0, width: 0, height: 0 });
    return was;
  }

  reset(): void {
    for (let id = 0; id < MAX_SCANOUTS; id++) this.release(id);
  }
}
