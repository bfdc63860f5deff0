// virglrenderer binding: dlopen()ed at run time (see virgl-abi.h), one renderer per process.
//
// virglrenderer is a process-global GL state machine bound to the thread that initialised it, so
// the binding keeps global state and refuses calls from any other thread (-EPERM). One mutex
// (g_lock) is held across every call into the library: it serialises load/init/cleanup against
// concurrent callers; calls from the owner thread never contend.
//
// Nothing from JS reaches the library unchecked: ids and sizes are range-checked, iovec addresses
// must lie inside live mappings made by mmap() (and are pinned while virgl holds them), readback
// destinations are bounds-checked against the resource, and command buffers are 4-byte aligned.
//
// virglrenderer returns errno codes with either sign: results are normalised to 0 / -errno.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "common.h"
#include "virgl-abi.h"

namespace vg {
namespace {

using namespace virgl;

constexpr const char* kDefaultPath = "libvirglrenderer.so.1";
constexpr size_t kMaxIovs = 16384;          // QEMU's bound for nr_entries
constexpr size_t kMaxSubmit = 64u << 20;    // bytes; guest Mesa sends <= 256 KiB per submit
constexpr size_t kMaxNameLen = 64;          // virtio debug_name
constexpr uint32_t kMaxRingIdx = 63;        // virtio ring_idx range
constexpr uint64_t kGlobalRing = 0xFFFFFFFF;  // ring_idx reported for ctx-0 (write_fence) fences

// Symbols every supported version exports (0.10.4 and later).
struct Api {
  void* lib = nullptr;
  std::string path, version;
  std::vector<std::string> optional;  // optional symbols found
  InitFn init;
  CleanupFn cleanup;
  PollFn poll;
  GetPollFdFn get_poll_fd;
  GetCapSetFn get_cap_set;
  FillCapsFn fill_caps;
  ContextCreateFn context_create;
  ContextDestroyFn context_destroy;
  SubmitCmdFn submit_cmd;
  ResourceCreateFn resource_create;
  ResourceUnrefFn resource_unref;
  AttachIovFn resource_attach_iov;
  DetachIovFn resource_detach_iov;
  CtxResourceFn ctx_attach_resource;
  CtxResourceFn ctx_detach_resource;
  TransferReadFn transfer_read_iov;
  TransferWriteFn transfer_write_iov;
  CreateFenceFn create_fence;
  ResourceGetInfoFn resource_get_info;
  // Optional (null when missing).
  ContextCreateWithFlagsFn context_create_with_flags = nullptr;
  ContextCreateFenceFn context_create_fence = nullptr;
  ContextPollFn context_poll = nullptr;
};

// Newer or unstable entry points the daemon may want to know about; reported by virglLoad().
constexpr const char* kOptionalSymbols[] = {
    "virgl_renderer_context_create_with_flags", "virgl_renderer_context_create_fence",
    "virgl_renderer_context_poll",              "virgl_renderer_context_get_poll_fd",
    "virgl_renderer_resource_get_info_ext",     "virgl_renderer_resource_create_blob",
    "virgl_renderer_resource_map",              "virgl_renderer_resource_unmap",
    "virgl_renderer_resource_get_map_info",     "virgl_renderer_resource_export_blob",
    "virgl_renderer_resource_import_blob",      "virgl_renderer_get_fd_for_texture2",
    "virgl_renderer_execute",                   "virgl_renderer_export_fence",
    "virgl_renderer_submit_cmd2",               "virgl_renderer_resource_map_fixed",
    "virgl_set_log_callback",
};

// A resource created through the binding: the iovecs handed to virgl as its backing (virgl keeps
// the pointer until detach; empty = none attached), and the mapping pins that keep their memory
// mapped meanwhile.
struct Resource {
  std::vector<iovec> iov;
  std::vector<const void*> pins;
};

std::mutex g_lock;  // guards everything below except the fence queue
Api g_api;
bool g_ready = false;  // virgl_renderer_init succeeded and no cleanup since
pthread_t g_owner;     // the thread that initialised it
napi_env g_ownerEnv = nullptr;
// Live resources by id. virglrenderer 0.10.4 answers 0 to creating an id that already exists, so
// the binding tracks ids itself.
std::map<uint32_t, Resource> g_resources;

// The fence callbacks run inside virgl calls on the owner thread, or on virgl's sync thread with
// ASYNC_FENCE_CB: they only append here, under their own lock.
std::mutex g_fenceLock;
std::vector<uint64_t> g_fences;  // (ctx, ring, fence) triples

int g_cookie;  // virgl_renderer_init refuses a NULL cookie; the value is unused.

void OnWriteFence(void*, uint32_t fence) {
  std::lock_guard<std::mutex> lock(g_fenceLock);
  g_fences.insert(g_fences.end(), {0, kGlobalRing, fence});
}

void OnWriteContextFence(void*, uint32_t ctx, uint32_t ring, uint64_t fence) {
  std::lock_guard<std::mutex> lock(g_fenceLock);
  g_fences.insert(g_fences.end(), {ctx, ring, fence});
}

// Static: virgl keeps the pointer. Version 3 = up to write_context_fence/get_server_fd. The GL
// callbacks stay NULL so virgl makes its own EGL context (USE_EGL[|USE_SURFACELESS]).
Callbacks g_callbacks = {3, OnWriteFence, nullptr, nullptr, nullptr, nullptr, OnWriteContextFence,
                         nullptr, nullptr};

inline int NegErr(int r) { return r == 0 ? 0 : -std::abs(r); }

// 0 if the renderer may be called from here; g_lock held.
int Usable() {
  if (!g_ready) return -ENODEV;
  if (!pthread_equal(g_owner, pthread_self())) return -EPERM;
  return 0;
}

void ReleaseBacking(Resource& r) {
  for (const void* pin : r.pins) UnpinRange(pin);
  r.pins.clear();
  r.iov.clear();
}

// Takes the iovecs back from virgl (it keeps the pointer until told) and releases them.
void DetachLocked(uint32_t id, Resource& r) {
  if (r.iov.empty()) return;
  iovec* iov = nullptr;
  int n = 0;
  g_api.resource_detach_iov(static_cast<int>(id), &iov, &n);
  ReleaseBacking(r);
}

// The resource with this id, or null.
Resource* FindResource(uint32_t id) {
  auto it = g_resources.find(id);
  return it == g_resources.end() ? nullptr : &it->second;
}

void CleanupLocked() {
  g_api.cleanup(&g_cookie);
  // Resources are gone with the renderer: nothing references our iovecs any more.
  for (auto& [id, r] : g_resources) ReleaseBacking(r);
  g_resources.clear();
  {
    std::lock_guard<std::mutex> lock(g_fenceLock);
    g_fences.clear();
  }
  g_ready = false;
  g_ownerEnv = nullptr;
}

// The owner thread's env is going away (worker exit, process teardown): virgl must be cleaned up
// on its own thread, which is this one.
void OnEnvTeardown(void*) {
  std::lock_guard<std::mutex> lock(g_lock);
  if (g_ready) CleanupLocked();
}

// Reads info[first..first+N) as u32s. False: TypeError pending. *bad: some value is not an
// integer in [0, 2^32).
template <size_t N>
bool ArgsU32(const Napi::CallbackInfo& info, size_t first, uint32_t (&out)[N], bool* bad) {
  *bad = false;
  for (size_t i = 0; i < N; i++) {
    int64_t v;
    if (!ArgIndex(info, first + i, &v)) return false;
    if (v < 0 || v > UINT32_MAX) *bad = true;
    out[i] = static_cast<uint32_t>(v);
  }
  return true;
}

// A Uint32Array argument. False: TypeError pending.
bool ArgU32Array(Napi::Value v, const uint32_t** data, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    return ThrowType(v.Env(), "expected a Uint32Array");
  auto a = v.As<Napi::Uint32Array>();
  *data = a.Data();
  *len = a.ElementLength();
  return true;
}

// A 6-element Uint32Array box (x, y, z, w, h, d). False: TypeError pending; *ok false if the
// length is wrong.
bool ArgBox(Napi::Value v, Box* box, bool* ok) {
  const uint32_t* d;
  size_t n;
  if (!ArgU32Array(v, &d, &n)) return false;
  *ok = n == 6;
  if (*ok) *box = Box{d[0], d[1], d[2], d[3], d[4], d[5]};
  return true;
}

// --- loading ---

Napi::Value LoadResult(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", true);
  o.Set("path", g_api.path);
  o.Set("version", g_api.version.empty() ? env.Null() : Napi::String::New(env, g_api.version));
  Napi::Array opt = Napi::Array::New(env, g_api.optional.size());
  for (size_t i = 0; i < g_api.optional.size(); i++) opt.Set(i, g_api.optional[i]);
  o.Set("optional", opt);
  return o;
}

Napi::Value LoadError(Napi::Env env, const std::string& msg) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", false);
  o.Set("error", msg);
  return o;
}

// virglrenderer has no version call: report the file's version suffix (libvirglrenderer.so.1.7.7
// is release 0.10.4), found through the link map so the real file behind the symlink is named.
void ReadFileVersion(void* lib) {
  link_map* lm = nullptr;
  if (dlinfo(lib, RTLD_DI_LINKMAP, &lm) != 0 || lm == nullptr || lm->l_name == nullptr) return;
  char* real = realpath(lm->l_name, nullptr);
  g_api.path = real ? real : lm->l_name;
  free(real);
  size_t at = g_api.path.rfind(".so.");
  if (at != std::string::npos) g_api.version = g_api.path.substr(at + 4);
}

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = kDefaultPath;
  if (!info[0].IsNull() && !info[0].IsUndefined()) {
    bool nul;
    if (!ArgString(info, 0, &path, &nul)) return {};
    if (nul || path.empty()) return LoadError(env, "virglLoad: invalid library path");
  }
  std::lock_guard<std::mutex> lock(g_lock);
  if (g_api.lib != nullptr) return LoadResult(env);  // loaded once per process; path ignored now

