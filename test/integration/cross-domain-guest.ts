// The guest side of a cross-domain context, as a guest proxy (sommelier and the like) drives it:
// two guest-memory rings attached as resources, commands submitted as SUBMIT_3D streams, a
// POLL with a channel-ring fence for every event. It talks to a real context on its own worker
// through the framework's coordinator side (WorkerContextHost), the way the device does.
import { native, type MapHandle } from '../../src/native.js';
import type { WorkerContextHost, WorkerContexts, WorkerContextType } from '../../src/renderers/worker-context/host.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { capsetRow, workerType } from '../../src/renderers/capsets.js';
import { memfdMapping } from '../unit/mock-ring.js';

export const QUERY_RES = 1;
export const CHANNEL_RES = 2;

export function crossDomainType(waylandSocket: string): WorkerContextType {
  const row = capsetRow('cross-domain');
  if (row?.runner !== 'worker') throw new Error('no cross-domain row');
  return workerType(row, { waylandSocket });
}

export interface Identifier {
  readonly id: number;
  readonly type: number;
  readonly size?: number;
}

export type ChannelEvent =
  | { readonly cmd: 'receive'; readonly data: Uint8Array; readonly ids: Identifier[] }
  | { readonly cmd: 'read'; readonly id: number; readonly hangUp: boolean; readonly data: Uint8Array };

export interface Requirements {
  readonly strides: number[];
  readonly offsets: number[];
  readonly size: number;
  readonly blobId: number;
  readonly mapInfo: number;
}

export class CrossDomainGuest {
  readonly host: WorkerContextHost;
  /** Resolves with the reason once the context is reported lost. */
  readonly lost: Promise<string>;
  private readonly rings: { map: MapHandle; ab: ArrayBuffer }[];
  private fenceId = 1n;
  private nextReadPipe = P.PIPE_READ_START;

  constructor(pool: WorkerContexts, readonly ctxId: number, socket: string, ringBytes = 4096) {
    let onLost!: (r: string) => void;
    this.lost = new Promise((r) => (onLost = r));
    this.host = pool.start(crossDomainType(socket), ctxId, 5, `guest${ctxId}`, onLost);
    this.rings = [memfdMapping('query-ring', ringBytes), memfdMapping('channel-ring', ringBytes)];
    this.host.attach(QUERY_RES, Float64Array.of(Number(this.rings[0].map.addr), ringBytes), -1, ringBytes);
    this.host.attach(CHANNEL_RES, Float64Array.of(Number(this.rings[1].map.addr), ringBytes), -1, ringBytes);
  }

  submit(bytes: Uint8Array): void {
    this.host.submit(bytes.length, (dst, off, len) => dst.set(bytes.subarray(0, len), off));
  }

  /** A fence on `ring` after everything submitted: its status (0, or -ENODEV once the context is lost). */
  fence(ring: number): Promise<number> {
    return this.host.fence(ring, this.fenceId++);
  }

  async init(channelType = P.CHANNEL_TYPE_WAYLAND, query = QUERY_RES, channel = CHANNEL_RES): Promise<number> {
    this.submit(initCommand(query, channel, channelType));
    return this.fence(P.QUERY_RING);
  }

  async imageRequirements(width: number, height: number, drmFormat: number): Promise<Requirements> {
    this.submit(imageRequirementsCommand(width, height, drmFormat));
    const st = await this.fence(P.QUERY_RING);
    if (st !== 0) throw new Error(`GET_IMAGE_REQUIREMENTS fence: ${st}`);
    return parseRequirements(new DataView(this.rings[0].ab));
  }

  /** The id the host will give the next read pipe (guests predict it). */
  readPipeId(): number {
    return ++this.nextReadPipe;
  }

  send(data: Uint8Array, ids: Identifier[] = []): void {
    this.submit(sendCommand(data, ids));
  }

  write(id: number, data: Uint8Array, hangUp = false): void {
    const c = command(P.Cmd.WRITE, P.READ_WRITE.BYTES + data.length);
    c.v.setUint32(P.READ_WRITE.IDENTIFIER, id, true);
    c.v.setUint32(P.READ_WRITE.HANG_UP, hangUp ? 1 : 0, true);
    c.v.setUint32(P.READ_WRITE.OPAQUE_DATA_SIZE, data.length, true);
    c.bytes.set(data, P.READ_WRITE.BYTES);
    this.submit(c.bytes);
  }

  watchEvent(id: number): void {
    const c = command(P.Cmd.READ_CREATE_EVENT, P.CREATE_EVENT.BYTES);
    c.v.setUint32(P.CREATE_EVENT.ID, id, true);
    this.submit(c.bytes);
  }

