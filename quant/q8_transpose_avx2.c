/* q8_transpose_avx2.c — the AVX2 tile quantiser of the transposed Q8_0 copy (q8.h, q8_tile_fn):
 * 8×8 blocks of the decoded fp32 tile are transposed in registers, then each column of 32 values
 * is quantised as ggml's quantize_row_q8_0 does, with the activation rule's exact operations
 * (amax by max, d = amax/127 and id = 1/d as scalar IEEE divisions, codes by vcvtps2dq under the
 * default round-to-nearest-even, which is nearbyintf), so the bytes equal q8_tile_ref's for the
 * finite values a decoded weight has (its scales are checked finite at load). Compiled with
 * -mavx2 -mfma -mf16c; nothing here contracts a product into an fma. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "q8.h"
#include "qk_avx2.h"

/* One column x[32] (contiguous) into the block at dst. */
static inline void quantize_col(const float *x, uint8_t *dst)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], a[4];
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        a[i] = _mm256_andnot_ps(sign, v[i]);
    }
    __m256 m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h), d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (!isfinite(id)) /* d subnormal */
        id = 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++)
        q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    const uint16_t dh = q4_fp32_to_fp16(d);
    memcpy(dst, &dh, 2);
    _mm256_storeu_si256((__m256i *)(void *)(dst + 2), p);
}

void q8_tile_avx2(const float *tile, int64_t ld, int64_t ncol, uint8_t *dst, size_t rb)
{
    for (int64_t k0 = 0; k0 < ncol; k0 += 8) {
        float col[8][Q8_QK]; /* columns k0..k0+7, 32 rows each */
        for (int rg = 0; rg < 4; rg++) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(tile + (rg * 8 + i) * ld + k0);
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(col[i] + rg * 8, r[i]);
        }
        const int64_t nc = ncol - k0 < 8 ? ncol - k0 : 8;
        for (int64_t i = 0; i < nc; i++)
            quantize_col(col[i], dst + (size_t)(k0 + i) * rb);
    }
}
