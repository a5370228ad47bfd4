/* q8_x86.h — the activation quantisers of q8.h in AVX2 (static inline: included by q8_avx2.c,
 * q8_avx512.c, q8_gemv_avx2.c and q8_gemv_avx512.c, compiled with their flags), and for the
 * AVX-512 files the load of 16 bytes of 16 rows into a zmm. Bit for bit q8_quantize_act: the
 * block's max |x| (exact in any order), d = amax/127 and id = 1/d as scalars, then x*id rounded to
 * nearest even by vcvtps2dq (the default MXCSR rounding, as nearbyintf), packed to bytes with
 * saturation that never bites (|q| <= 127), and the two half sums; the two-term quantiser
 * (q8_quantize_act2) on top of it. */
#ifndef LK_Q8_X86_H
#define LK_Q8_X86_H

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "q8.h"

static inline int32_t q8x_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline void q8x_quantize_block(const float *x, q8_ablock *o)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (!isfinite(id))
        id = 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
    const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
    const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
    const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    const __m256i q = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)o->q, q);
    o->d = d;
    o->s16[0] = (int16_t)q8x_hsum(_mm256_add_epi32(q0, q1));
    o->s16[1] = (int16_t)q8x_hsum(_mm256_add_epi32(q2, q3));
}

/* q8_quantize_act's result for x[n]. */
static inline void q8x_quantize_act(const float *x, int64_t n, q8_ablock *dst)
{
    const int64_t nfull = n / Q8_QK;
    for (int64_t b = 0; b < nfull; b++)
        q8x_quantize_block(x + b * Q8_QK, dst + b);
    if (n % Q8_QK) {
        float pad[Q8_QK] = {0};
        memcpy(pad, x + nfull * Q8_QK, (size_t)(n % Q8_QK) * sizeof(float));
        q8x_quantize_block(pad, dst + nfull);
    }
}

/* q8_quantize_act2's blocks of 32 values x (zero-padded): x1 by the rule, then r = x − d·q
 * (vmulps then vsubps, each rounded: ISO C mode contracts nothing) quantised into r1. */
static inline void q8x_quantize2_block(const float *x, q8_ablock *x1, q8_ablock *r1)
{
    q8x_quantize_block(x, x1);
    const __m256 d = _mm256_set1_ps(x1->d);
    float r[Q8_QK];
    for (int i = 0; i < Q8_QK; i += 8) {
        const __m256 q = _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(x1->q + i))));
        _mm256_storeu_ps(r + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_mul_ps(d, q)));
    }
    q8x_quantize_block(r, r1);
}

/* q8_quantize_act2's result for x[n]. */
static inline void q8x_quantize_act2(const float *x, int64_t n, q8_ablock *x1, q8_ablock *r1)
{
    const int64_t nfull = n / Q8_QK;
    for (int64_t b = 0; b < nfull; b++)
        q8x_quantize2_block(x + b * Q8_QK, x1 + b, r1 + b);
    if (n % Q8_QK) {
        float pad[Q8_QK] = {0};
        memcpy(pad, x + nfull * Q8_QK, (size_t)(n % Q8_QK) * sizeof(float));
        q8x_quantize2_block(pad, x1 + nfull, r1 + nfull);
    }
}

#ifdef __AVX512F__ /* q8_avx512.c and q8_gemv_avx512.c */
/* 16 bytes at offset off of rows 4L+k (L = 0..3) in the four 128-bit lanes of a zmm
 * (the panel packer's and the GEMV's loads of 16 rows). */
static inline __m512i q8x_load4(const uint8_t *const *rows, int k, size_t off)
{
    __m512i z =
        _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(rows[k] + off)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(const void *)(rows[4 + k] + off)),
                           1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(const void *)(rows[8 + k] + off)),
                           2);
    return _mm512_inserti32x4(
        z, _mm_loadu_si128((const __m128i *)(const void *)(rows[12 + k] + off)), 3);
}

/* The nibbles of a 64-byte chunk of an interleaved record (q8_ilv.h: 16 rows x 4 code bytes) as
 * bytes: *lo the low ones (values 4c..4c+3), *hi the high ones (16+4c..); IQ4_NL's through tab
 * (its values + 128), the others as they are. */
static inline void q8x_ilv_nibbles(int qt, const uint8_t *chunk, __m512i tab, __m512i *lo,
                                   __m512i *hi)
{
    const __m512i m4 = _mm512_set1_epi8(15), ch = _mm512_loadu_si512(chunk);
    *lo = _mm512_and_si512(ch, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(ch, 4), m4);
    if (qt == LK_QTYPE_IQ4_NL) {
        *lo = _mm512_shuffle_epi8(tab, *lo);
        *hi = _mm512_shuffle_epi8(tab, *hi);
    }
}
#endif

#endif /* LK_Q8_X86_H */
