/* blas.h — fp32 GEMM/GEMV through OpenBLAS, parallelised by us: the output columns are split
 * over the library's threads (core/pool.h), or its rows when there are fewer than 32 columns (a
 * LoRA rank's), and each thread makes a single-threaded OpenBLAS call on its slice. One thread pool for the whole library, so OpenBLAS's own threads never compete
 * with ours for the cores (Debian's default libopenblas0-pthread starts one idle worker per extra
 * CPU when it loads; set to one thread, it never hands them work and they sleep). The slices do not
 * split the reduction over K, but OpenBLAS may take another micro-kernel path at a slice's edge
 * (seen on fp32 LM heads), so results can differ in the last bits between thread counts; a fixed
 * thread count gives identical results run to run. */
#ifndef LK_BLAS_H
#define LK_BLAS_H

#include <stdint.h>

/* C[M,N] = alpha·op(A)·op(B) + beta·C (row-major). op(A) = Aᵀ with A [K, M] when trans_a, else
 * A [M, K]; op(B) = Bᵀ with B [N, K] when trans_b, else B [K, N]. Leading dimensions in
 * elements. */
void gemm_par(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc, int n_threads);

/* y[N] = W[N,K]·x[K] (beta 0), split over the rows of W. */
void gemv_par(int64_t N, int64_t K, const float *W, const float *x, float *y, int n_threads);

/* The rows [*r0, *r0 + *n) of part t (0 <= t < nt) of gemv_par's split of W[N,K] over nt >= 1
 * threads (*n may be 0): gemv_par(*n, K, W + *r0·K, x, y + *r0, 1) for every t gives the same
 * bits as gemv_par(N, K, W, x, y, nt). For callers that run several products in one region. */
void gemv_par_rows(int64_t N, int64_t K, int nt, int t, int64_t *r0, int64_t *n);

/* y[n] += x[n], split over ranges (element-wise: the same result on any thread count). */
void add_par(float *y, const float *x, int64_t n, int n_threads);

#endif /* LK_BLAS_H */
