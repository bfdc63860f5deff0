/*
 * What the e2e guest programs (blob-map.c, wayland-proxy.c) need of virtio-gpu: Linux's virtgpu
 * uapi (include/uapi/drm/virtgpu_drm.h), spelled out here because Debian ships that header only in
 * an old libdrm-dev without blobs, and the cross-domain (capset 5) wire format as
 * src/renderers/cross-domain/protocol.ts has it. Define E2E_PROG (the program's name) first.
 */
#ifndef E2E_VIRTGPU_H
#define E2E_VIRTGPU_H
#include <errno.h>
#include <linux/ioctl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

/* --- Linux virtgpu uapi (DRM_COMMAND_BASE 0x40 on the 'd' ioctl base) --- */
struct virtgpu_map { uint64_t offset; uint32_t handle, pad; };
struct virtgpu_execbuffer {
	uint32_t flags, size;
	uint64_t command, bo_handles;
	uint32_t num_bo_handles;
	int32_t fence_fd;
	uint32_t ring_idx, pad;
};
struct virtgpu_getparam { uint64_t param, value; };
struct virtgpu_wait { uint32_t handle, flags; };
struct virtgpu_create_blob {
	uint32_t blob_mem, blob_flags, bo_handle, res_handle;
	uint64_t size;
	uint32_t pad, cmd_size;
	uint64_t cmd, blob_id;
};
struct virtgpu_context_set_param { uint64_t param, value; };
struct virtgpu_context_init { uint32_t num_params, pad; uint64_t ctx_set_params; };

#define VIRTGPU_IOWR(nr, type) _IOWR('d', 0x40 + (nr), type)
#define IOCTL_MAP VIRTGPU_IOWR(0x01, struct virtgpu_map)
#define IOCTL_EXECBUFFER VIRTGPU_IOWR(0x02, struct virtgpu_execbuffer)
#define IOCTL_GETPARAM VIRTGPU_IOWR(0x03, struct virtgpu_getparam)
#define IOCTL_WAIT VIRTGPU_IOWR(0x08, struct virtgpu_wait)
#define IOCTL_CREATE_BLOB VIRTGPU_IOWR(0x0a, struct virtgpu_create_blob)
#define IOCTL_CONTEXT_INIT VIRTGPU_IOWR(0x0b, struct virtgpu_context_init)

#define PARAM_RESOURCE_BLOB 3
#define PARAM_HOST_VISIBLE 4
#define PARAM_CONTEXT_INIT 6
#define EXECBUF_FENCE_FD_OUT 0x02
#define EXECBUF_RING_IDX 0x04
#define BLOB_MEM_GUEST 1
#define BLOB_MEM_HOST3D 2
#define BLOB_FLAG_MAPPABLE 1
#define CONTEXT_PARAM_CAPSET_ID 1
#define CONTEXT_PARAM_NUM_RINGS 2

/* --- cross-domain (capset 5) wire format, as src/renderers/cross-domain/protocol.ts --- */
#define CAPSET_CROSS_DOMAIN 5
#define CD_CMD_INIT 1
#define CD_CMD_GET_IMAGE_REQUIREMENTS 2
#define CD_CMD_POLL 3
#define CD_CMD_SEND 4
#define CD_CMD_RECEIVE 5
#define CD_CHANNEL_TYPE_WAYLAND 1
#define CD_ID_TYPE_VIRTGPU_BLOB 1
#define CD_QUERY_RING 0
#define CD_CHANNEL_RING 1
#define CD_MAX_IDENTIFIERS 28
struct cd_header { uint8_t cmd, ring_idx; uint16_t cmd_size; uint32_t pad; };
struct cd_init { struct cd_header hdr; uint32_t query_ring_id, channel_ring_id, channel_type; };
struct cd_get_reqs { struct cd_header hdr; uint32_t width, height, drm_format, flags; };
struct cd_reqs {
	uint32_t strides[4], offsets[4];
	uint64_t modifier, size;
	uint32_t blob_id, map_info;
	int32_t memory_idx, physical_device_idx;
};
/* SEND and RECEIVE: the opaque data follows the struct. */
struct cd_send_receive {
	struct cd_header hdr;
	uint32_t num_identifiers, opaque_data_size;
	uint32_t identifiers[CD_MAX_IDENTIFIERS], identifier_types[CD_MAX_IDENTIFIERS], identifier_sizes[CD_MAX_IDENTIFIERS];
};
_Static_assert(sizeof(struct cd_init) == 20, "CrossDomainInit");
_Static_assert(sizeof(struct cd_get_reqs) == 24, "CrossDomainGetImageRequirements");
_Static_assert(sizeof(struct cd_reqs) == 64, "CrossDomainImageRequirements");
_Static_assert(sizeof(struct cd_send_receive) == 352, "CrossDomainSendReceive");

#define DRM_FORMAT_XRGB8888 0x34325258u /* 'XR24' */

/*
 * Helpers: every failure is one "E2E: FAIL <E2E_PROG>: ..." line (with errno when a call failed)
 * on the serial console and exit status 1.
 */
static void fail(const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	printf("E2E: FAIL " E2E_PROG ": ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (e) printf(" (errno %d %s)", e, strerror(e));
	printf("\n");
	exit(1);
}

static void xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int r;
	do r = ioctl(fd, req, arg); while (r < 0 && errno == EINTR);
	if (r < 0) fail("%s", what);
}

/* Submits cmd on `ring`; with fence_out, returns the fence's sync_file fd (else -1). */
static int execbuffer(int fd, const void *cmd, uint32_t size, uint32_t *bo, uint32_t ring, int fence_out, const char *what)
{
	struct virtgpu_execbuffer e = {
		.flags = EXECBUF_RING_IDX | (fence_out ? EXECBUF_FENCE_FD_OUT : 0), .size = size, .command = (uintptr_t)cmd,
		.bo_handles = (uintptr_t)bo, .num_bo_handles = bo ? 1 : 0, .fence_fd = -1, .ring_idx = ring,
	};
	xioctl(fd, IOCTL_EXECBUFFER, &e, what);
	return fence_out ? e.fence_fd : -1;
}

static void *map_bo(int fd, uint32_t handle, size_t size, const char *what)
{
	struct virtgpu_map m = { .handle = handle };
	xioctl(fd, IOCTL_MAP, &m, what);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)m.offset);
	if (p == MAP_FAILED) fail("mmap of %s", what);
	return p;
}
#endif
