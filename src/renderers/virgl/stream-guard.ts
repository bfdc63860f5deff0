/**
 * Commands in a SUBMIT_3D stream that virglrenderer 0.10.4 executes without checking what it
 * touches, so that a guest could crash the daemon with them (found by `npm run fuzz -- --target
 * virgl`). The stream is walked exactly as the library's decoder walks it (a header dword
 * `cmd | obj << 8 | len << 16`, then len dwords), so nothing can hide from the walk.
 */

import { VIRGL_FORMAT_COUNT } from './formats.js';

/** VIRGL_CCMD_GET_MEMORY_INFO: writes a virgl_memory_info through the resource's first iov, unchecked. */
const CCMD_GET_MEMORY_INFO = 50;
/** sizeof(struct virgl_memory_info): six u32. */
export const MEMORY_INFO_BYTES = 24;
/**
 * VIRGL_CCMD_SET_SHADER_IMAGES: shader type, start slot, then per image format, access, offset,
 * size, handle. The library indexes its format table with the format unchecked.
 */
const CCMD_SET_SHADER_IMAGES = 35;
const IMAGE_DWORDS = 5;

/**
 * Why the stream must not reach the library, or null. firstIovBytes(res): the length of the
 * resource's first backing segment as the library holds it, 0 if it has none.
 */
export function unsafeCommand(stream: Uint8Array, firstIovBytes: (res: number) => number): string | null {
  const v = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const dwords = stream.byteLength >>> 2;
  for (let at = 0; at < dwords;) {
    const header = v.getUint32(4 * at, true);
    const len = header >>> 16;
    if (at + len + 1 > dwords) return null; // the library refuses the rest itself
    if ((header & 0xff) === CCMD_GET_MEMORY_INFO && len === 1) {
      const res = v.getUint32(4 * (at + 1), true);
      const have = firstIovBytes(res);
      if (have < MEMORY_INFO_BYTES) {
        return `GET_MEMORY_INFO into resource ${res}, whose first backing segment has ${have} bytes (needs ${MEMORY_INFO_BYTES})`;
      }
    }
    if ((header & 0xff) === CCMD_SET_SHADER_IMAGES && len >= 2) {
      for (let img = at + 3; img + IMAGE_DWORDS <= at + 1 + len; img += IMAGE_DWORDS) {
        const format = v.getUint32(4 * img, true);
        if (format >= VIRGL_FORMAT_COUNT) return `SET_SHADER_IMAGES with format ${format} (formats end at ${VIRGL_FORMAT_COUNT - 1})`;
      }
    }
    at += len + 1;
  }
  return null;
}
