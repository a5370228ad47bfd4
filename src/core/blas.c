/* blas.c — see blas.h. */
#include "core/blas.h"

#include <cblas.h>

#include "core/pool.h"

/* Below this many multiply-adds a single call is cheaper than waking the team. */
#define PAR_MIN_WORK (1 << 21)
/* A matrix-vector product streams its weights once: from 2^18 of them (1 MiB of fp32, about
 * 50 us on one core) a second thread saves more than waking it costs (10-40 us). */
#define GEMV_PAR_MIN_WORK (1 << 18)

static void single_threaded(void)
{
    static int done; /* a benign race: every thread stores the same value */
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda;
    const float *B;
    int64_t ldb;
    float beta;
    float *C;
    int64_t ldc, chunk;
} gemm_job;

/* column slices [c0, c1) of chunk columns each */
static void gemm_slices(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const gemm_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        int64_t n0 = c * j->chunk, n = j->N - n0 < j->chunk ? j->N - n0 : j->chunk;
        const float *Bp = j->tb == CblasTrans ? j->B + n0 * j->ldb : j->B + n0;
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, (int)j->M, (int)n, (int)j->K, j->alpha, j->A,
                    (int)j->lda, Bp, (int)j->ldb, j->beta, j->C + n0, (int)j->ldc);
    }
}

/* row slices [c0, c1) of chunk rows of C each (N too narrow to cut) */
static void gemm_row_slices(void *ctx, int64_t c0, int64_t c1, int thread)
{
    (void)thread;
    const gemm_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        int64_t m0 = c * j->chunk, m = j->M - m0 < j->chunk ? j->M - m0 : j->chunk;
        const float *Ap = j->ta == CblasTrans ? j->A + m0 : j->A + m0 * j->lda;
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, (int)m, (int)j->N, (int)j->K, j->alpha, Ap,
                    (int)j->lda, j->B, (int)j->ldb, j->beta, j->C + m0 * j->ldc, (int)j->ldc);
    }
}

typedef struct {
    int64_t N, K;
    const float *W, *x;
    float *y;
    int64_t chunk;
} gemv_job;

static void gemv_slices(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const gemv_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        int64_t n0 = c * j->chunk, n = j->N - n0 < j->chunk ? j->N - n0 : j->chunk;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)j->K, 1.0f, j->W + n0 * j->K,
                    (int)j->K, j->x, 1, 0.0f, j->y + n0, 1);
    }
}

void gemm_par(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc, int nt)
{
    single_threaded();
    CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    if (nt > 1 && M * N * K >= PAR_MIN_WORK && N < 32 && M >= 64) { /* a LoRA rank's few columns */
        int64_t chunk = ((M + nt - 1) / nt + 15) / 16 * 16;
        gemm_job j = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, chunk};
        par_for(nt, (M + chunk - 1) / chunk, gemm_row_slices, &j);
        return;
    }
    if (nt <= 1 || M * N * K < PAR_MIN_WORK || N < 32) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                    beta, C, (int)ldc);
        return;
    }
    /* column slices, multiples of 16 so the kernels' full-width paths do most of the work */
    int64_t chunk = ((N + nt - 1) / nt + 15) / 16 * 16;
    gemm_job j = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, chunk};
    par_for(nt, (N + chunk - 1) / chunk, gemm_slices, &j);
}

/* gemv_par's rows per slice: multiples of 16 so the kernels' full-width paths do most of it */
static int64_t gemv_chunk(int64_t N, int nt)
{
    return ((N + nt - 1) / nt + 15) / 16 * 16;
}

void gemv_par(int64_t N, int64_t K, const float *W, const float *x, float *y, int nt)
{
    single_threaded();
    if (nt <= 1 || N * K < GEMV_PAR_MIN_WORK) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, W, (int)K, x, 1, 0.0f, y, 1);
        return;
    }
    gemv_job j = {N, K, W, x, y, gemv_chunk(N, nt)};
    par_for(nt, (N + j.chunk - 1) / j.chunk, gemv_slices, &j);
}

void gemv_par_rows(int64_t N, int64_t K, int nt, int t, int64_t *r0, int64_t *n)
{
    const int64_t chunk = nt <= 1 || N * K < GEMV_PAR_MIN_WORK ? N : gemv_chunk(N, nt);
    *r0 = (int64_t)t * chunk < N ? (int64_t)t * chunk : N;
    *n = N - *r0 < chunk ? N - *r0 : chunk;
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} add_job;

#define ADD_GRAIN 8192 /* elements per range of add_par */

static void add_slices(void *ctx, int64_t c0, int64_t c1, int thread)
{
    (void)thread;
    const add_job *j = ctx;
    int64_t e1 = c1 * ADD_GRAIN < j->n ? c1 * ADD_GRAIN : j->n;
    for (int64_t i = c0 * ADD_GRAIN; i < e1; i++)
        j->y[i] += j->x[i];
}

void add_par(float *y, const float *x, int64_t n, int nt)
{
    add_job j = {y, x, n};
    par_for(n < 8 * ADD_GRAIN ? 1 : nt, (n + ADD_GRAIN - 1) / ADD_GRAIN, add_slices, &j);
}
