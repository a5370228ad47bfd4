/* q8_gguf.h — the int8 expansions of the GGUF read-only types (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
 * IQ4_XS): the per-block scales and mins and the k-quant block loop, shared by the plain-C
 * expanders (q8_expand_gguf.c) and their AVX2 twins (q8_expand_gguf_avx2.c), which unpack the
 * codes (and Q4_K / Q5_K / Q6_K's scales) with SIMD.
 *
 * A 32-value block expands to q8_wblock {q[32], s[2], m[2]} with value k = s[k/16]*q[k] + m[k/16]
 * (fp32, two roundings) equal bit for bit to q4_decode32_gguf's value (int8_spec.md):
 *   Q4_1   q = nibble (0..15),          s = d,                m = m
 *   Q5_0   q = 5-bit code - 16,         s = d,                m = -0
 *   Q5_1   q = 5-bit code (0..31),      s = d,                m = m
 *   Q2_K   q = 2-bit code (0..3),       s = d*(sc&15),        m = -(dmin*(sc>>4))   per 16
 *   Q3_K   q = 3-bit code - 4 (-4..3),  s = d*(sc6-32),       m = -0                per 16
 *   Q4_K   q = nibble (0..15),          s = d*sc6,            m = -(dmin*mn6)       per 32
 *   Q5_K   q = 5-bit code (0..31),      s = d*sc6,            m = -(dmin*mn6)       per 32
 *   Q6_K   q = 6-bit code - 32,         s = d*scales[g],      m = -0                per 16
 *   IQ4_XS q = kvalues_iq4nl[nibble],   s = d*(ls6-32),       m = -0                per 32
 * Every s and m is the product the decoder (qk_ref.c) forms, so s*q + m repeats its roundings:
 * x - y equals x + (-y) in IEEE arithmetic, and the types without a min get m = -0.0f (not +0),
 * the one addend that leaves every product unchanged, -0 included (d < 0 with code 0 decodes to
 * -0). */
#ifndef LK_Q8_GGUF_H
#define LK_Q8_GGUF_H

#include <stddef.h>

#include "q4.h"
#include "q8.h"

/* The AVX2 expander of a GGUF read-only type (bit-exact with q8_expander_gguf's), NULL when
 * there is none or this build has no AVX2 file; callers must have checked that the CPU runs
 * AVX2 (the AVX2 and AVX-512 kernel variants call it). */
q8_expand_fn q8_expander_gguf_avx2(int qtype);

/* ---- scales and mins, in the decoder's order of operations ----------------------------------- */

/* A block with one scale and min for all 32 values (Q4_1, Q5_0, Q5_1). */
static inline void q8g_sm32(q8_wblock *o, float s, float m)
{
    o->s[0] = o->s[1] = s;
    o->m[0] = o->m[1] = m;
}

static inline float q8g_fp16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return q4_fp16_to_fp32(h);
}

/* The scales and mins of the 8 blocks of a k-quant super-block: sm[j] = {s[0], s[1], m[0], m[1]}
 * of block j, as q8_wblock stores them (s and m adjacent). */
typedef float q8g_sm[8][4];
static_assert(offsetof(q8_wblock, m) == offsetof(q8_wblock, s) + 2 * sizeof(float),
              "q8_wblock: m follows s");

/* s[0], s[1], m[0], m[1] of o from v[4] (one copy through the whole block's address). */
static inline void q8g_put_sm(q8_wblock *o, const float *v)
{
    memcpy((char *)o + offsetof(q8_wblock, s), v, 4 * sizeof(float));
}

/* Half-block g (= value/16) of a k-quant super-block gets scale sv and min mv. */
static inline void q8g_set(q8g_sm sm, int g, float sv, float mv)
{
    sm[g / 2][g % 2] = sv;
    sm[g / 2][2 + g % 2] = mv;
}

/* The scales and mins of the k-quant super-block at sb, each the product the decoder forms
 * (qk_ref.c), so that the expansion repeats its roundings. */
