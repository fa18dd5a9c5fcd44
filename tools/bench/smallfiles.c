/* Small-file metadata rate: creates N files of SIZE bytes in DIR (open,
 * write, close), stats each, unlinks each. Prints one line per phase:
 * "create|stat|unlink <ops per second>".
 *   cc -O2 smallfiles.c -o smallfiles && ./smallfiles DIR [N] [SIZE] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: smallfiles DIR [N] [SIZE]\n"); return 64; }
    const char *dir = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 10000;
    int size = argc > 3 ? atoi(argv[3]) : 4096;
    char *buf = malloc(size), path[4096];
    memset(buf, 'x', size);
    double t = now();
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%06d", dir, i);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0 || write(fd, buf, size) != size || close(fd)) { perror(path); return 1; }
    }
    printf("create %.0f\n", n / (now() - t));
    t = now();
    struct stat st;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%06d", dir, i);
        if (stat(path, &st) || st.st_size != size) { perror(path); return 1; }
    }
    printf("stat %.0f\n", n / (now() - t));
    t = now();
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%06d", dir, i);
        if (unlink(path)) { perror(path); return 1; }
    }
    printf("unlink %.0f\n", n / (now() - t));
    return 0;
}
