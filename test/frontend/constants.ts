/** Wire constants used by the test frontend (protocols.md §1–§4). */

/** vhost-user front-end → back-end request ids (§2.4). */
export const VhostUserRequest = {
  GET_FEATURES: 1, SET_FEATURES: 2, SET_OWNER: 3, RESET_OWNER: 4, SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6, SET_LOG_FD: 7, SET_VRING_NUM: 8, SET_VRING_ADDR: 9, SET_VRING_BASE: 10,
  GET_VRING_BASE: 11, SET_VRING_KICK: 12, SET_VRING_CALL: 13, SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15, SET_PROTOCOL_FEATURES: 16, GET_QUEUE_NUM: 17, SET_VRING_ENABLE: 18,
  SEND_RARP: 19, NET_SET_MTU: 20, SET_BACKEND_REQ_FD: 21, IOTLB_MSG: 22, SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24, SET_CONFIG: 25, GET_INFLIGHT_FD: 31, SET_INFLIGHT_FD: 32, GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34, VRING_KICK: 35, GET_MAX_MEM_SLOTS: 36, ADD_MEM_REG: 37, REM_MEM_REG: 38,
  SET_STATUS: 39, GET_STATUS: 40, GET_SHARED_OBJECT: 41, SET_DEVICE_STATE_FD: 42,
  CHECK_DEVICE_STATE: 43, GET_SHMEM_CONFIG: 44,
} as const;

/** vhost-user back-end → front-end request ids on the SET_BACKEND_REQ_FD channel (QEMU 11.1.3). */
export const BackendRequest = { SHMEM_MAP: 9, SHMEM_UNMAP: 10 } as const;
/** GET_SHMEM_CONFIG's table size (VIRTIO_MAX_SHMEM_REGIONS) and VhostUserMMap's size. */
export const SHMEM_MAX_REGIONS = 256;
export const SHMEM_MMAP_SIZE = 40;

export const VHOST_USER_VERSION = 0x1;
export const VHOST_USER_FLAG_REPLY = 0x4;
export const VHOST_USER_FLAG_NEED_REPLY = 0x8;
/** SET_VRING_KICK/CALL/ERR payload bit: no fd attached. */
export const VHOST_USER_VRING_NOFD = 0x100;

/** vhost-user protocol feature bit numbers (§2.3). */
export const ProtocolFeature = {
  MQ: 0, LOG_SHMFD: 1, RARP: 2, REPLY_ACK: 3, MTU: 4, BACKEND_REQ: 5, CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7, PAGEFAULT: 8, CONFIG: 9, BACKEND_SEND_FD: 10, HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12, RESET_DEVICE: 13, INBAND_NOTIFICATIONS: 14, CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16, XEN_MMAP: 17, SHARED_OBJECT: 18, DEVICE_STATE: 19,
  /** QEMU 11.1.3's bit (the drafts in protocols.md §2.7 had 20 or 21). */
  SHMEM: 22,
} as const;

/** virtio feature bit numbers: GPU device bits (§4.1) and transport bits (§1.1, §2.3). */
export const VirtioFeature = {
  GPU_VIRGL: 0, GPU_EDID: 1, GPU_RESOURCE_UUID: 2, GPU_RESOURCE_BLOB: 3, GPU_CONTEXT_INIT: 4,
  LOG_ALL: 26, NOTIFY_ON_EMPTY: 24, ANY_LAYOUT: 27, INDIRECT_DESC: 28, EVENT_IDX: 29,
  PROTOCOL_FEATURES: 30, VERSION_1: 32, ACCESS_PLATFORM: 33, RING_PACKED: 34,
} as const;

export const VirtioStatus = {
  ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, DEVICE_NEEDS_RESET: 64, FAILED: 128,
} as const;

export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/** vhost-user-gpu display socket message ids (§3). */
export const DisplayMsg = {
  GET_PROTOCOL_FEATURES: 1, SET_PROTOCOL_FEATURES: 2, GET_DISPLAY_INFO: 3, CURSOR_POS: 4,
  CURSOR_POS_HIDE: 5, CURSOR_UPDATE: 6, SCANOUT: 7, UPDATE: 8, DMABUF_SCANOUT: 9,
  DMABUF_UPDATE: 10, GET_EDID: 11, DMABUF_SCANOUT2: 12,
} as const;
export const DISPLAY_FLAG_REPLY = 0x4;
export const DisplayProtocolFeature = { EDID: 0, DMABUF2: 1 } as const;

/** virtio-gpu command codes (§4.3). */
export const GpuCmd = {
  GET_DISPLAY_INFO: 0x0100, RESOURCE_CREATE_2D: 0x0101, RESOURCE_UNREF: 0x0102,
  SET_SCANOUT: 0x0103, RESOURCE_FLUSH: 0x0104, TRANSFER_TO_HOST_2D: 0x0105,
  RESOURCE_ATTACH_BACKING: 0x0106, RESOURCE_DETACH_BACKING: 0x0107, GET_CAPSET_INFO: 0x0108,
  GET_CAPSET: 0x0109, GET_EDID: 0x010a, RESOURCE_ASSIGN_UUID: 0x010b,
  RESOURCE_CREATE_BLOB: 0x010c, SET_SCANOUT_BLOB: 0x010d,
  CTX_CREATE: 0x0200, CTX_DESTROY: 0x0201, CTX_ATTACH_RESOURCE: 0x0202,
  CTX_DETACH_RESOURCE: 0x0203, RESOURCE_CREATE_3D: 0x0204, TRANSFER_TO_HOST_3D: 0x0205,
  TRANSFER_FROM_HOST_3D: 0x0206, SUBMIT_3D: 0x0207, RESOURCE_MAP_BLOB: 0x0208,
  RESOURCE_UNMAP_BLOB: 0x0209, UPDATE_CURSOR: 0x0300, MOVE_CURSOR: 0x0301,
} as const;

/** virtio-gpu response codes (§4.3). */
export const GpuResp = {
  OK_NODATA: 0x1100, OK_DISPLAY_INFO: 0x1101, OK_CAPSET_INFO: 0x1102, OK_CAPSET: 0x1103,
  OK_EDID: 0x1104, OK_RESOURCE_UUID: 0x1105, OK_MAP_INFO: 0x1106,
  ERR_UNSPEC: 0x1200, ERR_OUT_OF_MEMORY: 0x1201, ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203, ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;

export const GPU_FLAG_FENCE = 1;
export const GPU_FLAG_INFO_RING_IDX = 2;
export const GPU_MAX_SCANOUTS = 16;
export const GPU_HDR_SIZE = 24;

/** virtio-gpu formats (§4.5). */
export const GpuFormat = {
  B8G8R8A8_UNORM: 1, B8G8R8X8_UNORM: 2, A8R8G8B8_UNORM: 3, X8R8G8B8_UNORM: 4,
  R8G8B8A8_UNORM: 67, X8B8G8R8_UNORM: 68, A8B8G8R8_UNORM: 121, R8G8B8X8_UNORM: 134,
} as const;

export const BlobMem = { GUEST: 1, HOST3D: 2, HOST3D_GUEST: 3 } as const;
export const BlobFlag = { USE_MAPPABLE: 1, USE_SHAREABLE: 2, USE_CROSS_DEVICE: 4 } as const;

export function gpuRespName(type: number): string {
  for (const [k, v] of Object.entries(GpuResp)) if (v === type) return k;
  return `0x${type.toString(16)}`;
}
