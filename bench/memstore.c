/*
 * memstore: bytes per key of the multi-version store (server/mvcc.h) on
 * its own, without raft, gRPC or the rest of a member.
 *
 *   bench/memstore [KEYS [VALUE_SIZE [ORDER]]]
 *
 * Puts KEYS keys (default 1000000) of 8 decimal digits ("%08zu", as
 * ikada-bench --sequential-keys writes them) with VALUE_SIZE-byte values
 * (default 256, random lower-case letters, each value different) into an
 * empty store, one put per revision, in key order (ORDER "seq", default)
 * or in a shuffled order ("random"). Prints one line: the growth of the
 * process's VmRSS and of glibc's in-use heap (mallinfo2: arenas plus
 * mmapped chunks) per key, and the store's own estimate (mvcc_stats()
 * bytes). Exit 0, or 1 when a put fails or the arguments are bad.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/mvcc.h"

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = atol(line + 6);
        }
    }
    fclose(f);
    return v;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

int main(int argc, char **argv)
{
    static struct mvcc m;
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    size_t vs = argc > 2 ? strtoul(argv[2], NULL, 10) : 256;
    const char *order = argc > 3 ? argv[3] : "seq";
    size_t *perm = NULL;
    uint8_t *val;
    char key[32];
    long r0, r1;
    size_t h0, h1;
    struct mvcc_stats st;

    if (n == 0 || vs < 8 || vs > (1u << 20) ||
        (strcmp(order, "seq") != 0 && strcmp(order, "random") != 0)) {
        fprintf(
            stderr,
            "usage: memstore [KEYS>0 [VALUE_SIZE 8..1048576 [seq|random]]]\n");
        return 1;
    }
    val = malloc(vs);
    if (val == NULL) {
        return 1;
    }
    srand(1);
    if (strcmp(order, "random") == 0) {
        /* A shuffled permutation of 0..n-1, made before measuring. */
        perm = malloc(n * sizeof *perm);
        if (perm == NULL) {
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            perm[i] = i;
        }
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = ((size_t)rand() << 16 ^ (size_t)rand()) % (i + 1);
            size_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
    for (size_t i = 0; i < vs; i++) {
        val[i] = (uint8_t)('a' + rand() % 26);
    }
    mvcc_init(&m);
    r0 = rss_kib();
    h0 = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        size_t k = perm != NULL ? perm[i] : i;
        snprintf(key, sizeof key, "%08zu", k);
        memcpy(val, &i, sizeof i); /* every value differs */
        if (mvcc_put(&m, (const uint8_t *)key, strlen(key), val, vs, 0, NULL) !=
            0) {
            fprintf(stderr, "memstore: put %zu failed\n", i);
            return 1;
        }
    }
    r1 = rss_kib();
    h1 = heap_in_use();
    mvcc_stats(&m, &st);
    printf("memstore: %zu puts (%s order), %zu keys, %zu versions, "
           "%zu-byte values: RSS +%ld KiB = %.1f B/key; heap in use +%zu B = "
           "%.1f B/key; mvcc_stats bytes %.1f B/key\n",
           n, order, st.keys, st.revisions, vs, r1 - r0,
           (double)(r1 - r0) * 1024.0 / (double)st.keys, h1 - h0,
           (double)(h1 - h0) / (double)st.keys,
           (double)st.bytes / (double)st.keys);
    mvcc_close(&m);
    free(perm);
    free(val);
    return 0;
}
