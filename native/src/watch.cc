// fd readiness on the calling thread's libuv loop (uv_poll), exposed as an FdWatcher object.
//
// Lifetimes: the uv handle (Poll) lives until its close callback; the JS object (Watcher) until GC.
// A started watcher holds a strong reference to its JS object, so it keeps both the loop and the
// object alive; a stopped one holds neither. An async cleanup hook closes the handle if the env
// (e.g. a worker thread) goes away first, since a worker's loop must have no open handles left.
//
// A watcher may own its fd (watch(fd, cb, true)): the fd is then closed with the handle, never
// before. A dying worker's loop still registers its started handles with epoll during teardown,
// before cleanup hooks run; a fd closed meanwhile by another thread made libuv abort the process.
#include <fcntl.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"

namespace vg {
namespace {

class Watcher;

struct Poll {
  uv_poll_t handle;
  Watcher* owner = nullptr;  // null once the JS side closed or was finalized
  napi_async_cleanup_hook_handle hook = nullptr;
  bool closing = false;
  int ownedFd = -1;  // closed in OnClose
};

void OnPoll(uv_poll_t* h, int status, int events);

class Watcher : public Napi::ObjectWrap<Watcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&Watcher::Start>("start"), InstanceMethod<&Watcher::Stop>("stop"),
                        InstanceMethod<&Watcher::Close>("close")});
  }

  Watcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsExternal() || !info[1].IsFunction()) {
      ThrowType(env, "FdWatcher objects are made by watch()");
      return;
    }
    poll_ = info[0].As<Napi::External<Poll>>().Data();
    poll_->owner = this;
    // The object owns the callback and our reference is weak: a callback that closes over its
    // watcher must not become uncollectable through a strong native root.
    Napi::Function cb = info[1].As<Napi::Function>();
    info.This().As<Napi::Object>().DefineProperty(
        Napi::PropertyDescriptor::Value("callback", cb, napi_default));
    cb_ = Napi::Weak(cb);
    napi_async_init(env, info.This(), Napi::String::New(env, "FdWatcher"), &actx_);
  }

  ~Watcher() override {
    if (poll_ != nullptr) Release();
    if (actx_ != nullptr) napi_async_destroy(Env(), actx_);
  }

  void Fire(int arg) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Object self = Value();
    Napi::Function cb = cb_.Value();
    if (!self.IsEmpty() && !cb.IsEmpty() && actx_ != nullptr) {
      napi_value argv = Num(env, arg), result;
      // make_callback runs nextTicks/microtasks afterwards, like any libuv-driven callback.
      if (napi_make_callback(env, actx_, self, cb, 1, &argv, &result) == napi_pending_exception) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err);  // -> process 'uncaughtException'
      }
    }
    SyncRef();  // libuv stops the handle by itself on POLLERR
  }

  void Detach() { poll_ = nullptr; }  // the handle closed under us (env teardown)

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t events;
    if (!ArgInt(info, 0, &events)) return {};
    if (poll_ == nullptr || poll_->closing) return Err(env, EBADF);
    // libuv asserts on unknown bits.
    if (events < 0 || (events & ~int64_t{UV_READABLE | UV_WRITABLE | UV_DISCONNECT | UV_PRIORITIZED}))
      return Err(env, EINVAL);
    int r = uv_poll_start(&poll_->handle, static_cast<int>(events), OnPoll);
    SyncRef();
    return Num(env, r);
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr && !poll_->closing) uv_poll_stop(&poll_->handle);
    SyncRef();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) Release();
    SyncRef();
    if (actx_ != nullptr) {
      napi_async_destroy(info.Env(), actx_);
      actx_ = nullptr;
    }
    return info.Env().Undefined();
  }

  // Hand the handle to libuv for closing; it frees itself in OnClose.
  void Release();

  // Strong reference to our JS object exactly while the handle is active.
  void SyncRef() {
    bool active = poll_ != nullptr && uv_is_active(reinterpret_cast<uv_handle_t*>(&poll_->handle));
    if (active && !strong_) Ref();
    if (!active && strong_) Unref();
    strong_ = active;
  }

  Poll* poll_ = nullptr;
  Napi::FunctionReference cb_;
  napi_async_context actx_ = nullptr;
  bool strong_ = false;
};

void OnPoll(uv_poll_t* h, int status, int events) {
  Poll* p = static_cast<Poll*>(h->data);
  if (p->owner != nullptr) p->owner->Fire(status < 0 ? status : events);
}

void OnClose(uv_handle_t* h) {
  Poll* p = static_cast<Poll*>(h->data);
  if (p->owner != nullptr) p->owner->Detach();
  if (p->hook != nullptr) napi_remove_async_cleanup_hook(p->hook);  // also "done" at teardown
  if (p->ownedFd >= 0) close(p->ownedFd);
  delete p;
}

void CloseHandle(Poll* p) {
  if (p->closing) return;
  p->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClose);
}

void OnTeardown(napi_async_cleanup_hook_handle, void* arg) { CloseHandle(static_cast<Poll*>(arg)); }

void Watcher::Release() {
  poll_->owner = nullptr;
  CloseHandle(poll_);
  poll_ = nullptr;
}

Napi::Value Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  if (!info[1].IsFunction()) return TypeErr(env, "cb must be a function");
  if (info.Length() > 2 && !info[2].IsBoolean() && !info[2].IsUndefined()) return TypeErr(env, "ownFd must be a boolean");
  bool ownFd = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return Err(env, EINVAL);

  // uv_poll_init sets O_NONBLOCK; uv_poll never does I/O, so keep the caller's choice.
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return Err(env, errno);
  auto* p = new Poll;
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    delete p;
    return Num(env, r);
  }
  if (!(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags);
  p->handle.data = p;
  napi_add_async_cleanup_hook(env, OnTeardown, p, &p->hook);

  Napi::Object obj = env.GetInstanceData<EnvData>()->watcherClass.New(
      {Napi::External<Poll>::New(env, p), info[1]});
  if (obj.IsEmpty()) {  // cannot happen with these arguments; never leak the handle
    CloseHandle(p);
    return {};
  }
  if (ownFd) p->ownedFd = fd;  // only on success: on failure the caller still owns it
  return obj;
}

}  // namespace

void InitWatch(Napi::Env env, Napi::Object exports) {
  env.GetInstanceData<EnvData>()->watcherClass = Napi::Persistent(Watcher::Define(env));
  SetFn(env, exports, "watch", Watch);
}

}  // namespace vg
