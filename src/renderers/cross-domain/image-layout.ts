/**
 * GET_IMAGE_REQUIREMENTS without a GPU: the linear layout of an image in a memfd (the compositor
 * reads it as wl_shm memory, a guest maps it through its blob). Planes follow each other, rows
 * aligned to 64 bytes, planes to 64 bytes, the whole rounded up to pages.
 */

const fourcc = (s: string): number => (s.charCodeAt(0) | s.charCodeAt(1) << 8 | s.charCodeAt(2) << 16 | s.charCodeAt(3) << 24) >>> 0;

/** One plane: bytes per sample, and the subsampling of its samples against the image. */
interface Plane {
  readonly cpp: number;
  readonly hsub: number;
  readonly vsub: number;
}

const packed = (cpp: number): readonly Plane[] => [{ cpp, hsub: 1, vsub: 1 }];

/** DRM formats with a linear layout we can state, by fourcc. */
const FORMATS = new Map<number, readonly Plane[]>([
  ...['AR24', 'XR24', 'AB24', 'XB24', 'RA24', 'RX24', 'BA24', 'BX24', 'AR30', 'XR30', 'AB30', 'XB30'].map((f) => [fourcc(f), packed(4)] as const),
  ...['RG24', 'BG24'].map((f) => [fourcc(f), packed(3)] as const),
  ...['RG16', 'BG16', 'GR88', 'R16 '].map((f) => [fourcc(f), packed(2)] as const),
  [fourcc('R8  '), packed(1)],
  [fourcc('AB4H'), packed(8)],
  [fourcc('XB4H'), packed(8)],
  [fourcc('NV12'), [{ cpp: 1, hsub: 1, vsub: 1 }, { cpp: 2, hsub: 2, vsub: 2 }]],
  [fourcc('NV21'), [{ cpp: 1, hsub: 1, vsub: 1 }, { cpp: 2, hsub: 2, vsub: 2 }]],
  [fourcc('P010'), [{ cpp: 2, hsub: 1, vsub: 1 }, { cpp: 4, hsub: 2, vsub: 2 }]],
  [fourcc('YU12'), [{ cpp: 1, hsub: 1, vsub: 1 }, { cpp: 1, hsub: 2, vsub: 2 }, { cpp: 1, hsub: 2, vsub: 2 }]],
  [fourcc('YV12'), [{ cpp: 1, hsub: 1, vsub: 1 }, { cpp: 1, hsub: 2, vsub: 2 }, { cpp: 1, hsub: 2, vsub: 2 }]],
]);

export const MAX_IMAGE_DIM = 16384;
const ROW_ALIGN = 64;
const PLANE_ALIGN = 64;
const PAGE = 4096;

export interface ImageLayout {
  readonly strides: readonly number[];
  readonly offsets: readonly number[];
  /** Bytes of memory for the image, a multiple of the page size. */
  readonly size: number;
}

const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;

/** The layout, or a reason why there is none (unknown format, zero or oversized dimensions). */
export function imageLayout(width: number, height: number, drmFormat: number): ImageLayout | string {
  const planes = FORMATS.get(drmFormat >>> 0);
  if (!planes) return `DRM format 0x${(drmFormat >>> 0).toString(16)} has no linear layout here`;
  if (width === 0 || height === 0 || width > MAX_IMAGE_DIM || height > MAX_IMAGE_DIM) {
    return `${width}x${height} is outside 1..${MAX_IMAGE_DIM}`;
  }
  const strides = [0, 0, 0, 0], offsets = [0, 0, 0, 0];
  let at = 0;
  planes.forEach((p, i) => {
    at = alignUp(at, PLANE_ALIGN);
    strides[i] = alignUp(Math.ceil(width / p.hsub) * p.cpp, ROW_ALIGN);
    offsets[i] = at;
    at += strides[i] * Math.ceil(height / p.vsub);
  });
  return { strides, offsets, size: alignUp(at, PAGE) };
}
