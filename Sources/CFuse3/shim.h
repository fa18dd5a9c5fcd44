// libfuse3 (its low-level API) as Swift sees it. FUSE_USE_VERSION must be defined before fuse.h,
// and the macros Swift cannot import are wrapped in static inline functions.
#ifndef RAIDFS_CFUSE3_SHIM_H
#define RAIDFS_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <fcntl.h>

static inline int raidfs_parse_cmdline(struct fuse_args *args, struct fuse_cmdline_opts *opts) {
    return fuse_parse_cmdline(args, opts);
}

static inline int raidfs_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}
#endif
