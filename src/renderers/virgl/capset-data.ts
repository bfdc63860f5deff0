/**
 * What the virgl capsets tell a guest, adjusted to what this device can do with it. Offsets are
 * those of struct virgl_caps_v2 (virgl_hw.h): 4 + 4 x 64 bytes of format masks, the v1 scalars,
 * then the v2 floats and limits up to capability_bits.
 */
const VIRGL2_CAPSET = 2;
const CAPABILITY_BITS = 392;
const VIRGL_CAP_ARB_BUFFER_STORAGE = 0x8000_0000;

/**
 * The capset as sent when the guest has a host-visible region: Mesa then makes persistent and
 * coherent GL buffers as HOST3D blobs of the virgl context and maps them, which needs
 * virglrenderer's blob export (not in the render server). Without ARB_buffer_storage in the
 * capset, Mesa keeps every buffer a classic resource and never asks for such a blob.
 */
export function withoutHostBlobUse(capsetId: number, data: Uint8Array): Uint8Array {
  if (capsetId !== VIRGL2_CAPSET || data.length < CAPABILITY_BITS + 4) return data;
  const out = data.slice();
  const v = new DataView(out.buffer);
  v.setUint32(CAPABILITY_BITS, (v.getUint32(CAPABILITY_BITS, true) & ~VIRGL_CAP_ARB_BUFFER_STORAGE) >>> 0, true);
  return out;
}
