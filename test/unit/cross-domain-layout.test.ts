// GET_IMAGE_REQUIREMENTS' layouts: linear planes in one memfd, what a guest proxy then maps.
import { describe, it, expect } from 'vitest';
import { imageLayout, MAX_IMAGE_DIM } from '../../src/renderers/cross-domain/image-layout.js';
import { capabilities, CAPS, SEND_RECEIVE, REQS, READ_WRITE, INIT, MAX_RECEIVE_DATA } from '../../src/renderers/cross-domain/protocol.js';

const fourcc = (s: string) => [...s].reduce((v, c, i) => v | (c.charCodeAt(0) << (8 * i)), 0) >>> 0;

describe('cross-domain image layouts', () => {
  it('packs 32-bit formats in 64-byte rows, page-rounded', () => {
    expect(imageLayout(64, 48, fourcc('XR24'))).toEqual({ strides: [256, 0, 0, 0], offsets: [0, 0, 0, 0], size: 12288 });
    expect(imageLayout(17, 3, fourcc('AB24'))).toEqual({ strides: [128, 0, 0, 0], offsets: [0, 0, 0, 0], size: 4096 });
    expect(imageLayout(100, 10, fourcc('RG16'))).toMatchObject({ strides: [256, 0, 0, 0] });
  });

  it('places planes of YUV formats one after the other, chroma subsampled', () => {
    expect(imageLayout(640, 480, fourcc('NV12'))).toEqual({ strides: [640, 640, 0, 0], offsets: [0, 640 * 480, 0, 0], size: 462848 });
    const yv12 = imageLayout(100, 50, fourcc('YV12'));
    expect(yv12).toEqual({ strides: [128, 64, 64, 0], offsets: [0, 6400, 8000, 0], size: 12288 });
  });

  it('refuses unknown formats and sizes out of range', () => {
    expect(imageLayout(64, 64, 0x12345678)).toMatch(/no linear layout/);
    expect(imageLayout(0, 64, fourcc('XR24'))).toMatch(/outside/);
    expect(imageLayout(MAX_IMAGE_DIM + 1, 1, fourcc('XR24'))).toMatch(/outside/);
    expect(imageLayout(MAX_IMAGE_DIM, MAX_IMAGE_DIM, fourcc('XR24'))).toMatchObject({ size: MAX_IMAGE_DIM * MAX_IMAGE_DIM * 4 });
  });

  it('keeps crosvm\'s struct sizes and capabilities', () => {
    expect([INIT.BYTES, REQS.BYTES, SEND_RECEIVE.BYTES, READ_WRITE.BYTES, MAX_RECEIVE_DATA]).toEqual([20, 64, 352, 24, 3744]);
    const v = new DataView(capabilities().buffer);
    expect([v.getUint32(CAPS.VERSION, true), v.getUint32(CAPS.SUPPORTED_CHANNELS, true), v.getUint32(CAPS.SUPPORTS_DMABUF, true)]).toEqual([1, 2, 0]);
  });
});
