/**
 * Host pixel memory that the display can send without copying it: page-backed (native
 * allocPages), so the display socket may take its pages by reference. While a display still reads
 * them, writing would change pixels already sent, so writers ask for a store to write into and get
 * a fresh copy then (copy-on-write), never a torn frame.
 */
import { native, NativeError } from '../native.js';
import { GpuError } from './errors.js';
import { convertWords, type Swizzle } from './formats.js';
import { CURSOR_SIZE } from './protocol.js';

/** A display that may still be reading a store's pages (see display/display-channel.ts). */
export interface PixelReader {
  /** False once the display has read every pixel of `store` it was given (they may change then). */
  stillReading(store: PixelStore): boolean;
}

export class PixelStore {
  readonly bytes: Uint8Array;
  readonly words: Uint32Array;
  /** Set by a display that sent these pages by reference; cleared lazily once it has read them. */
  reader: PixelReader | null = null;

  constructor(readonly byteLength: number) {
    const ab = native().allocPages(byteLength);
    if (typeof ab === 'number') {
      if (ab === -native().ENOMEM) throw new GpuError('oom', `no host memory for ${byteLength} bytes of pixels`);
      throw new NativeError(`allocPages(${byteLength})`, ab);
    }
    this.bytes = new Uint8Array(ab);
    this.words = new Uint32Array(ab);
  }

  /** Whether a display may still read these pages, so they must not change now. */
  get lent(): boolean {
    if (this.reader && !this.reader.stillReading(this)) this.reader = null;
    return this.reader !== null;
  }

  /**
   * Return the memory at once (the owner is gone), unless a display still needs the pages: then
   * garbage collection frees them later. The store must not be used afterwards.
   */
  discard(): void {
    if (!this.lent) native().discardPages(this.bytes.buffer as ArrayBuffer);
  }

  /**
   * The store to write into: this one, or (while it is lent) a new one holding the same pixels,
   * unless the caller overwrites all of them anyway.
   */
  forWrite(overwritesAll: boolean): PixelStore {
    if (!this.lent) return this;
    const fresh = new PixelStore(this.byteLength);
    if (!overwritesAll) fresh.bytes.set(this.bytes);
    return fresh;
  }
}

/**
 * A 64x64 cursor image in a8r8g8b8 words, converted from `src` (a 64x64 image in a format reached
 * by `swizzle`) into `previous` or, while a display still reads that one, a new store.
 */
export function cursorImage(previous: PixelStore | null, swizzle: Swizzle, src: Uint32Array): PixelStore {
  const image = previous?.forWrite(true) ?? new PixelStore(CURSOR_SIZE * CURSOR_SIZE * 4);
  convertWords(swizzle, src, 0, image.words, 0, CURSOR_SIZE * CURSOR_SIZE);
  return image;
}
