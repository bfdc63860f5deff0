/**
 * vhost-user front-end requests (docs/interop/vhost-user.rst): one row per request code with its
 * payload size and whether it may carry fds. The session refuses anything that does not match its
 * row before a handler runs (rust-vmm's is_valid / check_attached_files, as a table).
 */

export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SET_BACKEND_REQ_FD: 21,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  GET_SHMEM_CONFIG: 44,
} as const;

/**
 * Back-end requests, sent by us on the channel of SET_BACKEND_REQ_FD (the SHMEM revision of
 * QEMU 11.1.3's docs/interop/vhost-user.rst: SHMEM_MAP carries the memfd, SHMEM_UNMAP none).
 */
export const BackendReq = {
  SHMEM_MAP: 9,
  SHMEM_UNMAP: 10,
} as const;

export const ProtocolFeature = {
  MQ: 0,
  REPLY_ACK: 3,
  BACKEND_REQ: 5,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  RESET_DEVICE: 13,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
  /** VHOST_USER_PROTOCOL_F_SHMEM: bit 22 in QEMU 11.1.3 (earlier drafts used 20 and 21). */
  SHMEM: 22,
} as const;

/** Virtio feature bit 30: the front-end may use GET/SET_PROTOCOL_FEATURES. */
export const F_PROTOCOL_FEATURES = 30;
export const F_INDIRECT_DESC = 28;
export const F_EVENT_IDX = 29;
export const F_VERSION_1 = 32;

export const HDR_SIZE = 12;
export const VERSION = 0x1;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;
/** Largest payload we accept; anything bigger cannot be a valid request and ends the session. */
export const MAX_PAYLOAD = 4096;
export const MAX_FDS = 8;
/** Memory regions in one SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_TABLE_REGIONS = 8;
/** Regions in total with ADD_MEM_REG (our GET_MAX_MEM_SLOTS answer). */
export const MAX_MEM_SLOTS = 32;
export const REGION_SIZE = 32;
export const CONFIG_HDR = 12;
/** VHOST_USER_MAX_CONFIG_SIZE: the most config space a front-end reads or writes at once. */
export const MAX_CONFIG_SIZE = 256;
export const VRING_NOFD = 0x100;
export const VRING_IDX_MASK = 0xff;
/** VIRTIO_MAX_SHMEM_REGIONS: GET_SHMEM_CONFIG answers a size for each shmid 0..255. */
export const MAX_SHMEM_REGIONS = 256;
/** GET_SHMEM_CONFIG reply: u32 nregions, u32 padding, u64 memory_sizes[256]. */
export const SHMEM_CONFIG_SIZE = 8 + 8 * MAX_SHMEM_REGIONS;
/** VhostUserMMap: u8 shmid, 7 padding, u64 fd_offset, shm_offset, len, flags. */
export const MMAP_MSG_SIZE = 40;
export const MMAP = { SHMID: 0, FD_OFFSET: 8, SHM_OFFSET: 16, LEN: 24, FLAGS: 32 } as const;
/** VhostUserMMap flags bit 0: map read-write (else read-only). */
export const MMAP_RW = 1;

/** How a request is answered: with a body always, or with a u64 status only when NEED_REPLY asks. */
export type ReplyKind = 'body' | 'ack';

export interface RequestSpec {
  name: string;
  /** Exact payload size, or [min, max]. */
  size: number | readonly [number, number];
  /** Allowed fd counts: 0 none, 1 at most one, 'table' as many as the table says (checked by the handler). */
  fds: 0 | 1 | 'table';
  reply: ReplyKind;
}

const u64 = 8;
const state = 8;

