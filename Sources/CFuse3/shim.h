// libfuse3 (its low-level API) as Swift sees it. FUSE_USE_VERSION must be defined before fuse.h,
// and the macros Swift cannot import are wrapped in static inline functions.
#ifndef RAIDFS_CFUSE3_SHIM_H
#define RAIDFS_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <fcntl.h>
#include <string.h>
#include <linux/fuse.h>

static inline int raidfs_parse_cmdline(struct fuse_args *args, struct fuse_cmdline_opts *opts) {
    return fuse_parse_cmdline(args, opts);
}

/* O_DIRECT, which Swift's Glibc does not export (glibc defines it only
   under _GNU_SOURCE, which this module must not set: its headers would then
   differ from SwiftGlibc's; __O_DIRECT is the value it aliases). */
static inline int raidfs_o_direct(void) { return __O_DIRECT; }

/* fuse_reply_open for a handle opened with O_DIRECT: FOPEN_DIRECT_IO, and
   FOPEN_PARALLEL_DIRECT_WRITES so the kernel sends writes within the size
   without holding the inode's lock exclusive (Linux 6.2). libfuse 3.14's
   fuse_file_info has no bit for the latter (3.15 added one), so the reply is
   built as <linux/fuse.h> defines it, as fuse_reply_open would send it. */
static inline int raidfs_reply_open_direct(fuse_req_t req, uint64_t fh) {
    struct fuse_open_out arg;
    memset(&arg, 0, sizeof(arg));
    arg.fh = fh;
    arg.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
    return fuse_reply_buf(req, (const char *)&arg, sizeof(arg));
}

static inline int raidfs_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}
#endif
