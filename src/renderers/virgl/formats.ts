/**
 * Block geometry of virglrenderer's formats (enum virgl_formats, virgl_hw.h; sizes as in Gallium's
 * format table): what the coordinator needs to check a transfer against a resource's backing the
 * way virglrenderer does, before the command reaches the library.
 */

/** Largest virgl format id + 1 (VIRGL_FORMAT_MAX of the newest virgl_hw.h). */
export const VIRGL_FORMAT_COUNT = 481;
/** Ids below VIRGL_FORMAT_COUNT that name no format (gaps and removed entries of the enum). */
const NOT_FORMATS = new Set([73, 78, 79, 80, 81, 86, 259, 260, 261, 262, 307, 309, 310]);

/** A format's block: blockWidth x blockHeight texels in `bytes` bytes. */
export interface FormatBlock {
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
}

// [block width, block height, bytes per block, format ids]. Formats not listed (NONE, planar YUV,
// 3D ASTC and the newer video formats) have no block size here: the library alone checks them.
const BLOCKS: ReadonlyArray<readonly [number, number, number, readonly number[]]> = [
  [1, 1, 1, [
    9, 10, 11, 23, 64, 69, 74, 82, 95, 130, 139, 147, 148, 150, 168, 169, 177, 181, 201, 202, 203, 205, 206, 207,
    312, 318
  ]],
  [1, 1, 2, [
    5, 6, 7, 12, 13, 16, 48, 52, 56, 60, 65, 70, 75, 83, 91, 96, 120, 122, 133, 135, 141, 142, 149, 151, 152, 154,
    155, 156, 158, 170, 171, 178, 182, 185, 189, 204, 208, 209, 210, 211, 213, 214, 215, 242, 247, 248, 254, 263,
    264, 311, 313, 319, 320, 321, 330, 331, 332, 333, 338, 339, 340
  ]],
  [1, 1, 3, [66, 71, 76, 84, 97, 179, 183, 317, 328]],
  [1, 1, 4, [
    1, 2, 3, 4, 8, 17, 18, 19, 20, 21, 22, 28, 32, 36, 40, 44, 49, 53, 57, 61, 67, 68, 72, 77, 85, 87, 92, 98, 99,
    100, 101, 102, 103, 104, 119, 121, 123, 124, 125, 128, 129, 131, 132, 134, 136, 137, 140, 153, 157, 159, 160,
    162, 172, 173, 174, 175, 176, 180, 184, 186, 190, 193, 197, 212, 216, 217, 218, 219, 221, 222, 223, 225, 229,
    230, 231, 232, 233, 243, 244, 245, 249, 250, 253, 265, 266, 267, 268, 308, 329, 334, 335, 336, 337, 341, 342,
    343, 344, 345, 346, 347
  ]],
  [1, 1, 6, [50, 54, 58, 62, 93, 187, 191]],
  [1, 1, 8, [
    24, 29, 33, 37, 41, 45, 51, 55, 59, 63, 88, 94, 126, 138, 161, 188, 192, 194, 198, 220, 224, 234, 235, 236,
    237, 238, 246, 251, 252
  ]],
  [1, 1, 12, [30, 34, 38, 42, 46, 89, 195, 199]],
  [1, 1, 16, [25, 31, 35, 39, 43, 47, 90, 196, 200, 239, 240, 241]],
  [1, 1, 24, [26]],
  [1, 1, 32, [27]],
  [2, 1, 4, [14, 15, 117, 118, 227, 228, 327]],
  [4, 4, 8, [105, 106, 109, 110, 113, 114, 143, 144, 226, 269, 270, 271, 272, 275, 276]],
  [4, 4, 16, [107, 108, 111, 112, 115, 116, 145, 146, 255, 256, 257, 258, 273, 274, 277, 278, 279, 293]],
  [5, 4, 16, [280, 294]],
  [5, 5, 16, [281, 295]],
  [6, 5, 16, [282, 296]],
  [6, 6, 16, [283, 297]],
  [8, 1, 1, [127]],
  [8, 5, 16, [284, 298]],
  [8, 6, 16, [285, 299]],
  [8, 8, 16, [286, 300]],
  [10, 5, 16, [287, 301]],
  [10, 6, 16, [288, 302]],
  [10, 8, 16, [289, 303]],
  [10, 10, 16, [290, 304]],
  [12, 10, 16, [291, 305]],
  [12, 12, 16, [292, 306]],
];

const BLOCK_OF = new Map<number, FormatBlock>();
for (const [width, height, bytes, ids] of BLOCKS) {
  const block = { width, height, bytes };
  for (const id of ids) BLOCK_OF.set(id, block);
}

/** Whether `format` is a virgl format id at all (virglrenderer may still not support it). */
export function isVirglFormat(format: number): boolean {
  return format < VIRGL_FORMAT_COUNT && !NOT_FORMATS.has(format);
}

/** The format's block geometry, or null if only the library knows it. */
export function formatBlock(format: number): FormatBlock | null {
  return BLOCK_OF.get(format) ?? null;
}
