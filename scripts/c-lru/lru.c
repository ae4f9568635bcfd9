/* A bare LRU over dense arrays, the yardstick for moesim's replay loop (docs/performance.md): reads a decode-only
 * .moet trace (docs/trace-format.md, "Binary format"), replays every token's layers in order, each layer's ids
 * ascending (moesim's order), flat ids layer * experts + id, CAPACITY experts in one partition; a miss evicts the
 * least recent expert that the layer does not use (moesim pins the layer's set before any miss looks for room).
 * Prints the accesses, hits and the loop's seconds (the file's loading is not timed). Usage: lru TRACE.moet CAPACITY */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail(const char *what) { fprintf(stderr, "lru: %s\n", what); exit(1); }

static void readn(FILE *f, void *p, size_t n) { if (fread(p, 1, n, f) != n) fail("the file ends early"); }

int main(int argc, char **argv) {
    if (argc != 3) fail("usage: lru TRACE.moet CAPACITY");
    FILE *f = fopen(argv[1], "rb");
    if (!f) fail("cannot open the trace");
    char magic[8];
    uint32_t shape[5];
    uint64_t tokens;
    uint32_t headerBytes;
    readn(f, magic, 8);
    if (memcmp(magic, "MOETRACE", 8)) fail("not a .moet file");
    readn(f, shape, sizeof shape);  /* version, layers, experts, top_k, flags */
    readn(f, &tokens, 8);
    readn(f, &headerBytes, 4);
    if (fseek(f, (long)headerBytes + (long)tokens * 9, SEEK_CUR)) fail("cannot skip the header and columns");
    const uint32_t L = shape[1], E = shape[2], K = shape[3];
    const size_t routed = (size_t)tokens * L * K;
    uint16_t *ids = malloc(routed * 2);
    if (!ids) fail("out of memory");
    readn(f, ids, routed * 2);
    fclose(f);
    const long capacity = atol(argv[2]);
    const int32_t flat = (int32_t)(L * E);
    int32_t *prev = malloc(flat * 4), *next = malloc(flat * 4);
    uint8_t *resident = calloc(flat, 1);
    uint32_t *pinnedIn = calloc(flat, 4), layerStamp = 0;
    if (!prev || !next || !resident || !pinnedIn || capacity < (long)K) fail("bad capacity, or out of memory");
    int32_t head = -1, tail = -1;
    long held = 0;
    uint64_t accesses = 0, hits = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint16_t cell[64];
    for (uint64_t t = 0; t < tokens; t++) {
        for (uint32_t l = 0; l < L; l++) {
            const uint16_t *c = ids + ((size_t)t * L + l) * K;
            if (c[0] == 0xFFFF || K > 64) continue;
            for (uint32_t j = 0; j < K; j++) {  /* insertion sort: ascending ids */
                uint16_t v = c[j];
                uint32_t i = j;
                while (i > 0 && cell[i - 1] > v) { cell[i] = cell[i - 1]; i--; }
                cell[i] = v;
            }
            layerStamp++;
            for (uint32_t j = 0; j < K; j++) pinnedIn[l * E + cell[j]] = layerStamp;
            for (uint32_t j = 0; j < K; j++) {
                const int32_t e = (int32_t)(l * E + cell[j]);
                accesses++;
                if (resident[e]) {
                    hits++;
                    if (head == e) continue;
                    /* unlink */
                    if (prev[e] >= 0) next[prev[e]] = next[e];
                    if (next[e] >= 0) prev[next[e]] = prev[e]; else tail = prev[e];
                } else {
                    if (held == capacity) {  /* evict the least recent expert the layer does not use */
                        int32_t v = tail;
                        while (pinnedIn[v] == layerStamp) v = prev[v];
                        if (prev[v] >= 0) next[prev[v]] = next[v]; else head = next[v];
                        if (next[v] >= 0) prev[next[v]] = prev[v]; else tail = prev[v];
                        resident[v] = 0;
                        held--;
                    }
                    resident[e] = 1;
                    held++;
                }
                prev[e] = -1;  /* push to the front */
                next[e] = head;
                if (head >= 0) prev[head] = e; else tail = e;
                head = e;
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("%llu %llu %.6f\n", (unsigned long long)accesses, (unsigned long long)hits, seconds);
    return 0;
}
