// The part of virglrenderer's C ABI the addon uses, declared here so that building needs no GPU
// headers: the library is dlopen()ed at run time. Layouts follow Debian 12's 0.10.4 header built
// with VIRGL_RENDERER_UNSTABLE_APIS (the library itself is always built that way, so its callback
// struct has the v3/v4 members); 1.x only appended to these structs.
#pragma once

#include <sys/uio.h>

#include <cstdint>

namespace vg::virgl {

// virgl_renderer_init flags.
constexpr int kUseEgl = 1 << 0;
constexpr int kThreadSync = 1 << 1;
constexpr int kUseGlx = 1 << 2;
constexpr int kUseSurfaceless = 1 << 3;
constexpr int kUseGles = 1 << 4;
constexpr int kUseExternalBlob = 1 << 5;
constexpr int kVenus = 1 << 6;
constexpr int kNoVirgl = 1 << 7;
constexpr int kAsyncFenceCb = 1 << 8;
constexpr int kRenderServer = 1 << 9;
constexpr int kDrm = 1 << 10;

constexpr uint32_t kContextFlagCapsetIdMask = 0xff;
constexpr uint32_t kFenceFlagMergeable = 1 << 0;
constexpr uint32_t kResourceFlagY0Top = 1 << 0;

using GlContext = void*;

struct GlCtxParam {
  int version;
  bool shared;
  int major_ver;
  int minor_ver;
  int compat_ctx;  // 1.x only; 0.10.4 never reads it (and we never get called: GL callbacks are NULL)
};

// struct virgl_renderer_callbacks. `version` says how many members the library may read:
// 1 = up to make_current, 2 = + get_drm_fd, 3 = + write_context_fence/get_server_fd, 4 = all.
struct Callbacks {
  int version;
  void (*write_fence)(void* cookie, uint32_t fence);
  GlContext (*create_gl_context)(void* cookie, int scanout, GlCtxParam* param);
  void (*destroy_gl_context)(void* cookie, GlContext ctx);
  int (*make_current)(void* cookie, int scanout, GlContext ctx);
  int (*get_drm_fd)(void* cookie);                                                             // v2
  void (*write_context_fence)(void* cookie, uint32_t ctx_id, uint32_t ring_idx, uint64_t fence);  // v3
  int (*get_server_fd)(void* cookie, uint32_t version);                                       // v3
  void* (*get_egl_display)(void* cookie);                                                     // v4
};

struct ResourceCreateArgs {
  uint32_t handle, target, format, bind, width, height, depth, array_size, last_level, nr_samples,
      flags;
};
static_assert(sizeof(ResourceCreateArgs) == 44);

struct Box {
  uint32_t x, y, z, w, h, d;
};

// struct virgl_renderer_resource_info (0.10.4). 1.x appends `int fd`: callers pass InfoBuf so a
// newer library never writes past the end.
struct ResourceInfo {
  uint32_t handle, virgl_format, width, height, depth, flags, tex_id, stride;
  int drm_fourcc;
};
static_assert(sizeof(ResourceInfo) == 36);
union InfoBuf {
  ResourceInfo info;
  uint8_t room[128];
};

// Entry points, as function pointer types (the names are the dlsym names minus "virgl_renderer_").
using InitFn = int (*)(void* cookie, int flags, Callbacks* cb);
using CleanupFn = void (*)(void* cookie);
using PollFn = void (*)();
using GetPollFdFn = int (*)();
using GetCapSetFn = void (*)(uint32_t set, uint32_t* max_ver, uint32_t* max_size);
using FillCapsFn = void (*)(uint32_t set, uint32_t version, void* caps);
using ContextCreateFn = int (*)(uint32_t handle, uint32_t nlen, const char* name);
using ContextCreateWithFlagsFn = int (*)(uint32_t ctx_id, uint32_t ctx_flags, uint32_t nlen,
                                         const char* name);
using ContextDestroyFn = void (*)(uint32_t handle);
using SubmitCmdFn = int (*)(void* buffer, int ctx_id, int ndw);
using ResourceCreateFn = int (*)(ResourceCreateArgs* args, iovec* iov, uint32_t num_iovs);
using ResourceUnrefFn = void (*)(uint32_t res_handle);
using AttachIovFn = int (*)(int res_handle, iovec* iov, int num_iovs);
using DetachIovFn = void (*)(int res_handle, iovec** iov, int* num_iovs);
using CtxResourceFn = void (*)(int ctx_id, int res_handle);
using TransferReadFn = int (*)(uint32_t handle, uint32_t ctx_id, uint32_t level, uint32_t stride,
                               uint32_t layer_stride, Box* box, uint64_t offset, iovec* iov,
                               int iovec_cnt);
using TransferWriteFn = int (*)(uint32_t handle, uint32_t ctx_id, int level, uint32_t stride,
                                uint32_t layer_stride, Box* box, uint64_t offset, iovec* iov,
                                unsigned int iovec_cnt);
using CreateFenceFn = int (*)(int client_fence_id, uint32_t ctx_id);
using ContextCreateFenceFn = int (*)(uint32_t ctx_id, uint32_t flags, uint32_t ring_idx,
                                     uint64_t fence_id);
using ContextPollFn = void (*)(uint32_t ctx_id);
using ResourceGetInfoFn = int (*)(int res_handle, ResourceInfo* info);

}  // namespace vg::virgl
