/**
 * Worker-thread side of the bench's in-process helpers (compiled .js entry; see null-device.ts
 * and machine.ts for the main-thread side):
 *
 * - 'null-device': a virtio-gpu device that does no work. It maps the driver's guest RAM (the
 *   memfd), waits on the kick eventfds with uv_poll, answers every command OK at once (with
 *   EVENT_IDX and indirect tables, as the real back-ends negotiate), and for RESOURCE_FLUSH /
 *   UPDATE_CURSOR / MOVE_CURSOR / SET_SCANOUT writes an UPDATE / CURSOR_UPDATE / CURSOR_POS /
 *   SCANOUT of the right size to the display socket from a preallocated zero buffer. No pixel is
 *   copied or converted: what it costs is the driver, the display peer and the kernel.
 * - 'eventfd-echo': reads one eventfd and writes another, for the machine's thread round trip.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { native } from '../src/native.js';
import type { FdWatcher } from '../src/native.js';
import { DisplayMsg, GpuCmd, GpuResp, GPU_FLAG_FENCE } from '../test/frontend/constants.js';
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, fullFence } from '../test/frontend/vring.js';

export interface NullQueueInfo { size: number; descOff: number; availOff: number; usedOff: number; kickFd: number; callFd: number }

export interface NullDeviceData {
  role: 'null-device';
  memfd: number;
  ramSize: number;
  /** GPA of RAM offset 0 (one region). */
  gpaBase: number;
  queues: NullQueueInfo[];
  displayFd: number;
  displays: { width: number; height: number }[];
}

export interface EchoData { role: 'eventfd-echo'; ping: number; pong: number }

const addon = native();
const port = parentPort!;
const data = workerData as NullDeviceData | EchoData;
const watchers: FdWatcher[] = [];

function watch(fd: number, cb: () => void): void {
  const w = addon.watch(fd, (ev) => { if (ev >= 0) cb(); });
  if (typeof w === 'number') throw new Error(`watch fd ${fd}: errno ${-w}`);
  w.start(addon.READABLE);
  watchers.push(w);
}

if (data.role === 'eventfd-echo') {
  const { ping, pong } = data;
  watch(ping, () => { addon.eventfdRead(ping); addon.eventfdWrite(pong, 1); });
  port.on('message', () => { for (const w of watchers) w.close(); port.close(); });
  port.postMessage('ready');
} else {
  startNullDevice(data);
}

