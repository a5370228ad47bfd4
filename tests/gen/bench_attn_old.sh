#!/usr/bin/env bash
# bench_attn_old.sh — the attention bench of `test_attn --bench` against the row-at-a-time
# attention of commit 6c4d03a (before the blocked kernels), for BENCHMARKS.md's "Fused attention"
# old-vs-new rows. Run by hand from the repository root after `bash .ci/build.sh build`:
#   bash tests/gen/bench_attn_old.sh T H KVH hd reps [threads [kpos0]]
# It prints the same JSON line as build/test_attn --bench with "variant": "old". The old ops.c is
# taken from git and compiled with the library's Release flags; pool.c and the rest come from
# build/liblorakit.a.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/nn"
git -C "$root" show 6c4d03a:src/nn/ops.c >"$tmp/ops_old.c"
git -C "$root" show 6c4d03a:src/nn/ops.h >"$tmp/nn/ops.h"
cat >"$tmp/bench.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nn/ops.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 6)
        return fprintf(stderr, "usage: T H KVH hd reps [threads [kpos0]]\n"), 2;
    long long T = atoll(argv[1]), H = atoll(argv[2]), KVH = atoll(argv[3]), hd = atoll(argv[4]);
    int reps = atoi(argv[5]), nt = argc > 6 ? atoi(argv[6]) : 1;
    long long kp = argc > 7 ? atoll(argv[7]) : 0, qn = T * H * hd, kn = (kp + T) * KVH * hd;
    float *q = malloc(qn * 4), *k = malloc(kn * 4), *v = malloc(kn * 4), *dout = malloc(qn * 4);
    float *out = malloc(qn * 4), *dq = malloc(qn * 4), *dk = malloc(kn * 4), *dv = malloc(kn * 4);
    float *lse = malloc(T * H * 4), *D = malloc(T * H * 4), *sc = malloc(nt * (kp + T) * 4);
    int64_t *lo = calloc(T, sizeof *lo);
    srand(1);
    for (long long i = 0; i < qn; i++) {
        q[i] = rand() / (float)RAND_MAX - 0.5f;
        dout[i] = rand() / (float)RAND_MAX - 0.5f;
    }
    for (long long i = 0; i < kn; i++) {
        k[i] = rand() / (float)RAND_MAX - 0.5f;
        v[i] = rand() / (float)RAND_MAX - 0.5f;
    }
    attn_shape a = {.T = T, .H = H, .KVH = KVH, .hd = hd, .kpos0 = kp, .lo = lo};
    double bf = 1e30, bb = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        attention_forward(out, lse, q, k, v, &a, sc, nt);
        double t1 = now_s();
        if (!kp)
            attention_backward(dq, dk, dv, D, dout, q, k, v, out, lse, &a, nt);
        double t2 = now_s();
        bf = t1 - t0 < bf ? t1 - t0 : bf;
        bb = t2 - t1 < bb ? t2 - t1 : bb;
    }
    printf("{\"variant\": \"old\", \"T\": %lld, \"H\": %lld, \"KVH\": %lld, \"hd\": %lld, "
           "\"kpos0\": %lld, \"threads\": %d, \"forward_ms\": %.4f, \"backward_ms\": %.3f}\n",
           T, H, KVH, hd, kp, nt, bf * 1e3, bb * 1e3);
    return 0;
}
C
cc -O3 -DNDEBUG -std=c11 -D_GNU_SOURCE -I"$tmp" -I"$root/src" -I"$root/include" \
    "$tmp/bench.c" "$tmp/ops_old.c" "$root/build/liblorakit.a" -lpthread -lm -o "$tmp/bench"
"$tmp/bench" "$@"
