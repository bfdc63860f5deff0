/**
 * Test frontend: plays QEMU (vhost-user front-end + display socket peer) and the guest's
 * virtio-gpu driver against any vhost-user-gpu back-end over a real unix socket.
 *
 *   const backend = await startBackend(['/usr/lib/qemu/vhost-user-gpu', '--socket-path={socket}'], sock);
 *   const s = await connectFrontend(backend);
 *   await s.driver.getDisplayInfo();
 *   s.close(); await backend.stop();
 */
import { native, check } from '../../src/native.js';
import { GuestRam } from './guest-memory.js';
import type { GuestRamOptions } from './guest-memory.js';
import { DriverQueue } from './virtqueue.js';
import { VhostUserFrontend } from './vhost-user.js';
import type { StartOptions, StartResult } from './vhost-user.js';
import { DisplayPeer } from './display.js';
import type { DisplayPeerOptions } from './display.js';
import { GpuDriver } from './gpu-driver.js';
import type { SubmitterOptions } from './gpu-submit.js';
import { BackendProcess } from './backend-process.js';

export * from './constants.js';
export * from './guest-memory.js';
export * from './virtqueue.js';
export * from './vhost-user.js';
export * from './display.js';
export * from './edid.js';
export * from './event-log.js';
export * from './gpu-protocol.js';
export * from './gpu-submit.js';
export * from './gpu-batch.js';
export * from './gpu-driver-2d.js';
export * from './gpu-driver.js';
export * from './gpu-blob.js';
export * from './backend-process.js';
export * from './connection-cycles.js';
export * from './shared-memory.js';
export { SocketChannel } from './socket-channel.js';

export interface ConnectOptions extends Omit<StartOptions, 'ram' | 'queues' | 'displayFd'> {
  /** A RAM to use (not closed by the session) or options for a new one. */
  ram?: GuestRam | GuestRamOptions;
  /** Control queue size. Default 256. */
  controlSize?: number;
  /** Cursor queue size. Default 16. */
  cursorSize?: number;
  display?: DisplayPeerOptions;
  driver?: SubmitterOptions;
  /** Run VhostUserFrontend.start(). Default true; with false, call session.start() yourself. */
  start?: boolean;
  /** vhost-user reply timeout. Default 5000 ms. */
  timeoutMs?: number;
}

export interface FrontendSession {
  frontend: VhostUserFrontend;
  display: DisplayPeer;
  control: DriverQueue;
  cursor: DriverQueue;
  ram: GuestRam;
  driver: GpuDriver;
  /** Result of start(), or null until it ran. */
  started: StartResult | null;
  /** Run the bring-up (once) with these options merged over the connect options. */
  start(extra?: Partial<StartOptions>): Promise<StartResult>;
  /** GET_VRING_BASE on both rings (stops them), then close(). */
  stop(): Promise<number[]>;
  /** Close sockets, eventfds and (if created here) the RAM. Idempotent. */
  close(): void;
}

/** Connect to a back-end (a socket path, or a BackendProcess whose probe connection is reused) and bring it up. */
export async function connectFrontend(target: string | BackendProcess, opts: ConnectOptions = {}): Promise<FrontendSession> {
  let fd: number | null = typeof target === 'string' ? null : target.takeConnection();
  if (fd === null) {
    const path = typeof target === 'string' ? target : target.socketPath;
    fd = check(`connect ${path}`, native().connectUnix(path));
  }
  const frontend = new VhostUserFrontend(fd);
  frontend.timeoutMs = opts.timeoutMs ?? 5000;
  const ownRam = !(opts.ram instanceof GuestRam);
  const ram = opts.ram instanceof GuestRam ? opts.ram : new GuestRam(opts.ram);
  const control = new DriverQueue(ram, 0, opts.controlSize ?? 256);
  const cursor = new DriverQueue(ram, 1, opts.cursorSize ?? 16);
  const { peer: display, backendFd } = DisplayPeer.pair(opts.display);
  const driver = new GpuDriver(ram, control, cursor, opts.driver);
  let closed = false;
  let displayFd: number | null = backendFd;

  const session: FrontendSession = {
    frontend, display, control, cursor, ram, driver, started: null,
    async start(extra) {
      if (session.started) return session.started;
      const fdToSend = displayFd;
      displayFd = null; // start() closes it after GPU_SET_SOCKET
      session.started = await frontend.start({ ...opts, ...extra, ram, queues: [control, cursor], displayFd: fdToSend });
      return session.started;
    },
    async stop() {
      const bases = await frontend.stop([control, cursor]);
      session.close();
      return bases;
    },
    close() {
      if (closed) return;
      closed = true;
      driver.closeSubmitter();
      frontend.close();
      display.close();
      control.close();
      cursor.close();
      if (displayFd !== null) native().close(displayFd);
      if (ownRam) ram.close();
    },
  };
  if (opts.start ?? true) {
    try {
      await session.start();
    } catch (e) {
      session.close();
      throw e;
    }
  }
  return session;
}
