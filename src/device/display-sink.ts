/**
 * What the device needs from the display (QEMU's vhost-user-gpu socket, see display/). Kept as an
 * interface so the device knows nothing about sockets.
 */
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
   * Send damaged pixels; `fill` writes width*height x8r8g8b8 pixels (stride width*4) into dst.
   * Returns false if the update was dropped (display gone).
   */
  update(scanout: number, x: number, y: number, width: number, height: number, fill: (dst: Uint32Array) => void): boolean;
  /** New 64x64 cursor image (a8r8g8b8 words) with hot spot, at x,y. */
  cursorUpdate(scanout: number, x: number, y: number, hotX: number, hotY: number, image: Uint32Array): void;
  cursorMove(scanout: number, x: number, y: number): void;
  cursorHide(scanout: number, x: number, y: number): void;
}