  dlerror();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* e = dlerror();
    return LoadError(env, "cannot load virglrenderer (" + path + "): " + (e ? e : "dlopen failed"));
  }
  Api api;
  std::string missing;
  auto need = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
    if (fn == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
  need(api.init, "virgl_renderer_init");
  need(api.cleanup, "virgl_renderer_cleanup");
  need(api.poll, "virgl_renderer_poll");
  need(api.get_poll_fd, "virgl_renderer_get_poll_fd");
  need(api.get_cap_set, "virgl_renderer_get_cap_set");
  need(api.fill_caps, "virgl_renderer_fill_caps");
  need(api.context_create, "virgl_renderer_context_create");
  need(api.context_destroy, "virgl_renderer_context_destroy");
  need(api.submit_cmd, "virgl_renderer_submit_cmd");
  need(api.resource_create, "virgl_renderer_resource_create");
  need(api.resource_unref, "virgl_renderer_resource_unref");
  need(api.resource_attach_iov, "virgl_renderer_resource_attach_iov");
  need(api.resource_detach_iov, "virgl_renderer_resource_detach_iov");
  need(api.ctx_attach_resource, "virgl_renderer_ctx_attach_resource");
  need(api.ctx_detach_resource, "virgl_renderer_ctx_detach_resource");
  need(api.transfer_read_iov, "virgl_renderer_transfer_read_iov");
  need(api.transfer_write_iov, "virgl_renderer_transfer_write_iov");
  need(api.create_fence, "virgl_renderer_create_fence");
  need(api.resource_get_info, "virgl_renderer_resource_get_info");
  if (!missing.empty()) {
    dlclose(lib);
    return LoadError(env, path + " is not a usable virglrenderer: missing " + missing);
  }
  for (const char* name : kOptionalSymbols)
    if (dlsym(lib, name) != nullptr) api.optional.emplace_back(name);
  api.context_create_with_flags = reinterpret_cast<ContextCreateWithFlagsFn>(
      dlsym(lib, "virgl_renderer_context_create_with_flags"));
  api.context_create_fence =
      reinterpret_cast<ContextCreateFenceFn>(dlsym(lib, "virgl_renderer_context_create_fence"));
  api.context_poll = reinterpret_cast<ContextPollFn>(dlsym(lib, "virgl_renderer_context_poll"));
  api.lib = lib;  // never dlclose()d: Mesa/EGL do not survive being unloaded
  api.path = path;
  g_api = std::move(api);
  ReadFileVersion(lib);
  return LoadResult(env);
}

