/**
 * The cross-domain wire format (capset 5), as crosvm's rutabaga_gfx defines it
 * (cross_domain_protocol.rs): command ids, identifier types, ring indices and the byte layout of
 * every struct. All fields are little-endian; offsets are from the start of the command.
 *
 * A SUBMIT_3D stream holds one or more commands, each starting with a CrossDomainHeader whose
 * cmd_size covers the whole command (header, fields and trailing data).
 */

export const Cmd = {
  INIT: 1,
  GET_IMAGE_REQUIREMENTS: 2,
  POLL: 3,
  SEND: 4,
  /** Host -> guest only (written into the channel ring). */
  RECEIVE: 5,
  /** Host -> guest only: data read from a pipe (or an eventfd's counter). */
  READ: 6,
  WRITE: 7,
  /** Watch a received eventfd: its counter then arrives as READ (rutabaga's READ_CREATE_EVENT). */
  READ_CREATE_EVENT: 11,
} as const;

/** Channel types (CrossDomainInit.channel_type); the capabilities advertise 1 << type. */
export const CHANNEL_TYPE_WAYLAND = 1;

/** Identifier types of SEND/RECEIVE. */
export const IdType = {
  /** A virtio-gpu resource (SEND: an attached host3d blob; RECEIVE: shared memory to create a blob from). */
  VIRTGPU_BLOB: 1,
  VIRTGPU_SYNC: 2,
  /** SEND: the host makes a pipe, gives the write end to the compositor and READs the other end. */
  READ_PIPE: 3,
  /** RECEIVE: the compositor gave a pipe's write end; the guest WRITEs into it. */
  WRITE_PIPE: 4,
  /** RECEIVE: the compositor gave an eventfd (rutabaga's CROSS_DOMAIN_ID_TYPE_EVENT). */
  EVENT: 5,
} as const;

/** Ring indices of fences (FLAG_INFO_RING_IDX): the query ring answers at once, the channel ring per event. */
export const QUERY_RING = 0;
export const CHANNEL_RING = 1;

/** Read pipe ids start above this value; the guest predicts them (START + 1, + 2, ...). */
export const PIPE_READ_START = 0x80000000;
export const MAX_IDENTIFIERS = 28;

/** CrossDomainHeader: cmd u8, ring_idx u8, cmd_size u16, pad u32. */
export const HDR = { CMD: 0, RING_IDX: 1, CMD_SIZE: 2, BYTES: 8 } as const;

/** CrossDomainInit: query_ring_id, channel_ring_id, channel_type. */
export const INIT = { QUERY_RING_ID: 8, CHANNEL_RING_ID: 12, CHANNEL_TYPE: 16, BYTES: 20 } as const;

/** CrossDomainGetImageRequirements: width, height, drm_format, flags. */
export const GET_REQS = { WIDTH: 8, HEIGHT: 12, DRM_FORMAT: 16, FLAGS: 20, BYTES: 24 } as const;

/**
 * CrossDomainImageRequirements (written at the start of the query ring): strides[4], offsets[4],
 * modifier u64, size u64, blob_id, map_info, memory_idx i32, physical_device_idx i32.
 */
export const REQS = { STRIDES: 0, OFFSETS: 16, MODIFIER: 32, SIZE: 40, BLOB_ID: 48, MAP_INFO: 52, MEMORY_IDX: 56, PHYSICAL_DEVICE_IDX: 60, BYTES: 64 } as const;

/**
 * CrossDomainSendReceive: num_identifiers, opaque_data_size, identifiers[28],
 * identifier_types[28], identifier_sizes[28], then opaque_data_size bytes.
 */
export const SEND_RECEIVE = {
  NUM_IDENTIFIERS: 8,
  OPAQUE_DATA_SIZE: 12,
  IDENTIFIERS: 16,
  TYPES: 16 + 4 * MAX_IDENTIFIERS,
  SIZES: 16 + 8 * MAX_IDENTIFIERS,
  BYTES: 16 + 12 * MAX_IDENTIFIERS, // 352
} as const;

/** CrossDomainReadWrite: identifier, hang_up, opaque_data_size, pad, then the data. */
export const READ_WRITE = { IDENTIFIER: 8, HANG_UP: 12, OPAQUE_DATA_SIZE: 16, BYTES: 24 } as const;

/** CrossDomainCreateEvent (READ_CREATE_EVENT): id, pad. */
export const CREATE_EVENT = { ID: 8, BYTES: 16 } as const;

/**
 * Bytes of one RECEIVE's data at most: crosvm's 4096-byte message buffer less the struct, which
 * is what a guest proxy sizes its buffers for (the channel ring is one page).
 */
export const MAX_RECEIVE_DATA = 4096 - SEND_RECEIVE.BYTES;

/** CrossDomainCapabilities: version, supported_channels, supports_dmabuf, supports_external_gpu_memory. */
export const CAPS = { VERSION: 0, SUPPORTED_CHANNELS: 4, SUPPORTS_DMABUF: 8, SUPPORTS_EXTERNAL_GPU_MEMORY: 12, BYTES: 16 } as const;

/** Version 1: every command up to and including WRITE (rutabaga's reading). */
export const CAPS_VERSION = 1;

/** virtio-gpu map_info cache type of the memory a context hands out (VIRTIO_GPU_MAP_CACHE_CACHED). */
export const MAP_CACHE_CACHED = 1;

/** The capset data: Wayland channels, memory without dma-bufs (memfds). */
export function capabilities(): Uint8Array {
  const b = new Uint8Array(CAPS.BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(CAPS.VERSION, CAPS_VERSION, true);
  v.setUint32(CAPS.SUPPORTED_CHANNELS, 1 << CHANNEL_TYPE_WAYLAND, true);
  return b;
}
