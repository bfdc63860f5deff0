/**
 * virglrenderer for the daemon's lifetime: one render server (VirglComponent) at a time, and a
 * new one when it dies, so a library crash on a hostile stream costs the 3D state of that moment
 * (devices re-create their resources and contexts on the new server: virgl/device.ts), never the
 * daemon. Restarts are rate-limited, so a guest that crashes the library in a loop gets its 3D
 * commands refused meanwhile, not a fork loop.
 */
import { errorMessage, log } from '../../log.js';
import { VirglComponent, type VirglCapset, type VirglStartOptions } from './component.js';

/** The components' options; a loss is the service's to handle (the component logs it). */
export type VirglServiceOptions = Omit<VirglStartOptions, 'onLost'>;

/** At most this many restarts per RESTART_WINDOW_MS; the next waits for the window to pass. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

export class VirglService {
  private restarts: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** How many servers died so far. */
  losses = 0;

  private constructor(
    private readonly opts: VirglServiceOptions,
    private server: VirglComponent,
  ) {}

  /** Start the first server; throws one clear message if virglrenderer cannot start. */
  static async start(opts: VirglServiceOptions): Promise<VirglService> {
    let service: VirglService | null = null;
    const first = await VirglComponent.start({ ...opts, onLost: () => service?.lost(first) });
    service = new VirglService(opts, first);
    return service;
  }

  /** The server to use now (lost while a restart is pending: its calls are then no-ops that fail). */
  get current(): VirglComponent {
    return this.server;
  }

  /** What the first server serves; a restarted one runs the same library with the same options. */
  capsets(): readonly VirglCapset[] {
    return this.server.capsets();
  }

  /** Shut the current server down; no restart after this. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.server.close();
  }

  private lost(server: VirglComponent): void {
    if (server !== this.server || this.closed) return;
    this.losses++;
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    const wait = this.restarts.length < MAX_RESTARTS ? 0 : this.restarts[0] + RESTART_WINDOW_MS - now;
    if (wait > 0) log.error(`virgl render server: ${MAX_RESTARTS} restarts within ${RESTART_WINDOW_MS / 1000} s; the next in ${Math.ceil(wait / 1000)} s, 3D commands fail until then`);
    this.timer = setTimeout(() => void this.restart(), wait);
  }

  private async restart(): Promise<void> {
    this.timer = null;
    if (this.closed) return;
    this.restarts.push(Date.now());
    let next: VirglComponent;
    try {
      next = await VirglComponent.start({ ...this.opts, onLost: () => this.lost(next) });
    } catch (e) {
      log.error(`virgl render server: restart failed: ${errorMessage(e)}`);
      this.scheduleRestart();
      return;
    }
    if (this.closed) {
      await next.close();
      return;
    }
    this.server = next;
    log.info(`virgl render server restarted (pid ${next.pid}); the 3D state before the crash is gone`);
  }
}