// --- life cycle ---

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t flags;
  if (!ArgIndex(info, 0, &flags)) return {};
  if (flags < 0 || flags > INT_MAX) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (g_api.lib == nullptr) return Err(env, ENODEV);
  if (g_ready) return Err(env, EBUSY);  // one renderer per process
  int r = g_api.init(&g_cookie, static_cast<int>(flags), &g_callbacks);
  // virgl reports most init failures (winsys/EGL, bad callbacks) as a bare -1.
  if (r != 0) return Num(env, std::abs(r) == 1 ? -EIO : NegErr(r));
  g_ready = true;
  g_owner = pthread_self();
  g_ownerEnv = env;
  napi_add_env_cleanup_hook(env, OnEnvTeardown, nullptr);
  return Num(env, 0);
}

Napi::Value Cleanup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  napi_remove_env_cleanup_hook(g_ownerEnv, OnEnvTeardown, nullptr);
  CleanupLocked();
  return Num(env, 0);
}

// --- capsets ---

Napi::Value GetCapset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  uint32_t ver = 0, size = 0;
  std::lock_guard<std::mutex> lock(g_lock);
  if (!bad && Usable() == 0) g_api.get_cap_set(a[0], &ver, &size);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Num(env, ver));
  out.Set(1u, Num(env, size));
  return out;
}

