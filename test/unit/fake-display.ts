/** A DisplaySink that records scanouts, converted pixel updates and cursor images (device tests). */
import type { DisplaySink, PixelSource } from '../../src/device/display-sink.js';
import type { PixelStore } from '../../src/device/pixel-store.js';
import { convertWords } from '../../src/device/formats.js';

export interface Update { scanout: number; x: number; y: number; w: number; h: number; px: Uint32Array }

export class FakeDisplay implements DisplaySink {
  scanouts: [number, number, number][] = [];
  updates: Update[] = [];
  cursor: unknown[] = [];
  edidAsked: number[] = [];
  displayInfo = async () => null;
  edid = async (s: number) => { this.edidAsked.push(s); const b = new Uint8Array(1032); b[0] = 128; b[8] = 0; b[9] = 0xff; return b; };
  hasScanout = (s: number) => s === 0;
  scanout(s: number, w: number, h: number) { this.scanouts.push([s, w, h]); }
  update(scanout: number, x: number, y: number, w: number, h: number, src: PixelSource) {
    const px = new Uint32Array(w * h);
    for (let row = 0; row < h; row++) convertWords(src.swizzle, src.store.words, (src.y + row) * src.pitch + src.x, px, row * w, w);
    this.updates.push({ scanout, x, y, w, h, px });
    return true;
  }
  cursorImages: Uint32Array[] = [];
  cursorUpdate(...a: unknown[]) {
    this.cursor.push(['update', ...a.slice(0, 5)]);
    this.cursorImages.push((a[5] as PixelStore).words.slice());
  }
  cursorMove(...a: unknown[]) { this.cursor.push(['move', ...a]); }
  cursorHide(...a: unknown[]) { this.cursor.push(['hide', ...a]); }
}
