// virtio-gpu wire constants (virtio spec "GPU Device"; Linux include/uapi/linux/virtio_gpu.h).

export const Cmd = {
  GET_DISPLAY_INFO: 0x0100,
  RESOURCE_CREATE_2D: 0x0101,
  RESOURCE_UNREF: 0x0102,
  SET_SCANOUT: 0x0103,
  RESOURCE_FLUSH: 0x0104,
  TRANSFER_TO_HOST_2D: 0x0105,
  RESOURCE_ATTACH_BACKING: 0x0106,
  RESOURCE_DETACH_BACKING: 0x0107,
  GET_CAPSET_INFO: 0x0108,
  GET_CAPSET: 0x0109,
  GET_EDID: 0x010a,
  RESOURCE_ASSIGN_UUID: 0x010b,
  RESOURCE_CREATE_BLOB: 0x010c,
  SET_SCANOUT_BLOB: 0x010d,
  CTX_CREATE: 0x0200,
  CTX_DESTROY: 0x0201,
  CTX_ATTACH_RESOURCE: 0x0202,
  CTX_DETACH_RESOURCE: 0x0203,
  RESOURCE_CREATE_3D: 0x0204,
  TRANSFER_TO_HOST_3D: 0x0205,
  TRANSFER_FROM_HOST_3D: 0x0206,
  SUBMIT_3D: 0x0207,
  RESOURCE_MAP_BLOB: 0x0208,
  RESOURCE_UNMAP_BLOB: 0x0209,
  UPDATE_CURSOR: 0x0300,
  MOVE_CURSOR: 0x0301,
} as const;

export const Resp = {
  OK_NODATA: 0x1100,
  OK_DISPLAY_INFO: 0x1101,
  OK_CAPSET_INFO: 0x1102,
  OK_CAPSET: 0x1103,
  OK_EDID: 0x1104,
  OK_RESOURCE_UUID: 0x1105,
  OK_MAP_INFO: 0x1106,
  ERR_UNSPEC: 0x1200,
  ERR_OUT_OF_MEMORY: 0x1201,
  ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203,
  ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;

export const FLAG_FENCE = 1;
export const FLAG_INFO_RING_IDX = 2;
export const HDR_SIZE = 24;
export const MAX_SCANOUTS = 16;
export const DISPLAY_INFO_SIZE = HDR_SIZE + MAX_SCANOUTS * 24;
export const EDID_RESP_SIZE = HDR_SIZE + 8 + 1024;
export const CAPSET_INFO_SIZE = 40;
export const UUID_RESP_SIZE = 40;
export const CURSOR_SIZE = 64;

/** Feature bits of the GPU device (virtio spec 5.7.3). */
export const GpuFeature = {
  VIRGL: 0,
  EDID: 1,
  RESOURCE_UUID: 2,
  RESOURCE_BLOB: 3,
  CONTEXT_INIT: 4,
} as const;

export function cmdName(type: number): string {
  for (const [name, v] of Object.entries(Cmd)) if (v === type) return name;
  return `0x${type.toString(16)}`;
}