Napi::Value FillCaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[2];  // set, version
  bool bad;
  uint8_t* out;
  size_t outLen;
  if (!ArgsU32(info, 0, a, &bad) || !ArgBytes(info[2], &out, &outLen)) return {};
  if (bad) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  uint32_t maxVer = 0, size = 0;
  g_api.get_cap_set(a[0], &maxVer, &size);
  // fill_caps writes up to the set's max size and silently ignores a version it does not know.
  if (size == 0 || a[1] > maxVer || outLen < size) return Err(env, EINVAL);
  g_api.fill_caps(a[0], a[1], out);
  return Num(env, size);
}

// --- contexts ---

Napi::Value ContextCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[2];  // ctx, capset
  bool bad, nul;
  std::string name;
  if (!ArgsU32(info, 0, a, &bad) || !ArgString(info, 2, &name, &nul)) return {};
  if (bad || nul || a[0] == 0 || a[1] > kContextFlagCapsetIdMask) return Err(env, EINVAL);
  if (name.size() > kMaxNameLen) name.resize(kMaxNameLen);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  uint32_t nlen = static_cast<uint32_t>(name.size());
  if (a[1] == 0) return Num(env, NegErr(g_api.context_create(a[0], nlen, name.c_str())));
  if (g_api.context_create_with_flags == nullptr) return Err(env, ENOSYS);
  return Num(env, NegErr(g_api.context_create_with_flags(a[0], a[1], nlen, name.c_str())));
}

Napi::Value ContextDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad || a[0] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  g_api.context_destroy(a[0]);
  return Num(env, 0);
}

