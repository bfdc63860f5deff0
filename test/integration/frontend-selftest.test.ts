/**
 * Self-checks of the test frontend pieces the C reference cannot exercise here (no render node,
 * so no DMABUF_*): the display peer against a fake back-end end of the socketpair, fd
 * attribution on coalesced reads, guest RAM allocation and translation, EDID.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { native } from '../../src/native.js';
import {
  DisplayPeer, DisplayMsg, SocketChannel, GuestRam, makeEdid, edidValid, DISPLAY_FLAG_REPLY,
} from '../frontend/index.js';

const cleanups: (() => void)[] = [];
afterEach(() => { while (cleanups.length) cleanups.pop()!(); });

/** The display peer plus a channel on the back-end's end, recording the peer's replies. */
function displayPair(opts: ConstructorParameters<typeof DisplayPeer>[1] = {}) {
  const { peer, backendFd } = DisplayPeer.pair(opts);
  const replies: { request: number; flags: number; size: number; payload: Uint8Array }[] = [];
  let wake: (() => void) | null = null;
  const backend = new SocketChannel(backendFd, (request, flags, size, off) => {
    replies.push({ request, flags, size, payload: backend.bytes.slice(off, off + size) });
    wake?.();
  });
  const nextReply = async () => {
    while (replies.length === 0) await new Promise<void>((r) => { wake = r; });
    return replies.shift()!;
  };
  cleanups.push(() => { backend.close(); peer.close(); });
  return { peer, backend, nextReply };
}

function u32s(...v: number[]): Uint8Array {
  return new Uint8Array(new Uint32Array(v).buffer);
}

describe('DisplayPeer', () => {
  it('answers protocol features, display info and EDID; drops EDID for a bad scanout', async () => {
    const { peer, backend, nextReply } = displayPair({ displays: [{ width: 640, height: 480 }] });
    backend.sendMessage(DisplayMsg.GET_PROTOCOL_FEATURES, 0, null);
    const pf = await nextReply();
    expect(pf).toMatchObject({ request: DisplayMsg.GET_PROTOCOL_FEATURES, flags: DISPLAY_FLAG_REPLY, size: 8 });
    backend.sendMessage(DisplayMsg.GET_EDID, 0, u32s(3)); // no reply, like QEMU
    backend.sendMessage(DisplayMsg.GET_DISPLAY_INFO, 0, null);
    const info = await nextReply();
    expect(info.request).toBe(DisplayMsg.GET_DISPLAY_INFO);
    expect(new Uint32Array(info.payload.buffer, 24, 6)).toEqual(new Uint32Array([0, 0, 640, 480, 1, 0]));
    backend.sendMessage(DisplayMsg.GET_EDID, 0, u32s(0));
    const edid = await nextReply();
    expect(edid.size).toBe(1056);
    expect(edidValid(edid.payload.subarray(32, 160))).toBe(true);
    expect(peer.edidDropped).toBe(1);
  });

  it('composites UPDATEs into the surface, clipped to it', async () => {
    const { peer, backend } = displayPair();
    backend.sendMessage(DisplayMsg.SCANOUT, 0, u32s(0, 4, 3));
    const px = new Uint32Array(3 * 2).map((_, i) => 0xff000000 + i);
    backend.sendMessage(DisplayMsg.UPDATE, 0, [u32s(0, 2, 1, 3, 2), new Uint8Array(px.buffer)]);
    await peer.waitFor(DisplayMsg.UPDATE);
    expect(peer.pixel(0, 2, 1)).toBe(0xff000000);
    expect(peer.pixel(0, 3, 1)).toBe(0xff000001); // the third column falls outside the 4-wide surface
    expect(peer.pixel(0, 2, 2)).toBe(0xff000003);
    expect(peer.pixel(0, 1, 1)).toBe(0);
    backend.sendMessage(DisplayMsg.SCANOUT, 0, u32s(0, 0, 0));
    await peer.waitFor(DisplayMsg.SCANOUT, (e) => e.width === 0);
    expect(peer.surface(0)).toBeNull();
  });

  it('keeps DMABUF_SCANOUT fds with their message and answers DMABUF_UPDATE (held until released)', async () => {
    const { peer, backend, nextReply } = displayPair({ holdDmabufUpdates: true });
    const memfd = native().memfdCreate('dmabuf', 256 * 64);
    // Coalesced in one read: a message without fd, then one with; the fd must go to the second.
    backend.sendMessage(DisplayMsg.DMABUF_SCANOUT, 0, new Uint8Array(40));
    backend.sendMessage(DisplayMsg.DMABUF_SCANOUT2, 0, [u32s(1, 0, 0, 64, 64, 64, 64, 256, 1, 0x34325258), new Uint8Array(8)], [memfd]);
    native().close(memfd);
    const first = await peer.waitFor(DisplayMsg.DMABUF_SCANOUT);
    const second = await peer.waitFor(DisplayMsg.DMABUF_SCANOUT2);
    expect(first.fd).toBeUndefined();
    expect(second).toMatchObject({ scanoutId: 1, fdStride: 256, fdFlags: 1, fourcc: 0x34325258, modifier: 0n });
    expect(native().fdSize(second.fd!)).toBe(256 * 64);
    expect(peer.dmabufFd(1)).toBe(second.fd);
    expect(peer.readDmabuf(1)?.length).toBe(256 * 64);
    backend.sendMessage(DisplayMsg.DMABUF_UPDATE, 0, u32s(1, 0, 0, 64, 64));
    await peer.waitFor(DisplayMsg.DMABUF_UPDATE);
    expect(peer.pendingDmabufUpdates).toBe(1);
    peer.releaseDmabufUpdates();
    expect(await nextReply()).toMatchObject({ request: DisplayMsg.DMABUF_UPDATE, flags: DISPLAY_FLAG_REPLY, size: 0 });
  });

  it('reassembles a message larger than the read buffer', async () => {
    const { peer, backend } = displayPair();
    const w = 300, h = 300; // 360 KB of pixels
    backend.sendMessage(DisplayMsg.SCANOUT, 0, u32s(0, w, h));
    const px = new Uint32Array(w * h).map((_, i) => i);
    backend.sendMessage(DisplayMsg.UPDATE, 0, [u32s(0, 0, 0, w, h), new Uint8Array(px.buffer)]);
    await peer.waitFor(DisplayMsg.UPDATE);
    expect(Buffer.compare(peer.surface(0)!.data, new Uint8Array(px.buffer))).toBe(0);
    expect(peer.updateBytes).toBe(w * h * 4);
  });
});

