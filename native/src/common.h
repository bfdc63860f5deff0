// Shared helpers for the vhost-gpu addon. Conventions (see src/native.ts): OS errors come back as
// a negative errno number; a TypeError is thrown (as a pending exception, C++ exceptions are off)
// only for arguments of the wrong JS type.
#pragma once

#include <napi.h>
#include <sys/uio.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>

namespace vg {

// Per-env state (napi instance data): nothing JS-related is shared between envs/threads.
struct EnvData {
  Napi::FunctionReference watcherClass;
};

inline Napi::Value Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }
inline Napi::Value Err(Napi::Env env, int err) { return Num(env, -err); }
// Result of a syscall that returns -1 + errno on failure.
inline Napi::Value SysRet(Napi::Env env, long r) { return Num(env, r < 0 ? -errno : r); }

inline bool ThrowType(Napi::Env env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}
inline Napi::Value TypeErr(Napi::Env env, const char* msg) {
  ThrowType(env, msg);
  return {};
}

// Largest integer a double holds exactly.
constexpr double kMaxSafe = 9007199254740991.0;

// An fd argument. False = TypeError thrown. A non-integer becomes -1 so the syscall says EBADF.
inline bool ArgFd(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (!info[i].IsNumber()) return ThrowType(info.Env(), "fd must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  *out = (std::trunc(d) == d && d >= INT32_MIN && d <= INT32_MAX) ? static_cast<int>(d) : -1;
  return true;
}

// A size/offset/count argument. False = TypeError thrown. A non-integer, negative or unsafe value
// becomes -1, which callers turn into -EINVAL.
inline bool ArgIndex(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  if (!info[i].IsNumber()) return ThrowType(info.Env(), "expected a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  *out = (std::trunc(d) == d && d >= 0 && d <= kMaxSafe) ? static_cast<int64_t>(d) : -1;
  return true;
}

// A signed integer argument (timeouts, event masks). Non-integers become INT64_MIN.
inline bool ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  if (!info[i].IsNumber()) return ThrowType(info.Env(), "expected a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  *out = (std::trunc(d) == d && std::fabs(d) <= kMaxSafe) ? static_cast<int64_t>(d) : INT64_MIN;
  return true;
}

inline bool ArgBool(const Napi::CallbackInfo& info, size_t i, bool* out) {
  if (!info[i].IsBoolean()) return ThrowType(info.Env(), "expected a boolean");
  *out = info[i].As<Napi::Boolean>().Value();
  return true;
}

// A string argument for the C APIs: embedded NULs are reported via *hasNul (-> -EINVAL).
inline bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out, bool* hasNul) {
  if (!info[i].IsString()) return ThrowType(info.Env(), "expected a string");
  *out = info[i].As<Napi::String>().Utf8Value();
  *hasNul = out->find('\0') != std::string::npos;
  return true;
}

// A Uint8Array (Buffer included) argument: its data pointer and length.
inline bool ArgBytes(Napi::Value v, uint8_t** data, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    return ThrowType(v.Env(), "expected a Uint8Array");
  auto a = v.As<Napi::Uint8Array>();
  *data = a.Data();
  *len = a.ByteLength();
  return true;
}

// An array of Uint8Arrays as iovecs (empty ones skipped): false = TypeError thrown; *count = -1
// when there are more than max.
inline bool ArgIovecs(Napi::Value v, struct iovec* iov, uint32_t max, int64_t* count) {
  if (!v.IsArray()) return ThrowType(v.Env(), "expected an array of Uint8Arrays");
  Napi::Array a = v.As<Napi::Array>();
  uint32_t n = a.Length();
  if (n > max) return *count = -1, true;
  *count = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t* data;
    size_t len;
    if (!ArgBytes(a.Get(i), &data, &len)) return false;
    if (len > 0) iov[(*count)++] = {data, len};
  }
  return true;
}

// In a map keyed by start address: the entry starting last at or before addr, or end().
template <class Map>
auto LastAtOrBefore(Map& ranges, uint64_t addr) -> decltype(ranges.begin()) {
  auto it = ranges.upper_bound(addr);
  return it == ranges.begin() ? ranges.end() : std::prev(it);
}

// True when [addr, addr+len) lies within [base, base+size), without overflow.
inline bool Holds(uint64_t base, uint64_t size, uint64_t addr, uint64_t len) {
  return addr >= base && addr - base <= size && len <= size - (addr - base);
}

// True when [off, off+len) lies within [0, size) (off/len already validated as >= 0 or -1).
inline bool InRange(int64_t off, int64_t len, uint64_t size) {
  return off >= 0 && len >= 0 && static_cast<uint64_t>(off) <= size &&
         static_cast<uint64_t>(len) <= size - static_cast<uint64_t>(off);
}

// Pins the live mapping (made by mmap()) that holds all of [addr, addr+len): it stays mapped until
// UnpinRange, even if unmap() is called meanwhile. For host addresses handed to a library that
// keeps them (virgl iovecs). Null if no single live mapping holds the range. Thread-safe.
const void* PinRange(uint64_t addr, uint64_t len);
void UnpinRange(const void* pin);
// The whole address range of the mapping behind a pin (so one pin can cover many ranges).
void PinnedBounds(const void* pin, uint64_t* lo, uint64_t* hi);

// Registration, one per source file.
void InitSocket(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitWatch(Napi::Env env, Napi::Object exports);
void InitGather(Napi::Env env, Napi::Object exports);
void InitVirgl(Napi::Env env, Napi::Object exports);
void InitZeroCopy(Napi::Env env, Napi::Object exports);
void InitSandbox(Napi::Env env, Napi::Object exports);

inline void SetFn(Napi::Env env, Napi::Object exports, const char* name, Napi::Function::Callback fn) {
  exports.Set(name, Napi::Function::New(env, fn, name));
}

}  // namespace vg