Napi::Value CtxResource(const Napi::CallbackInfo& info, bool attach) {
  Napi::Env env = info.Env();
  uint32_t a[2];  // ctx, res
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad || a[0] == 0 || a[1] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  (attach ? g_api.ctx_attach_resource : g_api.ctx_detach_resource)(static_cast<int>(a[0]),
                                                                   static_cast<int>(a[1]));
  return Num(env, 0);
}
Napi::Value CtxAttach(const Napi::CallbackInfo& info) { return CtxResource(info, true); }
Napi::Value CtxDetach(const Napi::CallbackInfo& info) { return CtxResource(info, false); }

Napi::Value Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  uint8_t* data;
  size_t len;
  if (!ArgsU32(info, 0, a, &bad) || !ArgBytes(info[1], &data, &len)) return {};
  if (bad || a[0] == 0 || len % 4 != 0 || len > kMaxSubmit) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  // The decoder reads dwords in place: give it an aligned buffer.
  std::vector<uint32_t> copy;
  uint32_t empty = 0;
  void* buf = data;
  if (len == 0) {
    buf = &empty;
  } else if (reinterpret_cast<uintptr_t>(data) % 4 != 0) {
    copy.resize(len / 4);
    std::memcpy(copy.data(), data, len);
    buf = copy.data();
  }
  return Num(env, NegErr(g_api.submit_cmd(buf, static_cast<int>(a[0]), static_cast<int>(len / 4))));
}

// --- resources ---

Napi::Value ResourceCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t* d;
  size_t n;
  if (!ArgU32Array(info[0], &d, &n)) return {};
  if (n != 11 || d[0] == 0) return Err(env, EINVAL);
  ResourceCreateArgs args;
  std::memcpy(&args, d, sizeof(args));
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  if (g_resources.count(args.handle) != 0) return Err(env, EEXIST);
  int r = NegErr(g_api.resource_create(&args, nullptr, 0));
  if (r == 0) g_resources.emplace(args.handle, Resource{});
  return Num(env, r);
}

Napi::Value ResourceUnref(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad || a[0] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  auto it = g_resources.find(a[0]);
  if (it == g_resources.end()) return Err(env, EINVAL);
  DetachLocked(it->first, it->second);
  g_api.resource_unref(a[0]);
  g_resources.erase(it);
  return Num(env, 0);
}

Napi::Value AttachIov(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  Napi::Value v = info[1];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
    return TypeErr(env, "iov must be a BigUint64Array");
  auto arr = v.As<Napi::TypedArrayOf<uint64_t>>();
  size_t words = arr.ElementLength();
  if (bad || a[0] == 0 || words == 0 || words % 2 != 0 || words / 2 > kMaxIovs)
    return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  Resource* res = FindResource(a[0]);
  if (res == nullptr) return Err(env, EINVAL);
  if (!res->iov.empty()) return Err(env, EBUSY);

  Resource b;
  b.iov.reserve(words / 2);
  b.pins.reserve(words / 2);
  auto fail = [&](int err) {
    for (const void* pin : b.pins) UnpinRange(pin);
    return Err(env, err);
  };
  for (size_t i = 0; i < words; i += 2) {
    uint64_t addr = arr[i], len = arr[i + 1];
    if (len == 0 || len > SIZE_MAX) return fail(EINVAL);
    const void* pin = PinRange(addr, len);
    if (pin == nullptr) return fail(EFAULT);
    b.pins.push_back(pin);
    b.iov.push_back({reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), static_cast<size_t>(len)});
  }
  int r = g_api.resource_attach_iov(static_cast<int>(a[0]), b.iov.data(), static_cast<int>(b.iov.size()));
  if (r != 0) return fail(std::abs(r));
  *res = std::move(b);  // moving keeps iov.data() where virgl saw it
  return Num(env, 0);
}

Napi::Value DetachIov(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad || a[0] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  Resource* res = FindResource(a[0]);
  if (res == nullptr || res->iov.empty()) return Err(env, EINVAL);  // nothing attached
  DetachLocked(a[0], *res);
  return Num(env, 0);
}

