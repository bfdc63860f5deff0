/**
 * QEMU's bring-up sequence for a vhost-user-gpu back-end (protocols.md §2.5 "typical order"):
 * negotiation, GET_CONFIG, GPU_SET_SOCKET, SET_FEATURES, memory table, then the rings.
 */
import { native } from '../../src/native.js';
import { ProtocolFeature, VirtioFeature, VirtioStatus, bit } from './constants.js';
import type { GuestRam } from './guest-memory.js';
import type { DriverQueue } from './virtqueue.js';
import type { VhostUserFrontend, GpuConfig, MemRegionDesc } from './vhost-user.js';

/** Optional virtio-gpu / ring features to ack when the back-end offers them. */
export interface FeatureWishes {
  eventIdx?: boolean; indirect?: boolean; virgl?: boolean; edid?: boolean;
  resourceUuid?: boolean; resourceBlob?: boolean; contextInit?: boolean;
}

export interface StartOptions {
  ram: GuestRam;
  /** Queue i is vring i (0 = control, 1 = cursor). */
  queues: readonly DriverQueue[];
  /** Back-end end of the display socketpair: sent with GPU_SET_SOCKET, then closed here. */
  displayFd: number | null;
  /** Features to ack if offered (VERSION_1 and PROTOCOL_FEATURES always). A bigint is an exact wish mask. */
  features?: FeatureWishes | bigint;
  /** Protocol features to ack if offered. */
  protocolFeatures?: bigint;
  /** SET_MEM_TABLE (default) or one ADD_MEM_REG per region (needs CONFIGURE_MEM_SLOTS). */
  memTable?: 'set' | 'add';
  /** Ack BACKEND_REQ and hand over a back-end request channel. */
  backendReq?: boolean;
  /**
   * Play QEMU 11.1's vhost-user-test-device-pci: ack SHMEM with BACKEND_REQ and BACKEND_SEND_FD,
   * hand over the back-end channel and ask GET_SHMEM_CONFIG after SET_OWNER.
   */
  shmem?: boolean;
  /** Send SET_VRING_ERR with each queue's err eventfd. */
  vringErr?: boolean;
}

export interface StartResult {
  offeredFeatures: bigint; features: bigint; offeredProtocolFeatures: bigint; protocolFeatures: bigint;
  queueNum: number | null; maxMemSlots: number | null; config: GpuConfig | null;
}

export const DEFAULT_PROTOCOL_FEATURES = bit(ProtocolFeature.MQ) | bit(ProtocolFeature.REPLY_ACK) |
  bit(ProtocolFeature.CONFIG) | bit(ProtocolFeature.RESET_DEVICE) |
  bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) | bit(ProtocolFeature.STATUS);

const DEFAULT_WISHES: FeatureWishes = { eventIdx: true, indirect: true, edid: true, resourceUuid: true };

export interface RingStartOptions {
  /** SET_VRING_BASE value per queue (e.g. what stop() returned). Default: each queue's avail index. */
  bases?: readonly number[];
  /** Send SET_VRING_ERR with each queue's err eventfd. */
  vringErr?: boolean;
  /** SET_VRING_ENABLE 1 afterwards. Default: when PROTOCOL_FEATURES was acked (else rings start enabled). */
  enable?: boolean;
}

export function wishMask(w: FeatureWishes | bigint | undefined): bigint {
  if (typeof w === 'bigint') return w;
  const o = w ?? DEFAULT_WISHES;
  let m = 0n;
  if (o.eventIdx) m |= bit(VirtioFeature.EVENT_IDX);
  if (o.indirect) m |= bit(VirtioFeature.INDIRECT_DESC);
  if (o.virgl) m |= bit(VirtioFeature.GPU_VIRGL);
  if (o.edid) m |= bit(VirtioFeature.GPU_EDID);
  if (o.resourceUuid) m |= bit(VirtioFeature.GPU_RESOURCE_UUID);
  if (o.resourceBlob) m |= bit(VirtioFeature.GPU_RESOURCE_BLOB);
  if (o.contextInit) m |= bit(VirtioFeature.GPU_CONTEXT_INIT);
  return m;
}

