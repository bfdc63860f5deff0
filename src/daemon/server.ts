/**
 * Where sessions come from: a listening socket that serves one front-end at a time and keeps
 * serving after each disconnect (--socket-path), or one inherited connected socket (--fd).
 */
import { unlinkSync } from 'node:fs';
import { native, check, watchFd, type FdWatcher } from '../native.js';
import { log } from '../log.js';
import { Session } from '../transport/session.js';
import type { VhostUserBackend } from '../transport/backend.js';

export interface Server {
  close(): void;
}

/** Listen on path; each accepted connection gets a fresh backend (all device state dropped). */
export function listen(path: string, makeBackend: () => VhostUserBackend): Server {
  const n = native();
  const listenFd = check(`listen on ${path}`, n.listenUnix(path, 4));
  let session: Session | null = null;
  let closed = false;
  const watcher: FdWatcher = watchFd('watch the listening socket', listenFd, () => acceptNext());

  function acceptNext(): void {
    if (session || closed) return;
    const fd = n.acceptUnix(listenFd);
    if (fd === -n.EAGAIN) return;
    if (fd < 0) {
      log.warn(`accept failed: ${fd}`);
      return;
    }
    log.info('vhost-user: front-end connected');
    // Other front-ends wait in the backlog until this one is gone.
    watcher.stop();
    session = new Session(fd, makeBackend(), () => {
      session = null;
      if (!closed) {
        watcher.start(n.READABLE);
        setImmediate(acceptNext);
      }
    });
  }

  watcher.start(n.READABLE);
  log.info(`listening on ${path}`);
  return {
    close(): void {
      if (closed) return;
      closed = true;
      session?.close('daemon stopping');
      watcher.close();
      n.close(listenFd);
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}

/** Serve the connected socket fd; onEnd runs when the front-end disconnects. */
export function serveFd(fd: number, makeBackend: () => VhostUserBackend, onEnd: () => void): Server {
  const session = new Session(fd, makeBackend(), onEnd);
  return { close: () => session.close('daemon stopping') };
}
