// A seccomp filter for the virgl render server, installed once virglrenderer is initialised. If a
// hostile command stream gets code running in that process (a library bug), the process still
// cannot start programs, open files, make sockets, trace or signal other processes, or mutate
// the file system. Everything it needs after init (threads, mmap for the JIT, eventfds, the fds
// it already holds, receiving fds on its socket) stays allowed. Denied calls fail with EPERM.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <vector>

#include "common.h"

namespace vg {

namespace {

#if defined(__x86_64__)
constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
#error "sandbox.cc: unsupported architecture"
#endif

// Calls with no use in the server once it serves, by name so the list reads as a policy.
const long kDenied[] = {
    SYS_execve, SYS_execveat, SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev,
    SYS_socket, SYS_socketpair, SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4,
    SYS_openat, SYS_open_by_handle_at, SYS_name_to_handle_at,
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
    SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_unshare, SYS_setns,
    SYS_unlinkat, SYS_renameat2, SYS_linkat, SYS_symlinkat, SYS_mkdirat, SYS_mknodat,
    SYS_fchmodat, SYS_fchownat, SYS_truncate, SYS_utimensat,
    SYS_setxattr, SYS_lsetxattr, SYS_fsetxattr, SYS_removexattr, SYS_lremovexattr,
    SYS_bpf, SYS_perf_event_open, SYS_keyctl, SYS_add_key, SYS_request_key, SYS_userfaultfd,
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_kexec_load, SYS_reboot,
    SYS_pidfd_open, SYS_pidfd_send_signal, SYS_tkill, SYS_personality,
#ifdef SYS_open
    SYS_open, SYS_creat, SYS_unlink, SYS_rename, SYS_renameat, SYS_link, SYS_symlink, SYS_mkdir,
    SYS_rmdir, SYS_mknod, SYS_chmod, SYS_chown, SYS_lchown, SYS_utimes, SYS_utime, SYS_fork,
    SYS_vfork, SYS_iopl, SYS_ioperm,
#endif
#ifdef SYS_openat2
    SYS_openat2,
#endif
};

constexpr uint32_t kErrno = SECCOMP_RET_ERRNO | EPERM;
constexpr uint32_t kArg0 = offsetof(seccomp_data, args[0]);

sock_filter Stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return BPF_JUMP(code, k, jt, jf); }

std::vector<sock_filter> Program(pid_t self) {
  std::vector<sock_filter> p;
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
#if defined(__x86_64__)
  // x32 numbers reach the same calls under other numbers.
  p.push_back(Jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
  p.push_back(Stmt(BPF_RET | BPF_K, kErrno));
#endif
  for (long nr : kDenied) {
    p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    p.push_back(Stmt(BPF_RET | BPF_K, kErrno));
  }
  // clone3 hides its flags in memory: ENOSYS makes glibc fall back to clone, whose flags show.
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1));
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  // clone: threads only, no new processes.
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4));
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
  p.push_back(Jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1));
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p.push_back(Stmt(BPF_RET | BPF_K, kErrno));
  // kill / tgkill: this process only (abort() and Node's own signals).
  for (long nr : {static_cast<long>(SYS_kill), static_cast<long>(SYS_tgkill)}) {
    p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 4));
    p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
    p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(self), 0, 1));
    p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    p.push_back(Stmt(BPF_RET | BPF_K, kErrno));
  }
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return p;
}

// sandbox(): 0, or -errno (the filter could not be installed; nothing changed then).
Napi::Value Sandbox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<sock_filter> p = Program(getpid());
  sock_fprog prog{static_cast<unsigned short>(p.size()), p.data()};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Err(env, errno);
  // TSYNC: every thread of the process (Node's and Mesa's) gets the filter, not only this one.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) return Err(env, errno);
  return Num(env, 0);
}

}  // namespace

void InitSandbox(Napi::Env env, Napi::Object exports) { SetFn(env, exports, "sandbox", Sandbox); }

}  // namespace vg