function startNullDevice(d: NullDeviceData): void {
  const map = addon.mmap(d.memfd, d.ramSize, 0);
  if (typeof map === 'number') throw new Error(`mmap guest RAM: errno ${-map}`);
  const ab = addon.view(map.addr, 0, d.ramSize);
  if (typeof ab === 'number') throw new Error(`view guest RAM: errno ${-ab}`);
  const dv = new DataView(ab);
  const ramSize = d.ramSize;
  const off = (gpa: number, len: number): number => {
    const o = gpa - d.gpaBase;
    if (o < 0 || o + len > ramSize) throw new RangeError(`GPA 0x${gpa.toString(16)}+${len} outside guest RAM`);
    return o;
  };

  // Display messages: header + fixed payload head + pixels from one zero buffer (grown on demand).
  const hdr = new Uint8Array(12);
  const hdv = new DataView(hdr.buffer);
  const head = new Uint8Array(20);
  const headDv = new DataView(head.buffer);
  let pixels = new Uint8Array(64 * 64 * 4);
  const parts3: Uint8Array[] = [hdr, head, pixels];
  const parts2: Uint8Array[] = [hdr, head];
  const send = (type: number, headLen: number, pixelBytes: number): void => {
    hdv.setUint32(0, type, true);
    hdv.setUint32(4, 0, true);
    hdv.setUint32(8, headLen + pixelBytes, true);
    let parts: Uint8Array[];
    if (pixelBytes > 0) {
      if (pixels.length < pixelBytes) pixels = new Uint8Array(pixelBytes);
      parts3[1] = head.subarray(0, headLen);
      parts3[2] = pixels.subarray(0, pixelBytes);
      parts = parts3;
    } else {
      parts2[1] = head.subarray(0, headLen);
      parts = parts2;
    }
    sendAll(d.displayFd, parts, 12 + headLen + pixelBytes);
  };

  const queues = d.queues.map((q) => ({ ...q, lastAvail: 0, used: 0 }));
  type Q = (typeof queues)[number];

  /** Walk one chain (direct or one indirect table), answer it; returns used.len. */
  const handle = (q: Q, headIdx: number): number => {
    let base = q.descOff, i = headIdx, limit = q.size;
    let reqOff = -1, reqLen = 0, respOff = -1, respLen = 0;
    for (let ttl = 0; ttl <= limit; ttl++) {
      if (i >= limit) throw new RangeError(`descriptor index ${i} out of range`);
      const at = base + 16 * i;
      const addr = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 0x1_0000_0000;
      const len = dv.getUint32(at + 8, true);
      const flags = dv.getUint16(at + 12, true);
      if (flags & VRING_DESC_F_INDIRECT) { base = off(addr, len); limit = len >>> 4; i = 0; continue; }
      if (flags & VRING_DESC_F_WRITE) { if (respOff < 0) { respOff = off(addr, len); respLen = len; } }
      else if (reqOff < 0) { reqOff = off(addr, len); reqLen = len; }
      if (!(flags & VRING_DESC_F_NEXT)) break;
      i = dv.getUint16(at + 14, true);
    }
    if (reqOff < 0 || reqLen < 24) return 0;
    const type = dv.getUint32(reqOff, true);
    const u32 = (o: number) => (o + 4 <= reqLen ? dv.getUint32(reqOff + o, true) : 0);
    let resp: number = GpuResp.OK_NODATA;
    let usedLen = 24;
    switch (type) {
      case GpuCmd.GET_DISPLAY_INFO:
        resp = GpuResp.OK_DISPLAY_INFO;
        if (respLen >= 408) {
          usedLen = 408;
          for (let o = 24; o < 408; o += 4) dv.setUint32(respOff + o, 0, true);
          d.displays.forEach((m, k) => {
            const o = respOff + 24 + 24 * k;
            dv.setUint32(o + 8, m.width, true);
            dv.setUint32(o + 12, m.height, true);
            dv.setUint32(o + 16, 1, true);
          });
        }
        break;
      case GpuCmd.SET_SCANOUT: {
        const rid = u32(44);
        headDv.setUint32(0, u32(40), true);
        headDv.setUint32(4, rid ? u32(32) : 0, true);
        headDv.setUint32(8, rid ? u32(36) : 0, true);
        send(DisplayMsg.SCANOUT, 12, 0);
        break;
      }
      case GpuCmd.RESOURCE_FLUSH: {
        const w = u32(32), h = u32(36);
        headDv.setUint32(0, 0, true);
        headDv.setUint32(4, u32(24), true);
        headDv.setUint32(8, u32(28), true);
        headDv.setUint32(12, w, true);
        headDv.setUint32(16, h, true);
        send(DisplayMsg.UPDATE, 20, w * h * 4);
        break;
      }
      case GpuCmd.UPDATE_CURSOR:
      case GpuCmd.MOVE_CURSOR: {
        headDv.setUint32(0, u32(24), true);
        headDv.setUint32(4, u32(28), true);
        headDv.setUint32(8, u32(32), true);
        if (type === GpuCmd.MOVE_CURSOR) send(DisplayMsg.CURSOR_POS, 12, 0);
        else if (u32(40) === 0) send(DisplayMsg.CURSOR_POS_HIDE, 12, 0);
        else {
          headDv.setUint32(12, u32(44), true);
          headDv.setUint32(16, u32(48), true);
          send(DisplayMsg.CURSOR_UPDATE, 20, 64 * 64 * 4);
        }
        break;
      }
      default:
        break; // everything else: OK_NODATA
    }
    if (respOff < 0 || respLen < 24) return 0;
    dv.setUint32(respOff, resp, true);
    dv.setUint32(respOff + 4, dv.getUint32(reqOff + 4, true) & GPU_FLAG_FENCE, true);
    dv.setUint32(respOff + 8, dv.getUint32(reqOff + 8, true), true);
    dv.setUint32(respOff + 12, dv.getUint32(reqOff + 12, true), true);
    dv.setUint32(respOff + 16, dv.getUint32(reqOff + 16, true), true);
    dv.setUint32(respOff + 20, 0, true);
    return usedLen;
  };

  const service = (q: Q): void => {
    addon.eventfdRead(q.kickFd); // clear first: a later kick re-arms readiness
    const oldUsed = q.used;
    const mask = q.size - 1;
    for (;;) {
      while (q.lastAvail !== dv.getUint16(q.availOff + 2, true)) {
        const headIdx = dv.getUint16(q.availOff + 4 + 2 * (q.lastAvail & mask), true);
        q.lastAvail = (q.lastAvail + 1) & 0xffff;
        let len = 0;
        try { len = handle(q, headIdx); } catch (e) { port.postMessage({ error: String(e) }); }
        const at = q.usedOff + 4 + 8 * (q.used & mask);
        dv.setUint32(at, headIdx, true);
        dv.setUint32(at + 4, len, true);
        q.used = (q.used + 1) & 0xffff;
        dv.setUint16(q.usedOff + 2, q.used, true); // x86: the element is visible before the index
      }
      dv.setUint16(q.usedOff + 4 + 8 * q.size, q.lastAvail, true); // avail_event: kick me for the next one
      fullFence();
      if (q.lastAvail === dv.getUint16(q.availOff + 2, true)) break;
    }
    fullFence();
    const usedEvent = dv.getUint16(q.availOff + 4 + 2 * q.size, true);
    if (((q.used - usedEvent - 1) & 0xffff) < ((q.used - oldUsed) & 0xffff)) addon.eventfdWrite(q.callFd, 1);
  };

  for (const q of queues) watch(q.kickFd, () => service(q));
  port.on('message', () => {
    for (const w of watchers) w.close();
    addon.close(d.displayFd);
    addon.unmap(map.addr);
    port.close();
  });
  port.postMessage('ready');
}

/** Blocking sendmsg of all parts (the display peer reads on the main thread's loop). */
function sendAll(fd: number, parts: Uint8Array[], total: number): void {
  let sent = addon.sendMsg(fd, parts, null);
  while (sent !== total) {
    if (sent < 0) {
      if (sent === -addon.EINTR || sent === -addon.EAGAIN) { sent = addon.sendMsg(fd, parts, null); continue; }
      throw new Error(`display sendmsg: errno ${-sent}`);
    }
    // Partial write: drop what went out and send the rest (rare; allocates).
    let skip = sent;
    const rest: Uint8Array[] = [];
    for (const p of parts) {
      if (skip >= p.length) { skip -= p.length; continue; }
      rest.push(skip > 0 ? p.subarray(skip) : p);
      skip = 0;
    }
    parts = rest;
    total -= sent;
    sent = addon.sendMsg(fd, parts, null);
  }
}
