/**
 * The device's fixed handle on the display: forwards to the current QEMU display socket, which
 * QEMU replaces at every start, and behaves as "no display" while there is none.
 */
import type { DisplaySink, PixelSource } from '../device/display-sink.js';
import type { PixelStore } from '../device/pixel-store.js';
import type { DisplayChannel } from './display-channel.js';

export class DisplayPort implements DisplaySink {
  private channel: DisplayChannel | null = null;

  attach(channel: DisplayChannel | null): void {
    if (this.channel && this.channel !== channel) this.channel.close();
    this.channel = channel;
  }

  private get live(): DisplayChannel | null {
    return this.channel && !this.channel.isClosed ? this.channel : null;
  }

  displayInfo(): Promise<Uint8Array | null> {
    return this.live?.displayInfo() ?? Promise.resolve(null);
  }

  edid(scanout: number): Promise<Uint8Array | null> {
    return this.live?.edid(scanout) ?? Promise.resolve(null);
  }

  /** Send what the display has queued (before the guest is told its commands completed). */
  flush(): void {
    this.live?.flush();
  }

  hasScanout(scanout: number): boolean {
    return this.live ? this.live.hasScanout(scanout) : scanout === 0;
  }

  scanout(scanout: number, width: number, height: number): void {
    this.live?.scanout(scanout, width, height);
  }

  update(scanout: number, x: number, y: number, width: number, height: number, src: PixelSource): boolean {
    return this.live?.update(scanout, x, y, width, height, src) ?? false;
  }

  cursorUpdate(scanout: number, x: number, y: number, hotX: number, hotY: number, image: PixelStore): void {
    this.live?.cursorUpdate(scanout, x, y, hotX, hotY, image);
  }

  cursorMove(scanout: number, x: number, y: number): void {
    this.live?.cursorMove(scanout, x, y);
  }

  cursorHide(scanout: number, x: number, y: number): void {
    this.live?.cursorHide(scanout, x, y);
  }
}
