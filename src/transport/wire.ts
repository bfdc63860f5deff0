/**
 * Writing vhost-user messages: the 12-byte header framing and a blocking-with-deadline send, shared
 * by the front-end session's replies and the back-end request channel.
 */
import { native } from '../native.js';
import { HDR_SIZE } from './messages.js';

/** Header (request, flags, size) followed by body. */
export function frame(request: number, flags: number, body: Uint8Array): Uint8Array {
  const msg = new Uint8Array(HDR_SIZE + body.length);
  const v = new DataView(msg.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, body.length, true);
  msg.set(body, HDR_SIZE);
  return msg;
}

/**
 * Send all of msg on a non-blocking socket, fds (which stay the caller's) with the first byte.
 * Messages are small, so a full socket means the peer stopped reading: wait up to a second for
 * room, then give up. Returns null when sent, else why not.
 */
export function sendAll(fd: number, msg: Uint8Array, fds: readonly number[] | null): string | null {
  const n = native();
  let sent = 0;
  while (sent < msg.length) {
    const r = n.sendMsg(fd, [msg.subarray(sent)], sent === 0 && fds?.length ? fds : null);
    if (r === -n.EAGAIN) {
      if (n.pollFd(fd, n.POLLOUT, 1000) <= 0) return 'the peer does not read';
      continue;
    }
    if (r < 0) return `send failed (${r})`;
    sent += r;
  }
  return null;
}
