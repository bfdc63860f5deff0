// A raw Wayland client running over a cross-domain context (the guest proxy's job): requests go
// out as SEND, events come back as RECEIVE, one POLL each.
import { Args, EventStream, WL, message, type Arg, type WireEvent } from './wayland-wire.js';
import type { CrossDomainGuest, Identifier } from './cross-domain-guest.js';

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

  constructor(readonly guest: CrossDomainGuest) {}

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
    if (process.env.WL_DEBUG) console.log(`event obj ${ev.obj} op ${ev.opcode} len ${ev.body.byteLength}`);
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
