/**
 * The device's view of the host-visible shared memory region (virtio shm id 1,
 * VIRTIO_GPU_SHM_ID_HOST_VISIBLE): where RESOURCE_MAP_BLOB places a blob's host memory so the guest
 * can address it. Over vhost-user the front-end owns the region (GET_SHMEM_CONFIG tells it the
 * size) and the back-end asks it to map and unmap memfd ranges (back-end requests SHMEM_MAP /
 * SHMEM_UNMAP); the transport implements this interface, the device only decides what goes where.
 * Offsets and lengths are bytes inside the region; the memory is named by an fd the caller keeps
 * open (the front-end receives a dup over SCM_RIGHTS).
 */
/** VIRTIO_GPU_SHM_ID_HOST_VISIBLE. */
export const SHM_ID_HOST_VISIBLE = 1;

export interface HostVisibleRegion {
  /** Region size in bytes; 0 when the front-end did not negotiate shared memory (no MAP_BLOB). */
  readonly size: number;
  /**
   * Map `length` bytes of `fd` from `fdOffset` at `offset` in the region. Resolves once the
   * front-end acknowledged the mapping; rejects (Error with the reason) if it refused or the
   * channel is gone. The caller has checked bounds, alignment and overlaps.
   */
  map(offset: number, length: number, fd: number, fdOffset: number, writable: boolean): Promise<void>;
  /** Remove the mapping at `offset` of `length` bytes (exactly one earlier map). */
  unmap(offset: number, length: number): Promise<void>;
}

/** No region: what the device sees when SHMEM is not negotiated (QEMU 10's vhost-user-gpu-pci). */
export const NO_HOST_VISIBLE_REGION: HostVisibleRegion = {
  size: 0,
  map: () => Promise.reject(new Error('no host-visible region (the front-end did not negotiate SHMEM)')),
  unmap: () => Promise.reject(new Error('no host-visible region')),
};