static inline void q8g_kquant_sm(int qtype, const uint8_t *sb, q8g_sm sm)
{
    switch (qtype) {
    case LK_QTYPE_Q2_K: { /* scales[g]: low nibble scale, high nibble min */
        const q4_block_q2_k *b = (const q4_block_q2_k *)(const void *)sb;
        const float d = q4_fp16_to_fp32(b->d), dmin = q4_fp16_to_fp32(b->dmin);
        for (int g = 0; g < 16; g++)
            q8g_set(sm, g, d * (float)(b->scales[g] & 15), -(dmin * (float)(b->scales[g] >> 4)));
        return;
    }
    case LK_QTYPE_Q3_K: { /* 6-bit scales: low nibbles in scales[0..7], bit pairs in [8..11] */
        const q4_block_q3_k *b = (const q4_block_q3_k *)(const void *)sb;
        const float d = q4_fp16_to_fp32(b->d);
        for (int g = 0; g < 16; g++) {
            const int lo = g < 8 ? b->scales[g] & 15 : b->scales[g - 8] >> 4;
            const int hi = (b->scales[8 + g % 4] >> (2 * (g / 4))) & 3;
            q8g_set(sm, g, d * (float)((lo | hi << 4) - 32), -0.0f);
        }
        return;
    }
    case LK_QTYPE_Q4_K:
    case LK_QTYPE_Q5_K: { /* d, dmin, then 12 bytes of 6-bit scales and mins (get_scale_min_k4) */
        const float d = q8g_fp16_at(sb), dmin = q8g_fp16_at(sb + 2);
        const uint8_t *q = sb + 4;
        for (int j = 0; j < 8; j++) {
            const int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
            const int mn = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | (q[j] >> 6) << 4;
            sm[j][0] = sm[j][1] = d * (float)sc;
            sm[j][2] = sm[j][3] = -(dmin * (float)mn);
        }
        return;
    }
    case LK_QTYPE_Q6_K: {
        const q4_block_q6_k *b = (const q4_block_q6_k *)(const void *)sb;
        const float d = q4_fp16_to_fp32(b->d);
        for (int g = 0; g < 16; g++)
            q8g_set(sm, g, d * (float)b->scales[g], -0.0f);
        return;
    }
    default: { /* IQ4_XS: ls = nibble j of scales_l | bits 2j..2j+1 of scales_h << 4 */
        const q4_block_iq4_xs *b = (const q4_block_iq4_xs *)(const void *)sb;
        const float d = q4_fp16_to_fp32(b->d);
        for (int j = 0; j < 8; j++) {
            const int ls =
                ((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((b->scales_h >> (2 * j)) & 3) << 4;
            sm[j][0] = sm[j][1] = d * (float)(ls - 32);
            sm[j][2] = sm[j][3] = -0.0f;
        }
        return;
    }
    }
}

/* The codes of sub-block j (values 32j..32j+31) of the k-quant super-block at sb. */
typedef void (*q8g_codes_fn)(const uint8_t *sb, int j, int8_t q[32]);
/* The scales and mins of the super-block at sb. */
typedef void (*q8g_sm_fn)(const uint8_t *sb, q8g_sm sm);

/* Blocks [b0, b0+nb) of a k-quant row: block b is sub-block b%8 of super-block b/8; the scales of
 * a super-block are unpacked once for all its blocks in the range. `scales` and `codes` are
 * constants at every call site (each expander inlines its own). */
static inline void q8g_expand_k(size_t block_bytes, q8g_sm_fn scales, q8g_codes_fn codes,
                                const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    q8g_sm sm;
    int64_t cur = -1;
    for (int64_t i = 0; i < nb;) {
        const int64_t sb = (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        const uint8_t *x = (const uint8_t *)row + (size_t)sb * block_bytes;
        if (sb != cur) {
            scales(x, sm);
            cur = sb;
        }
        if (j == 0 && nb - i >= 8) { /* a whole super-block: sub-block numbers are constants */
            for (int k = 0; k < 8; k++) {
                codes(x, k, dst[i + k].q);
                q8g_put_sm(&dst[i + k], sm[k]);
            }
            i += 8;
        } else {
            codes(x, j, dst[i].q);
            q8g_put_sm(&dst[i], sm[j]);
            i++;
        }
    }
}

/* Per-file boilerplate of q8_expand_gguf.c and q8_expand_gguf_avx2.c, which define the same
 * function names (static) with their own code unpackers: sm_NAME wraps q8g_kquant_sm for a type,
 * exp_NAME is the k-quant expander built from codes_NAME and a scales function, and
 * Q8G_EXPANDER_TABLE(fn) defines fn(qtype) returning the file's exp_NAME of qtype (NULL for
 * other types). */
#define Q8G_SCALAR_SM(name, qt)                         \
    static void sm_##name(const uint8_t *sb, q8g_sm sm) \
    {                                                   \
        q8g_kquant_sm(qt, sb, sm);                      \
    }
#define Q8G_KQUANT_EXPANDER(name, blk, scales)                                          \
    static void exp_##name(const q4_weight *w, const void *row, int64_t b0, int64_t nb, \
                           q8_wblock *dst)                                              \
    {                                                                                   \
        (void)w;                                                                        \
        q8g_expand_k(sizeof(blk), scales, codes_##name, row, b0, nb, dst);              \
    }
#define Q8G_EXPANDER_TABLE(fn)                   \
    q8_expand_fn fn(int qtype)                   \
    {                                            \
        switch (qtype) {                         \
        case LK_QTYPE_Q4_1: return exp_q4_1;     \
        case LK_QTYPE_Q5_0: return exp_q5_0;     \
        case LK_QTYPE_Q5_1: return exp_q5_1;     \
        case LK_QTYPE_Q2_K: return exp_q2_k;     \
        case LK_QTYPE_Q3_K: return exp_q3_k;     \
        case LK_QTYPE_Q4_K: return exp_q4_k;     \
        case LK_QTYPE_Q5_K: return exp_q5_k;     \
        case LK_QTYPE_Q6_K: return exp_q6_k;     \
        case LK_QTYPE_IQ4_XS: return exp_iq4_xs; \
        default: return NULL;                    \
        }                                        \
    }
#define Q8G_KQUANT_EXPANDERS                                                        \
    Q8G_KQUANT_EXPANDER(q2_k, q4_block_q2_k, sm_q2_k)                               \
    Q8G_KQUANT_EXPANDER(q3_k, q4_block_q3_k, sm_q3_k)                               \
    Q8G_KQUANT_EXPANDER(q4_k, q4_block_q4_k, sm_q4_k)                               \
    Q8G_KQUANT_EXPANDER(q5_k, q4_block_q5_k, sm_q4_k) /* the same scales as Q4_K */ \
    Q8G_KQUANT_EXPANDER(q6_k, q4_block_q6_k, sm_q6_k)                               \
    Q8G_KQUANT_EXPANDER(iq4_xs, q4_block_iq4_xs, sm_iq4_xs)

#endif /* LK_Q8_GGUF_H */
