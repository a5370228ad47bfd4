/* bench_fwd2.c — CPU time of a training forward's two int8 terms on SmolLM2-135M's matrix shapes
 * (random Q4_0 weights, T = 512): with NEW defined, one q8_gemm_fwd2 call; without, the old
 * composition of linear.c (q8_gemm_fwd of x with the bias, the residual r = x − x1, q8_gemm_fwd
 * of r, add_par), so that the same file built against main's library and against a branch's
 * compares them. A benchmark run by hand, not a test; it uses internal headers, so it is built
 * against a Release build's library by hand:
 *
 *   cc -O2 -std=c11 [-DNEW] -Isrc -Iquant -Iinclude tests/gen/bench_fwd2.c build/liblorakit.a \
 *      -lopenblas -lm -lpthread -o /tmp/bench_fwd2 && LK_KERNELS=avx2 /tmp/bench_fwd2 [THREADS [REPS]]
 *
 * Prints per shape the process's CPU time of the best of REPS calls (default 1 thread, 5 calls),
 * and 2·2·T·out·in / that time (G/s: both terms' multiply-adds, 2 operations each). Run the two
 * builds alternately, several rounds, on a busy machine. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "q8.h"
#include "core/blas.h"

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static unsigned g_rng = 1;
static unsigned next(void)
{
    g_rng = g_rng * 1103515245u + 12345u;
    return g_rng;
}

#ifndef NEW
/* linear.c's residual before q8_gemm_fwd2: r = x − d·q per block of 32 (in a multiple of 32). */
static void residual(const float *x, float *r, int64_t n)
{
    for (int64_t i = 0; i < n; i += 32) {
        float amax = 0.0f;
        for (int k = 0; k < 32; k++)
            amax = fabsf(x[i + k]) > amax ? fabsf(x[i + k]) : amax;
        const float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!isfinite(id))
            id = 0.0f;
        for (int k = 0; k < 32; k++) {
            float q = (x[i + k] * id + 0x1.8p23f) - 0x1.8p23f;
            r[i + k] = x[i + k] - d * q;
        }
    }
}
#endif

int main(int argc, char **argv)
{
    const int nt = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 5;
    const int64_t T = 512;
    static const int64_t shapes[4][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};
    static const char *names[4] = {"q/o", "k/v", "gate/up", "down"};
    for (int si = 0; si < 4; si++) {
        const int64_t out = shapes[si][0], in = shapes[si][1];
        const size_t rb = q4_row_bytes(LK_QTYPE_Q4_0, 32, in);
        uint8_t *data = malloc(rb * (size_t)out);
        for (size_t i = 0; i < rb * (size_t)out; i++)
            data[i] = (uint8_t)(next() >> 16);
        for (int64_t o = 0; o < out; o++)
            for (int64_t b = 0; b < in / 32; b++)
                ((q4_block_q4_0 *)(void *)(data + (size_t)o * rb))[b].d = q4_fp32_to_fp16(0.01f);
        q4_weight w;
        if (q4_weight_init(&w, LK_QTYPE_Q4_0, 32, out, in, data) != LK_OK)
            return 1;
        float *X = malloc((size_t)(T * in) * 4), *R = malloc((size_t)(T * in) * 4);
        float *Y = malloc((size_t)(T * out) * 4), *Y2 = malloc((size_t)(T * out) * 4);
        float *bias = malloc((size_t)out * 4);
        for (int64_t i = 0; i < T * in; i++)
            X[i] = (float)((next() >> 8) & 0xffff) / 32768.0f - 1.0f;
        for (int64_t o = 0; o < out; o++)
            bias[o] = 0.1f;
        size_t ws = q8_gemm_fwd_work(&w, T, nt);
#ifdef NEW
        ws = q8_gemm_fwd2_work(&w, T, nt) > ws ? q8_gemm_fwd2_work(&w, T, nt) : ws;
#endif
        void *work = aligned_alloc(64, (ws + 63) / 64 * 64);
        double best = 1e9;
        for (int r = 0; r < reps; r++) {
            const double t0 = cpu_now();
#ifdef NEW
            q8_gemm_fwd2(&w, bias, X, T, Y, nt, work, ws);
            (void)R;
            (void)Y2;
#else
            q8_gemm_fwd(&w, bias, X, T, Y, nt, work, ws);
            residual(X, R, T * in);
            q8_gemm_fwd(&w, NULL, R, T, Y2, nt, work, ws);
            add_par(Y, Y2, T * out, nt);
#endif
            const double dt = cpu_now() - t0;
            best = dt < best ? dt : best;
        }
        printf("%-8s %5lldx%-5lld cpu %.3f ms  %.1f G/s  y[7] %.9g\n", names[si], (long long)out,
               (long long)in, best * 1e3, 4.0 * (double)(T * out * in) / best * 1e-9, Y[7]);
        free(data);
        free(X);
        free(R);
        free(Y);
        free(Y2);
        free(bias);
        free(work);
    }
    return 0;
}
