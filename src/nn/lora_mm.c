/* lora_mm.c — see lora_mm.h: the kernel's dispatch and its split over the threads. */
#include "nn/lora_mm.h"

#include "core/blas.h"
#include "core/pool.h"
#include "core/status.h"
#include "nn/ops.h"

/* Below this many multiply-adds a product stays on the calling thread (as gemm_par). */
#define LORA_PAR_MIN (1 << 21)

/* 1 when the AVX2 kernel runs (ops_avx2; LK_KERNELS=ref keeps OpenBLAS). */
static int use_kernel(void)
{
#ifdef LK_HAVE_AVX2
    return ops_avx2();
#else
    return 0;
#endif
}

int64_t lora_mm_scratch_floats(int64_t n, int64_t k)
{
    return use_kernel() ? n * k : 0;
}

typedef struct {
    lora_mm_args a;
    int by_rows;   /* split the rows of C (else its columns) */
    int64_t chunk; /* rows or columns per item */
} mm_job;

static void mm_items(void *ctx, int64_t c0, int64_t c1, int thread)
{
    (void)thread;
    const mm_job *j = ctx;
#ifdef LK_HAVE_AVX2
    for (int64_t c = c0; c < c1; c++) {
        int64_t e = j->by_rows ? j->a.M : j->a.N, s0 = c * j->chunk;
        int64_t s1 = s0 + j->chunk < e ? s0 + j->chunk : e;
        if (j->by_rows)
            lora_mm_avx2(&j->a, s0, s1, 0, j->a.N);
        else
            lora_mm_avx2(&j->a, 0, j->a.M, s0, s1);
    }
#else
    (void)j;
    (void)c0;
    (void)c1;
#endif
}

/* wt[K, N] = W[N, K]ᵀ */
static void transpose(float *wt, const float *W, int64_t ldw, int64_t N, int64_t K)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            wt[k * N + n] = W[n * ldw + k];
}

void lora_mm(int trans_x, int trans_w, int64_t M, int64_t N, int64_t K, float alpha, const float *X,
             int64_t ldx, const float *W, int64_t ldw, int acc, float *C, int64_t ldc, float *wt,
             int nt)
{
    if (!use_kernel()) {
        gemm_par(trans_x, trans_w, M, N, K, alpha, X, ldx, W, ldw, acc ? 1.0f : 0.0f, C, ldc, nt);
        return;
    }
    if (trans_w) {
        transpose(wt, W, ldw, N, K);
        W = wt;
        ldw = N;
    }
    mm_job j = {.a = {.X = X,
                      .sm = trans_x ? 1 : ldx,
                      .sk = trans_x ? ldx : 1,
                      .W = W,
                      .ldw = ldw,
                      .C = C,
                      .ldc = ldc,
                      .M = M,
                      .N = N,
                      .K = K,
                      .alpha = alpha,
                      .acc = acc}};
    if (M * N * K < LORA_PAR_MIN)
        nt = 1;
    nt = resolve_threads(nt);
    /* the longer side of C in whole tiles (6 rows, 16 columns) per thread */
    j.by_rows = M / 6 >= N / 16;
    int64_t len = j.by_rows ? M : N, tile = j.by_rows ? 6 : 16;
    j.chunk = ((len + nt - 1) / nt + tile - 1) / tile * tile;
    par_for(nt, (len + j.chunk - 1) / j.chunk, mm_items, &j);
}
