/*
 * wayland-proxy: the e2e guest's Wayland passthrough over a cross-domain context (capset 5), the
 * job sommelier does on ChromeOS (Debian packages no such proxy). Two modes:
 *
 *   wayland-proxy proxy SOCKET   listen on SOCKET, carry one client's bytes to the host compositor
 *                                (CMD_SEND) and its events back (CMD_POLL with a channel-ring
 *                                fence, then the RECEIVE the host wrote into the channel ring);
 *                                exits when the client hangs up. No fds travel this way.
 *   wayland-proxy shm            a client of its own that speaks the Wayland wire protocol over the
 *                                channel: a 64x48 XRGB8888 wl_shm buffer with a known pattern, its
 *                                pool a host3d blob (GET_IMAGE_REQUIREMENTS + RESOURCE_CREATE_BLOB,
 *                                passed to the compositor as a CMD_SEND identifier), on an
 *                                xdg_toplevel; prints "E2E: wayland-shm shown" once weston has
 *                                presented it and then keeps the window until killed.
 *
 * Output lines start with "E2E: "; failures are one "E2E: FAIL wayland-proxy: ..." line and exit 1.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define E2E_PROG "wayland-proxy"
#include "virtgpu.h"

#define RING_BYTES 4096
/* A RECEIVE's data at most: the channel ring less the struct (protocol.ts MAX_RECEIVE_DATA). */
#define MAX_DATA (RING_BYTES - sizeof(struct cd_send_receive))
#define FENCE_TIMEOUT_MS 30000

struct cd {
	int fd;
	uint32_t query_bo;
	volatile struct cd_reqs *query;
	volatile uint8_t *channel;
	uint8_t cmd[sizeof(struct cd_send_receive) + MAX_DATA];
};

/* A ring: one page of guest memory (a guest blob) the host writes into. */
static struct virtgpu_create_blob guest_ring(struct cd *c, volatile void **map, const char *what)
{
	struct virtgpu_create_blob b = { .blob_mem = BLOB_MEM_GUEST, .blob_flags = BLOB_FLAG_MAPPABLE, .size = RING_BYTES };
	xioctl(c->fd, IOCTL_CREATE_BLOB, &b, what);
	*map = map_bo(c->fd, b.bo_handle, RING_BYTES, what);
	memset((void *)*map, 0, RING_BYTES);
	return b;
}

/* CONTEXT_INIT (cross-domain, 2 rings), the query and channel rings, INIT with a Wayland channel. */
static void cd_open(struct cd *c, const char *path)
{
	c->fd = open(path, O_RDWR | O_CLOEXEC);
	if (c->fd < 0) fail("open %s", path);
	struct virtgpu_context_set_param params[] = {
		{ CONTEXT_PARAM_CAPSET_ID, CAPSET_CROSS_DOMAIN },
		{ CONTEXT_PARAM_NUM_RINGS, 2 },
	};
	struct virtgpu_context_init ci = { .num_params = 2, .ctx_set_params = (uintptr_t)params };
	xioctl(c->fd, IOCTL_CONTEXT_INIT, &ci, "CONTEXT_INIT cross-domain (capset 5), 2 rings");
	volatile void *query, *channel;
	struct virtgpu_create_blob q = guest_ring(c, &query, "RESOURCE_CREATE_BLOB guest (query ring)");
	struct virtgpu_create_blob ch = guest_ring(c, &channel, "RESOURCE_CREATE_BLOB guest (channel ring)");
	c->query = query;
	c->query_bo = q.bo_handle;
	c->channel = channel;
	struct cd_init init = {
		.hdr = { .cmd = CD_CMD_INIT, .cmd_size = sizeof(init) },
		.query_ring_id = q.res_handle, .channel_ring_id = ch.res_handle, .channel_type = CD_CHANNEL_TYPE_WAYLAND,
	};
	execbuffer(c->fd, &init, sizeof(init), NULL, CD_QUERY_RING, 0, "EXECBUFFER CROSS_DOMAIN_CMD_INIT");
}

