/** A minimal valid EDID 1.4 base block (128 bytes) whose preferred mode is width x height @ 60 Hz. */

const HBLANK = 160, HSYNC_OFF = 48, HSYNC_W = 32;
const VBLANK = 30, VSYNC_OFF = 3, VSYNC_W = 5;

export function makeEdid(width: number, height: number, name = 'vhost-gpu-test'): Uint8Array {
  const e = new Uint8Array(128);
  e.set([0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00], 0);
  const mfg = (('T'.charCodeAt(0) - 64) << 10) | (('S'.charCodeAt(0) - 64) << 5) | ('T'.charCodeAt(0) - 64);
  e[8] = mfg >> 8; e[9] = mfg & 0xff;              // manufacturer id, big-endian
  e[10] = 0x34; e[11] = 0x12;                      // product code
  e[12] = 1;                                       // serial
  e[16] = 1; e[17] = 2024 - 1990;                  // week, year
  e[18] = 1; e[19] = 4;                            // EDID 1.4
  e[20] = 0xa0;                                    // digital input, 8 bits per colour
  e[21] = 32; e[22] = 24;                          // screen size in cm
  e[23] = 120;                                     // gamma 2.2
  e[24] = 0x06;                                    // sRGB, preferred timing is native
  e.set([0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54], 25); // sRGB chromaticity
  for (let i = 38; i < 54; i++) e[i] = 0x01;       // no standard timings
  detailedTiming(e, 54, width, height);
  textDescriptor(e, 72, 0xfc, name);               // monitor name
  e.set([0, 0, 0, 0xfd, 0, 50, 75, 30, 160, 66, 0x01, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20], 90); // range limits
  e.set([0, 0, 0, 0x10, 0], 108);                  // dummy descriptor
  e[126] = 0;                                      // no extension blocks
  let sum = 0;
  for (let i = 0; i < 127; i++) sum += e[i]!;
  e[127] = (256 - (sum & 0xff)) & 0xff;
  return e;
}

function detailedTiming(e: Uint8Array, o: number, w: number, h: number): void {
  const hw = Math.min(w, 4095), vh = Math.min(h, 4095);
  const clock = Math.min(0xffff, Math.round(((hw + HBLANK) * (vh + VBLANK) * 60) / 10000));
  e[o] = clock & 0xff; e[o + 1] = clock >> 8;
  e[o + 2] = hw & 0xff; e[o + 3] = HBLANK & 0xff; e[o + 4] = ((hw >> 8) << 4) | (HBLANK >> 8);
  e[o + 5] = vh & 0xff; e[o + 6] = VBLANK & 0xff; e[o + 7] = ((vh >> 8) << 4) | (VBLANK >> 8);
  e[o + 8] = HSYNC_OFF; e[o + 9] = HSYNC_W; e[o + 10] = (VSYNC_OFF << 4) | VSYNC_W; e[o + 11] = 0;
  const mmW = 320, mmH = 240;
  e[o + 12] = mmW & 0xff; e[o + 13] = mmH & 0xff; e[o + 14] = ((mmW >> 8) << 4) | (mmH >> 8);
  e[o + 15] = 0; e[o + 16] = 0; e[o + 17] = 0x1e; // digital separate sync, both polarities positive
}

function textDescriptor(e: Uint8Array, o: number, tag: number, text: string): void {
  e.set([0, 0, 0, tag, 0], o);
  const s = text.slice(0, 13);
  for (let i = 0; i < 13; i++) e[o + 5 + i] = i < s.length ? s.charCodeAt(i) : i === s.length ? 0x0a : 0x20;
}

/** True if the block has the EDID header and a zero checksum. */
export function edidValid(e: Uint8Array): boolean {
  if (e.length < 128) return false;
  const hdr = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
  if (!hdr.every((b, i) => e[i] === b)) return false;
  let sum = 0;
  for (let i = 0; i < 128; i++) sum += e[i]!;
  return (sum & 0xff) === 0;
}
