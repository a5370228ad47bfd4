/* qk_avx2.h — AVX2 decoders of the GGUF read-only types (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_XS)
 * for q4_avx2.c and q4_avx512.c, and their code unpackers for q8_expand_gguf_avx2.c (and an 8x8
 * transpose for q8_transpose_avx2.c), which alone include this file (they are compiled with
 * -mavx2 or -mavx512*, -mfma -mf16c; the functions are static inline so that no SIMD code reaches
 * generic callers).
 *
 * qk_dec32 decodes the 32 values [k0, k0+32) of a row (k0 a multiple of 32) into v[0..3] in
 * natural order, fully scaled: each value is computed with the operations of the reference
 * (qk_ref.c: one fp32 multiply, then one add or subtract), so it equals q4_decode32_gguf bit for
 * bit. (The products are exact anyway: an fp16 scale times a 6-bit sub-scale times a 6-bit code
 * needs at most 23 significant bits, so only the add rounds, and an fma would give the same.)
 * Per-group scales (d·sc, dmin·m) are formed in scalar fp32 as the reference forms them; the codes
 * are unpacked 32 at a time with byte shuffles and shifts. */
#ifndef LK_QK_AVX2_H
#define LK_QK_AVX2_H

#include <immintrin.h>
#include <string.h>

#include "q4.h"

static inline float qk_fp16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 32 bytes -> v[0..3] as fp32, in order: signed (int8) or unsigned (uint8) as `sign` says (a
 * literal at every call site). */
static inline void qk_bytes_to_ps(__m256i b, int sign, __m256 v[4])
{
    const __m128i h[4] = {_mm256_castsi256_si128(b), _mm_srli_si128(_mm256_castsi256_si128(b), 8),
                          _mm256_extracti128_si256(b, 1),
                          _mm_srli_si128(_mm256_extracti128_si256(b, 1), 8)};
    for (int i = 0; i < 4; i++)
        v[i] = _mm256_cvtepi32_ps(sign ? _mm256_cvtepi8_epi32(h[i]) : _mm256_cvtepu8_epi32(h[i]));
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (values 0..15) then high nibbles (16..31). */
static inline __m256i qk_nibbles(const uint8_t *qs)
{
    const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)qs), m4 = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* The 32 bits of a little-endian u32 as bytes: byte j = 0x10 if bit j is set, else 0. */
static inline __m256i qk_bits16(const uint8_t *qh4)
{
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf); /* byte j: byte j/8 */
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}

/* v = d*v + m (two roundings, as the reference) over all four vectors. */
static inline void qk_mul_add(__m256 v[4], float d, float m)
{
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    for (int i = 0; i < 4; i++)
        v[i] = _mm256_add_ps(_mm256_mul_ps(vd, v[i]), vm);
}

/* v[0..1] = d0*v - m0, v[2..3] = d1*v - m1 (groups of 16; m 0 for the symmetric types). */
static inline void qk_mul_sub16(__m256 v[4], float d0, float m0, float d1, float m1)
{
    const __m256 a0 = _mm256_set1_ps(d0), b0 = _mm256_set1_ps(m0);
    const __m256 a1 = _mm256_set1_ps(d1), b1 = _mm256_set1_ps(m1);
    v[0] = _mm256_sub_ps(_mm256_mul_ps(a0, v[0]), b0);
    v[1] = _mm256_sub_ps(_mm256_mul_ps(a0, v[1]), b0);
    v[2] = _mm256_sub_ps(_mm256_mul_ps(a1, v[2]), b1);
    v[3] = _mm256_sub_ps(_mm256_mul_ps(a1, v[3]), b1);
}

/* As qk_mul_sub16 without the subtraction (x = dl*q exactly, no "- 0" that would turn -0 to 0). */
static inline void qk_mul16(__m256 v[4], float d0, float d1)
{
    const __m256 a0 = _mm256_set1_ps(d0), a1 = _mm256_set1_ps(d1);
    v[0] = _mm256_mul_ps(a0, v[0]);
    v[1] = _mm256_mul_ps(a0, v[1]);
    v[2] = _mm256_mul_ps(a1, v[2]);
    v[3] = _mm256_mul_ps(a1, v[3]);
}

/* 32 bytes at p shifted right by `shift` bits per byte, masked to `mask`. */
static inline __m256i qk_shift_mask(const uint8_t *p, int shift, int mask)
{
    const __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm256_and_si256(_mm256_srl_epi16(b, _mm_cvtsi32_si128(shift)),
                            _mm256_set1_epi8((char)mask));
}