export async function startSequence(fe: VhostUserFrontend, o: StartOptions): Promise<StartResult> {
  const offered = await fe.getFeatures();
  let offeredProto = 0n, proto = 0n;
  if (offered & bit(VirtioFeature.PROTOCOL_FEATURES)) {
    offeredProto = await fe.getProtocolFeatures();
    let want = o.protocolFeatures ?? DEFAULT_PROTOCOL_FEATURES;
    if (o.backendReq || o.shmem) want |= bit(ProtocolFeature.BACKEND_REQ);
    if (o.shmem) want |= bit(ProtocolFeature.BACKEND_SEND_FD) | bit(ProtocolFeature.SHMEM);
    proto = offeredProto & want;
    await fe.setProtocolFeatures(proto);
  }
  const queueNum = fe.hasProtocolFeature(ProtocolFeature.MQ) ? await fe.getQueueNum() : null;
  const maxMemSlots = fe.hasProtocolFeature(ProtocolFeature.CONFIGURE_MEM_SLOTS) ? await fe.getMaxMemSlots() : null;
  if (fe.hasProtocolFeature(ProtocolFeature.BACKEND_REQ)) await fe.setBackendReqFd();
  await fe.setOwner();
  if (fe.hasProtocolFeature(ProtocolFeature.SHMEM)) await fe.getShmemConfig();
  const config = fe.hasProtocolFeature(ProtocolFeature.CONFIG) ? await fe.getGpuConfig() : null;
  if (o.displayFd !== null) {
    try { await fe.gpuSetSocket(o.displayFd); } finally { native().close(o.displayFd); }
  }
  const features = offered & (bit(VirtioFeature.VERSION_1) | bit(VirtioFeature.PROTOCOL_FEATURES) | wishMask(o.features));
  await fe.setFeatures(features);
  const statusOn = fe.hasProtocolFeature(ProtocolFeature.STATUS);
  if (statusOn) await fe.setStatus(VirtioStatus.ACKNOWLEDGE | VirtioStatus.DRIVER | VirtioStatus.FEATURES_OK);
  const regions = ramRegions(o.ram);
  if (o.memTable === 'add') { for (const r of regions) await fe.addMemReg(r); } else await fe.setMemTable(regions);
  await startRings(fe, o.queues, { vringErr: o.vringErr ?? false });
  if (statusOn) await fe.setStatus(fe.lastStatus | VirtioStatus.DRIVER_OK);
  return { offeredFeatures: offered, features, offeredProtocolFeatures: offeredProto, protocolFeatures: proto, queueNum, maxMemSlots, config };
}

export async function startRings(fe: VhostUserFrontend, queues: readonly DriverQueue[], o: RingStartOptions): Promise<void> {
  const features = fe.features;
  for (let i = 0; i < queues.length; i++) {
    const q = queues[i]!;
    q.eventIdx = (features & bit(VirtioFeature.EVENT_IDX)) !== 0n;
    q.indirectNegotiated = (features & bit(VirtioFeature.INDIRECT_DESC)) !== 0n;
    const a = q.userAddrs();
    await fe.setVringNum(q.index, q.size);
    await fe.setVringBase(q.index, o.bases?.[i] ?? q.availIdx);
    await fe.setVringAddr(q.index, { desc: a.desc, used: a.used, avail: a.avail });
    await fe.setVringKick(q.index, q.kickFd);
    await fe.setVringCall(q.index, q.callFd);
    if (o.vringErr) await fe.setVringErr(q.index, q.errFd);
  }
  if (o.enable ?? (features & bit(VirtioFeature.PROTOCOL_FEATURES)) !== 0n) {
    for (const q of queues) await fe.setVringEnable(q.index, true);
  }
}

/** The RAM's regions as vhost-user memory regions (every region is backed by the one memfd). */
export function ramRegions(ram: GuestRam): MemRegionDesc[] {
  return ram.regions.map((r) => ({ gpa: r.gpa, size: r.size, userAddr: r.userAddr, mmapOffset: r.fdOffset, fd: ram.fd }));
}

