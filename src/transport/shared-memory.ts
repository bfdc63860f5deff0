/**
 * One VIRTIO shared memory region of the device as the vhost-user SHMEM feature gives it: the
 * front-end owns the region (we told it the size in GET_SHMEM_CONFIG) and maps fd ranges into it
 * when we ask with SHMEM_MAP on the back-end channel. The device sees it as a HostVisibleRegion.
 */
import type { BackendChannel } from './backend-channel.js';
import { BackendReq, MMAP, MMAP_MSG_SIZE, MMAP_RW } from './messages.js';

export class SharedMemoryRegion {
  constructor(private readonly channel: BackendChannel, readonly shmid: number, readonly size: number) {}

  map(offset: number, length: number, fd: number, fdOffset: number, writable: boolean): Promise<void> {
    return this.channel.request(BackendReq.SHMEM_MAP, this.message(fdOffset, offset, length, writable ? MMAP_RW : 0), [fd]);
  }

  unmap(offset: number, length: number): Promise<void> {
    return this.channel.request(BackendReq.SHMEM_UNMAP, this.message(0, offset, length, 0), []);
  }

  private message(fdOffset: number, shmOffset: number, length: number, flags: number): Uint8Array {
    const body = new Uint8Array(MMAP_MSG_SIZE);
    const v = new DataView(body.buffer);
    v.setUint8(MMAP.SHMID, this.shmid);
    v.setBigUint64(MMAP.FD_OFFSET, BigInt(fdOffset), true);
    v.setBigUint64(MMAP.SHM_OFFSET, BigInt(shmOffset), true);
    v.setBigUint64(MMAP.LEN, BigInt(length), true);
    v.setBigUint64(MMAP.FLAGS, BigInt(flags), true);
    return body;
  }
}
