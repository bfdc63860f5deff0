// Unix stream sockets with SCM_RIGHTS fd passing, plus the plain fd helpers (read, poll, close...).
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common.h"

namespace vg {
namespace {

constexpr size_t kMaxSendFds = 28;   // Wayland's limit per message (vhost-user sends at most 8)
constexpr size_t kMaxRecvFds = 253;  // SCM_MAX_FD: room for all, so extras are closed by us

// Fills a sockaddr_un; false (errno set) if the path does not fit or is empty.
bool MakeAddr(const std::string& path, sockaddr_un* addr) {
  if (path.empty()) return errno = EINVAL, false;
  if (path.size() >= sizeof(addr->sun_path)) return errno = ENAMETOOLONG, false;
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Remove a socket file nobody listens on any more (ECONNREFUSED). A live listener -> EADDRINUSE;
// anything that is not a socket is left alone for bind() to report.
int RemoveStaleSocket(const sockaddr_un& addr) {
  struct stat st;
  if (lstat(addr.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return -errno;
  int r = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int err = r == 0 ? 0 : errno;
  close(probe);
  if (r == 0 || err == EAGAIN) return -EADDRINUSE;
  if (err == ECONNREFUSED && unlink(addr.sun_path) != 0 && errno != ENOENT) return -errno;
  return 0;
}

Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bool nul;
  int64_t backlog;
  if (!ArgString(info, 0, &path, &nul) || !ArgInt(info, 1, &backlog)) return {};
  if (nul || backlog < 0 || backlog > INT_MAX) return Err(env, EINVAL);
  sockaddr_un addr;
  if (!MakeAddr(path, &addr)) return Err(env, errno);
  if (int r = RemoveStaleSocket(addr); r < 0) return Num(env, r);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Err(env, errno);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, static_cast<int>(backlog)) != 0) {
    int err = errno;
    close(fd);
    return Err(env, err);
  }
  return Num(env, fd);
}

Napi::Value AcceptUnix(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  int r;
  do r = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (r < 0 && errno == EINTR);
  return SysRet(info.Env(), r);
}

Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bool nul;
  bool nonBlocking = false;
  if (!ArgString(info, 0, &path, &nul)) return {};
  if (!info[1].IsUndefined() && !ArgBool(info, 1, &nonBlocking)) return {};
  if (nul) return Err(env, EINVAL);
  sockaddr_un addr;
  if (!MakeAddr(path, &addr)) return Err(env, errno);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return Err(env, errno);
  int err = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    err = errno;
    // An interrupted connect carries on in the background: wait for it instead of retrying.
    // (A non-blocking unix connect never does: it completes or fails at once, EAGAIN = backlog full.)
    if (err == EINTR && !nonBlocking) {
      pollfd p{fd, POLLOUT, 0};
      int r;
      do r = poll(&p, 1, -1);
      while (r < 0 && errno == EINTR);
      socklen_t sl = sizeof(err);
      if (r < 0) err = errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) err = errno;
    }
  }
  if (err != 0) {
    close(fd);
    return Err(env, err);
  }
  return Num(env, fd);
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Err(env, errno);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Num(env, sv[0]));
  out.Set(1u, Num(env, sv[1]));
  return out;
}

Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* buf;
  size_t bufLen;
  int64_t off, len;
  if (!ArgFd(info, 0, &fd) || !ArgBytes(info[1], &buf, &bufLen) || !ArgIndex(info, 2, &off) ||
      !ArgIndex(info, 3, &len))
    return {};
  if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    return TypeErr(env, "fdsOut must be an Int32Array");
  Napi::Int32Array fdsOut = info[4].As<Napi::Int32Array>();
  size_t cap = fdsOut.ElementLength();
  if (cap < 1) return Err(env, EINVAL);
  fdsOut[0] = 0;  // no fds unless this call received some, whatever it returns
  if (len <= 0 || !InRange(off, len, bufLen)) return Err(env, EINVAL);
  cap -= 1;

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
  iovec iov{buf + off, static_cast<size_t>(len)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Err(env, errno);

  // Keep up to cap fds; close the rest, and all of them if the control data was truncated.
  bool truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  size_t kept = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int rfd;
      std::memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));  // may be unaligned
      if (!truncated && kept < cap) fdsOut[1 + kept++] = rfd;
      else close(rfd);
    }
  }
  if (truncated) {
    for (size_t i = 0; i < kept; i++) close(fdsOut[1 + i]);
    fdsOut[0] = 0;
    return Err(env, EMSGSIZE);  // the message lost fds: the caller cannot use it
  }
  fdsOut[0] = static_cast<int32_t>(kept);
  return Num(env, static_cast<double>(n));
}

Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  iovec iov[IOV_MAX];
  int64_t count;
  if (!ArgIovecs(info[1], iov, IOV_MAX, &count)) return {};
  if (count < 0) return Err(env, EINVAL);
  size_t total = 0;
  for (int64_t i = 0; i < count; i++) total += iov[i].iov_len;

  int fds[kMaxSendFds];
  size_t nfds = 0;
  if (!info[2].IsNull() && !info[2].IsUndefined()) {
    if (!info[2].IsArray()) return TypeErr(env, "fds must be an array or null");
    Napi::Array a = info[2].As<Napi::Array>();
    if (a.Length() > kMaxSendFds) return Err(env, EINVAL);
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsNumber()) return TypeErr(env, "fds must hold numbers");
      double d = v.As<Napi::Number>().DoubleValue();
      fds[nfds++] = (std::trunc(d) == d && d >= 0 && d <= INT32_MAX) ? static_cast<int>(d) : -1;
    }
  }
  if (nfds > 0 && total == 0) return Err(env, EINVAL);  // fds need at least one data byte

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return SysRet(env, n);
}