  /** POLL with a channel-ring fence; resolves with the event the host put into the channel ring. */
  async poll(): Promise<ChannelEvent> {
    this.submit(command(P.Cmd.POLL, P.HDR.BYTES).bytes);
    const st = await this.fence(P.CHANNEL_RING);
    if (st !== 0) throw new Error(`channel fence completed with ${st} (context lost?)`);
    return this.channelEvent();
  }

  /** What the channel ring holds now. */
  channelEvent(): ChannelEvent {
    const ring = new Uint8Array(this.rings[1].ab), v = new DataView(this.rings[1].ab);
    if (ring[0] === P.Cmd.RECEIVE) {
      const count = v.getUint32(P.SEND_RECEIVE.NUM_IDENTIFIERS, true), size = v.getUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, true);
      const ids = Array.from({ length: count }, (_, i) => ({
        id: v.getUint32(P.SEND_RECEIVE.IDENTIFIERS + 4 * i, true),
        type: v.getUint32(P.SEND_RECEIVE.TYPES + 4 * i, true),
        size: v.getUint32(P.SEND_RECEIVE.SIZES + 4 * i, true),
      }));
      return { cmd: 'receive', data: ring.slice(P.SEND_RECEIVE.BYTES, P.SEND_RECEIVE.BYTES + size), ids };
    }
    if (ring[0] === P.Cmd.READ) {
      const size = v.getUint32(P.READ_WRITE.OPAQUE_DATA_SIZE, true);
      return { cmd: 'read', id: v.getUint32(P.READ_WRITE.IDENTIFIER, true), hangUp: v.getUint32(P.READ_WRITE.HANG_UP, true) !== 0, data: ring.slice(P.READ_WRITE.BYTES, P.READ_WRITE.BYTES + size) };
    }
    throw new Error(`channel ring holds command ${ring[0]}`);
  }

  async destroy(): Promise<void> {
    await this.host.destroy();
    for (const r of this.rings) native().unmap(r.map.addr);
  }
}

export function command(cmd: number, size: number): { bytes: Uint8Array; v: DataView } {
  const bytes = new Uint8Array(size), v = new DataView(bytes.buffer);
  bytes[P.HDR.CMD] = cmd;
  v.setUint16(P.HDR.CMD_SIZE, size, true);
  return { bytes, v };
}

export function sendCommand(data: Uint8Array, ids: Identifier[]): Uint8Array {
  const c = command(P.Cmd.SEND, P.SEND_RECEIVE.BYTES + data.length);
  c.v.setUint32(P.SEND_RECEIVE.NUM_IDENTIFIERS, ids.length, true);
  c.v.setUint32(P.SEND_RECEIVE.OPAQUE_DATA_SIZE, data.length, true);
  ids.forEach((x, i) => {
    c.v.setUint32(P.SEND_RECEIVE.IDENTIFIERS + 4 * i, x.id, true);
    c.v.setUint32(P.SEND_RECEIVE.TYPES + 4 * i, x.type, true);
  });
  c.bytes.set(data, P.SEND_RECEIVE.BYTES);
  return c.bytes;
}

export function initCommand(query: number, channel: number, channelType: number = P.CHANNEL_TYPE_WAYLAND): Uint8Array {
  const c = command(P.Cmd.INIT, P.INIT.BYTES);
  c.v.setUint32(P.INIT.QUERY_RING_ID, query, true);
  c.v.setUint32(P.INIT.CHANNEL_RING_ID, channel, true);
  c.v.setUint32(P.INIT.CHANNEL_TYPE, channelType, true);
  return c.bytes;
}

export function imageRequirementsCommand(width: number, height: number, drmFormat: number): Uint8Array {
  const c = command(P.Cmd.GET_IMAGE_REQUIREMENTS, P.GET_REQS.BYTES);
  c.v.setUint32(P.GET_REQS.WIDTH, width, true);
  c.v.setUint32(P.GET_REQS.HEIGHT, height, true);
  c.v.setUint32(P.GET_REQS.DRM_FORMAT, drmFormat, true);
  return c.bytes;
}

/** The answer GET_IMAGE_REQUIREMENTS wrote at the start of the query ring. */
export function parseRequirements(v: DataView): Requirements {
  return {
    strides: [0, 1, 2, 3].map((i) => v.getUint32(P.REQS.STRIDES + 4 * i, true)),
    offsets: [0, 1, 2, 3].map((i) => v.getUint32(P.REQS.OFFSETS + 4 * i, true)),
    size: Number(v.getBigUint64(P.REQS.SIZE, true)),
    blobId: v.getUint32(P.REQS.BLOB_ID, true),
    mapInfo: v.getUint32(P.REQS.MAP_INFO, true),
  };
}