// transfer_{write,read}_iov with iov NULL: between the resource and its attached backing.
Napi::Value Transfer(const Napi::CallbackInfo& info, bool write) {
  Napi::Env env = info.Env();
  uint32_t a[5];  // res, ctx, level, stride, layerStride
  bool bad, boxOk;
  Box box;
  int64_t offset;
  if (!ArgsU32(info, 0, a, &bad) || !ArgBox(info[5], &box, &boxOk) || !ArgIndex(info, 6, &offset))
    return {};
  if (bad || !boxOk || offset < 0 || a[0] == 0 || a[2] > INT_MAX) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  Resource* res = FindResource(a[0]);
  if (res == nullptr || res->iov.empty()) return Err(env, EINVAL);  // no backing to transfer with
  uint64_t off = static_cast<uint64_t>(offset);
  int r = write ? g_api.transfer_write_iov(a[0], a[1], static_cast<int>(a[2]), a[3], a[4], &box, off,
                                           nullptr, 0)
                : g_api.transfer_read_iov(a[0], a[1], a[2], a[3], a[4], &box, off, nullptr, 0);
  return Num(env, NegErr(r));
}
Napi::Value TransferWrite(const Napi::CallbackInfo& info) { return Transfer(info, true); }
Napi::Value TransferRead(const Napi::CallbackInfo& info) { return Transfer(info, false); }

// Bytes per pixel of the formats a scanout can have (virtio_gpu_formats); 0 for others.
uint32_t ScanoutBpp(uint32_t format) {
  switch (format) {
    case 1: case 2: case 3: case 4: case 67: case 68: case 121: case 134: return 4;
    default: return 0;
  }
}

Napi::Value Readback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t res[1], stride[1];
  bool bad1, bad2, boxOk;
  Box box;
  uint8_t* dst;
  size_t dstLen;
  if (!ArgsU32(info, 0, res, &bad1) || !ArgBox(info[1], &box, &boxOk) ||
      !ArgBytes(info[2], &dst, &dstLen) || !ArgsU32(info, 3, stride, &bad2))
    return {};
  if (bad1 || bad2 || !boxOk || res[0] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  if (FindResource(res[0]) == nullptr) return Err(env, EINVAL);
  InfoBuf ib{};
  if (int r = g_api.resource_get_info(static_cast<int>(res[0]), &ib.info)) return Num(env, NegErr(r));
  const ResourceInfo& ri = ib.info;
  uint64_t bpp = ScanoutBpp(ri.virgl_format);
  uint64_t rowBytes = uint64_t{box.w} * bpp;
  if (bpp == 0 || box.z != 0 || box.d != 1 || box.w == 0 || box.h == 0 ||
      uint64_t{box.x} + box.w > ri.width || uint64_t{box.y} + box.h > ri.height ||
      stride[0] < rowBytes || uint64_t{box.h - 1} * stride[0] + rowBytes > dstLen)
    return Err(env, EINVAL);
  iovec iov = {dst, dstLen};
  return Num(env, NegErr(g_api.transfer_read_iov(res[0], 0, 0, stride[0], 0, &box, 0, &iov, 1)));
}

Napi::Value ResourceGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad || a[0] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  InfoBuf ib{};
  if (int r = g_api.resource_get_info(static_cast<int>(a[0]), &ib.info)) return Num(env, NegErr(r));
  const ResourceInfo& ri = ib.info;
  Napi::Object o = Napi::Object::New(env);
  o.Set("format", Num(env, ri.virgl_format));
  o.Set("width", Num(env, ri.width));
  o.Set("height", Num(env, ri.height));
  o.Set("depth", Num(env, ri.depth));
  o.Set("flags", Num(env, ri.flags));
  o.Set("stride", Num(env, ri.stride));
  o.Set("texId", Num(env, ri.tex_id));
  o.Set("drmFourcc", Num(env, static_cast<uint32_t>(ri.drm_fourcc)));
  return o;
}

