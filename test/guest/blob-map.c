/*
 * blob-map: the e2e guest's check that a host blob reaches the guest through the device's
 * host-visible shared memory (SHMEM) region, done the way a cross-domain client does it:
 *
 *   CONTEXT_INIT (capset 5 = cross-domain, 2 rings) -> a guest blob as the query ring ->
 *   CROSS_DOMAIN_CMD_INIT (no channel: query only) -> GET_IMAGE_REQUIREMENTS (fenced on ring 0,
 *   waited for) -> RESOURCE_CREATE_BLOB HOST3D with the requirements' blob id -> MAP + mmap ->
 *   write a pattern, print the marker -> poll until the host has written the complement of it.
 *
 * Output lines start with "E2E: " (the host reads the serial console); any failure is one
 * "E2E: FAIL blob-map: ..." line (with errno when a call failed) and exit status 1. Built statically on the host (build-guest.sh
 * --shmem); the ioctl structs and wire format are in virtgpu.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define E2E_PROG "blob-map"
#include "virtgpu.h"

#define WIDTH 64
#define HEIGHT 64
#define POLL_SECONDS 30

static int getparam(int fd, uint64_t param)
{
	int value = 0;
	struct virtgpu_getparam p = { .param = param, .value = (uintptr_t)&value };
	/* An unknown param is EINVAL: report it as 0 rather than failing, the caller decides. */
	if (ioctl(fd, IOCTL_GETPARAM, &p) < 0) return 0;
	return value;
}

/* The guest's word i; the host answers with its complement. */
static uint32_t pattern(uint32_t i) { return i * 2654435761u ^ 0x5a5a0000u; }

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/dri/card0";
	setvbuf(stdout, NULL, _IOLBF, 0);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) fail("open %s", path);

	int blob = getparam(fd, PARAM_RESOURCE_BLOB), visible = getparam(fd, PARAM_HOST_VISIBLE);
	int init = getparam(fd, PARAM_CONTEXT_INIT);
	printf("E2E: blob-map params resource_blob=%d host_visible=%d context_init=%d\n", blob, visible, init);
	errno = 0;
	if (!blob || !visible || !init) fail("the device lacks resource_blob, host_visible or context_init");

	struct virtgpu_context_set_param params[] = {
		{ CONTEXT_PARAM_CAPSET_ID, CAPSET_CROSS_DOMAIN },
		{ CONTEXT_PARAM_NUM_RINGS, 2 },
	};
	struct virtgpu_context_init ci = { .num_params = 2, .ctx_set_params = (uintptr_t)params };
	xioctl(fd, IOCTL_CONTEXT_INIT, &ci, "CONTEXT_INIT cross-domain (capset 5), 2 rings");

	/* The query ring: one page of guest memory the host writes requirements into. */
	struct virtgpu_create_blob ring = {
		.blob_mem = BLOB_MEM_GUEST, .blob_flags = BLOB_FLAG_MAPPABLE, .size = 4096,
	};
	xioctl(fd, IOCTL_CREATE_BLOB, &ring, "RESOURCE_CREATE_BLOB guest (query ring)");
	volatile struct cd_reqs *reqs = map_bo(fd, ring.bo_handle, 4096, "the query ring");
	memset((void *)reqs, 0, sizeof(*reqs));

	struct cd_init cmd_init = {
		.hdr = { .cmd = CD_CMD_INIT, .cmd_size = sizeof(cmd_init) },
		.query_ring_id = ring.res_handle, .channel_ring_id = 0, .channel_type = 0,
	};
	execbuffer(fd, &cmd_init, sizeof(cmd_init), NULL, 0, 0, "EXECBUFFER CROSS_DOMAIN_CMD_INIT");

	struct cd_get_reqs cmd_reqs = {
		.hdr = { .cmd = CD_CMD_GET_IMAGE_REQUIREMENTS, .cmd_size = sizeof(cmd_reqs) },
		.width = WIDTH, .height = HEIGHT, .drm_format = DRM_FORMAT_XRGB8888,
	};
	/* The ring's bo rides along, so WAIT on it waits for this command's ring-0 fence. */
	execbuffer(fd, &cmd_reqs, sizeof(cmd_reqs), &ring.bo_handle, 0, 0, "EXECBUFFER GET_IMAGE_REQUIREMENTS");
	struct virtgpu_wait w = { .handle = ring.bo_handle };
	xioctl(fd, IOCTL_WAIT, &w, "WAIT for the GET_IMAGE_REQUIREMENTS fence");
	uint64_t size = reqs->size;
	uint32_t blob_id = reqs->blob_id, stride = reqs->strides[0];
	printf("E2E: blob-map requirements size=%llu blob_id=%u stride=%u map_info=%u\n",
	       (unsigned long long)size, blob_id, stride, reqs->map_info);
	errno = 0;
	if (size < (uint64_t)stride * HEIGHT || stride < WIDTH * 4 || blob_id == 0)
		fail("implausible requirements for %dx%d XR24", WIDTH, HEIGHT);

	struct virtgpu_create_blob img = {
		.blob_mem = BLOB_MEM_HOST3D, .blob_flags = BLOB_FLAG_MAPPABLE, .size = size, .blob_id = blob_id,
	};
	xioctl(fd, IOCTL_CREATE_BLOB, &img, "RESOURCE_CREATE_BLOB host3d (the image)");
	volatile uint32_t *px = map_bo(fd, img.bo_handle, size, "the host3d blob");
	uint32_t words = (uint32_t)(size / 4);
	for (uint32_t i = 0; i < words; i++) px[i] = pattern(i);
	printf("E2E: blob-map pattern written res=%u size=%llu words=%u\n", img.res_handle,
	       (unsigned long long)size, words);

	/* The host now reads our pattern from its memfd and writes the complement back. */
	double deadline = now() + POLL_SECONDS;
	uint32_t first_bad = 0;
	for (;;) {
		while (first_bad < words && px[first_bad] == ~pattern(first_bad)) first_bad++;
		if (first_bad == words) break;
		if (now() > deadline) {
			errno = 0;
			fail("after %d s word %u is 0x%08x, want the host's 0x%08x (%u of %u words seen)",
			     POLL_SECONDS, first_bad, px[first_bad], ~pattern(first_bad), first_bad, words);
		}
		usleep(10000);
	}
	printf("E2E: blob-map host pattern seen words=%u first=0x%08x last=0x%08x\n", words, px[0], px[words - 1]);
	return 0;
}
