#define _GNU_SOURCE
#include "fuse_io.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* The write end of the pipe the parent waits on; -1 once ready or when
   not detached. */
static int ready_fd = -1;

int raidfs_daemon_detach(void) {
    int waiter[2];
    /* Close-on-exec: an event program started before readiness must not
       hold the pipe open after the daemon dies. */
    if (pipe2(waiter, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(waiter[0]);
        close(waiter[1]);
        errno = e;
        return -1;
    }
    if (pid > 0) {
        close(waiter[1]);
        char status = 1;
        ssize_t n;
        do { n = read(waiter[0], &status, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) {
            int ws = 0;
            waitpid(pid, &ws, WNOHANG);
            fprintf(stderr, "raidfs: the daemon (pid %d) exited before it served the mount\n", (int)pid);
            _exit(1);
        }
        _exit(status);
    }
    close(waiter[0]);
    ready_fd = waiter[1];
    setsid();
    if (chdir("/") != 0) { /* "/" always exists; nothing to do */ }
    return 0;
}

void raidfs_daemon_ready(void) {
    if (ready_fd < 0) return;
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd >= 0) {
        dup2(nullfd, 0);
        dup2(nullfd, 1);
        dup2(nullfd, 2);
        if (nullfd > 2) close(nullfd);
    }
    char status = 0;
    ssize_t n;
    do { n = write(ready_fd, &status, 1); } while (n < 0 && errno == EINTR);
    close(ready_fd);
    ready_fd = -1;
}