describe('GuestRam', () => {
  it('translates GPAs and fake QEMU addresses per region, honouring mmap_offset', () => {
    const ram = new GuestRam({ size: 8 << 20, splitAt: 4 << 20 });
    cleanups.push(() => ram.close());
    const [r0, r1] = ram.regions;
    expect(r0!.gpa).toBe(0x1_0000_0000);
    expect(r1!.gpa).toBe(r0!.gpa + (4 << 20));
    expect(r1!.fdOffset).toBe(4 << 20);
    expect(r1!.userAddr - r0!.userAddr).not.toBe(4 << 20); // not contiguous in QEMU's address space
    expect(ram.userAddrOf(r1!.gpa + 16)).toBe(r1!.userAddr + 16);
    expect(ram.ramOffset(0x1000)).toBe(-1);
  });

  it('allocates aligned, frees and coalesces, never across regions unless asked', () => {
    const ram = new GuestRam({ size: 1 << 20, splitAt: 512 << 10 });
    cleanups.push(() => ram.close());
    const total = ram.freeBytes();
    const a = ram.alloc(100, 64);
    const b = ram.alloc(512 << 10, 4096); // does not fit region 0 any more: goes to region 1
    expect(a % 64).toBe(0);
    expect(b).toBe(ram.regionStart(1));
    ram.free(a); ram.free(b);
    expect(ram.freeBytes()).toBe(total);
    const s = ram.allocStraddling(8192);
    expect(s.entries[0]!.gpa).toBe(ram.regionStart(1) - 4096);
    s.write(4000, new Uint8Array(200).fill(7));
    expect(s.read(4090, 10)).toEqual(new Uint8Array(10).fill(7));
    s.free();
    expect(ram.freeBytes()).toBe(total);
  });

  it('scatters a buffer in reverse order with holes', () => {
    const ram = new GuestRam({ size: 1 << 20 });
    cleanups.push(() => ram.close());
    const buf = ram.allocScattered(10_000, 4096);
    expect(buf.entries.map((e) => e.len)).toEqual([4096, 4096, 1808]);
    expect(buf.entries[0]!.gpa - buf.entries[1]!.gpa).toBe(8192);
    const data = new Uint8Array(10_000).map((_, i) => i * 31);
    buf.write(0, data);
    expect(buf.read(0, 10_000)).toEqual(data);
    buf.free();
  });
});

it('makeEdid produces a valid base block with the preferred mode', () => {
  const e = makeEdid(1920, 1080);
  expect(edidValid(e)).toBe(true);
  expect(e[56]! | ((e[58]! >> 4) << 8)).toBe(1920);
  expect(e[59]! | ((e[61]! >> 4) << 8)).toBe(1080);
});
