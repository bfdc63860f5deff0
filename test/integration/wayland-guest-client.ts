// A raw Wayland client running over a cross-domain context (the guest proxy's job): requests go
// out as SEND, events come back as RECEIVE, one POLL each.
import { Args, EventStream, WL, concat, message, type Arg, type WireEvent } from './wayland-wire.js';
import type { ChannelEvent, Identifier } from './cross-domain-guest.js';

/** What the client needs of a cross-domain context: SEND, and POLL for the next channel event. */
export interface CrossDomainChannel {
  send(data: Uint8Array, ids?: Identifier[]): void;
  poll(): Promise<ChannelEvent>;
}

export interface Global {
  readonly name: number;
  readonly iface: string;
  readonly version: number;
}

export class WaylandGuestClient {
  private readonly stream = new EventStream();
  private readonly pending: WireEvent[] = [];
  private nextId = 2;
  /** Identifiers that came with RECEIVEs (keymaps, pipes...), in order. */
  readonly received: Identifier[] = [];

  constructor(readonly guest: CrossDomainChannel) {}

  newId(): number {
    return this.nextId++;
  }

  request(obj: number, opcode: number, args: Arg[] = [], ids: Identifier[] = []): void {
    this.guest.send(message(obj, opcode, args), ids);
  }

  /** The next event from the compositor (a wl_display.error throws). */
  async next(): Promise<WireEvent> {
    while (this.pending.length === 0) {
      const e = await this.guest.poll();
      if (e.cmd !== 'receive') throw new Error(`unexpected ${e.cmd} on the channel`);
      this.received.push(...e.ids);
      this.pending.push(...this.stream.feed(e.data));
    }
    const ev = this.pending.shift()!;
    if (ev.obj === WL.DISPLAY && ev.opcode === WL.display.evError) {
      const a = new Args(ev.body);
      throw new Error(`wl_display.error: object ${a.u()} code ${a.u()}: ${a.s()}`);
    }
    return ev;
  }

  /** wl_display.sync: every event before its done, in order. */
  async roundtrip(onEvent: (e: WireEvent) => void = () => {}): Promise<void> {
    const cb = this.newId();
    this.request(WL.DISPLAY, WL.display.sync, [{ u: cb }]);
    for (;;) {
      const e = await this.next();
      if (e.obj === cb && e.opcode === WL.callback.evDone) return;
      onEvent(e);
    }
  }

  /** wl_display.get_registry + a roundtrip: the globals, with the registry's object id. */
  async globals(): Promise<{ registry: number; globals: Global[] }> {
    const registry = this.newId();
    this.request(WL.DISPLAY, WL.display.getRegistry, [{ u: registry }]);
    const globals: Global[] = [];
    await this.roundtrip((e) => {
      if (e.obj === registry && e.opcode === WL.registry.evGlobal) {
        const a = new Args(e.body);
        globals.push({ name: a.u(), iface: a.s(), version: a.u() });
      }
    });
    return { registry, globals };
  }

  /** wl_registry.bind of `g` at `version`: the new object's id. */
  bind(registry: number, g: Global, version: number): number {
    const id = this.newId();
    this.request(registry, WL.registry.bind, [{ u: g.name }, { s: g.iface }, { u: version }, { u: id }]);
    return id;
  }
}

/** The test pattern of shown buffers: R 0x5a, G = 4x, B = 5y (x < 64, y < 51). */
export const patternColor = (x: number, y: number): number => (0x5a << 16) | ((x * 4) << 8) | (y * 5);

/** Fill XRGB8888 rows with the pattern; X = 0xff, as weston copies it into its output (the screenshot's alpha). */
export function fillPattern(px: DataView, width: number, height: number, stride: number): void {
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px.setUint32(y * stride + x * 4, (0xff000000 | patternColor(x, y)) >>> 0, true);
}

/**
 * Show a width x height XRGB8888 buffer on a new toplevel: a wl_shm pool over the memory that
 * `pool` names (a blob identifier), and back once weston presented it (the frame callback).
 */
export async function showShmBuffer(wl: WaylandGuestClient, pool: Identifier, poolSize: number, width: number, height: number, stride: number): Promise<void> {
  const { registry, globals } = await wl.globals();
  const g = (iface: string) => {
    const found = globals.find((x) => x.iface === iface);
    if (!found) throw new Error(`no ${iface}`);
    return found;
  };
  const compositor = wl.bind(registry, g('wl_compositor'), 4);
  const shm = wl.bind(registry, g('wl_shm'), 1);
  const wm = wl.bind(registry, g('xdg_wm_base'), 1);
  const shmPool = wl.newId(), buffer = wl.newId(), surface = wl.newId(), xdgSurface = wl.newId(), toplevel = wl.newId();
  wl.request(shm, WL.shm.createPool, [{ u: shmPool }, { fd: true }, { i: poolSize }], [pool]);
  wl.guest.send(concat([
    message(shmPool, WL.shmPool.createBuffer, [{ u: buffer }, { i: 0 }, { i: width }, { i: height }, { i: stride }, { u: WL.SHM_XRGB8888 }]),
    message(compositor, WL.compositor.createSurface, [{ u: surface }]),
    message(wm, WL.xdgWmBase.getXdgSurface, [{ u: xdgSurface }, { u: surface }]),
    message(xdgSurface, WL.xdgSurface.getToplevel, [{ u: toplevel }]),
    message(surface, WL.surface.commit),
  ]));
  let serial = -1;
  while (serial < 0) {
    const e = await wl.next();
    if (e.obj === xdgSurface && e.opcode === WL.xdgSurface.evConfigure) serial = new Args(e.body).u();
    if (e.obj === wm && e.opcode === WL.xdgWmBase.evPing) wl.request(wm, WL.xdgWmBase.pong, [{ u: new Args(e.body).u() }]);
  }
  const frame = wl.newId();
  wl.guest.send(concat([
    message(xdgSurface, WL.xdgSurface.ackConfigure, [{ u: serial }]),
    message(surface, WL.surface.attach, [{ u: buffer }, { i: 0 }, { i: 0 }]),
    message(surface, WL.surface.damage, [{ i: 0 }, { i: 0 }, { i: width }, { i: height }]),
    message(surface, WL.surface.frame, [{ u: frame }]),
    message(surface, WL.surface.commit),
  ]));
  for (;;) {
    const e = await wl.next();
    if (e.obj === frame && e.opcode === WL.callback.evDone) return;
  }
}