/* CMD_SEND of data (at most MAX_DATA bytes) with virtio-gpu resources as identifiers. */
static void cd_send(struct cd *c, const void *data, size_t len, const uint32_t *blobs, uint32_t nblobs)
{
	struct cd_send_receive *s = (struct cd_send_receive *)c->cmd;
	memset(s, 0, sizeof(*s));
	s->hdr.cmd = CD_CMD_SEND;
	s->hdr.cmd_size = sizeof(*s) + len;
	s->num_identifiers = nblobs;
	s->opaque_data_size = len;
	for (uint32_t i = 0; i < nblobs; i++) {
		s->identifiers[i] = blobs[i];
		s->identifier_types[i] = CD_ID_TYPE_VIRTGPU_BLOB;
	}
	memcpy(c->cmd + sizeof(*s), data, len);
	execbuffer(c->fd, c->cmd, sizeof(*s) + len, NULL, CD_QUERY_RING, 0, "EXECBUFFER CROSS_DOMAIN_CMD_SEND");
}

/* CMD_POLL: the returned fence (ring 1) signals once the host has put the next event in the channel ring. */
static int cd_poll(struct cd *c)
{
	struct cd_header h = { .cmd = CD_CMD_POLL, .cmd_size = sizeof(h) };
	int fence = execbuffer(c->fd, &h, sizeof(h), NULL, CD_CHANNEL_RING, 1, "EXECBUFFER CROSS_DOMAIN_CMD_POLL");
	if (fence < 0) fail("POLL gave no fence fd");
	return fence;
}

/* The RECEIVE in the channel ring (after its fence): its data into buf, the byte count returned. */
static size_t cd_receive(struct cd *c, uint8_t *buf)
{
	const volatile struct cd_send_receive *r = (const volatile struct cd_send_receive *)c->channel;
	errno = 0;
	if (r->hdr.cmd != CD_CMD_RECEIVE) fail("channel ring holds command %u, want RECEIVE", r->hdr.cmd);
	if (r->num_identifiers) fail("RECEIVE with %u identifiers: this proxy carries no fds", r->num_identifiers);
	size_t len = r->opaque_data_size;
	if (len > MAX_DATA) fail("RECEIVE of %zu bytes", len);
	memcpy(buf, (const void *)(c->channel + sizeof(*r)), len);
	return len;
}

static void wait_fence(int fence)
{
	struct pollfd p = { .fd = fence, .events = POLLIN };
	int r;
	do r = poll(&p, 1, FENCE_TIMEOUT_MS); while (r < 0 && errno == EINTR);
	if (r < 0) fail("poll on the channel fence");
	errno = 0;
	if (r == 0) fail("no channel event in %d ms", FENCE_TIMEOUT_MS);
	close(fence);
}

/* Events to the client; 0 if it has hung up meanwhile (what is left for it then goes nowhere). */
static int send_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return 0;
		if (n <= 0) fail("write to the client");
		p += n;
		len -= (size_t)n;
	}
	return 1;
}

static int proxy(struct cd *c, const char *path)
{
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0) fail("listen on %s", path);
	int client = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (client < 0) fail("accept on %s", path);
	static uint8_t buf[MAX_DATA];
	size_t sent = 0, received = 0;
	int fence = cd_poll(c);
	for (;;) {
		struct pollfd p[2] = { { .fd = client, .events = POLLIN }, { .fd = fence, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) continue;
			fail("poll");
		}
		if (p[0].revents) {
			/* Room for a control message only to see that fds came: they would need turning into blobs. */
			char control[CMSG_SPACE(sizeof(int) * CD_MAX_IDENTIFIERS)];
			struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
			struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
			ssize_t n = recvmsg(client, &m, MSG_CMSG_CLOEXEC);
			if (n < 0 && errno == EINTR) continue;
			if (n < 0) fail("read from the client");
			errno = 0;
			if (m.msg_controllen) fail("the client sent fds: this proxy carries none");
			if (n == 0) break;
			cd_send(c, buf, (size_t)n, NULL, 0);
			sent += (size_t)n;
		}
		if (p[1].revents) {
			close(fence);
			size_t n = cd_receive(c, buf);
			if (!send_all(client, buf, n)) break;
			received += n;
			fence = cd_poll(c);
		}
	}
	printf("E2E: wayland-proxy client done: %zu bytes to the compositor, %zu back\n", sent, received);
	return 0;
}

