/* blas.c — see blas.h. */
#include "core/blas.h"

#include <cblas.h>

/* Below this many multiply-adds a single call is cheaper than waking the team. */
#define PAR_MIN_WORK (1 << 21)

static void single_threaded(void)
{
    static int done; /* a benign race: every thread stores the same value */
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

void gemm_par(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc, int nt)
{
    single_threaded();
    CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    if (nt <= 1 || M * N * K < PAR_MIN_WORK || N < 32) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                    beta, C, (int)ldc);
        return;
    }
    /* column slices, multiples of 16 so the kernels' full-width paths do most of the work */
    int64_t chunk = ((N + nt - 1) / nt + 15) / 16 * 16;
    int64_t n_chunks = (N + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t n0 = c * chunk, n = N - n0 < chunk ? N - n0 : chunk;
        const float *Bp = trans_b ? B + n0 * ldb : B + n0;
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)n, (int)K, alpha, A, (int)lda, Bp, (int)ldb,
                    beta, C + n0, (int)ldc);
    }
}

void gemv_par(int64_t N, int64_t K, const float *W, const float *x, float *y, int nt)
{
    single_threaded();
    if (nt <= 1 || N * K < PAR_MIN_WORK) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, W, (int)K, x, 1, 0.0f, y, 1);
        return;
    }
    int64_t chunk = ((N + nt - 1) / nt + 15) / 16 * 16;
    int64_t n_chunks = (N + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t n0 = c * chunk, n = N - n0 < chunk ? N - n0 : chunk;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)K, 1.0f, W + n0 * K, (int)K, x, 1,
                    0.0f, y + n0, 1);
    }
}
