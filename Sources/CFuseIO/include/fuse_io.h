// The daemon's reads and writes of /dev/fuse (libfuse's custom I/O hooks):
// they pass every request and reply through unchanged but for two things
// libfuse 3.14 does not do. It cannot negotiate FUSE_HANDLE_KILLPRIV_V2
// (libfuse 3.17 can), so the INIT reply gets it here when the kernel offers
// it; and it does not hand the request's "kill suid/sgid" bit of a WRITE,
// OPEN or CREATE to the filesystem, so it is kept here for the thread that
// serves the request.
#ifndef RAIDFS_FUSE_IO_H
#define RAIDFS_FUSE_IO_H
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

ssize_t raidfs_io_read(int fd, void *buf, size_t len, void *userdata);
ssize_t raidfs_io_writev(int fd, struct iovec *iov, int count, void *userdata);

/// Whether the kernel accepted FUSE_HANDLE_KILLPRIV_V2: the daemon then
/// drops set-user-ID, set-group-ID and file capabilities on write,
/// truncate and chown, and the kernel asks nothing before each write.
int raidfs_io_killpriv_v2(void);

/// For the request this thread is serving (a WRITE, OPEN or CREATE): whether
/// the kernel asked for set-user-ID and set-group-ID to be dropped (the
/// caller lacks CAP_FSETID).
int raidfs_io_request_kills_setid(void);

/// Detaches the daemon as libfuse's fuse_daemonize does (fork, setsid,
/// chdir /), except that the parent exits only when the child calls
/// raidfs_daemon_ready (status 0) or dies first (status 1): `raidfs` and
/// `mount` return once the mount serves and its control socket answers.
/// The child keeps the caller's standard streams until it is ready, so
/// what goes wrong before then is still said on the terminal. Returns 0 in
/// the child, -1 (errno set) if it cannot fork; the parent never returns.
int raidfs_daemon_detach(void);

/// The detached daemon serves: its standard streams go to /dev/null and
/// the waiting parent exits 0. Does nothing when not detached, or again.
void raidfs_daemon_ready(void);
#endif
