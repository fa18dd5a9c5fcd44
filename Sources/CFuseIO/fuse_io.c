#include "fuse_io.h"
#include <linux/fuse.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* The INIT request's unique id while its reply is pending, 0 otherwise. */
static uint64_t init_unique;
static int killpriv_v2;
static _Thread_local int request_kills_setid;

/* Reads 32 bits at `offset` of a request `n` bytes long (0 if shorter). */
static uint32_t field32(const char *buf, ssize_t n, size_t offset) {
    uint32_t v = 0;
    if (n >= 0 && (size_t)n >= offset + sizeof(v)) memcpy(&v, buf + offset, sizeof(v));
    return v;
}

ssize_t raidfs_io_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    request_kills_setid = 0;
    if (n < (ssize_t)sizeof(struct fuse_in_header)) return n;
    const char *b = buf;
    struct fuse_in_header h;
    memcpy(&h, b, sizeof(h));
    const size_t arg = sizeof(struct fuse_in_header);
    switch (h.opcode) {
    case FUSE_INIT:
        if (field32(b, n, arg + offsetof(struct fuse_init_in, flags)) & FUSE_HANDLE_KILLPRIV_V2)
            __atomic_store_n(&init_unique, h.unique, __ATOMIC_RELEASE);
        break;
    case FUSE_WRITE:
        request_kills_setid =
            (field32(b, n, arg + offsetof(struct fuse_write_in, write_flags)) & FUSE_WRITE_KILL_SUIDGID) != 0;
        break;
    case FUSE_OPEN:
        request_kills_setid =
            (field32(b, n, arg + offsetof(struct fuse_open_in, open_flags)) & FUSE_OPEN_KILL_SUIDGID) != 0;
        break;
    case FUSE_CREATE:
        request_kills_setid =
            (field32(b, n, arg + offsetof(struct fuse_create_in, open_flags)) & FUSE_OPEN_KILL_SUIDGID) != 0;
        break;
    }
    return n;
}

ssize_t raidfs_io_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    uint64_t pending = __atomic_load_n(&init_unique, __ATOMIC_ACQUIRE);
    if (pending != 0 && count >= 2 && iov[0].iov_len >= sizeof(struct fuse_out_header) &&
        iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t)) {
        struct fuse_out_header o;
        memcpy(&o, iov[0].iov_base, sizeof(o));
        if (o.unique == pending) {
            __atomic_store_n(&init_unique, 0, __ATOMIC_RELEASE);
            if (o.error == 0) {
                /* libfuse's own reply, built on its stack: V2 instead of
                   V1 (which libfuse asks for by default and this daemon
                   does not implement). */
                char *flags = (char *)iov[1].iov_base + offsetof(struct fuse_init_out, flags);
                uint32_t f;
                memcpy(&f, flags, sizeof(f));
                f = (f | FUSE_HANDLE_KILLPRIV_V2) & ~(uint32_t)FUSE_HANDLE_KILLPRIV;
                memcpy(flags, &f, sizeof(f));
                __atomic_store_n(&killpriv_v2, 1, __ATOMIC_RELEASE);
            }
        }
    }
    return writev(fd, iov, count);
}

int raidfs_io_killpriv_v2(void) { return __atomic_load_n(&killpriv_v2, __ATOMIC_ACQUIRE); }

int raidfs_io_request_kills_setid(void) { return request_kills_setid; }
