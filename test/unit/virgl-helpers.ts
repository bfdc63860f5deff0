import { native, type MapHandle } from '../../src/native.js';
import type { VirglComponent } from '../../src/renderers/virgl/component.js';

// Tiny virgl command-stream encoder for tests (virglrenderer src/virgl_protocol.h): a command
// header is cmd | object type << 8 | payload dwords << 16.
export const CCMD = { NOP: 0, CREATE_OBJECT: 1, SET_FRAMEBUFFER_STATE: 5, CLEAR: 7 } as const;
const OBJ_SURFACE = 8;
const PIPE_CLEAR_COLOR0 = 1 << 2;

export const hdr = (cmd: number, obj: number, len: number) => (cmd | (obj << 8) | (len << 16)) >>> 0;
const f32 = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];
export const bytesOf = (words: readonly number[]) => new Uint8Array(Uint32Array.from(words).buffer);

/** Surface `surface` on `res` (level 0, layer 0), bound as the only colour buffer, cleared to rgba. */
export function clearCmds(surface: number, res: number, format: number, [r, g, b, a]: readonly number[]): Uint8Array {
  return bytesOf([
    hdr(CCMD.CREATE_OBJECT, OBJ_SURFACE, 5), surface, res, format, 0, 0,
    hdr(CCMD.SET_FRAMEBUFFER_STATE, 0, 3), 1, 0, surface, // nr_cbufs, zsurf, cbuf0
    hdr(CCMD.CLEAR, 0, 8), PIPE_CLEAR_COLOR0, f32(r), f32(g), f32(b), f32(a), 0, 0, 0, // depth f64, stencil
  ]);
}

// Resources: PIPE_TEXTURE_2D, bind RENDER_TARGET | SAMPLER_VIEW.
export const TEXTURE_2D = 2, BIND_RT_SAMPLER = (1 << 1) | (1 << 3), Y_0_TOP = 1, B8G8R8A8 = 1;
export const tex2d = (id: number, w: number, h: number, flags = Y_0_TOP, format = B8G8R8A8) =>
  [id, TEXTURE_2D, format, BIND_RT_SAMPLER, w, h, 1, 1, 0, 0, flags];

/** tex2d as the test driver's RESOURCE_CREATE_3D arguments. */
export const tex2dCreate = (id: number, w: number, h: number, flags = Y_0_TOP) => {
  const [resourceId, target, format, bind, width, height, depth, arraySize, lastLevel, nrSamples, fl] = tex2d(id, w, h, flags);
  return { resourceId, target, format, bind, width, height, depth, arraySize, lastLevel, nrSamples, flags: fl };
};

/** Bytes of an opaque B8G8R8A8 pixel in memory order (B, G, R, A), from 0..1 components. */
export const BGRA = (r: number, g: number, b: number) => [Math.round(b * 255), Math.round(g * 255), Math.round(r * 255), 255];

let nextSurface = 1;
/** clearCmds with a fresh surface handle each time. */
export const clear = (res: number, rgba: readonly number[]) => clearCmds(nextSurface++, res, B8G8R8A8, rgba);

/** An addon memfd mapping and a view over it (a stand-in for guest memory), shared with c's render server. */
export function backing(c: VirglComponent, size: number): { m: MapHandle; bytes: Uint8Array } {
  const n = native();
  const fd = n.memfdCreate('virgl-test', size);
  const m = n.mmap(fd, size, 0);
  if (typeof m === 'number') throw new Error(`mmap: ${m}`);
  const shared = c.shareMemory(fd, Number(m.addr), size);
  n.close(fd);
  if (!shared) throw new Error('shareMemory failed');
  const ab = n.view(m.addr, 0, size);
  if (typeof ab === 'number') throw new Error(`view: ${ab}`);
  return { m, bytes: new Uint8Array(ab) };
}
