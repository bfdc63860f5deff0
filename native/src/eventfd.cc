// eventfd: the kick/call notifications of vhost-user and the cheap cross-thread wakeup.
#include <sys/eventfd.h>
#include <unistd.h>

#include "common.h"

namespace vg {
namespace {

Napi::Value EventFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t init;
  bool nonBlocking = false;
  if (!ArgIndex(info, 0, &init) || !ArgBool(info, 1, &nonBlocking)) return {};
  if (init < 0 || init > UINT32_MAX) return Err(env, EINVAL);
  return SysRet(env, eventfd(static_cast<unsigned>(init), EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)));
}

Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  uint64_t value;
  ssize_t n;
  do n = read(fd, &value, sizeof(value));
  while (n < 0 && errno == EINTR);
  if (n < 0) return Err(info.Env(), errno);
  if (n != sizeof(value)) return Err(info.Env(), EINVAL);  // not an eventfd
  return Num(info.Env(), static_cast<double>(value));
}

Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t v;
  if (!ArgFd(info, 0, &fd) || !ArgIndex(info, 1, &v)) return {};
  if (v < 0) return Err(env, EINVAL);
  uint64_t value = static_cast<uint64_t>(v);
  ssize_t n;
  do n = write(fd, &value, sizeof(value));
  while (n < 0 && errno == EINTR);
  if (n < 0) return Err(env, errno);
  return Num(env, 0);
}

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  SetFn(env, exports, "eventfd", EventFd);
  SetFn(env, exports, "eventfdRead", EventFdRead);
  SetFn(env, exports, "eventfdWrite", EventFdWrite);
}

}  // namespace vg
