/**
 * The memory the coordinator and the virgl render server (a child process) share: one memfd with
 * the control block, the command ring, the completion ring and the readback buffer, each on its
 * own pages. The coordinator creates it; the server maps the fd it inherits. Both see the same
 * bytes, so SabRing and the control flags' Atomics work across the two processes (Atomics.wait
 * would not, and is not used across them: the doorbells are eventfds).
 */
import { NativeError, native, type MapHandle } from '../../native.js';
import { DATA_OFFSET } from '../sab-ring.js';
import * as P from './protocol.js';

const PAGE = 4096;

export interface ChannelSizes {
  /** Ring data bytes, powers of two. */
  readonly commandRingBytes: number;
  readonly completionRingBytes: number;
  readonly readbackBytes: number;
}

export class Channel {
  readonly control: ArrayBuffer;
  readonly commandRing: ArrayBuffer;
  readonly completionRing: ArrayBuffer;
  readonly readback: ArrayBuffer;

  private constructor(readonly fd: number, private readonly map: MapHandle, sizes: ChannelSizes) {
    const n = native();
    let at = 0;
    const take = (len: number): ArrayBuffer => {
      const ab = n.view(map.addr, at, len);
      if (typeof ab === 'number') throw new NativeError('view of the virgl channel', ab);
      at += pageAlign(len);
      return ab;
    };
    this.control = take(4 * P.CTL.WORDS);
    this.commandRing = take(DATA_OFFSET + sizes.commandRingBytes);
    this.completionRing = take(DATA_OFFSET + sizes.completionRingBytes);
    this.readback = take(sizes.readbackBytes);
  }

  /** A new zeroed channel (the rings format themselves on first use): the coordinator's side. */
  static create(sizes: ChannelSizes): Channel {
    const n = native();
    const fd = n.memfdCreate('vhost-gpu-virgl-channel', totalBytes(sizes));
    if (fd < 0) throw new NativeError('memfd_create (virgl channel)', fd);
    return Channel.map(fd, sizes);
  }

  /** Map the channel in `fd` (the render server's side; the fd then belongs to the channel). */
  static map(fd: number, sizes: ChannelSizes): Channel {
    const n = native();
    const size = totalBytes(sizes);
    const have = n.fdSize(fd);
    const m = have === size ? n.mmap(fd, size, 0) : have < 0 ? have : -22;
    if (typeof m === 'number') {
      n.close(fd);
      throw new NativeError(`mmap of the virgl channel (${have} bytes, ${size} expected)`, m);
    }
    return new Channel(fd, m, sizes);
  }

  /** Unmap (views already handed out keep their pages until collected) and close the fd. */
  close(): void {
    native().unmap(this.map.addr);
    native().close(this.fd);
  }
}

function pageAlign(n: number): number {
  return Math.ceil(n / PAGE) * PAGE;
}

function totalBytes(s: ChannelSizes): number {
  return pageAlign(4 * P.CTL.WORDS) + pageAlign(DATA_OFFSET + s.commandRingBytes)
    + pageAlign(DATA_OFFSET + s.completionRingBytes) + pageAlign(s.readbackBytes);
}
