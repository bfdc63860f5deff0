// Module entry. Context-aware: everything JS-related is created per env (instance data), so the
// addon loads in any number of worker threads.
#include <poll.h>
#include <uv.h>

#include "common.h"

namespace vg {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new EnvData());
  InitSocket(env, exports);
  InitEventfd(env, exports);
  InitMemory(env, exports);
  InitWatch(env, exports);
  InitGather(env, exports);
  InitVirgl(env, exports);
  InitZeroCopy(env, exports);
  InitSandbox(env, exports);

  const std::pair<const char*, int> constants[] = {
      {"READABLE", UV_READABLE}, {"WRITABLE", UV_WRITABLE}, {"POLLIN", POLLIN},
      {"POLLOUT", POLLOUT},      {"POLLHUP", POLLHUP},      {"POLLERR", POLLERR},
      {"EAGAIN", EAGAIN},        {"EINTR", EINTR},          {"EINVAL", EINVAL},
      {"EPIPE", EPIPE},         {"ENOMEM", ENOMEM},
  };
  for (const auto& [name, value] : constants)
    exports.DefineProperty(Napi::PropertyDescriptor::Value(name, Num(env, value), napi_enumerable));
  return exports;
}

}  // namespace vg

// The macro pastes the function name into identifiers: it needs an unqualified one.
static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return vg::Init(env, exports); }
NODE_API_MODULE(vhost_gpu_native, InitAddon)
