/**
 * The eight virtio-gpu 2D formats (all 4 bytes per pixel; the name gives the byte order in memory)
 * and conversion to the display protocol's x8r8g8b8 (bytes B,G,R,X on little-endian hosts).
 * Conversions work on little-endian 32-bit words: w = byte0 | byte1<<8 | byte2<<16 | byte3<<24.
 */
export const Format = {
  B8G8R8A8_UNORM: 1,
  B8G8R8X8_UNORM: 2,
  A8R8G8B8_UNORM: 3,
  X8R8G8B8_UNORM: 4,
  R8G8B8A8_UNORM: 67,
  X8B8G8R8_UNORM: 68,
  A8B8G8R8_UNORM: 121,
  R8G8B8X8_UNORM: 134,
} as const;

/** How to reach B,G,R,(A) byte order from a format. */
export type Swizzle = 'none' | 'bswap' | 'swapRB' | 'shift8';

const SWIZZLE = new Map<number, Swizzle>([
  [Format.B8G8R8A8_UNORM, 'none'],   // B,G,R,A
  [Format.B8G8R8X8_UNORM, 'none'],   // B,G,R,X
  [Format.A8R8G8B8_UNORM, 'bswap'],  // A,R,G,B -> reversed is B,G,R,A
  [Format.X8R8G8B8_UNORM, 'bswap'],
  [Format.R8G8B8A8_UNORM, 'swapRB'], // R,G,B,A -> swap bytes 0 and 2
  [Format.R8G8B8X8_UNORM, 'swapRB'],
  [Format.X8B8G8R8_UNORM, 'shift8'], // X,B,G,R -> drop byte 0
  [Format.A8B8G8R8_UNORM, 'shift8'], // A,B,G,R: alpha moves to the top byte
]);

export const BYTES_PER_PIXEL = 4;

export function isSupportedFormat(format: number): boolean {
  return SWIZZLE.has(format);
}

export function swizzleOf(format: number): Swizzle {
  const s = SWIZZLE.get(format);
  if (!s) throw new Error(`unsupported format ${format}`);
  return s;
}

/**
 * Convert `count` pixels from src (resource words) to dst words in B,G,R,A order.
 * keepAlpha: carry the alpha byte (cursor images); otherwise the display ignores it.
 */
export function convertWords(swz: Swizzle, src: Uint32Array, srcAt: number, dst: Uint32Array, dstAt: number, count: number): void {
  switch (swz) {
    case 'none':
      dst.set(src.subarray(srcAt, srcAt + count), dstAt);
      return;
    case 'bswap':
      for (let i = 0; i < count; i++) {
        const w = src[srcAt + i];
        dst[dstAt + i] = ((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24);
      }
      return;
    case 'swapRB':
      for (let i = 0; i < count; i++) {
        const w = src[srcAt + i];
        dst[dstAt + i] = (w & 0xff00ff00) | ((w >>> 16) & 0xff) | ((w & 0xff) << 16);
      }
      return;
    case 'shift8':
      for (let i = 0; i < count; i++) {
        const w = src[srcAt + i];
        dst[dstAt + i] = (w >>> 8) | ((w & 0xff) << 24);
      }
      return;
  }
}
