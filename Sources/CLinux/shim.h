// Linux calls that Swift's Glibc module leaves out (they need _GNU_SOURCE):
// renameat2 for RENAME_NOREPLACE / RENAME_EXCHANGE, and fallocate; and
// small inline helpers Swift cannot express or check.
#ifndef RAIDFS_CLINUX_SHIM_H
#define RAIDFS_CLINUX_SHIM_H
#include <fcntl.h>
#include <stdio.h>
#include <sys/xattr.h>
#include <sys/vfs.h>
/* chmod that never follows a symlink: fchmodat2 (Linux 6.6) in one call,
   else glibc's emulation; EOPNOTSUPP for a symlink itself. */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
static inline int raidfs_fchmodat_nofollow(int dirfd, const char *path, unsigned int mode) {
    long r = syscall(452 /* fchmodat2 */, dirfd, path, mode, 0x100 /* AT_SYMLINK_NOFOLLOW */);
    if (r == -1 && errno == ENOSYS) return fchmodat(dirfd, path, mode, 0x100);
    return (int)r;
}
/* The filesystem type (statfs's f_type) of an open file; -1 on error. */
static inline long raidfs_fs_type(int fd) { struct statfs s; return fstatfs(fd, &s) == 0 ? (long)s.f_type : -1; }
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
int fallocate(int fd, int mode, off_t offset, off_t len);
int syncfs(int fd);
/* struct ucred (SO_PEERCRED) is only declared under _GNU_SOURCE. */
struct raidfs_ucred { int pid; unsigned int uid; unsigned int gid; };
/* O_PATH, O_NOATIME and O_TMPFILE are only defined under _GNU_SOURCE. */
static const int RAIDFS_O_PATH = 010000000;
static const int RAIDFS_O_TMPFILE = 020200000;
static const int RAIDFS_O_NOATIME = 01000000;
/* Relaxed atomics for counters read and written from many threads. */
#include <stdint.h>
static inline void raidfs_store_relaxed_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t raidfs_load_relaxed_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void raidfs_add_relaxed_u64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline void raidfs_max_relaxed_u64(uint64_t *p, uint64_t v) {
    uint64_t old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > old && !__atomic_compare_exchange_n(p, &old, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}
/* stdout line-buffered (Swift 6 cannot check a use of the C global). */
static inline void raidfs_line_buffered_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
#endif