export const SPECS: ReadonlyMap<number, RequestSpec> = new Map<number, RequestSpec>([
  [Req.GET_FEATURES, { name: 'GET_FEATURES', size: 0, fds: 0, reply: 'body' }],
  [Req.SET_FEATURES, { name: 'SET_FEATURES', size: u64, fds: 0, reply: 'ack' }],
  [Req.SET_OWNER, { name: 'SET_OWNER', size: 0, fds: 0, reply: 'ack' }],
  [Req.RESET_OWNER, { name: 'RESET_OWNER', size: [0, u64], fds: 0, reply: 'ack' }],
  [Req.SET_MEM_TABLE, { name: 'SET_MEM_TABLE', size: [8, 8 + REGION_SIZE * MAX_TABLE_REGIONS], fds: 'table', reply: 'ack' }],
  [Req.SET_VRING_NUM, { name: 'SET_VRING_NUM', size: state, fds: 0, reply: 'ack' }],
  [Req.SET_VRING_ADDR, { name: 'SET_VRING_ADDR', size: 40, fds: 0, reply: 'ack' }],
  [Req.SET_VRING_BASE, { name: 'SET_VRING_BASE', size: state, fds: 0, reply: 'ack' }],
  [Req.GET_VRING_BASE, { name: 'GET_VRING_BASE', size: state, fds: 0, reply: 'body' }],
  [Req.SET_VRING_KICK, { name: 'SET_VRING_KICK', size: u64, fds: 1, reply: 'ack' }],
  [Req.SET_VRING_CALL, { name: 'SET_VRING_CALL', size: u64, fds: 1, reply: 'ack' }],
  [Req.SET_VRING_ERR, { name: 'SET_VRING_ERR', size: u64, fds: 1, reply: 'ack' }],
  [Req.GET_PROTOCOL_FEATURES, { name: 'GET_PROTOCOL_FEATURES', size: 0, fds: 0, reply: 'body' }],
  [Req.SET_PROTOCOL_FEATURES, { name: 'SET_PROTOCOL_FEATURES', size: u64, fds: 0, reply: 'ack' }],
  [Req.GET_QUEUE_NUM, { name: 'GET_QUEUE_NUM', size: 0, fds: 0, reply: 'body' }],
  [Req.SET_BACKEND_REQ_FD, { name: 'SET_BACKEND_REQ_FD', size: 0, fds: 1, reply: 'ack' }],
  [Req.SET_VRING_ENABLE, { name: 'SET_VRING_ENABLE', size: state, fds: 0, reply: 'ack' }],
  [Req.GET_CONFIG, { name: 'GET_CONFIG', size: [CONFIG_HDR + 1, CONFIG_HDR + MAX_CONFIG_SIZE], fds: 0, reply: 'body' }],
  [Req.SET_CONFIG, { name: 'SET_CONFIG', size: [CONFIG_HDR + 1, CONFIG_HDR + MAX_CONFIG_SIZE], fds: 0, reply: 'ack' }],
  [Req.GPU_SET_SOCKET, { name: 'GPU_SET_SOCKET', size: 0, fds: 1, reply: 'ack' }],
  [Req.RESET_DEVICE, { name: 'RESET_DEVICE', size: 0, fds: 0, reply: 'ack' }],
  [Req.VRING_KICK, { name: 'VRING_KICK', size: state, fds: 0, reply: 'ack' }],
  [Req.GET_MAX_MEM_SLOTS, { name: 'GET_MAX_MEM_SLOTS', size: 0, fds: 0, reply: 'body' }],
  [Req.ADD_MEM_REG, { name: 'ADD_MEM_REG', size: 8 + REGION_SIZE, fds: 1, reply: 'ack' }],
  [Req.REM_MEM_REG, { name: 'REM_MEM_REG', size: 8 + REGION_SIZE, fds: 1, reply: 'ack' }],
  [Req.SET_STATUS, { name: 'SET_STATUS', size: u64, fds: 0, reply: 'ack' }],
  [Req.GET_STATUS, { name: 'GET_STATUS', size: 0, fds: 0, reply: 'body' }],
  [Req.GET_SHMEM_CONFIG, { name: 'GET_SHMEM_CONFIG', size: 0, fds: 0, reply: 'body' }],
]);

/** Why a request cannot be handled as sent, or null if its payload size and fd count fit its row. */
export function checkRequest(spec: RequestSpec, size: number, nfds: number): string | null {
  const [min, max] = typeof spec.size === 'number' ? [spec.size, spec.size] : spec.size;
  if (size < min || size > max) {
    return `payload of ${size} bytes (expected ${min === max ? min : `${min}..${max}`})`;
  }
  if (spec.fds === 0 && nfds > 0) return `${nfds} unexpected fds`;
  if (spec.fds === 1 && nfds > 1) return `${nfds} fds (at most 1)`;
  return null;
}
