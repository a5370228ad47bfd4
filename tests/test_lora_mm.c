/* test_lora_mm.c — lora_mm (src/nn/lora_mm.h), the LoRA products' kernel, against a naive double
 * reference on shapes with every kind of edge (rows not a multiple of the 6-row tile, columns not
 * a multiple of 16, short and long reductions, both transposes, overwrite and accumulate), and
 * with the kernel the same bits on 1, 2 and 3 threads. Runs on the dispatched variant (LK_KERNELS:
 * ctest runs it for avx2 and ref too, the latter through OpenBLAS). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/lora_mm.h"
#include "testutil.h"

static void fill(float *x, int64_t n, rng_state *r)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r);
}

/* C = alpha·op(X)·op(W) (+ C0) in double. */
static void ref(int tx, int tw, int64_t M, int64_t N, int64_t K, float alpha, const float *X,
                const float *W, int acc, const float *C0, double *C)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s +=
                    (double)(tx ? X[k * M + m] : X[m * K + k]) * (tw ? W[n * K + k] : W[k * N + n]);
            C[m * N + n] = alpha * s + (acc ? C0[m * N + n] : 0.0);
        }
}

static void check_shape(int tx, int tw, int64_t M, int64_t N, int64_t K, int acc, rng_state *rg)
{
    float *X = malloc((size_t)(M * K) * sizeof *X), *W = malloc((size_t)(K * N) * sizeof *W);
    float *C0 = malloc((size_t)(M * N) * sizeof *C0), *C = malloc((size_t)(M * N) * sizeof *C);
    float *C1 = malloc((size_t)(M * N) * sizeof *C1);
    float *wt = malloc((size_t)(N * K + 1) * sizeof *wt);
    double *R = malloc((size_t)(M * N) * sizeof *R);
    assert_non_null(X && W && C0 && C && C1 && wt && R);
    fill(X, M * K, rg);
    fill(W, K * N, rg);
    fill(C0, M * N, rg);
    const float alpha = 0.75f;
    ref(tx, tw, M, N, K, alpha, X, W, acc, C0, R);
    for (int nt = 1; nt <= 3; nt++) {
        memcpy(C, C0, (size_t)(M * N) * sizeof *C);
        lora_mm(tx, tw, M, N, K, alpha, X, tx ? M : K, W, tw ? K : N, acc, C, N, wt, nt);
        if (nt == 1 || !lora_mm_scratch_floats(1, 1)) { /* OpenBLAS: within rounding on any */
            for (int64_t i = 0; i < M * N; i++) {
                double tol = 1e-5 * (sqrt((double)K) * 4 + 4);
                if (fabs(C[i] - R[i]) > tol)
                    fail_msg("tx %d tw %d M %lld N %lld K %lld acc %d: C[%lld] = %g, expected %g",
                             tx, tw, (long long)M, (long long)N, (long long)K, acc, (long long)i,
                             C[i], R[i]);
            }
            memcpy(C1, C, (size_t)(M * N) * sizeof *C);
        } else { /* the kernel: the same bits on any thread count */
            assert_memory_equal(C, C1, (size_t)(M * N) * sizeof *C);
        }
    }
    free(X);
    free(W);
    free(C0);
    free(C);
    free(C1);
    free(wt);
    free(R);
}

static void test_shapes(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 7, 13);
    const int64_t Ms[] = {1, 5, 6, 13, 131};
    const int64_t Ns[] = {1, 8, 16, 21, 48};
    const int64_t Ks[] = {1, 16, 65, 130};
    for (int tx = 0; tx < 2; tx++)
        for (int tw = 0; tw < 2; tw++)
            for (size_t m = 0; m < sizeof Ms / sizeof *Ms; m++)
                for (size_t n = 0; n < sizeof Ns / sizeof *Ns; n++)
                    for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++)
                        check_shape(tx, tw, Ms[m], Ns[n], Ks[k], (int)((m + n + k) % 2), &rg);
}

/* The LoRA shapes of a training step at T 512, rank 16 (large enough for the threads' split). */
static void test_lora_shapes(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 8, 14);
    const int64_t T = 512, r = 16, in = 300, out = 264;
    check_shape(0, 1, T, r, in, 0, &rg);  /* u = x·Aᵀ */
    check_shape(0, 1, T, out, r, 1, &rg); /* y += s·u·Bᵀ */
    check_shape(1, 0, out, r, T, 1, &rg); /* dB += s·dyᵀ·u */
    check_shape(0, 0, T, r, out, 0, &rg); /* du = s·dy·B */
    check_shape(1, 0, r, in, T, 1, &rg);  /* dA += duᵀ·x */
    check_shape(0, 0, T, in, r, 1, &rg);  /* dx += du·A */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_lora_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