/* Scale and min of Q4_K / Q5_K sub-block j (get_scale_min_k4). */
static inline void qk_k4_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Signed 6-bit scale g of a Q3_K super-block (minus 32). */
static inline int qk_q3_scale(const uint8_t *sc, int g)
{
    const int lo = g < 8 ? sc[g] & 15 : sc[g - 8] >> 4;
    return (lo | ((sc[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32;
}

static inline void qk_dec32(int qtype, const uint8_t *row, int64_t k0, __m256 v[4])
{
    const int64_t sb = k0 / Q4_QK_K;
    const int i0 = (int)(k0 % Q4_QK_K), h = i0 / 128, s = (i0 % 128) / 32, j = i0 / 32;
    switch (qtype) {
    case LK_QTYPE_Q4_1: {
        const uint8_t *b = row + (k0 / 32) * 20;
        qk_bytes_to_ps(qk_nibbles(b + 4), 0, v);
        qk_mul_add(v, qk_fp16(b), qk_fp16(b + 2));
        return;
    }
    case LK_QTYPE_Q5_0: {
        const uint8_t *b = row + (k0 / 32) * 22;
        __m256i q = _mm256_or_si256(qk_nibbles(b + 6), qk_bits16(b + 2));
        qk_bytes_to_ps(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), 1, v);
        const float d = qk_fp16(b);
        qk_mul16(v, d, d);
        return;
    }
    case LK_QTYPE_Q5_1: {
        const uint8_t *b = row + (k0 / 32) * 24;
        qk_bytes_to_ps(_mm256_or_si256(qk_nibbles(b + 8), qk_bits16(b + 4)), 0, v);
        qk_mul_add(v, qk_fp16(b), qk_fp16(b + 2));
        return;
    }
    case LK_QTYPE_Q2_K: {
        const q4_block_q2_k *b = (const q4_block_q2_k *)(const void *)row + sb;
        const float d = _cvtsh_ss(b->d), dmin = _cvtsh_ss(b->dmin);
        const int g = i0 / 16;
        qk_bytes_to_ps(qk_shift_mask(b->qs + 32 * h, 2 * s, 3), 0, v);
        qk_mul_sub16(v, d * (float)(b->scales[g] & 15), dmin * (float)(b->scales[g] >> 4),
                     d * (float)(b->scales[g + 1] & 15), dmin * (float)(b->scales[g + 1] >> 4));
        return;
    }
    case LK_QTYPE_Q3_K: {
        const q4_block_q3_k *b = (const q4_block_q3_k *)(const void *)row + sb;
        const float d = _cvtsh_ss(b->d);
        const int g = i0 / 16;
        const __m256i ql = qk_shift_mask(b->qs + 32 * h, 2 * s, 3);
        const __m256i hb = qk_shift_mask(b->hmask, j, 1); /* 1: no offset, 0: minus 4 */
        const __m256i q = _mm256_sub_epi8(_mm256_add_epi8(ql, _mm256_slli_epi16(hb, 2)),
                                          _mm256_set1_epi8(4)); /* hb<<2 stays in its byte */
        qk_bytes_to_ps(q, 1, v);
        qk_mul16(v, d * (float)qk_q3_scale(b->scales, g), d * (float)qk_q3_scale(b->scales, g + 1));
        return;
    }
    case LK_QTYPE_Q4_K:
    case LK_QTYPE_Q5_K: {
        const int five = qtype == LK_QTYPE_Q5_K;
        const uint8_t *b = row + sb * (five ? 176 : 144);
        const uint8_t *qs = b + (five ? 48 : 16) + 32 * (j / 2);
        int sc, m;
        qk_k4_scale_min(b + 4, j, &sc, &m);
        __m256i q = qk_shift_mask(qs, 4 * (j % 2), 15);
        if (five)
            q = _mm256_or_si256(q, _mm256_slli_epi16(qk_shift_mask(b + 16, j, 1), 4));
        qk_bytes_to_ps(q, 0, v);
        const float dl = qk_fp16(b) * (float)sc, ml = qk_fp16(b + 2) * (float)m;
        qk_mul_sub16(v, dl, ml, dl, ml);
        return;
    }
    case LK_QTYPE_Q6_K: {
        const q4_block_q6_k *b = (const q4_block_q6_k *)(const void *)row + sb;
        const float d = _cvtsh_ss(b->d);
        const int r0 = i0 % 128, g = i0 / 16;
        const __m256i lo = qk_shift_mask(b->ql + 64 * h + r0 % 64, 4 * (r0 / 64), 15);
        const __m256i hi = qk_shift_mask(b->qh + 32 * h, 2 * s, 3);
        const __m256i q =
            _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
        qk_bytes_to_ps(q, 1, v);
        qk_mul16(v, d * (float)b->scales[g], d * (float)b->scales[g + 1]);
        return;
    }
    default: { /* IQ4_XS */
        const q4_block_iq4_xs *b = (const q4_block_iq4_xs *)(const void *)row + sb;
        const int ls = ((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((b->scales_h >> (2 * j)) & 3)
                                                                          << 4;
        const float dl = _cvtsh_ss(b->d) * (float)(ls - 32);
        const __m256i tab = _mm256_broadcastsi128_si256(
            _mm_loadu_si128((const __m128i *)(const void *)q4_iq4nl_values));
        qk_bytes_to_ps(_mm256_shuffle_epi8(tab, qk_nibbles(b->qs + 16 * j)), 1, v);
        qk_mul16(v, dl, dl);
        return;
    }
    }
}

/* 8x8 transpose of r[0..7] (rows) in registers (the usual unpack/shuffle/permute network), for
 * q4_avx2.c's row decoding and q8_transpose_avx2.c's tiles. */
static inline void transpose8(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

#endif /* LK_QK_AVX2_H */
