/* attn_avx512.c — the blocked attention kernels of attn_kernel.h for AVX-512 (compiled with
 * -mavx512f ...): the products' inner block is 6 rows × 32 columns in twelve zmm accumulators
 * (mm_tall), with 4 × 32 (mm_wide) for the rows a tile of 32 leaves (32 = 4·6 + 2·4). Every
 * element is the same fma chain over k in either block: the bits do not depend on it. */
#include <immintrin.h>
#include <stdint.h>

/* c[4, 32] += a[4, K]·b[K, 32] (a[r, k] at a[r·lda + k·aks]; row strides ldb, ldc) */
static void mm_wide(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                    int64_t aks, const float *restrict b, int64_t ldb, int64_t K)
{
    __m512 c0l = _mm512_loadu_ps(c), c0h = _mm512_loadu_ps(c + 16);
    __m512 c1l = _mm512_loadu_ps(c + ldc), c1h = _mm512_loadu_ps(c + ldc + 16);
    __m512 c2l = _mm512_loadu_ps(c + 2 * ldc), c2h = _mm512_loadu_ps(c + 2 * ldc + 16);
    __m512 c3l = _mm512_loadu_ps(c + 3 * ldc), c3h = _mm512_loadu_ps(c + 3 * ldc + 16);
    const int64_t l3 = 3 * lda;
    for (int64_t k = 0; k < K; k++, a += aks) {
        __m512 bl = _mm512_loadu_ps(b + k * ldb), bh = _mm512_loadu_ps(b + k * ldb + 16);
        __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[lda]);
        c0l = _mm512_fmadd_ps(a0, bl, c0l);
        c0h = _mm512_fmadd_ps(a0, bh, c0h);
        c1l = _mm512_fmadd_ps(a1, bl, c1l);
        c1h = _mm512_fmadd_ps(a1, bh, c1h);
        __m512 a2 = _mm512_set1_ps(a[2 * lda]), a3 = _mm512_set1_ps(a[l3]);
        c2l = _mm512_fmadd_ps(a2, bl, c2l);
        c2h = _mm512_fmadd_ps(a2, bh, c2h);
        c3l = _mm512_fmadd_ps(a3, bl, c3l);
        c3h = _mm512_fmadd_ps(a3, bh, c3h);
    }
    _mm512_storeu_ps(c, c0l);
    _mm512_storeu_ps(c + 16, c0h);
    _mm512_storeu_ps(c + ldc, c1l);
    _mm512_storeu_ps(c + ldc + 16, c1h);
    _mm512_storeu_ps(c + 2 * ldc, c2l);
    _mm512_storeu_ps(c + 2 * ldc + 16, c2h);
    _mm512_storeu_ps(c + 3 * ldc, c3l);
    _mm512_storeu_ps(c + 3 * ldc + 16, c3h);
}

/* c[6, 32] += a[6, K]·b[K, 32] (a[r, k] at a[r·lda + k·aks]; row strides ldb, ldc) */
static void mm_tall(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                    int64_t aks, const float *restrict b, int64_t ldb, int64_t K)
{
    __m512 c0l = _mm512_loadu_ps(c), c0h = _mm512_loadu_ps(c + 16);
    __m512 c1l = _mm512_loadu_ps(c + ldc), c1h = _mm512_loadu_ps(c + ldc + 16);
    __m512 c2l = _mm512_loadu_ps(c + 2 * ldc), c2h = _mm512_loadu_ps(c + 2 * ldc + 16);
    __m512 c3l = _mm512_loadu_ps(c + 3 * ldc), c3h = _mm512_loadu_ps(c + 3 * ldc + 16);
    __m512 c4l = _mm512_loadu_ps(c + 4 * ldc), c4h = _mm512_loadu_ps(c + 4 * ldc + 16);
    __m512 c5l = _mm512_loadu_ps(c + 5 * ldc), c5h = _mm512_loadu_ps(c + 5 * ldc + 16);
    const int64_t l3 = 3 * lda;
    for (int64_t k = 0; k < K; k++, a += aks) {
        __m512 bl = _mm512_loadu_ps(b + k * ldb), bh = _mm512_loadu_ps(b + k * ldb + 16);
        __m512 x = _mm512_set1_ps(a[0]);
        c0l = _mm512_fmadd_ps(x, bl, c0l);
        c0h = _mm512_fmadd_ps(x, bh, c0h);
        x = _mm512_set1_ps(a[lda]);
        c1l = _mm512_fmadd_ps(x, bl, c1l);
        c1h = _mm512_fmadd_ps(x, bh, c1h);
        x = _mm512_set1_ps(a[2 * lda]);
        c2l = _mm512_fmadd_ps(x, bl, c2l);
        c2h = _mm512_fmadd_ps(x, bh, c2h);
        x = _mm512_set1_ps(a[l3]);
        c3l = _mm512_fmadd_ps(x, bl, c3l);
        c3h = _mm512_fmadd_ps(x, bh, c3h);
        x = _mm512_set1_ps(a[l3 + lda]);
        c4l = _mm512_fmadd_ps(x, bl, c4l);
        c4h = _mm512_fmadd_ps(x, bh, c4h);
        x = _mm512_set1_ps(a[l3 + 2 * lda]);
        c5l = _mm512_fmadd_ps(x, bl, c5l);
        c5h = _mm512_fmadd_ps(x, bh, c5h);
    }
    _mm512_storeu_ps(c, c0l);
    _mm512_storeu_ps(c + 16, c0h);
    _mm512_storeu_ps(c + ldc, c1l);
    _mm512_storeu_ps(c + ldc + 16, c1h);
    _mm512_storeu_ps(c + 2 * ldc, c2l);
    _mm512_storeu_ps(c + 2 * ldc + 16, c2h);
    _mm512_storeu_ps(c + 3 * ldc, c3l);
    _mm512_storeu_ps(c + 3 * ldc + 16, c3h);
    _mm512_storeu_ps(c + 4 * ldc, c4l);
    _mm512_storeu_ps(c + 4 * ldc + 16, c4h);
    _mm512_storeu_ps(c + 5 * ldc, c5l);
    _mm512_storeu_ps(c + 5 * ldc + 16, c5h);
}

#define ATTN_TALL_M  6
#define ATTN_WIDE_N  32
#define ATTN_VARIANT avx512
#include "nn/attn_kernel.h"
