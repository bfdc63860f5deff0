/**
 * What the device needs from the display (QEMU's vhost-user-gpu socket, see display/). Kept as an
 * interface so the device knows nothing about sockets.
 */
import type { Swizzle } from './formats.js';
import type { PixelStore } from './pixel-store.js';

/**
 * Pixels to send: a region of a 32-bit image and how to reach B,G,R,X byte order from it. The
 * display may keep reading the store after update() returns (writers copy-on-write, see PixelStore).
 */
export interface PixelSource {
  store: PixelStore;
  /** Image width in pixels (row pitch). */
  pitch: number;
  x: number;
  y: number;
  swizzle: Swizzle;
}

export interface DisplaySink {
  /** The 16 pmodes (16 x 24 bytes) of the current display configuration, or null if unavailable. */
  displayInfo(): Promise<Uint8Array | null>;
  /** EDID blob of an existing scanout (size u32, padding, 1024 bytes), or null if unavailable. */
  edid(scanout: number): Promise<Uint8Array | null>;
  /** Whether QEMU is known to have this scanout (so a GET_EDID for it gets an answer). */
  hasScanout(scanout: number): boolean;
  /** Show a width x height surface on the scanout; 0x0 disables it. */
  scanout(scanout: number, width: number, height: number): void;
  /**
   * Send damaged pixels of scanout rect (x, y, width, height), taken from `src` at (src.x, src.y).
   * Returns false if the update was dropped (display gone or backed up).
   */
  update(scanout: number, x: number, y: number, width: number, height: number, src: PixelSource): boolean;
  /**
   * New 64x64 cursor image (a8r8g8b8 words, the first 16 KiB of `image`) with hot spot, at x,y. As
   * with update(), the display may read the store later: change it only through forWrite.
   */
  cursorUpdate(scanout: number, x: number, y: number, hotX: number, hotY: number, image: PixelStore): void;
  cursorMove(scanout: number, x: number, y: number): void;
  cursorHide(scanout: number, x: number, y: number): void;
}
