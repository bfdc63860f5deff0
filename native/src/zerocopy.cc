// Zero-copy socket writes: pixels leave by page reference, not by copy. A buffer from allocPages()
// is vmspliced into a pipe (the pipe then holds references to its pages) and spliced from the
// pipe into a socket (Linux >= 6.5 attaches the pages to the socket's buffers; older kernels copy
// there). Only allocPages() memory may go this way: its pages are never reused while the kernel
// still references them (munmap leaves referenced pages alive), so a reader can never see freed
// or reused memory; it can see later writes, which is why callers copy-on-write while a send is
// in flight (see src/display/).
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "common.h"

namespace vg {
namespace {

constexpr uint64_t kMaxPages = 1ull << 30;  // 1 GiB, as for views
constexpr uint32_t kMaxParts = 512;          // iovecs per vmsplice (IOV_MAX is 1024)

std::mutex g_pagesMutex;
std::map<uintptr_t, size_t> g_pages;  // live allocPages() buffers: base -> size

void FreePages(napi_env, void* data, void* hint) {
  uintptr_t base = reinterpret_cast<uintptr_t>(data);
  size_t size = reinterpret_cast<size_t>(hint);
  {
    std::lock_guard<std::mutex> lock(g_pagesMutex);
    g_pages.erase(base);
  }
  munmap(data, size);
}

// True if [addr, addr+len) lies inside one live allocPages() buffer.
bool InPageBuffer(uintptr_t addr, size_t len) {
  std::lock_guard<std::mutex> lock(g_pagesMutex);
  auto it = LastAtOrBefore(g_pages, addr);
  return it != g_pages.end() && Holds(it->first, it->second, addr, len);
}

// allocPages(size) -> ArrayBuffer of zeroed, page-aligned anonymous memory, or -errno. Pages are
// allocated on first touch, like calloc'd memory.
Napi::Value AllocPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t size;
  if (!ArgIndex(info, 0, &size)) return {};
  if (size <= 0 || static_cast<uint64_t>(size) > kMaxPages) return Err(env, EINVAL);
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Err(env, errno);
  {
    std::lock_guard<std::mutex> lock(g_pagesMutex);
    g_pages[reinterpret_cast<uintptr_t>(p)] = static_cast<size_t>(size);
  }
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, static_cast<size_t>(size), FreePages,
                                       reinterpret_cast<void*>(static_cast<uintptr_t>(size)), &ab) != napi_ok) {
    FreePages(env, p, reinterpret_cast<void*>(static_cast<uintptr_t>(size)));
    return Err(env, ENOMEM);
  }
  return Napi::Value(env, ab);
}

// discardPages(buffer: ArrayBuffer from allocPages) -> 0, or -errno (-EFAULT: not allocPages
// memory). The pages go back to the system now rather than at garbage collection; the buffer reads
// as zeros afterwards. Pages the kernel still references (sent by reference) keep their bytes.
Napi::Value DiscardPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) return TypeErr(env, "expected an ArrayBuffer");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  uintptr_t base = reinterpret_cast<uintptr_t>(ab.Data());
  size_t len = ab.ByteLength();
  if (len == 0 || !InPageBuffer(base, len)) return Err(env, EFAULT);
  if (madvise(ab.Data(), len, MADV_DONTNEED) != 0) return Err(env, errno);
  return Num(env, 0);
}

// pipeCreate(out: Int32Array(2), capacity) -> the pipe's capacity in bytes, or -errno. Both ends
// non-blocking; out = [read end, write end]. A capacity the system refuses leaves the default.
Napi::Value PipeCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[0].As<Napi::Int32Array>().ElementLength() < 2)
    return TypeErr(env, "out must be an Int32Array of 2");
  int64_t capacity;
  if (!ArgIndex(info, 1, &capacity)) return {};
  if (capacity <= 0 || capacity > INT32_MAX) return Err(env, EINVAL);
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return Err(env, errno);
  fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(capacity));
  int got = fcntl(fds[1], F_GETPIPE_SZ);
  if (got < 0) {
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    return Err(env, err);
  }
  auto out = info[0].As<Napi::Int32Array>();
  out[0] = fds[0];
  out[1] = fds[1];
  return Num(env, got);
}

// vmspliceIn(pipeWrite, parts: Uint8Array[]) -> bytes now referenced by the pipe (as many as its
// free room takes, in order), or -errno (-EAGAIN: pipe full; -EFAULT: a part is not allocPages()
// memory; -EINVAL: more than kMaxParts parts).
Napi::Value VmspliceIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  iovec iov[kMaxParts];
  int64_t n;
  if (!ArgIovecs(info[1], iov, kMaxParts, &n)) return {};
  if (n < 0) return Err(env, EINVAL);
  for (int64_t i = 0; i < n; i++)
    if (!InPageBuffer(reinterpret_cast<uintptr_t>(iov[i].iov_base), iov[i].iov_len)) return Err(env, EFAULT);
  if (n == 0) return Num(env, 0);
  ssize_t r;
  do r = vmsplice(fd, iov, n, SPLICE_F_NONBLOCK);
  while (r < 0 && errno == EINTR);
  return SysRet(env, r);
}

// spliceOut(pipeRead, fd, len) -> bytes moved from the pipe into fd (a socket), or -errno.
Napi::Value SpliceOut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pipeFd, fd;
  int64_t len;
  if (!ArgFd(info, 0, &pipeFd) || !ArgFd(info, 1, &fd) || !ArgIndex(info, 2, &len)) return {};
  if (len < 0) return Err(env, EINVAL);
  ssize_t n;
  do n = splice(pipeFd, nullptr, fd, nullptr, static_cast<size_t>(len), SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
  while (n < 0 && errno == EINTR);
  return SysRet(env, n);
}

// unsentBytes(fd) -> SIOCOUTQ of a socket: what the peer has not read yet (0 = all read), or
// -errno. For unix sockets it counts buffer memory, so only "zero or not" is exact.
Napi::Value UnsentBytes(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  int n = 0;
  if (ioctl(fd, SIOCOUTQ, &n) != 0) return Err(info.Env(), errno);
  return Num(info.Env(), n);
}

}  // namespace

void InitZeroCopy(Napi::Env env, Napi::Object exports) {
  SetFn(env, exports, "allocPages", AllocPages);
  SetFn(env, exports, "discardPages", DiscardPages);
  SetFn(env, exports, "pipeCreate", PipeCreate);
  SetFn(env, exports, "vmspliceIn", VmspliceIn);
  SetFn(env, exports, "spliceOut", SpliceOut);
  SetFn(env, exports, "unsentBytes", UnsentBytes);
}

}  // namespace vg
