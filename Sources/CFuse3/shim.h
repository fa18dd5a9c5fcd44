// libfuse3 as Swift sees it. FUSE_USE_VERSION must be defined before fuse.h,
// and the macros Swift cannot import are wrapped in static inline functions.
#ifndef RAIDFS_CFUSE3_SHIM_H
#define RAIDFS_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <fcntl.h>

static inline int raidfs_fuse_main(int argc, char *argv[],
                                   const struct fuse_operations *op,
                                   void *private_data) {
    return fuse_main_real(argc, argv, op, sizeof(*op), private_data);
}
#endif