/* --- shm mode: the Wayland wire protocol, as much as one shm toplevel needs --- */

#define WIDTH 64
#define HEIGHT 48
#define SHM_FORMAT_XRGB8888 1
/* Opcodes (wayland.xml, xdg-shell.xml), as WL in test/integration/wayland-wire.ts; EV_ ones are events. */
enum {
	WL_DISPLAY = 1,
	DISPLAY_SYNC = 0, DISPLAY_GET_REGISTRY = 1, DISPLAY_EV_ERROR = 0,
	REGISTRY_BIND = 0, REGISTRY_EV_GLOBAL = 0, CALLBACK_EV_DONE = 0,
	COMPOSITOR_CREATE_SURFACE = 0, SHM_CREATE_POOL = 0, SHM_POOL_CREATE_BUFFER = 0,
	SURFACE_ATTACH = 1, SURFACE_DAMAGE = 2, SURFACE_FRAME = 3, SURFACE_COMMIT = 6,
	WM_BASE_GET_XDG_SURFACE = 2, WM_BASE_PONG = 3, WM_BASE_EV_PING = 0,
	XDG_SURFACE_GET_TOPLEVEL = 1, XDG_SURFACE_ACK_CONFIGURE = 4, XDG_SURFACE_EV_CONFIGURE = 0,
};

struct wl {
	struct cd *cd;
	uint8_t out[MAX_DATA];
	size_t out_len, msg_start;
	/* Events received; the first `used` bytes are the event last returned. */
	uint8_t in[1 << 16];
	size_t in_len, used;
	uint32_t next_id;
	uint32_t wm; /* the xdg_wm_base, once bound */
};

static void put(struct wl *w, uint32_t v)
{
	if (w->out_len + 4 > sizeof(w->out)) fail("request buffer full");
	memcpy(w->out + w->out_len, &v, 4);
	w->out_len += 4;
}

static void begin(struct wl *w, uint32_t obj, uint32_t opcode)
{
	w->msg_start = w->out_len;
	put(w, obj);
	put(w, opcode); /* the size goes into the upper half in end() */
}

static void put_str(struct wl *w, const char *s)
{
	uint32_t len = strlen(s) + 1;
	put(w, len);
	for (uint32_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		memcpy(&v, s + i, len - i < 4 ? len - i : 4);
		put(w, v);
	}
}

static void end(struct wl *w)
{
	uint32_t word;
	memcpy(&word, w->out + w->msg_start + 4, 4);
	word |= (uint32_t)(w->out_len - w->msg_start) << 16;
	memcpy(w->out + w->msg_start + 4, &word, 4);
}

static void flush(struct wl *w, const uint32_t *blobs, uint32_t nblobs)
{
	cd_send(w->cd, w->out, w->out_len, blobs, nblobs);
	w->out_len = 0;
}

/*
 * The next event: its object, opcode and body (valid until the next call). Pings of the
 * xdg_wm_base, once bound, are answered here; a wl_display.error ends the program.
 */
