/* q8_gguf.h — the int8 expansions of the GGUF read-only types (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
 * IQ4_XS): the per-block scales and mins, shared by the plain-C expanders (q8_expand_gguf.c) and
 * their AVX2 twins (q8_expand_gguf_avx2.c), which differ only in how they unpack the codes.
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

#include "q4.h"
/* TEMPORARY until i13-q8k's quant/q8.h is merged: the spec's interface (int8_spec.md). */
#define Q8_QK 32
typedef struct {
    int8_t q[32];
    float s[2], m[2];
} q8_wblock;
typedef void (*q8_expand_fn)(const q4_weight *w, const void *row, int64_t b0, int64_t nb,
                             q8_wblock *dst);
q8_expand_fn q8_expander_gguf(int qtype);

/* The AVX2 expander of a GGUF read-only type (bit-exact with q8_expander_gguf's), NULL when
 * there is none or this build has no AVX2 file; callers must have checked that the CPU runs
 * AVX2 (the AVX2 and AVX-512 kernel variants call it). */
q8_expand_fn q8_expander_gguf_avx2(int qtype);

/* ---- per-block scales, in the decoder's order of operations (d, dmin already fp32) ---------- */

/* A block with one scale and min for all 32 values. */
static inline void q8g_sm32(q8_wblock *o, float s, float m)
{
    o->s[0] = o->s[1] = s;
    o->m[0] = o->m[1] = m;
}

/* Q2_K: halves g, g+1 (g = 2*block in the super-block) of the 16 packed scale/min bytes. */
static inline void q8g_sm_q2_k(const q4_block_q2_k *b, float d, float dmin, int g, q8_wblock *o)
{
    for (int i = 0; i < 2; i++) {
        o->s[i] = d * (float)(b->scales[g + i] & 15);
        o->m[i] = -(dmin * (float)(b->scales[g + i] >> 4));
    }
}

/* Q3_K: signed 6-bit scale of group g (ggml's packing: low nibbles in scales[0..7], bit pairs in
 * scales[8..11]), minus 32. */
static inline int q8g_q3_scale(const uint8_t *sc, int g)
{
    const int lo = g < 8 ? sc[g] & 15 : sc[g - 8] >> 4;
    return (lo | ((sc[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32;
}

static inline void q8g_sm_q3_k(const q4_block_q3_k *b, float d, int g, q8_wblock *o)
{
    for (int i = 0; i < 2; i++) {
        o->s[i] = d * (float)q8g_q3_scale(b->scales, g + i);
        o->m[i] = -0.0f;
    }
}

/* Q4_K / Q5_K: scale and min of sub-block j (0..7) from the 12 packed bytes (get_scale_min_k4),
 * s = d*sc, m = -(dmin*mn). */
static inline void q8g_sm_k4(const uint8_t *s12, float d, float dmin, int j, q8_wblock *o)
{
    int sc, mn;
    if (j < 4) {
        sc = s12[j] & 63;
        mn = s12[j + 4] & 63;
    } else {
        sc = (s12[j + 4] & 15) | (s12[j - 4] >> 6) << 4;
        mn = (s12[j + 4] >> 4) | (s12[j] >> 6) << 4;
    }
    q8g_sm32(o, d * (float)sc, -(dmin * (float)mn));
}

static inline void q8g_sm_q6_k(const q4_block_q6_k *b, float d, int g, q8_wblock *o)
{
    o->s[0] = d * (float)b->scales[g];
    o->s[1] = d * (float)b->scales[g + 1];
    o->m[0] = o->m[1] = -0.0f;
}

/* IQ4_XS: 6-bit scale of sub-block j (nibble j of scales_l, bits 2j..2j+1 of scales_h). */
static inline void q8g_sm_iq4_xs(const q4_block_iq4_xs *b, float d, int j, q8_wblock *o)
{
    const int ls = ((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((b->scales_h >> (2 * j)) & 3)
                                                                      << 4;
    q8g_sm32(o, d * (float)(ls - 32), -0.0f);
}

#endif /* LK_Q8_GGUF_H */
