/* The ISA-L calls of RAIDCore's Codec, made from C on the same buffer
 * shapes as raidfs-codec-bench: xor_gen (RAID 5) and pq_gen (RAID 6) to
 * encode; ec_encode_data with tables inverted once to rebuild the first m
 * data chunks from the next k. Also memcpy of the k data chunks, the
 * physical bound. One TSV line per cell: impl, level, op, chunk, GB/s of
 * data chunks processed.
 *   cc -O2 codec.c -lisal -o codec && ./codec [BYTES_PER_CELL] */
#include <isa-l.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The best of three timed runs of a loop, as CodecBench.swift does: a run
 * the scheduler cut into measures the machine, not the code. */
#define BEST_OF_3(secs, loop)                                                  \
    do {                                                                       \
        secs = 1e30;                                                           \
        for (int rep_ = 0; rep_ < 3; rep_++) {                                 \
            double t0_ = now();                                                \
            loop;                                                              \
            double d_ = now() - t0_;                                           \
            if (d_ < secs) secs = d_;                                          \
        }                                                                      \
    } while (0)

static void emit(const char *impl, const char *level, const char *op, int chunk, double bps) {
    printf("%s\t%s\t%s\t%d\t%.3f\n", impl, level, op, chunk, bps / 1e9);
}

static void measure(const char *name, int k, int m, int chunk, long per_cell) {
    int n = k + m;
    unsigned char *buf[8], *src[8], *out[2];
    for (int i = 0; i < n + m; i++) {
        if (posix_memalign((void **)&buf[i], 4096, chunk)) abort();
        memset(buf[i], i * 37 + 1, chunk);
    }
    long iterations = per_cell / ((long)k * chunk);
    if (iterations < 16) iterations = 16;
    double data = (double)iterations * k * chunk;

    double t;
    BEST_OF_3(t, for (long i = 0; i < iterations; i++) {
        if (m == 1) xor_gen(n, chunk, (void **)buf);
        else pq_gen(n, chunk, (void **)buf);
    });
    emit("c", name, "encode", chunk, data / t);

    /* md's generator (identity, all-ones, powers of 2); decode rows for the
     * lost data chunks 0..m-1 are rows of the inverse of the sources' rows. */
    unsigned char a[8 * 8], b[8 * 8], inv[8 * 8], rows[2 * 8], tables[32 * 8 * 2];
    gf_gen_rs_matrix(a, n, k);
    for (int r = 0; r < k; r++) memcpy(&b[r * k], &a[(m + r) * k], k);
    if (gf_invert_matrix(b, inv, k)) abort();
    for (int w = 0; w < m; w++) memcpy(&rows[w * k], &inv[w * k], k);
    ec_init_tables(k, m, rows, tables);
    for (int j = 0; j < k; j++) src[j] = buf[m + j];
    for (int j = 0; j < m; j++) out[j] = buf[n + j];
    BEST_OF_3(t, for (long i = 0; i < iterations; i++) ec_encode_data(chunk, k, m, tables, src, out));
    emit("c", name, "decode", chunk, data / t);
    for (int j = 0; j < m; j++)
        if (memcmp(out[j], buf[j], chunk)) { fprintf(stderr, "decode wrong\n"); exit(1); }

    BEST_OF_3(t, for (long i = 0; i < iterations; i++)
        for (int j = 0; j < k; j++) memcpy(buf[n + (j % m)], buf[j], chunk));
    emit("memcpy", name, "copy", chunk, data / t);
    for (int i = 0; i < n + m; i++) free(buf[i]);
}

int main(int argc, char **argv) {
    long per_cell = argc > 1 ? atol(argv[1]) : 1L << 30;
    int chunks[] = {4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20};
    for (int c = 0; c < 5; c++) measure("raid5", 3, 1, chunks[c], per_cell);
    for (int c = 0; c < 5; c++) measure("raid6", 4, 2, chunks[c], per_cell);
    return 0;
}