static const uint32_t *next_event(struct wl *w, uint32_t *obj, uint32_t *opcode)
{
	for (;;) {
		memmove(w->in, w->in + w->used, w->in_len - w->used);
		w->in_len -= w->used;
		w->used = 0;
		if (w->in_len >= 8) {
			const uint32_t *m = (const uint32_t *)w->in;
			size_t size = m[1] >> 16;
			errno = 0;
			if (size < 8 || size % 4) fail("event of %zu bytes", size);
			if (w->in_len >= size) {
				*obj = m[0];
				*opcode = m[1] & 0xffff;
				w->used = size;
				if (*obj == WL_DISPLAY && *opcode == DISPLAY_EV_ERROR) fail("wl_display.error: object %u code %u", m[2], m[3]);
				if (w->wm && *obj == w->wm && *opcode == WM_BASE_EV_PING) {
					begin(w, w->wm, WM_BASE_PONG); put(w, m[2]); end(w);
					flush(w, NULL, 0);
					continue;
				}
				return m + 2;
			}
		}
		if (w->in_len + MAX_DATA > sizeof(w->in)) fail("event buffer full");
		wait_fence(cd_poll(w->cd));
		w->in_len += cd_receive(w->cd, w->in + w->in_len);
	}
}

static uint32_t wl_bind(struct wl *w, uint32_t registry, uint32_t name, const char *iface, uint32_t version)
{
	uint32_t id = w->next_id++;
	begin(w, registry, REGISTRY_BIND);
	put(w, name);
	put_str(w, iface);
	put(w, version);
	put(w, id);
	end(w);
	return id;
}

