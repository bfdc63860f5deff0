// Shared memory: memfd, mmap, ArrayBuffer views over mappings, and bulk copies.
//
// Mappings live in a process-global registry (the addon's .so is loaded once per process, so every
// worker thread sees the same one). Each mapping is reference-counted: one reference for the
// mapping itself (dropped by unmap()) and one per view (dropped by the view's GC finalizer). munmap
// happens only when the count reaches zero, so no JS view can ever point at unmapped memory.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>

#include "common.h"

namespace vg {
namespace {

constexpr uint64_t kMaxView = 1ull << 30;  // 1 GiB

struct Mapping {
  uintptr_t base;
  size_t size;
  size_t refs;  // guarded by g_mutex
};

std::mutex g_mutex;
std::map<uintptr_t, Mapping*> g_live;  // mappings not yet unmap()ped, by base address

void Release(Mapping* m) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (--m->refs != 0) return;
  }
  munmap(reinterpret_cast<void*>(m->base), m->size);
  delete m;
}

void FinalizeView(napi_env, void*, void* hint) { Release(static_cast<Mapping*>(hint)); }

// The live mapping holding [addr, addr+len) (len may be 0), with one more reference taken; null
// if none holds the whole range. Caller holds g_mutex.
Mapping* RefRangeLocked(uint64_t addr, uint64_t len) {
  auto it = LastAtOrBefore(g_live, addr);
  if (it == g_live.end() || !Holds(it->second->base, it->second->size, addr, len)) return nullptr;
  it->second->refs++;
  return it->second;
}

// A BigInt address argument. False = TypeError thrown; a negative or >64-bit value becomes 0.
bool ArgAddr(const Napi::CallbackInfo& info, size_t i, uintptr_t* out) {
  if (!info[i].IsBigInt()) return ThrowType(info.Env(), "addr must be a bigint");
  bool lossless;
  uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  *out = lossless ? static_cast<uintptr_t>(v) : 0;
  return true;
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  bool nul;
  int64_t size;
  if (!ArgString(info, 0, &name, &nul) || !ArgIndex(info, 1, &size)) return {};
  if (nul || size < 0) return Err(env, EINVAL);
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return Err(env, errno);
  if (ftruncate(fd, size) != 0) {
    int err = errno;
    close(fd);
    return Err(env, err);
  }
  return Num(env, fd);
}

Napi::Value FdSize(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  struct stat st;
  if (fstat(fd, &st) != 0) return Err(info.Env(), errno);
  return Num(info.Env(), static_cast<double>(st.st_size));
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t size, offset;
  if (!ArgFd(info, 0, &fd) || !ArgIndex(info, 1, &size) || !ArgIndex(info, 2, &offset)) return {};
  if (size <= 0 || offset < 0) return Err(env, EINVAL);
  // Touching a page past the end of a file raises SIGBUS: refuse such a range up front.
  struct stat st;
  if (fstat(fd, &st) != 0) return Err(env, errno);
  if (S_ISREG(st.st_mode) && (offset > st.st_size || size > st.st_size - offset))
    return Err(env, EINVAL);
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (p == MAP_FAILED) return Err(env, errno);
  auto* m = new Mapping{reinterpret_cast<uintptr_t>(p), static_cast<size_t>(size), 1};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_live[m->base] = m;
  }
  Napi::Object handle = Napi::Object::New(env);
  handle.DefineProperties({
      Napi::PropertyDescriptor::Value("addr", Napi::BigInt::New(env, static_cast<uint64_t>(m->base)),
                                      napi_enumerable),
      Napi::PropertyDescriptor::Value("size", Num(env, static_cast<double>(size)), napi_enumerable),
  });
  return handle;
}

Napi::Value View(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uintptr_t addr;
  int64_t offset, len;
  if (!ArgAddr(info, 0, &addr) || !ArgIndex(info, 1, &offset) || !ArgIndex(info, 2, &len)) return {};
  if (offset < 0 || len <= 0 || static_cast<uint64_t>(len) > kMaxView) return Err(env, EINVAL);

  // addr may point anywhere inside a mapping; only the resulting range matters.
  uintptr_t start = addr + static_cast<uint64_t>(offset);
  if (start < addr) return Err(env, EINVAL);
  Mapping* m;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    m = RefRangeLocked(start, static_cast<uint64_t>(len));
  }
  if (m == nullptr) return Err(env, EINVAL);

  napi_value ab;
  if (napi_create_external_arraybuffer(env, reinterpret_cast<void*>(start), static_cast<size_t>(len),
                                       FinalizeView, m, &ab) != napi_ok) {
    // Node may still run the finalizer after a failure: keep the reference (a leak, never a
    // premature munmap). Cannot happen for len <= 1 GiB short of env teardown.
    return Err(env, ENOMEM);
  }
  return Napi::Value(env, ab);
}

Napi::Value Unmap(const Napi::CallbackInfo& info) {
  uintptr_t addr;
  if (!ArgAddr(info, 0, &addr)) return {};
  Mapping* m;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_live.find(addr);
    if (it == g_live.end()) return Err(info.Env(), EINVAL);
    m = it->second;
    g_live.erase(it);  // no new views; existing ones keep the memory mapped
  }
  Release(m);
  return Num(info.Env(), 0);
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *dst, *src;
  size_t dstLen, srcLen;
  int64_t dstOff, srcOff, len;
  if (!ArgBytes(info[0], &dst, &dstLen) || !ArgIndex(info, 1, &dstOff) ||
      !ArgBytes(info[2], &src, &srcLen) || !ArgIndex(info, 3, &srcOff) || !ArgIndex(info, 4, &len))
    return {};
  if (!InRange(dstOff, len, dstLen) || !InRange(srcOff, len, srcLen)) return Err(env, EINVAL);
  if (len > 0) std::memmove(dst + dstOff, src + srcOff, static_cast<size_t>(len));
  return Num(env, 0);
}

}  // namespace

const void* PinRange(uint64_t addr, uint64_t len) {
  if (addr + len < addr) return nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  return RefRangeLocked(addr, len);
}

void UnpinRange(const void* pin) { Release(static_cast<Mapping*>(const_cast<void*>(pin))); }

void PinnedBounds(const void* pin, uint64_t* lo, uint64_t* hi) {
  const Mapping* m = static_cast<const Mapping*>(pin);
  *lo = m->base;
  *hi = m->base + m->size;
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  SetFn(env, exports, "memfdCreate", MemfdCreate);
  SetFn(env, exports, "fdSize", FdSize);
  SetFn(env, exports, "mmap", Mmap);
  SetFn(env, exports, "view", View);
  SetFn(env, exports, "unmap", Unmap);
  SetFn(env, exports, "copy", Copy);
}

}  // namespace vg
