/* attn_avx2.c — the blocked attention kernels of attn_kernel.h for AVX2 + FMA (compiled with
 * -mavx2 -mfma): the products' inner block is 6 rows × 16 columns in twelve ymm accumulators
 * (mm_tall: 8 loads per 12 fmas, and 12 independent chains where the 4 × 16 block's 8 only just
 * cover the fma latency), with 4 × 16 (mm_wide) for the rows a tile of 32 leaves (32 = 4·6 + 2·4).
 * Every element is the same fma chain over k in either block: the bits do not depend on it. */
#include <immintrin.h>
#include <stdint.h>

/* c[4, 16] += a[4, K]·b[K, 16] (a[r, k] at a[r·lda + k·aks]; row strides ldb, ldc) */
static void mm_wide(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                    int64_t aks, const float *restrict b, int64_t ldb, int64_t K)
{
    __m256 c0l = _mm256_loadu_ps(c), c0h = _mm256_loadu_ps(c + 8);
    __m256 c1l = _mm256_loadu_ps(c + ldc), c1h = _mm256_loadu_ps(c + ldc + 8);
    __m256 c2l = _mm256_loadu_ps(c + 2 * ldc), c2h = _mm256_loadu_ps(c + 2 * ldc + 8);
    __m256 c3l = _mm256_loadu_ps(c + 3 * ldc), c3h = _mm256_loadu_ps(c + 3 * ldc + 8);
    const int64_t l3 = 3 * lda;
    for (int64_t k = 0; k < K; k++, a += aks) {
        __m256 bl = _mm256_loadu_ps(b + k * ldb), bh = _mm256_loadu_ps(b + k * ldb + 8);
        __m256 a0 = _mm256_broadcast_ss(a), a1 = _mm256_broadcast_ss(a + lda);
        c0l = _mm256_fmadd_ps(a0, bl, c0l);
        c0h = _mm256_fmadd_ps(a0, bh, c0h);
        c1l = _mm256_fmadd_ps(a1, bl, c1l);
        c1h = _mm256_fmadd_ps(a1, bh, c1h);
        __m256 a2 = _mm256_broadcast_ss(a + 2 * lda), a3 = _mm256_broadcast_ss(a + l3);
        c2l = _mm256_fmadd_ps(a2, bl, c2l);
        c2h = _mm256_fmadd_ps(a2, bh, c2h);
        c3l = _mm256_fmadd_ps(a3, bl, c3l);
        c3h = _mm256_fmadd_ps(a3, bh, c3h);
    }
    _mm256_storeu_ps(c, c0l);
    _mm256_storeu_ps(c + 8, c0h);
    _mm256_storeu_ps(c + ldc, c1l);
    _mm256_storeu_ps(c + ldc + 8, c1h);
    _mm256_storeu_ps(c + 2 * ldc, c2l);
    _mm256_storeu_ps(c + 2 * ldc + 8, c2h);
    _mm256_storeu_ps(c + 3 * ldc, c3l);
    _mm256_storeu_ps(c + 3 * ldc + 8, c3h);
}

/* c[6, 16] += a[6, K]·b[K, 16] (a[r, k] at a[r·lda + k·aks]; row strides ldb, ldc) */
static void mm_tall(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                    int64_t aks, const float *restrict b, int64_t ldb, int64_t K)
{
    __m256 c0l = _mm256_loadu_ps(c), c0h = _mm256_loadu_ps(c + 8);
    __m256 c1l = _mm256_loadu_ps(c + ldc), c1h = _mm256_loadu_ps(c + ldc + 8);
    __m256 c2l = _mm256_loadu_ps(c + 2 * ldc), c2h = _mm256_loadu_ps(c + 2 * ldc + 8);
    __m256 c3l = _mm256_loadu_ps(c + 3 * ldc), c3h = _mm256_loadu_ps(c + 3 * ldc + 8);
    __m256 c4l = _mm256_loadu_ps(c + 4 * ldc), c4h = _mm256_loadu_ps(c + 4 * ldc + 8);
    __m256 c5l = _mm256_loadu_ps(c + 5 * ldc), c5h = _mm256_loadu_ps(c + 5 * ldc + 8);
    const int64_t l3 = 3 * lda;
    for (int64_t k = 0; k < K; k++, a += aks) {
        __m256 bl = _mm256_loadu_ps(b + k * ldb), bh = _mm256_loadu_ps(b + k * ldb + 8);
        __m256 x = _mm256_broadcast_ss(a);
        c0l = _mm256_fmadd_ps(x, bl, c0l);
        c0h = _mm256_fmadd_ps(x, bh, c0h);
        x = _mm256_broadcast_ss(a + lda);
        c1l = _mm256_fmadd_ps(x, bl, c1l);
        c1h = _mm256_fmadd_ps(x, bh, c1h);
        x = _mm256_broadcast_ss(a + 2 * lda);
        c2l = _mm256_fmadd_ps(x, bl, c2l);
        c2h = _mm256_fmadd_ps(x, bh, c2h);
        x = _mm256_broadcast_ss(a + l3);
        c3l = _mm256_fmadd_ps(x, bl, c3l);
        c3h = _mm256_fmadd_ps(x, bh, c3h);
        x = _mm256_broadcast_ss(a + l3 + lda);
        c4l = _mm256_fmadd_ps(x, bl, c4l);
        c4h = _mm256_fmadd_ps(x, bh, c4h);
        x = _mm256_broadcast_ss(a + l3 + 2 * lda);
        c5l = _mm256_fmadd_ps(x, bl, c5l);
        c5h = _mm256_fmadd_ps(x, bh, c5h);
    }
    _mm256_storeu_ps(c, c0l);
    _mm256_storeu_ps(c + 8, c0h);
    _mm256_storeu_ps(c + ldc, c1l);
    _mm256_storeu_ps(c + ldc + 8, c1h);
    _mm256_storeu_ps(c + 2 * ldc, c2l);
    _mm256_storeu_ps(c + 2 * ldc + 8, c2h);
    _mm256_storeu_ps(c + 3 * ldc, c3l);
    _mm256_storeu_ps(c + 3 * ldc + 8, c3h);
    _mm256_storeu_ps(c + 4 * ldc, c4l);
    _mm256_storeu_ps(c + 4 * ldc + 8, c4h);
    _mm256_storeu_ps(c + 5 * ldc, c5l);
    _mm256_storeu_ps(c + 5 * ldc + 8, c5h);
}

#define ATTN_TALL_M  6
#define ATTN_WIDE_N  16
#define ATTN_VARIANT avx2
#include "nn/attn_kernel.h"