static _Noreturn void shm(struct cd *c)
{
	static struct wl w;
	w.cd = c;
	w.next_id = 2;
	uint32_t obj, op;
	const uint32_t *body;

	/* wl_display.get_registry + sync: the globals we need, by name. */
	uint32_t registry = w.next_id++, cb = w.next_id++;
	begin(&w, WL_DISPLAY, DISPLAY_GET_REGISTRY); put(&w, registry); end(&w);
	begin(&w, WL_DISPLAY, DISPLAY_SYNC); put(&w, cb); end(&w);
	flush(&w, NULL, 0);
	uint32_t compositor_name = 0, shm_name = 0, wm_name = 0;
	while (body = next_event(&w, &obj, &op), !(obj == cb && op == CALLBACK_EV_DONE)) {
		if (obj != registry || op != REGISTRY_EV_GLOBAL) continue;
		const char *iface = (const char *)(body + 2);
		if (!strcmp(iface, "wl_compositor")) compositor_name = body[0];
		else if (!strcmp(iface, "wl_shm")) shm_name = body[0];
		else if (!strcmp(iface, "xdg_wm_base")) wm_name = body[0];
	}
	errno = 0;
	if (!compositor_name || !shm_name || !wm_name) fail("no wl_compositor, wl_shm or xdg_wm_base");

	/* The pool: a host3d blob laid out by the host for WIDTH x HEIGHT XR24, with the pattern. */
	struct cd_get_reqs get = {
		.hdr = { .cmd = CD_CMD_GET_IMAGE_REQUIREMENTS, .cmd_size = sizeof(get) },
		.width = WIDTH, .height = HEIGHT, .drm_format = DRM_FORMAT_XRGB8888,
	};
	execbuffer(c->fd, &get, sizeof(get), &c->query_bo, CD_QUERY_RING, 0, "EXECBUFFER GET_IMAGE_REQUIREMENTS");
	struct virtgpu_wait wt = { .handle = c->query_bo };
	xioctl(c->fd, IOCTL_WAIT, &wt, "WAIT for the GET_IMAGE_REQUIREMENTS fence");
	uint64_t size = c->query->size;
	uint32_t stride = c->query->strides[0];
	errno = 0;
	if (size < (uint64_t)stride * HEIGHT || stride < WIDTH * 4 || !c->query->blob_id) fail("implausible image requirements");
	struct virtgpu_create_blob img = {
		.blob_mem = BLOB_MEM_HOST3D, .blob_flags = BLOB_FLAG_MAPPABLE, .size = size, .blob_id = c->query->blob_id,
	};
	xioctl(c->fd, IOCTL_CREATE_BLOB, &img, "RESOURCE_CREATE_BLOB host3d (the pool)");
	volatile uint8_t *px = map_bo(c->fd, img.bo_handle, size, "the pool blob");
	/* R 0x5a, G = 4x, B = 5y: patternColor() in test/integration/wayland-guest-client.ts. */
	for (uint32_t y = 0; y < HEIGHT; y++)
		for (uint32_t x = 0; x < WIDTH; x++)
			*(volatile uint32_t *)(px + y * stride + x * 4) = 0xff000000u | 0x5a0000u | (x * 4) << 8 | y * 5;

	uint32_t compositor = wl_bind(&w, registry, compositor_name, "wl_compositor", 4);
	uint32_t wshm = wl_bind(&w, registry, shm_name, "wl_shm", 1);
	uint32_t wm = w.wm = wl_bind(&w, registry, wm_name, "xdg_wm_base", 1);
	uint32_t pool = w.next_id++, buffer = w.next_id++, surface = w.next_id++, xdg_surface = w.next_id++, toplevel = w.next_id++;
	begin(&w, wshm, SHM_CREATE_POOL); put(&w, pool); put(&w, (uint32_t)size); end(&w); /* the fd is the identifier */
	flush(&w, &img.res_handle, 1);
	begin(&w, pool, SHM_POOL_CREATE_BUFFER); put(&w, buffer); put(&w, 0); put(&w, WIDTH); put(&w, HEIGHT); put(&w, stride); put(&w, SHM_FORMAT_XRGB8888); end(&w);
	begin(&w, compositor, COMPOSITOR_CREATE_SURFACE); put(&w, surface); end(&w);
	begin(&w, wm, WM_BASE_GET_XDG_SURFACE); put(&w, xdg_surface); put(&w, surface); end(&w);
	begin(&w, xdg_surface, XDG_SURFACE_GET_TOPLEVEL); put(&w, toplevel); end(&w);
	begin(&w, surface, SURFACE_COMMIT); end(&w);
	flush(&w, NULL, 0);

	/* The first configure is acked with the buffer attached. */
	while (body = next_event(&w, &obj, &op), !(obj == xdg_surface && op == XDG_SURFACE_EV_CONFIGURE)) {}
	uint32_t serial = body[0];
	uint32_t frame = w.next_id++;
	begin(&w, xdg_surface, XDG_SURFACE_ACK_CONFIGURE); put(&w, serial); end(&w);
	begin(&w, surface, SURFACE_ATTACH); put(&w, buffer); put(&w, 0); put(&w, 0); end(&w);
	begin(&w, surface, SURFACE_DAMAGE); put(&w, 0); put(&w, 0); put(&w, WIDTH); put(&w, HEIGHT); end(&w);
	begin(&w, surface, SURFACE_FRAME); put(&w, frame); end(&w);
	begin(&w, surface, SURFACE_COMMIT); end(&w);
	flush(&w, NULL, 0);
	while (next_event(&w, &obj, &op), !(obj == frame && op == CALLBACK_EV_DONE)) {}
	printf("E2E: wayland-shm shown %ux%u stride=%u pool=%llu bytes (host3d res %u)\n", WIDTH, HEIGHT, stride,
	       (unsigned long long)size, img.res_handle);
	/* The window stays while the host takes weston's screenshot; the host then ends the VM. */
	for (;;) pause();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	static struct cd c;
	if (argc == 3 && !strcmp(argv[1], "proxy")) {
		cd_open(&c, "/dev/dri/card0");
		return proxy(&c, argv[2]);
	}
	if (argc == 2 && !strcmp(argv[1], "shm")) {
		cd_open(&c, "/dev/dri/card0");
		shm(&c);
	}
	errno = 0;
	fail("usage: wayland-proxy proxy SOCKET | wayland-proxy shm");
}