// --- fences ---

Napi::Value CreateFence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[2];  // fence, ctx
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  // The id travels as int and comes back as uint32_t in write_fence.
  return Num(env, NegErr(g_api.create_fence(static_cast<int>(a[0]), a[1])));
}

Napi::Value ContextCreateFence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[3];  // ctx, flags, ring
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (!info[3].IsBigInt()) return TypeErr(env, "fenceId must be a bigint");
  bool lossless;
  uint64_t fence = info[3].As<Napi::BigInt>().Uint64Value(&lossless);
  if (bad || !lossless || a[0] == 0 || (a[1] & ~kFenceFlagMergeable) != 0 || a[2] > kMaxRingIdx)
    return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  if (g_api.context_create_fence == nullptr) return Err(env, ENOSYS);
  return Num(env, NegErr(g_api.context_create_fence(a[0], a[1], a[2], fence)));
}

Napi::Value Poll(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_lock);
  if (Usable() == 0) g_api.poll();
  return info.Env().Undefined();
}

Napi::Value ContextPoll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t a[1];
  bool bad;
  if (!ArgsU32(info, 0, a, &bad)) return {};
  if (bad || a[0] == 0) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  if (g_api.context_poll == nullptr) return Err(env, ENOSYS);
  g_api.context_poll(a[0]);
  return Num(env, 0);
}

Napi::Value PollFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_lock);
  if (int e = Usable()) return Num(env, e);
  int fd = g_api.get_poll_fd();
  return Num(env, fd >= 0 ? fd : -ENOENT);  // -1: no fd without THREAD_SYNC
}

Napi::Value TakeFences(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<uint64_t> taken;
  {
    std::lock_guard<std::mutex> lock(g_fenceLock);
    taken.swap(g_fences);
  }
  auto out = Napi::TypedArrayOf<uint64_t>::New(env, taken.size(), napi_biguint64_array);
  if (!taken.empty()) std::memcpy(out.Data(), taken.data(), taken.size() * sizeof(uint64_t));
  return out;
}

}  // namespace

void InitVirgl(Napi::Env env, Napi::Object exports) {
  SetFn(env, exports, "virglLoad", Load);
  SetFn(env, exports, "virglInit", Init);
  SetFn(env, exports, "virglCleanup", Cleanup);
  SetFn(env, exports, "virglGetCapset", GetCapset);
  SetFn(env, exports, "virglFillCaps", FillCaps);
  SetFn(env, exports, "virglContextCreate", ContextCreate);
  SetFn(env, exports, "virglContextDestroy", ContextDestroy);
  SetFn(env, exports, "virglCtxAttachResource", CtxAttach);
  SetFn(env, exports, "virglCtxDetachResource", CtxDetach);
  SetFn(env, exports, "virglSubmit", Submit);
  SetFn(env, exports, "virglResourceCreate", ResourceCreate);
  SetFn(env, exports, "virglResourceUnref", ResourceUnref);
  SetFn(env, exports, "virglAttachIov", AttachIov);
  SetFn(env, exports, "virglDetachIov", DetachIov);
  SetFn(env, exports, "virglTransferWrite", TransferWrite);
  SetFn(env, exports, "virglTransferRead", TransferRead);
  SetFn(env, exports, "virglReadback", Readback);
  SetFn(env, exports, "virglResourceGetInfo", ResourceGetInfo);
  SetFn(env, exports, "virglCreateFence", CreateFence);
  SetFn(env, exports, "virglContextCreateFence", ContextCreateFence);
  SetFn(env, exports, "virglPoll", Poll);
  SetFn(env, exports, "virglContextPoll", ContextPoll);
  SetFn(env, exports, "virglPollFd", PollFd);
  SetFn(env, exports, "virglTakeFences", TakeFences);
}

}  // namespace vg
