/**
 * The render server's view of the coordinator's memory. The coordinator shares each mapping that
 * backings may point into (guest memory regions) by sending its fd over the memory socket and a
 * SHARE_MEMORY message with the mapping's address in the coordinator; backing segments arrive as
 * coordinator addresses and are translated here. A segment outside every share is refused, so
 * virglrenderer never gets a pointer the coordinator did not hand over.
 *
 * A share stays mapped while a resource's backing uses it, even after UNSHARE_MEMORY (the
 * coordinator re-attaches backings after a memory table change, in its own order), so the
 * library never holds a pointer into unmapped memory.
 */
import { native, type MapHandle, type NativeAddon } from '../../native.js';

const EINVAL = -22, EBADF = -9, EEXIST = -17, ENOENT = -2;
/** Shares alive at once (vhost-user allows 509 memory slots). */
export const MAX_SHARES = 1024;

interface Share {
  readonly id: number;
  /** [from, from+len) in the coordinator's address space. */
  readonly from: number;
  readonly len: number;
  readonly map: MapHandle;
  readonly to: number;
  /** Resources whose backing points into it, and whether UNSHARE_MEMORY was seen. */
  users: number;
  retired: boolean;
}

export class ServerMemory {
  private readonly n: NativeAddon = native();
  private readonly shares = new Map<number, Share>();
  /** Resource -> shares its backing uses. */
  private readonly pins = new Map<number, Share[]>();
  private readonly fdsIn = new Int32Array(2);
  private readonly byte = new Uint8Array(1);
  private last: Share | null = null;

  constructor(private readonly socket: number) {}

  /** SHARE_MEMORY: take the next fd from the socket and map it as the coordinator did. 0 or -errno. */
  share(id: number, from: number, len: number): number {
    const fd = this.receiveFd();
    if (fd < 0) return fd;
    try {
      if (this.shares.has(id)) return EEXIST; // ids are never reused
      if (this.shares.size >= MAX_SHARES) return EINVAL;
      if (!Number.isSafeInteger(from) || !Number.isSafeInteger(len) || from <= 0 || len <= 0) return EINVAL;
      const size = this.n.fdSize(fd);
      if (size < 0) return size;
      if (size > 0 && size < len) return EINVAL; // touching past the file's end would SIGBUS
      const map = this.n.mmap(fd, len, 0);
      if (typeof map === 'number') return map;
      this.shares.set(id, { id, from, len, map, to: Number(map.addr), users: 0, retired: false });
      return 0;
    } finally {
      this.n.close(fd);
    }
  }

  /** UNSHARE_MEMORY: unmapped now, or once the last backing using it is gone. */
  unshare(id: number): number {
    const s = this.shares.get(id);
    if (!s || s.retired) return ENOENT;
    s.retired = true;
    this.release(s);
    return 0;
  }

  /**
   * The iovec list for virglrenderer of [addr, len] pairs in coordinator addresses (this process's
   * addresses of the same bytes), and the shares it uses. null if a segment is outside every live
   * share.
   */
  translate(segs: readonly number[]): { iov: BigUint64Array; used: Share[] } | null {
    const iov = new BigUint64Array(segs.length);
    const used: Share[] = [];
    for (let i = 0; i < segs.length; i += 2) {
      const addr = segs[i], len = segs[i + 1];
      if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) return null;
      const s = this.find(addr, len);
      if (!s) return null;
      if (!used.includes(s)) used.push(s);
      iov[i] = BigInt(s.to + (addr - s.from));
      iov[i + 1] = BigInt(len);
    }
    return { iov, used };
  }

  /** Resource res now holds a backing in `used` (after a successful attach). */
  pin(res: number, used: Share[]): void {
    this.unpin(res);
    for (const s of used) s.users++;
    this.pins.set(res, used);
  }

  /** Resource res's backing is gone (detach, unref). */
  unpin(res: number): void {
    const used = this.pins.get(res);
    if (!used) return;
    this.pins.delete(res);
    for (const s of used) {
      s.users--;
      this.release(s);
    }
  }

  private find(addr: number, len: number): Share | null {
    const inside = (s: Share) => !s.retired && addr >= s.from && addr + len <= s.from + s.len;
    if (this.last && inside(this.last)) return this.last;
    for (const s of this.shares.values()) {
      if (inside(s)) return (this.last = s);
    }
    return null;
  }

  private release(s: Share): void {
    if (!s.retired || s.users > 0) return;
    this.n.unmap(s.map.addr);
    if (this.shares.get(s.id) === s) this.shares.delete(s.id);
    if (this.last === s) this.last = null;
  }

  private receiveFd(): number {
    const got = this.n.recvMsg(this.socket, this.byte, 0, 1, this.fdsIn);
    if (got < 0) return got;
    if (got === 0 || this.fdsIn[0] !== 1) return EBADF; // the coordinator sends exactly one fd per share
    return this.fdsIn[1];
  }
}