// read(2) or write(2) of (fd, buf, off, len): the shape of read() and write().
template <class Io>
Napi::Value PlainIo(const Napi::CallbackInfo& info, Io io) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* buf;
  size_t bufLen;
  int64_t off, len;
  if (!ArgFd(info, 0, &fd) || !ArgBytes(info[1], &buf, &bufLen) || !ArgIndex(info, 2, &off) ||
      !ArgIndex(info, 3, &len))
    return {};
  if (!InRange(off, len, bufLen)) return Err(env, EINVAL);
  ssize_t n;
  do n = io(fd, buf + off, static_cast<size_t>(len));
  while (n < 0 && errno == EINTR);
  return SysRet(env, n);
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  return PlainIo(info, [](int fd, uint8_t* p, size_t n) { return read(fd, p, n); });
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  return PlainIo(info, [](int fd, uint8_t* p, size_t n) { return write(fd, p, n); });
}

// What an fd received from a peer is. kinds: 1 regular file (memfd, shm), 2 pipe/FIFO, 3 eventfd,
// 4 socket, 5 anything else. out[0] = size (regular files), out[1] = access mode (O_ACCMODE bits).
Napi::Value DescribeFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[1].As<Napi::Float64Array>().ElementLength() < 2)
    return TypeErr(env, "out must be a Float64Array of 2");
  auto out = info[1].As<Napi::Float64Array>();
  struct stat st;
  if (fstat(fd, &st) != 0) return Err(env, errno);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return Err(env, errno);
  out[0] = S_ISREG(st.st_mode) ? static_cast<double>(st.st_size) : 0;
  out[1] = flags & O_ACCMODE;
  if (S_ISREG(st.st_mode)) return Num(env, 1);
  if (S_ISFIFO(st.st_mode)) return Num(env, 2);
  if (S_ISSOCK(st.st_mode)) return Num(env, 4);
  // eventfds are anonymous inodes: only their /proc link names them.
  char link[64], target[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n > 0) {
    target[n] = 0;
    if (std::strcmp(target, "anon_inode:[eventfd]") == 0) return Num(env, 3);
  }
  return Num(env, 5);
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Napi::Value PollFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t events, timeout;
  if (!ArgFd(info, 0, &fd) || !ArgInt(info, 1, &events) || !ArgInt(info, 2, &timeout)) return {};
  if (events < 0 || events > 0xffff || timeout < -1 || timeout > INT_MAX) return Err(env, EINVAL);
  pollfd p{fd, static_cast<short>(events), 0};
  // On EINTR, wait only for what is left of the timeout.
  int64_t deadline = timeout >= 0 ? NowMs() + timeout : -1;
  int r;
  for (;;) {
    int wait = deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
    r = poll(&p, 1, wait);
    if (r >= 0 || errno != EINTR) break;
  }
  if (r < 0) return Err(env, errno);
  return Num(env, r == 0 ? 0 : static_cast<unsigned short>(p.revents));
}

Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  bool on = false;
  if (!ArgFd(info, 0, &fd) || !ArgBool(info, 1, &on)) return {};
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return Err(env, errno);
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && fcntl(fd, F_SETFL, want) != 0) return Err(env, errno);
  return Num(env, 0);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  // On Linux the fd is released even when close() reports EINTR: never retry.
  if (close(fd) != 0 && errno != EINTR) return Err(info.Env(), errno);
  return Num(info.Env(), 0);
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return {};
  return SysRet(info.Env(), fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

// setSendBuffer(fd, bytes): grow the socket's send buffer (SO_SNDBUFFORCE when privileged, else
// SO_SNDBUF up to net.core.wmem_max), so a frame leaves in few writes. The size in effect, or -errno.
Napi::Value SetSendBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t bytes;
  if (!ArgFd(info, 0, &fd) || !ArgIndex(info, 1, &bytes)) return {};
  if (bytes < 0 || bytes > (1 << 30)) return Err(env, EINVAL);
  int v = static_cast<int>(bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) != 0)
    return Err(env, errno);
  int got = 0;
  socklen_t len = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) return Err(env, errno);
  return Num(env, got);
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  SetFn(env, exports, "setSendBuffer", SetSendBuffer);
  SetFn(env, exports, "listenUnix", ListenUnix);
  SetFn(env, exports, "acceptUnix", AcceptUnix);
  SetFn(env, exports, "connectUnix", ConnectUnix);
  SetFn(env, exports, "socketPair", SocketPair);
  SetFn(env, exports, "recvMsg", RecvMsg);
  SetFn(env, exports, "sendMsg", SendMsg);
  SetFn(env, exports, "read", Read);
  SetFn(env, exports, "write", Write);
  SetFn(env, exports, "describeFd", DescribeFd);
  SetFn(env, exports, "pollFd", PollFd);
  SetFn(env, exports, "setNonBlocking", SetNonBlocking);
  SetFn(env, exports, "close", Close);
  SetFn(env, exports, "dup", Dup);
}

}  // namespace vg
